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

from mixedmap import PageTableFormat, UnsupportedOperation
from mixedmap.bits import ALL64, Value
from mixedmap_powerpc.ops_base import DirEntry, Ppc64Ops, protection_map

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
#: Named pgprots, as (name, value) pairs.
PROTECTIONS: Final = (
    ("PAGE_NONE", PRESENT | ACCESSED),
    ("PAGE_SHARED", BASE | RW | USER),
    ("PAGE_SHARED_X", BASE | RW | USER | EXEC),
    ("PAGE_COPY", BASE | USER),
    ("PAGE_COPY_X", BASE | USER | EXEC),
    ("PAGE_READONLY", BASE | USER),
    ("PAGE_READONLY_X", BASE | USER | EXEC),
    ("PAGE_KERNEL", BASE | WRENABLE),
    ("PAGE_KERNEL_CI", PRESENT | ACCESSED | WRENABLE | NO_CACHE | GUARDED),
    ("PAGE_KERNEL_EXEC", BASE | WRENABLE | EXEC),
    ("PAGE_AGP", BASE | WRENABLE | NO_CACHE),
)

#: ``__P000..__S111``: no write-only or exec-only pages (exec alone is PAGE_READONLY_X).
PROTECTION_MAP: Final = protection_map(PROTECTIONS, exec_only="PAGE_READONLY_X")


class Hash2627Ops(Ppc64Ops):
    """``pgtable-ppc64.h`` of 2.6.26/2.6.27 for one page size: the deltas from today's tree.

    The flag helpers are :class:`~mixedmap_powerpc.ops_base.Ppc64Ops`'s with the 2008 bits:
    ``_PAGE_RW`` alone is write permission (4.7 split it into ``_PAGE_READ``/``_PAGE_WRITE``)
    and ``pte_mkdirty`` sets ``_PAGE_DIRTY`` alone (soft-dirty came to ppc64 in 4.5). What
    this class adds is what 6.18 no longer does (L2627 ``pgtable-ppc64.h``, ``pgtable-4k.h``,
    ``pgtable-64k.h``, ``pgalloc-64.h``):

    * the PFN sits above the HPTE bookkeeping bits (``PTE_RPN_SHIFT`` 17 or 30; from 4.7 the
      PTE holds the real address at ``PAGE_SHIFT``, the radix layout);
    * directory entries hold kernel *virtual* addresses (until 4.7's "powerpc/mm/book3s-64:
      Use physical addresses in upper page table tree levels");
    * the Linux tree has no leaves (hugetlb pages lived in hugepte tables; ppc64 THP arrived
      in 3.11).

    ``masked`` and ``bad`` are per upper level: the bits ``p?d_page_vaddr`` masks off and
    the bits ``p?d_bad`` rejects (``None``: that level's ``_bad`` only tests for zero, as the
    4K ``pgd_bad`` did). ``chg_mask`` keeps the 64K 2.6.27 quirk: it lacks _PAGE_SPECIAL.
    """

    WRITE_BIT = MKWRITE_BITS = RW  # a software bit; hash_page maps clean RW pages read-only
    DIRTY_BIT = MKDIRTY_BITS = DIRTY  # the HPTE's C bit lives in the HPTE, not here
    YOUNG_BIT = ACCESSED

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
        # p?d_bad: !is_kernel_addr(e) || (e & P?D_BAD_BITS); None: only "e == 0" is tested.
        dirs = tuple(
            DirEntry(
                link=KERNELBASE,
                masked=m | KERNELBASE,
                bad=b or 0,
                required=0 if b is None else KERNELBASE,
            )
            for m, b in zip(masked, bad, strict=True)
        )
        super().__init__(fmt, none_mask=hpteflags, chg_mask=chg_mask, dirs=dirs)
        self._rpn_shift = rpn_shift

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

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        """``__swp_entry_to_pte(__swp_entry(type, off))``: ``((type << 1) | (off << 8)) << RPN_SHIFT``."""
        entry = ((swp_type << 1) | (offset << 8)) & ALL64
        return (entry << self._rpn_shift) & ALL64

    # -- no leaves in the Linux tree -----------------------------------------------------
    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """Not available: the 2.6.27 Linux hash tree has no large-page leaf entries."""
        raise UnsupportedOperation(
            f"ppc64/{self.fmt.mode} (profile {self.fmt.profile}): the Linux hash tree has no "
            "large-page leaves; hugetlb pages lived in separate hugepte tables"
        )

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """Not available (see :meth:`mk_leaf`)."""
        return self.mk_leaf(i, entry, 0)
