"""Benchmarks run on every installed arch's default mode (plus the toy arch)."""

from __future__ import annotations

import pytest

from mixedmap import ArchRegistry
from mixedmap.testing.synthetic_arch import ToyPlugin

REGISTRY = ArchRegistry.load(extra=[("toyarch", ToyPlugin())])
ARCHES = list(REGISTRY.names)
#: Each arch's default mode under the series' kernel and under today's encodings.
CASES = [(a, k) for a in ARCHES for k in ("2.6.27", "6.18") if k in REGISTRY.bind(a).spec.profiles]


@pytest.fixture(params=CASES, ids=[f"{a}-{k}" for a, k in CASES], scope="module")
def arch_kernel(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def arch(arch_kernel: tuple[str, str]) -> str:
    return arch_kernel[0]


@pytest.fixture(scope="module")
def kernel(arch_kernel: tuple[str, str]) -> str:
    return arch_kernel[1]


@pytest.fixture(scope="module")
def registry() -> ArchRegistry:
    return REGISTRY
