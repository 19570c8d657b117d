"""Benchmarks run on every installed arch's default mode (plus the toy arch)."""

from __future__ import annotations

import pytest

from mixedmap import ArchRegistry
from mixedmap.testing.synthetic_arch import ToyPlugin

REGISTRY = ArchRegistry.load(extra=[("toyarch", ToyPlugin())])
ARCHES = list(REGISTRY.names)


@pytest.fixture(params=ARCHES, scope="module")
def arch(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def registry() -> ArchRegistry:
    return REGISTRY
