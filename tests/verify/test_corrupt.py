"""A deliberately corrupted entry makes ``mixedmap verify`` report a disagreement."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmap.cli.main import run as cli
from mixedmap.verify.drgn_walker import DrgnWalker
from mixedmap.verify.driver import case_specs, run
from tests.conftest import REGISTRY

pytest.importorskip("drgn", reason="drgn is not installed (pip install 'mixedmap[verify]')")


@pytest.mark.parametrize("arch", ["x86_64", "s390x"])
def test_corrupted_pte_is_reported_with_va_and_entries(arch: str, tmp_path: Path) -> None:
    specs = case_specs([arch], ["6.18"], registry=REGISTRY)[:1]
    rep = run(specs, tmp_path, pages=100, walkers=[DrgnWalker()], registry=REGISTRY, corrupt=1)
    assert not rep.ok
    (cell,) = rep.cells
    (bad,) = cell.disagreements
    text = bad.describe()
    assert f"VA {bad.va:#x}" in text and bad.expected is not None and f"{bad.expected:#x}" in text
    assert bad.said.pa == bad.expected ^ 0x1000  # the flipped PFN bit
    assert len(bad.entries) == len(
        REGISTRY.bind(arch).mode(specs[0].profile, **dict(specs[0].options)).fmt.levels
    )
    assert all("=0x" in e for e in bad.entries)


def test_cli_reports_agreement_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["verify", "-a", "x86_64", "-k", "6.18", "-m", "4level", "-n", "64", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"]
    cells = {c["walker"]: c for c in out["cells"]}
    assert cells["drgn follow_phys"]["agreed"] == cells["drgn follow_phys"]["total"] > 64
    assert cells["unicorn x86_64 CPL3"]["agreed"] == cells["unicorn x86_64 CPL3"]["total"] > 64
    assert out["not_built"] == {}  # every walker the issue names is built


def test_cli_table_lists_formats_without_a_walker(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["verify", "-a", "riscv64", "-n", "32"])
    out = capsys.readouterr().out
    assert code == 0
    assert "No external walker: riscv64/6.18/sv39" in out
    assert "RISC-V" in out


def test_unicorn_reports_a_corrupted_pte(tmp_path: Path) -> None:
    pytest.importorskip("unicorn", reason="unicorn is not installed (pip install 'mixedmap[verify]')")
    from mixedmap.verify.unicorn_walker import UnicornWalker

    specs = case_specs(["x86_64"], ["6.18"], ["4level"], registry=REGISTRY)
    rep = run(specs, tmp_path, pages=64, walkers=[UnicornWalker()], registry=REGISTRY, corrupt=1)
    (cell,) = rep.cells
    (bad,) = cell.disagreements
    # the CPU went to the neighbouring frame: its tag (a frame of the same run), or a fault
    # on physical memory unicorn does not have
    assert bad.expected is not None
    assert bad.said.pa == bad.expected ^ 0x1000 or (bad.said.pa is None and "load faulted" in bad.said.detail)
    assert f"VA {bad.va:#x}" in bad.describe() and "pte[" in bad.describe()


def test_unicorn_checks_permissions(tmp_path: Path) -> None:
    """A PTE made writable behind the model's back: the PA agrees, the store must not."""
    pytest.importorskip("unicorn", reason="unicorn is not installed (pip install 'mixedmap[verify]')")
    from mixedmap.verify.driver import build, compare
    from mixedmap.verify.unicorn_walker import UnicornWalker

    spec = case_specs(["x86_64"], ["6.18"], ["4level"], registry=REGISTRY)[0]
    built = build(spec, 64, 0, tmp_path, REGISTRY)
    j = built.prot.index("r")
    leaf = built.pt.lookup(int(built.vas[j]))
    assert leaf is not None
    built.pt.write_pte(leaf.entry_pa, leaf.value | 0x2)  # _PAGE_RW
    cell = compare(built, UnicornWalker())
    bad = [d for d in cell.disagreements if d.va == int(built.vas[j])]
    assert bad and "store allowed, expected a fault" in bad[0].said.problem
