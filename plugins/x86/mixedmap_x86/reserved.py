"""Low memory the x86-64 kernel reserves at boot and never gives the page allocator.

2.6.26/2.6.27 keep three pieces below 1 MiB out of the buddy allocator: the BIOS data page
at 0 and the SMP trampoline (``early_res[]``), and everything from the EBDA to 1 MiB
(``reserve_ebda_region``; 0x9f000 when the BIOS reports no EBDA, the model's case). Since
5.13 the kernel reserves the whole first 1 MiB unconditionally. The kernel image (at
``CONFIG_PHYSICAL_START``) is reserved too; its size is a build's, so the model leaves it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from mixedmap import ReservedRange

#: include/asm-x86/trampoline.h (2.6.26, 2.6.27): the AP trampoline's two pages.
TRAMPOLINE_BASE: Final = 0x6000
#: reserve_ebda_region's ``lowmem`` when the BIOS reports no EBDA ("Some old Dells").
EBDA_DEFAULT: Final = 0x9F000
ONE_MIB: Final = 0x100000

_EARLY_RES_26: Final = "early_res[] in arch/x86/kernel/e820_64.c"
_EARLY_RES_27: Final = "early_res[] in arch/x86/kernel/e820.c"


def _reserved_2008(early_res: str, ebda_file: str) -> tuple[ReservedRange, ...]:
    return (
        ReservedRange(
            start=0,
            size=0x1000,
            name="BIOS data page",
            kernel_ref=f'{early_res}: {{0, PAGE_SIZE, "BIOS data page"}}',
            why="real-mode interrupt vectors and the BIOS data area",
        ),
        ReservedRange(
            start=TRAMPOLINE_BASE,
            size=0x2000,
            name="TRAMPOLINE",
            kernel_ref=f"{early_res}: {{TRAMPOLINE_BASE, TRAMPOLINE_BASE + 2 * PAGE_SIZE}}",
            why="real-mode trampoline the APs start in (TRAMPOLINE_BASE 0x6000)",
        ),
        ReservedRange(
            start=EBDA_DEFAULT,
            size=ONE_MIB - EBDA_DEFAULT,
            name="BIOS reserved",
            kernel_ref=f"{ebda_file}: reserve_ebda_region, reserve_early(lowmem, 0x100000)",
            why="EBDA, VGA memory and the BIOS ROMs up to 1 MiB",
        ),
    )


RESERVED_618: Final = (
    ReservedRange(
        start=0,
        size=ONE_MIB,
        name="low 1 MiB",
        kernel_ref=(
            "arch/x86/realmode/init.c: reserve_real_mode, memblock_reserve(0, SZ_1M); "
            "arch/x86/kernel/setup.c: early_reserve_memory, memblock_reserve(0, SZ_64K)"
        ),
        why="BIOS-owned low memory, page 0 (L1TF) and the real-mode trampoline",
    ),
)

#: Per kernel profile.
RESERVED: Final[Mapping[str, tuple[ReservedRange, ...]]] = {
    "2.6.26": _reserved_2008(_EARLY_RES_26, "arch/x86/kernel/head64.c"),
    "2.6.27": _reserved_2008(_EARLY_RES_27, "arch/x86/kernel/head.c"),
    "6.18": RESERVED_618,
}
