"""Today's (6.18) Linux tree under the hash MMU: software-only, physical links with bit 63.

Under hash the MMU walks the hashed page table; Linux keeps its own tree with the same PTE
encoding as radix. Directory entries are ``__pa(table) | HASH_*_VAL_BITS`` (bit 63), so the
tree differs from radix only in geometry, in ``pte_none`` (the HPTE flags are ignored) and in
what counts as a bad entry (``H_PMD_BAD_BITS = PTE_TABLE_SIZE - 1``,
``H_PUD_BAD_BITS = PMD_TABLE_SIZE - 1``; ``hash__p4d_bad`` only tests for zero). With 64 KiB
pages a PMD may hold a 16 MiB THP leaf (``_PAGE_PTE | H_PAGE_THP_HUGE``).
(L618 ``arch/powerpc/include/asm/book3s/64/hash.h``, ``hash-4k.h``, ``hash-64k.h``,
``pgalloc.h``, ``pgtable.h``)
"""

from __future__ import annotations

from typing import Final

from mixedmap import PageTableFormat
from mixedmap_powerpc.ops_base import DirEntry
from mixedmap_powerpc.pte618 import DIR_MASKED_BITS, H_PAGE_4K_PFN_64K, PTE, Pte618Ops, hpteflags

#: ``HASH_{PGD,PUD,PMD}_VAL_BITS``.
HASH_VAL_BITS: Final = 0x8000_0000_0000_0000
#: ``H_PAGE_THP_HUGE`` (= ``H_PAGE_4K_PFN``) marks a THP PMD under hash with 64 KiB pages.
H_PAGE_THP_HUGE: Final = H_PAGE_4K_PFN_64K


class Hash618Ops(Pte618Ops):
    """``hash.h`` + ``pgalloc.h`` of 6.18 for one page size.

    ``bad[i]`` is the ``p?d_bad`` mask of upper level i (``None``: only zero is tested); a
    leaf (``_PAGE_PTE``) where none may be is bad too. Directory entries hold physical
    addresses with bit 63 since 4.7 ("powerpc/mm/book3s-64: Use physical addresses in upper
    page table tree levels"; 2.6.27 stored ``KERNELBASE + pa``), and a 64K PMD may hold a
    THP leaf since 3.11.
    """

    HUGE_BITS = PTE | H_PAGE_THP_HUGE  # hash__pmd_mkhuge
    NO_LEAF = "ppc64/{mode} (6.18): no leaf at level {level} (hash: THP only at the pmd with 64 KiB pages)"

    def __init__(self, fmt: PageTableFormat, *, bad: tuple[int | None, ...]) -> None:
        dirs = tuple(DirEntry(link=HASH_VAL_BITS, masked=DIR_MASKED_BITS, bad=PTE | (b or 0)) for b in bad)
        super().__init__(fmt, none_mask=hpteflags(fmt.page_shift), dirs=dirs)
