"""mm event traces: JSON lines with the kernel function, PTEs in hex; summarize."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmap import DeviceFile, Machine
from mixedmap.cli import run
from mixedmap.mm import memory
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE
from mixedmap.trace import Tracer, summarize

from .conftest import REGISTRY


def traced_scenario(tmp_path: Path) -> Path:
    m = Machine("toyspecial", ram="64M", registry=REGISTRY)
    m.add_region("dev", 1 << 30, 1 << 20, memmap=False)
    path = tmp_path / "trace.jsonl"
    with Tracer.attach(m, path):
        mm = m.new_mm()
        a = mm.mmap(2 * m.page_size, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        mm.write(a, b"x")
        child = mm.fork()
        child.write(a, b"y")
        base = (1 << 30) >> 12
        dev = DeviceFile("mem", on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, v.end - v.start))
        d = mm.mmap(m.page_size, "rw", MAP_PRIVATE, file=dev)
        mm.write(d, b"c")
        child.exit()
        mm.exit()
    return path


def test_trace_records_every_step_with_function_and_ptes(tmp_path: Path) -> None:
    path = traced_scenario(tmp_path)
    recs = [json.loads(line) for line in path.read_text().splitlines()]
    events = {r["event"] for r in recs}
    assert {"fault_anon", "fork_copy", "cow", "remap_pfn_range", "zap", "get_page", "put_page"} <= events, (
        events
    )
    cow = [r for r in recs if r["event"] == "cow"]
    assert len(cow) == 2 and all(r["func"] == "mm/memory.c:do_wp_page" for r in cow)
    for r in cow:  # before: read-only PTE; after: the new anonymous page, writable
        assert (
            r["pte_before"] != r["pte_after"]
            and r["pte_after"].startswith("0x")
            and r["vma"].startswith("0x")
        )
        assert int(r["pte_after"], 16) >> 12 == int(r["pfn"], 16)


def test_no_trace_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off means no tracer is consulted at all: any call into one would raise here."""

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("an mm path called a tracer although none is attached")

    monkeypatch.setattr(Tracer, "__call__", boom)
    m = Machine("toyarch", ram="16M", registry=REGISTRY)
    assert m.tracer is None and m.pages.tracer is None
    mm = m.new_mm()
    mm.write(mm.mmap(4096, "rw", MAP_PRIVATE | MAP_ANONYMOUS), b"q")
    mm.fork().exit()
    mm.exit()
    assert m.pages.leaks() == {}


def test_summarize_counts_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = traced_scenario(tmp_path)
    rec = summarize(path)
    assert rec["events"]["cow"] == 2 and rec["functions"]["mm/memory.c:do_wp_page"] == 2
    assert run(["trace", "summarize", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == rec
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert run(["trace", "summarize", str(bad)]) == 2
    assert "bad.jsonl:1" in capsys.readouterr().err
