"""Page-table formats: one per (kernel profile, depth, EDAT-1)."""

from __future__ import annotations

from collections.abc import Mapping

from mixedmap import Level, PageTableFormat
from mixedmap_s390 import hw
from mixedmap_s390.bitfields import PTE_BITS, level_bits
from mixedmap_s390.kernels import Kernel

ARCH = "s390x"

#: Mode name per number of levels: named after the table the ASCE designates.
MODE_BY_DEPTH: Mapping[int, str] = {2: "segment", 3: "region3", 4: "region2", 5: "region1"}
#: Shift of the top level per number of levels.
TOP_SHIFT: Mapping[int, int] = {
    2: hw.SEGMENT_SHIFT,
    3: hw.REGION3_SHIFT,
    4: hw.REGION2_SHIFT,
    5: hw.REGION1_SHIFT,
}
_ALL_SHIFTS = (hw.REGION1_SHIFT, hw.REGION2_SHIFT, hw.REGION3_SHIFT, hw.SEGMENT_SHIFT, hw.PAGE_SHIFT)
_HW_NAMES: Mapping[int, str] = {
    hw.REGION1_SHIFT: "region-first table (RFX)",
    hw.REGION2_SHIFT: "region-second table (RSX)",
    hw.REGION3_SHIFT: "region-third table (RTX)",
    hw.SEGMENT_SHIFT: "segment table (SX)",
    hw.PAGE_SHIFT: "page table (PX)",
}

#: Physical address bits a PTE holds. The PFRA field is IBM bits 0-51 of a 64-bit absolute
#: address, and neither 2.6.27's nor 6.18's pfn_pte masks the frame: any frame below
#: 2**64 is encodable. Linux's MAX_PHYSMEM_BITS (42 / 46) limits the RAM the memory model
#: covers (see MemoryModel), not the PTE -- DCSS/XIP frames beyond RAM are what this
#: project maps, so the PTE's own limit is the honest one here.
PA_BITS = hw.PTE_PA_BITS


def mode_label(depth: int, edat1: bool) -> str:
    """``fmt.mode``: the mode name, with ``+edat1`` when 1 MiB segment leaves are allowed."""
    return MODE_BY_DEPTH[depth] + ("+edat1" if edat1 else "")


def _level(kernel: Kernel, shift: int, edat1: bool) -> Level:
    if shift == hw.PAGE_SHIFT:
        return Level(
            name=kernel.names[shift],
            hw_name=_HW_NAMES[shift],
            shift=shift,
            index_bits=hw.PAGE_INDEX_BITS,
            table_bytes=hw.PAGE_TABLE_SIZE,
            alloc_bytes=kernel.pte_alloc_bytes,
            align=kernel.pte_align,
        )
    return Level(
        name=kernel.names[shift],
        hw_name=_HW_NAMES[shift],
        shift=shift,
        index_bits=hw.CRST_INDEX_BITS,
        table_bytes=hw.CRST_TABLE_SIZE,
        # crst_table_alloc: alloc_pages(order 2), naturally 16 KiB aligned (the hardware
        # would accept 4 KiB alignment).
        alloc_bytes=hw.CRST_TABLE_SIZE,
        align=hw.CRST_TABLE_SIZE,
        leaf_ok=edat1 and shift == hw.SEGMENT_SHIFT,
        bits=level_bits(kernel.era, shift),
    )


def make_format(kernel: Kernel, depth: int, edat1: bool) -> PageTableFormat:
    """The format of a ``depth``-level address space under ``kernel``."""
    shifts = _ALL_SHIFTS[_ALL_SHIFTS.index(TOP_SHIFT[depth]) :]
    levels = tuple(_level(kernel, s, edat1) for s in shifts)
    top = levels[0]
    return PageTableFormat(
        arch=ARCH,
        mode=mode_label(depth, edat1),
        profile=kernel.profile,
        levels=levels,
        page_shift=hw.PAGE_SHIFT,
        entry_size=hw.ENTRY_SIZE,
        byteorder="big",
        va_bits=top.shift + top.index_bits,
        va_rule="zero",
        pa_bits=PA_BITS,
        pfn_mask=hw.PTE_PFRA,
        pfn_shift=hw.PAGE_SHIFT,
        special_mask=kernel.special,
        pte_bits=PTE_BITS[kernel.era],
        protection_map=kernel.protection_map,
        protections=kernel.protections,
        root_name="ASCE",
        # 2.6.2x: referenced/changed live in the frame's storage key, not in the PTE.
        tracks_young_dirty=kernel.era != "2.6",
        # 2.6.2x pte_write() only tests _PAGE_RO, so a PROT_NONE entry (0x401) reads as
        # writable, and pte_wrprotect() leaves invalid (I-bit) entries alone.
        quirks=("protnone_pte_write",) if kernel.era == "2.6" else (),
        # arch/s390/mm/gup.c ("s390: implement get_user_pages_fast") came after the series.
        lockless_gup=None if kernel.era != "2.6" else False,
        source=kernel.source,
    )
