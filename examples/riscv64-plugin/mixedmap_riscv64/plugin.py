"""pluggy hooks of the riscv64 arch (entry point ``riscv64`` in group ``mixedmap``).

Implementing ``mixedmap_pte_special`` and ``mixedmap_pte_mkspecial`` declares that the arch
has a special PTE bit (Linux: ``select ARCH_HAS_PTE_SPECIAL``; riscv has had the bit since
the 4.15 port, then spelled ``__HAVE_ARCH_PTE_SPECIAL``): ``vm_normal_page`` then trusts
the bit, and ``vm_insert_mixed`` maps even struct-page-backed pfns as special PTEs.
``pfn_valid`` is the core's SPARSEMEM default.
"""

from __future__ import annotations

import numpy as np
from mixedmap import ArchSpec, PageTableFormat, hookimpl
from numpy.typing import NDArray

from mixedmap_riscv64.formats import ARCH
from mixedmap_riscv64.spec import arch_spec


@hookimpl
def mixedmap_arch_spec() -> ArchSpec:
    """riscv64: Sv39 (default) and Sv48 under Linux 6.18."""
    return arch_spec()


@hookimpl
def mixedmap_pte_special(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_] | None:
    """``pte_val(pte) & _PAGE_SPECIAL`` (RSW bit 0, ``1 << 8``), batched."""
    if fmt.arch != ARCH or fmt.special_mask is None:
        return None
    out: NDArray[np.bool_] = (np.asarray(ptes, dtype=np.uint64) & np.uint64(fmt.special_mask)) != 0
    return out


@hookimpl
def mixedmap_pte_mkspecial(fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64] | None:
    """``__pte(pte_val(pte) | _PAGE_SPECIAL)``, batched; no other bit changes."""
    if fmt.arch != ARCH or fmt.special_mask is None:
        return None
    out: NDArray[np.uint64] = np.asarray(ptes, dtype=np.uint64) | np.uint64(fmt.special_mask)
    return out
