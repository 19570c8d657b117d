"""What each modelled Linux release puts on top of the x86-64 hardware format.

One :class:`KernelDefs` per profile holds the release's software bits, PROT_NONE alias,
physical-address mask, ``_PAGE_CHG_MASK`` and pgprot values, so the helper classes
(:mod:`mixedmap_x86.ops_2008`, :mod:`mixedmap_x86.ops_618`) read constants instead of
branching on a version string.

Configuration assumed, as in the reference test vectors: NX and PGE supported (so
``__supported_pte_mask`` keeps every bit), ``CONFIG_MEM_SOFT_DIRTY=y``,
``CONFIG_HAVE_ARCH_USERFAULTFD_WP=y``, ``CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS=y``, no
SME/TDX (``_PAGE_ENC`` = ``_PAGE_CC`` = 0) and no page-table isolation (``PAGE_KERNEL``
keeps G).
"""

from __future__ import annotations

import attrs

from mixedmap import bits
from mixedmap_x86 import hw

#: ``__supported_pte_mask`` on a CPU with NX and PGE: nothing is filtered out.
SUPPORTED_PTE_MASK = bits.ALL64

#: ``_PAGE_TABLE``: what every pgd/p4d/pud/pmd_populate writes (P|RW|US|A|D).
PAGE_TABLE = hw.P | hw.RW | hw.US | hw.A | hw.D
#: ``_KERNPG_TABLE``: the kernel-only variant (P|RW|A|D).
KERNPG_TABLE = hw.P | hw.RW | hw.A | hw.D

#: x86 ``__P000 .. __P111`` then ``__S000 .. __S111`` (bits "xwr"), i.e. index 0..15 =
#: VM_READ=1 | VM_WRITE=2 | VM_EXEC=4 | VM_SHARED=8. Identical in 2.6.26, 2.6.27
#: (include/asm-x86/pgtable.h) and 6.18 (arch/x86/mm/pgprot.c); only the values differ.
PROTECTION_MAP_NAMES: tuple[str, ...] = (
    "PAGE_NONE", "PAGE_READONLY", "PAGE_COPY", "PAGE_COPY",
    "PAGE_READONLY_EXEC", "PAGE_READONLY_EXEC", "PAGE_COPY_EXEC", "PAGE_COPY_EXEC",
    "PAGE_NONE", "PAGE_READONLY", "PAGE_SHARED", "PAGE_SHARED",
    "PAGE_READONLY_EXEC", "PAGE_READONLY_EXEC", "PAGE_SHARED_EXEC", "PAGE_SHARED_EXEC",
)  # fmt: skip


@attrs.frozen(kw_only=True)
class KernelDefs:
    """The Linux x86-64 page-table definitions of one kernel release."""

    profile: str
    #: ``__PHYSICAL_MASK_SHIFT``: PTE_PFN_MASK covers bits shift-1 .. 12.
    physical_mask_shift: int
    #: ``_PAGE_SPECIAL`` or None where ``pte_special()`` is a stub returning 0.
    special: int | None
    #: ``_PAGE_PROTNONE``: the bit that keeps a P=0 PROT_NONE entry "present" for Linux.
    protnone: int
    soft_dirty: int = 0
    uffd_wp: int = 0
    saved_dirty: int = 0
    #: ``_PAGE_KNL_ERRATUM_MASK``: A/D bits pte_none()/pmd_none() ignore (Knights Landing).
    knl_erratum_mask: int = 0
    #: L1TF mitigation: the PFN field of a non-zero P=0 entry is stored inverted.
    inverts_pfn: bool = False
    #: ``_PAGE_CHG_MASK``: the bits ``pte_modify()`` keeps from the old entry.
    chg_mask: int
    #: Named pgprot values, as the kernel defines them for this release.
    protections: tuple[tuple[str, int], ...]
    source: str

    @property
    def pte_pfn_mask(self) -> int:
        """``PTE_PFN_MASK`` = ``PAGE_MASK & __PHYSICAL_MASK``."""
        return hw.addr_mask(self.physical_mask_shift, hw.PAGE_SHIFT)

    def prot(self, name: str) -> int:
        return dict(self.protections)[name]

    @property
    def protection_map(self) -> tuple[int, ...]:
        """``__P000 .. __S111`` (x86 ``protection_map``), indexed by VM_READ|WRITE|EXEC|SHARED."""
        return tuple(self.prot(name) for name in PROTECTION_MAP_NAMES)


def _user_prots(page_none: int) -> list[tuple[str, int]]:
    """The user pgprots, identical in 2.6.26, 2.6.27 and 6.18 apart from PAGE_NONE."""
    user_r = hw.P | hw.US | hw.A
    return [
        ("PAGE_NONE", page_none),
        ("PAGE_SHARED", user_r | hw.RW | hw.NX),
        ("PAGE_SHARED_EXEC", user_r | hw.RW),
        ("PAGE_COPY", user_r | hw.NX),
        ("PAGE_COPY_EXEC", user_r),
        ("PAGE_READONLY", user_r | hw.NX),
        ("PAGE_READONLY_EXEC", user_r),
    ]


_KERNEL_EXEC = hw.P | hw.RW | hw.A | hw.D | hw.G  # __PAGE_KERNEL_EXEC (with the global bit)


def _kernel_prots(kernel_ro: int) -> list[tuple[str, int]]:
    return [
        ("PAGE_KERNEL", _KERNEL_EXEC | hw.NX),
        ("PAGE_KERNEL_EXEC", _KERNEL_EXEC),
        ("PAGE_KERNEL_RO", kernel_ro),
        ("PAGE_KERNEL_LARGE", _KERNEL_EXEC | hw.NX | hw.PS),
        ("_PAGE_TABLE", PAGE_TABLE),
        ("_KERNPG_TABLE", KERNPG_TABLE),
    ]


# 2.6.x: PROT_NONE is the PSE bit; bit 9 is _PAGE_BIT_UNUSED1 until 2.6.27 names it SPECIAL.
_PROTNONE_2008 = hw.PS
_PAGE_NONE_2008 = _PROTNONE_2008 | hw.A
# 2.6.x __PAGE_KERNEL_RO = __PAGE_KERNEL & ~_PAGE_RW keeps D.
_PROTS_2008 = tuple(_user_prots(_PAGE_NONE_2008) + _kernel_prots((_KERNEL_EXEC | hw.NX) ^ hw.RW))
_PFN_MASK_46 = hw.addr_mask(46, hw.PAGE_SHIFT)

L2626 = KernelDefs(
    profile="2.6.26",
    physical_mask_shift=46,
    special=None,
    protnone=_PROTNONE_2008,
    chg_mask=_PFN_MASK_46 | hw.PCD | hw.PWT | hw.A | hw.D,
    protections=_PROTS_2008,
    source=(
        "linux-2.6.26 include/asm-x86/pgtable.h (_PAGE_BIT_UNUSED1, pte_special() returns 0, "
        "MAKE_GLOBAL), pgtable_64.h, page_64.h (__PHYSICAL_MASK_SHIFT 46), sparsemem.h"
    ),
)

L2627 = KernelDefs(
    profile="2.6.27",
    physical_mask_shift=46,
    special=1 << 9,
    protnone=_PROTNONE_2008,
    chg_mask=_PFN_MASK_46 | hw.PCD | hw.PWT | (1 << 9) | hw.A | hw.D,
    protections=_PROTS_2008,
    source=(
        "linux-2.6.27 include/asm-x86/pgtable.h (_PAGE_BIT_SPECIAL = _PAGE_BIT_UNUSED1, "
        "__P000..__S111), pgtable_64.h (pte_pfn, swap entry), page_64.h, sparsemem.h"
    ),
)

_SOFTW1, _SOFTW2, _SOFTW3, _SOFTW5 = 1 << 9, 1 << 10, 1 << 11, 1 << 58
_PFN_MASK_52 = hw.addr_mask(52, hw.PAGE_SHIFT)

# 6.18, field by field against 2.6.27 (arch/x86/include/asm/pgtable_types.h unless noted):
L618 = KernelDefs(
    profile="6.18",
    # __PHYSICAL_MASK_SHIFT 52 on every 64-bit kernel since 4.17 ("x86/mm: Make
    # __PHYSICAL_MASK_SHIFT always 52", page_64_types.h); 46 before.
    physical_mask_shift=52,
    special=_SOFTW1,  # unchanged since 2.6.27; bit 9 renamed _PAGE_BIT_SOFTW1
    # _PAGE_BIT_PROTNONE = _PAGE_BIT_GLOBAL: moved off PSE (which is PAT in a 4 KiB PTE)
    # after 2.6.27; the exact release is not pinned down here.
    protnone=hw.G,
    soft_dirty=_SOFTW3,  # 3.11, "mm: soft-dirty bits for user memory changes tracking"
    uffd_wp=_SOFTW2,  # 5.7, userfaultfd write-protect
    saved_dirty=_SOFTW5,  # 6.6, user shadow stacks (_PAGE_SAVED_DIRTY)
    knl_erratum_mask=hw.D | hw.A,  # 4.8, Knights Landing erratum: p?d_none() ignore A/D
    inverts_pfn=True,  # 4.19, L1TF (pgtable-invert.h)
    chg_mask=(_PFN_MASK_52 | hw.PCD | hw.PWT | _SOFTW1 | hw.A | hw.D | _SOFTW5 | _SOFTW3 | _SOFTW2 | hw.PAT),
    protections=tuple(_user_prots(hw.A | hw.G) + _kernel_prots(hw.P | hw.A | hw.NX | hw.G)),
    source=(
        "linux-6.18 arch/x86/include/asm/pgtable_types.h, pgtable.h, pgtable_64.h (swap entry), "
        "pgtable-invert.h, page_64_types.h, sparsemem.h, arch/x86/mm/pgprot.c (protection_map), "
        "arch/x86/mm/pgtable.c (pte_mkwrite)"
    ),
)

KERNELS: dict[str, KernelDefs] = {k.profile: k for k in (L2626, L2627, L618)}
