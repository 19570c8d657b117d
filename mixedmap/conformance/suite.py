"""Every conformance test class in one base class, for the subclass route."""

from __future__ import annotations

from mixedmap.conformance.test_contract import TestContract
from mixedmap.conformance.test_equivalence import TestEquivalence
from mixedmap.conformance.test_helpers import TestHelperAlgebra, TestHelperFrames
from mixedmap.conformance.test_mm import TestMmSemantics
from mixedmap.conformance.test_pgtable import TestPageTables
from mixedmap.conformance.test_xip import TestXipDrivers


class ArchConformance(
    TestContract,
    TestHelperAlgebra,
    TestHelperFrames,
    TestPageTables,
    TestMmSemantics,
    TestXipDrivers,
    TestEquivalence,
):
    """Subclass with ``mixedmap_plugins = [(name, plugin_object), ...]`` (and optionally
    ``mixedmap_arches``) to run the whole suite on plugins that are not installed."""

    __test__ = False

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.__test__ = True
