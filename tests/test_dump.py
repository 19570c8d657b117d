"""Memory-image export (issue 6): the raw image, the manifest and the LiME file of a Machine.

Every arch case builds the same scenario (anonymous pages, a PROT_NONE range, a private XIP
mapping read over a hole, a private XIP mapping COWed by a write, fork, a COW in the child
and one in the parent, an exited mm) and dumps it. The manifest is checked against the live
machine (``range_ptes``/``translate``), the raw image re-attached with ``PageTable.attach``
must translate every listed VA to its PA, the bytes at each PA must be what the process
reads there, and the LiME headers are parsed here independently of mixedmap.dump.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import attrs
import numpy as np
import pytest

from mixedmap import VM, Machine, PageTable, RangeDevice, XipFS
from mixedmap.dump import (
    DumpError,
    DumpFiles,
    DumpMismatch,
    check_roundtrip,
    dump_machine,
    load_manifest,
    load_raw,
    mapped_pages,
    page_arrays,
)
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, mnemonics
from mixedmap.phys.mem import PhysMem
from mixedmap.rules import FILEMAP_XIP
from mixedmap.vmcore import ELF_MACHINE
from tests.conftest import CASES, REGISTRY, Case

ANON = MAP_PRIVATE | MAP_ANONYMOUS
#: Section aligned on every arch (s390 sections are 256 MiB): the device's frames share no
#: memory section with RAM, so they have no struct page -- except under 6.18, where a file is
#: mapped only through fs-dax, which needs ZONE_DEVICE struct pages (see :func:`dev_memmap`).
DEV_START = 256 << 20
DEV_SIZE = 1 << 20
#: A 2 MiB-aligned VA for the x86 "full PTE table" scenario (one table maps 2 MiB there).
TABLE_VA = 0x4000_0000

LIME = struct.Struct("<IIQQQ")  # LiME doc/README.md: magic, version, s_addr, e_addr, reserved[8]


def dev_memmap(m: Machine) -> bool:
    """Whether the XIP device has struct pages: only where DAX replaced filemap_xip (6.18)."""
    return not FILEMAP_XIP.applies(m.profile)


def hx(v: int) -> str:
    return f"{v:#018x}"


def pattern(nbytes: int, seed: int) -> bytes:
    """Deterministic bytes, never zero (a page that reads back as zeros is visible)."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size=nbytes, dtype=np.uint8).tobytes()


@attrs.define
class Scenario:
    case: Case
    m: Machine
    parent: MM
    child: MM
    #: VA -> bytes of pages a process cannot read (PROT_NONE; the child inherits them).
    hidden: dict[int, bytes]


def build(case: Case, *, full_tables: bool = False) -> Scenario:
    """The shared scenario; ``full_tables`` adds, at TABLE_VA, one PTE table whose 512 entries
    all map the XIP sparse page and, next to it, one where a single entry is left empty."""
    m = case.machine(ram="64M")
    ps = m.page_size
    m.add_region("xipdev", DEV_START, DEV_SIZE, memmap=dev_memmap(m))
    dev = RangeDevice(m, "xipdev", DEV_START, DEV_SIZE, read_only=False, kaddr_base=DEV_START)
    fs = XipFS(dev)
    image = bytearray(pattern(4 * ps, seed=7))
    image[2 * ps : 3 * ps] = bytes(ps)
    fs.create("img", data=bytes(image), holes=[2])

    parent = m.new_mm()
    anon = parent.mmap(6 * ps, "rw", ANON)
    for i in range(6):
        parent.write(anon + i * ps, pattern(ps, seed=100 + i))
    xro = parent.mmap(4 * ps, "r", MAP_PRIVATE, file=fs.open("img"))
    for i in range(4):
        assert parent.read(xro + i * ps, 16) == bytes(image[i * ps : i * ps + 16])  # page 2: sparse page
    xcow = parent.mmap(4 * ps, "rw", MAP_PRIVATE, file=fs.open("img"))
    parent.read(xcow, 1)
    parent.write(xcow + ps + 8, b"xip cow")  # COW of an XIP page into an anonymous one
    hidden_va = parent.mmap(2 * ps, "rw", ANON)
    hidden: dict[int, bytes] = {}
    for i in range(2):
        data = pattern(ps, seed=200 + i)
        parent.write(hidden_va + i * ps, data)
        hidden[hidden_va + i * ps] = data
    parent.mprotect(hidden_va, 2 * ps, "none")
    parent.mmap(8 * ps, "rw", ANON)  # never touched: a VMA without pages
    if full_tables:
        entries = m.fmt.levels[-1].entries
        fs.create("holes", size=2 * entries * ps)
        va = parent.mmap(2 * entries * ps, "r", MAP_PRIVATE | MAP_FIXED, file=fs.open("holes"), addr=TABLE_VA)
        for i in range(2 * entries - 1):  # the last entry of the second table stays empty
            parent.read(va + i * ps, 1)
    child = parent.fork()
    child.write(anon + ps, b"child COW")
    parent.write(anon + 2 * ps, b"parent COW")
    gone = m.new_mm()
    gone.write(gone.mmap(ps, "rw", ANON), b"exited")
    gone.exit()
    return Scenario(case=case, m=m, parent=parent, child=child, hidden=hidden)


X86 = [c for c in CASES if c.arch == "x86_64"]


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def dumped(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Scenario, DumpFiles]:
    sc = build(request.param)
    return sc, dump_machine(sc.m, tmp_path / "dump", "image")


@pytest.fixture(params=X86, ids=[c.id for c in X86])
def dumped_x86(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[Scenario, DumpFiles]:
    sc = build(request.param)
    return sc, dump_machine(sc.m, tmp_path / "dump", "image")


def read_file(path: Path, offset: int, size: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return fh.read(size)


# -- the manifest -------------------------------------------------------------------------------
def test_manifest_describes_the_machine(dumped: tuple[Scenario, DumpFiles]) -> None:
    sc, files = dumped
    m, tag = sc.m, sc.case.id
    man = load_manifest(files.manifest)
    assert (man["format"], man["version"], man["name"]) == ("mixedmap-dump", 1, "image"), tag
    assert (man["arch"], man["kernel"]) == (m.arch, sc.case.mode.profile), tag
    assert man["mode"] == {"name": sc.case.mode.name, "options": dict(sc.case.mode.options)}, tag
    assert (man["page_size"], man["page_shift"]) == (m.page_size, m.fmt.page_shift), tag
    assert (man["byteorder"], man["root_name"]) == (m.fmt.byteorder, m.fmt.root_name), tag
    assert [lv["name"] for lv in man["levels"]] == [lv.name for lv in m.fmt.levels], tag
    assert man["regions"] == [
        {"name": "System RAM", "kind": "ram", "start": "0x0", "size": "0x4000000", "memmap": True, "owner": ""},
        {"name": "xipdev", "kind": "device", "start": hex(DEV_START), "size": hex(DEV_SIZE), "memmap": dev_memmap(m), "owner": ""},
    ], tag  # fmt: skip
    declared = m.mode.mode.memory.reserved  # RAM at 0: every boot reservation, where declared
    assert man["reserved"] == [
        {"name": r.name, "start": hex(r.start), "size": hex(r.size), "kernel_ref": r.kernel_ref}
        for r in declared
    ], tag
    assert int(man["raw_size"], 16) == DEV_START + DEV_SIZE == files.raw.stat().st_size, tag
    lime = "image.lime" if m.arch == "x86_64" else None
    vmcore = {"vmcore": "image.vmcore"} if m.arch in ELF_MACHINE else {}  # needs an ELF machine
    assert man["files"] == {"raw": "image.raw", "lime": lime, **vmcore}, tag
    assert (files.lime is not None) == (m.arch == "x86_64") and files.raw.name == "image.raw", tag
    written = {p.name for p in files.directory.iterdir()}
    assert written == {"image.json", *(f for f in man["files"].values() if f)}, tag  # no temporary left

    live = sorted(m.mms, key=lambda x: x.id)
    assert [mm["id"] for mm in man["mms"]] == [x.id for x in live] == [sc.parent.id, sc.child.id], tag
    total = 0
    for rec, mm in zip(man["mms"], live, strict=True):
        assert rec["root"] == hex(mm.pt.root) and rec["root_pa"] == hex(mm.pt.root_pa), tag
        assert len(rec["vmas"]) == len(mm.vmas), tag
        for v, vma in zip(rec["vmas"], mm.vmas, strict=True):
            where = f"{tag} mm {mm.id} VMA {vma.describe()}"
            assert (v["start"], v["end"], v["flags"]) == (hex(vma.start), hex(vma.end), hex(vma.flags)), where
            assert v["mnemonics"] == mnemonics(vma.flags) and v["pgoff"] == vma.pgoff, where
            assert v["file"] == (None if vma.file is None else vma.file.inode.name), where
            # what the kernel's own batch walk says about the VMA, page by page
            vas, ptes, reach = mm.pt.range_ptes(vma.start, vma.npages)
            present = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
            want_pa = mm.pt.translate(vas[present]).astype(np.uint64)
            got_va, got_pa, got_pte = page_arrays(v)
            assert v["nr_pages"] == got_va.size == int(present.sum()), where
            assert np.array_equal(got_va, vas[present]), where
            assert np.array_equal(got_pa, want_pa), where
            bad = np.flatnonzero(got_pte != ptes[present])
            assert bad.size == 0, f"{where}: VA {hx(int(got_va[bad[0]]))} PTE {hx(int(got_pte[bad[0]]))}"
            total += got_va.size
        assert rec["nr_pages"] == sum(v["nr_pages"] for v in rec["vmas"]), tag
    assert total == files.nr_pages > 0, tag
    # the scenario produced what it claims: a VMA with no page, PROT_NONE pages, XIP pages
    vmas = [v for mm in man["mms"] for v in mm["vmas"]]
    assert any(v["nr_pages"] == 0 for v in vmas), tag
    assert any(v["mnemonics"].startswith("mr") and v["nr_pages"] for v in vmas), tag  # PROT_NONE
    assert any(int(pa, 16) >= DEV_START for v in vmas for _, pa, _ in v["pages"]), tag


def test_manifest_rows_are_json_one_page_a_line(dumped: tuple[Scenario, DumpFiles]) -> None:
    sc, files = dumped
    text = files.manifest.read_text()
    assert json.loads(text) == load_manifest(files.manifest)
    rows = [ln for ln in text.splitlines() if ln.lstrip().startswith('["0x')]
    assert len(rows) == files.nr_pages, sc.case.id
    assert all(len(json.loads(r.strip().rstrip(","))) == 3 for r in rows[:50]), sc.case.id


# -- the raw image ------------------------------------------------------------------------------
def test_raw_image_reattaches_and_holds_the_bytes(dumped: tuple[Scenario, DumpFiles]) -> None:
    sc, files = dumped
    m, tag, ps = sc.m, sc.case.id, sc.m.page_size
    man = load_manifest(files.manifest)
    mem = load_raw(files.raw)
    raw = open(files.raw, "rb")  # noqa: SIM115 - closed below, read page by page
    for rec in man["mms"]:
        mm = next(x for x in m.mms if x.id == rec["id"])
        pt = PageTable.attach(mem, sc.case.bound, int(rec["root"], 16))
        assert pt.root_pa == mm.pt.root_pa, tag
        for v in rec["vmas"]:
            vas, pas, ptes = page_arrays(v)
            if not vas.size:
                continue
            got = pt.translate(vas)
            bad = np.flatnonzero(got.astype(np.uint64) != pas)
            assert bad.size == 0, f"{tag} mm {mm.id}: VA {hx(int(vas[bad[0]]))} -> {int(got[bad[0]]):#x}"
            assert np.array_equal(pt.read_ptes(pt.epas_for(vas)), ptes), tag
            for va, pa in zip(vas.tolist(), pas.tolist(), strict=True):
                raw.seek(pa)
                image = raw.read(ps)
                assert image == m.mem.read(pa, ps), f"{tag}: PA {pa:#x}"
                if int(v["flags"], 16) & VM.READ:
                    assert image == mm.read(va, ps), f"{tag} mm {mm.id}: VA {va:#x} PA {pa:#x}"
                else:
                    assert image == sc.hidden[va], f"{tag} mm {mm.id}: PROT_NONE VA {va:#x}"
    raw.close()
    # what the child wrote by COW is in its own page, the parent's page is untouched
    anon = sc.parent.vmas[0].start
    assert sc.child.read(anon + ps, 9) == b"child COW" and sc.parent.read(anon + ps, 9) != b"child COW", tag


def test_check_roundtrip(dumped: tuple[Scenario, DumpFiles]) -> None:
    sc, files = dumped
    rt = check_roundtrip(files.manifest, REGISTRY)
    assert (rt.mms, rt.pages) == (2, files.nr_pages), sc.case.id


def test_check_roundtrip_catches_a_changed_image(tmp_path: Path) -> None:
    sc = build(CASES[-1])
    files = dump_machine(sc.m, tmp_path, "x")
    man = load_manifest(files.manifest)
    pte_table_va = int(man["mms"][0]["vmas"][0]["pages"][0][0], 16)
    step = sc.parent.pt.walk(pte_table_va)[-1]
    with open(files.raw, "r+b") as fh:  # clear the first PTE of the parent
        fh.seek(step.entry_pa)
        fh.write(bytes(8))
    with pytest.raises(DumpMismatch, match=f"VA {pte_table_va:#x}"):
        check_roundtrip(files.manifest, REGISTRY)


def test_raw_image_is_sparse_and_loads_like_physmem_load(tmp_path: Path) -> None:
    sc = build(X86[0])
    files = dump_machine(sc.m, tmp_path, "x")
    st = files.raw.stat()
    assert st.st_size == DEV_START + DEV_SIZE and st.st_blocks * 512 < 16 << 20
    slow = PhysMem()
    slow.load(files.raw)  # what `mixedmap walk --image` uses
    fast = load_raw(files.raw)
    assert [a for a, _ in slow.blocks()] == [a for a, _ in fast.blocks()]
    assert all(np.array_equal(x, y) for (_, x), (_, y) in zip(slow.blocks(), fast.blocks(), strict=True))


def test_cli_walks_the_dump(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from mixedmap.cli import run

    sc = build(next(c for c in X86 if c.mode.profile == "6.18" and c.mode.default))
    files = dump_machine(sc.m, tmp_path, "x")
    man = load_manifest(files.manifest)
    mm = man["mms"][1]
    va, pa, _ = mm["vmas"][0]["pages"][1]
    argv = ["walk", "--arch", "x86_64", "--kernel", "6.18", "--image", str(files.raw), "--root", mm["root"]]
    assert run([*argv, hex(int(va, 16) + 0x123), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pa"] == hex(int(pa, 16) + 0x123)


def test_machine_dump_writes_what_dump_machine_writes(tmp_path: Path) -> None:
    sc = build(X86[0])
    via_method = sc.m.dump(tmp_path / "a", name="x")
    via_function = dump_machine(sc.m, tmp_path / "b", "x")
    assert isinstance(via_method, DumpFiles)
    names = [via_method.raw, via_method.manifest, via_method.lime, via_method.vmcore]
    assert [p.name for p in names if p] == ["x.raw", "x.json", "x.lime", "x.vmcore"]
    for mine, theirs in zip(names, [via_function.raw, via_function.manifest, via_function.lime,
                                    via_function.vmcore], strict=True):  # fmt: skip
        assert mine is not None and theirs is not None and mine.parent == tmp_path / "a"
        assert mine.read_bytes() == theirs.read_bytes(), mine.name
    assert (via_method.raw_size, via_method.nr_pages) == (via_function.raw_size, via_function.nr_pages)
    check_roundtrip(via_method.manifest, REGISTRY)
    assert Machine("s390x", "6.18", ram="64M", registry=REGISTRY).dump(tmp_path / "c").lime is None


def _small(arch: str, tmp_path: Path) -> tuple[Machine, DumpFiles, int, int]:
    """A machine with one mapped page, dumped; (machine, files, VA, PA)."""
    m = Machine(arch, "6.18", ram="64M", registry=REGISTRY)
    pt = m.new_mm().pt
    va, pfn = 0x7F00_1234_5000 if arch == "x86_64" else 0x3_4567_8000, 0x1_2345
    pt.map(va, pfn, "rw")
    return m, m.dump(tmp_path, name=arch), va + 0x9A8, (pfn << m.fmt.page_shift) + 0x9A8


@pytest.mark.parametrize("arch", ["x86_64", "s390x"])
def test_cli_walks_the_vmcore_like_the_raw_image(
    arch: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from mixedmap.cli import run

    m, files, va, pa = _small(arch, tmp_path)
    assert files.vmcore is not None
    root = hex(m.mms[0].pt.root)
    got: dict[tuple[str, bool], tuple[str, str, tuple[str, ...]]] = {}
    for image, extra in ((files.raw, ["--root", root]), (files.vmcore, ["--root", root]), (files.vmcore, [])):
        argv = ["walk", "--arch", arch, "--kernel", "6.18", "--image", str(image), *extra]
        assert run([*argv, hex(va), "--json"]) == 0
        rec = json.loads(capsys.readouterr().out)
        got[(image.suffix, bool(extra))] = (rec["pa"], rec["root"], tuple(st["value"] for st in rec["steps"]))
    assert {v[0] for v in got.values()} == {hex(pa)}
    assert len(set(got.values())) == 1  # same root (the vmcore's MIXEDMAP_ROOTS) and same entries
    # a raw image says nothing of its root register
    assert run(["walk", "--arch", arch, "--kernel", "6.18", "--image", str(files.raw), hex(va)]) == 2
    assert "--image needs --root" in capsys.readouterr().err


def test_cli_walk_refuses_a_truncated_or_foreign_vmcore(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from mixedmap.cli import run

    monkeypatch.setenv("COLUMNS", "400")  # the message names a long temporary path: keep it whole

    _m, files, va, _pa = _small("s390x", tmp_path)
    assert files.vmcore is not None
    cut = tmp_path / "cut.vmcore"
    cut.write_bytes(files.vmcore.read_bytes()[:4096])
    assert run(["walk", "--arch", "s390x", "--kernel", "6.18", "--image", str(cut), hex(va)]) == 2
    err = capsys.readouterr().err
    assert "cut.vmcore" in err and "truncated" in err
    argv = ["walk", "--arch", "x86_64", "--kernel", "6.18", "--image", str(files.vmcore), "--root", "0x1000"]
    assert run([*argv, hex(va)]) == 2
    err = capsys.readouterr().err
    assert "s390x.vmcore" in err and "vmcore of s390x, not of x86_64" in err


# -- the LiME image -----------------------------------------------------------------------------
def test_lime_headers_are_exact(dumped_x86: tuple[Scenario, DumpFiles]) -> None:
    """One range per region (RAM and device), each header parsed here with struct."""
    _sc, files = dumped_x86
    assert files.lime is not None
    size = files.lime.stat().st_size
    off, seen = 0, []
    with open(files.lime, "rb") as fh:
        while off < size:
            fh.seek(off)
            magic, version, s_addr, e_addr, reserved = LIME.unpack(fh.read(LIME.size))
            assert (magic, version, reserved) == (0x4C694D45, 1, 0), f"header at {off:#x}"
            seen.append((s_addr, e_addr))
            length = e_addr - s_addr + 1
            data = read_file(files.lime, off + LIME.size, length)
            assert data == read_file(files.raw, s_addr, length), f"range {s_addr:#x}-{e_addr:#x}"
            off += LIME.size + length
    assert off == size
    assert seen == [(0, (64 << 20) - 1), (DEV_START, DEV_START + DEV_SIZE - 1)]
    with open(files.lime, "rb") as fh:
        assert fh.read(4) == b"EMiL"  # the magic as LiME writes it on a little-endian host


# -- determinism and bad input ------------------------------------------------------------------
def test_dump_is_deterministic(tmp_path: Path) -> None:
    sc = build(CASES[0])
    a = dump_machine(sc.m, tmp_path / "a", "same")
    b = dump_machine(sc.m, tmp_path / "b", "same")
    assert a.manifest.read_bytes() == b.manifest.read_bytes()
    assert a.raw.read_bytes() == b.raw.read_bytes()


def test_a_file_as_directory_is_refused_before_writing(tmp_path: Path) -> None:
    sc = build(CASES[0])
    blocker = tmp_path / "f"
    blocker.write_text("keep")
    with pytest.raises(DumpError, match="not a directory"):
        dump_machine(sc.m, blocker, "x")
    with pytest.raises(DumpError, match="cannot create"):
        dump_machine(sc.m, blocker / "sub", "x")
    assert blocker.read_text() == "keep" and sorted(tmp_path.iterdir()) == [blocker]


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\0b"])
def test_bad_names_are_refused(tmp_path: Path, name: str) -> None:
    sc = build(CASES[0])
    with pytest.raises(DumpError, match="plain file name"):
        dump_machine(sc.m, tmp_path, name)
    assert list(tmp_path.iterdir()) == []


def test_a_target_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    sc = build(CASES[0])
    (tmp_path / "x.json").mkdir()
    with pytest.raises(DumpError, match="not a regular file"):
        dump_machine(sc.m, tmp_path, "x")
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_an_unwritable_directory_is_refused(tmp_path: Path) -> None:
    sc = build(CASES[0])
    if os.geteuid() == 0:  # root writes through permission bits; sysfs refuses new files
        target = Path("/sys")
        if not target.is_dir():
            pytest.skip("running as root and there is no sysfs to refuse a new file")
        before = sorted(p.name for p in target.iterdir())
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
        before = []
    with pytest.raises(DumpError, match="not writable"):
        dump_machine(sc.m, target, "mixedmap-dump-test")
    assert sorted(p.name for p in target.iterdir()) == before


def test_a_failure_while_writing_leaves_the_old_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = build(CASES[0])
    old = dump_machine(sc.m, tmp_path, "x")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    sc.parent.write(sc.parent.vmas[0].start, b"newer")

    def full(*_args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mixedmap.dump._write_manifest", full)
    with pytest.raises(DumpError, match="No space left"):
        dump_machine(sc.m, tmp_path, "x")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert check_roundtrip(old.manifest, REGISTRY).pages == old.nr_pages


# -- mapped_pages on large leaves (the mm layer maps base pages; a PageTable user may not) -----
LEAF_CASES = [c for c in CASES if any(lv.leaf_ok for lv in c.mode.fmt.levels[:-1])]


@pytest.mark.parametrize("case", LEAF_CASES, ids=[c.id for c in LEAF_CASES])
def test_mapped_pages_agrees_with_translate_on_large_leaves(case: Case) -> None:
    m = case.machine(ram="64M")
    pt = m.new_pagetable()
    levels = m.fmt.levels
    big = next(lv for lv in reversed(levels[:-1]) if lv.leaf_ok)
    ps, per = m.page_size, big.page_size // m.page_size
    base = 4 * big.page_size
    pt.map(base + big.page_size, per, page_size=big.page_size)  # a large leaf...
    pt.map_range(base, np.arange(3, dtype=np.uint64) + np.uint64(7))  # ...after base pages
    start, end = base + ps, base + big.page_size + 5 * ps  # cuts both
    vas, ents, pas = mapped_pages(pt, m.mem, start, end)
    every = np.arange(start, end, ps, dtype=np.uint64)
    got = pt.translate(every)
    assert np.array_equal(vas, every[got >= 0]), case.id
    assert np.array_equal(pas, got[got >= 0].astype(np.uint64)), case.id
    assert vas.size == 2 + 5 and np.all(np.diff(vas.astype(np.int64)) > 0), case.id
    assert len(set(ents[2:].tolist())) == 1, case.id  # every page of the leaf lists the leaf's entry
