"""What each kernel profile did with the hardware: depths, table memory, memory model.

All three profiles start a user address space at three levels (a region-third table
behind the ASCE) and upgrade it on demand; they differ in how deep they can go, in the
2-level layout for 31-bit compat tasks, and in how page tables occupy memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mixedmap import MemoryModel
from mixedmap_s390 import hw, linux26, linux618, reserved
from mixedmap_s390.dat_ops import DatOps


@dataclass(frozen=True)
class Kernel:
    """One kernel profile's s390x page-table facts."""

    profile: str
    #: "2.6" or "6.18": which encoding and bit names apply.
    era: str
    ops: type[DatOps]
    special: int
    protections: tuple[tuple[str, int], ...]
    protection_map: tuple[int, ...]
    #: Linux level name per level shift.
    names: Mapping[int, str]
    #: Numbers of levels a user address space can have under this kernel.
    depths: tuple[int, ...]
    memory: MemoryModel
    #: RAM and alignment of one 2 KiB page table.
    pte_alloc_bytes: int
    pte_align: int
    source: str


# 2.6.26/2.6.27: PGDIR_SHIFT 42, PUD_SHIFT 31, PMD_SHIFT 20 -- the pgd is the region-second
# table; there is no p4d level (it arrived in 4.11) and no region-first table.
_NAMES_26 = {hw.REGION2_SHIFT: "pgd", hw.REGION3_SHIFT: "pud", hw.SEGMENT_SHIFT: "pmd", hw.PAGE_SHIFT: "pte"}
# 6.18: PGDIR_SHIFT = _REGION1_SHIFT, P4D_SHIFT = _REGION2_SHIFT, PUD/PMD as before.
_NAMES_618 = {
    hw.REGION1_SHIFT: "pgd",
    hw.REGION2_SHIFT: "p4d",
    hw.REGION3_SHIFT: "pud",
    hw.SEGMENT_SHIFT: "pmd",
    hw.PAGE_SHIFT: "pte",
}

# SPARSEMEM (+VMEMMAP) since "[S390] Convert to SPARSEMEM & SPARSEMEM_VMEMMAP" (17f3458085,
# 2.6.26): SECTION_SIZE_BITS 28, MAX_PHYSMEM_BITS 42 on 64-bit (asm-s390/sparsemem.h). Boot
# reservations (lowcore, boot area): mixedmap_s390.reserved.
_MEMORY_26 = MemoryModel(
    kind="sparsemem", section_size_bits=28, max_physmem_bits=42, reserved=reserved.RESERVED_26
)
# 6.18: SECTION_SIZE_BITS 27, MAX_PHYSMEM_BITS = CONFIG_MAX_PHYSMEM_BITS (42..53, default 46).
_MEMORY_618 = MemoryModel(
    kind="sparsemem", section_size_bits=27, max_physmem_bits=46, reserved=reserved.RESERVED_618
)


def _kernel_26(profile: str) -> Kernel:
    # 2-level (segment root) for 31-bit compat tasks via crst_table_downgrade, 3 levels at
    # exec, 4 after crst_table_upgrade (BUG_ON(limit > 1UL << 53)). Two 2 KiB page tables
    # share one 4 KiB page (page_table_alloc, TABLES_PER_PAGE 2, fragment bits in page->flags).
    return Kernel(
        profile=profile,
        era="2.6",
        ops=linux26.Ops26,
        special=linux26._PAGE_SPECIAL,
        protections=linux26.PROTECTIONS,
        protection_map=linux26.PROTECTION_MAP,
        names=_NAMES_26,
        depths=(2, 3, 4),
        memory=_MEMORY_26,
        pte_alloc_bytes=hw.PAGE_TABLE_SIZE,
        pte_align=hw.PAGE_TABLE_SIZE,
        source=linux26.SOURCE,
    )


KERNELS: Mapping[str, Kernel] = {
    "2.6.26": _kernel_26("2.6.26"),
    "2.6.27": _kernel_26("2.6.27"),
    # 3 levels at exec, upgraded 3->4->5 (crst_table_upgrade; region-first tables from 4.12,
    # 1aea9b3f9210); no downgrade, so no 2-level user space. page_table_alloc gives each
    # 2 KiB page table its own 4 KiB page (256 PTEs of _PAGE_INVALID, then 2 KiB of zeros
    # for the PGSTEs): the 2 KiB fragments of 2.6.2x ended in 6.8 (d08d4e7cd6bf "s390/mm:
    # use full 4KB page for 2KB PTE", arch/s390/mm/pgalloc.c).
    "6.18": Kernel(
        profile="6.18",
        era="6.18",
        ops=linux618.Ops618,
        special=linux618._PAGE_SPECIAL,
        protections=linux618.PROTECTIONS,
        protection_map=linux618.PROTECTION_MAP,
        names=_NAMES_618,
        depths=(3, 4, 5),
        memory=_MEMORY_618,
        pte_alloc_bytes=hw.PAGE_SIZE,
        pte_align=hw.PAGE_SIZE,
        source=linux618.SOURCE,
    ),
}
