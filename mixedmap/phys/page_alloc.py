"""The page allocator: RAM frames with struct-page bookkeeping (``mm/page_alloc.c``'s contract).

``alloc_pages`` hands out zeroed frames with refcount 1; ``get_page``/``put_page`` move the
refcount and the last put frees. The checks the kernel makes in ``free_pages_check``/
``bad_page`` (freeing a free page, a page still mapped, a page with other references) raise
:class:`VMBug` before anything changes, so a refcount bug in a scenario is caught where it
happens instead of surfacing as a leak much later.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import VMBug
from mixedmap.phys.alloc import FrameAllocator
from mixedmap.phys.mem import PhysMem
from mixedmap.phys.memmap import PG, MemMap


def _arr(pfns: int | NDArray[np.uint64] | list[int]) -> NDArray[np.uint64]:
    arr = np.atleast_1d(np.asarray(pfns))
    if arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0:
        raise ValueError(f"negative pfn {int(arr.min())}")
    return arr.astype(np.uint64)


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
        row, col = self.memmap.rows(pfns)
        self.memmap.refcount[row, col] = 1
        self.memmap.mapcount[row, col] = 0
        self.memmap.flags[row, col] = flags
        self.memmap.mapping[row, col] = 0
        self.memmap.index[row, col] = 0
        self.mem.discard_frames(pfns, self.page_shift)

    def page_count(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.int32]:
        row, col = self.memmap.rows(_arr(pfns))
        counts: NDArray[np.int32] = self.memmap.refcount[row, col]
        return counts

    def get_page(self, pfns: int | NDArray[np.uint64]) -> None:
        """Take a reference on each page (a pfn may repeat: one reference per occurrence)."""
        arr = _arr(pfns)
        row, col = self.memmap.rows(arr)
        dead = self.memmap.refcount[row, col] <= 0
        if dead.any():
            raise VMBug(f"get_page on free page {int(arr[dead][0]):#x} (refcount 0)")
        np.add.at(self.memmap.refcount, (row, col), 1)
        if self.tracer is not None:
            self._trace("get_page", "include/linux/mm.h:get_page", arr)

    def put_page(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.uint64]:
        """Drop a reference on each page; frees those that reach zero and returns them."""
        arr = _arr(pfns)
        uniq, drops = np.unique(arr, return_counts=True)
        row, col = self.memmap.rows(uniq)
        after = self.memmap.refcount[row, col] - drops
        if (after < 0).any():
            bad = int(uniq[after < 0][0])
            raise VMBug(f"put_page on page {bad:#x}: refcount would go below zero (double free)")
        freeing = after == 0
        mapped = self.memmap.mapcount[row[freeing], col[freeing]] > 0
        if mapped.any():
            raise VMBug(f"bad_page: freeing page {int(uniq[freeing][mapped][0]):#x} that is still mapped")
        self.memmap.refcount[row, col] = after
        if self.tracer is not None:
            self._trace("put_page", "mm/swap.c:put_page", arr)
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
        if np.unique(arr).size != arr.size:
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

    def leaks(self) -> dict[str, int]:
        """Allocated RAM pages by kind: what is still held (all zero after a clean teardown)."""
        used = np.flatnonzero(~self.free_mask()).astype(np.uint64) + np.uint64(self.frames.start_pfn)
        out: dict[str, int] = {}
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
        return out

    def free_mask(self) -> NDArray[np.bool_]:
        """True for each RAM frame that is free."""
        return ~self.frames.is_used(np.arange(self.frames.start_pfn, self.frames.end_pfn, dtype=np.uint64))
