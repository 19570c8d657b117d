"""Linux 2.6.26 / 2.6.27 s390x: PTE "types" in I, P and two software bits.

The 2008 kernels keep no referenced/changed state in the PTE at all: the storage key of
the frame holds R and C (``page_test_dirty``, ``page_test_and_clear_young``), so
``pte_dirty``/``pte_young`` are constant 0 and the mk* helpers return the entry unchanged.
A PTE's kind is the pattern of the invalid bit, the protection bit and the software bits
t (``_PAGE_SWT``) and x (``_PAGE_SWX``). The special bit (0x004, "s390: implement pte
special bit", a08cb629f5) and its protection against mprotect (``_PAGE_CHG_MASK``,
138c9021ca) both arrived in 2.6.26, so 2.6.26 and 2.6.27 encode every entry alike.

Source: ``include/asm-s390/pgtable.h``, ``pgalloc.h``, ``mmu_context.h``, ``hugetlb.h`` and
``arch/s390/mm/pgtable.c`` of 2.6.26/2.6.27 (the headers moved to
``arch/s390/include/asm/`` in 2.6.28).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from mixedmap import ENTRY_BAD, ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE, bits
from mixedmap.bits import Value
from mixedmap_s390 import dat_ops, hw
from mixedmap_s390.dat_ops import DatOps, protection_map, table_bits

SOURCE: Final = (
    "Linux 2.6.26/2.6.27 include/asm-s390/pgtable.h (pte types, _PAGE_SPECIAL, mk_swap_pte), "
    "include/asm-s390/pgalloc.h (pgd/pud/pmd_populate), include/asm-s390/mmu_context.h "
    "(init_new_context: asce_bits), include/asm-s390/hugetlb.h (pte_mkhuge), "
    "arch/s390/mm/pgtable.c (crst_table_alloc order 2, 2 KiB page-table halves, "
    "crst_table_upgrade/downgrade), include/asm-s390/sparsemem.h"
)

# Hardware bits in the page table entry (the values every profile shares are in dat_ops).
_PAGE_RO: Final = dat_ops.PAGE_PROTECT  # renamed _PAGE_PROTECT in 3.12
_PAGE_INVALID: Final = dat_ops.PAGE_INVALID
# Software bits in the page table entry.
_PAGE_SWT: Final = 0x001
_PAGE_SWX: Final = 0x002
_PAGE_SPECIAL: Final = 0x004
#: Bits pte_modify keeps.
_PAGE_CHG_MASK: Final = dat_ops.PAGE_MASK | _PAGE_SPECIAL

# The page types (bits I, P, t, x).
_PAGE_TYPE_EMPTY: Final = 0x400
_PAGE_TYPE_NONE: Final = 0x401
_PAGE_TYPE_SWAP: Final = 0x403
_PAGE_TYPE_FILE: Final = 0x601
_PAGE_TYPE_RO: Final = 0x200
_PAGE_TYPE_RW: Final = 0x000
_PAGE_TYPE_EX_RO: Final = 0x202
_PAGE_TYPE_EX_RW: Final = 0x002

# Huge-page (segment-entry) types.
_HPAGE_TYPE_EMPTY: Final = 0x020
_HPAGE_TYPE_NONE: Final = 0x220
_HPAGE_TYPE_RO: Final = 0x200
_HPAGE_TYPE_RW: Final = 0x000

# Region and segment table entries (region values: see dat_ops).
_REGION_ENTRY_INV: Final = dat_ops.REGION_ENTRY_INVALID
_REGION_ENTRY_TYPE_MASK: Final = dat_ops.REGION_ENTRY_TYPE_MASK
_REGION_ENTRY_LENGTH: Final = dat_ops.REGION_ENTRY_LENGTH
_SEGMENT_ENTRY_RO: Final = 0x200
_SEGMENT_ENTRY_INV: Final = dat_ops.SEGMENT_ENTRY_INVALID
_SEGMENT_ENTRY: Final = 0x0  # pmd_populate writes the bare page-table origin
_SEGMENT_ENTRY_LARGE: Final = dat_ops.SEGMENT_ENTRY_LARGE  # STE format control (EDAT-1)
_SEGMENT_ENTRY_CO: Final = 0x100  # change-recording override
#: pud_bad/pgd_bad: ~_SEGMENT_ENTRY_ORIGIN & ~INV & ~TYPE_MASK & ~LENGTH must be clear.
_REGION_BAD_MASK: Final = 0x7FF & ~(_REGION_ENTRY_INV | _REGION_ENTRY_TYPE_MASK | _REGION_ENTRY_LENGTH)

#: mk_swap_pte keeps 53 offset bits (``__SWP_OFFSET_MASK = ~0UL >> 11``).
_SWP_OFFSET_MASK: Final = (1 << 53) - 1

#: Named pgprots: page types (``PAGE_KERNEL`` is RW, ``PAGE_COPY`` RO).
PROTECTIONS: Final = (
    ("PAGE_NONE", _PAGE_TYPE_NONE),
    ("PAGE_RO", _PAGE_TYPE_RO),
    ("PAGE_RW", _PAGE_TYPE_RW),
    ("PAGE_EX_RO", _PAGE_TYPE_EX_RO),
    ("PAGE_EX_RW", _PAGE_TYPE_EX_RW),
    ("PAGE_KERNEL", _PAGE_TYPE_RW),
    ("PAGE_COPY", _PAGE_TYPE_RO),
)

#: ``__P000..__S111``: exec mappings get the EX types (the noexec shadow-table scheme).
PROTECTION_MAP: Final = protection_map(
    none=_PAGE_TYPE_NONE,
    read=_PAGE_TYPE_RO,
    exec_=_PAGE_TYPE_EX_RO,
    shared_write=_PAGE_TYPE_RW,
    shared_write_exec=_PAGE_TYPE_EX_RW,
)


class Ops26(DatOps):
    """pgtable.h of 2.6.26/2.6.27 for one page-table depth (segment, region3, region2).

    What 6.18 does differently, each from the release that changed it:

    * referenced and changed state live in the frame's storage key, not in the PTE, so the
      young/dirty helpers are constants and no-ops (software dirty bits came in 3.9,
      abf09bed3cce "s390/mm: implement software dirty bits"; software referenced bits in
      3.12, 0944fe3f4a32);
    * a PTE's kind is the pattern of I, P and the software type bits t and x
      (``_PAGE_TYPE_*``): PROT_NONE is I with t set, so ``pte_write`` (``!(pte & _PAGE_RO)``)
      is true for it -- the ``protnone_pte_write`` quirk -- and ``pte_wrprotect`` leaves
      invalid entries alone (3.12 replaced the types with ``_PAGE_PRESENT``/``_PAGE_READ``/
      ``_PAGE_WRITE`` software bits; in 6.18's layout the special bit is 0x040, not 0x004);
    * ``pmd_populate`` writes the bare page-table origin (``_SEGMENT_ENTRY`` 0; 6.18 sets
      ``_SEGMENT_ENTRY_PRESENT``), and region entries are "none" on I and the type alone.
    """

    TABLE_BITS = table_bits(_SEGMENT_ENTRY)

    # -- leaf PTE ------------------------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``mk_pte_phys(__pa(pfn << PAGE_SHIFT), prot)`` = frame address ``+`` prot.

        ``__pa`` is the identity on 2.6.27 s390x; prot never reaches the frame bits, so the
        kernel's addition is an OR here."""
        if prot & dat_ops.PAGE_MASK:
            raise ValueError(f"s390x 2.6.27: pgprot {prot:#x} overlaps the frame address")
        return self._frame(pfn) | prot

    def pte_present(self, pte: Value) -> Value:
        """Type NONE (I,P,t,x = 1,0,0,1), or I and t both clear (RO, RW, EX_RO, EX_RW)."""
        mask = _PAGE_RO | _PAGE_INVALID | _PAGE_SWT | _PAGE_SWX
        return ((pte & mask) == _PAGE_TYPE_NONE) | ((pte & (_PAGE_INVALID | _PAGE_SWT)) == 0)

    def pte_none(self, pte: Value) -> Value:
        """I set and t clear: empty, and every valid type after an IPTE forced I on."""
        return (pte & (_PAGE_INVALID | _PAGE_SWT)) == _PAGE_INVALID

    def pte_write(self, pte: Value) -> Value:
        """``!(pte & _PAGE_RO)``: writability is just the hardware protection bit."""
        return (pte & _PAGE_RO) == 0

    def pte_mkwrite(self, pte: Value) -> Value:
        """``pte &= ~_PAGE_RO``."""
        return bits.clear(pte, _PAGE_RO)

    def pte_wrprotect(self, pte: Value) -> Value:
        """Set ``_PAGE_RO`` unless I is set ("do not clobber _PAGE_TYPE_NONE pages").

        Branch-free: the complement of I (0x400) shifted right by one is exactly the RO bit
        to add."""
        return pte | ((bits.invert(pte) >> 1) & _PAGE_RO)

    def _storage_key_state(self, pte: Value) -> bool | NDArray[np.bool_]:
        """Always 0: the referenced and changed bits live in the storage key, not in the PTE
        (``page_test_dirty``, ``page_test_and_clear_young``)."""
        return (pte & 0) != 0  # type: ignore[no-any-return]

    def _storage_key_noop(self, pte: Value) -> Value:
        """No-op: referenced/changed state is in the storage key (``pte_mkdirty``: "the sske
        instruction is slow", the next store sets the key's C bit; ``pte_mkclean``: fork must
        not clear it)."""
        return pte & bits.ALL64

    pte_dirty = pte_young = _storage_key_state
    pte_mkdirty = pte_mkclean = pte_mkyoung = pte_mkold = _storage_key_noop

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """``(pte & _PAGE_CHG_MASK) | newprot``: frame address and the special bit survive."""
        return (pte & _PAGE_CHG_MASK) | prot

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``_PAGE_TYPE_SWAP | type << 2 | (offset & 1) << 7 | (offset & ~1) << 11``, with the
        offset first cut to 53 bits; bits 8-10 stay zero (IBM bits 52 and 55 must be 0)."""
        off = offset & _SWP_OFFSET_MASK
        return (
            _PAGE_TYPE_SWAP
            | ((swp_type & 0x1F) << 2)
            | ((off & 1) << 7)
            | ((bits.clear(off, 1) << 11) & bits.ALL64)
        )

    # -- region and segment entries ---------------------------------------------------------------
    def entry_kind(self, i: int, entry: Value) -> Value:
        """pgd/pud_none, pud_bad, pmd_none/pmd_bad and huge_pte_none of 2.6.27.

        Region entry: none when I is set; a table when I is clear, the type matches the
        table and the length is 3 with no other low bit set. Segment entry: a leaf when it
        has the format-control bit (EDAT-1 modes only) and is not the huge "none" pattern
        (I set, P clear); none when I is set; a table when all 11 low bits are clear
        (``_SEGMENT_ENTRY`` is 0). Anything else is bad.
        """
        shift = self._shift(i)
        if shift != hw.SEGMENT_SHIFT:
            tt = self.TABLE_BITS[shift] & _REGION_ENTRY_TYPE_MASK
            none = (entry & (_REGION_ENTRY_INV | _REGION_ENTRY_TYPE_MASK)) == (_REGION_ENTRY_INV | tt)
            return self._region_kind(shift, entry, none, _REGION_BAD_MASK)
        none = (entry & _SEGMENT_ENTRY_INV) != 0
        table = (entry & 0x7FF) == _SEGMENT_ENTRY
        kind = bits.select(none, ENTRY_NONE, bits.select(table, ENTRY_TABLE, ENTRY_BAD))
        if not self.edat1:
            return kind
        large = (entry & (_SEGMENT_ENTRY_LARGE | hw.SEGMENT_TT)) == _SEGMENT_ENTRY_LARGE
        huge_present = (entry & (_SEGMENT_ENTRY_INV | _SEGMENT_ENTRY_RO)) != _SEGMENT_ENTRY_INV
        return bits.select(large & huge_present, ENTRY_LEAF, kind)

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """hugetlbfs ``pte_mkhuge(mk_pte(page, prot))`` (``include/asm-s390/hugetlb.h``).

        An invalid PTE type becomes the segment-invalid bit (plus ``_HPAGE_TYPE_NONE`` for
        PROT_NONE); the PTE's I bit stays as the segment's format-control bit, t and x are
        dropped and the change-recording override is set. The result depends on prot only
        in its low bits, so it is computed once from prot."""
        self._leaf_level(i)
        if prot & dat_ops.PAGE_MASK:
            raise ValueError(f"s390x 2.6.27: pgprot {prot:#x} overlaps the frame address")
        low = prot
        if low & _PAGE_INVALID:
            if low & _PAGE_SWT:
                low |= _HPAGE_TYPE_NONE
            low |= _SEGMENT_ENTRY_INV
        low = bits.clear(low, _PAGE_SWT | _PAGE_SWX) | _SEGMENT_ENTRY_LARGE | _SEGMENT_ENTRY_CO
        return self._frame(pfn) | low
