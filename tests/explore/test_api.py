"""The explorer's JSON API, without a browser: each answer checked against the library."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the explorer needs its extra: pip install 'mixedmap[explore]'")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx: pip install httpx")

with warnings.catch_warnings():
    # Starlette 1.x suggests httpx2 for its TestClient; httpx is what it documents and runs on.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from mixedmap.explore import api
from mixedmap.explore.app import create_app
from mixedmap.explore.html import write_run_html
from mixedmap.machine import Machine
from mixedmap.plugin.registry import default_registry

S6 = "s6-private-pfnmap-remap"


def _have(arch: str) -> None:
    if arch not in default_registry().names:
        pytest.skip(f"arch {arch} is not installed (pip install ./plugins/...)")


@pytest.fixture
def client() -> TestClient:
    _have("x86_64")
    return TestClient(create_app("x86_64", "2.6.27"))


def test_page_and_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_arches_lists_installed_and_scenarios(client: TestClient) -> None:
    data = client.get("/api/arches").json()
    names = [a["name"] for a in data["arches"]]
    assert names == list(default_registry().names)
    assert S6 in data["scenarios"]


@pytest.mark.parametrize("arch", ["x86_64", "s390x", "ppc64"])
def test_walk_matches_the_library(arch: str) -> None:
    _have(arch)
    client = TestClient(create_app(arch))
    va, pfn = 0x400000, 0x1234
    r = client.post("/api/map", json={"va": hex(va), "pfn": hex(pfn), "prot": "rw", "special": True})
    assert r.status_code == 200, r.text
    rec = client.get("/api/walk", params={"va": hex(va + 8)}).json()
    # The same machine, built as `mixedmap walk` builds it, gives the same facts.
    m = Machine(arch, ram=api.RAM)
    pt = m.new_pagetable()
    pt.map(va, pfn=pfn, prot="rw", special=True)
    steps = pt.walk(va + 8)
    leaf = pt.lookup(va + 8)
    assert leaf is not None
    assert rec["pa"] == f"{leaf.pa:#x}" == f"{(pfn << m.fmt.page_shift) + 8:#x}"
    assert [s["value"] for s in rec["steps"]] == [f"{s.value:#018x}" for s in steps]
    assert [s["index"] for s in rec["steps"]] == [s.index for s in steps]
    last = rec["steps"][-1]
    # bytes as stored: the arch's byte order of the value
    assert bytes.fromhex(last["bytes"]) == steps[-1].value.to_bytes(8, m.fmt.byteorder)
    assert m.fmt.special_mask is None or last["helpers"]["pte_special"] is True
    assert [s["next_table_pa"] for s in rec["steps"][:-1]] == [f"{s.table_pa:#x}" for s in steps[1:]]


def test_a_table_entry_shows_no_flag_inside_its_address() -> None:
    """x86_64: a PMD pointing to a table at 0x3000 has bit 12 set as an address bit; PAT_LARGE
    (bit 12 of a 2 MiB leaf) is not lit there, while a 2 MiB leaf keeps it as a flag."""
    _have("x86_64")
    m = Machine("x86_64", ram=api.RAM)
    pt = m.new_pagetable()
    va = 0x400000
    pt.map(va, pfn=0x1234, prot="rw")
    rec = api.walk(pt, m.mem.read, va)
    pmd = next(s for s in rec["steps"] if s["level"] == "pmd")
    table_pa = int(pmd["next_table_pa"], 16)
    assert pmd["kind"] == "table" and "PAT_LARGE" not in pmd["flags"]
    assert "PAT_LARGE" not in {f["name"] for f in pmd["fields"]}
    (addr,) = [f for f in pmd["fields"] if f["name"] == "ADDR"]
    assert int(addr["value"], 16) << 12 == table_pa
    fields = api.fields_of(m.fmt, "pmd")
    pat = next(f for f in fields if f.name == "PAT_LARGE")
    leaf = api.entry_record(m.fmt, "pmd", pat.mask | 1 | 0x80 | (0x200 << 12), "leaf")
    assert any(f["name"] == "PAT_LARGE" and f["set"] for f in leaf["fields"])


def test_layout_matches_pte_bits(client: TestClient) -> None:
    rec = client.get("/api/layout").json()
    fmt = Machine("x86_64", ram="16M").fmt
    assert [f["name"] for f in rec["fields"]] == [f.name for f in fmt.pte_bits]
    assert client.get("/api/layout", params={"level": "nope"}).status_code == 400


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/map", {"va": "0x800000000000", "pfn": "0x1"}, "va"),
        ("/api/map", {"va": "0x1000", "pfn": hex(1 << 60)}, "pfn"),
        ("/api/map", {"va": "0x1000", "pfn": "zz"}, "pfn"),
        ("/api/map", {"va": "0x1000", "pfn": "0x1", "prot": "q"}, "prot"),
        ("/api/configure", {"arch": "vax"}, "arch"),
        ("/api/configure", {"arch": "x86_64", "kernel": "1.0"}, "kernel"),
        ("/api/scenario/run", {"text": "[scenario]\nname = 1\n"}, "scenario"),
        ("/api/scenario/run", {"name": "no-such-scenario"}, "scenario"),
        ("/api/scenario/run", {"name": "/etc/passwd"}, "scenario"),
        ("/api/scenario/run", {"name": "s6-private-pfnmap-remap", "arch": "vax"}, "arch"),
        ("/api/scenario/diff", {"name": "s6-private-pfnmap-remap", "arch": "vax"}, "arch"),
        ("/api/map", {"va": "0x400000", "pfn": "0x99"}, "va"),
        ("/api/map", {"va": "0x400001", "pfn": "0x99"}, "va"),
        ("/api/map", {"pfn": "0x99"}, "va"),
        ("/api/configure", {"arch": "x86_64", "mode": "la57", "kernel": "2.6.27"}, "mode"),
    ],
)
def test_bad_input_is_4xx_naming_the_culprit_and_changes_nothing(
    client: TestClient, path: str, body: dict[str, str], field: str
) -> None:
    client.post("/api/map", json={"va": "0x400000", "pfn": "0x1234"})
    before = client.get("/api/state").json()
    r = client.post(path, json=body)
    assert 400 <= r.status_code < 500
    assert r.json()["field"] == field and r.json()["error"]
    assert client.get("/api/state").json() == before
    assert client.get("/api/walk", params={"va": "0x400000"}).json()["pa"] == hex(0x1234 << 12)


def test_walk_out_of_range_va(client: TestClient) -> None:
    r = client.get("/api/walk", params={"va": hex(1 << 63)})
    assert r.status_code == 400 and r.json()["field"] == "va"
    assert "outside the address space" in r.json()["error"]


def test_malformed_body(client: TestClient) -> None:
    r = client.post("/api/map", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"


def test_scenario_steps_match_the_run(client: TestClient) -> None:
    from mixedmap.scenario.load import load
    from mixedmap.scenario.run import run_one

    rec = client.post("/api/scenario/run", json={"name": S6, "arch": "x86_64", "kernel": "2.6.27"}).json()
    _, scen = load(S6)
    whole = run_one(scen, "x86_64", "2.6.27")
    assert [s["outcome"] for s in rec["steps"]] == [s.outcome for s in whole.steps]
    cow = next(s for s in rec["steps"] if s["op"] == "write")
    assert [e["event"] for e in cow["events"]] == ["cow"]
    after = rec["steps"][cow["index"] + 1]  # the inspect after the COW: refcount 1, mapcount 1
    row = next(r for r in after["processes"]["a"]["ptes"] if r["va"] == cow["events"][0]["addr"])
    assert (row["normal"], row["special"], row["writable"]) == (True, False, True)
    assert after["outcome"]["refcount"] == row["refcount"] == 1
    assert after["processes"]["a"]["rss"]["anon"] == 1
    fork = next(s for s in rec["steps"] if s["op"] == "fork")
    child = rec["steps"][fork["index"] + 1]
    assert child["outcome"]["refcount"] == child["pages"][row["pfn"]]["refcount"] == 2


def test_kernel_diff(client: TestClient) -> None:
    rec = client.post("/api/scenario/diff", json={"name": S6, "arch": "x86_64"}).json()
    assert rec["kernels"] == ["2.6.26", "2.6.27", "6.18"]
    keys = {d["key"] for d in rec["arches"][0]["differences"]}
    assert "special" in keys


def test_write_run_html_is_self_contained(tmp_path: Path) -> None:
    _have("x86_64")
    out = write_run_html(S6, "x86_64", "2.6.27", tmp_path / "run.html")
    text = out.read_text()
    assert "window.MIXEDMAP_OFFLINE" in text and "/static/" not in text
    assert "http://" not in text and "https://" not in text


def test_cli_explore_serves_on_loopback_and_prints_its_url() -> None:
    import json
    import subprocess
    import sys
    import urllib.request

    _have("x86_64")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from mixedmap.cli.main import entry; entry()", "explore", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("mixedmap explorer: http://127.0.0.1:"), line + (
            proc.stderr.read() if proc.stderr else ""
        )
        url = line.split()[2]
        with urllib.request.urlopen(url + "api/state", timeout=10) as r:
            assert json.load(r)["arch"] == "x86_64"
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_explore_unknown_arch_is_a_usage_error() -> None:
    from click.testing import CliRunner

    from mixedmap.cli.main import main

    res = CliRunner().invoke(main, ["explore", "--arch", "vax"])
    assert res.exit_code == 2 and "vax" in res.output
