"""Upper levels, CR3 and the unchanged leaf helpers: what every x86-64 profile shares.

Subclasses (:class:`~mixedmap_x86.ops_2008.Ops2008`, :class:`~mixedmap_x86.ops_618.Ops618`)
add the leaf-PTE helpers and the large-leaf encodings that differ by release. What stays
here reads the release's bits from its :class:`~mixedmap_x86.kernels.KernelDefs`:
``pte_present`` (P or the PROT_NONE alias), ``pte_write`` (RW), ``pte_dirty``/``pte_mkclean``
(``_PAGE_DIRTY_BITS``: D, plus ``_PAGE_SAVED_DIRTY`` from 6.6) and the A-bit helpers
(``include/asm-x86/pgtable.h`` of 2.6.26/2.6.27, ``arch/x86/include/asm/pgtable.h`` of 6.18).

Entry classification follows the CPU (SDM 4.5) for tables: P=0 ends the walk, PS=1 in a
PML4E/PML5E is a reserved-bit fault. A PS=1 PDPTE/PDE is a 1 GiB/2 MiB leaf when Linux
considers it present, which, as for ``pte_present()``, includes PROT_NONE entries (P=0 with
the PROT_NONE alias: PSE itself in 2.6.x, G in 6.18) the CPU would fault on. The Linux
``p?d_none()`` rule decides which non-present entries are "empty" rather than "bad".
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap import (
    ENTRY_BAD,
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    PageTableFormat,
    PteOps,
    bits,
)
from mixedmap.bits import Value
from mixedmap_x86 import hw
from mixedmap_x86.kernels import PAGE_TABLE, KernelDefs


class X86Ops(PteOps):
    """CR3, table entries and entry classification for one (mode, profile)."""

    def __init__(self, fmt: PageTableFormat, kernel: KernelDefs) -> None:
        self.fmt = fmt
        self.kernel = kernel
        self._pfn_mask = kernel.pte_pfn_mask
        # _PAGE_DIRTY_BITS: _PAGE_DIRTY | _PAGE_SAVED_DIRTY (the latter 0 before 6.6).
        self._dirty_bits = hw.D | kernel.saved_dirty
        # PHYSICAL_PMD_PAGE_MASK / PHYSICAL_PUD_PAGE_MASK: frame bits of a leaf per level.
        self._leaf_masks = tuple(hw.addr_mask(kernel.physical_mask_shift, lv.shift) for lv in fmt.levels)
        # Bits p?d_none() ignores per level: 6.18 tolerates stray A/D (Knights Landing
        # erratum) everywhere except in a real 5-level PGD, whose pgd_none() tests !val.
        five_level = len(fmt.levels) == 5
        self._none_ignore = tuple(
            0 if (five_level and i == 0) else kernel.knl_erratum_mask for i in range(len(fmt.levels))
        )

    # -- leaf PTE: the helpers no release changed ------------------------------------------
    def pte_present(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_flags & (_PAGE_PRESENT | _PAGE_PROTNONE)``: a PROT_NONE entry (P=0) counts."""
        return bits.test(pte, hw.P | self.kernel.protnone)

    def pte_write(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``_PAGE_RW`` (6.18's ``pte_shstk()`` term is false without X86_FEATURE_SHSTK)."""
        return bits.test(pte, hw.RW)

    def pte_dirty(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_flags & _PAGE_DIRTY_BITS`` (D, or from 6.6 SAVED_DIRTY too)."""
        return bits.test(pte, self._dirty_bits)

    def pte_mkclean(self, pte: Value) -> Value:
        """Clear ``_PAGE_DIRTY_BITS``."""
        return bits.clear(pte, self._dirty_bits)

    def pte_young(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``_PAGE_ACCESSED``."""
        return bits.test(pte, hw.A)

    def pte_mkyoung(self, pte: Value) -> Value:
        """Set ``_PAGE_ACCESSED``."""
        return pte | hw.A

    def pte_mkold(self, pte: Value) -> Value:
        """Clear ``_PAGE_ACCESSED``."""
        return bits.clear(pte, hw.A)

    # -- upper levels -------------------------------------------------------------------
    def empty_entry(self, i: int) -> int:
        """pgd/p4d/pud/pmd_clear() write 0: an empty x86 entry is all zeroes."""
        return 0

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """``_PAGE_TABLE | __pa(table)`` (0x67 | pa), as p?d_populate() write at every level."""
        return table_pa | PAGE_TABLE

    def _upper_none(self, i: int, entry: Value) -> bool | NDArray[np.bool_]:
        """p?d_none(): zero apart from the bits this level's none test ignores."""
        none: bool | NDArray[np.bool_] = bits.clear(entry, self._none_ignore[i]) == 0
        return none

    def entry_kind(self, i: int, entry: Value) -> Value:
        """NONE (p?d_none), TABLE (P=1, PS=0), LEAF (PS=1 where a large page may sit and
        present for Linux: P, or the PROT_NONE alias as pte_present() reads a huge entry),
        BAD (anything else: P=0 without PS, PS in a PML4E/PML5E)."""
        if self.fmt.levels[i].leaf_ok:
            big = bits.select(bits.test(entry, hw.P | self.kernel.protnone), ENTRY_LEAF, ENTRY_BAD)
        else:
            big = ENTRY_BAD
        kind = bits.select(bits.test(entry, hw.P), ENTRY_TABLE, ENTRY_BAD)
        kind = bits.select(bits.test(entry, hw.PS), big, kind)
        return bits.select(self._upper_none(i, entry), ENTRY_NONE, kind)

    def table_pa(self, i: int, entry: Value) -> Value:
        """``p?d_val(e) & PTE_PFN_MASK``: the next table (pud_pgtable(), pmd_page_vaddr())."""
        return entry & self._pfn_mask

    # -- root ---------------------------------------------------------------------------
    def root_value(self, root_pa: int) -> int:
        """CR3 as ``build_cr3()`` writes it without PCID: the top table's physical address
        (PWT=PCD=0, bits 11:0 zero). CR4.LA57 picks 4 vs 5 levels; it is not part of CR3."""
        return root_pa & hw.CR3_ADDR_MASK

    def root_table_pa(self, root: int) -> int:
        """Bits 51:12 of CR3 locate the PML4 (4-level) or PML5 (5-level) table."""
        return root & hw.CR3_ADDR_MASK
