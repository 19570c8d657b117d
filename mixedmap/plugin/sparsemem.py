"""The core's own ``mixedmap_pfn_valid``: SPARSEMEM's answer, for arches that keep it.

``pfn_valid`` under CONFIG_SPARSEMEM (``include/linux/mmzone.h``) is "the pfn's section has
a memmap"; :meth:`MemMap.pfn_valid` computes it. It lives here, not beside the memmap, so
physical memory stays a layer below the plugin host.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap.phys.memmap import MemMap
from mixedmap.plugin import hookimpl


class DefaultPfnValid:
    """The core's fallback implementation of ``mixedmap_pfn_valid`` (runs last)."""

    @hookimpl(trylast=True)
    def mixedmap_pfn_valid(self, memmap: MemMap, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        return memmap.pfn_valid(pfns)
