"""PageTableFormat of each (mode, profile): 4-level (PML4 root) or 5-level (PML5 root, LA57)."""

from __future__ import annotations

from typing import Final

from mixedmap import Level, PageTableFormat
from mixedmap_x86 import hw
from mixedmap_x86.bitfields import pte_bits, table_bits
from mixedmap_x86.kernels import KernelDefs

ARCH: Final = "x86_64"
MODE_4LEVEL: Final = "4level"
MODE_LA57: Final = "la57"

#: (Linux name, SDM table name, shift, large leaf allowed) top-down, per mode.
_GEOMETRY: Final[dict[str, tuple[tuple[str, str, int, bool], ...]]] = {
    MODE_4LEVEL: (
        ("pgd", "PML4", hw.SHIFT_512G, False),
        ("pud", "PDPT", hw.SHIFT_1G, True),
        ("pmd", "PD", hw.SHIFT_2M, True),
        ("pte", "PT", hw.SHIFT_4K, False),
    ),
    MODE_LA57: (
        ("pgd", "PML5", hw.SHIFT_256T, False),
        ("p4d", "PML4", hw.SHIFT_512G, False),
        ("pud", "PDPT", hw.SHIFT_1G, True),
        ("pmd", "PD", hw.SHIFT_2M, True),
        ("pte", "PT", hw.SHIFT_4K, False),
    ),
}

_MODE_SOURCE: Final = {
    MODE_4LEVEL: "SDM Vol. 3A 4.5 (4-level paging); ",
    MODE_LA57: "SDM Vol. 3A 4.5 (5-level paging, CR4.LA57); ",
}


def _level(k: KernelDefs, name: str, hw_name: str, shift: int, leaf_ok: bool) -> Level:
    entry_bits = pte_bits(k) if name == "pte" else table_bits(k, leaf_ok=leaf_ok, entry_name=f"{hw_name}E")
    return Level(
        name=name,
        hw_name=hw_name,
        shift=shift,
        index_bits=hw.ENTRY_BITS,
        table_bytes=hw.TABLE_BYTES,
        alloc_bytes=hw.TABLE_BYTES,  # one full page per table (pte_alloc_one & co.)
        align=hw.TABLE_BYTES,
        leaf_ok=leaf_ok,
        bits=entry_bits,
    )


def build_format(mode: str, k: KernelDefs) -> PageTableFormat:
    """The format of ``mode`` ("4level" or "la57") under kernel ``k``."""
    levels = tuple(_level(k, *row) for row in _GEOMETRY[mode])
    top = levels[0]
    return PageTableFormat(
        arch=ARCH,
        mode=mode,
        profile=k.profile,
        levels=levels,
        page_shift=hw.PAGE_SHIFT,
        entry_size=8,
        byteorder="little",
        va_bits=top.shift + top.index_bits,
        va_rule="canonical",
        pa_bits=k.physical_mask_shift,
        pfn_mask=k.pte_pfn_mask,
        pfn_shift=hw.PAGE_SHIFT,
        special_mask=k.special,
        pte_bits=levels[-1].bits,
        protection_map=k.protection_map,
        protections=k.protections,
        root_name="CR3",
        source=_MODE_SOURCE[mode] + k.source,
    )
