"""Benchmarks run on every installed arch's default mode (plus the toy arch)."""

from __future__ import annotations

from collections.abc import Callable

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


#: The kernels a ratio line compares: today's rules over the series' (6.18 / 2.6.27).
BASE_KERNEL, NEW_KERNEL = "2.6.27", "6.18"


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str, str, str, float], None]:
    """``figure(name, arch, kernel, seconds)`` keeps one timed figure on the test's report,
    for the 6.18/2.6.27 ratio lines.

    On the report (``user_properties``, as tests/meta/summary.py reads them) rather than in a
    module global, so the lines print under pytest-xdist's controller too."""

    def record(name: str, arch: str, kernel: str, seconds: float) -> None:
        request.node.user_properties.append(("bench_figure", (name, arch, kernel, float(seconds))))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per (figure, arch) measured under both kernels in this run: the seconds of
    each and their ratio. A figure, not an assertion: the run is on shared cores. Then the
    lines kept with ``report``, section by section."""
    _report_sections(terminalreporter)
    seen: dict[tuple[str, str], dict[str, float]] = {}
    for outcome in ("passed", "failed"):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, "when", "") != "call":
                continue
            for key, value in getattr(rep, "user_properties", ()):
                if key == "bench_figure":
                    figure, arch, kernel, seconds = value
                    seen.setdefault((figure, arch), {})[kernel] = seconds
    rows = [(f, a, k) for (f, a), k in seen.items() if BASE_KERNEL in k and NEW_KERNEL in k]
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", f"ratio {NEW_KERNEL}/{BASE_KERNEL} (seconds, same run)")
    width = max(len(f"{f} {a}") for f, a, _ in rows)
    for figure, arch, k in sorted(rows):
        base, new = k[BASE_KERNEL], k[NEW_KERNEL]
        ratio = new / base if base > 0 else float("inf")
        tr.write_line(
            f"{f'{figure} {arch}':{width}}  {BASE_KERNEL} {base:8.3f} s  {NEW_KERNEL} {new:8.3f} s  "
            f"ratio {ratio:5.2f}"
        )


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """``report(section, line)`` keeps one line of figures for the terminal summary, printed
    under ``section`` after the run (ratios, linearity, bytes per PTE): benchmark output for
    a shared machine, not an assertion. On the report, like ``figure``, so xdist keeps it."""

    def record(section: str, line: str) -> None:
        request.node.user_properties.append(("bench_report", (section, line)))

    return record


def _report_sections(terminalreporter: pytest.TerminalReporter) -> None:
    sections: dict[str, list[str]] = {}
    for outcome in ("passed", "failed"):
        for rep in terminalreporter.stats.get(outcome, []):
            if getattr(rep, "when", "") != "call":
                continue
            for key, value in getattr(rep, "user_properties", ()):
                if key == "bench_report":
                    section, line = value
                    sections.setdefault(section, []).append(line)
    for section, lines in sections.items():
        terminalreporter.write_sep("=", section)
        for line in lines:
            terminalreporter.write_line(line)
