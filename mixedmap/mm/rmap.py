"""struct page bookkeeping the mm paths share: rmap (mapcount), references, RSS.

The helpers take batches (numpy pfn arrays) so zap and fork touch every page of a range with
a handful of numpy operations; the scalar fault path passes one-element arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap.phys.memmap import PG, MemMap
from mixedmap.phys.page_alloc import PageAllocator


def _pfns(pfns: int | NDArray[np.int64] | NDArray[np.uint64]) -> NDArray[np.uint64]:
    return np.atleast_1d(np.asarray(pfns)).astype(np.uint64)


def page_add_file_rmap(memmap: MemMap, pfns: int | NDArray[np.uint64]) -> None:
    """mapcount +1 per occurrence (mm/rmap.c ``page_add_file_rmap``)."""
    if type(pfns) is int and pfns >= 0:  # the scalar fault path: plain ints, no temporaries
        k = memmap.flat_of(pfns)
        mc = memmap.mapcount1d
        mc[k] = mc.item(k) + 1
        return
    memmap.add("mapcount", _pfns(pfns), 1)


def page_dup_rmap(memmap: MemMap, pfns: int | NDArray[np.uint64]) -> None:
    """fork's rmap duplicate: mapcount +1 per occurrence."""
    page_add_file_rmap(memmap, pfns)


_ANON_UPTODATE_INT = int(PG.anon | PG.uptodate)
_PG_ANON = int(PG.anon)
_PG_DIRTY_INT = int(PG.dirty)


def page_add_new_anon_rmap(memmap: MemMap, pfn: int, mm_id: int, index: int) -> None:
    """A fresh anonymous page: mapcount 1, PageAnon, mapping = the mm's anon_vma."""
    if type(pfn) is int and pfn >= 0:  # the scalar fault path: one struct-page lookup
        k = memmap.flat_of(pfn)
        memmap.mapcount1d[k] = 1
        flags = memmap.flags1d
        flags[k] = flags.item(k) | _ANON_UPTODATE_INT
        memmap.mapping1d[k] = mm_id
        memmap.index1d[k] = index
        return
    row, col = memmap.rows(_pfns(pfn))
    memmap.mapcount[row, col] = 1
    memmap.flags[row, col] |= np.uint32(PG.anon | PG.uptodate)
    memmap.mapping[row, col] = mm_id
    memmap.index[row, col] = index


def page_remove_rmap(memmap: MemMap, pfns: int | NDArray[np.uint64]) -> None:
    """mapcount -1 per occurrence (mm/rmap.c ``page_remove_rmap``)."""
    if type(pfns) is int and pfns >= 0:
        k = memmap.flat_of(pfns)
        mc = memmap.mapcount1d
        mc[k] = mc.item(k) - 1
        return
    memmap.add("mapcount", _pfns(pfns), -1)


def is_anon_one(memmap: MemMap, pfn: int) -> bool:
    """``PageAnon`` of one page as a plain bool (the scalar fault path)."""
    return bool(memmap.flags1d.item(memmap.flat_of(pfn)) & _PG_ANON)


def mapcount_one(memmap: MemMap, pfn: int) -> int:
    """``page_mapcount`` of one page as a plain int (the scalar fault path)."""
    return int(memmap.mapcount1d.item(memmap.flat_of(pfn)))


def is_anon(memmap: MemMap, pfns: int | NDArray[np.uint64]) -> NDArray[np.bool_]:
    if type(pfns) is int and pfns >= 0:
        r, c = memmap.row_col(pfns)
        return np.array([memmap.flags[r, c] & np.uint32(PG.anon) != 0], dtype=np.bool_)
    row, col = memmap.rows(_pfns(pfns))
    anon: NDArray[np.bool_] = (memmap.flags[row, col] & np.uint32(PG.anon)) != 0
    return anon


def mapcount(memmap: MemMap, pfns: int | NDArray[np.uint64]) -> NDArray[np.int32]:
    row, col = memmap.rows(_pfns(pfns))
    out: NDArray[np.int32] = memmap.mapcount[row, col]
    return out


def set_page_dirty(memmap: MemMap, pfns: int | NDArray[np.uint64]) -> None:
    if type(pfns) is int and pfns >= 0:
        k = memmap.flat_of(pfns)
        flags = memmap.flags1d
        flags[k] = flags.item(k) | _PG_DIRTY_INT
        return
    row, col = memmap.rows(_pfns(pfns))
    memmap.flags[row, col] |= np.uint32(PG.dirty)


def put_pages(pages: PageAllocator, pfns: int | NDArray[np.uint64]) -> None:
    """Drop one reference per occurrence (page_cache_release / put_page)."""
    if type(pfns) is int and pfns >= 0:
        pages.put_page(pfns)
        return
    arr = _pfns(pfns)
    if arr.size:
        pages.put_page(arr)
