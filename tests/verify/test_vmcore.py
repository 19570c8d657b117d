"""``NAME.vmcore`` from ``dump_machine``: drgn opens it without vmlinux and agrees with the
manifest; bad files give errors naming the file and what is wrong."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from mixedmap.dump import DumpFiles, dump_machine, load_manifest, load_raw, page_arrays
from mixedmap.verify.base import Built
from mixedmap.verify.drgn_walker import DrgnWalker
from mixedmap.vmcore import VmcoreError, direct_map_base, read_vmcore
from tests.conftest import CASES, Case
from tests.test_dump import build

REAL = [c for c in CASES if not c.arch.startswith("toy")]
# one case per (arch, mode), newest profile
ONE = list({(c.arch, c.mode.name, dict(c.mode.options).get("edat1")): c for c in REAL}.values())


def dumped(case: Case, tmp_path: Path) -> DumpFiles:
    return dump_machine(build(case).m, tmp_path, "m")


@pytest.mark.parametrize("case", ONE, ids=[c.id for c in ONE])
def test_vmcore_matches_raw_and_manifest(case: Case, tmp_path: Path) -> None:
    files = dumped(case, tmp_path)
    assert files.vmcore is not None and files.vmcore.exists()
    man = load_manifest(files.manifest)
    assert man["files"]["vmcore"] == files.vmcore.name == "m.vmcore"
    core = read_vmcore(files.vmcore, case.arch)
    assert core.vmcoreinfo["PAGESIZE"] == str(man["page_size"])
    roots = core.vmcoreinfo["MIXEDMAP_ROOTS"].split(",")
    assert roots == [mm["root"][2:] for mm in man["mms"]]
    raw = load_raw(files.raw)
    assert sorted(a for a, b in raw.blocks() if b.any()) == sorted(a for a, b in core.mem.blocks() if b.any())
    # sparse on disk: the file's blocks are far fewer than its length
    assert files.vmcore.stat().st_blocks * 512 < files.vmcore.stat().st_size


@pytest.mark.parametrize("case", ONE, ids=[c.id for c in ONE])
def test_drgn_opens_vmcore_and_agrees_with_manifest(case: Case, tmp_path: Path) -> None:
    drgn = pytest.importorskip("drgn", reason="drgn is not installed (pip install 'mixedmap[verify]')")
    sc = build(case)
    files = dump_machine(sc.m, tmp_path, "m")
    assert files.vmcore is not None
    prog = drgn.Program()
    prog.set_core_dump(str(files.vmcore))
    assert prog.flags & drgn.ProgramFlags.IS_LINUX_KERNEL
    man = load_manifest(files.manifest)
    # physical memory: drgn reads the same bytes as the raw image holds
    page = next(a for a, b in sc.m.mem.blocks() if b.any())
    assert prog.read(page, 4096, True) == sc.m.mem.read(page, 4096)
    w = DrgnWalker()
    if w.cannot_walk(sc.m):
        pytest.skip(f"drgn opens the vmcore but does not walk {case.id}: {w.cannot_walk(sc.m)}")
    checked = 0
    for rec in man["mms"]:
        mm = next(x for x in sc.m.mms if x.id == rec["id"])
        vas_all: list[int] = []
        pas_all: list[int] = []
        for v in rec["vmas"]:
            vas, pas, _ = page_arrays(v)
            vas_all += vas.tolist()
            pas_all += pas.tolist()
        built = Built(
            label=case.id, machine=sc.m, pt=mm.pt, vmcore=files.vmcore, vas=np.array(vas_all, dtype=np.uint64),
            pas=np.array(pas_all, dtype=np.int64), prot=("?",) * len(vas_all),
            special=np.zeros(len(vas_all), dtype=bool), size=np.zeros(len(vas_all), dtype=np.uint64),
            n_mapped=len(vas_all),
        )  # fmt: skip
        answers = w.translate(built, vas_all)
        levels = {lv.name: i for i, lv in enumerate(sc.m.fmt.levels)}
        for va, pa, ans in zip(vas_all, pas_all, answers, strict=True):
            if ans.pa is None:
                leaf = mm.pt.lookup(va)
                assert leaf is not None and w.rule(built, va, leaf.value, levels[leaf.level]), (hex(va), ans)
                continue
            assert ans.pa == pa, (hex(va), hex(pa), ans)
            checked += 1
    assert checked > 10
    base = direct_map_base(sc.m.arch, sc.m.fmt.mode)
    # swapper_pg_dir is the first mm's own root table: no PA-0 stand-in is needed, since the
    # arch's boot reservations keep every table off PA 0 (drgn refuses a swapper_pg_dir of 0)
    swapper = int(read_vmcore(files.vmcore).vmcoreinfo["SYMBOL(swapper_pg_dir)"], 16)
    assert swapper == base + sc.m.mms[0].pt.root_pa != 0, (hex(swapper), [str(r) for r in sc.m.reserved])


def test_truncated_vmcore(tmp_path: Path) -> None:
    files = dumped(ONE[0], tmp_path)
    assert files.vmcore is not None
    cut = tmp_path / "cut.vmcore"
    with open(files.vmcore, "rb") as src, open(cut, "wb") as dst:
        dst.write(src.read(4096))
    with pytest.raises(VmcoreError, match=r"cut\.vmcore.*truncated"):
        read_vmcore(cut)
    (tmp_path / "tiny.vmcore").write_bytes(b"\x7fELF\x02")
    with pytest.raises(VmcoreError, match=r"tiny\.vmcore.*truncated"):
        read_vmcore(tmp_path / "tiny.vmcore")
    with pytest.raises(VmcoreError, match=r"cut\.vmcore.*truncated"):
        load_raw(cut)


def test_foreign_and_wrong_arch_files(tmp_path: Path) -> None:
    files = dumped(ONE[0], tmp_path)
    with pytest.raises(VmcoreError, match=r"m\.raw.*not an ELF file"):
        read_vmcore(files.raw)
    elf = Path(shutil.which("python3") or "/bin/sh").resolve()
    with pytest.raises(VmcoreError, match=r"not a core"):
        read_vmcore(elf)
    other = next(c for c in ONE if c.arch != ONE[0].arch)
    files2 = dump_machine(build(other).m, tmp_path / "o", "o")
    assert files2.vmcore is not None
    with pytest.raises(VmcoreError, match=rf"o\.vmcore.*vmcore of {other.arch}, not of {ONE[0].arch}"):
        read_vmcore(files2.vmcore, ONE[0].arch)
    with pytest.raises(VmcoreError, match=r"cannot read vmcore .*missing"):
        read_vmcore(tmp_path / "missing.vmcore")
