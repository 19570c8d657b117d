"""The command line, run in-process against a toy arch installed as a distribution."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mixedmap.cli import run
from mixedmap.testing.distributions import make_distribution

TOY = """
from mixedmap.testing.synthetic_arch import ToySpecialPlugin
_p = ToySpecialPlugin("clitoy")
mixedmap_arch_spec = _p.mixedmap_arch_spec
mixedmap_pte_special = _p.mixedmap_pte_special
mixedmap_pte_mkspecial = _p.mixedmap_pte_mkspecial
"""


@pytest.fixture(autouse=True)
def clitoy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    make_distribution(tmp_path / "d", "mixedmap-clitoy", {"clitoy_plugin": TOY}, {"clitoy": "clitoy_plugin"})
    monkeypatch.syspath_prepend(str(tmp_path / "d"))
    yield  # tests/conftest.py undoes the CLI's logging configuration after every test


def cli_json(capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    assert run([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_arches_lists_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    rec = cli_json(capsys, "arches")
    toy = next(a for a in rec["arches"] if a["name"] == "clitoy")  # type: ignore[index]
    assert toy["distribution"] == "mixedmap-clitoy"
    assert toy["special_bit"] == {"2.6.26": "0x200", "2.6.27": "0x200", "6.18": "0x200"}
    assert run(["arches"]) == 0
    assert "clitoy" in capsys.readouterr().out


def test_disable_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--disable-plugin", "clitoy", "arches", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert "clitoy" not in [a["name"] for a in rec["arches"]] and "clitoy" in rec["disabled"]


def test_pte_decode_and_encode_agree(capsys: pytest.CaptureFixture[str]) -> None:
    enc = cli_json(
        capsys, "pte", "encode", "--arch", "clitoy", "--pfn", "0x1234", "--prot", "rw", "--special"
    )
    assert enc["value"] == "0x0000000001234227"  # type: ignore[index]
    dec = cli_json(capsys, "pte", "decode", "--arch", "clitoy", enc["value"])  # type: ignore[index]
    assert dec["helpers"]["pte_pfn"] == "0x1234" and dec["helpers"]["pte_special"] is True  # type: ignore[index]
    assert "SPECIAL" in dec["set"] and dec["bytes"] == "27 42 23 01 00 00 00 00"  # type: ignore[index]


def test_walk_shows_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    rec = cli_json(capsys, "walk", "--arch", "clitoy", "--map", "0x40201000=0x77:r", "0x40201abc")
    assert [s["level"] for s in rec["steps"]] == ["pgd", "pmd", "pte"]  # type: ignore[index]
    assert [s["index"] for s in rec["steps"]] == [1, 1, 1]  # type: ignore[index]
    assert rec["pa"] == "0x77abc"  # type: ignore[index]


def test_walk_a_dumped_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixedmap import ArchRegistry, Machine

    m = Machine("clitoy", ram="32M", registry=ArchRegistry.load())
    pt = m.new_pagetable()
    pt.map(0x5000, 0x99)
    m.dump_physmem(tmp_path / "img")
    rec = cli_json(
        capsys, "walk", "--arch", "clitoy", "--image", str(tmp_path / "img"), "--root", hex(pt.root), "0x5010"
    )
    assert rec["pa"] == "0x99010"  # type: ignore[index]


def test_layout_names_every_bit(capsys: pytest.CaptureFixture[str]) -> None:
    rec = cli_json(capsys, "layout", "--arch", "clitoy")
    assert rec["bits"]["9"] == "SPECIAL" and rec["bits"]["0"] == "P" and rec["bits"]["12"] == "PFN"  # type: ignore[index]
    assert run(["layout", "--arch", "clitoy"]) == 0
    assert "SPECI" in capsys.readouterr().out


def test_errors_are_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pte", "decode", "--arch", "vax", "0x1"]) == 2
    err = capsys.readouterr().err
    assert "'vax' is not installed" in err and "clitoy" in err
    assert run(["pte", "decode", "--arch", "clitoy", "--kernel", "3.0", "0x1"]) == 2
    assert "unknown kernel profile '3.0'" in capsys.readouterr().err
    assert run(["pte", "encode", "--arch", "clitoy", "--pfn", "1", "--set", "NOPE"]) == 2
    assert "unknown bit 'NOPE'" in capsys.readouterr().err


def test_conformance_exit_status_follows_pytest(capsys: pytest.CaptureFixture[str]) -> None:
    """A run that selects no test is pytest's exit 5: the command must not report success."""
    assert run(["conformance", "--arch", "clitoy", "--", "-k", "no_such_test_anywhere"]) == 5
    assert run(["conformance", "--arch", "nosucharch"]) == 2
    assert "'nosucharch' is not installed" in capsys.readouterr().err


def test_profiles_rules_say_what_each_kernel_has() -> None:
    """``mixedmap profiles --rules``: every rule of mixedmap.rules, its release and exactly the
    profiles whose version has it (6.18 has the zero page, 2.6.27 filemap_xip, not the other way)."""
    import json

    from click.testing import CliRunner

    from mixedmap.cli import main as cli_main
    from mixedmap.rules import RULES

    res = CliRunner().invoke(cli_main.main, ["profiles", "--rules", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)}
    assert list(rows) == [r.name for r in RULES]
    assert rows["zero_page"]["profiles"] == ["6.18"] and rows["zero_page"]["since"] == "2.6.32"
    assert rows["filemap_xip"]["profiles"] == ["2.6.26", "2.6.27"]
    assert rows["filemap_xip"]["since"] == "2.6.26, removed in 4.0"
    text = CliRunner().invoke(cli_main.main, ["profiles", "--rules"], env={"COLUMNS": "80"}).output
    assert "pin_user_pages" in text and "mm/gup.c" in text
