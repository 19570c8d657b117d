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

from collections.abc import Mapping
from typing import ClassVar, Final

from mixedmap import ENTRY_BAD, ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE, bits
from mixedmap.bits import Value
from mixedmap_s390 import hw
from mixedmap_s390.dat_ops import DatOps

SOURCE: Final = (
    "Linux 2.6.26/2.6.27 include/asm-s390/pgtable.h (pte types, _PAGE_SPECIAL, mk_swap_pte), "
    "include/asm-s390/pgalloc.h (pgd/pud/pmd_populate), include/asm-s390/mmu_context.h "
    "(init_new_context: asce_bits), include/asm-s390/hugetlb.h (pte_mkhuge), "
    "arch/s390/mm/pgtable.c (crst_table_alloc order 2, 2 KiB page-table halves, "
    "crst_table_upgrade/downgrade), include/asm-s390/sparsemem.h"
)

PAGE_MASK: Final = 0xFFFF_FFFF_FFFF_F000

# Hardware bits in the page table entry.
_PAGE_RO: Final = 0x200
_PAGE_INVALID: Final = 0x400
# Software bits in the page table entry.
_PAGE_SWT: Final = 0x001
_PAGE_SWX: Final = 0x002
_PAGE_SPECIAL: Final = 0x004
#: Bits pte_modify keeps.
_PAGE_CHG_MASK: Final = PAGE_MASK | _PAGE_SPECIAL

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

# Region and segment table entries.
_REGION_ENTRY_INV: Final = 0x20
_REGION_ENTRY_TYPE_MASK: Final = 0x0C
_REGION_ENTRY_LENGTH: Final = 0x03
_REGION1_ENTRY: Final = hw.TYPE_REGION1 | _REGION_ENTRY_LENGTH  # 0x0F (defined, never used)
_REGION1_ENTRY_EMPTY: Final = hw.TYPE_REGION1 | _REGION_ENTRY_INV  # 0x2C
_REGION2_ENTRY: Final = hw.TYPE_REGION2 | _REGION_ENTRY_LENGTH  # 0x0B
_REGION2_ENTRY_EMPTY: Final = hw.TYPE_REGION2 | _REGION_ENTRY_INV  # 0x28
_REGION3_ENTRY: Final = hw.TYPE_REGION3 | _REGION_ENTRY_LENGTH  # 0x07
_REGION3_ENTRY_EMPTY: Final = hw.TYPE_REGION3 | _REGION_ENTRY_INV  # 0x24
_SEGMENT_ENTRY_RO: Final = 0x200
_SEGMENT_ENTRY_INV: Final = 0x20
_SEGMENT_ENTRY: Final = 0x0  # pmd_populate writes the bare page-table origin
_SEGMENT_ENTRY_EMPTY: Final = _SEGMENT_ENTRY_INV
_SEGMENT_ENTRY_LARGE: Final = 0x400  # STE format control (EDAT-1)
_SEGMENT_ENTRY_CO: Final = 0x100  # change-recording override
#: pud_bad/pgd_bad: ~_SEGMENT_ENTRY_ORIGIN & ~INV & ~TYPE_MASK & ~LENGTH must be clear.
_REGION_BAD_MASK: Final = 0x7FF & ~(_REGION_ENTRY_INV | _REGION_ENTRY_TYPE_MASK | _REGION_ENTRY_LENGTH)

#: _ASCE_SPACE_SWITCH | _ASCE_PRIVATE_SPACE | _ASCE_ALT_EVENT.
_ASCE_USER_BITS: Final = hw.ASCE_SPACE_SWITCH | hw.ASCE_PRIVATE_SPACE | hw.ASCE_ALT_EVENT

#: mk_swap_pte keeps 53 offset bits (``__SWP_OFFSET_MASK = ~0UL >> 11``).
_SWP_OFFSET_MASK: Final = (1 << 53) - 1

PAGE_NONE: Final = _PAGE_TYPE_NONE
PAGE_RO: Final = _PAGE_TYPE_RO
PAGE_RW: Final = _PAGE_TYPE_RW
PAGE_EX_RO: Final = _PAGE_TYPE_EX_RO
PAGE_EX_RW: Final = _PAGE_TYPE_EX_RW
PAGE_KERNEL: Final = PAGE_RW
PAGE_COPY: Final = PAGE_RO

PROTECTIONS: Final = (
    ("PAGE_NONE", PAGE_NONE),
    ("PAGE_RO", PAGE_RO),
    ("PAGE_RW", PAGE_RW),
    ("PAGE_EX_RO", PAGE_EX_RO),
    ("PAGE_EX_RW", PAGE_EX_RW),
    ("PAGE_KERNEL", PAGE_KERNEL),
    ("PAGE_COPY", PAGE_COPY),
)

#: __P000..__P111 then __S000..__S111 (index VM_READ=1 | VM_WRITE=2 | VM_EXEC=4 | VM_SHARED=8):
#: write implies read and exec implies read; only shared writable mappings get PAGE_RW.
PROTECTION_MAP: Final = (
    PAGE_NONE, PAGE_RO, PAGE_RO, PAGE_RO, PAGE_EX_RO, PAGE_EX_RO, PAGE_EX_RO, PAGE_EX_RO,
    PAGE_NONE, PAGE_RO, PAGE_RW, PAGE_RW, PAGE_EX_RO, PAGE_EX_RO, PAGE_EX_RW, PAGE_EX_RW,
)  # fmt: skip


class Ops26(DatOps):
    """pgtable.h of 2.6.26/2.6.27 for one page-table depth (segment, region3, region2)."""

    TABLE_BITS: ClassVar[Mapping[int, int]] = {
        hw.REGION1_SHIFT: _REGION1_ENTRY,
        hw.REGION2_SHIFT: _REGION2_ENTRY,
        hw.REGION3_SHIFT: _REGION3_ENTRY,
        hw.SEGMENT_SHIFT: _SEGMENT_ENTRY,
    }
    EMPTY: ClassVar[Mapping[int, int]] = {
        hw.REGION1_SHIFT: _REGION1_ENTRY_EMPTY,
        hw.REGION2_SHIFT: _REGION2_ENTRY_EMPTY,
        hw.REGION3_SHIFT: _REGION3_ENTRY_EMPTY,
        hw.SEGMENT_SHIFT: _SEGMENT_ENTRY_EMPTY,
        hw.PAGE_SHIFT: _PAGE_TYPE_EMPTY,
    }
    ASCE_BITS: ClassVar[int] = _ASCE_USER_BITS

    # -- leaf PTE ------------------------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``mk_pte_phys(__pa(pfn << PAGE_SHIFT), prot)`` = frame address ``+`` prot.

        ``__pa`` is the identity on 2.6.27 s390x; prot never reaches the frame bits, so the
        kernel's addition is an OR here."""
        if prot & PAGE_MASK:
            raise ValueError(f"s390x 2.6.27: pgprot {prot:#x} overlaps the frame address")
        return ((pfn << hw.PAGE_SHIFT) & bits.ALL64) | prot

    def pte_pfn(self, pte: Value) -> Value:
        """``pte_val(x) >> PAGE_SHIFT``."""
        return pte >> hw.PAGE_SHIFT

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

    def pte_dirty(self, pte: Value) -> Value:
        """Always 0: the changed bit lives in the storage key, not in the PTE."""
        return (pte & 0) != 0

    def pte_mkdirty(self, pte: Value) -> Value:
        """No-op ("the sske instruction is slow"; the next store sets the key's C bit)."""
        return pte & bits.ALL64

    def pte_mkclean(self, pte: Value) -> Value:
        """No-op (fork must not clear the frame's storage-key C bit)."""
        return pte & bits.ALL64

    def pte_young(self, pte: Value) -> Value:
        """Always 0: the referenced bit lives in the storage key."""
        return (pte & 0) != 0

    def pte_mkyoung(self, pte: Value) -> Value:
        """No-op (referenced state is in the storage key)."""
        return pte & bits.ALL64

    def pte_mkold(self, pte: Value) -> Value:
        """No-op (referenced state is in the storage key)."""
        return pte & bits.ALL64

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
            table = (
                (entry & (_REGION_ENTRY_INV | _REGION_ENTRY_TYPE_MASK | _REGION_ENTRY_LENGTH))
                == (tt | _REGION_ENTRY_LENGTH)
            ) & ((entry & _REGION_BAD_MASK) == 0)
            return bits.select(none, ENTRY_NONE, bits.select(table, ENTRY_TABLE, ENTRY_BAD))
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
        if prot & PAGE_MASK:
            raise ValueError(f"s390x 2.6.27: pgprot {prot:#x} overlaps the frame address")
        low = prot
        if low & _PAGE_INVALID:
            if low & _PAGE_SWT:
                low |= _HPAGE_TYPE_NONE
            low |= _SEGMENT_ENTRY_INV
        low = bits.clear(low, _PAGE_SWT | _PAGE_SWX) | _SEGMENT_ENTRY_LARGE | _SEGMENT_ENTRY_CO
        return ((pfn << hw.PAGE_SHIFT) & bits.ALL64) | low
