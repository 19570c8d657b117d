"""The s390x ArchSpec: every (depth, EDAT-1) mode per kernel profile, and what was missing."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from mixedmap import API_VERSION, ArchMode, ArchSpec, Capabilities, Support, Unsupported
from mixedmap_s390.formats import ARCH, MODE_BY_DEPTH, make_format
from mixedmap_s390.kernels import KERNELS, Kernel

#: Every profile starts an mm at 3 levels (region-third table, 4 TiB): the default.
DEFAULT_DEPTH = 3

_DESCRIPTIONS: Mapping[int, str] = {
    2: "2 levels: segment-table root, 2 GiB (31-bit compat tasks)",
    3: "3 levels: region-third root, 4 TiB (every new mm)",
    4: "4 levels: region-second root, 8 PiB (after crst_table_upgrade)",
    5: "5 levels: region-first root, 16 EiB",
}


def _mode(kernel: Kernel, depth: int, edat1: bool) -> ArchMode:
    fmt = make_format(kernel, depth, edat1)
    large = "; 1 MiB segment leaves (EDAT-1)" if edat1 else ""
    return ArchMode(
        name=MODE_BY_DEPTH[depth],
        profile=kernel.profile,
        fmt=fmt,
        ops=kernel.ops(fmt, edat1=edat1),
        memory=kernel.memory,
        options=(("levels", depth), ("edat1", edat1)),
        default=depth == DEFAULT_DEPTH and not edat1,
        description=_DESCRIPTIONS[depth] + large,
    )


_NO_REGION1 = (
    "5-level address spaces (a region-first table behind the ASCE) arrived with commit "
    "1aea9b3f9210 's390/mm: implement 5 level pages tables', merged for Linux 4.12; "
    "2.6.26/2.6.27 go to at most 4 levels: crst_table_upgrade() stops at a region-second "
    "table (BUG_ON(limit > 1UL << 53), 8 PiB) and the pgd is the region-second table"
)
_NO_SEGMENT = (
    "6.18 gives no user address space a 2-level (segment-table) root: init_new_context() "
    "starts every mm with a region-third table, crst_table_upgrade() only goes 3->4->5 "
    "(VM_BUG_ON(asce_limit < _REGION2_SIZE)), and crst_table_downgrade(), which gave 31-bit "
    "compat tasks a segment-table root from '[S390] dynamic page tables' (6252d702c531) on "
    "and still does in 2.6.26/2.6.27, is gone; segment-type ASCEs remain only for I/O "
    "(base_asce_alloc)"
)

UNSUPPORTED = (
    Unsupported(options=(("levels", 5),), profiles=("2.6.26", "2.6.27"), reason=_NO_REGION1),
    Unsupported(options=(("mode", "region1"),), profiles=("2.6.26", "2.6.27"), reason=_NO_REGION1),
    Unsupported(options=(("levels", 2),), profiles=("6.18",), reason=_NO_SEGMENT),
    Unsupported(options=(("mode", "segment"),), profiles=("6.18",), reason=_NO_SEGMENT),
)


@functools.cache
def build_spec() -> ArchSpec:
    """The arch spec (built once)."""
    modes = tuple(
        _mode(kernel, depth, edat1)
        for kernel in KERNELS.values()
        for depth in kernel.depths
        for edat1 in (False, True)
    )
    return ArchSpec(
        name=ARCH,
        api_version=API_VERSION,
        description=(
            "IBM z/Architecture DAT: ASCE-designated region/segment tables of 2048 entries, "
            "page tables of 256, big-endian; Linux's dynamic 2..5 levels"
        ),
        modes=modes,
        caps=Capabilities(pte_special=Support.YES),
        unsupported=UNSUPPORTED,
    )
