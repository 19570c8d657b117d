"""What both kernel eras share: the ASCE, the walk between tables and the region entries.

Linux has no fixed s390 page-table depth: the ASCE's designation type picks the first table
(region-first, -second, -third or segment) and everything below it follows the
architecture. A mode here is one such depth; ``fmt.levels`` runs from the ASCE's table down
to the page table, so a level index ``i`` maps to a hardware table type by its shift.

:class:`DatOps` is the base both profiles' helpers build on: what ``pgtable.h`` (2.6.26/2.6.27
``include/asm-s390/pgtable.h``, 6.18 ``arch/s390/include/asm/pgtable.h``) defines alike --
the region-table entries, the empty values ``crst_table_init`` and ``pte_clear`` write, the
user ASCE bits, ``pte_pfn`` -- lives here once. :mod:`mixedmap_s390.linux26` and
:mod:`mixedmap_s390.linux618` add the leaf PTE, the segment entry and the region ``_none``/
``_bad`` tests, which is where the two eras differ.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Final

from mixedmap import ENTRY_BAD, ENTRY_NONE, ENTRY_TABLE, PageTableFormat, PteOps, bits
from mixedmap.bits import Value
from mixedmap_s390 import hw

# -- Linux constants both eras define alike (2.6.2x spells ``_INV`` for ``_INVALID``) --------
PAGE_MASK: Final = 0xFFFF_FFFF_FFFF_F000
#: ``_PAGE_INVALID``: the hardware I bit; an empty PTE is exactly this (2.6.2x also calls it
#: ``_PAGE_TYPE_EMPTY``).
PAGE_INVALID: Final = hw.PTE_I
#: ``_PAGE_PROTECT`` (2.6.2x ``_PAGE_RO``): the hardware P bit.
PAGE_PROTECT: Final = hw.PTE_P
REGION_ENTRY_INVALID: Final = hw.REGION_I  # 0x20
REGION_ENTRY_TYPE_MASK: Final = hw.REGION_TT  # 0x0C
REGION_ENTRY_LENGTH: Final = hw.REGION_TL  # 0x03
#: ``_REGION1_ENTRY`` (defined in 2.6.2x, never used there before 5-level tables in 4.12).
REGION1_ENTRY: Final = hw.TYPE_REGION1 | REGION_ENTRY_LENGTH  # 0x0F
REGION1_ENTRY_EMPTY: Final = hw.TYPE_REGION1 | REGION_ENTRY_INVALID  # 0x2C
REGION2_ENTRY: Final = hw.TYPE_REGION2 | REGION_ENTRY_LENGTH  # 0x0B
REGION2_ENTRY_EMPTY: Final = hw.TYPE_REGION2 | REGION_ENTRY_INVALID  # 0x28
#: ``_REGION3_ENTRY``; 6.18 also ORs ``_REGION3_ENTRY_PRESENT`` (0x01), a bit TL already has.
REGION3_ENTRY: Final = hw.TYPE_REGION3 | REGION_ENTRY_LENGTH  # 0x07
REGION3_ENTRY_EMPTY: Final = hw.TYPE_REGION3 | REGION_ENTRY_INVALID  # 0x24
SEGMENT_ENTRY_INVALID: Final = hw.SEGMENT_I  # 0x20
#: ``_SEGMENT_ENTRY_LARGE``: the format-control bit of a 1 MiB segment leaf (EDAT-1).
SEGMENT_ENTRY_LARGE: Final = hw.SEGMENT_FC  # 0x400
#: ``_ASCE_SPACE_SWITCH | _ASCE_PRIVATE_SPACE | _ASCE_ALT_EVENT``.
ASCE_USER_BITS: Final = hw.ASCE_SPACE_SWITCH | hw.ASCE_PRIVATE_SPACE | hw.ASCE_ALT_EVENT

#: Hardware table type (the two-bit DT/TT code) of the table a level's entries live in.
TYPE_BY_SHIFT: Mapping[int, int] = {
    hw.REGION1_SHIFT: hw.TYPE_REGION1,
    hw.REGION2_SHIFT: hw.TYPE_REGION2,
    hw.REGION3_SHIFT: hw.TYPE_REGION3,
    hw.SEGMENT_SHIFT: hw.TYPE_SEGMENT,
}


def protection_map(
    *, none: int, read: int, exec_: int, shared_write: int, shared_write_exec: int
) -> tuple[int, ...]:
    """``__P000..__S111`` in the shape both eras share (index VM_READ=1 | VM_WRITE=2 |
    VM_EXEC=4 | VM_SHARED=8): write implies read and exec implies read, private mappings
    never get a writable prot (COW), and only shared writable ones do. 2.6.2x spells it out
    as ``__P000``..``__S111`` in ``include/asm-s390/pgtable.h``; 6.18 fills it in
    ``setup_protection_map()`` (``arch/s390/mm/mmap.c``)."""
    private = (none, read, read, read, exec_, exec_, exec_, exec_)
    shared = (none, read, shared_write, shared_write, exec_, exec_, shared_write_exec, shared_write_exec)
    return private + shared


def table_bits(segment_entry: int) -> Mapping[int, int]:
    """Low bits Linux ORs into a table origin per level shift (``pgd/p4d/pud/pmd_populate``):
    ``_REGIONn_ENTRY`` in every profile, and the profile's ``_SEGMENT_ENTRY`` for a page table."""
    return {
        hw.REGION1_SHIFT: REGION1_ENTRY,
        hw.REGION2_SHIFT: REGION2_ENTRY,
        hw.REGION3_SHIFT: REGION3_ENTRY,
        hw.SEGMENT_SHIFT: segment_entry,
    }


class DatOps(PteOps):
    """ASCE, table pointers and table origins for one (depth, kernel) pair.

    Subclasses supply the kernel's leaf-PTE helpers, its ``_SEGMENT_ENTRY`` (through
    ``TABLE_BITS = table_bits(...)``) and its ``entry_kind`` rules.
    """

    #: Low bits Linux ORs into a table origin, per level shift (see :func:`table_bits`).
    TABLE_BITS: ClassVar[Mapping[int, int]]
    #: Value of an empty entry per level shift (what crst_table_init/pte_clear write): the
    #: same in every profile.
    EMPTY: ClassVar[Mapping[int, int]] = {
        hw.REGION1_SHIFT: REGION1_ENTRY_EMPTY,
        hw.REGION2_SHIFT: REGION2_ENTRY_EMPTY,
        hw.REGION3_SHIFT: REGION3_ENTRY_EMPTY,
        hw.SEGMENT_SHIFT: SEGMENT_ENTRY_INVALID,
        hw.PAGE_SHIFT: PAGE_INVALID,
    }
    #: Bits the ASCE of a user address space carries besides origin and type.
    ASCE_BITS: ClassVar[int] = ASCE_USER_BITS

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

    @staticmethod
    def _frame(pfn: Value) -> Value:
        """The frame address ``pfn << PAGE_SHIFT`` within 64 bits."""
        return (pfn << hw.PAGE_SHIFT) & bits.ALL64

    def _region_kind(self, shift: int, entry: Value, none: Value, bad_bits: int) -> Value:
        """A region entry's kind once the profile has decided ``none``: a table when I is
        clear, the type matches the table, the length is 3 and no bit of ``bad_bits`` is set
        (``pgd/p4d/pud_bad``); anything else is bad."""
        head = REGION_ENTRY_INVALID | REGION_ENTRY_TYPE_MASK | REGION_ENTRY_LENGTH
        tt = self.TABLE_BITS[shift] & REGION_ENTRY_TYPE_MASK
        table = ((entry & head) == (tt | REGION_ENTRY_LENGTH)) & ((entry & bad_bits) == 0)
        return bits.select(none, ENTRY_NONE, bits.select(table, ENTRY_TABLE, ENTRY_BAD))

    def _leaf_level(self, i: int) -> None:
        if not (self._is_segment(i) and self.edat1):
            name = self.fmt.levels[i].name
            raise ValueError(
                f"s390x/{self.fmt.mode} (profile {self.fmt.profile}): level {name} has no large-page "
                "leaves (only segment entries with EDAT-1, option edat1=True)"
            )

    # -- leaf PTE: what both eras compute alike --------------------------------------------------
    def pte_pfn(self, pte: Value) -> Value:
        """``pte_val(x) >> PAGE_SHIFT``."""
        return pte >> hw.PAGE_SHIFT

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
