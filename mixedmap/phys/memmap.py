"""The memmap: which memory sections have ``struct page`` arrays, and the default pfn_valid.

Models SPARSEMEM as in 2.6.27 ``include/linux/mmzone.h``: ``pfn_valid(pfn)`` is true exactly
when the pfn's section number is in range and that section has a memmap. Device memory
(DCSS, axonram) lies in sections without one, which is the whole point of VM_MIXEDMAP.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap.arch import MemoryModel
from mixedmap.errors import AddressError
from mixedmap.plugin import hookimpl


class MemMap:
    """Section bookkeeping for one machine (struct-page arrays arrive with issue 3)."""

    def __init__(self, model: MemoryModel, page_shift: int) -> None:
        self.model = model
        self.page_shift = page_shift
        self.pfn_section_shift = model.section_size_bits - page_shift
        self.nr_sections = 1 << (model.max_physmem_bits - model.section_size_bits)
        self._has_memmap = np.zeros(0, dtype=np.bool_)

    def add_sections(self, start_pfn: int, nr_pages: int) -> None:
        """Give every section overlapping [start_pfn, start_pfn + nr_pages) a memmap."""
        first = start_pfn >> self.pfn_section_shift
        last = (start_pfn + nr_pages - 1) >> self.pfn_section_shift
        if last >= self.nr_sections:
            raise AddressError(
                f"memory up to pfn {start_pfn + nr_pages - 1:#x} is beyond MAX_PHYSMEM_BITS="
                f"{self.model.max_physmem_bits}"
            )
        if last >= self._has_memmap.size:
            grown = np.zeros(last + 1, dtype=np.bool_)
            grown[: self._has_memmap.size] = self._has_memmap
            self._has_memmap = grown
        self._has_memmap[first : last + 1] = True

    @property
    def sections(self) -> NDArray[np.int64]:
        """Section numbers that have a memmap."""
        return np.flatnonzero(self._has_memmap)

    def pfn_valid(self, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """Generic SPARSEMEM pfn_valid (2.6.27 ``include/linux/mmzone.h``)."""
        sec = np.asarray(pfns, dtype=np.uint64) >> np.uint64(self.pfn_section_shift)
        inside = sec < np.uint64(self._has_memmap.size)
        out = np.zeros(sec.shape, dtype=np.bool_)
        out[inside] = self._has_memmap[sec[inside].astype(np.int64)]
        return out


class DefaultPfnValid:
    """The core's fallback implementation of ``mixedmap_pfn_valid`` (runs last)."""

    @hookimpl(trylast=True)
    def mixedmap_pfn_valid(self, memmap: MemMap, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        return memmap.pfn_valid(pfns)
