"""``MM.fault_in`` leaves exactly what touching every page with ``mm.access`` leaves.

Two identical worlds are built per case: one is faulted in with the batch, the other page
by page (``access(va, write)`` in address order). Their full state must be equal: every
stored byte of physical memory (PTEs and page-table frames included), every struct page
(refcount, mapcount, flags, mapping, index), the frame allocator's bitmap and cursor, the
page-table fragments, RSS counters, VMA flags, owned tables, the sparse page, the XIP
filesystem and device, the trace (range events expanded to pages), and the outcome (same
error for the same page). Worlds cover every installed arch x profile (default mode) x XIP
device (generic with and without struct pages, each arch's drivers, DCSS pre-series, pmem
with and without its memmap) with holes (sparse page), pre-mapped pages, an anonymous VMA,
a shared writable XIP VMA (holes allocated per page), a driver ``->fault`` VMA and page-table
boundaries. Rules: kernel-mm-semantics.md 6.1, 8.3, 12 (S1, S2, S4); the per-page path is
the reference, so a divergence of the batch is a failure whatever its cause.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixedmap import EINVAL, PG, Machine, RangeDevice, XipDevice, XipFS
from mixedmap.errors import MixedmapError, OOMError
from mixedmap.mm import memory, populate, zero
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_FIXED, MAP_PRIVATE, MAP_SHARED, VM, VMA, FaultResult, VMFault
from mixedmap.profiles import get_profile
from mixedmap.rules import FILEMAP_XIP, ZERO_PAGE
from mixedmap.xip import filemap
from tests.conftest import CASES, Case

#: One representative mode per (arch, profile), every profile (6.18 too).
FI_CASES: list[Case] = [c for c in CASES if c.mode.default]
RAM = "64M"
GiB = 1 << 30
DEV_SIZE = 2 << 20
FILE_PAGES = 48
HOLES = (3, 17, 18, 25, 39)


# -- devices ----------------------------------------------------------------------------------------
def _dcss(pre: bool) -> Callable[[Machine], XipDevice]:
    def make(m: Machine) -> XipDevice:
        params: dict[str, Any] = {"segment": "FAULTIN", "start": "256M", "size": DEV_SIZE, "type": "SW"}
        if pre:
            params["pre_series"] = True
        return m.create_xip_device("dcssblk", **params)

    return make


def _generic(memmap: bool) -> Callable[[Machine], XipDevice]:
    def make(m: Machine) -> XipDevice:
        # 6.18 maps a file only with fs-dax, which needs ZONE_DEVICE struct pages: there the
        # generic device always has them ("nopage" is "page"; see devices_of).
        m.add_region("xipdev", GiB, DEV_SIZE, memmap=memmap or not FILEMAP_XIP.applies(m.profile))
        return RangeDevice(m, "xipdev", GiB, DEV_SIZE, read_only=False, kaddr_base=GiB)

    return make


DEVICES: dict[str, Callable[[Machine], XipDevice]] = {
    "nopage": _generic(False),
    "page": _generic(True),
    "brd": lambda m: m.create_xip_device("brd", size=DEV_SIZE),
    "axonram": lambda m: m.create_xip_device("axonram", size=DEV_SIZE),
    "dcssblk": _dcss(False),
    "dcssblk-pre": _dcss(True),
    "pmem": lambda m: m.create_xip_device("pmem", size=DEV_SIZE),
    "pmem-raw": lambda m: m.create_xip_device("pmem", size=DEV_SIZE, memmap=False),
}


def devices_of(case: Case) -> list[str]:
    m = case.machine(ram=RAM)
    have = set(m.xip_drivers())
    out = ["nopage", "page"] if FILEMAP_XIP.applies(m.profile) else ["page"]
    for name in DEVICES:
        driver = name.split("-")[0]
        if driver in have and (name != "dcssblk-pre" or m.profile.version < (2, 6, 28)):
            out.append(name)
    return out


MATRIX = [(c, d) for c in FI_CASES for d in devices_of(c)]
MATRIX_IDS = [f"{c.id}/{d}" for c, d in MATRIX]


def mountable(case: Case, device: str) -> bool:
    """A raw pmem namespace has no dax_device: 6.18 ext4 -o dax on it is -EINVAL."""
    return device != "pmem-raw" or FILEMAP_XIP.applies(case.machine(ram=RAM).profile)


MOUNTED = [(c, d) for c, d in MATRIX if mountable(c, d)]
MOUNTED_IDS = [f"{c.id}/{d}" for c, d in MOUNTED]


# -- worlds -----------------------------------------------------------------------------------------
class Recorder:
    """A tracer that keeps every event (range events keep their ``npages``)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, **fields: Any) -> None:
        self.events.append(fields)

    def pages(self, ps: int) -> list[tuple[str, str, int]]:
        """(event, func, page address) per page, range events expanded, in order (a world
        has one mm; its id differs between worlds)."""
        out = []
        for e in self.events:
            for i in range(int(e.get("npages", 1))):
                out.append((e["event"], e["func"], e["addr"] - e["addr"] % ps + i * ps))
        return out


@attrs.define
class World:
    m: Machine
    mm: MM
    dev: XipDevice
    fs: XipFS
    tracer: Recorder
    vmas: dict[str, VMA]

    @property
    def ps(self) -> int:
        return self.m.page_size

    def va(self, vma: str, page: int) -> int:
        return self.vmas[vma].start + page * self.ps


def _driver_fault(pfn0: int) -> Callable[[VMA, VMFault], FaultResult]:
    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        memory.vm_insert_pfn(vma, vmf.address, pfn0 + vmf.pgoff)
        return FaultResult.NOPAGE

    return fault


#: name: (pages, PTE table boundary crossed after this many pages, gap after it)
LAYOUT = {
    "anon": (24, 12),
    "xip_private": (40, 20),
    "xip_shared": (40, 30),
    "driver": (8, 4),
    "past_eof": (8, 2),
}


def build(case: Case, device: str) -> World:
    """The same world every time: file ``f`` (holes) on the device and VMAs that each cross
    a PTE-table boundary, with a gap after each (SIGSEGV): anon rw, XIP private r, XIP shared
    (rw on a writable filesystem: holes are allocated), a PFNMAP device with a ->fault, and
    an XIP VMA that runs past EOF (SIGBUS)."""
    m = case.machine(ram=RAM)
    tracer = Recorder()
    m.tracer = tracer
    dev = DEVICES[device](m)
    fs = XipFS(dev)
    ps = m.page_size
    content = bytearray(np.random.default_rng(7).integers(1, 256, FILE_PAGES * ps, dtype=np.uint8).tobytes())
    for h in HOLES:
        content[h * ps : (h + 1) * ps] = bytes(ps)
    fs.create("f", data=bytes(content), holes=HOLES)
    mm = m.new_mm()
    leaf = m.fmt.levels[-1]
    reach = 1 << (leaf.shift + leaf.index_bits)
    m.add_region("pfndev", 2 * GiB, 64 * ps, memmap=False)
    writable = not fs.read_only
    drv = DeviceFile(
        "pfndev",
        on_mmap=lambda v: setattr(v, "flags", v.flags | VM.PFNMAP),
        on_fault=_driver_fault((2 * GiB) // ps),
    )
    files: dict[str, tuple[str, int, Any, int]] = {
        "anon": ("rw", MAP_PRIVATE | 0x20, None, 0),
        "xip_private": ("r", MAP_PRIVATE, fs.open("f", "r"), 0),
        "xip_shared": ("rw" if writable else "r", MAP_SHARED, fs.open("f", "rw" if writable else "r"), 4),
        "driver": ("r", MAP_SHARED, drv, 0),
        "past_eof": ("r", MAP_PRIVATE, fs.open("f", "r"), FILE_PAGES - 4),
    }
    vmas: dict[str, VMA] = {}
    for i, (name, (npages, cross)) in enumerate(LAYOUT.items()):
        prot, flags, file, pgoff = files[name]
        addr = (8 + 2 * i) * reach - cross * ps
        va = mm.mmap(npages * ps, prot, flags | MAP_FIXED, file=file, pgoff=pgoff, addr=addr)
        vma = mm.find_vma(va)
        assert vma is not None
        vmas[name] = vma
    return World(m=m, mm=mm, dev=dev, fs=fs, tracer=tracer, vmas=vmas)


def per_page(mm: MM, start: int, length: int, write: bool) -> int:
    """The reference: one access per page, in address order."""
    ps = mm.page_size
    newly = 0
    for va in range(start, start + -(-length // ps) * ps, ps):
        newly += mm.access(va, write=write).fault in ("fault", "fault+wp")
    return newly


def outcome(fn: Callable[[], int]) -> tuple[str, Any]:
    """("ok", result) or (error type, message): both worlds use the same addresses."""
    try:
        return "ok", fn()
    except MixedmapError as exc:
        return type(exc).__name__, str(exc)


# -- the full state -----------------------------------------------------------------------------------
def snapshot(w: World) -> dict[str, Any]:
    """Everything a fault can change, comparable between two machines (mm ids normalised)."""
    m = w.m
    ids = {mm.id: i for i, mm in enumerate(m.mms)}
    pfns = np.concatenate(
        [
            np.arange(r.start // m.page_size, r.end // m.page_size, dtype=np.uint64)
            for r in m.regions
            if r.memmap
        ]
    )
    row, col = m.memmap.rows(pfns)
    flags = m.memmap.flags[row, col]
    mapping = m.memmap.mapping[row, col].copy()
    anon = (flags & np.uint32(PG.anon)) != 0
    mapping[anon] = [ids.get(int(v), -1000 - int(v)) for v in mapping[anon].tolist()]
    allpages = np.arange(w.dev.size // m.page_size, dtype=np.int64)
    return {
        "mem": {pa: bytes(block) for pa, block in m.mem.blocks() if block.any()},
        "refcount": m.memmap.refcount[row, col].tolist(),
        "mapcount": m.memmap.mapcount[row, col].tolist(),
        "flags": flags.tolist(),
        "mapping": mapping.tolist(),
        "index": m.memmap.index[row, col].tolist(),
        "frames": (m.frames._used.tobytes(), m.frames._cursor, m.frames.nr_free),
        "fragments": {k: dict(v) for k, v in m.tables._frag_pages.items()},
        "table_bytes": m.pagetable_bytes(),
        "mms": [
            (
                mm.rss_file,
                mm.rss_anon,
                mm.pt.root_pa,
                sorted(mm.pt._owned.items()),
                [(v.start, v.end, v.flags, v.pgoff, v.anon_vma, v.page_prot) for v in mm.vmas],
            )
            for mm in m.mms
        ],
        "sparse": filemap._sparse.get(m),
        "zero": zero.current_zero_pfn(m),
        "device": w.dev.frames(allpages).tolist(),
        "fs": (w.fs._used.tobytes(), {n: (i.size, i.blocks.tolist()) for n, i in w.fs.files.items()}),
        "trace": w.tracer.pages(m.page_size),
    }


def assert_same(a: dict[str, Any], b: dict[str, Any], label: str) -> None:
    for key in a:
        assert a[key] == b[key], f"{label}: {key} differs between fault_in and the per-page loop"


@contextlib.contextmanager
def labelled(label: str) -> Iterator[None]:
    try:
        yield
    except BaseException as exc:
        exc.add_note(label)
        raise


Step = tuple[str, str, int, int, bool]


def twin_run(case: Case, device: str, steps: list[Step]) -> tuple[World, World]:
    """Run ``steps`` on two identical worlds: ("touch", vma, page, 1, write) goes per page in
    both; ("fault", vma, first page, npages, write) is fault_in in one, the loop in the other
    (npages may run past the VMA into the gap); ("fork", ...) forks both and goes on in the
    children. Outcomes and full state must agree after every step."""
    a, b = build(case, device), build(case, device)
    label = f"{case.id}/{device}"
    assert_same(snapshot(a), snapshot(b), f"{label} (identical builds)")
    for op, vma, first, npages, write in steps:
        sa, sb = a.va(vma, first), b.va(vma, first)
        if op == "fork":  # the child's PTEs are old (and clean if shared): fault_in touches them
            a.mm, b.mm = a.mm.fork(), b.mm.fork()
            ra = rb = ("ok", 0)
        elif op == "touch":
            ra = outcome(lambda sa=sa, write=write: a.mm.access(sa, write=write).pfn)
            rb = outcome(lambda sb=sb, write=write: b.mm.access(sb, write=write).pfn)
        else:
            ra = outcome(lambda sa=sa, npages=npages, write=write: a.mm.fault_in(sa, npages * a.ps, write))
            rb = outcome(lambda sb=sb, npages=npages, write=write: per_page(b.mm, sb, npages * b.ps, write))
        step = f"{label} {op} {vma} page {first} +{npages} write={write}"
        assert ra == rb, f"{step}: fault_in {ra} but per page {rb}"
        assert_same(snapshot(a), snapshot(b), step)
    return a, b


def each_vma(
    write: bool, names: tuple[str, ...] = ("anon", "xip_private", "xip_shared", "driver")
) -> list[Step]:
    return [("fault", n, 0, LAYOUT[n][0], write) for n in names]


# -- equality on every arch x profile x device ----------------------------------------------------
@pytest.mark.parametrize(("case", "device"), MOUNTED, ids=MOUNTED_IDS)
def test_fault_in_equals_per_page_access(case: Case, device: str) -> None:
    """Pre-mapped pages (read and written), then a read fault-in of every VMA (anon, XIP
    private with holes, XIP shared over holes, a driver VMA), a write fault-in of the anon
    and shared VMAs (COW and allocation per page), then everything again (all present:
    young/dirty only)."""
    steps: list[Step] = [
        ("touch", "xip_private", 2, 1, False),
        ("touch", "xip_private", 21, 1, False),
        ("touch", "anon", 1, 1, True),
        ("touch", "xip_shared", 6, 1, False),
        *each_vma(False),
        *each_vma(True, ("anon", "xip_shared")),
        *each_vma(False),
        ("fork", "anon", 0, 0, False),
        *each_vma(False),
        *each_vma(True, ("anon",)),
    ]
    a, _ = twin_run(case, device, steps)
    assert a.mm.rss["anon"] >= LAYOUT["anon"][0]


@pytest.mark.parametrize("case", FI_CASES, ids=[c.id for c in FI_CASES])
def test_fault_in_errors_match_per_page(case: Case) -> None:
    """SIGSEGV at a gap and SIGBUS past EOF: the same error for the same page, with every
    page before it applied; a write to a read-only VMA is SIGSEGV before any change."""
    steps: list[Step] = [
        ("fault", "anon", 4, 30, False),
        ("fault", "past_eof", 0, 8, False),
        ("fault", "xip_private", 0, 10, True),
        ("fault", "driver", 2, 8, False),
    ]
    twin_run(case, "nopage", steps)


def _zero_page(case: Case) -> bool:
    """Whether the case's kernel maps the zero page on anonymous reads (2.6.32 on)."""
    return ZERO_PAGE.applies(get_profile(case.mode.profile))


ZERO_CASES = [c for c in FI_CASES if _zero_page(c)]
ZERO_IDS = [c.id for c in ZERO_CASES]


@pytest.mark.parametrize("case", FI_CASES, ids=[c.id for c in FI_CASES])
def test_fault_in_oom_matches_per_page(case: Case) -> None:
    """No free RAM part-way through an anonymous fault-in: the pages that fit are mapped,
    then the per-page path's OOM for the next one. A fault-in that allocates a page per PTE
    is a read before the zero page (2.6.27) and a write with it (6.18: reads map the zero
    page, see the next test)."""
    write = _zero_page(case)
    for keep in (0, 1, 5):
        a, b = build(case, "nopage"), build(case, "nopage")
        a.m.pages.alloc_pages(a.m.pages.nr_free - keep)
        b.m.pages.alloc_pages(b.m.pages.nr_free - keep)
        n = LAYOUT["anon"][0]
        ra = outcome(lambda a=a, n=n: a.mm.fault_in(a.va("anon", 0), n * a.ps, write))
        rb = outcome(lambda b=b, n=n: per_page(b.mm, b.va("anon", 0), n * b.ps, write))
        assert ra == rb
        assert ra[0] == "OOMError"
        assert_same(snapshot(a), snapshot(b), f"{case.id} oom keep={keep}")


@pytest.mark.parametrize("case", ZERO_CASES, ids=ZERO_IDS)
def test_fault_in_zero_page_oom_matches_per_page(case: Case) -> None:
    """6.18 anonymous read fault-in: the only allocations are the PTE tables and, at the first
    read after its table, the zero page itself; short of either, the per-page path's OOM
    for the same page with the same pages applied. With both, every page maps it."""
    n = LAYOUT["anon"][0]
    outcomes = []
    for keep in range(8):
        a, b = build(case, "nopage"), build(case, "nopage")
        a.m.pages.alloc_pages(a.m.pages.nr_free - keep)
        b.m.pages.alloc_pages(b.m.pages.nr_free - keep)
        ra = outcome(lambda a=a: a.mm.fault_in(a.va("anon", 0), n * a.ps))
        rb = outcome(lambda b=b: per_page(b.mm, b.va("anon", 0), n * b.ps, False))
        assert ra == rb, f"{case.id} keep={keep}: fault_in {ra} but per page {rb}"
        assert_same(snapshot(a), snapshot(b), f"{case.id} zero-page oom keep={keep}")
        outcomes.append(ra[0])
    assert outcomes[0] == "OOMError" and outcomes[-1] == "ok", outcomes
    assert a.m.pages.nr_free == 0 or zero.zero_allocated(a.m)


@pytest.mark.parametrize("case", ZERO_CASES, ids=ZERO_IDS)
def test_fault_in_anon_zero_page_equals_per_page(case: Case) -> None:
    """6.18 (kernel-mm-semantics.md 6.1/6.2): a read fault-in of untouched anonymous memory maps
    the zero pfn read-only (special on every 6.18 arch with the bit), with no page, rmap, RSS
    or anon_vma; pages touched before keep what they had; a write fault-in then COWs each
    zero-page PTE into a fresh zeroed page, per page as the write faults take it; the fork
    child of a VMA with an anon_vma inherits the zero-page PTEs."""
    steps: list[Step] = [
        ("touch", "anon", 3, 1, False),
        ("touch", "anon", 5, 1, True),
        ("fault", "anon", 0, LAYOUT["anon"][0], False),
        ("fault", "anon", 0, LAYOUT["anon"][0], False),  # all present: young only
        ("fault", "anon", 10, 6, True),
        ("fork", "anon", 0, 0, False),
        ("fault", "anon", 0, LAYOUT["anon"][0], False),
        ("fault", "anon", 0, 8, True),
    ]
    a, _ = twin_run(case, "nopage", steps)
    m, mm = a.m, a.mm
    zpfn = zero.current_zero_pfn(m)
    assert zpfn is not None
    vma = a.vmas["anon"]
    written = set(range(0, 8)) | set(range(10, 16)) | {5}
    for page in range(LAYOUT["anon"][0]):
        va = a.va("anon", page)
        pte = mm.pt.read_pte(mm.pt.pte_slot(va, allocate=False))
        cvma = mm.find_vma(va)
        assert cvma is not None and cvma.start == vma.start
        if page in written:
            assert int(mm.ops.pte_pfn(pte)) != zpfn, f"page {page} was written: it must be a page of its own"
            continue
        assert int(mm.ops.pte_pfn(pte)) == zpfn, f"page {page} was only read: the zero pfn"
        assert not mm.ops.pte_write(pte), f"page {page}: a zero-page PTE is read-only"
        assert memory.vm_normal_page(cvma, va, pte) is None
        if m.mode.has_special:
            assert mm.pte_special_one(pte), f"page {page}: the zero-page PTE carries the special bit"
    assert mm.rss == {"file": 0, "anon": len(written)}
    info = m.page(zpfn)
    assert info is not None and info.refcount == 1 and info.mapcount == 0 and info.flags & PG.reserved


@pytest.mark.parametrize("case", ZERO_CASES, ids=ZERO_IDS)
def test_fault_in_batches_zero_page_reads(case: Case) -> None:
    """The read fault-in of untouched anonymous memory takes no per-page step under 6.18: one
    range event per PTE table, the per-page path's fault_zero event and function."""
    w = build(case, "nopage")
    n = LAYOUT["anon"][0]
    assert w.mm.fault_in(w.va("anon", 0), n * w.ps) == n
    events = [e for e in w.tracer.events if e["mm"] == w.mm.id]
    assert events and all("npages" in e for e in events), events[:3]
    assert {(e["event"], e["func"]) for e in events} == {("fault_zero", "mm/memory.c:do_anonymous_page")}
    assert sum(e["npages"] for e in events) == n


def test_fault_in_bad_input_changes_nothing() -> None:
    w = build(FI_CASES[0], "nopage")
    before = snapshot(w)
    start = w.va("anon", 0)
    for bad_start, length in ((start + 1, w.ps), (start, 0), (start, -w.ps), (-w.ps, w.ps)):
        with pytest.raises(EINVAL, match="fault_in"):
            w.mm.fault_in(bad_start, length)
    assert_same(before, snapshot(w), "bad input")
    w.mm.exit()
    with pytest.raises(EINVAL, match="exited"):
        w.mm.fault_in(start, w.ps)


def test_fault_in_returns_pages_newly_mapped() -> None:
    w = build(FI_CASES[0], "nopage")
    w.mm.access(w.va("xip_private", 7))
    assert w.mm.fault_in(w.va("xip_private", 0), 40 * w.ps) == 39
    assert w.mm.fault_in(w.va("xip_private", 0), 40 * w.ps) == 0
    assert w.mm.fault_in(w.va("anon", 0), 24 * w.ps - 1, write=True) == 24


@pytest.mark.parametrize(("case", "device"), MATRIX, ids=MATRIX_IDS)
def test_fault_in_batches_the_common_cases(case: Case, device: str) -> None:
    """Anonymous and read XIP faults (data and holes) take no per-page step: the trace holds
    range events only. Under 6.18 (fs-dax) a hole is the zero page, inserted per page
    (dax_load_hole), and a raw pmem namespace has no DAX: the -o dax mount is -EINVAL (the old
    6.18 answer, filemap_xip's VM_FAULT_OOM, was 2.6.27's rule on 6.18 encodings)."""
    if not mountable(case, device):
        with pytest.raises(EINVAL, match="DAX unsupported by block device"):
            build(case, device)
        return
    w = build(case, device)
    w.mm.fault_in(w.va("anon", 0), 24 * w.ps)
    if device == "pmem-raw":
        with pytest.raises(OOMError):
            w.mm.fault_in(w.va("xip_private", 0), 40 * w.ps)
        return
    w.mm.fault_in(w.va("xip_private", 0), 40 * w.ps)
    events = [e for e in w.tracer.events if e["mm"] == w.mm.id]
    single = [e for e in events if "npages" not in e]
    if FILEMAP_XIP.applies(w.m.profile):
        assert events and all("npages" in e for e in events), single[:3]
    else:
        assert events and [(e["event"], e["addr"]) for e in single] == [
            ("insert_page", w.va("xip_private", h)) for h in HOLES
        ], single[:6]
    assert sum(e.get("npages", 1) for e in events) == 64


def test_fault_in_traces_ranges() -> None:
    """With a tracer attached the batch records range events (npages) for what it mapped."""
    w = build(FI_CASES[0], "nopage")
    w.mm.fault_in(w.va("xip_private", 0), 40 * w.ps)
    ranged = [e for e in w.tracer.events if "npages" in e]
    assert ranged and sum(e["npages"] for e in ranged) == 40
    assert {e["func"] for e in ranged} <= {
        "mm/memory.c:insert_pfn",
        "mm/memory.c:insert_page",
        "mm/memory.c:__do_fault",
    }


# -- hypothesis: random sub-ranges, pre-mapped pages, holes ---------------------------------------
HYPO = [
    c
    for c in FI_CASES
    if (c.arch, c.mode.profile)
    in (
        ("s390x", "2.6.27"),
        ("x86_64", "2.6.26"),
        ("toyarch", "2.6.27"),
        ("x86_64", "6.18"),
        ("toyarch", "6.18"),
    )
]
HYPO_DEV = {"s390x": "dcssblk", "x86_64": "brd", "toyarch": "page"}


@pytest.mark.parametrize("case", HYPO, ids=[c.id for c in HYPO])
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_fault_in_random_ranges(case: Case, data: st.DataObject) -> None:
    """Random pre-mapped pages, then a fault-in of a random sub-range of a random VMA that
    may run into the gap after it (SIGSEGV) or past EOF (SIGBUS), read or write."""
    names = list(LAYOUT)
    touches = data.draw(
        st.lists(
            st.tuples(st.sampled_from(names), st.integers(0, 39), st.booleans()).filter(
                lambda t: t[1] < LAYOUT[t[0]][0]
            ),
            max_size=6,
        ),
        label="pre-mapped",
    )
    vma = data.draw(st.sampled_from(names), label="vma")
    first = data.draw(st.integers(0, LAYOUT[vma][0] - 1), label="first")
    npages = data.draw(st.integers(1, LAYOUT[vma][0] - first + 2), label="npages")
    write = data.draw(st.booleans(), label="write")
    steps: list[Step] = [("touch", n, p, 1, w) for n, p, w in touches]
    steps.append(("fault", vma, first, npages, write))
    device = HYPO_DEV.get(case.arch, "page")
    twin_run(case, device if device in devices_of(case) else "page", steps)


# -- the comparison catches a diverging batch ------------------------------------------------------
def _pick(profile: str) -> Case:
    """x86_64 of ``profile`` (its pte_mkyoung sets a bit; s390's keeps young in storage keys)."""
    by_arch = {c.arch: c for c in FI_CASES if c.mode.profile == profile}
    return by_arch.get("x86_64") or by_arch.get("toyspecial") or next(iter(by_arch.values()))


def _no_young(real: Callable[..., None]) -> Callable[..., None]:
    def apply(mm: MM, vma: VMA, vas: Any, epa: Any, ptes: Any, what: Any, pfns: Any, write: bool) -> None:
        keep = what != populate._TOUCH
        real(mm, vma, vas[keep], epa[keep], ptes[keep], what[keep], pfns[keep], write)

    return apply


MUTATIONS: dict[str, tuple[Any, str, Callable[[], Any]]] = {
    "no_file_rmap": (
        populate,
        "rmap",
        lambda: types.SimpleNamespace(page_add_file_rmap=lambda memmap, pfns: None),
    ),
    "no_young": (populate, "_apply", lambda: _no_young(populate._apply)),
    "anon_index": (
        populate,
        "_add_new_anon_rmaps",
        lambda: lambda mm, pfns, pg, real=populate._add_new_anon_rmaps: real(mm, pfns, pg + np.uint64(1)),
    ),
    "no_insertpage": (
        populate,
        "XIP_SPARSE_VM_INSERT_PAGE",
        lambda: attrs.evolve(populate.XIP_SPARSE_VM_INSERT_PAGE, introduced=(99,), removed=None),
    ),
    "no_trace": (populate, "_trace", lambda: lambda mm, vma, vas, what: None),
    "tables_after_pages": (populate, "_allocate", lambda: _tables_last(populate._allocate)),
}


def _tables_last(real: Callable[..., int]) -> Callable[..., int]:
    """Allocate the anonymous pages of the batch before its page tables (the wrong order)."""

    def allocate(mm: MM, vma: VMA, vas: Any, reach: Any, epa: Any, what: Any, pfns: Any, k: int) -> int:
        anon = np.flatnonzero(what[:k] == populate._ANON)
        if anon.size:
            pfns[anon] = mm.machine.pages.alloc_pages(int(anon.size)).astype(np.int64)
            what = np.where(what == populate._ANON, np.int8(populate._TOUCH + 9), what)
        got = real(mm, vma, vas, reach, epa, what, pfns, k)
        return got

    return allocate


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_comparison_fails_when_the_batch_diverges(monkeypatch: pytest.MonkeyPatch, mutation: str) -> None:
    """Each deliberate bug in the batch path is caught by the equality check."""
    target, name, make = MUTATIONS[mutation]
    monkeypatch.setattr(target, name, make())
    steps: list[Step] = [
        ("touch", "xip_private", 2, 1, False),
        *each_vma(False),
        ("fork", "anon", 0, 0, False),
        *each_vma(False),
    ]
    with pytest.raises(AssertionError):
        twin_run(_pick("2.6.27"), "page", steps)
