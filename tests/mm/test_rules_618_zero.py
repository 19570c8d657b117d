"""Profile 6.18: ``vm_normal_page`` in its newest form and the shared zero page.

Rules under test (mixedmap.rules; kernel-mm-semantics.md 4.4, 6.1, 6.2, 6.9, invariants 3-7):

* ZERO_PAGE (2.6.32, 6.18 mm/memory.c ``do_anonymous_page`` / ``wp_page_copy``): a read fault
  on untouched private anonymous memory maps the zero pfn read-only, special where the arch
  has the bit, with no refcount, mapcount, RSS or anon_vma; a write to it COWs into a fresh
  zeroed page without a copy (anon RSS +1); a write first allocates directly.
* BAD_PAGE_MAP_REPORT (2.6.29, ``print_bad_page_map``): a special PTE in a plain VMA that is
  not the zero page, or a pfn above ``highest_memmap_pfn``, is reported and taken as special
  where 2.6.27 BUGs.
* FIND_NORMAL_PAGE (6.18, ``vm_ops->find_normal_page``): the hook names the page of a special
  PTE.
* SMAPS_RSS_NORMAL_ONLY (6.x ``smaps_pte_entry``): Rss counts normal pages only.
* 6.18 ``populate_vma_page_range``: MAP_POPULATE of read-only private anonymous memory maps the
  zero page (a read fault), exactly as touching each page would.

Every test runs on the default mode of each arch with the 6.18 profile (x86_64, s390x, ppc64,
riscv64, plus toyspecial with the bit and toyarch without it); the 2.6.27 contrasts on the
default modes of that profile.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixedmap import PG, VMBug
from mixedmap.mm import memory, zero
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, VMA, FaultResult, VMFault
from mixedmap.rules import BAD_PAGE_MAP_REPORT, FIND_NORMAL_PAGE, SMAPS_RSS_NORMAL_ONLY, ZERO_PAGE

from ..conftest import CASES, Case
from .helpers import VM, Env, map_device

ANON = MAP_PRIVATE | MAP_ANONYMOUS
C618 = [c for c in CASES if c.mode.default and c.mode.profile == "6.18"]
C2627 = [c for c in CASES if c.mode.default and c.mode.profile == "2.6.27"]
C2627_A = [c for c in C2627 if c.mode.fmt.special_mask is not None]
ARCHES_618 = {c.arch for c in C618}


def test_every_real_arch_has_the_618_profile() -> None:
    assert {"x86_64", "s390x", "ppc64", "riscv64"} <= ARCHES_618, ARCHES_618


@pytest.fixture(params=C618, ids=[c.id for c in C618])
def env618(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


@pytest.fixture(params=C2627_A, ids=[c.id for c in C2627_A])
def env2627(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


class Recorder:
    """A tracer keeping every event."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, **fields: Any) -> None:
        self.events.append(fields)


def _anon(env: Env, mm: MM, npages: int, prot: str = "rw", flags: int = 0) -> tuple[int, VMA]:
    addr = mm.mmap(npages * env.ps, prot, ANON | flags)
    vma = mm.find_vma(addr)
    assert vma is not None
    return addr, vma


def _zero(env: Env) -> int:
    pfn = zero.current_zero_pfn(env.m)
    assert pfn is not None, env.say("no zero page was allocated")
    return pfn


def _set_pte(mm: MM, va: int, value: int) -> None:
    slot = mm.pt.pte_slot(va, allocate=True)
    assert slot is not None
    mm.pt.write_pte(slot, value)


def _assert_zero_pte(env: Env, mm: MM, va: int) -> None:
    pte = env.pte(mm, va)
    zpfn = _zero(env)
    assert env.present(pte) and env.pfn_of(pte) == zpfn, env.say(f"{va:#x} maps the zero pfn", pte=pte)
    assert not env.writable(pte), env.say("a zero-page PTE is read-only", pte=pte)
    assert env.special(pte) == env.m.mode.has_special, env.say(
        "special exactly where the arch has the bit", pte=pte
    )
    assert env.normal_page(mm, va) is None, env.say("vm_normal_page: NULL for the zero page", pte=pte)


def _assert_zero_page_untouched(env: Env) -> None:
    info = env.m.page(_zero(env))
    assert info is not None and (info.refcount, info.mapcount) == (1, 0), env.say(f"zero page counts: {info}")
    assert info.flags & PG.reserved, env.say("the zero page is PG_reserved")


def _teardown_clean(env: Env, free_at_start: int) -> None:
    for mm in list(env.m.mms):
        mm.exit()
    if zero.zero_allocated(env.m):
        assert zero.release_zero_page(env.m), env.say("the zero page is still referenced after exit")
    env.assert_clean()
    assert env.m.pages.nr_free == free_at_start, env.say("free RAM is back")


# -- rules the profile has ------------------------------------------------------------------------
def test_the_618_profile_has_the_rules(env618: Env) -> None:
    p = env618.m.profile
    assert ZERO_PAGE.applies(p) and BAD_PAGE_MAP_REPORT.applies(p) and FIND_NORMAL_PAGE.applies(p)
    assert SMAPS_RSS_NORMAL_ONLY.applies(p)


def test_the_2627_profile_has_none_of_them(env2627: Env) -> None:
    p = env2627.m.profile
    assert not any(
        r.applies(p) for r in (ZERO_PAGE, BAD_PAGE_MAP_REPORT, FIND_NORMAL_PAGE, SMAPS_RSS_NORMAL_ONLY)
    )


# -- the zero pfn is special -----------------------------------------------------------------------
def test_zero_pfn_is_special_and_not_normal(env618: Env) -> None:
    """__vm_normal_page: the zero pfn is NULL in any VMA, with the bit (scheme A) or without it
    (scheme B, after the MIXEDMAP/PFNMAP tests); no bad page map for it."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 2)
    zpfn = zero.zero_pfn(env.m)
    pte = env.mkspecial(int(env.ops.pfn_pte(zpfn, vma.page_prot)))
    assert memory.vm_normal_page(vma, addr, pte) is None, env.say("zero pfn in an anonymous VMA", pte=pte)
    got = memory.vm_normal_pages(vma, np.array([addr], dtype=np.uint64), np.array([pte], dtype=np.uint64))
    assert got.tolist() == [-1], env.say("batched: -1", pte=pte)
    _mixed_addr, mixed = map_device(env, mm, 1, shared=False, flags=VM.MIXEDMAP)
    assert memory.vm_normal_page(mixed, mixed.start, pte) is None, env.say(
        "zero pfn in a MIXEDMAP VMA", pte=pte
    )
    assert mm.bad_page_maps == []


# -- read fault --------------------------------------------------------------------------------------
def test_read_fault_maps_the_zero_page(env618: Env) -> None:
    env = env618
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 4)
    free = env.m.pages.nr_free
    acc = mm.access(addr)
    assert acc.fault == "fault" and acc.pfn == _zero(env)
    _assert_zero_pte(env, mm, addr)
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"6.18 do_anonymous_page does not count it: {mm.rss}")
    assert not vma.anon_vma, env.say("a zero-page read does not anon_vma_prepare")
    _assert_zero_page_untouched(env)
    tables = free - env.m.pages.nr_free - 1  # the PTE table(s) and the zero page itself
    assert tables >= 1
    mm.access(addr + env.ps)  # same PTE table, zero page exists: nothing allocated
    assert env.m.pages.nr_free == free - tables - 1
    _assert_zero_pte(env, mm, addr + env.ps)
    assert mm.read(addr, 16) == bytes(16)
    assert mm.rss == {"file": 0, "anon": 0}
    _assert_zero_page_untouched(env)


def test_2627_read_fault_allocates(env2627: Env) -> None:
    """Contrast: 2.6.27 has no zero page; a read fault gets a page of its own."""
    env = env2627
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 1)
    mm.access(addr)
    assert not zero.zero_allocated(env.m) and mm.rss["anon"] == 1 and vma.anon_vma
    assert env.normal_page(mm, addr) == env.pfn_of(env.pte(mm, addr))


# -- write fault ---------------------------------------------------------------------------------------
def test_write_after_read_cows_into_a_fresh_zeroed_page(env618: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """do_wp_page -> wp_page_copy with a zero source: a zeroed folio, no copy, MM_ANONPAGES +1."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 2)
    mm.access(addr)
    zpfn = _zero(env)

    def no_copy(dst: int, src_page: int | None, src_pfn: int) -> None:
        raise AssertionError(f"wp_page_copy copied from pfn {src_pfn:#x}: the zero page needs no copy")

    monkeypatch.setattr(mm, "cow_user_page", no_copy)
    acc = mm.access(addr, write=True)
    assert acc.fault == "wp" and acc.pfn != zpfn
    pte = env.pte(mm, addr)
    assert env.writable(pte) and env.made_dirty(pte) and not env.special(pte), env.say(
        "a normal page", pte=pte
    )
    assert env.normal_page(mm, addr) == acc.pfn
    assert env.frame(acc.pfn) == bytes(env.ps), env.say("the new page is zeroed")
    assert env.counts(acc.pfn) == (1, 1) and env.page_flags(acc.pfn) & PG.anon
    assert mm.rss == {"file": 0, "anon": 1} and vma.anon_vma
    _assert_zero_page_untouched(env)
    mm.write(addr + 5, b"xyz")
    assert mm.read(addr, 10) == b"\0" * 5 + b"xyz\0\0"
    assert env.frame(zpfn) == bytes(env.ps), env.say("the zero page stays zero")


def test_write_first_allocates_directly(env618: Env) -> None:
    env = env618
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 1)
    acc = mm.access(addr, write=True)
    assert acc.fault == "fault", env.say("one fault: the write path of do_anonymous_page")
    assert not zero.zero_allocated(env.m), env.say("no zero page for a write-first fault")
    assert mm.rss == {"file": 0, "anon": 1} and vma.anon_vma
    assert env.writable(env.pte(mm, addr)) and env.normal_page(mm, addr) == acc.pfn


# -- fork, munmap, exit ----------------------------------------------------------------------------------
def test_fork_of_a_vma_with_only_zero_page_ptes_copies_nothing(env618: Env) -> None:
    """6.18 vma_needs_copy: no anon_vma (a zero-page read makes none), not PFNMAP/MIXEDMAP: the
    child refaults, and gets the zero page again."""
    env = env618
    mm = env.m.new_mm()
    addr, _vma = _anon(env, mm, 3)
    for i in range(3):
        mm.access(addr + i * env.ps)
    child = mm.fork()
    for i in range(3):
        assert env.none(env.pte(child, addr + i * env.ps)), env.say("the child's PTEs are none")
    child.access(addr)
    _assert_zero_pte(env, child, addr)
    _assert_zero_page_untouched(env)


def test_fork_copies_zero_page_ptes_of_a_vma_with_an_anon_vma(env618: Env) -> None:
    """copy_present_ptes: a zero-page PTE (vm_normal_page NULL) is copied verbatim (made old), no
    page is touched; the child's write COWs from it like the parent's."""
    env = env618
    mm = env.m.new_mm()
    addr, _vma = _anon(env, mm, 3)
    mm.access(addr)
    mm.write(addr + env.ps, b"w")  # an anon_vma: the VMA is copied
    mm.access(addr + 2 * env.ps)
    child = mm.fork()
    for va in (addr, addr + 2 * env.ps):
        _assert_zero_pte(env, child, va)
        _assert_zero_pte(env, mm, va)
    assert child.rss == {"file": 0, "anon": 1}, env.say(f"only the written page counts: {child.rss}")
    _assert_zero_page_untouched(env)
    child.write(addr, b"c")
    assert child.read(addr, 2) == b"c\0" and mm.read(addr, 2) == b"\0\0"
    assert child.rss == {"file": 0, "anon": 2}
    _assert_zero_pte(env, mm, addr)
    _assert_zero_page_untouched(env)


def test_munmap_and_exit_leave_no_leak(env618: Env) -> None:
    env = env618
    free = env.m.pages.nr_free
    mm = env.m.new_mm()
    addr, _vma = _anon(env, mm, 8)
    for i in range(8):
        mm.access(addr + i * env.ps, write=i % 3 == 0)
    child = mm.fork()
    child.access(addr + env.ps)
    mm.munmap(addr, 4 * env.ps)
    _assert_zero_page_untouched(env)
    assert not zero.release_zero_page(env.m), env.say("zero-page PTEs are still mapped: no release")
    _teardown_clean(env, free)


# -- smaps -------------------------------------------------------------------------------------------------
def test_smaps_counts_normal_pages_only(env618: Env) -> None:
    """6.x smaps_pte_entry returns before smaps_account without a page: zero-page and special
    PTEs add nothing to Rss (2.6.27 added every present PTE)."""
    env = env618
    mm = env.m.new_mm()
    addr, _vma = _anon(env, mm, 4)
    for i in range(4):
        mm.access(addr + i * env.ps)
    mm.write(addr, b"x")
    (rec,) = [r for r in mm.smaps() if r["start"] == addr]
    assert rec["Rss"] == env.ps and rec["Pss"] == env.ps, env.say(f"one normal page: {rec}")
    assert rec["Private_Clean"] + rec["Private_Dirty"] == env.ps and rec["Shared_Clean"] == 0
    ram = env.driver_pages(2)[0]
    dev, vma = map_device(env, mm, 2, shared=True)
    memory.remap_pfn_range(vma, dev, ram, 2 * env.ps)
    (drec,) = [r for r in mm.smaps() if r["start"] == dev]
    assert drec["Rss"] == 0, env.say(f"special PTEs are not resident in 6.18 smaps: {drec}")


def test_2627_smaps_counts_special_ptes(env2627: Env) -> None:
    env = env2627
    mm = env.m.new_mm()
    ram = env.driver_pages(2)[0]
    dev, vma = map_device(env, mm, 2, shared=True)
    memory.remap_pfn_range(vma, dev, ram, 2 * env.ps)
    (drec,) = [r for r in mm.smaps() if r["start"] == dev]
    assert drec["Rss"] == 2 * env.ps


# -- MAP_POPULATE ---------------------------------------------------------------------------------------------
def _world(case: Case) -> dict[str, Any]:
    m = case.machine(ram="64M")
    return {"m": m, "mm": m.new_mm()}


def _state(m: Any, mm: MM) -> dict[str, Any]:
    return {
        "mem": {pa: bytes(b) for pa, b in m.mem.blocks() if b.any()},
        "refcount": m.memmap.refcount.tolist(),
        "mapcount": m.memmap.mapcount.tolist(),
        "flags": m.memmap.flags.tolist(),
        "frames": (m.frames._used.tobytes(), m.frames._cursor),
        "rss": dict(mm.rss),
        "vmas": [(v.start, v.end, v.flags, v.anon_vma) for v in mm.vmas],
        "zero": zero.current_zero_pfn(m),
    }


@pytest.mark.parametrize("prot", ["r", "x"])
@pytest.mark.parametrize("case", C618, ids=[c.id for c in C618])
def test_map_populate_of_read_only_private_anon_maps_the_zero_page(case: Case, prot: str) -> None:
    """populate_vma_page_range: no FOLL_WRITE without VM_WRITE, FOLL_FORCE for any accessible
    VMA: every page is read-faulted (zero page), the very state of touching each page."""
    a, b = _world(case), _world(case)
    npages = 600  # crosses PTE tables on every arch
    ps = a["m"].page_size
    va = a["mm"].mmap(npages * ps, prot, ANON | MAP_POPULATE)
    vb = b["mm"].mmap(npages * ps, prot, ANON)
    for i in range(npages):
        b["mm"].access(vb + i * ps, exec=prot == "x")
    assert va == vb
    assert _state(a["m"], a["mm"]) == _state(b["m"], b["mm"])
    env = Env(case)
    env.m = a["m"]
    for i in (0, npages // 2, npages - 1):
        _assert_zero_pte(env, a["mm"], va + i * ps)
    assert a["mm"].rss == {"file": 0, "anon": 0}


@pytest.mark.parametrize("case", C618, ids=[c.id for c in C618])
def test_map_populate_of_writable_private_anon_allocates(case: Case) -> None:
    """FOLL_WRITE for (VM_WRITE|VM_SHARED) == VM_WRITE: write faults, no zero page."""
    w = _world(case)
    m, mm = w["m"], w["mm"]
    mm.mmap(40 * m.page_size, "rw", ANON | MAP_POPULATE)
    assert mm.rss == {"file": 0, "anon": 40} and not zero.zero_allocated(m)


# -- bad page map -------------------------------------------------------------------------------------------------
def test_special_pte_in_a_plain_vma_is_a_bad_page_map(env618: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A special PTE that is not the zero page in an anonymous VMA: reported (record, log, trace)
    and taken as special by every path, no exception; zap clears it without touching a page."""
    env = env618
    if not env.m.mode.has_special:
        pytest.skip("no special bit: nothing can mark a PTE special")
    tracer = Recorder()
    env.m.tracer = tracer
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 2)
    page = env.driver_pages(1)[0]
    pte = env.mkspecial(int(env.ops.pfn_pte(page, vma.page_prot)))
    _set_pte(mm, addr, pte)
    before = env.counts(page)
    caplog.set_level(logging.WARNING, logger="mixedmap.mm")
    assert memory.vm_normal_page(vma, addr, pte) is None
    (rec,) = mm.bad_page_maps
    assert (rec.address, rec.pte, rec.pfn, rec.function) == (addr, pte, page, "vm_normal_page")
    assert rec.reason == memory.BAD_SPECIAL
    assert any("bad_page_map" in r.getMessage() for r in caplog.records), caplog.records
    assert any(e["event"] == "bad_page_map" and e["addr"] == addr for e in tracer.events)
    got = memory.vm_normal_pages(vma, np.array([addr], dtype=np.uint64), np.array([pte], dtype=np.uint64))
    assert got.tolist() == [-1] and len(mm.bad_page_maps) == 2
    mm.munmap(addr, 2 * env.ps)  # zap_pte_range asks vm_normal_page too: a third report
    assert len(mm.bad_page_maps) == 3 and env.counts(page) == before
    assert mm.rss == {"file": 0, "anon": 0}


def test_2627_special_pte_in_a_plain_vma_is_a_bug(env2627: Env) -> None:
    env = env2627
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 1)
    page = env.driver_pages(1)[0]
    pte = env.mkspecial(int(env.ops.pfn_pte(page, vma.page_prot)))
    _set_pte(mm, addr, pte)
    with pytest.raises(VMBug, match="special PTE in a VMA without PFNMAP/MIXEDMAP"):
        memory.vm_normal_page(vma, addr, pte)
    with pytest.raises(VMBug, match="special PTE in a VMA without PFNMAP/MIXEDMAP"):
        memory.vm_normal_pages(vma, np.array([addr], dtype=np.uint64), np.array([pte], dtype=np.uint64))
    with pytest.raises(VMBug):
        mm.munmap(addr, env.ps)
    assert mm.bad_page_maps == []
    _set_pte(mm, addr, mm.empty_pte)


def test_pfn_above_highest_memmap_pfn_is_a_bad_page_map(env618: Env) -> None:
    """The tail of __vm_normal_page: a normal-looking PTE beyond every memmap is reported and
    NULL; the batch reports in address order, the same records as the scalar calls."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 3)
    top = memory.highest_memmap_pfn(env.m)
    assert top == env.m.ram_size // env.ps - 1
    far = top + 1 + (1 << 18)
    ptes = [int(env.ops.pfn_pte(p, vma.page_prot)) for p in (far, far + 1)]
    vas = [addr, addr + 2 * env.ps]
    for va, pte in zip(vas, ptes, strict=True):
        assert memory.vm_normal_page(vma, va, pte) is None
    scalar = list(mm.bad_page_maps)
    assert [r.reason for r in scalar] == [memory.BAD_PFN] * 2 and [r.pfn for r in scalar] == [far, far + 1]
    mm.bad_page_maps.clear()
    got = memory.vm_normal_pages(vma, np.array(vas, dtype=np.uint64), np.array(ptes, dtype=np.uint64))
    assert got.tolist() == [-1, -1] and mm.bad_page_maps == scalar


def test_highest_memmap_pfn_follows_the_memmaps(env618: Env) -> None:
    """memmap_init_range: RAM and device memmaps raise it, memory without struct pages does not."""
    env = env618
    ram_top = env.m.ram_size // env.ps - 1
    assert memory.highest_memmap_pfn(env.m) == ram_top
    env.devmem(4, memmap=False, fill=False)
    assert memory.highest_memmap_pfn(env.m) == ram_top
    first = env.devmem(4, memmap=True, fill=False)
    assert memory.highest_memmap_pfn(env.m) == first + 3


def test_2627_normal_pte_without_struct_page_is_a_bug(env2627: Env) -> None:
    env = env2627
    mm = env.m.new_mm()
    addr, vma = _anon(env, mm, 1)
    far = env.m.ram_size // env.ps + (1 << 18)
    pte = int(env.ops.pfn_pte(far, vma.page_prot))
    with pytest.raises(VMBug, match="has no struct page"):
        memory.vm_normal_page(vma, addr, pte)


# -- find_normal_page ------------------------------------------------------------------------------------------------
class GrantOps:
    """A Xen-gntdev-like vm_ops: special PTEs whose page is known only to the driver."""

    def __init__(self, pages: dict[int, int]) -> None:
        self.pages = pages
        self.calls: list[int] = []

    def fault(self, vma: VMA, vmf: VMFault) -> FaultResult:
        return FaultResult.SIGBUS

    def find_normal_page(self, vma: VMA, addr: int) -> int | None:
        self.calls.append(addr)
        return self.pages.get(addr)


def _grant_vma(env: Env, mm: MM, ops: GrantOps | None) -> tuple[int, VMA]:
    def on_mmap(vma: VMA) -> None:
        vma.flags |= VM.MIXEDMAP | VM.DONTEXPAND
        if ops is not None:
            vma.vm_ops = ops

    return map_device(env, mm, 2, shared=True, on_mmap=on_mmap)


@pytest.mark.parametrize("case", C618 + C2627_A, ids=[c.id for c in C618 + C2627_A])
def test_find_normal_page_hook_names_the_page(case: Case) -> None:
    """6.18 __vm_normal_page asks vm_ops->find_normal_page first for a special PTE and returns its
    page, which zap then unmaps as a normal page; 2.6.27 has no hook (NULL in MIXEDMAP), and
    without the special bit the hook is never asked (it sits in the pte_special branch)."""
    env = Env(case)
    mm = env.m.new_mm()
    page = env.driver_pages(1)[0]
    ops = GrantOps({})
    addr, vma = _grant_vma(env, mm, ops)
    ops.pages[addr] = page
    foreign = env.devmem(1, memmap=False, fill=False)  # the PTE's pfn does not name the page
    pte = env.mkspecial(int(env.ops.pfn_pte(foreign, vma.page_prot)))
    _set_pte(mm, addr, pte)
    hooked = FIND_NORMAL_PAGE.applies(env.m.profile) and env.m.mode.has_special
    got = memory.vm_normal_page(vma, addr, pte)
    batch = memory.vm_normal_pages(vma, np.array([addr], dtype=np.uint64), np.array([pte], dtype=np.uint64))
    if hooked:
        assert got == page and batch.tolist() == [page] and ops.calls == [addr, addr]
        # The page is the driver's, mapped once: zap takes it back like any normal file page.
        env.m.pages.get_page(page)
        from mixedmap.mm import rmap

        rmap.page_add_file_rmap(env.m.memmap, page)
        mm.rss_file += 1
        mm.munmap(addr, 2 * env.ps)
        assert env.counts(page) == (1, 0) and mm.rss == {"file": 0, "anon": 0}
    else:
        assert got is None and batch.tolist() == [-1] and ops.calls == []
        mm.munmap(addr, 2 * env.ps)
    assert mm.bad_page_maps == []


def test_find_normal_page_returning_none_is_null(env618: Env) -> None:
    env = env618
    if not env.m.mode.has_special:
        pytest.skip("the hook is only asked for special PTEs")
    mm = env.m.new_mm()
    ops = GrantOps({})
    addr, vma = _grant_vma(env, mm, ops)
    pte = env.mkspecial(int(env.ops.pfn_pte(env.driver_pages(1)[0], vma.page_prot)))
    assert memory.vm_normal_page(vma, addr, pte) is None and ops.calls == [addr]
    assert mm.bad_page_maps == []


# -- a property: reads and writes over anonymous pages ----------------------------------------------------------
OPS = st.lists(
    st.tuples(st.sampled_from(["read", "write", "fork", "munmap_child"]), st.integers(0, 11)), max_size=30
)


@pytest.mark.parametrize("case", C618, ids=[c.id for c in C618])
@settings(max_examples=20, deadline=None)
@given(ops=OPS)
def test_random_reads_and_writes_keep_zero_page_invariants(case: Case, ops: list[tuple[str, int]]) -> None:
    """After every step: each present PTE maps either the zero page (read-only, NULL, never
    counted) or an exclusive anonymous page of its own; RSS counts exactly the latter; the
    zero page stays refcount 1, mapcount 0; contents are what was written (zeroes elsewhere).
    At the end everything exits and the zero page is released: no leak, free RAM is back."""
    env = Env(case, ram="16M")
    free = env.m.pages.nr_free
    npages = 12
    parent = env.m.new_mm()
    addr, _vma = _anon(env, parent, npages)
    shadow: dict[int, dict[int, bytes]] = {parent.id: {}}
    mms = [parent]
    for op, i in ops:
        mm = mms[i % len(mms)]
        va = addr + (i % npages) * env.ps
        if op == "read":
            assert mm.read(va, 4) == shadow[mm.id].get(va, bytes(4))
        elif op == "write":
            data = bytes([i + 1] * 4)
            mm.write(va, data)
            shadow[mm.id][va] = data
        elif op == "fork" and len(mms) < 3:
            child = mm.fork()
            mms.append(child)
            shadow[child.id] = dict(shadow[mm.id])
        elif op == "munmap_child" and len(mms) > 1:
            victim = mms.pop()
            victim.exit()
            del shadow[victim.id]
        zpfn = zero.current_zero_pfn(env.m)
        mapcounts: dict[int, int] = {}
        for m_ in mms:
            anon = 0
            for k in range(npages):
                v = addr + k * env.ps
                pte = env.pte(m_, v)
                if not env.present(pte):
                    continue
                page = env.normal_page(m_, v)
                if env.pfn_of(pte) == zpfn:
                    assert page is None and not env.writable(pte)
                    assert v not in shadow[m_.id], env.say(f"written page {v:#x} still maps the zero page")
                else:
                    assert page is not None and env.page_flags(page) & PG.anon
                    mapcounts[page] = mapcounts.get(page, 0) + 1
                    anon += 1
            assert m_.rss == {"file": 0, "anon": anon}
        for page, n in mapcounts.items():
            assert env.counts(page) == (n, n), env.say(
                f"page {page:#x}: refcount/mapcount {env.counts(page)} != {n}"
            )
        if zpfn is not None:
            _assert_zero_page_untouched(env)
        assert all(m_.bad_page_maps == [] for m_ in mms)
    _teardown_clean(env, free)
