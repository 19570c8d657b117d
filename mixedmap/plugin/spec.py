"""Hook specifications (``mixedmap_`` prefix).

Data hooks describe an arch and are called once per plugin while the registry is built.
Primitive hooks are the three the kernel leaves to the arch; they are batch-shaped (numpy
arrays in and out, a scalar is a one-element array) and ``firstresult``, and the core only
ever calls them through the per-arch caller the registry resolved, never ``pm.hook.*``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pluggy
from numpy.typing import NDArray

from mixedmap.plugin import NAME

if TYPE_CHECKING:
    from mixedmap.arch import ArchSpec, PageTableFormat, XipDriverModel
    from mixedmap.phys.memmap import MemMap

_spec = pluggy.HookspecMarker(NAME)


class MixedmapSpecs:
    """The hooks an arch plugin may implement."""

    @_spec
    def mixedmap_arch_spec(self) -> ArchSpec:  # type: ignore[empty-body]
        """Describe this arch: its modes (page-table format and helpers per kernel
        profile), memory model (with the physical ranges its kernel reserves at boot,
        ``MemoryModel.reserved``) and capabilities. Called once when the registry is built.

        Example::

            @hookimpl
            def mixedmap_arch_spec() -> ArchSpec:
                return ArchSpec(name="riscv64", api_version=API_VERSION, modes=..., caps=...)
        """

    @_spec
    def mixedmap_xip_drivers(self) -> Iterable[XipDriverModel]:
        """Yield the XIP block-device driver models this arch offers (brd, pmem, dcssblk,
        axonram)."""
        yield from ()

    @_spec(firstresult=True)
    def mixedmap_pte_special(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:  # type: ignore[empty-body]
        """``pte_special`` over a batch of PTE values of format ``fmt``.

        Implementing this (and ``mixedmap_pte_mkspecial``) declares the special bit; an
        arch that implements neither is an arch without it (``!__HAVE_ARCH_PTE_SPECIAL``).
        Called only for formats whose ``special_mask`` is not None.
        """

    @_spec(firstresult=True)
    def mixedmap_pte_mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:  # type: ignore[empty-body]
        """``pte_mkspecial`` over a batch of PTE values; must change no other bit."""

    @_spec(firstresult=True)
    def mixedmap_pfn_valid(self, memmap: MemMap, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:  # type: ignore[empty-body]
        """``pfn_valid`` over a batch of PFNs of a machine whose memmap is ``memmap``.

        The core supplies the generic SPARSEMEM answer (a frame has a struct page exactly
        when its memory section has a memmap); an arch overrides it by returning an array,
        or declines with None.
        """
