"""Faults and copy-on-write as 2.6.27 ``mm/memory.c`` takes them (kernel-mm-semantics.md 6.1,
6.2, invariants 15-17): anonymous faults, ``->fault`` pages and the early COW, COW from a
normal page and from a special pfn (the copy is read through the user address: the bytes
are checked), reuse of an exclusively owned anonymous page, the shared-writable special PTE
made writable in place (only with VM_WRITE *and* VM_SHARED), and the SIGSEGV / SIGBUS / OOM
outcomes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mixedmap import EFAULT, PG
from mixedmap.errors import SIGBUS, SIGSEGV, OOMError
from mixedmap.mm import memory
from mixedmap.mm.gup import get_user_pages
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, VMA, FaultResult, VMFault

from .helpers import VM, Env, inserting, map_device

PFNMAP, MIXEDMAP = VM.PFNMAP, VM.MIXEDMAP
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def _page_handler(env: Env, pfns: list[int]) -> Callable[[VMA, VMFault], FaultResult]:
    """A ->fault that hands back a driver page in vmf->page with a reference (returns 0)."""

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        pfn = pfns[vmf.pgoff]
        env.m.pages.get_page(pfn)
        vmf.page = pfn
        return FaultResult.MINOR

    return fault


def _patched(data: bytes, off: int, new: bytes) -> bytes:
    return data[:off] + new + data[off + len(new) :]


# -- anonymous faults ----------------------------------------------------------------------------
def test_anonymous_read_fault_maps_a_fresh_zeroed_page(env: Env) -> None:
    """2.6.27 do_anonymous_page: no zero page yet -- even a read allocates; the PTE is
    writable and dirty (maybe_mkwrite(pte_mkdirty)) in a writable VMA."""
    mm = env.m.new_mm()
    addr = mm.mmap(2 * env.ps, "rw", ANON)
    vma = mm.find_vma(addr)
    assert vma is not None and not vma.anon_vma, env.say("a fresh anonymous VMA has no anon_vma yet")
    acc = mm.access(addr)
    pte = env.pte(mm, addr)
    assert acc.fault == "fault", env.say(f"first touch takes a fault, got {acc.fault}", pte=pte)
    assert env.present(pte) and env.writable(pte) and env.made_dirty(pte), env.say(
        "anon PTE: present|write|dirty", pte=pte
    )
    assert not env.special(pte) and env.normal_page(mm, addr) == acc.pfn, env.say(
        "anon page is normal", pte=pte
    )
    info = env.m.page(acc.pfn)
    assert info is not None and (info.refcount, info.mapcount) == (1, 1), env.say(
        f"new anon page {info}", pte=pte
    )
    assert info.flags & PG.anon, env.say(f"PageAnon not set: {info}", pte=pte)
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"anon_rss +1: {mm.rss}", pte=pte)
    assert vma.anon_vma, env.say("the first anonymous page gives the VMA an anon_vma")
    assert mm.read(addr, 64) == bytes(64), env.say("a new anonymous page reads as zeroes", pte=pte)
    assert mm.access(addr).fault == "none", env.say("the second access takes no fault", pte=env.pte(mm, addr))
    assert env.none(env.pte(mm, addr + env.ps)), env.say(
        "the neighbour stays none", pte=env.pte(mm, addr + env.ps)
    )


def test_anonymous_read_fault_in_a_read_only_vma(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(env.ps, "r", ANON)
    mm.access(addr)
    pte = env.pte(mm, addr)
    assert env.present(pte) and not env.writable(pte), env.say("read-only VMA -> read-only anon PTE", pte=pte)
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"RSS {mm.rss}", pte=pte)


def test_anonymous_write_fault(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(env.ps, "rw", ANON)
    mm.write(addr + 100, b"hello")
    pte = env.pte(mm, addr)
    assert mm.read(addr + 98, 9) == b"\0\0hello\0\0", env.say("written bytes read back", pte=pte)
    assert env.writable(pte) and env.made_dirty(pte), env.say("write fault -> writable dirty PTE", pte=pte)
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"RSS {mm.rss}", pte=pte)


# -- ->fault returning a page, and the early COW (6.1) -------------------------------------------
def test_fault_page_read_maps_a_file_page(env: Env) -> None:
    mm = env.m.new_mm()
    pfns = env.driver_pages(2)
    addr, _vma = map_device(env, mm, 2, shared=True, fault=_page_handler(env, pfns))
    acc = mm.access(addr + env.ps)
    pte = env.pte(mm, addr + env.ps)
    assert acc.pfn == pfns[1] and env.normal_page(mm, addr + env.ps) == pfns[1], env.say(
        "maps vmf->page", pte=pte
    )
    assert env.counts(pfns[1]) == (2, 1), env.say(
        f"the handler's reference becomes the PTE's: {env.counts(pfns[1])}"
    )
    assert mm.rss == {"file": 1, "anon": 0}, env.say(f"file_rss +1: {mm.rss}", pte=pte)
    assert mm.read(addr + env.ps, env.ps) == env.frame(pfns[1]), env.say("the page's bytes", pte=pte)
    mm.exit()
    assert env.counts(pfns[1]) == (1, 0), env.say(f"exit drops the PTE's reference: {env.counts(pfns[1])}")


def test_shared_file_page_dirty_accounting(env: Env) -> None:
    """A write fault that maps a file page in a shared VMA dirties the page at once
    (__do_fault's dirty_page); a write through an already writable PTE only dirties the
    PTE, and zap hands the dirty bit to the page."""
    mm = env.m.new_mm()
    pfns = env.driver_pages(2)
    addr, _vma = map_device(env, mm, 2, shared=True, fault=_page_handler(env, pfns))
    mm.write(addr, b"w")
    p0 = env.pte(mm, addr)
    assert env.page_flags(pfns[0]) & PG.dirty, env.say(
        "write fault on a shared file page: set_page_dirty", pte=p0
    )
    assert env.normal_page(mm, addr) == pfns[0] and mm.rss == {"file": 1, "anon": 0}, env.say(
        "no copy", pte=p0
    )
    mm.access(addr + env.ps)
    p1 = env.pte(mm, addr + env.ps)
    assert env.writable(p1), env.say("shared rw VMA without write-notify: the read maps it writable", pte=p1)
    mm.write(addr + env.ps, b"w")
    p1w = env.pte(mm, addr + env.ps)
    assert not env.page_flags(pfns[1]) & PG.dirty, env.say("no fault, no set_page_dirty yet", pte=p1w)
    assert env.made_dirty(p1w), env.say("the MMU dirtied the PTE", pte=p1w)
    mm.munmap(addr, 2 * env.ps)
    if env.dirty(int(env.ops.pte_mkdirty(p1))):  # s390 keeps dirty in the storage key instead
        assert env.page_flags(pfns[1]) & PG.dirty, env.say("zap propagates the PTE's dirty bit", pte=p1w)
    assert [env.counts(p) for p in pfns] == [(1, 0), (1, 0)], env.say("munmap dropped the references")


def test_private_write_fault_copies_early(env: Env) -> None:
    """__do_fault with FAULT_FLAG_WRITE on a private VMA: copy vmf->page into a new
    anonymous page, map that, release the handler's reference -- the file page is never
    mapped."""
    mm = env.m.new_mm()
    pfns = env.driver_pages(1)
    src = env.frame(pfns[0])
    addr, vma = map_device(env, mm, 1, shared=False, fault=_page_handler(env, pfns))
    acc = mm.access(addr, write=True)
    pte = env.pte(mm, addr)
    assert acc.fault == "fault", env.say(f"one fault (early COW), got {acc.fault}", pte=pte)
    assert acc.pfn != pfns[0] and env.page_flags(acc.pfn) & PG.anon, env.say("maps a new anon page", pte=pte)
    assert env.writable(pte) and env.made_dirty(pte), env.say("early COW PTE is writable and dirty", pte=pte)
    assert env.counts(pfns[0]) == (1, 0), env.say(f"source page untouched at the end: {env.counts(pfns[0])}")
    assert env.counts(acc.pfn) == (1, 1), env.say(f"COW page {env.counts(acc.pfn)}", pte=pte)
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"RSS {mm.rss}", pte=pte)
    assert mm.read(addr, env.ps) == src, env.say("the copy holds the file page's bytes", pte=pte)
    assert vma.anon_vma, env.say("early COW gives the VMA an anon_vma")


# -- COW from a normal page (6.2, old != NULL) ---------------------------------------------------
@pytest.mark.parametrize("source", ["fault-page", "vm_insert_page"])
def test_cow_from_a_normal_page(env: Env, source: str) -> None:
    mm = env.m.new_mm()
    pfns = env.driver_pages(1)
    src = env.frame(pfns[0])
    if source == "fault-page":
        addr, vma = map_device(env, mm, 1, shared=False, fault=_page_handler(env, pfns))
        mm.access(addr)
    else:
        addr, vma = map_device(env, mm, 1, shared=False)
        memory.vm_insert_page(vma, addr, pfns[0])
    ro = env.pte(mm, addr)
    assert not env.writable(ro) and env.normal_page(mm, addr) == pfns[0], env.say(
        "read-only file page", pte=ro
    )
    assert mm.rss == {"file": 1, "anon": 0} and env.counts(pfns[0]) == (2, 1), env.say(
        "mapped file page", pte=ro
    )
    acc = mm.access(addr + 8, write=True)
    pte = env.pte(mm, addr)
    assert acc.fault == "wp" and acc.pfn != pfns[0], env.say(
        f"do_wp_page copies ({acc.fault})", old=ro, new=pte
    )
    assert env.writable(pte) and env.made_dirty(pte) and not env.special(pte), env.say(
        "COW PTE", old=ro, new=pte
    )
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"file_rss -1, anon_rss +1: {mm.rss}", pte=pte)
    assert env.counts(pfns[0]) == (1, 0), env.say(
        f"old page: rmap removed, two refs dropped: {env.counts(pfns[0])}"
    )
    assert env.counts(acc.pfn) == (1, 1), env.say(f"new page {env.counts(acc.pfn)}", pte=pte)
    mm.write(addr + 8, b"new!")
    assert mm.read(addr, env.ps) == _patched(src, 8, b"new!"), env.say("copy + write", pte=pte)
    assert env.frame(pfns[0]) == src, env.say("the file page's bytes must not change")
    assert vma.anon_vma, env.say("COW gives the VMA an anon_vma")


# -- COW from a special pfn (6.2, old == NULL; invariant 17) -------------------------------------
SOURCES = ["remap-nopage", "remap-ram", "mixed-nopage", "mixed-ram", "pfn-mixedmap-nopage"]


def _special_source(env: Env, mm: MM, source: str) -> tuple[int, VMA, int]:
    """A private VMA whose page 1 is (or will be, at the first fault) special: (addr, VMA,
    the source pfn)."""
    kind = source.rsplit("-", 1)[1]
    if source == "mixed-ram" and env.scheme == "B":
        pytest.skip(f"{env.case.id}: vm_insert_mixed of a pfn_valid pfn is a normal page in scheme B")
    src = env.devmem(3) if kind == "nopage" else env.driver_pages(3)[0]
    if source.startswith("remap"):
        addr, vma = map_device(env, mm, 3, shared=False)
        memory.remap_pfn_range(vma, addr, src, 3 * env.ps)
    elif source.startswith("mixed"):
        addr, vma = map_device(
            env,
            mm,
            3,
            shared=False,
            flags=MIXEDMAP,
            fault=inserting(memory.vm_insert_mixed, lambda i: src + i),
        )
    else:
        addr, vma = map_device(
            env, mm, 3, shared=False, flags=MIXEDMAP, fault=inserting(memory.vm_insert_pfn, lambda i: src + i)
        )
    return addr, vma, src + 1


@pytest.mark.parametrize("source", SOURCES)
def test_cow_from_a_special_pfn_copies_through_the_user_address(env: Env, source: str) -> None:
    mm = env.m.new_mm()
    addr, vma, pfn = _special_source(env, mm, source)
    va = addr + env.ps
    data = env.frame(pfn)
    counts = env.m.page(pfn)
    mm.access(addr)  # page 0 read: the page tables exist from here on
    free0 = env.m.pages.nr_free
    acc = mm.access(va + 16, write=True)
    pte = env.pte(mm, va)
    want_fault = "wp" if source.startswith("remap") else "fault+wp"  # NOPAGE, then the retried write
    assert acc.fault == want_fault, env.say(f"{source}: faults taken {acc.fault}, want {want_fault}", pte=pte)
    assert acc.pfn != pfn and env.normal_page(mm, va) == acc.pfn, env.say(
        f"{source}: a new normal page", pte=pte
    )
    assert not env.special(pte) and env.writable(pte) and env.made_dirty(pte), env.say(
        "COW PTE of a special source", pte=pte
    )
    info = env.m.page(acc.pfn)
    assert info is not None and info.flags & PG.anon and (info.refcount, info.mapcount) == (1, 1), env.say(
        f"{source}: new anon page {info}", pte=pte
    )
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"{source}: anon +1, file unchanged: {mm.rss}", pte=pte)
    assert env.m.page(pfn) == counts, env.say(
        f"{source}: no reference dropped on the special source", pte=pte
    )
    assert env.m.pages.nr_free == free0 - 1, env.say(f"{source}: exactly one page allocated")
    assert mm.read(va, env.ps) == data, env.say(f"{source}: the copy holds the bytes the user saw", pte=pte)
    mm.write(va + 16, b"private")
    assert env.frame(pfn) == data, env.say(f"{source}: the device/driver memory must not change")
    assert mm.read(va, env.ps) == _patched(data, 16, b"private"), env.say(f"{source}: copy + write", pte=pte)
    # the neighbours are still the special originals
    for i in (0, 2):
        n = env.pte(mm, addr + i * env.ps)
        assert env.none(n) or env.normal_page(mm, addr + i * env.ps) is None, env.say(
            f"{source}: page {i}", pte=n
        )
    assert vma.anon_vma, env.say(f"{source}: the COW must give the VMA an anon_vma")


def test_read_then_write_of_a_special_pfn(env: Env) -> None:
    """The two-step private XIP pattern (S1): read maps the pfn read-only and special, the
    write COWs it; the special PTE is never writable in a COW VMA (invariant 15)."""
    mm = env.m.new_mm()
    dev = env.devmem(1)
    addr, _vma = map_device(
        env, mm, 1, shared=False, flags=MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: dev)
    )
    assert mm.access(addr).fault == "fault", env.say("the first read takes a fault")
    ro = env.pte(mm, addr)
    assert env.pfn_of(ro) == dev and not env.writable(ro), env.say("read maps the pfn read-only", pte=ro)
    assert env.special(ro) == (env.scheme == "A") and env.normal_page(mm, addr) is None, env.say(
        "special", pte=ro
    )
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"a special PTE counts nowhere: {mm.rss}", pte=ro)
    acc = mm.access(addr, write=True)
    assert acc.fault == "wp" and acc.pfn != dev, env.say(
        f"write COWs ({acc.fault})", old=ro, new=env.pte(mm, addr)
    )


# -- reuse of an exclusively owned anonymous page (6.2 step 3) -----------------------------------
def test_exclusive_anon_page_is_reused_not_copied(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(env.ps, "rw", ANON)
    mm.write(addr, b"mine")
    pfn = env.pfn_of(env.pte(mm, addr))
    child = mm.fork()
    ro = env.pte(mm, addr)
    assert not env.writable(ro) and env.counts(pfn) == (2, 2), env.say(
        "after fork: shared, read-only", pte=ro
    )
    child.exit()
    assert env.counts(pfn) == (1, 1), env.say(f"child gone: exclusive again {env.counts(pfn)}", pte=ro)
    free0 = env.m.pages.nr_free
    acc = mm.access(addr, write=True)
    pte = env.pte(mm, addr)
    assert acc.fault == "wp" and acc.pfn == pfn, env.say(
        f"reuse: same pfn ({acc.pfn:#x} vs {pfn:#x})", old=ro, new=pte
    )
    assert env.writable(pte) and env.made_dirty(pte) and env.made_young(pte), env.say(
        "reused PTE: write|dirty|young", pte=pte
    )
    assert env.m.pages.nr_free == free0 and mm.rss == {"file": 0, "anon": 1}, env.say(
        "reuse allocates nothing"
    )
    assert mm.read(addr, 4) == b"mine", env.say("the reused page keeps its bytes", pte=pte)


def test_shared_anon_page_is_copied_then_the_last_owner_reuses_it(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(env.ps, "rw", ANON)
    mm.write(addr, b"both")
    pfn = env.pfn_of(env.pte(mm, addr))
    child = mm.fork()
    acc = mm.access(addr, write=True)
    assert acc.fault == "wp" and acc.pfn != pfn, env.say(
        "mapcount 2: the parent copies", pte=env.pte(mm, addr)
    )
    assert env.counts(pfn) == (1, 1), env.say(
        f"the old page keeps the child's mapping only: {env.counts(pfn)}"
    )
    assert mm.rss == {"file": 0, "anon": 1} and child.rss == {"file": 0, "anon": 1}, env.say(
        "anon -> anon: no RSS move"
    )
    cacc = child.access(addr, write=True)
    assert cacc.fault == "wp" and cacc.pfn == pfn, env.say(
        "mapcount 1 now: the child reuses", pte=env.pte(child, addr)
    )
    assert child.read(addr, 4) == b"both" and mm.read(addr, 4) == b"both", env.say(
        "both copies keep the bytes"
    )


def test_reuse_after_an_mprotect_round_trip(env: Env) -> None:
    """mprotect(rw) on a private VMA installs PAGE_COPY (read-only): the next write takes a
    write-protect fault that reuses the exclusive anonymous page."""
    mm = env.m.new_mm()
    addr = mm.mmap(env.ps, "rw", ANON)
    mm.write(addr, b"x")
    pfn = env.pfn_of(env.pte(mm, addr))
    mm.mprotect(addr, env.ps, "r")
    mm.mprotect(addr, env.ps, "rw")
    ro = env.pte(mm, addr)
    assert not env.writable(ro), env.say("private rw protection is read-only (COW)", pte=ro)
    acc = mm.access(addr, write=True)
    assert acc.fault == "wp" and acc.pfn == pfn, env.say(
        "exclusive anon page reused", old=ro, new=env.pte(mm, addr)
    )


# -- shared-writable special PTE: reuse, never copy (6.2 step 2, C-DIRTY, invariant 16) -----------
def _ro_prot(vma: VMA) -> int:
    """What a write-notifying mapping installs: vm_get_page_prot(flags & ~VM_SHARED)."""
    return vma.mm.vm_get_page_prot(vma.flags & ~VM.SHARED)


@pytest.mark.parametrize("api", ["vm_insert_mixed", "vm_insert_pfn"])
def test_shared_writable_special_pte_is_made_writable_in_place(env: Env, api: str) -> None:
    mm = env.m.new_mm()
    dev = env.devmem(1)
    fn = memory.vm_insert_mixed if api == "vm_insert_mixed" else memory.vm_insert_pfn
    flags = MIXEDMAP if api == "vm_insert_mixed" else PFNMAP
    addr, vma = map_device(
        env,
        mm,
        1,
        shared=True,
        flags=flags,
        on_mmap=lambda v: setattr(v, "page_prot", _ro_prot(v)),
        fault=inserting(fn, lambda i: dev),
    )
    assert vma.flags & (VM.WRITE | VM.SHARED) == VM.WRITE | VM.SHARED, env.say(vma.describe())
    mm.access(addr)
    ro = env.pte(mm, addr)
    assert not env.writable(ro) and env.normal_page(mm, addr) is None, env.say(
        "read-only special PTE", pte=ro
    )
    free0 = env.m.pages.nr_free
    acc = mm.access(addr, write=True)
    pte = env.pte(mm, addr)
    assert acc.fault == "wp" and acc.pfn == dev, env.say(
        f"no copy: same pfn, fault {acc.fault}", old=ro, new=pte
    )
    assert env.writable(pte) and env.made_dirty(pte) and env.made_young(pte), env.say(
        "made write|dirty|young", old=ro, new=pte
    )
    assert env.special(pte) == (env.scheme == "A") and env.normal_page(mm, addr) is None, env.say(
        "still special", pte=pte
    )
    want = int(env.ops.pte_mkwrite(env.ops.pte_mkdirty(env.ops.pte_mkyoung(ro))))
    assert pte == want, env.say("only young, dirty and write may change", old=ro, new=pte, want=want)
    assert env.m.pages.nr_free == free0 and mm.rss == {"file": 0, "anon": 0}, env.say(
        "nothing allocated or counted"
    )
    mm.write(addr + 4, b"shared")
    assert env.frame(dev)[4:10] == b"shared", env.say("the write lands in device memory", pte=pte)


def test_shared_vma_without_vm_write_gets_a_private_copy_on_a_forced_write(env: Env) -> None:
    """MAP_SHARED, PROT_READ of a writable file: VM_SHARED|VM_MAYWRITE but no VM_WRITE. A
    user write is SIGSEGV; a forced get_user_pages write COWs (the PTE stays read-only)."""
    mm = env.m.new_mm()
    dev = env.devmem(1)
    data = env.frame(dev)
    addr, vma = map_device(
        env,
        mm,
        1,
        shared=True,
        prot="r",
        flags=MIXEDMAP,
        fault=inserting(memory.vm_insert_mixed, lambda i: dev),
    )
    assert vma.flags & VM.SHARED and vma.flags & VM.MAYWRITE and not vma.flags & VM.WRITE, env.say(
        vma.describe()
    )
    mm.access(addr)
    ro = env.pte(mm, addr)
    with pytest.raises(SIGSEGV):
        mm.access(addr, write=True)
    assert env.pte(mm, addr) == ro, env.say("SIGSEGV changed the PTE", old=ro, new=env.pte(mm, addr))
    with pytest.raises(EFAULT):
        get_user_pages(mm, addr, 1, write=True)  # no VM_WRITE and no force
    pinned = get_user_pages(mm, addr, 1, write=True, force=True)
    pte = env.pte(mm, addr)
    (new,) = pinned.tolist()
    assert new != dev and env.pfn_of(pte) == new, env.say("forced write: an anonymous copy", old=ro, new=pte)
    assert not env.writable(pte), env.say("maybe_mkwrite: no VM_WRITE, no write bit", pte=pte)
    assert env.counts(new) == (2, 1) and mm.rss == {"file": 0, "anon": 1}, env.say(
        f"pinned COW page {env.counts(new)}"
    )
    assert env.frame(new) == data and env.frame(dev) == data, env.say(
        "copy of the device bytes; device unchanged"
    )
    env.m.pages.put_page(pinned)


def test_forced_write_needs_vm_maywrite(env: Env) -> None:
    """MAP_SHARED of a read-only file drops VM_MAYWRITE: even a forced GUP write is refused."""
    mm = env.m.new_mm()
    dev = env.devmem(1)
    addr, vma = map_device(
        env,
        mm,
        1,
        shared=True,
        prot="r",
        writable=False,
        flags=MIXEDMAP,
        fault=inserting(memory.vm_insert_mixed, lambda i: dev),
    )
    assert not vma.flags & (VM.SHARED | VM.MAYWRITE) and vma.flags & VM.MAYSHARE, env.say(vma.describe())
    assert not vma.is_cow, env.say("neither SHARED nor MAYWRITE: not a COW mapping")
    with pytest.raises(EFAULT):
        get_user_pages(mm, addr, 1, write=True, force=True)
    assert env.none(env.pte(mm, addr)), env.say("refused GUP faulted something in", pte=env.pte(mm, addr))


# -- SIGSEGV, SIGBUS, OOM --------------------------------------------------------------------------
def test_sigsegv_outcomes(env: Env) -> None:
    mm = env.m.new_mm()
    ro = mm.mmap(env.ps, "r", ANON)
    none = mm.mmap(env.ps, "none", ANON)
    mm.access(ro)
    before = env.pte(mm, ro)
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: mm.access(mm.task_size - env.ps), "no VMA"),
        (lambda: mm.access(ro, write=True), "write to a read-only VMA"),
        (lambda: mm.access(ro, exec=True), "exec in a non-exec VMA"),
        (lambda: mm.access(none), "PROT_NONE"),
        (lambda: mm.write(ro, b"x"), "mm.write into a read-only VMA"),
    ]
    for fn, what in cases:
        with pytest.raises(SIGSEGV) as exc:
            fn()
        assert exc.value.signal == "SIGSEGV", env.say(what)
    assert env.pte(mm, ro) == before, env.say("SIGSEGV changed a PTE", old=before, new=env.pte(mm, ro))
    assert env.none(env.pte(mm, none)), env.say("PROT_NONE got a PTE", pte=env.pte(mm, none))
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"RSS {mm.rss}")
    with pytest.raises(SIGSEGV) as exc2:
        mm.access(ro + 2 * env.ps + 5)
    assert exc2.value.va == ro + 2 * env.ps + 5, env.say("the signal names the faulting address")


def test_sigbus_from_the_fault_handler(env: Env) -> None:
    """A ->fault returning VM_FAULT_SIGBUS (e.g. xip_file_fault beyond EOF): SIGBUS, nothing
    mapped, nothing counted."""
    mm = env.m.new_mm()
    dev = env.devmem(1)

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        if vmf.pgoff >= 1:  # the "file" has one page
            return FaultResult.SIGBUS
        memory.vm_insert_mixed(vma, vmf.address, dev)
        return FaultResult.NOPAGE

    addr, _vma = map_device(env, mm, 3, shared=False, flags=MIXEDMAP, fault=fault)
    assert mm.read(addr, 8) == env.frame(dev)[:8], env.say("page 0 reads the device", pte=env.pte(mm, addr))
    for write in (False, True):
        with pytest.raises(SIGBUS) as exc:
            mm.access(addr + 2 * env.ps, write=write)
        assert exc.value.va == addr + 2 * env.ps, env.say(f"SIGBUS names {exc.value.va:#x}")
    assert env.none(env.pte(mm, addr + 2 * env.ps)), env.say(
        "SIGBUS mapped something", pte=env.pte(mm, addr + 2 * env.ps)
    )
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"RSS {mm.rss}")


def test_oom_outcomes(env: Env) -> None:
    """No free RAM: an anonymous fault and a COW both end in VM_FAULT_OOM, the PTE unchanged."""
    mm = env.m.new_mm()
    addr = mm.mmap(2 * env.ps, "rw", ANON)
    dev = env.devmem(1)
    daddr, _vma = map_device(
        env, mm, 1, shared=False, flags=MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: dev)
    )
    mm.access(addr)  # the page table exists now
    mm.access(daddr)
    special = env.pte(mm, daddr)
    with env.no_free_ram():
        with pytest.raises(OOMError):
            mm.access(addr + env.ps)
        with pytest.raises(OOMError):
            mm.access(daddr, write=True)
    assert env.none(env.pte(mm, addr + env.ps)), env.say(
        "OOM anon fault mapped", pte=env.pte(mm, addr + env.ps)
    )
    assert env.pte(mm, daddr) == special, env.say(
        "OOM COW changed the PTE", old=special, new=env.pte(mm, daddr)
    )
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"RSS {mm.rss}")
    assert mm.access(daddr, write=True).fault == "wp", env.say("with memory back the COW succeeds")
