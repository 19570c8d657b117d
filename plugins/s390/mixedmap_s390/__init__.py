"""mixedmap-s390: the s390x (z/Architecture) arch plugin for mixedmap.

Modes are the page-table depths Linux gives an address space (``segment``, ``region3``,
``region2``, ``region1``; option ``levels=2..5``), each with and without 1 MiB segment
leaves (option ``edat1``), for kernel profiles 2.6.26, 2.6.27 and 6.18.
"""

from __future__ import annotations

from mixedmap_s390.spec import build_spec

__version__ = "0.1.0"

__all__ = ["__version__", "build_spec"]
