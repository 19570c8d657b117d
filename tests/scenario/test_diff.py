"""``mixedmap.scenario.diff``: one scenario under several kernels, only what differs, and why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmap.cli import run
from mixedmap.plugin.registry import default_registry
from mixedmap.rules import BY_NAME, consulted
from mixedmap.scenario.diff import Cause, _explains, diff
from mixedmap.scenario.load import load, loads
from mixedmap.scenario.run import run_one

REG = default_registry()
ARCHES = REG.names

WRITE_ONLY = """
[scenario]
name = "anon-write"
description = "write two anonymous pages and unmap them"
processes = ["p"]

[[steps]]
op = "mmap"
process = "p"
name = "a"
pages = 2
prot = "rw"

[[steps]]
op = "write"
process = "p"
map = "a"
page = 0
data = "x"

[[steps]]
op = "inspect"
process = "p"
map = "a"
page = 0

[[steps]]
op = "munmap"
process = "p"
map = "a"
page = 0
"""


def test_a_scenario_that_behaves_the_same_is_identical() -> None:
    res = diff(loads(WRITE_ONLY), kernels=("2.6.26", "2.6.27"), registry=REG)
    assert res.identical, [d for a in res.arches for d in a.differences]


@pytest.mark.skipif("x86_64" not in ARCHES, reason="needs the x86 plugin: pip install ./plugins/x86")
def test_lockless_gup_difference_is_the_arch_walk() -> None:
    _, scen = load("lockless-gup")
    res = diff(scen, kernels=("2.6.26", "2.6.27"), arches=["x86_64"], registry=REG)
    (x86,) = res.arches
    fast = [d for d in x86.differences if d.key == "fast_pages"]
    assert fast, x86.differences
    assert fast[0].values == {"2.6.26": 0, "2.6.27": 6400}
    assert [c.name for c in fast[0].causes] == ["lockless GUP"]
    assert fast[0].causes[0].holds_in == ("2.6.27",)


@pytest.mark.skipif("x86_64" not in ARCHES, reason="needs the x86 plugin: pip install ./plugins/x86")
def test_sparse_page_difference_names_the_2627_rule() -> None:
    """S4 on x86: 2.6.26 COWs a first write to a hole early, 2.6.27 maps the sparse page with
    vm_insert_page first; both the rule and the special bit split the two kernels, and the
    rule the fault consulted is the cause given."""
    _, scen = load("s4-private-hole-then-write")
    res = diff(scen, kernels=("2.6.26", "2.6.27"), arches=["x86_64"], registry=REG)
    (x86,) = res.arches
    # the two forms of the write step are one logical step: compared by what each kernel did
    assert not [d for d in x86.differences if d.key == "step"], x86.differences
    (fault,) = [d for d in x86.differences if d.key == "fault"]
    assert fault.values == {"2.6.26": "fault", "2.6.27": "fault+wp"}
    assert [c.name for c in fault.causes] == ["xip_sparse_vm_insert_page"]


def test_a_step_records_the_rules_it_consulted() -> None:
    _, scen = load("s4-private-hole-then-write")
    r = run_one(scen, ARCHES[0], "2.6.27", registry=REG)
    asked = {name for s in r.steps for name in s.rules}
    assert "xip_sparse_vm_insert_page" in asked
    assert all(name in BY_NAME for name in asked)


def test_consulted_collects_only_inside_the_block() -> None:
    rule = BY_NAME["zero_page"]
    from mixedmap.profiles import V6_18

    rule.applies(V6_18)
    with consulted() as seen:
        rule.applies(V6_18)
        rule.applies(V6_18)
    rule.applies(V6_18)
    assert seen == [rule, rule]


def test_explains_needs_every_kernel_pair_on_one_side_to_agree() -> None:
    a = Cause("a", "f", "x.c", "1", ("6.18",))
    b = Cause("b", "g", "y.c", "2", ("2.6.27", "6.18"))
    values = {"2.6.26": 1, "2.6.27": 1, "6.18": 2}
    assert _explains([a], values)
    assert not _explains([b], values)
    assert _explains([a, b], values)
    three = {"2.6.26": 1, "2.6.27": 2, "6.18": 3}
    assert not _explains([a], three)
    assert _explains([a, b], three)


X86 = pytest.mark.skipif("x86_64" not in ARCHES, reason="needs the x86 plugin: pip install ./plugins/x86")


@X86
def test_cli_diff_json_names_values_and_causes(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["diff", "lockless-gup", "-a", "x86_64", "-k", "2.6.26", "-k", "2.6.27", "--json"]
    assert run(argv) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["kernels"] == ["2.6.26", "2.6.27"] and rep["identical"] is False
    [x86] = rep["arches"]
    fast = next(d for d in x86["differences"] if d["key"] == "fast_pages")
    assert fast["values"] == {"2.6.26": 0, "2.6.27": 6400}
    assert fast["causes"][0]["name"] == "lockless GUP"


@X86
def test_cli_diff_table_fits_80_columns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    assert run(["diff", "lockless-gup", "-a", "x86_64", "-k", "2.6.26", "-k", "2.6.27"]) == 0
    out = capsys.readouterr().out
    assert "lockless-gup on x86_64" in out and "[1] lockless GUP" in out
    header = next(line for line in out.splitlines() if "step" in line and "key" in line)
    assert "2.6.26" in header and "2.6.27" in header
    assert max(len(line) for line in out.splitlines()) <= 80


def test_cli_diff_identical_says_so_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "w.toml"
    f.write_text(WRITE_ONLY)
    assert run(["diff", str(f), "-k", "2.6.26", "-k", "2.6.27"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("anon-write: identical under 2.6.26, 2.6.27")


@pytest.mark.parametrize(
    ("argv", "culprit"),
    [
        (["diff", "lockless-gup", "-k", "2.6.99"], "2.6.99"),
        (["diff", "lockless-gup", "-a", "vax"], "vax"),
        (["diff", "no-such-scenario"], "no-such-scenario"),
    ],
)
def test_cli_diff_bad_input_names_the_culprit(
    argv: list[str], culprit: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    assert culprit in capsys.readouterr().err


@pytest.mark.skipif("x86_64" not in ARCHES, reason="needs the x86 plugin: pip install ./plugins/x86")
def test_unequal_alternatives_are_aligned_by_their_ops() -> None:
    """pin-user-pages after fork: 6.18 runs inspect, write, inspect, unpin, inspect where
    2.6.x runs inspect, write, unpin; the common ops pair up (the early COW of the pinned
    page shows as values), the 6.18-only inspections stand alone."""
    name = "pin-user-pages"
    _, scen = load(name)
    res = diff(scen, arches=["x86_64"], registry=REG)
    (x86,) = res.arches
    fork = next(i for i, st in enumerate(scen.steps) if st.OP == "fork")
    kid = fork + 2  # the child's inspect (6.18's form first)
    rows = {d.key: d for d in x86.differences if d.step == kid}
    assert rows["writable"].values == {"2.6.26": False, "2.6.27": False, "6.18": True}
    assert [c.name for c in rows["writable"].causes] == ["fork_copies_pinned"]
    (write,) = [d for d in x86.differences if d.step == kid + 2]
    assert (write.key, write.values) == ("fault", {"2.6.26": "wp", "2.6.27": "wp", "6.18": "none"})
    unpin = [d for d in x86.differences if d.label.startswith("unpin") and d.key == "outcome"]
    assert unpin and unpin[0].values["6.18"] == "ok" and unpin[0].values["2.6.27"] == "Unsupported"


@pytest.mark.skipif("x86_64" not in ARCHES, reason="needs the x86 plugin: pip install ./plugins/x86")
def test_an_end_total_names_a_cause_only_when_one_fits() -> None:
    """pin-user-pages: several 6.18-only rules split the kernels as its end-of-run RSS does, so
    the totals name none of them; zero-page's end RSS follows from the zero page alone."""
    (pins,) = diff(load("pin-user-pages")[1], arches=["x86_64"], registry=REG).arches
    ends = [d for d in pins.differences if d.step < 0]
    assert ends and all(d.follows and not d.causes for d in ends), ends
    (zp,) = diff(load("zero-page")[1], arches=["x86_64"], registry=REG).arches
    ends = [d for d in zp.differences if d.step < 0]
    assert ends and all([c.name for c in d.causes] == ["zero_page"] for d in ends), ends
