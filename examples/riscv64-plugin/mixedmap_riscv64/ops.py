"""The Linux 6.18 riscv helpers as bit operations on ints and numpy uint64 arrays.

Every method is written once with ``&``, ``|``, ``^``, shifts, comparisons and
:mod:`mixedmap.bits`, so the same code answers a scalar ``lookup`` (Python int in, int out)
and a batched ``translate`` (uint64 array in, array out). No ``if`` looks at a value: where
Linux branches on the entry (``pte_pfn`` with a NAPOT bit, the kind of an upper-level
entry) both sides are computed and :func:`mixedmap.bits.select` picks per element.

Models ``arch/riscv/include/asm/pgtable.h``, ``pgtable-64.h`` and ``pgalloc.h`` of 6.18.
"""

from __future__ import annotations

from typing import Final

import numpy as np
from mixedmap import ENTRY_BAD, ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE, PageTableFormat, PteOps, bits
from mixedmap.bits import Value
from numpy.typing import NDArray

from mixedmap_riscv64 import hw, linux

Bools = bool | NDArray[np.bool_]

#: Bits Linux reads as "present" in a PTE: V, or the PROT_NONE alias G on a V=0 entry.
_PRESENT_BITS: Final = linux.PRESENT | linux.PROT_NONE


class Riscv64Ops(PteOps):
    """Helpers of one mode (Sv39 or Sv48) of the riscv64 arch under Linux 6.18."""

    def __init__(self, fmt: PageTableFormat, satp_mode: int) -> None:
        self.fmt = fmt
        self._satp_mode = satp_mode << hw.SATP_MODE_SHIFT
        # pmd_leaf() counts a THP whose V bit is clear (PROT_NONE, or mid-split after
        # pmd_mkinvalid) because pmd_present() also tests _PAGE_PROT_NONE and _PAGE_LEAF;
        # pud_leaf() (and the hardware's terapage) require V.
        self._leaf_needs_v = tuple(lv.name != "pmd" for lv in fmt.levels)
        # pmd_pfn()/pud_pfn(): the frame masked with PMD_MASK/PUD_MASK, in base pages.
        self._leaf_pfn_keep = tuple(bits.ALL64 ^ hw.low_mask(lv.shift - fmt.page_shift) for lv in fmt.levels)

    # -- leaf PTE helpers ---------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``__pte((pfn << _PAGE_PFN_SHIFT) | prot)``; ``ALT_THEAD_PMA`` is a no-op off T-Head."""
        return ((pfn << linux.PFN_SHIFT) & bits.ALL64) | prot

    def pte_pfn(self, pte: Value) -> Value:
        """``__page_val_to_pfn`` (PPN, bits 53:10), and with Svnapot and N=1 ``res & (res - 1)``:
        the lowest set PPN bit encodes the NAPOT size, the frame is what remains.

        The subtraction is safe on both paths: it only matters where ``res`` is non-zero,
        and for ``res == 0`` both ``0 & -1`` (int) and ``0 & 0xffff...`` (uint64) are 0."""
        res = (pte & linux.PFN_MASK) >> linux.PFN_SHIFT
        return bits.select(bits.test(pte, linux.NAPOT), res & (res - 1), res)

    def pte_present(self, pte: Value) -> Bools:
        """``pte_val(pte) & (_PAGE_PRESENT | _PAGE_PROT_NONE)``: PROT_NONE entries are present."""
        return bits.test(pte, _PRESENT_BITS)

    def pte_none(self, pte: Value) -> Bools:
        """``pte_val(pte) == 0``."""
        none: Bools = pte == 0
        return none

    def pte_write(self, pte: Value) -> Bools:
        """``pte_val(pte) & _PAGE_WRITE``."""
        return bits.test(pte, linux.WRITE)

    def pte_mkwrite(self, pte: Value) -> Value:
        """``pte_mkwrite_novma``: set W (6.18 riscv has no shadow-stack variant yet)."""
        return pte | linux.WRITE

    def pte_wrprotect(self, pte: Value) -> Value:
        """Clear W; D stays (no saved-dirty games on riscv)."""
        return bits.clear(pte, linux.WRITE)

    def pte_dirty(self, pte: Value) -> Bools:
        """``pte_val(pte) & _PAGE_DIRTY``."""
        return bits.test(pte, linux.DIRTY)

    def pte_mkdirty(self, pte: Value) -> Value:
        """Set D. No soft-dirty: riscv's ``_PAGE_SOFT_DIRTY`` (bit 59, Svrsw60t59b) is 6.19."""
        return pte | linux.DIRTY

    def pte_mkclean(self, pte: Value) -> Value:
        """Clear D."""
        return bits.clear(pte, linux.DIRTY)

    def pte_young(self, pte: Value) -> Bools:
        """``pte_val(pte) & _PAGE_ACCESSED``."""
        return bits.test(pte, linux.ACCESSED)

    def pte_mkyoung(self, pte: Value) -> Value:
        """Set A."""
        return pte | linux.ACCESSED

    def pte_mkold(self, pte: Value) -> Value:
        """Clear A."""
        return bits.clear(pte, linux.ACCESSED)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """``(pte_val(pte) & _PAGE_CHG_MASK) | newprot``: PFN, A, D, RSW (so SPECIAL), N and
        the reserved bits stay; V R W X U G and the Svpbmt memory type come from ``prot``."""
        return (pte & linux.CHG_MASK) | prot

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry_to_pte(__swp_entry(type, offset))``: type in bits 11:7, offset from
        bit 12; V, R/W/X and G (PROT_NONE) stay clear, so the entry is neither present nor
        none."""
        typ = (swp_type & linux.SWP_TYPE_MASK) << linux.SWP_TYPE_SHIFT
        return typ | ((offset << linux.SWP_OFFSET_SHIFT) & bits.ALL64)

    # -- upper levels ---------------------------------------------------------------------
    def empty_entry(self, i: int) -> int:
        """``p?d_clear()`` write 0."""
        return 0

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """``p?d_populate``: ``(virt_to_pfn(table) << _PAGE_PFN_SHIFT) | _PAGE_TABLE``."""
        return ((table_pa >> hw.PAGE_SHIFT) << linux.PFN_SHIFT) | linux.TABLE

    def entry_kind(self, i: int, entry: Value) -> Value:
        """NONE when zero (``p?d_none``); TABLE when V=1 and R=W=X=0; LEAF when R, W or X is
        set and the level's leaf test holds (``pmd_leaf``: any of them; ``pud_leaf`` and the
        Sv48 terapage: also V); BAD for everything else (``p?d_bad``)."""
        leafbits = bits.test(entry, hw.LEAF)
        valid = bits.test(entry, hw.V)
        leaf_ok = (leafbits & valid) if self._leaf_needs_v[i] else leafbits
        kind = bits.select(valid, ENTRY_TABLE, ENTRY_BAD)
        kind = bits.select(leafbits, bits.select(leaf_ok, ENTRY_LEAF, ENTRY_BAD), kind)
        return bits.select(entry == 0, ENTRY_NONE, kind)

    def table_pa(self, i: int, entry: Value) -> Value:
        """``pfn_to_virt(__page_val_to_pfn(p?d_val(e)))`` as a physical address."""
        return ((entry & linux.PFN_MASK) >> linux.PFN_SHIFT) << hw.PAGE_SHIFT

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pfn_pmd``/``pfn_pud`` (``p?d_mkhuge`` is the identity on riscv): like pfn_pte."""
        return ((pfn << linux.PFN_SHIFT) & bits.ALL64) | prot

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """``pmd_pfn``/``pud_pfn``: ``(__p?d_to_phys(e) & P?D_MASK) >> PAGE_SHIFT``."""
        return ((entry & linux.PFN_MASK) >> linux.PFN_SHIFT) & self._leaf_pfn_keep[i]

    # -- root -------------------------------------------------------------------------------
    def root_value(self, root_pa: int) -> int:
        """satp as ``switch_mm`` writes it: ``virt_to_pfn(pgd) | satp_mode`` with ASID 0."""
        return self._satp_mode | ((root_pa >> hw.PAGE_SHIFT) & hw.SATP_PPN)

    def root_table_pa(self, root: int) -> int:
        """satp.PPN (bits 43:0) times the page size."""
        return (root & hw.SATP_PPN) << hw.PAGE_SHIFT
