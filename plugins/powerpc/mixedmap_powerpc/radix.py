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

from mixedmap import PageTableFormat
from mixedmap_powerpc.ops_base import DirEntry
from mixedmap_powerpc.pte618 import DIR_MASKED_BITS, PRESENT, Pte618Ops

#: RADIX_PTE_NONE_MASK: an empty PTE can still see an R or C write-back.
RADIX_PTE_NONE_MASK: Final = 0x180
#: ``RADIX_{PMD,PUD,P4D}_BAD_BITS``: SW0, the leaf bit and reserved bits 7:5.
RADIX_BAD_BITS: Final = 0x6000_0000_0000_00E0
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

    A directory entry is ``__pa(table) | V | NLS``, where NLS is the index size of the next
    table Linux writes (``RADIX_PGD_VAL_BITS = V | RADIX_PUD_INDEX_SIZE`` and so on:
    0x8000000000000009 for a 512-entry table). ``radix__p?d_bad`` rejects
    ``RADIX_*_BAD_BITS``, whose leaf bit only matters where no leaf may be (the PGD): at
    the PUD and PMD a leaf is tested first. All of it arrived with radix support in 4.7.
    """

    NO_LEAF = "ppc64/{mode}: no leaf at level {level} (radix leaves: 2 MiB at pmd, 1 GiB at pud)"

    def __init__(self, fmt: PageTableFormat) -> None:
        nls = tuple(lv.index_bits for lv in fmt.levels[1:])
        dirs = tuple(DirEntry(link=PDE_VALID | n, masked=DIR_MASKED_BITS, bad=RADIX_BAD_BITS) for n in nls)
        super().__init__(fmt, none_mask=RADIX_PTE_NONE_MASK, dirs=dirs)

    def process_table_entry(self, pgd_pa: int) -> int:
        """Process-table doubleword 0 for this tree (see :func:`process_table_entry`)."""
        return process_table_entry(pgd_pa)

    def partition_table_entry(self, pgd_pa: int) -> int:
        """Partition-table doubleword 0 with ``PATB_HR`` (see :func:`partition_table_entry`)."""
        return partition_table_entry(pgd_pa)
