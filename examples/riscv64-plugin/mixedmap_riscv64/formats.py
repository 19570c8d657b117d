"""PageTableFormat of Sv39 (3 levels, the default) and Sv48 (4 levels) under Linux 6.18.

Linux names the levels it does not fold: Sv39 keeps pgd, pmd and pte (its pgd entries are
the folded pud, so a 1 GiB leaf there is a ``pud_leaf``); Sv48 keeps pgd, pud, pmd and pte
(p4d folded into the pgd). The hardware name is the privileged spec's level index i, whose
table VPN[i] indexes.
"""

from __future__ import annotations

from typing import Final

from mixedmap import Level, PageTableFormat

from mixedmap_riscv64 import hw, linux
from mixedmap_riscv64.bitfields import pte_bits, table_bits

ARCH: Final = "riscv64"
MODE_SV39: Final = "sv39"
MODE_SV48: Final = "sv48"

#: (Linux name, hardware name, shift, leaf size) top-down per mode; every upper level may
#: hold a leaf (gigapage, megapage, and the Sv48 terapage).
_GEOMETRY: Final[dict[str, tuple[tuple[str, str, int, str], ...]]] = {
    MODE_SV39: (
        ("pgd", "L2", hw.SHIFT_1G, "1 GiB"),
        ("pmd", "L1", hw.SHIFT_2M, "2 MiB"),
        ("pte", "L0", hw.SHIFT_4K, "4 KiB"),
    ),
    MODE_SV48: (
        ("pgd", "L3", hw.SHIFT_512G, "512 GiB"),
        ("pud", "L2", hw.SHIFT_1G, "1 GiB"),
        ("pmd", "L1", hw.SHIFT_2M, "2 MiB"),
        ("pte", "L0", hw.SHIFT_4K, "4 KiB"),
    ),
}

SATP_MODE: Final = {MODE_SV39: hw.SATP_MODE_SV39, MODE_SV48: hw.SATP_MODE_SV48}

_MODE_SOURCE: Final = {
    MODE_SV39: "RISC-V privileged spec, Sv39 (satp.MODE=8); ",
    MODE_SV48: "RISC-V privileged spec, Sv48 (satp.MODE=9); ",
}


def _level(name: str, hw_name: str, shift: int, leaf_size: str) -> Level:
    leaf = name == "pte"
    # Sv39's pgd entries are pud entries to Linux (pud folded into pgd).
    linux_name = "pud" if (name == "pgd" and shift == hw.SHIFT_1G) else name
    return Level(
        name=name,
        hw_name=hw_name,
        shift=shift,
        index_bits=hw.ENTRY_BITS,
        table_bytes=hw.TABLE_BYTES,
        alloc_bytes=hw.TABLE_BYTES,  # one page per table (pagetable_alloc order 0)
        align=hw.TABLE_BYTES,
        leaf_ok=not leaf,
        bits=pte_bits() if leaf else table_bits(linux_name, leaf_size),
    )


def build_format(mode: str) -> PageTableFormat:
    """The format of ``mode`` ("sv39" or "sv48") under Linux 6.18."""
    levels = tuple(_level(*row) for row in _GEOMETRY[mode])
    top = levels[0]
    return PageTableFormat(
        arch=ARCH,
        mode=mode,
        profile=linux.PROFILE,
        levels=levels,
        page_shift=hw.PAGE_SHIFT,
        entry_size=8,
        byteorder="little",
        va_bits=top.shift + top.index_bits,
        va_rule="canonical",
        pa_bits=hw.PA_BITS,
        pfn_mask=linux.PFN_MASK,
        pfn_shift=linux.PFN_SHIFT,
        special_mask=linux.SPECIAL,
        pte_bits=levels[-1].bits,
        protection_map=linux.PROTECTION_MAP,
        protections=linux.PROTECTIONS,
        root_name="satp",
        source=_MODE_SOURCE[mode] + linux.SOURCE,
    )
