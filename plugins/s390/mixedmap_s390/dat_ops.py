"""What both kernel eras share: the ASCE and the walk between tables.

Linux has no fixed s390 page-table depth: the ASCE's designation type picks the first table
(region-first, -second, -third or segment) and everything below it follows the
architecture. A mode here is one such depth; ``fmt.levels`` runs from the ASCE's table down
to the page table, so a level index ``i`` maps to a hardware table type by its shift.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from mixedmap import PageTableFormat, PteOps, bits
from mixedmap.bits import Value
from mixedmap_s390 import hw

#: Hardware table type (the two-bit DT/TT code) of the table a level's entries live in.
TYPE_BY_SHIFT: Mapping[int, int] = {
    hw.REGION1_SHIFT: hw.TYPE_REGION1,
    hw.REGION2_SHIFT: hw.TYPE_REGION2,
    hw.REGION3_SHIFT: hw.TYPE_REGION3,
    hw.SEGMENT_SHIFT: hw.TYPE_SEGMENT,
}


class DatOps(PteOps):
    """ASCE, table pointers and table origins for one (depth, kernel) pair.

    Subclasses supply the kernel's leaf-PTE helpers, its table-entry constants
    (``TABLE_BITS``/``EMPTY`` keyed by level shift) and its ``entry_kind`` rules.
    """

    #: Low bits Linux ORs into a table origin, per level shift (pgd/p4d/pud/pmd_populate).
    TABLE_BITS: ClassVar[Mapping[int, int]]
    #: Value of an empty entry per level shift (what crst_table_init/pte_clear write).
    EMPTY: ClassVar[Mapping[int, int]]
    #: Bits the ASCE of a user address space carries besides origin and type.
    ASCE_BITS: ClassVar[int]

    def __init__(self, fmt: PageTableFormat, *, edat1: bool) -> None:
        self.fmt = fmt
        self.edat1 = edat1
        self._shifts = tuple(lv.shift for lv in fmt.levels)
        self._last = len(self._shifts) - 1
        self._asce_type = TYPE_BY_SHIFT[self._shifts[0]]

    # -- helpers for subclasses -------------------------------------------------------------
    def _shift(self, i: int) -> int:
        if not 0 <= i < self._last:
            raise IndexError(f"s390x/{self.fmt.mode}: level {i} is not a region or segment level")
        return self._shifts[i]

    def _is_segment(self, i: int) -> bool:
        return self._shift(i) == hw.SEGMENT_SHIFT

    def _leaf_level(self, i: int) -> None:
        if not (self._is_segment(i) and self.edat1):
            name = self.fmt.levels[i].name
            raise ValueError(
                f"s390x/{self.fmt.mode} (profile {self.fmt.profile}): level {name} has no large-page "
                "leaves (only segment entries with EDAT-1, option edat1=True)"
            )

    # -- upper levels (PteOps) -----------------------------------------------------------------
    def empty_entry(self, i: int) -> int:
        """crst_table_init fills region/segment tables with TT|I (segment: I); page tables
        are filled with the invalid PTE 0x400 (``_PAGE_TYPE_EMPTY`` / ``_PAGE_INVALID``)."""
        if i == self._last:
            return self.EMPTY[hw.PAGE_SHIFT]
        return self.EMPTY[self._shift(i)]

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """pgd/p4d/pud/pmd_populate: the next table's origin OR the level's table bits."""
        return table_pa | self.TABLE_BITS[self._shift(i)]

    def table_pa(self, i: int, entry: Value) -> Value:
        """Region entries hold a 4 KiB-aligned origin, segment entries a 2 KiB-aligned one
        (``_REGION_ENTRY_ORIGIN`` / ``_SEGMENT_ENTRY_ORIGIN``)."""
        origin = hw.SEGMENT_ORIGIN if self._is_segment(i) else hw.REGION_ORIGIN
        return entry & origin

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """A 1 MiB segment frame: bits 63:20 of the entry (``_SEGMENT_ENTRY_ORIGIN_LARGE``,
        2.6.27 ``HPAGE_MASK``), in 4 KiB frames."""
        self._leaf_level(i)
        return (entry & hw.SEGMENT_SFAA) >> hw.PAGE_SHIFT

    def root_value(self, root_pa: int) -> int:
        """The user ASCE: origin | TL=3 | ``_ASCE_USER_BITS`` | DT of the top table
        (``init_new_context``/``crst_table_upgrade``, ``arch/s390/include/asm/mmu_context.h``,
        ``arch/s390/mm/pgalloc.c``; 2.6.27 ``mm->context.asce_bits | __pa(pgd)``)."""
        if not 0 <= root_pa <= bits.ALL64 or root_pa & (hw.PAGE_SIZE - 1):
            raise ValueError(f"s390x: ASCE origin {root_pa:#x} is not a 4 KiB-aligned 64-bit address")
        return root_pa | self.ASCE_BITS | hw.ASCE_TABLE_LENGTH | self._asce_type

    def root_table_pa(self, root: int) -> int:
        """``asce & _ASCE_ORIGIN``."""
        return root & hw.ASCE_ORIGIN
