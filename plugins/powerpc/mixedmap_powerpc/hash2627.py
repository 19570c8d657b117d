"""The ppc64 hash-MMU Linux PTE and Linux tree of 2.6.26 and 2.6.27 (big-endian, software-only).

On a 2008 ppc64 the MMU never reads the Linux page tables: it walks the hashed page table
(HPTEs), which ``hash_page`` fills from the Linux PTE on a fault. The Linux tree is therefore
pure software, and two of its quirks matter to a bit-exact model:

* upper-level entries hold the kernel *virtual* address of the next table
  (``pgd_set``/``pud_set``/``pmd_set`` store ``(unsigned long)table``, a linear-map address
  ``KERNELBASE + pa``), and ``pmd_bad``/``pud_bad`` reject anything that is not a kernel
  address or is misaligned (L2627 ``arch/powerpc/include/asm/pgtable-ppc64.h``,
  ``pgalloc-64.h``);
* the PFN sits above the HPTE bookkeeping bits: ``PTE_RPN_SHIFT`` is 17 with 4 KiB pages and
  30 with 64 KiB pages (L2627 ``pgtable-4k.h``, ``pgtable-64k.h``).

2.6.26 had no ``_PAGE_SPECIAL`` on ppc64 (``pte_special()`` returned 0): 0x10000 (4K) and 0x400
(64K) were unused bits. 2.6.27 added them (commit 83ac6a1ed4, "powerpc/mm: Implement
_PAGE_SPECIAL & pte_special() for 64-bit").
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.typing import NDArray

from mixedmap import ENTRY_BAD, ENTRY_NONE, ENTRY_TABLE, PageTableFormat, PteOps, UnsupportedOperation, bits
from mixedmap.bits import ALL64, Value

#: ``KERNELBASE`` = ``PAGE_OFFSET``: start of the linear mapping; ``__va(pa) = pa + KERNELBASE``.
KERNELBASE: Final = 0xC000_0000_0000_0000

# -- bits common to 4K and 64K (L2627 pgtable-ppc64.h) ------------------------------------
PRESENT: Final = 0x0001
USER: Final = 0x0002  # _PAGE_FILE when not present
EXEC: Final = 0x0004
GUARDED: Final = 0x0008
COHERENT: Final = 0x0010
NO_CACHE: Final = 0x0020
WRITETHRU: Final = 0x0040
DIRTY: Final = 0x0080
ACCESSED: Final = 0x0100
RW: Final = 0x0200
BUSY: Final = 0x0800

BASE: Final = PRESENT | ACCESSED | COHERENT
WRENABLE: Final = RW | DIRTY

# -- 4K pages (L2627 pgtable-4k.h) -------------------------------------------------------
HASHPTE_4K: Final = 0x0400
SECONDARY_4K: Final = 0x8000
GROUP_IX_4K: Final = 0x7000
SPECIAL_4K: Final = 0x10000
RPN_SHIFT_4K: Final = 17
HPTEFLAGS_4K: Final = BUSY | HASHPTE_4K | SECONDARY_4K | GROUP_IX_4K
#: ``PAGE_MASK | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_HPTEFLAGS`` (PAGE_MASK also keeps 0x10000,
#: so _PAGE_SPECIAL survives pte_modify in 2.6.27 even before it was named in the mask).
CHG_MASK_4K: Final = (ALL64 ^ 0xFFF) | ACCESSED | DIRTY | HPTEFLAGS_4K

# -- 64K pages (L2627 pgtable-64k.h) -----------------------------------------------------
SPECIAL_64K: Final = 0x0000_0400
HPTE_SUB_64K: Final = 0x0FFF_F000  # = _PAGE_HASHPTE; bit 27 is _PAGE_HPTE_SUB0
HPTE_SUB0_64K: Final = 0x0800_0000
COMBO_64K: Final = 0x1000_0000
PFN4K_64K: Final = 0x2000_0000  # _PAGE_4K_PFN
F_SECOND_64K: Final = 0x0000_8000
F_GIX_64K: Final = 0x0000_7000
RPN_SHIFT_64K: Final = 30
HPTEFLAGS_64K: Final = BUSY | HPTE_SUB_64K | COMBO_64K
#: ``PTE_RPN_MASK | _PAGE_HPTEFLAGS | _PAGE_DIRTY | _PAGE_ACCESSED``: in 2.6.27 it did NOT
#: include _PAGE_SPECIAL, so mprotect() dropped the special bit of a 64K-page PTE. Fixed by
#: fbc78b07 "powerpc/mm: Fix _PAGE_CHG_MASK to protect _PAGE_SPECIAL" in 2.6.29-rc5.
CHG_MASK_64K: Final = (ALL64 ^ ((1 << RPN_SHIFT_64K) - 1)) | HPTEFLAGS_64K | DIRTY | ACCESSED

# -- protections (L2627 pgtable-ppc64.h) --------------------------------------------------
PAGE_NONE: Final = PRESENT | ACCESSED
PAGE_SHARED: Final = BASE | RW | USER
PAGE_SHARED_X: Final = BASE | RW | USER | EXEC
PAGE_COPY: Final = BASE | USER
PAGE_COPY_X: Final = BASE | USER | EXEC
PAGE_READONLY: Final = BASE | USER
PAGE_READONLY_X: Final = BASE | USER | EXEC
PAGE_KERNEL: Final = BASE | WRENABLE
PAGE_KERNEL_CI: Final = PRESENT | ACCESSED | WRENABLE | NO_CACHE | GUARDED
PAGE_KERNEL_EXEC: Final = BASE | WRENABLE | EXEC
PAGE_AGP: Final = BASE | WRENABLE | NO_CACHE

PROTECTIONS: Final = (
    ("PAGE_NONE", PAGE_NONE),
    ("PAGE_SHARED", PAGE_SHARED),
    ("PAGE_SHARED_X", PAGE_SHARED_X),
    ("PAGE_COPY", PAGE_COPY),
    ("PAGE_COPY_X", PAGE_COPY_X),
    ("PAGE_READONLY", PAGE_READONLY),
    ("PAGE_READONLY_X", PAGE_READONLY_X),
    ("PAGE_KERNEL", PAGE_KERNEL),
    ("PAGE_KERNEL_CI", PAGE_KERNEL_CI),
    ("PAGE_KERNEL_EXEC", PAGE_KERNEL_EXEC),
    ("PAGE_AGP", PAGE_AGP),
)

#: ``__P000..__P111, __S000..__S111``: no write-only or exec-only pages, and a private
#: writable mapping starts read-only (COW).
PROTECTION_MAP: Final = (
    PAGE_NONE, PAGE_READONLY, PAGE_COPY, PAGE_COPY,
    PAGE_READONLY_X, PAGE_READONLY_X, PAGE_COPY_X, PAGE_COPY_X,
    PAGE_NONE, PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_READONLY_X, PAGE_READONLY_X, PAGE_SHARED_X, PAGE_SHARED_X,
)  # fmt: skip


class Hash2627Ops(PteOps):
    """``pgtable-ppc64.h`` of 2.6.26/2.6.27 for one page size, as bit operations.

    ``masked`` and ``bad`` are per upper level: the bits ``p?d_page_vaddr`` masks off and
    the bits ``p?d_bad`` rejects (``None``: that level's ``_bad`` only tests for zero, as the
    4K ``pgd_bad`` did).
    """

    def __init__(
        self,
        fmt: PageTableFormat,
        *,
        rpn_shift: int,
        hpteflags: int,
        chg_mask: int,
        masked: tuple[int, ...],
        bad: tuple[int | None, ...],
    ) -> None:
        self.fmt = fmt
        self._rpn_shift = rpn_shift
        self._hpteflags = hpteflags
        self._chg_mask = chg_mask
        self._masked = masked
        self._bad = bad

    # -- leaf PTE helpers ----------------------------------------------------------------
    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        """``pfn_pte``: ``(pfn << PTE_RPN_SHIFT) | prot``; the PFN sits above the HPTE slot bits."""
        return ((pfn << self._rpn_shift) & ALL64) | prot

    def pte_pfn(self, pte: Value) -> Value:
        """``pte_pfn``: ``pte >> PTE_RPN_SHIFT`` (nothing above the PFN to mask)."""
        return pte >> self._rpn_shift

    def pte_present(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_present``: ``_PAGE_PRESENT`` (0x1); hash_page refuses a PTE without it."""
        return (pte & PRESENT) != 0  # type: ignore[no-any-return]

    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_none``: empty once the HPTE bookkeeping bits (``_PAGE_HPTEFLAGS``) are ignored."""
        return bits.clear(pte, self._hpteflags) == 0  # type: ignore[no-any-return]

    def pte_write(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_write``: ``_PAGE_RW`` (a software bit; hash_page maps clean RW pages read-only)."""
        return (pte & RW) != 0  # type: ignore[no-any-return]

    def pte_mkwrite(self, pte: Value) -> Value:
        """``pte_mkwrite``: set ``_PAGE_RW``."""
        return pte | RW

    def pte_wrprotect(self, pte: Value) -> Value:
        """``pte_wrprotect``: clear ``_PAGE_RW``."""
        return bits.clear(pte, RW)

    def pte_dirty(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_dirty``: ``_PAGE_DIRTY`` (the HPTE's C bit lives in the HPTE, not here)."""
        return (pte & DIRTY) != 0  # type: ignore[no-any-return]

    def pte_mkdirty(self, pte: Value) -> Value:
        """``pte_mkdirty``: set ``_PAGE_DIRTY``."""
        return pte | DIRTY

    def pte_mkclean(self, pte: Value) -> Value:
        """``pte_mkclean``: clear ``_PAGE_DIRTY``."""
        return bits.clear(pte, DIRTY)

    def pte_young(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_young``: ``_PAGE_ACCESSED``."""
        return (pte & ACCESSED) != 0  # type: ignore[no-any-return]

    def pte_mkyoung(self, pte: Value) -> Value:
        """``pte_mkyoung``: set ``_PAGE_ACCESSED``."""
        return pte | ACCESSED

    def pte_mkold(self, pte: Value) -> Value:
        """``pte_mkold``: clear ``_PAGE_ACCESSED``."""
        return bits.clear(pte, ACCESSED)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """``pte_modify``: ``(pte & _PAGE_CHG_MASK) | newprot`` (64K 2.6.27 drops _PAGE_SPECIAL)."""
        return (pte & self._chg_mask) | prot

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry_to_pte(__swp_entry(type, off))``: ``((type << 1) | (off << 8)) << RPN_SHIFT``."""
        entry = ((swp_type << 1) | (offset << 8)) & ALL64
        return (entry << self._rpn_shift) & ALL64

    # -- upper levels and the root -------------------------------------------------------
    def _upper(self, i: int) -> None:
        if not 0 <= i < len(self.fmt.levels) - 1:
            raise IndexError(f"ppc64/{self.fmt.mode}: {i} is not an upper level")

    def empty_entry(self, i: int) -> int:
        """New tables are zero-filled (kmem caches with a zeroing ctor, ``__GFP_ZERO`` PTE pages)."""
        return 0

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """``p?d_populate``: the table's linear-map virtual address ``KERNELBASE + pa``."""
        self._upper(i)
        return table_pa | KERNELBASE

    def entry_kind(self, i: int, entry: Value) -> Value:
        """``p?d_none``/``p?d_bad``: zero is none; a non-kernel or misaligned address is bad.

        The 4K ``pgd_bad`` only tested for zero, so any non-zero PGD entry is a table there.
        There are no leaves: 2.6.27 kept huge pages in separate hugepte tables.
        """
        self._upper(i)
        bad_bits = self._bad[i]
        if bad_bits is None:
            return bits.select(entry == 0, ENTRY_NONE, ENTRY_TABLE)
        bad = ((entry & KERNELBASE) != KERNELBASE) | ((entry & bad_bits) != 0)
        return bits.select(entry == 0, ENTRY_NONE, bits.select(bad, ENTRY_BAD, ENTRY_TABLE))

    def table_pa(self, i: int, entry: Value) -> Value:
        """``__pa(p?d_page_vaddr(e))``: drop the masked low bits, then the linear-map offset.

        ``__pa`` subtracts ``KERNELBASE``; for the kernel addresses ``p?d_populate`` writes
        that is the same as clearing bits 63:62.
        """
        self._upper(i)
        return bits.clear(entry, self._masked[i] | KERNELBASE)

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """Not available: the 2.6.27 Linux hash tree has no large-page leaf entries."""
        raise UnsupportedOperation(
            f"ppc64/{self.fmt.mode} (profile {self.fmt.profile}): the Linux hash tree has no "
            "large-page leaves; hugetlb pages lived in separate hugepte tables"
        )

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """Not available (see :meth:`mk_leaf`)."""
        return self.mk_leaf(i, entry, 0)

    def root_value(self, root_pa: int) -> int:
        """The Linux tree is software-only (the MMU walks the HPT): the root is the PGD's pa."""
        return root_pa

    def root_table_pa(self, root: int) -> int:
        """Inverse of :meth:`root_value`."""
        return root
