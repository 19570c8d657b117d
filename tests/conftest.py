"""Shared fixtures: every test that takes ``case`` runs on every installed arch mode.

The fictional toyarch (no special bit) is always included, so the core's scheme-B paths run
even on a machine with no arch plugin installed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import attrs
import pytest
from hypothesis import HealthCheck, settings

from mixedmap import ArchMode, ArchRegistry, Machine
from mixedmap.plugin.registry import default_registry
from mixedmap.testing.synthetic_arch import ToyPlugin, ToySpecialPlugin
from tests.meta.summary import pytest_terminal_summary as pytest_terminal_summary

settings.register_profile("ci", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def _registry() -> ArchRegistry:
    installed = default_registry()
    toy = [("toyarch", ToyPlugin()), ("toyspecial", ToySpecialPlugin("toyspecial"))]
    return ArchRegistry.load(extra=toy, disable=[r.entry_point for r in installed.reports if r.error])


REGISTRY = _registry()


@attrs.frozen(repr=False)
class Case:
    """One (arch, mode, profile) to run a test on."""

    def __repr__(self) -> str:
        return f"Case({self.id})"

    arch: str
    mode: ArchMode

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.mode.options if k not in ("mode",))
        return f"{self.arch}-{self.mode.name}-{self.mode.profile}" + (f"[{opts}]" if opts else "")

    def machine(self, ram: int | str = "256M") -> Machine:
        return Machine(
            self.arch,
            self.mode.profile,
            ram=ram,
            registry=REGISTRY,
            mode=self.mode.name,
            **dict(self.mode.options),
        )

    @property
    def bound(self):  # type: ignore[no-untyped-def]
        return REGISTRY.bind(self.arch).mode(
            self.mode.profile, mode=self.mode.name, **dict(self.mode.options)
        )


CASES = [Case(b.name, m) for b in REGISTRY for m in b.spec.modes]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES], scope="session")
def case(request: pytest.FixtureRequest) -> Case:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def registry() -> ArchRegistry:
    return REGISTRY


@pytest.fixture(autouse=True)
def _undo_cli_logging() -> Iterator[None]:
    """The CLI is an application and configures the "mixedmap" logger of its process; tests
    that run it in-process must not leave that for the library tests after them."""
    yield
    logger = logging.getLogger("mixedmap")
    for handler in [h for h in logger.handlers if type(h).__name__ == "_StderrHandler"]:
        logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)
