"""Linux 6.18 s390x: logical PTE state in software bits, hardware I/P derived from it.

The PTE keeps READ, WRITE, YOUNG and DIRTY as software bits and Linux sets the hardware
bits so that the first access of each kind traps: I (invalid) is set unless the page is
YOUNG and READ, P (protect) unless it is DIRTY and WRITE. ``pfn_pte`` therefore returns a
young entry (``mk_pte_phys`` ends in ``pte_mkyoung``) and ``pte_modify`` re-derives I and P.
Assumed configuration (as the reference vectors): the machine has IEP, so ``_PAGE_NOEXEC``
survives ``page_noexec_mask``, and ``CONFIG_MEM_SOFT_DIRTY=y`` (soft-dirty = 0x002).
6.13 and 6.19 encode every bit here identically.

Source: ``arch/s390/include/asm/pgtable.h``, ``pgalloc.h``, ``mmu_context.h``,
``arch/s390/mm/pgalloc.c``, ``arch/s390/mm/mmap.c`` (``setup_protection_map``).
"""

from __future__ import annotations

from typing import Final

from mixedmap import ENTRY_BAD, ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE, bits
from mixedmap.bits import Value
from mixedmap_s390 import dat_ops, hw
from mixedmap_s390.dat_ops import DatOps, protection_map, table_bits

SOURCE: Final = (
    "Linux 6.18 arch/s390/include/asm/pgtable.h (PTE/segment/region bits, helpers, swap), "
    "arch/s390/include/asm/pgalloc.h (populate), arch/s390/include/asm/mmu_context.h "
    "(init_new_context: user ASCE), arch/s390/mm/pgalloc.c (crst_table_alloc order 2, "
    "page_table_alloc: one 4 KiB page per page table, crst_table_upgrade 3->4->5), "
    "arch/s390/mm/mmap.c (setup_protection_map), arch/s390/Kconfig and asm/sparsemem.h"
)

# Hardware bits in the page table entry (the values every profile shares are in dat_ops).
_PAGE_NOEXEC: Final = 0x100
_PAGE_PROTECT: Final = dat_ops.PAGE_PROTECT
_PAGE_INVALID: Final = dat_ops.PAGE_INVALID
_PAGE_LARGE: Final = 0x800
# Software bits in the page table entry.
_PAGE_PRESENT: Final = 0x001
_PAGE_SOFT_DIRTY: Final = 0x002  # CONFIG_MEM_SOFT_DIRTY=y
_PAGE_YOUNG: Final = 0x004
_PAGE_DIRTY: Final = 0x008
_PAGE_READ: Final = 0x010
_PAGE_WRITE: Final = 0x020
_PAGE_SPECIAL: Final = 0x040
_PAGE_UNUSED: Final = 0x080
_PAGE_SWP_EXCLUSIVE: Final = _PAGE_LARGE
#: Bits pte_modify keeps.
_PAGE_CHG_MASK: Final = dat_ops.PAGE_MASK | _PAGE_SPECIAL | _PAGE_DIRTY | _PAGE_YOUNG | _PAGE_SOFT_DIRTY

# Region table entries (the ones 2.6.2x defines alike are in dat_ops).
_REGION_ENTRY_PROTECT: Final = 0x200
_REGION_ENTRY_NOEXEC: Final = 0x100
_REGION_ENTRY_OFFSET: Final = 0xC0
_REGION3_ENTRY_PRESENT: Final = 0x01  # coincides with TL bit 63 of a table entry
_REGION3_ENTRY_COMM: Final = 0x10
_REGION3_ENTRY_LARGE: Final = 0x400
#: pgd/p4d/pud_bad: bits outside _REGION_ENTRY_BITS (0xfffffffffffff22f) must be clear.
_REGION_ENTRY_BITS: Final = 0xFFFF_FFFF_FFFF_F22F

# Segment table entries.
_SEGMENT_ENTRY_BITS: Final = 0xFFFF_FFFF_FFFF_FE3F
_SEGMENT_ENTRY_PROTECT: Final = 0x200
_SEGMENT_ENTRY_NOEXEC: Final = 0x100
_SEGMENT_ENTRY_INVALID: Final = dat_ops.SEGMENT_ENTRY_INVALID
_SEGMENT_ENTRY_TYPE_MASK: Final = 0x0C
_SEGMENT_ENTRY_PRESENT: Final = 0x0001
_SEGMENT_ENTRY_SOFT_DIRTY: Final = 0x0002  # CONFIG_MEM_SOFT_DIRTY=y
_SEGMENT_ENTRY_COMM: Final = 0x0010
_SEGMENT_ENTRY_LARGE: Final = dat_ops.SEGMENT_ENTRY_LARGE
_SEGMENT_ENTRY_YOUNG: Final = 0x1000
_SEGMENT_ENTRY_DIRTY: Final = 0x2000
_SEGMENT_ENTRY_READ: Final = 0x4000
_SEGMENT_ENTRY_WRITE: Final = 0x8000
_SEGMENT_ENTRY: Final = _SEGMENT_ENTRY_PRESENT
_SEGMENT_ENTRY_EMPTY: Final = _SEGMENT_ENTRY_INVALID

_SWP_OFFSET_MASK: Final = (1 << 52) - 1
_SWP_TYPE_MASK: Final = (1 << 5) - 1

# Page protections (page_noexec_mask keeps _PAGE_NOEXEC: the machine has IEP).
PAGE_NONE: Final = _PAGE_PRESENT | _PAGE_INVALID | _PAGE_PROTECT  # 0x601
PAGE_RO: Final = _PAGE_PRESENT | _PAGE_READ | _PAGE_NOEXEC | _PAGE_INVALID | _PAGE_PROTECT  # 0x711
PAGE_RX: Final = _PAGE_PRESENT | _PAGE_READ | _PAGE_INVALID | _PAGE_PROTECT  # 0x611
PAGE_RW: Final = (
    _PAGE_PRESENT | _PAGE_READ | _PAGE_WRITE | _PAGE_NOEXEC | _PAGE_INVALID | _PAGE_PROTECT
)  # 0x731
PAGE_RWX: Final = _PAGE_PRESENT | _PAGE_READ | _PAGE_WRITE | _PAGE_INVALID | _PAGE_PROTECT  # 0x631
PAGE_SHARED: Final = (
    _PAGE_PRESENT | _PAGE_READ | _PAGE_WRITE | _PAGE_YOUNG | _PAGE_DIRTY | _PAGE_NOEXEC
)  # 0x13D
PAGE_KERNEL: Final = PAGE_SHARED
PAGE_KERNEL_RO: Final = _PAGE_PRESENT | _PAGE_READ | _PAGE_YOUNG | _PAGE_PROTECT | _PAGE_NOEXEC  # 0x315

PROTECTIONS: Final = (
    ("PAGE_NONE", PAGE_NONE),
    ("PAGE_RO", PAGE_RO),
    ("PAGE_RX", PAGE_RX),
    ("PAGE_RW", PAGE_RW),
    ("PAGE_RWX", PAGE_RWX),
    ("PAGE_SHARED", PAGE_SHARED),
    ("PAGE_KERNEL", PAGE_KERNEL),
    ("PAGE_KERNEL_RO", PAGE_KERNEL_RO),
)

#: setup_protection_map(): exec without read is still readable (PAGE_RX).
PROTECTION_MAP: Final = protection_map(
    none=PAGE_NONE, read=PAGE_RO, exec_=PAGE_RX, shared_write=PAGE_RW, shared_write_exec=PAGE_RWX
)

# Segment (large page) protections, segment_noexec_mask keeping NOEXEC.
SEGMENT_NONE: Final = _SEGMENT_ENTRY_PRESENT | _SEGMENT_ENTRY_INVALID | _SEGMENT_ENTRY_PROTECT
SEGMENT_RO: Final = (
    _SEGMENT_ENTRY_PRESENT | _SEGMENT_ENTRY_PROTECT | _SEGMENT_ENTRY_READ | _SEGMENT_ENTRY_NOEXEC
)
SEGMENT_RX: Final = _SEGMENT_ENTRY_PRESENT | _SEGMENT_ENTRY_PROTECT | _SEGMENT_ENTRY_READ
SEGMENT_RW: Final = (
    _SEGMENT_ENTRY_PRESENT | _SEGMENT_ENTRY_READ | _SEGMENT_ENTRY_WRITE | _SEGMENT_ENTRY_NOEXEC
)
SEGMENT_RWX: Final = _SEGMENT_ENTRY_PRESENT | _SEGMENT_ENTRY_READ | _SEGMENT_ENTRY_WRITE


def massage_pgprot_pmd(prot: int) -> int:
    """Map a PTE pgprot (PAGE_NONE/RO/RX/RW, else RWX) to the segment-entry format."""
    return {PAGE_NONE: SEGMENT_NONE, PAGE_RO: SEGMENT_RO, PAGE_RX: SEGMENT_RX, PAGE_RW: SEGMENT_RW}.get(
        prot, SEGMENT_RWX
    )


def _clear_if(v: Value, mask: int, cond: Value) -> Value:
    """``if (cond) v &= ~mask`` elementwise."""
    return bits.select(cond, bits.clear(v, mask), v)


class Ops618(DatOps):
    """pgtable.h of 6.18 for one page-table depth (region3, region2, region1).

    Against 2.6.27 (:class:`~mixedmap_s390.linux26.Ops26`): READ, WRITE, YOUNG and DIRTY
    are PTE software bits and I/P follow them (software dirty bits from 3.9, abf09bed3cce;
    software referenced bits and the ``_PAGE_PRESENT``/``_PAGE_READ``/``_PAGE_WRITE`` layout
    from 3.12, 0944fe3f4a32), ``pmd_populate`` sets ``_SEGMENT_ENTRY_PRESENT``, and region
    entries are "none" only when they equal the empty value. The region-first level exists
    from 4.12 (1aea9b3f9210, 5-level tables).
    """

    TABLE_BITS = table_bits(_SEGMENT_ENTRY)

    # -- leaf PTE ------------------------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``mk_pte_phys(pfn << PAGE_SHIFT, prot)`` = ``pte_mkyoung(phys | prot)``."""
        return self.pte_mkyoung(self._frame(pfn) | prot)

    def pte_present(self, pte: Value) -> Value:
        """``_PAGE_PRESENT`` (0x001): set for every mapped PTE, PROT_NONE included."""
        return (pte & _PAGE_PRESENT) != 0

    def pte_none(self, pte: Value) -> Value:
        """``pte == _PAGE_INVALID`` (0x400) exactly."""
        return pte == _PAGE_INVALID

    def pte_write(self, pte: Value) -> Value:
        """The software WRITE bit (0x020), not the hardware P bit."""
        return (pte & _PAGE_WRITE) != 0

    def pte_mkwrite(self, pte: Value) -> Value:
        """``pte_mkwrite_novma``: set WRITE; clear P only if the page is already DIRTY."""
        pte = pte | _PAGE_WRITE
        return _clear_if(pte, _PAGE_PROTECT, (pte & _PAGE_DIRTY) != 0)

    def pte_wrprotect(self, pte: Value) -> Value:
        """Clear WRITE, set P."""
        return bits.clear(pte, _PAGE_WRITE) | _PAGE_PROTECT

    def pte_dirty(self, pte: Value) -> Value:
        """The software DIRTY bit (0x008)."""
        return (pte & _PAGE_DIRTY) != 0

    def pte_mkdirty(self, pte: Value) -> Value:
        """Set DIRTY and soft-dirty; clear P if WRITE (the write fault's way out)."""
        pte = pte | _PAGE_DIRTY | _PAGE_SOFT_DIRTY
        return _clear_if(pte, _PAGE_PROTECT, (pte & _PAGE_WRITE) != 0)

    def pte_mkclean(self, pte: Value) -> Value:
        """Clear DIRTY, set P so the next store faults again."""
        return bits.clear(pte, _PAGE_DIRTY) | _PAGE_PROTECT

    def pte_young(self, pte: Value) -> Value:
        """The software YOUNG bit (0x004)."""
        return (pte & _PAGE_YOUNG) != 0

    def pte_mkyoung(self, pte: Value) -> Value:
        """Set YOUNG; clear I if READ (a PROT_NONE entry stays invalid)."""
        pte = pte | _PAGE_YOUNG
        return _clear_if(pte, _PAGE_INVALID, (pte & _PAGE_READ) != 0)

    def pte_mkold(self, pte: Value) -> Value:
        """Clear YOUNG, set I so the next access faults."""
        return bits.clear(pte, _PAGE_YOUNG) | _PAGE_INVALID

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """Keep ``_PAGE_CHG_MASK``, OR newprot, then clear I if YOUNG and READ and clear P if
        DIRTY and WRITE (newprot of PAGE_NONE..RWX carries both I and P)."""
        pte = (pte & _PAGE_CHG_MASK) | prot
        pte = _clear_if(pte, _PAGE_INVALID, (pte & (_PAGE_YOUNG | _PAGE_READ)) == (_PAGE_YOUNG | _PAGE_READ))
        return _clear_if(
            pte, _PAGE_PROTECT, (pte & (_PAGE_DIRTY | _PAGE_WRITE)) == (_PAGE_DIRTY | _PAGE_WRITE)
        )

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``_PAGE_INVALID | _PAGE_PROTECT | (offset & (2**52-1)) << 12 | (type & 31) << 2``."""
        return (
            _PAGE_INVALID
            | _PAGE_PROTECT
            | ((offset & _SWP_OFFSET_MASK) << hw.PAGE_SHIFT)
            | ((swp_type & _SWP_TYPE_MASK) << 2)
        )

    # -- region and segment entries ---------------------------------------------------------------
    def entry_kind(self, i: int, entry: Value) -> Value:
        """pgd/p4d/pud_none and _bad, pmd_none, pmd_leaf and pmd_bad of 6.18.

        Region entry: none when it equals the level's empty value; a table when I is
        clear, the type matches, the length is 3 and no bit outside ``_REGION_ENTRY_BITS``
        is set (a region-third large entry, EDAT-2, is outside this model and bad).
        Segment entry: none when it equals 0x20; a leaf when PRESENT and LARGE (EDAT-1
        modes only; an old or PROT_NONE leaf has I set and is still Linux's leaf); a table
        when PRESENT with I, LARGE and the bits outside ``_SEGMENT_ENTRY_BITS`` clear.
        """
        shift = self._shift(i)
        if shift != hw.SEGMENT_SHIFT:
            return self._region_kind(
                shift, entry, entry == self.EMPTY[shift], _REGION_ENTRY_BITS ^ bits.ALL64
            )
        none = entry == _SEGMENT_ENTRY_EMPTY
        head = (
            _SEGMENT_ENTRY_LARGE
            | _SEGMENT_ENTRY_INVALID
            | _SEGMENT_ENTRY_TYPE_MASK
            | _SEGMENT_ENTRY_PRESENT
            | (_SEGMENT_ENTRY_BITS ^ bits.ALL64)
        )
        table = (entry & head) == _SEGMENT_ENTRY_PRESENT
        kind = bits.select(table, ENTRY_TABLE, ENTRY_BAD)
        if self.edat1:
            leaf_bits = _SEGMENT_ENTRY_LARGE | _SEGMENT_ENTRY_PRESENT
            leaf = (entry & (leaf_bits | _SEGMENT_ENTRY_TYPE_MASK)) == leaf_bits
            kind = bits.select(leaf, ENTRY_LEAF, kind)
        return bits.select(none, ENTRY_NONE, kind)

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pmd_mkhuge(pfn_pmd(pfn, prot))`` as the THP fault path builds it.

        ``mk_pmd_phys`` translates the PTE pgprot with ``massage_pgprot_pmd`` (PAGE_NONE,
        RO, RX, RW; anything else becomes SEGMENT_RWX), then ``pmd_mkhuge`` sets LARGE,
        YOUNG and PROTECT: a young, clean 1 MiB leaf whose first store faults."""
        self._leaf_level(i)
        low = massage_pgprot_pmd(prot) | _SEGMENT_ENTRY_LARGE | _SEGMENT_ENTRY_YOUNG | _SEGMENT_ENTRY_PROTECT
        return self._frame(pfn) | low
