"""mixedmap-x86: the x86_64 arch plugin for mixedmap.

Modes ``4level`` (Linux 2.6.26, 2.6.27, 6.18; the default) and ``la57`` (5-level paging,
6.18 only). The hook implementations are in :mod:`mixedmap_x86.plugin`; the bit-exact
helpers in :mod:`mixedmap_x86.ops_2008` (2.6.26/2.6.27) and :mod:`mixedmap_x86.ops_618`.
"""

from __future__ import annotations

from mixedmap_x86.formats import ARCH, MODE_4LEVEL, MODE_LA57
from mixedmap_x86.spec import arch_spec

__version__ = "0.1.0"

__all__ = ["ARCH", "MODE_4LEVEL", "MODE_LA57", "__version__", "arch_spec"]
