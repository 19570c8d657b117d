"""How an arch the core does not ship gets external walkers: a VerifyTarget entry point.

Without one, its cases are reported (every walker "not walked", with the hint) and the
other arches still verify; with one, the vmcore carries its ELF machine, direct map and
VMCOREINFO keys, and the walkers it brings run on its cases.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest

from mixedmap.machine import Machine
from mixedmap.pgtable import PageTable
from mixedmap.verify import targets
from mixedmap.verify.base import Answer, Built
from mixedmap.verify.driver import all_walkers, case_specs, run
from mixedmap.verify.targets import ENTRY_POINT_GROUP, VerifyTarget
from tests.conftest import REGISTRY


class ReadBackWalker:
    """Attaches to the vmcore's bytes (read here, by PT_LOAD) and walks with mixedmap."""

    name = "toy read-back"

    def missing(self) -> str | None:
        return None

    def cannot_walk(self, machine: Machine) -> str | None:
        return None if machine.arch == "toyarch" else "toyarch only"

    def rule(self, built: Built, va: int, leaf_entry: int, level: int) -> str | None:
        return None

    def translate(self, built: Built, vas: Sequence[int]) -> list[Answer]:
        data = built.vmcore.read_bytes()
        mem = type(built.machine.mem)()
        e = "<" if data[5] == 1 else ">"
        phoff, phnum = struct.unpack_from(e + "Q", data, 32)[0], struct.unpack_from(e + "H", data, 56)[0]
        for k in range(phnum):
            ptype, _f, off, _va, paddr, filesz = struct.unpack_from(e + "IIQQQQ", data, phoff + 56 * k)
            if ptype == 1:
                mem.write(paddr, data[off : off + filesz])
        pt = PageTable.attach(mem, built.machine.mode, built.pt.root)
        out = []
        for va in vas:
            leaf = pt.lookup(va)
            out.append(Answer(pa=None if leaf is None else leaf.pa))
        return out


@attrs.frozen
class FakeEntryPoint:
    name: str
    value: str
    obj: Any

    def load(self) -> Any:
        if isinstance(self.obj, Exception):
            raise self.obj
        return self.obj


@pytest.fixture
def declared(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[FakeEntryPoint]]:
    eps: list[FakeEntryPoint] = []
    monkeypatch.setattr(targets, "_entry_points", lambda: eps)
    targets.plugin_targets.cache_clear()
    yield eps
    targets.plugin_targets.cache_clear()


def test_arch_without_target_is_reported_not_fatal(declared: list[FakeEntryPoint], tmp_path: Path) -> None:
    specs = case_specs(["toyarch", "x86_64"], ["6.18"], registry=REGISTRY)
    rep = run(specs, tmp_path, pages=32, registry=REGISTRY, walkers=all_walkers()[:1])
    toy = [c for c in rep.cells if c.case.startswith("toyarch")]
    assert toy and all(c.skipped and "no vmcore" in c.skipped and ENTRY_POINT_GROUP in c.skipped for c in toy)
    assert not list(tmp_path.glob("toyarch*"))
    assert any(c.case.startswith("x86_64") and c.skipped is None for c in rep.cells) or any(
        c.case.startswith("x86_64") and "not installed" in (c.skipped or "") for c in rep.cells
    )


def test_declared_target_shapes_the_vmcore_and_brings_its_walker(
    declared: list[FakeEntryPoint], tmp_path: Path
) -> None:
    t = VerifyTarget(elf_machine=0x9999, page_offset={"": 0x1000_0000_0000}, vmcoreinfo={"NUMBER(TOY)": "7"},
                     walkers=(ReadBackWalker(),))  # fmt: skip
    declared.append(FakeEntryPoint("toyarch", "mixedmap_toy.verify:TARGET", lambda: t))
    walkers = all_walkers()
    assert walkers[-1] is t.walkers[0]
    specs = case_specs(["toyarch"], ["6.18"], registry=REGISTRY)
    rep = run(specs, tmp_path, pages=64, registry=REGISTRY, walkers=walkers)
    cells = {c.walker: c for c in rep.cells}
    cell = cells["toy read-back"]
    # the toy's PROT_NONE large leaves are not present to its own lookup (no rule for that)
    odd = [d for d in cell.disagreements if not (d.prot == "none" and d.size > 4096 and d.said.pa is None)]
    assert not odd and cell.agreed == cell.total - len(cell.disagreements) > 64
    assert "VerifyTarget.drgn is False" in (cells["drgn follow_phys"].skipped or "drgn follow_phys")
    (core,) = tmp_path.glob("toyarch*.vmcore")
    data = core.read_bytes()
    e = "<" if data[5] == 1 else ">"
    assert struct.unpack_from(e + "H", data, 18)[0] == 0x9999
    assert b"NUMBER(TOY)=7\n" in data
    phoff = struct.unpack_from(e + "Q", data, 32)[0]
    _t, _f, _o, vaddr, paddr = struct.unpack_from(e + "IIQQQ", data, phoff + 56)
    assert vaddr == paddr + 0x1000_0000_0000
    # corrupting a PTE rewrites the vmcore the same way, and the plugin's walker sees it
    rep = run(specs, tmp_path, pages=64, registry=REGISTRY, walkers=[t.walkers[0]], corrupt=1)
    assert len(rep.cells[0].disagreements) == len(cell.disagreements) + 1


def test_broken_declaration_is_named(declared: list[FakeEntryPoint]) -> None:
    declared.append(FakeEntryPoint("toyarch", "mixedmap_toy.verify:TARGET", ImportError("no module")))
    declared.append(FakeEntryPoint("toyspecial", "mixedmap_toy2:TARGET", 42))
    why = targets.target("toyarch")
    assert isinstance(why, str) and "mixedmap_toy.verify:TARGET" in why and "failed to load" in why
    why = targets.target("toyspecial")
    assert isinstance(why, str) and "gave int, not a VerifyTarget" in why
    assert isinstance(targets.target("x86_64"), VerifyTarget)
