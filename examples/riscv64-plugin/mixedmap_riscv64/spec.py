"""The riscv64 ArchSpec: Sv39 and Sv48 under Linux 6.18, and why 2.6.x is not there."""

from __future__ import annotations

import functools
from typing import Final

from mixedmap import (
    API_VERSION,
    ArchMode,
    ArchSpec,
    Capabilities,
    MemoryModel,
    ReservedRange,
    Support,
    Unsupported,
)

from mixedmap_riscv64 import linux
from mixedmap_riscv64.formats import ARCH, MODE_SV39, MODE_SV48, SATP_MODE, build_format
from mixedmap_riscv64.ops import Riscv64Ops

#: Arch option selecting the number of levels (``mode="sv48"`` works as well).
LEVELS_OPTION: Final = "levels"
LEVELS: Final = {MODE_SV39: 3, MODE_SV48: 4}

_DESCRIPTIONS: Final = {
    MODE_SV39: "Sv39: 3 levels, satp.MODE=8, 39-bit canonical VAs, 4K/2M/1G pages",
    MODE_SV48: "Sv48: 4 levels, satp.MODE=9, 48-bit canonical VAs, 4K/2M/1G/512G pages",
}

#: Linux gained arch/riscv in 4.15 (merged for the 4.15 window, released January 2018).
OLD_PROFILES: Final = ("2.6.26", "2.6.27")
NO_PORT_REASON: Final = (
    "the RISC-V port (arch/riscv) arrived in Linux 4.15; kernels 2.6.26 and 2.6.27 have no "
    "riscv64, so only profile 6.18 is modelled"
)

#: The SBI firmware at the start of DRAM (OpenSBI, as QEMU virt boots it): it lists its
#: M-mode region as a ``/reserved-memory`` node with ``no-map``; ``setup_bootmem`` honours it
#: through ``early_init_fdt_scan_reserved_mem()`` and the no-map pages get PG_reserved
#: (``memmap_init_reserved_pages``, mm/mm_init.c). Anchored to RAM: DRAM starts where the
#: board puts it (0x80000000 on QEMU virt), and the machine's RAM base wherever it is.
FIRMWARE: Final = ReservedRange(
    start=0,
    size=0x40000,
    name="SBI firmware",
    kernel_ref="arch/riscv/mm/init.c: setup_bootmem, early_init_fdt_scan_reserved_mem()",
    why="OpenSBI's M-mode image and data, /reserved-memory/mmode_resv0 (256 KiB on QEMU virt)",
    anchor="ram",
)


def _mode(name: str) -> ArchMode:
    fmt = build_format(name)
    return ArchMode(
        name=name,
        profile=linux.PROFILE,
        fmt=fmt,
        ops=Riscv64Ops(fmt, SATP_MODE[name]),
        memory=MemoryModel(
            kind="sparsemem",
            section_size_bits=linux.SECTION_SIZE_BITS,
            max_physmem_bits=linux.MAX_PHYSMEM_BITS,
            reserved=(FIRMWARE,),
        ),
        options=((LEVELS_OPTION, LEVELS[name]),),
        default=name == MODE_SV39,
        description=_DESCRIPTIONS[name],
    )


@functools.cache
def arch_spec() -> ArchSpec:
    """Build the spec once: sv39 (default) and sv48, both under 6.18 only."""
    return ArchSpec(
        name=ARCH,
        api_version=API_VERSION,
        description="RISC-V RV64: Sv39/Sv48 paging, satp root, little-endian (third-party example plugin)",
        modes=(_mode(MODE_SV39), _mode(MODE_SV48)),
        caps=Capabilities(pte_special=Support.YES),
        unsupported=(Unsupported(options=(), profiles=OLD_PROFILES, reason=NO_PORT_REASON),),
    )
