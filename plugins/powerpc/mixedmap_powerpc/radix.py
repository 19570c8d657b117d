"""The Power ISA 3.0 radix tree as Linux 6.18 builds it (POWER9 and later).

A directory entry (PDE) is ``V | NLB | NLS``: valid bit 63, the next table's real address and
log2 of its entry count; Linux writes ``__pa(table) | RADIX_*_VAL_BITS``. An entry with the L
bit (``_PAGE_PTE``, bit 62) is a leaf at any level the MMU supports: 2 MiB at the PMD and
1 GiB at the PUD level. The root is a process-table entry: ``RTS | RPDB | RPDS``.
(L618 ``arch/powerpc/include/asm/book3s/64/radix.h``, ``pgalloc.h``, ``pgtable.h``,
``mm/book3s64/radix_pgtable.c``; Power ISA v3.0B Book III "Radix Tree Translation")
"""

from __future__ import annotations

from typing import Final

from mixedmap import (
    ENTRY_BAD,
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    PageTableFormat,
    UnsupportedOperation,
    bits,
)
from mixedmap.bits import ALL64, Value
from mixedmap_powerpc.pte618 import DIR_MASKED_BITS, PRESENT, PTE, Pte618Ops

#: RADIX_PTE_NONE_MASK: an empty PTE can still see an R or C write-back.
RADIX_PTE_NONE_MASK: Final = 0x180
#: ``RADIX_{PMD,PUD,P4D}_BAD_BITS``: SW0, the leaf bit and reserved bits 7:5.
RADIX_BAD_BITS: Final = 0x6000_0000_0000_00E0
#: The same without the leaf bit: for levels that may hold leaves (pmd_leaf is tested first).
RADIX_BAD_BITS_NONLEAF: Final = RADIX_BAD_BITS ^ PTE
#: Directory-entry fields (ISA; QEMU ``R_PDE_NLB``/``R_PDE_NLS``).
PDE_VALID: Final = PRESENT
PDE_NLB: Final = 0x0FFF_FFFF_FFFF_FF00
PDE_NLS: Final = 0x1F
#: ``RADIX_PGD_INDEX_SIZE``: the root directory has 2^13 entries (RPDS).
RADIX_PGD_INDEX_SIZE: Final = 13
#: ``radix__get_tree_size()``: RTS = 52 - 31 = 21 = 0b10101, split over bits 62:61 and 7:5.
RADIX_TREE_SIZE: Final = (0x5 << 5) | (0x2 << 61)
#: ``PATB_HR``: host radix, in partition-table doubleword 0.
PATB_HR: Final = 0x8000_0000_0000_0000


def process_table_entry(pgd_pa: int) -> int:
    """Process-table doubleword 0 Linux writes for a PGD: ``RTS | __pa(pgd) | RPDS``."""
    return RADIX_TREE_SIZE | pgd_pa | RADIX_PGD_INDEX_SIZE


def partition_table_entry(pgd_pa: int) -> int:
    """Partition-table doubleword 0 for a host-radix partition whose tree is at ``pgd_pa``."""
    return process_table_entry(pgd_pa) | PATB_HR


class RadixOps(Pte618Ops):
    """``radix.h`` + ``pgalloc.h`` for one page size: directory entries, leaves, the root.

    ``next_index_bits[i]`` is the NLS Linux writes into a level-i entry (the next table's
    index size): ``RADIX_PGD_VAL_BITS = V | RADIX_PUD_INDEX_SIZE`` and so on.
    """

    def __init__(self, fmt: PageTableFormat) -> None:
        super().__init__(fmt, none_mask=RADIX_PTE_NONE_MASK)
        self._nls = tuple(lv.index_bits for lv in fmt.levels[1:])

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """``p?d_populate``: ``__pa(table) | V | NLS`` (0x8000000000000009 for a 512-entry table)."""
        self._upper(i)
        return table_pa | PDE_VALID | self._nls[i]

    def entry_kind(self, i: int, entry: Value) -> Value:
        """``p?d_none`` / ``p?d_leaf`` (``_PAGE_PTE``) / ``radix__p?d_bad``, in the walkers' order.

        A leaf where the kernel never puts one (the PGD) is bad: RADIX_P4D_BAD_BITS has the
        leaf bit.
        """
        self._upper(i)
        none = entry == 0
        if self.fmt.levels[i].leaf_ok:
            leaf = (entry & PTE) != 0
            bad = (entry & RADIX_BAD_BITS_NONLEAF) != 0
            rest = bits.select(leaf, ENTRY_LEAF, bits.select(bad, ENTRY_BAD, ENTRY_TABLE))
        else:
            rest = bits.select((entry & RADIX_BAD_BITS) != 0, ENTRY_BAD, ENTRY_TABLE)
        return bits.select(none, ENTRY_NONE, rest)

    def table_pa(self, i: int, entry: Value) -> Value:
        """``__pa(p?d_pgtable(e))``: the entry without ``PMD_MASKED_BITS`` (V, L and NLS)."""
        self._upper(i)
        return bits.clear(entry, DIR_MASKED_BITS)

    def _leaf_level(self, i: int) -> None:
        self._upper(i)
        if not self.fmt.levels[i].leaf_ok:
            raise UnsupportedOperation(
                f"ppc64/{self.fmt.mode}: no leaf at level {self.fmt.levels[i].name} "
                "(radix leaves: 2 MiB at pmd, 1 GiB at pud)"
            )

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pfn_pmd``/``pfn_pud``: ``((pfn << PAGE_SHIFT) & PTE_RPN_MASK) | prot | _PAGE_PTE``."""
        self._leaf_level(i)
        return (((pfn << self._shift) & ALL64) & self._rpn) | prot | PTE

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """``pmd_pfn``/``pud_pfn``: ``pte_pfn`` of the entry."""
        self._leaf_level(i)
        return (entry & self._rpn) >> self._shift

    def process_table_entry(self, pgd_pa: int) -> int:
        """Process-table doubleword 0 for this tree (see :func:`process_table_entry`)."""
        return process_table_entry(pgd_pa)

    def partition_table_entry(self, pgd_pa: int) -> int:
        """Partition-table doubleword 0 with ``PATB_HR`` (see :func:`partition_table_entry`)."""
        return partition_table_entry(pgd_pa)
