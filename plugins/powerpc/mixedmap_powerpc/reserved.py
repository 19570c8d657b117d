"""What the ppc64 kernel reserves at boot: itself from physical 0, vectors first.

A Book3S-64 kernel runs at ``PHYSICAL_START`` 0 with its interrupt vectors at the bottom
(head_64.S); ``early_init_devtree`` reserves it from there to its end, and a relocatable
kernel not at 0 still reserves the first 32 KiB for the vectors. The model keeps those
32 KiB (one 64 KiB page with 64K pages: the kernel reserves whole pages); the rest of the
image is a build's size, so the model leaves it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from mixedmap import ReservedRange

#: The interrupt vectors' size the kernel reserves ("reserve first 32k for interrupt vectors").
VECTORS: Final = 0x8000

_REF: Final[Mapping[str, str]] = {
    "2.6.26": "arch/powerpc/kernel/prom.c: early_init_devtree, lmb_reserve(PHYSICAL_START, __pa(klimit) - PHYSICAL_START)",
    "2.6.27": "arch/powerpc/kernel/prom.c: early_init_devtree, lmb_reserve(PHYSICAL_START, __pa(klimit) - PHYSICAL_START)",
    "6.18": "arch/powerpc/kernel/prom.c: early_init_devtree, memblock_reserve(PHYSICAL_START, __pa(_end) - PHYSICAL_START)",
}


def reserved(profile: str, page_shift: int) -> tuple[ReservedRange, ...]:
    """The boot reservations of ``profile`` with pages of ``1 << page_shift`` bytes."""
    page = 1 << page_shift
    return (
        ReservedRange(
            start=0,
            size=max(VECTORS, page),
            name="interrupt vectors",
            kernel_ref=_REF[profile],
            why="the kernel's exception vectors at physical 0 (head_64.S), first of its image",
        ),
    )
