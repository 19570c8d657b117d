"""The x86_64 ArchSpec: which (mode, profile) pairs exist, their memory models, what is not."""

from __future__ import annotations

import functools
from typing import Final

from mixedmap import (
    API_VERSION,
    ArchMode,
    ArchSpec,
    Capabilities,
    MemoryModel,
    Support,
    Unsupported,
)
from mixedmap_x86.formats import ARCH, MODE_4LEVEL, MODE_LA57, build_format
from mixedmap_x86.kernels import L618, L2626, L2627, KernelDefs
from mixedmap_x86.ops_618 import Ops618
from mixedmap_x86.ops_2008 import Ops2008
from mixedmap_x86.ops_base import X86Ops
from mixedmap_x86.reserved import RESERVED

#: SECTION_SIZE_BITS on x86-64 (arch/x86/include/asm/sparsemem.h, every profile).
SECTION_SIZE_BITS: Final = 27

#: MAX_PHYSMEM_BITS per (mode, profile): 44 in include/asm-x86/sparsemem.h of 2.6.26 and
#: 2.6.27; ``pgtable_l5_enabled() ? 52 : 46`` in 6.18.
MAX_PHYSMEM_BITS: Final = {
    (MODE_4LEVEL, "2.6.26"): 44,
    (MODE_4LEVEL, "2.6.27"): 44,
    (MODE_4LEVEL, "6.18"): 46,
    (MODE_LA57, "6.18"): 52,
}

#: Arch option selecting the number of paging levels (the mode name works too: mode="la57").
LEVELS_OPTION: Final = "levels"
_LEVELS: Final = {MODE_4LEVEL: 4, MODE_LA57: 5}

_DESCRIPTIONS: Final = {
    MODE_4LEVEL: "4-level paging: PML4 root in CR3, 48-bit canonical VAs, 4K/2M/1G pages",
    MODE_LA57: "5-level paging (CR4.LA57): PML5 root in CR3, 57-bit canonical VAs, 4K/2M/1G pages",
}

_LA57_REASON: Final = (
    "5-level paging (mode la57, levels=5) arrived in Linux 4.14 (commit 77ef56e4f0fb, "
    "CONFIG_X86_5LEVEL); kernel {profile} only has 4-level paging on x86-64"
)


def _mode(mode: str, k: KernelDefs) -> ArchMode:
    fmt = build_format(mode, k)
    ops: X86Ops = Ops618(fmt, k) if k.inverts_pfn else Ops2008(fmt, k)
    return ArchMode(
        name=mode,
        profile=k.profile,
        fmt=fmt,
        ops=ops,
        memory=MemoryModel(
            kind="sparsemem",
            section_size_bits=SECTION_SIZE_BITS,
            max_physmem_bits=MAX_PHYSMEM_BITS[(mode, k.profile)],
            reserved=RESERVED[k.profile],
        ),
        options=((LEVELS_OPTION, _LEVELS[mode]),),
        default=mode == MODE_4LEVEL,
        description=_DESCRIPTIONS[mode],
    )


@functools.cache
def arch_spec() -> ArchSpec:
    """Build the spec once: 4level under 2.6.26, 2.6.27 and 6.18; la57 under 6.18 only."""
    modes = (
        _mode(MODE_4LEVEL, L2626),
        _mode(MODE_4LEVEL, L2627),
        _mode(MODE_4LEVEL, L618),
        _mode(MODE_LA57, L618),
    )
    old = (L2626.profile, L2627.profile)
    unsupported = tuple(
        Unsupported(options=(opt,), profiles=(p,), reason=_LA57_REASON.format(profile=p))
        for p in old
        for opt in (("mode", MODE_LA57), (LEVELS_OPTION, _LEVELS[MODE_LA57]))
    )
    return ArchSpec(
        name=ARCH,
        aliases=("amd64", "x86-64"),
        api_version=API_VERSION,
        description="x86-64 (Intel 64 / AMD64): 4-level and 5-level paging, CR3 root, little-endian",
        modes=modes,
        caps=Capabilities(pte_special=Support.YES),
        unsupported=unsupported,
    )
