"""unicorn's s390x DAT (LRAG, a load and a store per VA) over mixedmap's s390 tables.

Each test changes one thing the CPU must notice: a PFN bit, the page-protection bit either
way, and checks that the 1 MiB leaves unicorn cannot walk (no EDAT-1) are counted apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mixedmap.cli.main import run as cli
from mixedmap.verify.driver import build, case_specs, compare, run
from mixedmap.verify.unicorn_s390x import UnicornS390xWalker
from tests.conftest import REGISTRY

pytest.importorskip("unicorn", reason="unicorn is not installed (pip install '.[verify]')")

_PAGE_PROTECT = 0x200


@pytest.mark.parametrize(
    ("kernel", "mode"), [("6.18", "region3"), ("2.6.27", "segment"), ("6.18", "region1")]
)
def test_corrupted_pfn_is_where_lrag_goes(kernel: str, mode: str, tmp_path: Path) -> None:
    specs = case_specs(["s390x"], [kernel], [mode], registry=REGISTRY)[:1]
    rep = run(specs, tmp_path, pages=64, walkers=[UnicornS390xWalker()], registry=REGISTRY, corrupt=1)
    (cell,) = rep.cells
    (bad,) = cell.disagreements
    assert bad.expected is not None and bad.said.pa == bad.expected ^ 0x1000
    assert f"VA {bad.va:#x}" in bad.describe() and "pte[" in bad.describe()
    assert cell.agreed == cell.total - 1


@pytest.mark.parametrize(
    ("kernel", "flip", "said"),
    [
        # 6.18: a clean shared writable PTE keeps _PAGE_PROTECT until pte_mkdirty
        ("6.18", "clear", "store allowed, expected a protection exception"),
        # 2.6.27: PAGE_SHARED is _PAGE_TYPE_RW, hardware-writable from the start
        ("2.6.27", "set", "store raised a protection exception, expected it allowed"),
    ],
)
def test_page_protection_bit_is_checked_by_a_store(kernel: str, flip: str, said: str, tmp_path: Path) -> None:
    spec = case_specs(["s390x"], [kernel], ["region3"], registry=REGISTRY)[0]
    built = build(spec, 64, 0, tmp_path, REGISTRY)
    j = built.prot.index("rw/shared")
    va = int(built.vas[j])
    leaf = built.pt.lookup(va)
    assert leaf is not None
    before = compare(built, UnicornS390xWalker())
    assert not before.disagreements
    value = leaf.value & ~_PAGE_PROTECT if flip == "clear" else leaf.value | _PAGE_PROTECT
    assert value != leaf.value
    built.pt.write_pte(leaf.entry_pa, value)
    cell = compare(built, UnicornS390xWalker())
    bad = [d for d in cell.disagreements if d.va == va]
    assert bad and said in bad[0].said.problem and bad[0].said.pa == bad[0].expected
    assert all(d.va // 4096 == va // 4096 for d in cell.disagreements)


def test_one_mib_leaves_are_counted_apart_without_edat1(tmp_path: Path) -> None:
    spec = next(
        s for s in case_specs(["s390x"], ["6.18"], ["region3"], registry=REGISTRY) if "edat1" in s.label
    )
    built = build(spec, 64, 0, tmp_path, REGISTRY)
    w = UnicornS390xWalker()
    cell = compare(built, w)
    assert not w.edat1, "unicorn now reports EDAT-1 (STFLE facility 8): its 1 MiB leaves are walked"
    large = int((built.size[: built.n_mapped] == 1 << 20).sum())
    rules = dict(cell.rules)
    no_edat = [n for r, n in rules.items() if r.startswith("not walkable by unicorn: no EDAT-1")]
    assert large >= 12 and no_edat == [large]
    assert cell.agreed == cell.total == len(built.vas) - sum(rules.values())


def test_cli_lists_unicorn_s390x_and_its_no_edat1_pages(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli(["verify", "-a", "s390x", "-k", "6.18", "-m", "region3", "-n", "64", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"]
    cells = {(c["format"], c["walker"]): c for c in out["cells"]}
    for fmt in ("s390x/6.18/region3", "s390x/6.18/region3+edat1"):
        c = cells[(fmt, "unicorn s390x DAT")]
        assert c["skipped"] is None and c["agreed"] == c["total"] > 64
    edat = cells[("s390x/6.18/region3+edat1", "unicorn s390x DAT")]["walker_rules"]
    assert any(r.startswith("not walkable by unicorn: no EDAT-1") for r in edat)
    assert cells[("s390x/6.18/region3", "unicorn x86_64 CPL3")]["skipped"]
