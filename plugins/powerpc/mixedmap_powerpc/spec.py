"""The ppc64 ``ArchSpec``: modes per kernel profile and the combinations the kernel lacked."""

from __future__ import annotations

from functools import cache
from typing import Final

from mixedmap import API_VERSION, ArchSpec, Capabilities, Support, Unsupported
from mixedmap_powerpc.formats import ARCH, build_modes

_OLD: Final = ("2.6.26", "2.6.27")
#: Radix translation needs Power ISA 3.0 (POWER9); Linux gained radix support in 4.7 (2016).
RADIX_REASON: Final = (
    "the radix MMU (Power ISA 3.0, POWER9) arrived in Linux 4.7; 2.6.26/2.6.27 ppc64 had only "
    "the hashed page table with a software Linux tree (use mmu='hash' or kernel='6.18')"
)


@cache
def arch_spec() -> ArchSpec:
    """Built once: formats and helpers are immutable."""
    return ArchSpec(
        name=ARCH,
        aliases=("powerpc64",),
        api_version=API_VERSION,
        description=(
            "64-bit PowerPC Book3S (big-endian tables): the hash-MMU Linux tree of 2.6.26/2.6.27 "
            "(special bit from 2.6.27) and today's radix and hash trees (6.18)"
        ),
        modes=build_modes(),
        caps=Capabilities(pte_special=Support.YES),
        unsupported=(
            Unsupported(options=(("mmu", "radix"),), profiles=_OLD, reason=RADIX_REASON),
            Unsupported(options=(("mode", "radix-4k"),), profiles=_OLD, reason=RADIX_REASON),
            Unsupported(options=(("mode", "radix-64k"),), profiles=_OLD, reason=RADIX_REASON),
        ),
    )
