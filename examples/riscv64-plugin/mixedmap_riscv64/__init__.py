"""mixedmap-riscv64: a third-party arch plugin for mixedmap, RISC-V RV64 under Linux 6.18.

Modes ``sv39`` (3 levels, the default; ``levels=3``) and ``sv48`` (4 levels; ``levels=4``).
It uses only mixedmap's public API (``from mixedmap import ...`` and ``mixedmap.bits``).
Hooks in :mod:`mixedmap_riscv64.plugin`, helpers in :mod:`mixedmap_riscv64.ops`, the kernel's
definitions in :mod:`mixedmap_riscv64.linux` and the architecture's in
:mod:`mixedmap_riscv64.hw`.
"""

from __future__ import annotations

from mixedmap_riscv64.formats import ARCH, MODE_SV39, MODE_SV48
from mixedmap_riscv64.spec import arch_spec

__version__ = "0.1.0"

__all__ = ["ARCH", "MODE_SV39", "MODE_SV48", "__version__", "arch_spec"]
