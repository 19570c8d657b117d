"""``mixedmap run``: listing, running side by side, JSON, exit statuses, traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmap.cli import run
from mixedmap.scenario.load import resolve
from mixedmap.trace import summarize


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "--list", "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert "lockless-gup" in names and "guests" in names
    assert run(["run", "--list"]) == 0
    assert "s6-private-pfnmap-remap" in capsys.readouterr().out


def test_side_by_side_report(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "s1-private-xip-no-struct-page", "-a", "x86_64", "-a", "s390x"]) == 0
    out = capsys.readouterr().out
    for col in ("x86_64/2.6.26", "x86_64/2.6.27", "s390x/2.6.26", "s390x/2.6.27"):
        assert col in out
    assert "page tables" in out and "memmap" in out


def test_json_report_has_every_step_and_the_accounting(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "s9-direct-io-on-xip", "-a", "x86_64", "-k", "2.6.27", "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    [r] = rep["runs"]
    assert (r["arch"], r["kernel"], r["failures"]) == ("x86_64", "2.6.27", 0)
    assert len(r["steps"]) == len(rep["scenario"]["steps"])
    assert r["processes"]["a"]["rss_anon"] == 1 and r["machine"]["pagetable_bytes"] > 0
    outcomes = [s["outcome"].get("outcome") for s in r["steps"]]
    assert "EFAULT" in outcomes


def test_failed_expectation_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, text = resolve("s4-private-hole-then-write")
    bad = tmp_path / "bad.toml"
    bad.write_text(text.replace('expect = { fault = "fault+wp" }', 'expect = { fault = "wp" }'))
    assert run(["run", str(bad), "-a", "x86_64"]) == 1
    assert "expected 'wp', got 'fault+wp'" in capsys.readouterr().out


def test_bad_file_exits_2_naming_line_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nname = "x"\nprocesses = ["a"]\n\n[[steps]]\nop = "exit"\nprocess = "b"\n')
    assert run(["run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:7: steps[0].process: no process 'b'" in err


def test_unknown_arch_and_kernel_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "s8-illegal-inserts", "-a", "vax"]) == 2
    assert "x86_64" in capsys.readouterr().err
    assert run(["run", "s8-illegal-inserts", "-k", "2.4.0"]) == 2


def test_arch_without_the_profile_is_skipped(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "s8-illegal-inserts", "-a", "riscv64", "-a", "x86_64"]) == 0
    assert "riscv64/2.6.26: not run" in capsys.readouterr().out
    assert run(["run", "s8-illegal-inserts", "-a", "riscv64"]) == 1


def test_trace_records_every_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    assert run(["run", "s5-fork-private-xip", "-a", "x86_64", "-a", "ppc64", "--trace", str(path)]) == 0
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    assert {(r["arch"], r["kernel"]) for r in recs} == {("x86_64", "2.6.27"), ("ppc64", "2.6.27")}
    events = summarize(path)["events"]
    for ev in ("insert_pfn", "cow", "fork_copy"):
        assert events.get(ev, 0) > 0, events
    assert f"{len(recs)} events" in capsys.readouterr().out


def test_dump_writes_images_that_walk_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixedmap.dump import check_roundtrip, load_manifest

    out = tmp_path / "img"
    assert run(["run", "s5-fork-private-xip", "-a", "x86_64", "-a", "s390x", "--dump", str(out)]) == 0
    for name, lime in (("x86_64-2.6.27", True), ("s390x-2.6.27", False)):
        man = load_manifest(out / f"{name}.json")
        assert (out / f"{name}.lime").exists() == lime
        assert len(man["mms"]) == 4  # parent, child, quiet, quiet_child
        rt = check_roundtrip(out / f"{name}.json")
        assert rt.pages == sum(m["nr_pages"] for m in man["mms"]) > 0
