"""The page allocator: RAM frames with struct-page bookkeeping (``mm/page_alloc.c``'s contract).

``alloc_pages`` hands out zeroed frames with refcount 1; ``get_page``/``put_page`` move the
refcount and the last put frees. The checks the kernel makes in ``free_pages_check``/
``bad_page`` (freeing a free page, a page still mapped, a page with other references) raise
:class:`VMBug` before anything changes, so a refcount bug in a scenario is caught where it
happens instead of surfacing as a leak much later.
"""

from __future__ import annotations

from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import VMBug
from mixedmap.phys.alloc import FrameAllocator
from mixedmap.phys.mem import PhysMem
from mixedmap.phys.memmap import PG, MemMap

#: include/linux/mm.h ``GUP_PIN_COUNTING_BIAS`` (5.7): what one FOLL_PIN adds to a small folio's
#: refcount, so ``folio_maybe_dma_pinned`` can tell pins from plain references.
GUP_PIN_COUNTING_BIAS = 1024


@attrs.frozen
class PinnedPage:
    """A page still holding FOLL_PIN pins: what a leak report names, by pfn."""

    pfn: int
    pins: int
    refcount: int

    def __str__(self) -> str:
        return f"pfn {self.pfn:#x}: {self.pins} pin(s), refcount {self.refcount}"


class LeakReport(dict[str, int]):
    """:meth:`PageAllocator.leaks`: pages held by kind (``== {}`` after a clean teardown),
    and the pinned ones by pfn, which the repr shows so an assertion message names them."""

    pinned: tuple[PinnedPage, ...] = ()

    def __repr__(self) -> str:
        base = super().__repr__()
        if not self.pinned:
            return base
        shown = "; ".join(map(str, self.pinned[:8])) + ("; ..." if len(self.pinned) > 8 else "")
        return f"{base} (still pinned: {shown})"


def _arr(pfns: int | NDArray[np.uint64] | list[int]) -> NDArray[np.uint64]:
    arr = np.atleast_1d(np.asarray(pfns))
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise ValueError(f"negative pfn {int(arr.min())}")
    return arr.astype(np.uint64, copy=False)


def _ascending(arr: NDArray[np.uint64]) -> bool:
    """Distinct pfns in ascending order (then np.unique would return them as they are)."""
    return arr.size < 2 or bool((arr[1:] > arr[:-1]).all())


class PageAllocator:
    """Frames of RAM handed out with their struct pages kept honest."""

    def __init__(self, frames: FrameAllocator, memmap: MemMap, mem: PhysMem, page_shift: int) -> None:
        self.frames = frames
        self.memmap = memmap
        self.mem = mem
        self.page_shift = page_shift
        self.page_size = 1 << page_shift
        #: Receives struct page get/put events when a trace is on (see mixedmap.trace).
        self.tracer: Any = None
        #: The machine's shared zero page once :mod:`mixedmap.mm.zero` allocated it (its
        #: ``my_zero_pfn``); kept here, one per allocator, so the fault path's ``is_zero_pfn``
        #: is one attribute read.
        self.zero_pfn: int | None = None
        # The FOLL_PIN ledger: sorted pinned pfns and their exact pin counts (the kernel
        # keeps only the biased refcount for a small folio; the model checks unpins with it).
        self._pin_pfns = np.zeros(0, dtype=np.uint64)
        self._pin_counts = np.zeros(0, dtype=np.int64)
        self._pin_bias = GUP_PIN_COUNTING_BIAS

    def _trace(self, event: str, func: str, pfns: NDArray[np.uint64]) -> None:
        listed = [int(p) for p in pfns[:64]]
        self.tracer(
            event=event, func=func, mm=0, addr=0, count=int(pfns.size), pfns=[f"{p:#x}" for p in listed]
        )

    @property
    def nr_free(self) -> int:
        return self.frames.nr_free

    def alloc_pages(self, count: int = 1, flags: int = 0) -> NDArray[np.uint64]:
        """``count`` zeroed frames, each with refcount 1 and the given PG flags."""
        pfns = self.frames.alloc(count)
        self._init(pfns, flags)
        return pfns

    def alloc_contig(self, count: int, align: int, flags: int = 0) -> int:
        """``count`` contiguous zeroed frames aligned to ``align`` frames; returns the first."""
        first = self.frames.alloc_contig(count, align)
        self._init(np.arange(first, first + count, dtype=np.uint64), flags)
        return first

    def _init(self, pfns: NDArray[np.uint64], flags: int) -> None:
        mm = self.memmap
        if pfns.size == 1:  # one frame (a fault's page, a page table): plain ints
            pfn = int(pfns[0])
            k = mm.flat_of(pfn)
            mm.refcount1d[k] = 1
            mm.mapcount1d[k] = 0
            mm.flags1d[k] = flags
            mm.mapping1d[k] = 0
            mm.index1d[k] = 0
            self.mem.discard_frame(pfn, self.page_shift)
            return
        spans = mm.spans(pfns)
        if spans is not None:  # a run of frames (alloc_contig, or a fresh batch): slices
            for srow, lo, hi in spans:
                mm.refcount[srow, lo:hi] = 1
                mm.mapcount[srow, lo:hi] = 0
                mm.flags[srow, lo:hi] = flags
                mm.mapping[srow, lo:hi] = 0
                mm.index[srow, lo:hi] = 0
        else:
            row, col = mm.rows(pfns)
            mm.refcount[row, col] = 1
            mm.mapcount[row, col] = 0
            mm.flags[row, col] = flags
            mm.mapping[row, col] = 0
            mm.index[row, col] = 0
        self.mem.discard_frames(pfns, self.page_shift)

    def page_count(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.int32]:
        if type(pfns) is int and pfns >= 0:  # the scalar fault path
            r, c = self.memmap.row_col(pfns)
            return self.memmap.refcount[r, c : c + 1].copy()
        row, col = self.memmap.rows(_arr(pfns))
        counts: NDArray[np.int32] = self.memmap.refcount[row, col]
        return counts

    def get_page_at(self, pfn: int, k: int) -> None:
        """:meth:`get_page` of one pfn whose struct page the caller located
        (:meth:`MemMap.flat_of` gave ``k``): the scalar fault path takes its reference without
        a second lookup (``folio_get``/``get_page``, include/linux/mm.h)."""
        refcount = self.memmap.refcount1d
        count = refcount.item(k)
        if count <= 0:
            raise VMBug(f"get_page on free page {pfn:#x} (refcount 0)")
        refcount[k] = count + 1
        if self.tracer is not None:
            self._trace("get_page", "include/linux/mm.h:get_page", np.array([pfn], dtype=np.uint64))

    def get_page(self, pfns: int | NDArray[np.uint64]) -> None:
        """Take a reference on each page (a pfn may repeat: one reference per occurrence)."""
        if type(pfns) is int and pfns >= 0:  # the scalar fault path: plain ints
            self.get_page_at(pfns, self.memmap.flat_of(pfns))
            return
        arr = _arr(pfns)
        refcount = self.memmap.refcount
        spans = self.memmap.spans(arr)
        if spans is not None:  # a run of pages (a device range): a slice per section
            done = 0
            for srow, lo, hi in spans:
                dead = np.flatnonzero(refcount[srow, lo:hi] <= 0)
                if dead.size:
                    raise VMBug(f"get_page on free page {int(arr[done + int(dead[0])]):#x} (refcount 0)")
                done += hi - lo
            for srow, lo, hi in spans:
                refcount[srow, lo:hi] += 1
        else:
            row, col = self.memmap.rows(arr)
            freed = refcount[row, col] <= 0
            if freed.any():
                raise VMBug(f"get_page on free page {int(arr[freed][0]):#x} (refcount 0)")
            if _ascending(arr):
                refcount[row, col] += 1
            else:
                np.add.at(refcount, (row, col), 1)
        if self.tracer is not None:
            self._trace("get_page", "include/linux/mm.h:get_page", arr)

    def put_page(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.uint64]:
        """Drop a reference on each page; frees those that reach zero and returns them."""
        if type(pfns) is int and pfns >= 0 and not self._pin_pfns.size:
            return self.put_page_n(pfns, 1)
        arr = _arr(pfns)
        if _ascending(arr):  # what np.unique would answer, without the sort
            uniq, drops = arr, np.ones(arr.shape, dtype=np.int64)
        else:
            uniq, drops = np.unique(arr, return_counts=True)
        return self._put(uniq, drops, arr, "put_page", "mm/swap.c:put_page")

    def put_page_n(self, pfn: int, n: int) -> NDArray[np.uint64]:
        """``n`` :meth:`put_page` references of one page at once (``put_page`` of an array
        holding ``pfn`` ``n`` times, one trace event): the scalar fault path's release
        (do_wp_page drops the PTE's and its temporary reference together), with plain ints.
        Pages with pins outstanding take the batch path, which checks them."""
        if self._pin_pfns.size:
            return self.put_page(np.full(n, pfn, dtype=np.uint64))
        mm = self.memmap
        k = mm.flat_of(pfn)
        after = mm.refcount1d.item(k) - n
        if after < 0:
            raise VMBug(f"put_page on page {pfn:#x}: refcount would go below zero (double free)")
        if after == 0 and mm.mapcount1d.item(k) > 0:
            raise VMBug(f"bad_page: freeing page {pfn:#x} that is still mapped")
        mm.refcount1d[k] = after
        if self.tracer is not None:
            self._trace("put_page", "mm/swap.c:put_page", np.full(n, pfn, dtype=np.uint64))
        if after:
            return np.zeros(0, dtype=np.uint64)
        mm.flags1d[k] = 0
        mm.mapping1d[k] = 0
        gone = np.array([pfn], dtype=np.uint64)
        self.frames.free(gone)
        return gone

    def _put(
        self,
        uniq: NDArray[np.uint64],
        drops: NDArray[np.int64],
        arr: NDArray[np.uint64],
        event: str,
        func: str,
        unpinned: NDArray[np.int64] | None = None,
    ) -> NDArray[np.uint64]:
        row, col = self.memmap.rows(uniq)
        after = self.memmap.refcount[row, col] - drops
        if (after < 0).any():
            bad = int(uniq[after < 0][0])
            raise VMBug(f"{event} on page {bad:#x}: refcount would go below zero (double free)")
        if self._pin_pfns.size:
            held = self.pin_count(uniq) - (0 if unpinned is None else unpinned)
            short = after < held * self._pin_bias
            if short.any():
                i = int(np.flatnonzero(short)[0])
                raise VMBug(
                    f"{event} on page {int(uniq[i]):#x} would drop a reference its {int(held[i])} "
                    "FOLL_PIN pin(s) hold: a pinned page is released with unpin_user_page"
                )
        freeing = after == 0
        mapped = self.memmap.mapcount[row[freeing], col[freeing]] > 0
        if mapped.any():
            raise VMBug(f"bad_page: freeing page {int(uniq[freeing][mapped][0]):#x} that is still mapped")
        self.memmap.refcount[row, col] = after
        if self.tracer is not None:
            self._trace(event, func, arr)
        gone: NDArray[np.uint64] = uniq[freeing]
        if gone.size:
            r, c = self.memmap.rows(gone)
            self.memmap.flags[r, c] = 0
            self.memmap.mapping[r, c] = 0
            self.frames.free(gone)
        return gone

    def free_pages(self, pfns: int | NDArray[np.uint64]) -> None:
        """``__free_pages``: the caller's reference must be the last one."""
        arr = _arr(pfns)
        if arr.size == 1 and not self._pin_pfns.size:  # one page (a page table): plain ints
            pfn = int(arr[0])
            count = self.memmap.refcount1d.item(self.memmap.flat_of(pfn))
            if count == 0:
                raise VMBug(f"free_pages: page {pfn:#x} is already free (double free)")
            if count > 1:
                raise VMBug(f"free_pages: page {pfn:#x} still has {count - 1} other reference(s)")
            self.put_page_n(pfn, 1)
            return
        if not _ascending(arr) and np.unique(arr).size != arr.size:
            raise VMBug("free_pages: the same page appears twice (double free)")
        counts = self.page_count(arr)
        if (counts == 0).any():
            raise VMBug(f"free_pages: page {int(arr[counts == 0][0]):#x} is already free (double free)")
        if (counts > 1).any():
            i = int(np.flatnonzero(counts > 1)[0])
            raise VMBug(
                f"free_pages: page {int(arr[i]):#x} still has {int(counts[i]) - 1} other reference(s)"
            )
        self.put_page(arr)

    # -- FOLL_PIN (mm/gup.c try_grab_folio / gup_put_folio; the rules live in mm/gup.py) ------
    def pin_count(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.int64]:
        """Exact FOLL_PIN pins held on each page (0 for a page never pinned)."""
        arr = _arr(pfns)
        n = self._pin_pfns.size
        if n == 0:
            return np.zeros(arr.shape, dtype=np.int64)
        idx = np.minimum(np.searchsorted(self._pin_pfns, arr), n - 1)
        hit = self._pin_pfns[idx] == arr
        counts: NDArray[np.int64] = np.where(hit, self._pin_counts[idx], 0)
        return counts

    def _pin_ledger(self, uniq: NDArray[np.uint64], delta: NDArray[np.int64]) -> None:
        pfns = np.concatenate([self._pin_pfns, uniq])
        u, inv = np.unique(pfns, return_inverse=True)
        counts = np.zeros(u.size, dtype=np.int64)
        np.add.at(counts, inv, np.concatenate([self._pin_counts, delta]))
        keep = counts != 0
        self._pin_pfns, self._pin_counts = u[keep], counts[keep]

    def _check_bias(self, bias: int) -> None:
        if bias <= 0 or (self._pin_pfns.size and bias != self._pin_bias):
            raise VMBug(f"pin bias {bias} differs from the {self._pin_bias} of the pins outstanding")
        self._pin_bias = bias

    def pin_pages(self, pfns: int | NDArray[np.uint64], bias: int = GUP_PIN_COUNTING_BIAS) -> None:
        """One FOLL_PIN per occurrence: refcount += ``bias`` and the pin is recorded."""
        arr = _arr(pfns)
        if not arr.size:
            return
        self._check_bias(bias)
        uniq, n = np.unique(arr, return_counts=True)
        row, col = self.memmap.rows(uniq)
        dead = self.memmap.refcount[row, col] <= 0
        if dead.any():
            raise VMBug(f"pin on free page {int(uniq[dead][0]):#x} (refcount 0)")
        self.memmap.refcount[row, col] += (n * bias).astype(np.int32)
        self._pin_ledger(uniq, n.astype(np.int64))
        if self.tracer is not None:
            self._trace("pin_page", "mm/gup.c:try_grab_folio", arr)

    def unpin_pages(
        self, pfns: int | NDArray[np.uint64], bias: int = GUP_PIN_COUNTING_BIAS
    ) -> NDArray[np.uint64]:
        """Drop one pin per occurrence (``bias`` references each); frees pages that reach zero.

        An unpin the page holds no pin for is a :class:`VMBug` before anything changes.
        """
        arr = _arr(pfns)
        if not arr.size:
            return arr
        uniq, n = np.unique(arr, return_counts=True)
        n = n.astype(np.int64)
        held = self.pin_count(uniq)
        short = held < n
        if short.any():
            i = int(np.flatnonzero(short)[0])
            raise VMBug(
                f"unpin_user_page on page {int(uniq[i]):#x} {int(n[i])} time(s), but it holds "
                f"{int(held[i])} pin(s) (an unpin without a pin, or of a FOLL_GET reference)"
            )
        self._check_bias(bias)
        gone = self._put(uniq, n * bias, arr, "unpin_page", "mm/gup.c:gup_put_folio", unpinned=n)
        self._pin_ledger(uniq, -n)
        return gone

    def pinned(self) -> tuple[PinnedPage, ...]:
        """Every page still pinned, by pfn."""
        if not self._pin_pfns.size:
            return ()
        refs = self.page_count(self._pin_pfns)
        return tuple(
            PinnedPage(int(p), int(c), int(r))
            for p, c, r in zip(self._pin_pfns.tolist(), self._pin_counts.tolist(), refs.tolist(), strict=True)
        )

    @property
    def has_pins(self) -> bool:
        return bool(self._pin_pfns.size)

    def leaks(self) -> LeakReport:
        """Allocated RAM pages by kind: what is still held (all zero after a clean teardown).

        Pages still pinned count under "pinned" as well, and the report names them by pfn.
        """
        used = np.flatnonzero(~self.free_mask()).astype(np.uint64) + np.uint64(self.frames.start_pfn)
        used = used[~self.frames.is_reserved(used)]  # boot reservations are never handed out
        out = LeakReport()
        if self._pin_pfns.size:
            out.pinned = self.pinned()
        if used.size == 0:
            return out
        row, col = self.memmap.rows(used)
        flags = self.memmap.flags[row, col]
        for name, bit in (
            ("pagetable", PG.pagetable),
            ("anon", PG.anon),
            ("driver", PG.driver),
            ("reserved", PG.reserved),
        ):
            n = int(((flags & np.uint32(bit)) != 0).sum())
            if n:
                out[name] = n
        other = int(((flags & np.uint32(PG.pagetable | PG.anon | PG.driver | PG.reserved)) == 0).sum())
        if other:
            out["other"] = other
        if out.pinned:
            out["pinned"] = len(out.pinned)
        return out

    def free_mask(self) -> NDArray[np.bool_]:
        """True for each RAM frame that is free."""
        return ~self.frames.is_used(np.arange(self.frames.start_pfn, self.frames.end_pfn, dtype=np.uint64))
