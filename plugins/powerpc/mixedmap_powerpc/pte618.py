"""Today's Book3S-64 Linux PTE (6.18): one encoding for radix and hash, stored big-endian.

The Linux PTE *is* the radix hardware PTE (V = ``_PAGE_PRESENT``, L = ``_PAGE_PTE``, R/C =
ACCESSED/DIRTY, EAA = PRIVILEGED/READ/WRITE/EXEC); under hash the same layout is kept and the
hash fault path converts it to an HPTE, borrowing bits radix leaves zero (pkeys, slot).
``pte_t`` is a ``__be64`` even on ppc64le kernels, so entries are big-endian in memory.
Both facts date from 4.7, the release that brought radix (POWER9) support: the Book3S-64
PTE was reshuffled into the radix layout (``_PAGE_PRESENT`` bit 63, ``_PAGE_PTE`` bit 62,
``_PAGE_READ``/``_PAGE_WRITE``/``_PAGE_EXEC``/``_PAGE_PRIVILEGED``, ``_PAGE_SPECIAL`` =
``_RPAGE_SW2``) and the tables became big-endian. The helpers shared with 2.6.27 live in
:mod:`mixedmap_powerpc.ops_base`; :class:`Pte618Ops` states what differs.
(L618 ``arch/powerpc/include/asm/book3s/64/pgtable.h``, ``radix.h``, ``hash.h``,
``hash-4k.h``, ``hash-64k.h``, ``pgtable-masks.h``, ``arch/powerpc/mm/pgtable.c``)
"""

from __future__ import annotations

from typing import ClassVar, Final

import numpy as np
from numpy.typing import NDArray

from mixedmap import PageTableFormat, UnsupportedOperation
from mixedmap.bits import ALL64, Value
from mixedmap_powerpc.ops_base import DirEntry, Ppc64Ops, protection_map

# -- common bits (book3s/64/pgtable.h) ---------------------------------------------------
EXEC: Final = 0x00001
WRITE: Final = 0x00002
READ: Final = 0x00004
RW: Final = READ | WRITE
RWX: Final = READ | WRITE | EXEC
PRIVILEGED: Final = 0x00008
SAO: Final = 0x00010
NON_IDEMPOTENT: Final = 0x00020
TOLERANT: Final = 0x00030
CACHE_CTL: Final = SAO | NON_IDEMPOTENT | TOLERANT
DIRTY: Final = 0x00080
ACCESSED: Final = 0x00100
RSV1: Final = 0x00040  # _RPAGE_RSV1 (hash: H_PAGE_BUSY)
SW3: Final = 0x00200
SW2: Final = 0x00400
SW1: Final = 0x00800
SOFT_DIRTY: Final = SW3
SPECIAL: Final = SW2
SW0: Final = 0x2000_0000_0000_0000
INVALID: Final = SW0
PTE: Final = 0x4000_0000_0000_0000
PRESENT: Final = 0x8000_0000_0000_0000

PKEY_BIT4: Final = 0x1000_0000_0000_0000
PKEY_BIT3: Final = 0x0800_0000_0000_0000
PKEY_BIT2: Final = 0x0400_0000_0000_0000
PKEY_BIT1: Final = 0x0200_0000_0000_0000
PKEY_BIT0: Final = 0x0100_0000_0000_0000
RPN43: Final = 0x0080_0000_0000_0000
RPN42: Final = 0x0040_0000_0000_0000
RPN41: Final = 0x0020_0000_0000_0000
RPN0: Final = 0x01000
RPN1: Final = 0x02000

#: ``_PAGE_PA_MAX``: Linux keeps real addresses below 2^53 (the radix RPN field reaches 2^56).
PA_MAX: Final = 53

# -- hash-only bits (hash-4k.h / hash-64k.h) ----------------------------------------------
H_PAGE_BUSY: Final = RSV1
H_PAGE_HASHPTE_4K: Final = PKEY_BIT4
H_PAGE_F_SECOND_4K: Final = PKEY_BIT0
H_PAGE_F_GIX_4K: Final = RPN43 | RPN42 | RPN41
H_PAGE_HASHPTE_64K: Final = RPN43
H_PAGE_COMBO_64K: Final = RPN0
H_PAGE_4K_PFN_64K: Final = RPN1  # also H_PAGE_THP_HUGE
HPTEFLAGS_4K: Final = H_PAGE_BUSY | H_PAGE_HASHPTE_4K | H_PAGE_F_SECOND_4K | H_PAGE_F_GIX_4K
HPTEFLAGS_64K: Final = H_PAGE_BUSY | H_PAGE_HASHPTE_64K | H_PAGE_COMBO_64K

# -- protections (pgtable-masks.h, book3s/64/pgtable.h) -----------------------------------
BASE: Final = PRESENT | ACCESSED
#: Named pgprots, as (name, value) pairs.
PROTECTIONS: Final = (
    ("PAGE_NONE", BASE),
    ("PAGE_EXECONLY_X", BASE | EXEC),
    ("PAGE_SHARED", BASE | RW),
    ("PAGE_SHARED_X", BASE | RWX),
    ("PAGE_COPY", BASE | READ),
    ("PAGE_COPY_X", BASE | READ | EXEC),
    ("PAGE_READONLY", BASE | READ),
    ("PAGE_READONLY_X", BASE | READ | EXEC),
    ("PAGE_KERNEL", BASE | PRIVILEGED | RW | DIRTY),
    ("PAGE_KERNEL_NC", BASE | PRIVILEGED | RW | DIRTY | TOLERANT),
    ("PAGE_KERNEL_NCG", BASE | PRIVILEGED | RW | DIRTY | NON_IDEMPOTENT),
    ("PAGE_KERNEL_X", BASE | PRIVILEGED | DIRTY | RWX),
    ("PAGE_KERNEL_RO", BASE | PRIVILEGED | READ),
    ("PAGE_KERNEL_ROX", BASE | PRIVILEGED | READ | EXEC),
)

#: ``protection_map`` (arch/powerpc/mm/pgtable.c): exec-only mappings exist (PAGE_EXECONLY_X,
#: from 6.1's execute-only memory for the radix MMU).
PROTECTION_MAP: Final = protection_map(PROTECTIONS, exec_only="PAGE_EXECONLY_X")

#: Bits ``p?d_page_vaddr``/``p?d_pgtable`` mask off a directory entry (``PMD_MASKED_BITS``).
DIR_MASKED_BITS: Final = 0xC000_0000_0000_00FF


def rpn_mask(page_shift: int) -> int:
    """``PTE_RPN_MASK``: ``((1 << _PAGE_PA_MAX) - 1) & PAGE_MASK``."""
    return ((1 << PA_MAX) - 1) & (ALL64 ^ ((1 << page_shift) - 1))


def hpteflags(page_shift: int) -> int:
    """``_PAGE_HPTEFLAGS`` of the build's page size (a compile-time constant for both MMUs)."""
    return HPTEFLAGS_4K if page_shift == 12 else HPTEFLAGS_64K


def chg_mask(page_shift: int) -> int:
    """``_PAGE_CHG_MASK``: RPN, HPTE flags, DIRTY, ACCESSED, SPECIAL, ``_PAGE_PTE``, SOFT_DIRTY."""
    return rpn_mask(page_shift) | hpteflags(page_shift) | DIRTY | ACCESSED | SPECIAL | PTE | SOFT_DIRTY


class Pte618Ops(Ppc64Ops):
    """The leaf-PTE half of 6.18 ``book3s/64/pgtable.h``; subclasses add the tree's upper levels.

    The flag helpers are :class:`~mixedmap_powerpc.ops_base.Ppc64Ops`'s with today's bits;
    against 2.6.27 (:mod:`mixedmap_powerpc.hash2627`) the deltas are:

    * write permission is ``_PAGE_WRITE`` and write implies read, so ``pte_mkwrite`` sets
      READ and WRITE (4.7, the PTE reshuffled to the Power ISA 3.0 radix layout);
    * ``pte_mkdirty`` also sets ``_PAGE_SOFT_DIRTY`` (4.5, "powerpc/mm: Add page soft dirty
      tracking");
    * the PTE holds the real address at ``PAGE_SHIFT`` below ``_PAGE_PA_MAX`` (4.7; 2.6.27
      shifted the PFN above the HPTE slot bits) and every leaf carries ``_PAGE_PTE`` (bit 62
      in the 4.7 layout), which ``pte_present``, ``pfn_pte`` and the swap entry use;
    * ``_PAGE_CHG_MASK`` keeps ``_PAGE_SPECIAL`` at every page size (2.6.29-rc5, fbc78b07).

    ``none_mask`` is what ``pte_none`` ignores: ``RADIX_PTE_NONE_MASK`` (DIRTY|ACCESSED, an
    empty radix PTE may still get an R/C write-back) or ``H_PTE_NONE_MASK`` (the HPTE flags).
    Leaves (``mk_leaf``/``leaf_pfn``) are ``pfn_pte`` with ``HUGE_BITS`` where the level
    allows them; ``NO_LEAF`` says why elsewhere.
    """

    WRITE_BIT = WRITE
    MKWRITE_BITS = RW  # pte_mkwrite_novma: write implies read
    DIRTY_BIT = DIRTY  # the radix C bit
    MKDIRTY_BITS = DIRTY | SOFT_DIRTY  # soft-dirty is cleared by clear_refs, not pte_mkclean
    YOUNG_BIT = ACCESSED  # the radix R bit
    LEAF_BIT = PTE
    #: What ``p?d_mkhuge`` adds to a leaf besides prot.
    HUGE_BITS: ClassVar[int] = PTE
    #: The ``UnsupportedOperation`` message for a level without leaves ({mode}, {level}).
    NO_LEAF: ClassVar[str]

    def __init__(self, fmt: PageTableFormat, *, none_mask: int, dirs: tuple[DirEntry, ...]) -> None:
        super().__init__(fmt, none_mask=none_mask, chg_mask=chg_mask(fmt.page_shift), dirs=dirs)
        self._shift = fmt.page_shift
        self._rpn = rpn_mask(fmt.page_shift)

    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``pfn_pte``: ``(pfn << PAGE_SHIFT) | prot | _PAGE_PTE`` (the L bit marks a leaf)."""
        return ((pfn << self._shift) & ALL64) | prot | PTE

    def pte_pfn(self, pte: Value) -> Value:
        """``pte_pfn``: ``(pte & PTE_RPN_MASK) >> PAGE_SHIFT`` (hash bits sit outside the mask)."""
        return (pte & self._rpn) >> self._shift

    def pte_present(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_present``: V and L set, or (during ptep_set_access_flags) INVALID and L set."""
        hw = (pte & (PRESENT | PTE)) == (PRESENT | PTE)
        return hw | ((pte & (INVALID | PTE)) == (INVALID | PTE))  # type: ignore[no-any-return]

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry_to_pte(__swp_entry(t, o))``: ``t | ((o << PAGE_SHIFT) & RPN) | _PAGE_PTE``."""
        return swp_type | ((offset << self._shift) & self._rpn) | PTE

    # -- huge leaves ---------------------------------------------------------------------
    def _leaf_level(self, i: int) -> None:
        self._upper(i)
        if not self.fmt.levels[i].leaf_ok:
            raise UnsupportedOperation(self.NO_LEAF.format(mode=self.fmt.mode, level=self.fmt.levels[i].name))

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """``pfn_pmd``/``pfn_pud`` with ``p?d_mkhuge``: ``((pfn << PAGE_SHIFT) & RPN) | prot | HUGE_BITS``."""
        self._leaf_level(i)
        return (((pfn << self._shift) & ALL64) & self._rpn) | prot | self.HUGE_BITS

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """``pmd_pfn``/``pud_pfn``: ``pte_pfn`` of the entry."""
        self._leaf_level(i)
        return self.pte_pfn(entry)
