"""pluggy hook implementations of the x86_64 arch (entry point ``x86_64`` in group ``mixedmap``).

The arch description, the special-bit primitives and the XIP driver models live here;
``pfn_valid`` is the core's default SPARSEMEM answer. The special hooks serve 2.6.27 and
6.18, where bit 9 is ``_PAGE_SPECIAL``; 2.6.26 has no special bit (its format's
``special_mask`` is None). The XIP models: ``brd`` (2.6.26, 2.6.27) in
:mod:`mixedmap_x86.xip_brd`, ``pmem`` (6.18) in :mod:`mixedmap_x86.xip_pmem`.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from mixedmap import ArchSpec, PageTableFormat, XipDriverModel, hookimpl
from mixedmap_x86.formats import ARCH
from mixedmap_x86.spec import arch_spec
from mixedmap_x86.xip_brd import BRD
from mixedmap_x86.xip_pmem import PMEM


@hookimpl
def mixedmap_arch_spec() -> ArchSpec:
    """The x86_64 modes: 4level (2.6.26, 2.6.27, 6.18) and la57 (6.18)."""
    return arch_spec()


@hookimpl
def mixedmap_pte_special(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_] | None:
    """``pte_special()``: ``pte_flags(pte) & _PAGE_SPECIAL`` (bit 9)."""
    if fmt.arch != ARCH or fmt.special_mask is None:
        return None
    result: NDArray[np.bool_] = (ptes & fmt.special_mask) != 0
    return result


@hookimpl
def mixedmap_pte_mkspecial(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64] | None:
    """``pte_mkspecial()``: ``pte_set_flags(pte, _PAGE_SPECIAL)``; no other bit changes."""
    if fmt.arch != ARCH or fmt.special_mask is None:
        return None
    result: NDArray[np.uint64] = ptes | np.uint64(fmt.special_mask)
    return result


@hookimpl
def mixedmap_xip_drivers() -> Iterable[XipDriverModel]:
    """brd with CONFIG_BLK_DEV_XIP (2.6.26, 2.6.27) and legacy-pmem ``pmem`` (6.18)."""
    return (BRD, PMEM)
