"""The cross-arch conformance suite, shipped in the wheel.

Run it on installed arches with ``mixedmap conformance`` or
``pytest --pyargs mixedmap.conformance -p mixedmap.testing.pytest_plugin [--mixedmap-arch A]``.
A plugin repo that wants to test an unreleased spec without an entry point subclasses
:class:`ArchConformance` and names its plugin objects::

    from mixedmap.conformance import ArchConformance

    class TestMyArch(ArchConformance):
        mixedmap_plugins = [("myarch", MyArchPlugin())]

Areas (one module each): contract (run first), helpers (debug_vm_pgtable algebra),
pgtable (tables as bytes), mm (vm_normal_page, inserts, COW, fork, zap, gup), xip (driver
models' direct_access contract and struct page presence), equivalence (the same scenario
gives the same observable results on every arch).
"""

from __future__ import annotations

SUITE_VERSION = "0.1"

AREAS = ("contract", "helpers", "pgtable", "mm", "xip", "equivalence")


def __getattr__(name: str) -> object:
    if name == "ArchConformance":  # imported lazily: it imports the test modules
        from mixedmap.conformance.suite import ArchConformance

        return ArchConformance
    raise AttributeError(name)
