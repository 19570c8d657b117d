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
from mixedmap_powerpc.pte618 import DIR_MASKED_BITS, H_PAGE_4K_PFN_64K, PTE, Pte618Ops, hpteflags

#: ``HASH_{PGD,PUD,PMD}_VAL_BITS``.
HASH_VAL_BITS: Final = 0x8000_0000_0000_0000
#: ``H_PAGE_THP_HUGE`` (= ``H_PAGE_4K_PFN``) marks a THP PMD under hash with 64 KiB pages.
H_PAGE_THP_HUGE: Final = H_PAGE_4K_PFN_64K


class Hash618Ops(Pte618Ops):
    """``hash.h`` + ``pgalloc.h`` of 6.18 for one page size.

    ``bad[i]`` is the ``p?d_bad`` mask of upper level i (``None``: only zero is tested).
    """

    def __init__(self, fmt: PageTableFormat, *, bad: tuple[int | None, ...]) -> None:
        super().__init__(fmt, none_mask=hpteflags(fmt.page_shift))
        self._bad = bad

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """``p?d_populate``: ``__pa(table) | HASH_*_VAL_BITS``."""
        self._upper(i)
        return table_pa | HASH_VAL_BITS

    def entry_kind(self, i: int, entry: Value) -> Value:
        """``p?d_none`` / ``p?d_leaf`` / ``hash__p?d_bad``; a leaf where none may be is bad."""
        self._upper(i)
        leaf = (entry & PTE) != 0
        bad_bits = self._bad[i]
        bad = leaf if bad_bits is None else leaf | ((entry & bad_bits) != 0)
        if self.fmt.levels[i].leaf_ok:
            rest = bits.select(leaf, ENTRY_LEAF, bits.select(bad, ENTRY_BAD, ENTRY_TABLE))
        else:
            rest = bits.select(bad, ENTRY_BAD, ENTRY_TABLE)
        return bits.select(entry == 0, ENTRY_NONE, rest)

    def table_pa(self, i: int, entry: Value) -> Value:
        """``__pa(p?d_pgtable(e))``: the entry without ``PMD_MASKED_BITS``."""
        self._upper(i)
        return bits.clear(entry, DIR_MASKED_BITS)

    def _leaf_level(self, i: int) -> None:
        self._upper(i)
        if not self.fmt.levels[i].leaf_ok:
            raise UnsupportedOperation(
                f"ppc64/{self.fmt.mode} (6.18): no leaf at level {self.fmt.levels[i].name} "
                "(hash: THP only at the pmd with 64 KiB pages)"
            )

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pfn_pmd`` with ``hash__pmd_mkhuge``: adds ``_PAGE_PTE | H_PAGE_THP_HUGE``."""
        self._leaf_level(i)
        return (((pfn << self._shift) & ALL64) & self._rpn) | prot | PTE | H_PAGE_THP_HUGE

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """``pmd_pfn``: ``pte_pfn`` of the entry."""
        self._leaf_level(i)
        return (entry & self._rpn) >> self._shift
