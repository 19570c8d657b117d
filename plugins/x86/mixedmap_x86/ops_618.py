"""Leaf helpers of Linux 6.18 on x86-64: PROT_NONE PFN inversion and the saved-dirty shift.

Models ``arch/x86/include/asm/pgtable.h``, ``pgtable-invert.h``, ``pgtable_64.h`` and
``arch/x86/mm/pgtable.c``. The helpers 2.6.26/2.6.27 already wrote the same way are
:class:`~mixedmap_x86.ops_base.X86Ops`'s; :class:`Ops618` overrides only the ones later
releases changed, and the release-specific bits come from :data:`~mixedmap_x86.kernels.L618`.
Two mechanisms make these more than AND/OR:

* L1TF (4.19, ``pgtable-invert.h``: 6b28baca9b1f "x86/speculation/l1tf: Protect PROT_NONE
  PTEs against speculation"): a non-zero entry with P=0 (PROT_NONE, swap) stores its PFN
  field inverted so a speculative walk never points at real memory; ``pte_pfn`` undoes it,
  ``pfn_pte`` and the leaves mask the frame with ``PTE_PFN_MASK`` and ``pte_modify``
  re-inverts when PROT_NONE-ness changes. The swap entry moved with it: type in bits 63:59,
  the offset inverted below it (4.19; 4.8 had first moved type/offset above the A/D bits
  for the Knights Landing erratum, 00839ee3b299).
* Shadow stacks (6.6, the x86 user shadow-stack series): the CPU reads (W=0, D=1) as
  shadow-stack memory, so whenever Linux makes a dirty entry read-only it moves D to the
  software ``_PAGE_SAVED_DIRTY`` bit 58, and back when the entry becomes writable. 6.18
  does this unconditionally (not gated on the CPU feature). ``pte_write`` is modelled for a
  CPU without user shadow stacks (RW alone).

``pte_none`` ignores stray A/D bits (4.8, the Knights Landing erratum) and ``pte_mkdirty``
also sets soft-dirty (3.11, ``CONFIG_MEM_SOFT_DIRTY``).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from mixedmap import bits
from mixedmap.bits import Value
from mixedmap_x86 import hw
from mixedmap_x86.kernels import SUPPORTED_PTE_MASK
from mixedmap_x86.ops_base import X86Ops

_BIT_RW: Final = 1
_BIT_DIRTY: Final = 6
_BIT_SAVED_DIRTY: Final = 58
SAVED_DIRTY: Final = 1 << _BIT_SAVED_DIRTY
DIRTY_BITS: Final = hw.D | SAVED_DIRTY  # _PAGE_DIRTY_BITS

# Swap entry (pgtable_64.h): type in bits 63:59, ~offset in bits 58:9.
SWP_TYPE_BITS: Final = 5
SWP_OFFSET_FIRST_BIT: Final = 9  # _PAGE_BIT_PROTNONE + 1
SWP_OFFSET_SHIFT: Final = SWP_OFFSET_FIRST_BIT + SWP_TYPE_BITS


def needs_invert(v: Value) -> bool | NDArray[np.bool_]:
    """``__pte_needs_invert``: non-zero with P clear (a cleared entry is not inverted)."""
    invert: bool | NDArray[np.bool_] = (v != 0) & ((v & hw.P) == 0)
    return invert


def xor_protnone(v: Value, key: Value) -> Value:
    """``v ^ protnone_mask(key)``: all bits of v flipped where key needs inversion."""
    return bits.select(needs_invert(key), bits.invert(v), v)


def mksaveddirty_shift(v: Value) -> Value:
    """Where W=0: D moves to SAVED_DIRTY (OR-ed in) and D is cleared."""
    cond = (bits.invert(v) >> _BIT_RW) & 1
    v = v | (((v >> _BIT_DIRTY) & cond) << _BIT_SAVED_DIRTY)
    return v & bits.invert(cond << _BIT_DIRTY)


def clear_saveddirty_shift(v: Value) -> Value:
    """Where W=1: SAVED_DIRTY moves back to D (OR-ed in) and SAVED_DIRTY is cleared."""
    cond = (v >> _BIT_RW) & 1
    v = v | (((v >> _BIT_SAVED_DIRTY) & cond) << _BIT_DIRTY)
    return v & bits.invert(cond << _BIT_SAVED_DIRTY)


def check_pgprot(prot: int) -> int:
    """``massage_pgprot``: a present pgprot is filtered by ``__supported_pte_mask``."""
    return prot & SUPPORTED_PTE_MASK if prot & hw.P else prot


class Ops618(X86Ops):
    """6.18 helpers (``__PHYSICAL_MASK_SHIFT`` 52, PROT_NONE = G, inverted PFNs)."""

    # -- leaf PTE -----------------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``pfn << 12``, inverted when prot is PROT_NONE-like (non-zero, P=0), masked to
        ``PTE_PFN_MASK``, OR the checked pgprot."""
        v = xor_protnone((pfn << hw.PAGE_SHIFT) & bits.ALL64, prot) & self._pfn_mask
        return v | check_pgprot(prot)

    def pte_pfn(self, pte: Value) -> Value:
        """``((pte ^ protnone_mask(pte)) & PTE_PFN_MASK) >> PAGE_SHIFT``."""
        return (xor_protnone(pte, pte) & self._pfn_mask) >> hw.PAGE_SHIFT

    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``!(pte & ~_PAGE_KNL_ERRATUM_MASK)``: stray A/D on an empty entry still reads as none."""
        none: bool | NDArray[np.bool_] = bits.clear(pte, self.kernel.knl_erratum_mask) == 0
        return none

    def pte_mkwrite(self, pte: Value) -> Value:
        """pte_mkwrite() for a normal (non shadow-stack) VMA: set RW, then
        ``pte_clear_saveddirty`` (arch/x86/mm/pgtable.c)."""
        return clear_saveddirty_shift(pte | hw.RW)

    def pte_wrprotect(self, pte: Value) -> Value:
        """Clear RW, then ``pte_mksaveddirty`` so no (W=0, D=1) entry is created."""
        return mksaveddirty_shift(bits.clear(pte, hw.RW))

    def pte_mkdirty(self, pte: Value) -> Value:
        """Set D and SOFT_DIRTY, then ``pte_mksaveddirty`` (a read-only PTE gets SAVED_DIRTY)."""
        return mksaveddirty_shift(pte | hw.D | self.kernel.soft_dirty)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """Keep ``_PAGE_CHG_MASK`` from pte, the rest from the checked prot; re-invert the
        PFN when the PROT_NONE-ness changes (``flip_protnone_guard``); then, if the old PTE
        was writable, ``pte_mksaveddirty``, else ``pte_clear_saveddirty``."""
        chg = self.kernel.chg_mask
        val = (pte & chg) | bits.clear(check_pgprot(prot), chg)
        flip = needs_invert(pte) != needs_invert(val)
        val = bits.select(flip, val ^ self._pfn_mask, val)
        return bits.select(bits.test(pte, hw.RW), mksaveddirty_shift(val), clear_saveddirty_shift(val))

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry``: ``(~offset << 14 >> 5) | (type << 59)`` in 64-bit arithmetic."""
        off = ((bits.invert(offset) << SWP_OFFSET_SHIFT) & bits.ALL64) >> SWP_TYPE_BITS
        return off | ((swp_type << (64 - SWP_TYPE_BITS)) & bits.ALL64)

    # -- large leaves -------------------------------------------------------------------
    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pmd_mkhuge(pfn_pmd(pfn, prot))`` / the pud equivalent: the frame masked with
        ``PHYSICAL_PMD_PAGE_MASK`` (``PHYSICAL_PUD_PAGE_MASK``), inverted for PROT_NONE, plus PSE."""
        v = xor_protnone((pfn << hw.PAGE_SHIFT) & bits.ALL64, prot) & self._leaf_masks[i]
        return v | check_pgprot(prot) | hw.PS

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """``pmd_pfn``/``pud_pfn``: undo the PROT_NONE inversion, mask with the leaf's mask."""
        return (xor_protnone(entry, entry) & self._leaf_masks[i]) >> hw.PAGE_SHIFT
