"""Every table the CLI prints fits 80 columns and keeps whole the cell saying which row or
column is which (the arch, arch/kernel, field, driver): a pipe and a plain terminal get 80."""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from mixedmap.cli import run
from mixedmap.conformance import AREAS
from mixedmap.plugin.registry import default_registry

WIDTH = 80
ARCHES = list(default_registry().names)


@pytest.fixture(autouse=True)
def columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", str(WIDTH))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    code = run(list(argv))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    return json.loads(cli(capsys, *argv, "--json"))


def cells(out: str, border: str = "│┃") -> list[str]:
    """The stripped cells of every table line (rich's default box draws │ and ┃ between cells)."""
    found = []
    for line in out.splitlines():
        if line[:1] in border:
            found += [c.strip() for c in line[1:-1].replace("┃", "│").split("│")]
    return found


def table_rows(out: str, title: str) -> list[list[str]]:
    """The body rows of the tables whose title starts with ``title``, split into cells."""
    rows: list[list[str]] = []
    inside = False
    for line in out.splitlines():
        if line.strip().startswith(title) and line[:1] not in "│┃┏┌":
            inside = True
        elif inside and line[:1] in "└":
            inside = False
        elif inside and line[:1] == "│":
            rows.append([c.strip() for c in line[1:-1].split("│")])
    return rows


def check(out: str, keys: Iterable[str]) -> None:
    """No line wider than the terminal, every key whole, no key cut with an ellipsis."""
    keys = set(keys)
    wide = [line for line in out.splitlines() if cell_len(line) > WIDTH]
    assert not wide, f"{len(wide)} lines wider than {WIDTH}, e.g. {wide[0]!r}"
    missing = sorted(k for k in keys if k not in out)
    assert not missing, f"keys not shown whole: {missing}"
    cut = sorted({c for c in cells(out) if c.endswith("…") and any(k.startswith(c[:-1]) for k in keys)})
    assert not cut, f"keys cut: {cut}"


def test_arches_and_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    rec = cli_json(capsys, "arches")
    names = [a["name"] for a in rec["arches"]]  # type: ignore[index]
    check(cli(capsys, "arches"), names)
    profiles = [p["name"] for p in cli_json(capsys, "profiles")]  # type: ignore[attr-defined]
    check(cli(capsys, "profiles"), profiles)
    rules = [r["name"] for r in cli_json(capsys, "profiles", "--rules")]  # type: ignore[attr-defined]
    check(cli(capsys, "profiles", "--rules"), [*rules, *profiles])


@pytest.mark.parametrize("arch", ARCHES)
def test_pte_walk_layout(arch: str, capsys: pytest.CaptureFixture[str]) -> None:
    enc = cli_json(capsys, "pte", "encode", "-a", arch, "--pfn", "0x1234", "--dirty")
    check(cli(capsys, "pte", "encode", "-a", arch, "--pfn", "0x1234", "--dirty"), [])
    dec = cli_json(capsys, "pte", "decode", "-a", arch, enc["value"])  # type: ignore[index]
    fields = [f["name"] for f in dec["fields"]]  # type: ignore[index]
    check(cli(capsys, "pte", "decode", "-a", arch, enc["value"]), [*fields, f"{arch}/{dec['mode']}"])  # type: ignore[index]
    walked = cli_json(capsys, "walk", "-a", arch, "0x12345000")
    levels = [s["level"] for s in walked["steps"]]  # type: ignore[index]
    check(cli(capsys, "walk", "-a", arch, "0x12345000"), levels)
    layout = cli_json(capsys, "layout", "-a", arch)
    check(cli(capsys, "layout", "-a", arch), [f["name"] for f in layout["fields"]])  # type: ignore[index]


@pytest.mark.parametrize("arch", ARCHES)
def test_xip(arch: str, capsys: pytest.CaptureFixture[str]) -> None:
    drivers = [d["name"] for d in cli_json(capsys, "xip", "drivers", "-a", arch)]  # type: ignore[attr-defined]
    check(cli(capsys, "xip", "drivers", "-a", arch), drivers)
    for driver in drivers:
        kernel = "6.18" if driver == "pmem" else "2.6.27"
        argv = ["xip", "create", "-a", arch, "-k", kernel, "-d", driver, "-p", "size=64M"]
        if run([*argv, "--json"]) != 0:  # e.g. dcssblk needs a DCSS defined on the z/VM
            capsys.readouterr()
            continue
        rec = json.loads(capsys.readouterr().out)
        keys = [*rec["device"], *(f"direct_access(0).{k}" for k in rec["direct_access(0)"])]
        check(cli(capsys, *argv), [*keys, "machine memmap bytes"])


def test_conformance_matrix() -> None:
    from mixedmap.conformance.report import MatrixReporter

    reporter = MatrixReporter()
    for i, arch in enumerate(ARCHES):
        for area in AREAS:
            reporter.counts[(arch, area)] = Counter(passed=125, skipped=i, xfailed=1, failed=i % 2)
    sink = io.StringIO()
    reporter.render(Console(file=sink, width=WIDTH, highlight=False))
    check(sink.getvalue(), [*ARCHES, *AREAS])


def ran_keys(capsys: pytest.CaptureFixture[str], *argv: str) -> list[str]:
    rep = cli_json(capsys, "run", *argv)
    return [f"{r['arch']}/{r['kernel']}" for r in rep["runs"] if r["skipped"] is None]  # type: ignore[index]


@pytest.mark.parametrize(
    "scenario", ["lockless-gup", "s1-private-xip-no-struct-page", "s5-fork-private-xip", "map-populate-xip"]
)
def test_run_side_by_side(scenario: str, capsys: pytest.CaptureFixture[str]) -> None:
    keys = ran_keys(capsys, scenario)
    out = cli(capsys, "run", scenario)
    check(out, keys)
    headers = Counter(c for c in cells(out, "┃"))
    assert all(headers[k] >= 2 for k in keys), headers  # a column in "steps" and in "at the end"
    gup = {row[0] for row in table_rows(out, "get_user_pages_fast") if row[0]}
    if scenario == "lockless-gup":
        assert gup == set(keys)


def test_run_list_and_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    names = list(cli_json(capsys, "run", "--list"))  # type: ignore[call-overload]
    check(cli(capsys, "run", "--list"), names)
    trace = tmp_path / "t.jsonl"
    cli(capsys, "run", "s5-fork-private-xip", "-a", ARCHES[0], "--trace", str(trace))
    rec = cli_json(capsys, "trace", "summarize", str(trace))
    check(cli(capsys, "trace", "summarize", str(trace)), [*rec["events"], *rec["functions"]])  # type: ignore[index]


def test_run_guests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["run", "guests", "--guests", "2", "--image-size", "16M", "--out", str(tmp_path)]
    doc = cli_json(capsys, *argv)
    ran = [r for r in doc["runs"] if "skipped" not in r and r["reason"] is None]  # type: ignore[index]
    out = cli(capsys, *argv)
    check(out, {r["arch"] for r in ran} | {r["behaviour"] for r in ran})
    rows = {(row[0], row[1]) for row in table_rows(out, "all 2 guests")}
    assert rows == {(r["arch"], r["behaviour"]) for r in ran}
