"""The memmap: ``struct page`` state in numpy arrays, per memory section, and pfn_valid.

Models SPARSEMEM as in 2.6.27 ``include/linux/mmzone.h``: physical memory is cut into
sections of ``2**SECTION_SIZE_BITS`` bytes; a section either has a memmap (a struct page for
every frame in it) or not, and ``pfn_valid(pfn)`` is true exactly when the pfn's section has
one. Device memory (DCSS, axonram) lies in sections without one, which is the whole point of
VM_MIXEDMAP.

Host arrays for a section are created on first touch, so a 64 GiB machine costs the host
only the sections it used; :meth:`MemMap.memmap_bytes` reports what the kernel would spend
(``sizeof(struct page)`` per frame of every present section) regardless.
"""

from __future__ import annotations

import enum

import numpy as np
from numpy.typing import NDArray

from mixedmap.arch import MemoryModel
from mixedmap.errors import AddressError


class PG(enum.IntFlag):
    """Page flags kept per struct page (the subset the model needs; kernel names)."""

    locked = 1 << 0
    reserved = 1 << 1
    dirty = 1 << 2
    uptodate = 1 << 3
    lru = 1 << 4
    #: PageAnon: the kernel sets bit 0 of page->mapping; kept as a flag here.
    anon = 1 << 5
    #: A page-table page (the kernel's PageTable page type).
    pagetable = 1 << 6
    #: A page owned by a block driver (brd) rather than the page cache.
    driver = 1 << 7


class MemMap:
    """Sections with a memmap and the struct-page arrays behind them, for one machine."""

    def __init__(self, model: MemoryModel, page_shift: int) -> None:
        self.model = model
        self.page_shift = page_shift
        self.pfn_section_shift = model.section_size_bits - page_shift
        self.pages_per_section = 1 << self.pfn_section_shift
        self.nr_sections = 1 << (model.max_physmem_bits - model.section_size_bits)
        self._has_memmap = np.zeros(0, dtype=np.bool_)
        self._slot = np.zeros(0, dtype=np.intp)  # section -> row of the state arrays (0: none)
        self._empty_rows()

    def _empty_rows(self) -> None:
        """State arrays with no section's row yet (row 0 is never used: a zero slot means
        "no arrays yet"); rows are added on first touch."""
        self._nrows = 1
        rows = (2, self.pages_per_section)
        self.refcount = np.zeros(rows, dtype=np.int32)
        self.mapcount = np.zeros(rows, dtype=np.int32)
        self.flags = np.zeros(rows, dtype=np.uint32)
        self.mapping = np.zeros(rows, dtype=np.int64)
        self.index = np.zeros(rows, dtype=np.uint64)
        self._flat_views()

    def _flat_views(self) -> None:
        """One-dimensional views of the state arrays, indexed by :meth:`flat_of`: the scalar
        fault path reads and writes one struct page with a 1-D index, a fraction of what a
        ``[row, col]`` tuple index costs. Renewed whenever the arrays are."""
        self.refcount1d: NDArray[np.int32] = self.refcount.reshape(-1)
        self.mapcount1d: NDArray[np.int32] = self.mapcount.reshape(-1)
        self.flags1d: NDArray[np.uint32] = self.flags.reshape(-1)
        self.mapping1d: NDArray[np.int64] = self.mapping.reshape(-1)
        self.index1d: NDArray[np.uint64] = self.index.reshape(-1)

    # -- sections -----------------------------------------------------------------------
    def _grow(self, last: int) -> None:
        if last >= self._has_memmap.size:
            size = max(last + 1, 2 * self._has_memmap.size)
            for name in ("_has_memmap", "_slot"):
                old = getattr(self, name)
                new = np.zeros(size, dtype=old.dtype)
                new[: old.size] = old
                setattr(self, name, new)

    def section_range(self, start_pfn: int, nr_pages: int) -> range:
        first = start_pfn >> self.pfn_section_shift
        last = (start_pfn + nr_pages - 1) >> self.pfn_section_shift
        return range(first, last + 1)

    def add_sections(self, start_pfn: int, nr_pages: int) -> None:
        """Give every section overlapping [start_pfn, start_pfn + nr_pages) a memmap."""
        secs = self.section_range(start_pfn, nr_pages)
        if secs.stop > self.nr_sections:
            raise AddressError(
                f"memory up to pfn {start_pfn + nr_pages - 1:#x} is beyond MAX_PHYSMEM_BITS="
                f"{self.model.max_physmem_bits}"
            )
        self._grow(secs.stop - 1)
        self._has_memmap[secs.start : secs.stop] = True

    def remove_sections(self, start_pfn: int, nr_pages: int) -> None:
        """Drop the memmap of the sections covering the range (all pages must be free)."""
        for sec in self.section_range(start_pfn, nr_pages):
            if sec < self._has_memmap.size:
                self._has_memmap[sec] = False
                row = int(self._slot[sec])
                if row:
                    for arr in (self.refcount, self.mapcount, self.flags, self.mapping, self.index):
                        arr[row] = 0
                    self._slot[sec] = 0

    def has_memmap(self, start_pfn: int, nr_pages: int) -> bool:
        """True when any section of the range already has a memmap."""
        secs = self.section_range(start_pfn, nr_pages)
        return bool(self._has_memmap[secs.start : min(secs.stop, self._has_memmap.size)].any())

    @property
    def sections(self) -> NDArray[np.int64]:
        """Section numbers that have a memmap."""
        return np.flatnonzero(self._has_memmap)

    def memmap_bytes(self) -> int:
        """What the kernel spends on struct pages: every frame of every present section."""
        return int(self._has_memmap.sum()) * self.pages_per_section * self.model.struct_page_size

    @property
    def host_bytes(self) -> int:
        """Host bytes of the state arrays actually created (sections touched so far)."""
        per_row = sum(
            a.itemsize for a in (self.refcount, self.mapcount, self.flags, self.mapping, self.index)
        )
        return self._nrows * self.pages_per_section * per_row

    def release_host(self) -> None:
        """Drop the host arrays of every struct page (they read as zero afterwards): for a
        machine that is done with, so its memory returns before the garbage collector gets
        to the machine's reference cycles. The sections stay: :meth:`memmap_bytes`, the
        kernel's figure, is unchanged."""
        self._slot = np.zeros(self._slot.size, dtype=np.intp)
        self._empty_rows()

    # -- pfn_valid ------------------------------------------------------------------------
    def pfn_valid(self, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """Generic SPARSEMEM pfn_valid (2.6.27 ``include/linux/mmzone.h``)."""
        if isinstance(pfns, np.ndarray) and pfns.shape == (1,) and pfns.dtype == np.uint64:
            sec1 = int(pfns[0]) >> self.pfn_section_shift  # the scalar fault path
            return np.array([sec1 < self._has_memmap.size and bool(self._has_memmap[sec1])], dtype=np.bool_)
        sec = np.asarray(pfns, dtype=np.uint64) >> np.uint64(self.pfn_section_shift)
        inside = sec < np.uint64(self._has_memmap.size)
        out = np.zeros(sec.shape, dtype=np.bool_)
        out[inside] = self._has_memmap[sec[inside].astype(np.intp)]
        return out

    def pfn_valid_one(self, pfn: int) -> bool:
        """:meth:`pfn_valid` of one pfn as a plain bool: the scalar fault path asks it per
        fault, where a one-element array in and out would cost more than the test."""
        sec = pfn >> self.pfn_section_shift
        has = self._has_memmap
        return 0 <= sec < has.size and bool(has[sec])

    # -- struct page state ------------------------------------------------------------------
    def rows(self, pfns: NDArray[np.uint64]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
        """(row, column) of each pfn's struct page, creating host arrays on first touch.

        Every pfn must have a struct page; the first that does not is named.
        """
        pfns = np.asarray(pfns, dtype=np.uint64)
        sec = (pfns >> np.uint64(self.pfn_section_shift)).astype(np.intp)
        if sec.size:
            lo, hi = int(sec.min()), int(sec.max())
            # one slice answers for a batch within sections that all have a memmap
            if lo < 0 or hi >= self._has_memmap.size or not bool(self._has_memmap[lo : hi + 1].all()):
                valid = self.pfn_valid(pfns)
                if not valid.all():
                    raise AddressError(
                        f"pfn {int(pfns[~valid][0]):#x} has no struct page (its section has no memmap)"
                    )
        row = self._slot[sec]
        if (row == 0).any():
            for s in np.unique(sec[row == 0]).tolist():
                self._slot[s] = self._new_row()
            row = self._slot[sec]
        col = (pfns & np.uint64(self.pages_per_section - 1)).astype(np.intp)
        return row, col

    def row_col(self, pfn: int) -> tuple[int, int]:
        """:meth:`rows` for one pfn as plain ints: the scalar fault path's lookup."""
        sec = pfn >> self.pfn_section_shift
        if pfn < 0 or sec >= self._has_memmap.size or not self._has_memmap[sec]:
            raise AddressError(f"pfn {pfn:#x} has no struct page (its section has no memmap)")
        row = int(self._slot[sec])
        if row == 0:
            row = self._new_row()
            self._slot[sec] = row
        return row, pfn & (self.pages_per_section - 1)

    def flat_of(self, pfn: int) -> int:
        """:meth:`row_col` as one index into the ``*1d`` views (``row * pages_per_section +
        col``), the struct page created on first touch; AddressError without a memmap."""
        sec = pfn >> self.pfn_section_shift
        has = self._has_memmap
        if pfn < 0 or sec >= has.size or not has.item(sec):
            raise AddressError(f"pfn {pfn:#x} has no struct page (its section has no memmap)")
        row: int = self._slot.item(sec)
        if row == 0:
            row = self._new_row()
            self._slot[sec] = row
        return row * self.pages_per_section + (pfn & (self.pages_per_section - 1))

    def spans(self, pfns: NDArray[np.uint64]) -> list[tuple[int, int, int]] | None:
        """``(row, first col, end col)`` per section of an ascending run of consecutive pfns
        (struct pages created on first touch, as :meth:`rows`), or None for any other batch.

        A fault-around or populate batch over a device is one such run: its refcount and
        mapcount updates are then a slice per section instead of a gather and a scatter per
        page. None also when a pfn has no struct page (:meth:`rows` names it).
        """
        n = int(pfns.size)
        if n == 0:
            return None
        first = int(pfns[0])
        if int(pfns[-1]) - first != n - 1 or (n > 1 and not bool((pfns[1:] > pfns[:-1]).all())):
            return None
        shift = self.pfn_section_shift
        s0, s1 = first >> shift, (first + n - 1) >> shift
        if s1 >= self._has_memmap.size or not bool(self._has_memmap[s0 : s1 + 1].all()):
            return None
        out: list[tuple[int, int, int]] = []
        for sec in range(s0, s1 + 1):
            row = int(self._slot[sec])
            if row == 0:
                row = self._new_row()
                self._slot[sec] = row
            lo = max(first, sec << shift) - (sec << shift)
            hi = min(first + n, (sec + 1) << shift) - (sec << shift)
            out.append((row, lo, hi))
        return out

    def add(self, field: str, pfns: NDArray[np.uint64], delta: int) -> None:
        """``field`` += ``delta`` once per occurrence of each pfn (``np.add.at`` semantics):
        a slice per section for a run of consecutive pfns, one fancy-indexed add for distinct
        ascending pfns, ``np.add.at`` otherwise."""
        arr: NDArray[np.int32] = getattr(self, field)
        spans = self.spans(pfns)
        if spans is not None:
            for row, lo, hi in spans:
                arr[row, lo:hi] += delta
            return
        row_, col = self.rows(pfns)
        if pfns.size < 2 or bool((pfns[1:] > pfns[:-1]).all()):
            arr[row_, col] += delta
        else:
            np.add.at(arr, (row_, col), delta)

    def _new_row(self) -> int:
        row = self._nrows
        if row == self.refcount.shape[0]:  # double the capacity: amortised O(1) per section
            for name in ("refcount", "mapcount", "flags", "mapping", "index"):
                old = getattr(self, name)
                new = np.zeros((2 * old.shape[0], old.shape[1]), dtype=old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)
            self._flat_views()
        self._nrows += 1
        return row
