"""Page-table memory: tables are carved from the machine's RAM as the kernel carves them.

Whole-page and multi-page tables (x86's 4 KiB, s390's 16 KiB region/segment tables,
radix's 64 KiB PGD) take aligned contiguous frames; tables smaller than a page (s390's 2 KiB
page tables in 2.6.27, radix-64K's 256-byte PTE tables) are fragments of a page shared the
way ``page_table_alloc``/``pte_fragment_alloc`` share it, so the byte count a user sees is the
kernel's.
"""

from __future__ import annotations

import numpy as np

from mixedmap.arch import Level
from mixedmap.errors import ArchSpecError
from mixedmap.phys.mem import PhysMem
from mixedmap.phys.memmap import PG
from mixedmap.phys.page_alloc import PageAllocator


class TableAllocator:
    """Allocates and frees page-table memory of one machine."""

    def __init__(self, pages: PageAllocator, mem: PhysMem, page_shift: int) -> None:
        self._pages = pages
        self._mem = mem
        self._page_shift = page_shift
        self._page_size = 1 << page_shift
        # fragment size -> {page pa: bitmask of used fragments}
        self._frag_pages: dict[int, dict[int, int]] = {}
        self._bytes = 0

    @property
    def bytes_held(self) -> int:
        """RAM held for page tables, counting partly used fragment pages whole."""
        return self._bytes

    def alloc(self, level: Level, empty: int, entry_size: int, byteorder: str) -> int:
        """A new table for ``level`` filled with ``empty`` entries; returns its address."""
        size = level.alloc_bytes
        if size >= self._page_size:
            nframes = -(-size // self._page_size)
            align = max(1, level.align >> self._page_shift)
            pa = self._pages.alloc_contig(nframes, align, PG.pagetable) << self._page_shift
            self._bytes += nframes * self._page_size
        else:
            if size & (size - 1) or level.align > size:
                raise ArchSpecError(
                    f"level {level.name}: fragment size {size} must be a power of two >= align"
                )
            pa = self._alloc_fragment(size)
        self._mem.fill_u64(pa, level.entries, empty, byteorder)
        return pa

    def _alloc_fragment(self, size: int) -> int:
        pages = self._frag_pages.setdefault(size, {})
        per_page = self._page_size // size
        full = (1 << per_page) - 1
        for page, used in pages.items():
            if used != full:
                slot = (~used & (used + 1)).bit_length() - 1
                pages[page] = used | (1 << slot)
                return page + slot * size
        page = int(self._pages.alloc_pages(1, PG.pagetable)[0]) << self._page_shift
        self._bytes += self._page_size
        pages[page] = 1
        return page

    def free(self, level: Level, pa: int) -> None:
        """Return a table; its bytes read as zero afterwards."""
        size = level.alloc_bytes
        if size >= self._page_size:
            nframes = -(-size // self._page_size)
            self._mem.discard(pa, nframes * self._page_size)
            first = pa >> self._page_shift
            self._pages.free_pages(np.arange(first, first + nframes, dtype=np.uint64))
            self._bytes -= nframes * self._page_size
            return
        pages = self._frag_pages[size]
        page = pa & ~(self._page_size - 1)
        slot = (pa - page) // size
        pages[page] &= ~(1 << slot)
        self._mem.write(pa, bytes(size))
        if pages[page] == 0:
            del pages[page]
            self._mem.discard(page, self._page_size)
            self._pages.free_pages(page >> self._page_shift)
            self._bytes -= self._page_size
