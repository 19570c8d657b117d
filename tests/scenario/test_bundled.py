"""Every bundled scenario states the kernel's answer; it must hold on every installed arch
and kernel profile it names, and a wrong expectation must be reported as a failure."""

from __future__ import annotations

import pytest

from mixedmap.plugin.registry import default_registry
from mixedmap.scenario.load import bundled, load, loads, resolve
from mixedmap.scenario.run import run_one

STEP_SCENARIOS = [n for n in bundled() if load(n)[1].guests is None]
ARCHES = default_registry().names


def _pairs(name: str) -> list[tuple[str, str]]:
    scen = load(name)[1]
    return [(a, k) for a in ARCHES for k in (scen.scenario.kernels or ["2.6.27"])]


@pytest.mark.parametrize("name", STEP_SCENARIOS)
def test_bundled_scenario_holds_everywhere(name: str) -> None:
    _, scen = load(name)
    ran = 0
    for arch, kernel in _pairs(name):
        r = run_one(scen, arch, kernel)
        if r.skipped:
            assert "profile" in r.skipped
            continue
        ran += 1
        assert r.error is None, f"{arch}/{kernel}: {r.error}"
        bad = [(s.index, s.label, s.failures, s.outcome) for s in r.steps if s.failures]
        assert not bad, f"{name} on {arch}/{kernel}: {bad}"
        checked = [s for s, st in zip(r.steps, scen.steps, strict=True) if not s.skipped and st.expect]
        assert checked, f"{name} on {arch}/{kernel} checks no expectation"
    assert ran >= 3


def test_a_wrong_expectation_fails() -> None:
    _, text = resolve("s4-private-hole-then-write")
    bad = loads(text.replace('expect = { fault = "fault+wp" }', 'expect = { fault = "wp" }'), "x.toml")
    r = run_one(bad, "x86_64", "2.6.27")
    assert r.failures == 1
    [step] = [s for s in r.steps if s.failures]
    assert step.failures == ("fault: expected 'wp', got 'fault+wp'",)


def test_when_selects_steps_by_scheme() -> None:
    _, scen = load("s2-private-xip-struct-pages")
    a = run_one(scen, "x86_64", "2.6.27")  # special bit
    b = run_one(scen, "x86_64", "2.6.26")  # scheme B
    # steps neither runs are another kernel's (6.18's fs-dax column): only 2008's are compared
    both = {s.index for s in a.steps if s.skipped} & {s.index for s in b.steps if s.skipped}
    skipped_a = [s.index for s in a.steps if s.skipped and s.index not in both]
    skipped_b = [s.index for s in b.steps if s.skipped and s.index not in both]
    assert skipped_a and skipped_b
    new = run_one(scen, "x86_64", "6.18")
    assert both == {s.index for s in new.steps if not s.skipped} - {s.index for s in a.steps if not s.skipped}


def test_setup_failure_is_a_run_error_not_a_crash() -> None:
    _, text = resolve("s1-private-xip-no-struct-page")
    scen = loads(
        text.replace(
            'size = "16M"\nmemmap = false', 'size = "16M"\nmemmap = false\nread_only = true'
        ).replace('start = "1G"', 'start = "0"'),
        "x.toml",
    )
    r = run_one(scen, "x86_64", "2.6.27")
    assert r.error is not None and r.error.startswith("setup:") and r.steps == ()


def test_the_documented_example_loads_and_holds() -> None:
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "scenarios.md").read_text()
    [block] = re.findall(r"```toml\n(.*?)```", doc, re.S)
    scen = loads(block, "docs/scenarios.md")
    for arch in ("s390x", "x86_64"):
        if arch not in ARCHES:
            continue
        for kernel in ("2.6.26", "2.6.27"):
            r = run_one(scen, arch, kernel)
            assert r.error is None and r.failures == 0, (arch, kernel, r.error, r.steps)
            assert not r.steps[2].skipped or kernel == "2.6.26"
