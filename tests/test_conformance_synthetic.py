"""The shipped suite through its subclass route, on the fictional arches.

``toyarch`` has every optional capability absent (no special bit), so the fallback paths
(scheme B: pfn_valid / linearity decide) run in the core's CI whatever is installed;
``toyspecial`` is its scheme-A twin. This is also how a plugin repo tests an unreleased
spec: no entry point, just plugin objects.
"""

from __future__ import annotations

from mixedmap.conformance import ArchConformance
from mixedmap.testing.synthetic_arch import ToyPlugin, ToySpecialPlugin


class TestSyntheticArches(ArchConformance):
    mixedmap_plugins = (("toyarch", ToyPlugin()), ("toyspecial", ToySpecialPlugin("toyspecial")))
