"""Every (mode, profile) of ppc64: geometry, bits and helpers as ``ArchMode`` values.

Table sizes are what the kernel allocates: in 2.6.27 kmem caches aligned to their size (PGD,
PUD/PMD) and whole pages for PTEs (a 64K page holds 32 KiB of PTEs and 32 KiB of ``hidx``);
in 6.18 fragments (``pte_fragment_alloc``/``pmd_fragment_alloc``), size-aligned kmem caches
and a 64 KiB radix PGD. 6.18 hash sizes assume the usual ``CONFIG_TRANSPARENT_HUGEPAGE`` and
``CONFIG_HUGETLB_PAGE``, which double the 64K PMD and PUD allocations.
"""

from __future__ import annotations

from typing import Final

from mixedmap import ArchMode, BitField, Level, MemoryModel, PageTableFormat
from mixedmap.bits import ALL64
from mixedmap_powerpc import bitfields as bf
from mixedmap_powerpc import hash2627 as h27
from mixedmap_powerpc import pte618 as p
from mixedmap_powerpc.hash618 import Hash618Ops
from mixedmap_powerpc.radix import RadixOps
from mixedmap_powerpc.reserved import reserved

ARCH: Final = "ppc64"

#: SECTION_SIZE_BITS 24 in both eras; MAX_PHYSMEM_BITS 44 in 2.6.x (asm/sparsemem.h) and 51
#: in 6.18 (max of H_ and R_MAX_PHYSMEM_BITS with SPARSEMEM_VMEMMAP + SPARSEMEM_EXTREME, the
#: Book3S-64 defaults; one build serves both MMUs, so even hash-4K kernels carry 51).
MEMORY_2627: Final = MemoryModel(section_size_bits=24, max_physmem_bits=44)
MEMORY_618: Final = MemoryModel(section_size_bits=24, max_physmem_bits=51)


def _memory(base: MemoryModel, profile: str, page_shift: int) -> MemoryModel:
    """``base`` with the boot reservations of ``profile`` at this page size."""
    return MemoryModel(
        kind=base.kind,
        section_size_bits=base.section_size_bits,
        max_physmem_bits=base.max_physmem_bits,
        struct_page_size=base.struct_page_size,
        reserved=reserved(profile, page_shift),
    )


SRC_2627: Final = (
    "Linux 2.6.26/2.6.27 arch/powerpc/include/asm/pgtable-ppc64.h, pgtable-4k.h, pgtable-64k.h, "
    "pgalloc-64.h, sparsemem.h; the Linux tree is software-only (the MMU walks the hashed page "
    "table), root = PGD physical address"
)
SRC_RADIX: Final = (
    "Linux 6.18 arch/powerpc/include/asm/book3s/64/pgtable.h, radix.h, radix-4k.h, radix-64k.h, "
    "pgalloc.h, arch/powerpc/mm/pgtable.c, mm/book3s64/radix_pgtable.c; Power ISA v3.0B radix "
    "tree translation; root = PGD physical address (process-table RPDB)"
)
SRC_HASH618: Final = (
    "Linux 6.18 arch/powerpc/include/asm/book3s/64/pgtable.h, hash.h, hash-4k.h, hash-64k.h, "
    "pgalloc.h, arch/powerpc/mm/pgtable.c; the Linux tree is software-only (the MMU walks the "
    "hashed page table), root = PGD physical address"
)


def _lv(
    name: str, hw: str, shift: int, nbits: int, alloc: int, *, table: int | None = None, leaf: bool = False,
    bits: tuple[BitField, ...] = (),
) -> Level:  # fmt: skip
    size = table if table is not None else 8 << nbits
    return Level(
        name=name, hw_name=hw, shift=shift, index_bits=nbits, table_bytes=size,
        alloc_bytes=alloc, align=alloc, leaf_ok=leaf, bits=bits,
    )  # fmt: skip


def _hash2627_mode(profile: str, page_shift: int) -> ArchMode:
    special = profile == "2.6.27"
    pte_bits = bf.pte_bits_2627(page_shift, special)
    if page_shift == 12:
        name, rpn = "hash-4k", h27.RPN_SHIFT_4K
        levels: tuple[Level, ...] = (
            _lv("pgd", "sw PGD", 35, 9, 4096, bits=bf.dir_bits_2627(0)),
            _lv("pud", "sw PUD", 28, 7, 1024, bits=bf.dir_bits_2627(0)),
            _lv("pmd", "sw PMD", 21, 7, 1024, bits=bf.dir_bits_2627(0)),
            _lv("pte", "sw PTE page", 12, 9, 4096, bits=pte_bits),
        )
        masked: tuple[int, ...] = (0, 0, 0)
        bad: tuple[int | None, ...] = (None, 1024 - 1, 4096 - 1)
        special_mask, hpteflags, chg = h27.SPECIAL_4K, h27.HPTEFLAGS_4K, h27.CHG_MASK_4K
        desc = "hash MMU, 4 KiB pages: software Linux tree 9/7/7/9, links are kernel virtual addresses"
    else:
        name, rpn = "hash-64k", h27.RPN_SHIFT_64K
        levels = (
            _lv("pgd", "sw PGD (pud folded)", 40, 4, 128, bits=bf.dir_bits_2627(0x1FF)),
            _lv("pmd", "sw PMD", 28, 12, 32768, bits=bf.dir_bits_2627(0x1FF)),
            _lv("pte", "sw PTE page (+hidx)", 16, 12, 65536, bits=pte_bits),
        )
        masked = (0x1FF, 0x1FF)
        bad = (32768 - 1, 65536 - 1)
        special_mask, hpteflags, chg = h27.SPECIAL_64K, h27.HPTEFLAGS_64K, h27.CHG_MASK_64K
        desc = (
            "hash MMU, 64 KiB pages: software Linux tree 4/12/12 (pud folded), PTE page = "
            "32 KiB PTEs + 32 KiB hidx"
        )
    desc += "; special bit " + (f"{special_mask:#x}" if special else "absent (pfn_valid scheme)")
    fmt = PageTableFormat(
        arch=ARCH,
        mode=name,
        profile=profile,
        levels=levels,
        page_shift=page_shift,
        byteorder="big",
        va_bits=levels[0].shift + levels[0].index_bits,
        va_rule="quadrant",
        pa_bits=64 - rpn + page_shift,
        pfn_mask=ALL64 ^ ((1 << rpn) - 1),
        pfn_shift=rpn,
        special_mask=special_mask if special else None,
        pte_bits=pte_bits,
        protection_map=h27.PROTECTION_MAP,
        protections=h27.PROTECTIONS,
        root_name="PGD",
        # 2.6.27 64K _PAGE_CHG_MASK lacked _PAGE_SPECIAL (fixed in 2.6.29-rc5 by fbc78b07)
        quirks=("pte_modify_drops_special",) if special and page_shift == 16 else (),
        source=SRC_2627,
    )
    ops = h27.Hash2627Ops(fmt, rpn_shift=rpn, hpteflags=hpteflags, chg_mask=chg, masked=masked, bad=bad)
    return ArchMode(
        name=name,
        profile=profile,
        fmt=fmt,
        ops=ops,
        memory=_memory(MEMORY_2627, profile, page_shift),
        options=(("mmu", "hash"), ("page_size", 1 << page_shift)),
        default=page_shift == 12,
        description=desc,
    )


def _fmt618(
    name: str, pte_bits: tuple[BitField, ...], levels: tuple[Level, ...], root: str, src: str
) -> PageTableFormat:
    page_shift = levels[-1].shift
    return PageTableFormat(
        arch=ARCH,
        mode=name,
        profile="6.18",
        levels=levels,
        page_shift=page_shift,
        byteorder="big",
        va_bits=levels[0].shift + levels[0].index_bits,
        va_rule="quadrant",
        pa_bits=p.PA_MAX,
        pfn_mask=p.rpn_mask(page_shift),
        pfn_shift=page_shift,
        special_mask=p.SPECIAL,
        pte_bits=pte_bits,
        protection_map=p.PROTECTION_MAP,
        protections=p.PROTECTIONS,
        root_name=root,
        source=src,
    )


def _radix_mode(page_shift: int) -> ArchMode:
    name = "radix-4k" if page_shift == 12 else "radix-64k"
    pte_nbits, pte_alloc = (9, 4096) if page_shift == 12 else (5, 256)
    pte_bits = bf.pte_bits_618(page_shift, "radix")
    levels = (
        _lv("pgd", "root PD (L1)", 39, 13, 65536, bits=bf.dir_bits_radix(False)),
        _lv("pud", "PD L2", 30, 9, 4096, leaf=True, bits=bf.dir_bits_radix(True)),
        _lv("pmd", "PD L3", 21, 9, 4096, leaf=True, bits=bf.dir_bits_radix(True)),
        _lv("pte", "PT (L4)", page_shift, pte_nbits, pte_alloc, bits=pte_bits),
    )
    fmt = _fmt618(name, pte_bits, levels, "RPDB", SRC_RADIX)
    geo = "13/9/9/9" if page_shift == 12 else "13/9/9/5, 256-byte PTE fragments"
    return ArchMode(
        name=name,
        profile="6.18",
        fmt=fmt,
        ops=RadixOps(fmt),
        memory=_memory(MEMORY_618, "6.18", page_shift),
        options=(("mmu", "radix"), ("page_size", 1 << page_shift)),
        default=page_shift == 12,
        description=f"radix MMU (ISA 3.0), {1 << (page_shift - 10)} KiB pages: {geo}; 2M/1G leaves; special 0x400",
    )


def _hash618_mode(page_shift: int) -> ArchMode:
    pte_bits = bf.pte_bits_618(page_shift, "hash")
    if page_shift == 12:
        name = "hash-4k"
        levels = (
            _lv("pgd", "sw PGD", 37, 9, 4096, bits=bf.dir_bits_hash618()),
            _lv("pud", "sw PUD", 28, 9, 4096, bits=bf.dir_bits_hash618()),
            _lv("pmd", "sw PMD", 21, 7, 1024, bits=bf.dir_bits_hash618()),
            _lv("pte", "sw PTE", 12, 9, 4096, bits=pte_bits),
        )
        bad: tuple[int | None, ...] = (None, 1024 - 1, 4096 - 1)
        geo = "9/9/7/9"
    else:
        name = "hash-64k"
        levels = (
            _lv("pgd", "sw PGD", 44, 8, 2048, bits=bf.dir_bits_hash618()),
            _lv("pud", "sw PUD (+hugetlb info)", 34, 10, 16384, bits=bf.dir_bits_hash618()),
            _lv("pmd", "sw PMD (+THP deposit)", 24, 10, 16384, leaf=True, bits=bf.dir_bits_hash618()),
            _lv("pte", "sw PTE (+hidx)", 16, 8, 4096, table=2048, bits=pte_bits),
        )
        bad = (None, 16384 - 1, 4096 - 1)
        geo = "8/10/10/8, 16M THP at pmd"
    fmt = _fmt618(name, pte_bits, levels, "PGD", SRC_HASH618)
    return ArchMode(
        name=name,
        profile="6.18",
        fmt=fmt,
        ops=Hash618Ops(fmt, bad=bad),
        memory=_memory(MEMORY_618, "6.18", page_shift),
        options=(("mmu", "hash"), ("page_size", 1 << page_shift)),
        description=f"hash MMU, {1 << (page_shift - 10)} KiB pages: software Linux tree {geo}; special 0x400",
    )


def build_modes() -> tuple[ArchMode, ...]:
    """All modes: hash 4K/64K for 2.6.26 and 2.6.27; radix and hash 4K/64K for 6.18."""
    return (
        _hash2627_mode("2.6.26", 12),
        _hash2627_mode("2.6.26", 16),
        _hash2627_mode("2.6.27", 12),
        _hash2627_mode("2.6.27", 16),
        _radix_mode(12),
        _radix_mode(16),
        _hash618_mode(12),
        _hash618_mode(16),
    )
