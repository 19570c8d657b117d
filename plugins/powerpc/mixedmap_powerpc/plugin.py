"""pluggy hook implementations of the ppc64 plugin (entry point ``ppc64`` in group ``mixedmap``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from mixedmap import ArchSpec, PageTableFormat, XipDriverModel, hookimpl
from mixedmap_powerpc import axonram
from mixedmap_powerpc.spec import arch_spec


@hookimpl
def mixedmap_arch_spec() -> ArchSpec:
    """Describe ppc64: hash (2.6.26, 2.6.27, 6.18) and radix (6.18) modes."""
    return arch_spec()


@hookimpl
def mixedmap_xip_drivers() -> Iterable[XipDriverModel]:
    """``axonram`` (IBM Cell Axon DDR2 banks), under 2.6.26 and 2.6.27 only: removed in 2017."""
    return axonram.xip_drivers()


def _mask(fmt: PageTableFormat) -> np.uint64:
    if fmt.special_mask is None:
        raise ValueError(f"ppc64/{fmt.mode} has no special bit under kernel {fmt.profile}")
    return np.uint64(fmt.special_mask)


@hookimpl
def mixedmap_pte_special(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_] | None:
    """``pte_special``: ``_PAGE_SPECIAL`` (2.6.27: 0x10000 with 4K, 0x400 with 64K; 6.18: 0x400)."""
    if fmt.arch != "ppc64":
        return None
    return np.asarray((ptes & _mask(fmt)) != 0, dtype=np.bool_)


@hookimpl
def mixedmap_pte_mkspecial(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64] | None:
    """``pte_mkspecial``: set ``_PAGE_SPECIAL`` and nothing else."""
    if fmt.arch != "ppc64":
        return None
    return np.asarray(ptes | _mask(fmt), dtype=np.uint64)
