"""The pluggy hooks of the s390x arch plugin (entry point ``s390x`` in group ``mixedmap``).

s390 had ``pte_special`` first: "s390: implement pte special bit" (a08cb629f5) landed in
2.6.26, a release before x86 and powerpc, because s390's dynamic memory (DCSS segments
added and removed at run time) made the ``pfn_valid`` scheme unworkable there. The bit is
0x004 in 2.6.26/2.6.27 and 0x040 in 6.18; both hooks read it from ``fmt.special_mask``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from numpy.typing import NDArray

from mixedmap import ArchSpec, PageTableFormat, XipDriverModel, hookimpl
from mixedmap_s390 import dcssblk
from mixedmap_s390.spec import build_spec


def _special(fmt: PageTableFormat) -> np.uint64:
    if fmt.special_mask is None:  # every s390x profile has the bit
        raise ValueError(f"s390x/{fmt.mode} (profile {fmt.profile}) has no special bit")
    return np.uint64(fmt.special_mask)


@hookimpl
def mixedmap_arch_spec() -> ArchSpec:
    """s390x: z/Architecture DAT with 2 to 5 levels per kernel profile."""
    return build_spec()


@hookimpl
def mixedmap_pte_special(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
    """``pte_val(pte) & _PAGE_SPECIAL``, batched."""
    out: NDArray[np.bool_] = (np.asarray(ptes, dtype=np.uint64) & _special(fmt)) != 0
    return out


@hookimpl
def mixedmap_pte_mkspecial(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """``pte_val(pte) |= _PAGE_SPECIAL`` (6.18: ``set_pte_bit``), batched; no other bit changes."""
    out: NDArray[np.uint64] = np.asarray(ptes, dtype=np.uint64) | _special(fmt)
    return out


@hookimpl
def mixedmap_xip_drivers() -> Iterable[XipDriverModel]:
    """``dcssblk``: block devices over z/VM DCSS segments (see :mod:`mixedmap_s390.dcssblk`)."""
    return tuple(dcssblk.drivers())
