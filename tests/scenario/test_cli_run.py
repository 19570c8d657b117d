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
    # riscv64 has only 6.18, which s8 now lists: it runs; only 2.6.x kernels leave it nothing
    assert run(["run", "s8-illegal-inserts", "-a", "riscv64"]) == 0
    capsys.readouterr()
    assert run(["run", "s8-illegal-inserts", "-a", "riscv64", "-k", "2.6.27"]) == 1


def test_trace_records_every_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.jsonl"
    argv = ["run", "s5-fork-private-xip", "-a", "x86_64", "-a", "ppc64", "-k", "2.6.27", "--trace", str(path)]
    assert run(argv) == 0
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


LEAK = """\
[scenario]
name = "leak"
kernels = ["6.18"]
processes = ["a"]

[[steps]]
op = "mmap"
process = "a"
name = "buf"
pages = 1
prot = "rw"

[[steps]]
op = "write"
process = "a"
map = "buf"
data = "x"

[[steps]]
op = "gup"
pin = true
keep = true
process = "a"
map = "buf"
"""


def test_a_pin_left_held_is_shown_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "leak.toml"
    f.write_text(LEAK)
    assert run(["run", str(f), "-a", "x86_64"]) == 1
    out = capsys.readouterr().out
    assert "leak: 1 pin(s)" in out and "step 2" in out
    assert run(["run", str(f), "-a", "x86_64", "--json"]) == 1
    [r] = json.loads(capsys.readouterr().out)["runs"]
    assert [(lk["count"], lk["kind"], lk["step"], lk["expected"]) for lk in r["leaks"]] == [
        (1, "pin", 2, False)
    ]
    f.write_text(LEAK.replace("keep = true", "keep = true\nleak = true"))
    assert run(["run", str(f), "-a", "x86_64"]) == 0
    f.write_text(LEAK + '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n')
    assert run(["run", str(f), "-a", "x86_64"]) == 0


def test_html_writes_an_offline_explorer_page_per_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "pages"
    assert run(["run", "zero-page", "-a", "x86_64", "-k", "2.6.27", "-k", "6.18", "--html", str(out)]) == 0
    pages = sorted(p.name for p in out.iterdir())
    assert pages == ["zero-page-x86_64-2.6.27.html", "zero-page-x86_64-6.18.html"]
    text = (out / "zero-page-x86_64-6.18.html").read_text()
    assert "window.MIXEDMAP_OFFLINE" in text and '"kernel":"6.18"' in text
    assert "/static/" not in text  # CSS and JS are inlined: the page needs no server
    assert "html: " in capsys.readouterr().out


def test_html_file_holds_one_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = tmp_path / "bug.html"
    assert run(["run", "s6-private-pfnmap-remap", "-a", "x86_64", "-k", "2.6.27", "--html", str(page)]) == 0
    assert "s6-private-pfnmap-remap" in page.read_text() and "window.MIXEDMAP_OFFLINE" in page.read_text()
    other = tmp_path / "two.html"
    code = run(
        [
            "run",
            "s6-private-pfnmap-remap",
            "-a",
            "x86_64",
            "-k",
            "2.6.26",
            "-k",
            "2.6.27",
            "--html",
            str(other),
        ]
    )
    assert code == 2 and "a file holds one run, this is 2" in capsys.readouterr().err
    assert not other.exists()


def test_html_is_refused_for_a_guests_scenario(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "guests", "--html", str(tmp_path)]) == 2
    assert "--html is for scenarios with steps" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
