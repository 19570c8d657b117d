"""Named bits and fields of every ppc64 entry, per mode and profile (decode, encode, diagrams).

Multi-bit fields have ``kind="field"``. Under hash the MMU never reads the Linux tree, so
every Linux-PTE bit there is ``"sw"`` (the doc names the HPTE bit it feeds); under radix the
PTE is the hardware format and the architected bits are ``"hw"``.
"""

from __future__ import annotations

from typing import Literal

from mixedmap import BitField
from mixedmap.bits import ALL64
from mixedmap_powerpc import hash2627 as h27
from mixedmap_powerpc import pte618 as p

# -- 2.6.26 / 2.6.27 hash Linux PTE -------------------------------------------------------
_COMMON_2627 = (
    BitField(
        name="_PAGE_RW",
        mask=h27.RW,
        kind="sw",
        doc="user write allowed; hash_page maps clean RW pages read-only",
    ),
    BitField(name="_PAGE_ACCESSED", mask=h27.ACCESSED, kind="sw", doc="referenced (HPTE R)"),
    BitField(name="_PAGE_DIRTY", mask=h27.DIRTY, kind="sw", doc="changed (HPTE C)"),
    BitField(name="_PAGE_WRITETHRU", mask=h27.WRITETHRU, kind="sw", doc="write-through (HPTE W)"),
    BitField(name="_PAGE_NO_CACHE", mask=h27.NO_CACHE, kind="sw", doc="cache-inhibited (HPTE I)"),
    BitField(name="_PAGE_COHERENT", mask=h27.COHERENT, kind="sw", doc="memory coherence required (HPTE M)"),
    BitField(name="_PAGE_GUARDED", mask=h27.GUARDED, kind="sw", doc="guarded (HPTE G)"),
    BitField(name="_PAGE_EXEC", mask=h27.EXEC, kind="sw", doc="executable; inverted into HPTE N"),
    BitField(
        name="_PAGE_USER", mask=h27.USER, kind="sw", doc="user access (HPTE PP); _PAGE_FILE when not present"
    ),
    BitField(name="_PAGE_PRESENT", mask=h27.PRESENT, kind="sw", doc="PTE holds a translation"),
)

_BUSY_2627 = BitField(
    name="_PAGE_BUSY", mask=h27.BUSY, kind="sw", doc="PTE and its HPTE are being updated (lock)"
)


def pte_bits_2627(page_shift: int, special: bool) -> tuple[BitField, ...]:
    """Leaf PTE of 2.6.26 (``special=False``) or 2.6.27 (``True``), 4K or 64K pages."""
    if page_shift == 12:
        own: tuple[BitField, ...] = (
            BitField(name="PFN", mask=ALL64 ^ ((1 << h27.RPN_SHIFT_4K) - 1), kind="field",
                     doc="page frame number: pte >> PTE_RPN_SHIFT (17)"),
            *((BitField(name="_PAGE_SPECIAL", mask=h27.SPECIAL_4K, kind="sw",
                        doc="special mapping, no refcounted struct page (2.6.27)"),) if special else ()),
            BitField(name="_PAGE_SECONDARY", mask=h27.SECONDARY_4K, kind="sw",
                     doc="HPTE sits in the secondary hash group (_PAGE_F_SECOND)"),
            BitField(name="_PAGE_GROUP_IX", mask=h27.GROUP_IX_4K, kind="field",
                     doc="HPTE slot within its group (_PAGE_F_GIX)"),
            _BUSY_2627,
            BitField(name="_PAGE_HASHPTE", mask=h27.HASHPTE_4K, kind="sw", doc="an HPTE exists for this PTE"),
        )  # fmt: skip
    else:
        own = (
            BitField(name="PFN", mask=ALL64 ^ ((1 << h27.RPN_SHIFT_64K) - 1), kind="field",
                     doc="page frame number: pte >> PTE_RPN_SHIFT (30)"),
            BitField(name="_PAGE_4K_PFN", mask=h27.PFN4K_64K, kind="sw",
                     doc="PFN counts 4 KiB frames (remap_4k_pfn)"),
            BitField(name="_PAGE_COMBO", mask=h27.COMBO_64K, kind="sw", doc="64K page mapped by 4K HPTEs"),
            BitField(name="_PAGE_HPTE_SUB", mask=h27.HPTE_SUB_64K, kind="field",
                     doc="combo pages: one HPTE-valid bit per 4K sub-page (bit 27 = _PAGE_HPTE_SUB0); "
                         "the whole mask is _PAGE_HASHPTE; overlaps F_SECOND/F_GIX of full 64K pages"),
            BitField(name="_PAGE_F_SECOND", mask=h27.F_SECOND_64K, kind="sw",
                     doc="full 64K page: HPTE in the secondary group"),
            BitField(name="_PAGE_F_GIX", mask=h27.F_GIX_64K, kind="field", doc="full 64K page: HPTE slot in group"),
            _BUSY_2627,
            *((BitField(name="_PAGE_SPECIAL", mask=h27.SPECIAL_64K, kind="sw",
                        doc="special mapping, no refcounted struct page (2.6.27)"),) if special else ()),
        )  # fmt: skip
    return own + _COMMON_2627


def dir_bits_2627(masked: int) -> tuple[BitField, ...]:
    """A 2.6.27 directory entry: the next table's kernel virtual address."""
    addr = BitField(
        name="TABLE_VADDR",
        mask=ALL64 ^ masked,
        kind="field",
        doc="kernel virtual address (KERNELBASE 0xC000000000000000 + pa) of the next table",
    )
    if not masked:
        return (addr,)
    return (addr, BitField(name="MASKED_BITS", mask=masked, kind="field", doc="ignored by p?d_page_vaddr"))


# -- 6.18 Linux PTE (radix hardware format) ---------------------------------------------


def pte_bits_618(page_shift: int, mmu: str) -> tuple[BitField, ...]:
    """Leaf PTE of 6.18 for ``mmu`` "radix" or "hash" and 4K or 64K pages."""
    hw: Literal["hw", "sw"] = "hw" if mmu == "radix" else "sw"
    pfn = BitField(
        name="PFN", mask=p.rpn_mask(page_shift), kind="field",
        doc="real page number: (pte & PTE_RPN_MASK) >> PAGE_SHIFT; Linux keeps PA < 2^53",
    )  # fmt: skip
    top = (
        BitField(name="_PAGE_PRESENT", mask=p.PRESENT, kind=hw, doc="V: valid"),
        BitField(name="_PAGE_PTE", mask=p.PTE, kind=hw, doc="L: leaf (a PTE, not a directory pointer)"),
        BitField(name="_PAGE_INVALID", mask=p.INVALID, kind="sw",
                 doc="SW0: present PTE temporarily invalidated (only with V clear)"),
    )  # fmt: skip
    low = (
        BitField(
            name="_RPAGE_SW1", mask=p.SW1, kind="sw", doc="SW1: unused in 6.18 (was _PAGE_DEVMAP up to 6.13)"
        ),
        BitField(
            name="_PAGE_SPECIAL", mask=p.SPECIAL, kind="sw", doc="SW2: special mapping, no refcounted page"
        ),
        BitField(name="_PAGE_SOFT_DIRTY", mask=p.SOFT_DIRTY, kind="sw", doc="SW3: soft-dirty tracking"),
        BitField(name="_PAGE_ACCESSED", mask=p.ACCESSED, kind=hw, doc="R: referenced"),
        BitField(name="_PAGE_DIRTY", mask=p.DIRTY, kind=hw, doc="C: changed"),
    )
    att = BitField(
        name="_PAGE_CACHE_CTL", mask=p.CACHE_CTL, kind="field",
        doc="ATT: 0 normal, 0x10 _PAGE_SAO, 0x20 _PAGE_NON_IDEMPOTENT, 0x30 _PAGE_TOLERANT (= _PAGE_NO_CACHE)",
    )  # fmt: skip
    eaa = (
        BitField(name="_PAGE_PRIVILEGED", mask=p.PRIVILEGED, kind=hw, doc="EAA: kernel access only"),
        BitField(name="_PAGE_READ", mask=p.READ, kind=hw, doc="EAA: read"),
        BitField(name="_PAGE_WRITE", mask=p.WRITE, kind=hw, doc="EAA: read/write"),
        BitField(name="_PAGE_EXEC", mask=p.EXEC, kind=hw, doc="EAA: execute"),
    )
    if mmu == "radix":
        mid: tuple[BitField, ...] = (
            BitField(name="_RPAGE_PKEY_BIT4", mask=p.PKEY_BIT4, kind="hw", doc="reserved under radix (hash pkey bit)"),
            BitField(name="_RPAGE_PKEY_BIT3", mask=p.PKEY_BIT3, kind="hw", doc="reserved under radix (hash pkey bit)"),
            BitField(name="_RPAGE_PKEY_BIT2", mask=p.PKEY_BIT2, kind="hw", doc="reserved under radix (hash pkey bit)"),
            BitField(name="_RPAGE_PKEY_BIT1", mask=p.PKEY_BIT1, kind="hw", doc="reserved under radix (hash pkey bit)"),
            BitField(name="_RPAGE_PKEY_BIT0", mask=p.PKEY_BIT0, kind="hw",
                     doc="RPN (PA bit 56), above _PAGE_PA_MAX: zero under radix (hash pkey bit)"),
            BitField(name="_RPAGE_RPN43", mask=p.RPN43, kind="hw", doc="RPN (PA bit 55): zero under radix (hash H_PAGE_HASHPTE/F_GIX)"),
            BitField(name="_RPAGE_RPN42", mask=p.RPN42, kind="hw", doc="RPN (PA bit 54): zero under radix (hash F_GIX)"),
            BitField(name="_RPAGE_RPN41", mask=p.RPN41, kind="hw", doc="RPN (PA bit 53): zero under radix (hash F_GIX)"),
        )  # fmt: skip
        if page_shift == 16:
            mid += (
                BitField(name="_RPAGE_RPN1", mask=p.RPN1, kind="hw",
                         doc="RPN (PA bit 13), inside a 64K page: zero under radix (hash H_PAGE_4K_PFN)"),
                BitField(name="_RPAGE_RPN0", mask=p.RPN0, kind="hw",
                         doc="RPN (PA bit 12), inside a 64K page: zero under radix (hash H_PAGE_COMBO)"),
            )  # fmt: skip
        rsv = BitField(name="_RPAGE_RSV1", mask=p.RSV1, kind="hw", doc="reserved (hash: H_PAGE_BUSY)")
    else:
        if page_shift == 12:
            mid = (
                BitField(name="H_PAGE_HASHPTE", mask=p.H_PAGE_HASHPTE_4K, kind="sw", doc="an HPTE exists"),
                BitField(name="H_PTE_PKEY_BIT2", mask=p.PKEY_BIT3, kind="sw", doc="protection key bit 2"),
                BitField(name="H_PTE_PKEY_BIT1", mask=p.PKEY_BIT2, kind="sw", doc="protection key bit 1"),
                BitField(name="H_PTE_PKEY_BIT0", mask=p.PKEY_BIT1, kind="sw", doc="protection key bit 0"),
                BitField(name="H_PAGE_F_SECOND", mask=p.H_PAGE_F_SECOND_4K, kind="sw",
                         doc="HPTE in the secondary group"),
                BitField(name="H_PAGE_F_GIX", mask=p.H_PAGE_F_GIX_4K, kind="field", doc="HPTE slot within its group"),
            )  # fmt: skip
        else:
            mid = (
                BitField(name="H_PTE_PKEY_BIT4", mask=p.PKEY_BIT4, kind="sw", doc="protection key bit 4"),
                BitField(name="H_PTE_PKEY_BIT3", mask=p.PKEY_BIT3, kind="sw", doc="protection key bit 3"),
                BitField(name="H_PTE_PKEY_BIT2", mask=p.PKEY_BIT2, kind="sw", doc="protection key bit 2"),
                BitField(name="H_PTE_PKEY_BIT1", mask=p.PKEY_BIT1, kind="sw", doc="protection key bit 1"),
                BitField(name="H_PTE_PKEY_BIT0", mask=p.PKEY_BIT0, kind="sw", doc="protection key bit 0"),
                BitField(name="H_PAGE_HASHPTE", mask=p.H_PAGE_HASHPTE_64K, kind="sw", doc="an HPTE exists"),
                BitField(name="H_PAGE_4K_PFN", mask=p.H_PAGE_4K_PFN_64K, kind="sw",
                         doc="PFN is a 4K frame (remap_4k_pfn); H_PAGE_THP_HUGE on a PMD"),
                BitField(name="H_PAGE_COMBO", mask=p.H_PAGE_COMBO_64K, kind="sw", doc="64K page mapped by 4K HPTEs"),
            )  # fmt: skip
        rsv = BitField(
            name="H_PAGE_BUSY", mask=p.H_PAGE_BUSY, kind="sw", doc="PTE and HPTE being updated (lock)"
        )
    return (*top, *mid, pfn, *low, rsv, att, *eaa)


def dir_bits_radix(leaf_ok: bool) -> tuple[BitField, ...]:
    """A radix page-directory entry (the fields of a leaf at this level are the PTE's)."""
    leaf_doc = "L: set makes this entry a huge-page leaf" if leaf_ok else "L: must be 0 (RADIX_P4D_BAD_BITS)"
    return (
        BitField(name="_PAGE_PRESENT", mask=p.PRESENT, kind="hw", doc="V: valid"),
        BitField(name="_PAGE_PTE", mask=p.PTE, kind="hw", doc=leaf_doc),
        BitField(name="NLB", mask=0x0FFF_FFFF_FFFF_FF00, kind="field", doc="next-level base (real address)"),
        BitField(
            name="NLS", mask=0x1F, kind="field", doc="next-level size: log2 of the next table's entries"
        ),
    )


def dir_bits_hash618() -> tuple[BitField, ...]:
    """A 6.18 Linux hash-tree directory entry."""
    return (
        BitField(name="HASH_VAL_BITS", mask=1 << 63, kind="sw", doc="set in every directory entry"),
        BitField(name="TABLE_PA", mask=ALL64 ^ p.DIR_MASKED_BITS, kind="field",
                 doc="physical address of the next table"),
    )  # fmt: skip
