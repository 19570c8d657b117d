"""Today's Book3S-64 Linux PTE (6.18): one encoding for radix and hash, stored big-endian.

The Linux PTE *is* the radix hardware PTE (V = ``_PAGE_PRESENT``, L = ``_PAGE_PTE``, R/C =
ACCESSED/DIRTY, EAA = PRIVILEGED/READ/WRITE/EXEC); under hash the same layout is kept and the
hash fault path converts it to an HPTE, borrowing bits radix leaves zero (pkeys, slot).
``pte_t`` is a ``__be64`` even on ppc64le kernels, so entries are big-endian in memory.
(L618 ``arch/powerpc/include/asm/book3s/64/pgtable.h``, ``radix.h``, ``hash.h``,
``hash-4k.h``, ``hash-64k.h``, ``pgtable-masks.h``, ``arch/powerpc/mm/pgtable.c``)
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from mixedmap import PageTableFormat, PteOps, bits
from mixedmap.bits import ALL64, Value

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
PAGE_NONE: Final = BASE
PAGE_EXECONLY_X: Final = BASE | EXEC
PAGE_SHARED: Final = BASE | RW
PAGE_SHARED_X: Final = BASE | RWX
PAGE_COPY: Final = BASE | READ
PAGE_COPY_X: Final = BASE | READ | EXEC
PAGE_READONLY: Final = BASE | READ
PAGE_READONLY_X: Final = BASE | READ | EXEC
PAGE_KERNEL: Final = BASE | PRIVILEGED | RW | DIRTY
PAGE_KERNEL_NC: Final = BASE | PRIVILEGED | RW | DIRTY | TOLERANT
PAGE_KERNEL_NCG: Final = BASE | PRIVILEGED | RW | DIRTY | NON_IDEMPOTENT
PAGE_KERNEL_X: Final = BASE | PRIVILEGED | DIRTY | RWX
PAGE_KERNEL_RO: Final = BASE | PRIVILEGED | READ
PAGE_KERNEL_ROX: Final = BASE | PRIVILEGED | READ | EXEC

PROTECTIONS: Final = (
    ("PAGE_NONE", PAGE_NONE),
    ("PAGE_EXECONLY_X", PAGE_EXECONLY_X),
    ("PAGE_SHARED", PAGE_SHARED),
    ("PAGE_SHARED_X", PAGE_SHARED_X),
    ("PAGE_COPY", PAGE_COPY),
    ("PAGE_COPY_X", PAGE_COPY_X),
    ("PAGE_READONLY", PAGE_READONLY),
    ("PAGE_READONLY_X", PAGE_READONLY_X),
    ("PAGE_KERNEL", PAGE_KERNEL),
    ("PAGE_KERNEL_NC", PAGE_KERNEL_NC),
    ("PAGE_KERNEL_NCG", PAGE_KERNEL_NCG),
    ("PAGE_KERNEL_X", PAGE_KERNEL_X),
    ("PAGE_KERNEL_RO", PAGE_KERNEL_RO),
    ("PAGE_KERNEL_ROX", PAGE_KERNEL_ROX),
)

#: ``protection_map`` (arch/powerpc/mm/pgtable.c): exec-only mappings exist (PAGE_EXECONLY_X).
PROTECTION_MAP: Final = (
    PAGE_NONE, PAGE_READONLY, PAGE_COPY, PAGE_COPY,
    PAGE_EXECONLY_X, PAGE_READONLY_X, PAGE_COPY_X, PAGE_COPY_X,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_EXECONLY_X, PAGE_READONLY_X, PAGE_SHARED_X, PAGE_SHARED_X,
)  # fmt: skip

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


class Pte618Ops(PteOps):
    """The leaf-PTE half of 6.18 ``book3s/64/pgtable.h``; subclasses add the tree's upper levels.

    ``none_mask`` is what ``pte_none`` ignores: ``RADIX_PTE_NONE_MASK`` (DIRTY|ACCESSED, an
    empty radix PTE may still get an R/C write-back) or ``H_PTE_NONE_MASK`` (the HPTE flags).
    """

    def __init__(self, fmt: PageTableFormat, *, none_mask: int) -> None:
        self.fmt = fmt
        self._shift = fmt.page_shift
        self._rpn = rpn_mask(fmt.page_shift)
        self._chg = chg_mask(fmt.page_shift)
        self._none_mask = none_mask

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

    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``radix__pte_none`` / ``hash__pte_none``: empty apart from the ignored bits."""
        return bits.clear(pte, self._none_mask) == 0  # type: ignore[no-any-return]

    def pte_write(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_write``: ``_PAGE_WRITE`` (6.18 has no savedwrite any more)."""
        return (pte & WRITE) != 0  # type: ignore[no-any-return]

    def pte_mkwrite(self, pte: Value) -> Value:
        """``pte_mkwrite_novma``: write implies read, so set READ and WRITE."""
        return pte | RW

    def pte_wrprotect(self, pte: Value) -> Value:
        """``pte_wrprotect``: clear ``_PAGE_WRITE`` (READ stays)."""
        return bits.clear(pte, WRITE)

    def pte_dirty(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_dirty``: ``_PAGE_DIRTY`` = the radix C bit."""
        return (pte & DIRTY) != 0  # type: ignore[no-any-return]

    def pte_mkdirty(self, pte: Value) -> Value:
        """``pte_mkdirty``: DIRTY and SOFT_DIRTY together."""
        return pte | DIRTY | SOFT_DIRTY

    def pte_mkclean(self, pte: Value) -> Value:
        """``pte_mkclean``: clear DIRTY only (soft-dirty is cleared by clear_refs)."""
        return bits.clear(pte, DIRTY)

    def pte_young(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_young``: ``_PAGE_ACCESSED`` = the radix R bit."""
        return (pte & ACCESSED) != 0  # type: ignore[no-any-return]

    def pte_mkyoung(self, pte: Value) -> Value:
        """``pte_mkyoung``: set ACCESSED."""
        return pte | ACCESSED

    def pte_mkold(self, pte: Value) -> Value:
        """``pte_mkold``: clear ACCESSED."""
        return bits.clear(pte, ACCESSED)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """``pte_modify``: ``(pte & _PAGE_CHG_MASK) | newprot`` (SPECIAL and _PAGE_PTE survive)."""
        return (pte & self._chg) | prot

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry_to_pte(__swp_entry(t, o))``: ``t | ((o << PAGE_SHIFT) & RPN) | _PAGE_PTE``."""
        return swp_type | ((offset << self._shift) & self._rpn) | PTE

    def empty_entry(self, i: int) -> int:
        """Tables are zero-filled at every level."""
        return 0

    def root_value(self, root_pa: int) -> int:
        """The PGD's physical address (what a process-table entry's RPDB holds for radix)."""
        return root_pa

    def root_table_pa(self, root: int) -> int:
        """Inverse of :meth:`root_value`."""
        return root

    def _upper(self, i: int) -> None:
        if not 0 <= i < len(self.fmt.levels) - 1:
            raise IndexError(f"ppc64/{self.fmt.mode}: {i} is not an upper level")
