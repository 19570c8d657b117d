"""Leaf helpers of Linux 2.6.26 and 2.6.27 on x86-64: single AND/OR operations.

Models ``include/asm-x86/pgtable.h`` and ``pgtable_64.h`` of those releases. Nothing is
inverted and there is no saved-dirty bit; the only difference between the two releases is
bit 9 (``_PAGE_BIT_UNUSED1`` in 2.6.26, ``_PAGE_SPECIAL`` in 2.6.27), which lives in the
format's ``special_mask``/``_PAGE_CHG_MASK`` and the plugin's special hooks, not here.
The helpers 6.18 still writes alike (``pte_present``, ``pte_write``, dirty test/clear, the
A bit) are :class:`~mixedmap_x86.ops_base.X86Ops`'s; :mod:`mixedmap_x86.ops_618` has the
later releases' changes to the rest.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap import bits
from mixedmap.bits import Value
from mixedmap_x86 import hw
from mixedmap_x86.kernels import SUPPORTED_PTE_MASK
from mixedmap_x86.ops_base import X86Ops


class Ops2008(X86Ops):
    """2.6.26/2.6.27 helpers (``__PHYSICAL_MASK_SHIFT`` 46, PROT_NONE = PSE)."""

    # -- leaf PTE -----------------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``((pfn << PAGE_SHIFT) | pgprot) & __supported_pte_mask`` (pgtable.h)."""
        return (((pfn << hw.PAGE_SHIFT) & bits.ALL64) | prot) & SUPPORTED_PTE_MASK

    def pte_pfn(self, pte: Value) -> Value:
        """``(pte & __PHYSICAL_MASK) >> PAGE_SHIFT`` (pgtable_64.h): a 46-bit address."""
        return (pte & hw.low_mask(self.kernel.physical_mask_shift)) >> hw.PAGE_SHIFT

    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``!pte_val(pte)``."""
        none: bool | NDArray[np.bool_] = pte == 0
        return none

    def pte_mkwrite(self, pte: Value) -> Value:
        """Set RW (nothing to move back: no saved-dirty bit before 6.6)."""
        return pte | hw.RW

    def pte_wrprotect(self, pte: Value) -> Value:
        """Clear RW (a dirty read-only entry keeps D)."""
        return bits.clear(pte, hw.RW)

    def pte_mkdirty(self, pte: Value) -> Value:
        """Set D (no soft-dirty bit before 3.11)."""
        return pte | hw.D

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """Keep ``_PAGE_CHG_MASK`` (PFN, PCD, PWT, A, D and, from 2.6.27, SPECIAL) of the
        old entry; take the rest, NX included, from ``prot & __supported_pte_mask``."""
        chg = self.kernel.chg_mask
        return (pte & chg) | (bits.clear(prot, chg) & SUPPORTED_PTE_MASK)

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry``: type in bits 6:1, offset from bit 8 (pgtable_64.h)."""
        return ((swp_type << 1) | (offset << 8)) & bits.ALL64

    # -- large leaves -------------------------------------------------------------------
    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pte_mkhuge(pfn_pmd(pfn, prot))`` (hugetlb's make_huge_pte): like pfn_pte plus PSE."""
        return self.pfn_pte(pfn, prot | hw.PS)

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """``pmd_pfn``/``pud_pfn`` (``& __PHYSICAL_MASK``) with the sub-leaf bits (PAT) masked off."""
        return (entry & self._leaf_masks[i]) >> hw.PAGE_SHIFT
