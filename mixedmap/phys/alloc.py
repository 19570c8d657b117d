"""The RAM frame allocator (a model of the buddy allocator's interface, not its internals).

A bitmap over RAM frames answers "is this frame free" for batches; a cursor keeps single
allocations O(1) amortised. Boot reservations (:meth:`FrameAllocator.reserve`) are taken
before anything else and never come back. Double free, freeing a reserved frame and freeing a
frame outside RAM are caught here, because a refcount model that silently frees twice would
hide exactly the bugs users hunt.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import AddressError, OutOfMemory, VMBug


class FrameAllocator:
    """Hands out frames (in units of the arch's base page) from [start_pfn, end_pfn)."""

    def __init__(self, start_pfn: int, end_pfn: int) -> None:
        if end_pfn <= start_pfn:
            raise AddressError(f"empty RAM range [{start_pfn:#x}, {end_pfn:#x})")
        self.start_pfn = start_pfn
        self.end_pfn = end_pfn
        self._used = np.zeros(end_pfn - start_pfn, dtype=np.bool_)
        self._cursor = 0
        self._nr_used = 0
        #: Every frame below this index is in use: contiguous searches start here, so a
        #: GiB of RAM-disk pages at the bottom of RAM is not rescanned per page table.
        self._floor = 0
        #: Boot reservations as (first, end) indices, and the end of the highest: frames the
        #: allocator never hands out nor takes back (see :meth:`reserve`).
        self._reserved: list[tuple[int, int]] = []
        self._reserved_end = 0

    @property
    def nr_frames(self) -> int:
        return self.end_pfn - self.start_pfn

    @property
    def nr_free(self) -> int:
        return self.nr_frames - self._nr_used

    @property
    def nr_reserved(self) -> int:
        return sum(hi - lo for lo, hi in self._reserved)

    @property
    def reserved(self) -> tuple[tuple[int, int], ...]:
        """(first pfn, end pfn) of every boot reservation, ascending."""
        return tuple((lo + self.start_pfn, hi + self.start_pfn) for lo, hi in self._reserved)

    def is_used(self, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        rel = self._rel(pfns)
        return self._used[rel]

    def is_reserved(self, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """True for each frame a boot reservation holds (never free, never allocated)."""
        rel = self._rel(pfns)
        out = np.zeros(rel.shape, dtype=np.bool_)
        for lo, hi in self._reserved:
            out |= (rel >= lo) & (rel < hi)
        return out

    def reserve(self, pfn: int, count: int) -> None:
        """``memblock_reserve`` before the buddy allocator starts: frames [pfn, pfn+count),
        all free, are taken for good (``free`` refuses them)."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        lo = pfn - self.start_pfn
        if lo < 0 or lo + count > self.nr_frames:
            raise AddressError(
                f"reservation [{pfn:#x}, {pfn + count:#x}) is outside RAM [{self.start_pfn:#x}, {self.end_pfn:#x})"
            )
        if self._used[lo : lo + count].any():
            raise AddressError(f"reservation [{pfn:#x}, {pfn + count:#x}) overlaps frames already in use")
        self._used[lo : lo + count] = True
        self._nr_used += count
        self._reserved = sorted([*self._reserved, (lo, lo + count)])
        self._reserved_end = max(self._reserved_end, lo + count)
        self._raise_floor()

    def alloc(self, count: int = 1) -> NDArray[np.uint64]:
        """``count`` free frames (not necessarily contiguous), lowest after the cursor."""
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        if count > self.nr_free:
            raise OutOfMemory(f"need {count} frames, {self.nr_free} free of {self.nr_frames}")
        if count == 1:  # a fault's page: the frame at the cursor is usually free
            one = self._first_free(self._cursor, self.nr_frames)
            if one is None:
                one = self._first_free(0, self._cursor)
            assert one is not None  # nr_free >= 1
            self._used[one] = True
            self._nr_used += 1
            self._cursor = one + 1 if one + 1 < self.nr_frames else 0
            return np.array([one + self.start_pfn], dtype=np.uint64)
        found: list[NDArray[np.int64]] = []
        need = count
        window = max(1 << 16, 2 * count)  # scan in windows: no RAM-sized temporaries
        for lo, hi in ((self._cursor, self.nr_frames), (0, self._cursor)):
            pos = lo
            while need and pos < hi:
                end = min(hi, pos + window)
                free = np.flatnonzero(~self._used[pos:end])[:need] + pos
                found.append(free)
                need -= free.size
                pos = end
        rel = np.concatenate(found)
        self._used[rel] = True
        self._nr_used += count
        self._cursor = int(rel[-1]) + 1 if int(rel[-1]) + 1 < self.nr_frames else 0
        return (rel + self.start_pfn).astype(np.uint64)

    def _first_free(self, lo: int, hi: int) -> int | None:
        """The lowest free frame in [lo, hi) (relative), as :meth:`alloc` would pick it: the
        first frame alone, then windows growing from 64 frames (the next free one is usually
        close), so one page costs no 64 Ki-frame scan."""
        if lo < hi and not self._used[lo]:
            return lo
        pos, step = lo, 64
        while pos < hi:
            end = min(hi, pos + step)
            free = np.flatnonzero(~self._used[pos:end])
            if free.size:
                return pos + int(free[0])
            pos, step = end, min(step * 4, 1 << 16)
        return None

    def alloc_contig(self, count: int, align: int = 1) -> int:
        """First pfn of ``count`` contiguous free frames aligned to ``align`` frames.

        Scans the bitmap window by window (lowest first), so a 64 GiB machine needs no
        RAM-sized temporary for a 16 KiB page table.
        """
        if count <= 0 or align <= 0 or align & (align - 1):
            raise ValueError(f"bad contiguous request count={count} align={align}")
        self._raise_floor()
        if count == 1 and align == 1:  # one frame (a page table): the lowest free is the floor
            if self._floor >= self.nr_frames:
                raise OutOfMemory(f"no {count} contiguous free frames aligned to {align}")
            return self._take(self._floor, 1)
        first = (-self.start_pfn) % align
        lo = first + max(0, self._floor - first) // align * align
        step = max(align, 256)  # small windows first: the floor usually sits next to a hole
        while lo <= self.nr_frames - count:
            hi = min(self.nr_frames, lo + step + count)  # windows overlap by count frames
            used = self._used[lo:hi]
            csum = np.concatenate([[0], np.cumsum(used, dtype=np.int64)])
            starts = np.arange(0, used.size - count + 1, align)
            ok = np.flatnonzero(csum[starts + count] - csum[starts] == 0)
            if ok.size:
                return self._take(lo + int(starts[ok[0]]), count)
            lo += step
            step = min(2 * step, max(align, 1 << 16))
        raise OutOfMemory(f"no {count} contiguous free frames aligned to {align}")

    def _raise_floor(self) -> None:
        """Move the floor up to the lowest free frame (the search stays lowest-first)."""
        pos = self._floor
        if pos < self.nr_frames and not self._used[pos]:
            return  # the floor frame itself is free (the usual case after a free)
        step = 64  # small windows first: the next free frame is usually close
        while pos < self.nr_frames:
            end = min(self.nr_frames, pos + step)
            step = min(step * 4, 1 << 16)
            free = np.flatnonzero(~self._used[pos:end])
            if free.size:
                pos += int(free[0])
                break
            pos = end
        self._floor = pos

    def _take(self, rel: int, count: int) -> int:
        self._used[rel : rel + count] = True
        self._nr_used += count
        return rel + self.start_pfn

    def free(self, pfns: NDArray[np.uint64] | int) -> None:
        """Return frames; freeing a free frame is a kernel bug (``bad_page``)."""
        arr = np.atleast_1d(np.asarray(pfns, dtype=np.uint64))
        rel = self._rel(arr)
        distinct = rel.size < 2 or bool((rel[1:] > rel[:-1]).all())  # ascending: no sort needed
        if not distinct and np.unique(rel).size != rel.size:
            raise VMBug("free: the same frame appears twice in one free")
        bad = ~self._used[rel]
        if bad.any():
            raise VMBug(f"free: frame {int(arr[bad][0]):#x} is not allocated (double free)")
        low = int(rel.min())
        if low < self._reserved_end:  # one comparison unless the batch reaches that low
            if rel.size == 1:  # the single-page free: plain ints
                bad_pfn = low + self.start_pfn if any(lo <= low < hi for lo, hi in self._reserved) else None
            else:
                held = self.is_reserved(arr)
                bad_pfn = int(arr[held][0]) if held.any() else None
            if bad_pfn is not None:
                raise VMBug(f"free: frame {bad_pfn:#x} is reserved at boot (bad_page: PG_reserved)")
        self._used[rel] = False
        self._nr_used -= rel.size
        self._floor = min(self._floor, low)

    def _rel(self, pfns: NDArray[np.uint64]) -> NDArray[np.int64]:
        arr = np.atleast_1d(np.asarray(pfns, dtype=np.uint64))
        out = (arr >= self.start_pfn) & (arr < self.end_pfn)
        if not out.all():
            raise AddressError(
                f"pfn {int(arr[~out][0]):#x} is outside RAM [{self.start_pfn:#x}, {self.end_pfn:#x})"
            )
        return (arr - np.uint64(self.start_pfn)).astype(np.int64)
