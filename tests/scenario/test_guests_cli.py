"""``mixedmap run guests``: the memmap experiment through the scenario runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmap.cli import run
from mixedmap.plugin.registry import default_registry

NEEDS_S390 = pytest.mark.skipif("s390x" not in default_registry().names, reason="uses the s390x DCSS model")


@NEEDS_S390
def test_guests_json_matches_the_kernel_formula(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "run",
        "guests",
        "-a",
        "s390x",
        "--guests",
        "3",
        "--image-size",
        "16M",
        "--out",
        str(tmp_path),
        "--json",
    ]
    assert run(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    runs = {r["behaviour"]: r for r in doc["runs"]}
    assert set(runs) == {"pre-series", "2.6.26", "2.6.27"}
    pages = (16 << 20) // 4096
    pre = runs["pre-series"]
    assert pre["memmap_bytes_per_guest"] == pre["formula_memmap_bytes_per_guest"] == pages * 64
    assert pre["total_memmap_bytes"] == 3 * pages * 64 and pre["break_even"] == 64
    for k in ("2.6.26", "2.6.27"):
        assert runs[k]["memmap_bytes_per_guest"] == 0 and runs[k]["break_even"] is None
        assert runs[k]["total_ptes"] == 3 * pages and runs[k]["verified"]
    assert [Path(p).suffix for p in doc["plots"]] == [".png", ".svg"]
    assert Path(doc["plots"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in Path(doc["plots"][1]).read_bytes()[:2000]


@NEEDS_S390
def test_guests_table_and_kernel_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "run",
        "guests",
        "-a",
        "s390x",
        "-k",
        "2.6.27",
        "--guests",
        "2",
        "--image-size",
        "8M",
        "--out",
        str(tmp_path),
    ]
    assert run(argv) == 0
    out = capsys.readouterr().out
    assert "pre-series" in out and "2.6.27" in out and "2.6.26" not in out
    assert (tmp_path / "guests-memmap.svg").exists()


@NEEDS_S390
def test_guests_dump_keeps_one_guest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixedmap.dump import check_roundtrip

    argv = ["run", "guests", "-a", "s390x", "-k", "2.6.27", "--guests", "1", "--image-size", "4M",
            "--out", str(tmp_path), "--dump", str(tmp_path / "img")]  # fmt: skip
    assert run(argv) == 0
    manifests = sorted((tmp_path / "img").glob("*.json"))
    assert [m.name for m in manifests] == ["guest0-s390x-2.6.27.json", "guest0-s390x-pre-series.json"]
    for m in manifests:
        assert check_roundtrip(m).pages == 1024


def test_guest_options_only_for_guests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["run", "s8-illegal-inserts", "--guests", "3"]) == 2
    assert run(["run", "guests", "--guests", "1", "--trace", str(tmp_path / "t.jsonl")]) == 2
    assert "--trace is for scenarios with steps" in capsys.readouterr().err
    assert not (tmp_path / "t.jsonl").exists()
