"""What the s390x kernel reserves at boot at absolute address 0: lowcore and boot area.

Absolute 0..8 KiB is the boot CPU's lowcore (its prefix area: PSWs, interruption codes,
save areas; ``struct _lowcore`` of 8 KiB on 64-bit, ``asm/lowcore.h``); the IPL'd kernel
continues up to ``startup`` at 0x10000 (``STARTUP_NORMAL_OFFSET``, head.S). No kernel hands
any of it to the page allocator, which is why no page table ever sits at PA 0.
The kernel image itself (from 0x10000 to ``_end``) is reserved too; its size is a build's,
so the model leaves it out.
"""

from __future__ import annotations

from typing import Final

from mixedmap import ReservedRange

LOWCORE_SIZE: Final = 0x2000
STARTUP_NORMAL_OFFSET: Final = 0x10000

_SETUP_26: Final = "arch/s390/kernel/setup.c: setup_memory, reserve_bootmem(0, PFN_PHYS(start_pfn))"

RESERVED_26: Final = (
    ReservedRange(
        start=0,
        size=LOWCORE_SIZE,
        name="lowcore",
        kernel_ref=_SETUP_26 + "; struct _lowcore (include/asm-s390/lowcore.h)",
        why="absolute lowcore, the boot CPU's prefix area (8 KiB on 64-bit)",
    ),
    ReservedRange(
        start=LOWCORE_SIZE,
        size=STARTUP_NORMAL_OFFSET - LOWCORE_SIZE,
        name="boot area",
        kernel_ref=_SETUP_26 + " (0 up to the kernel's _end; startup at 0x10000, head.S)",
        why="IPL area below the kernel's startup code at 0x10000",
    ),
)

RESERVED_618: Final = (
    ReservedRange(
        start=0,
        size=LOWCORE_SIZE,
        name="lowcore",
        kernel_ref="arch/s390/kernel/setup.c: reserve_lowcore, memblock_reserve of sizeof(struct lowcore)",
        why="absolute lowcore, the boot CPU's prefix area (8 KiB)",
    ),
    ReservedRange(
        start=LOWCORE_SIZE,
        size=STARTUP_NORMAL_OFFSET - LOWCORE_SIZE,
        name="boot area",
        kernel_ref="arch/s390/kernel/setup.c: reserve_kernel, memblock_reserve(0, STARTUP_NORMAL_OFFSET)",
        why="absolute lowcore/command line area up to STARTUP_NORMAL_OFFSET 0x10000 (asm/setup.h)",
    ),
)
