"""fork, munmap, mprotect and exit over special and normal PTEs (kernel-mm-semantics.md 6.3,
6.4, 6.7, invariants 18-21, 25): the 2.6.27 copy decision, write-protect in parent and child,
refcount/mapcount/RSS for copied normal PTEs and none for special ones, munmap splitting
VMAs, mprotect keeping the special bit and the pfn, and exit freeing every page table and
leaking nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mixedmap.errors import EACCES
from mixedmap.mm import memory
from mixedmap.mm.gup import get_user_pages
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, VMA, FaultResult, VMFault

from .helpers import VM, Env, flags_str, hx, inserting, map_device

PFNMAP, MIXEDMAP = VM.PFNMAP, VM.MIXEDMAP
ANON = MAP_PRIVATE | MAP_ANONYMOUS
N = 3


def _page_handler(env: Env, pfns: list[int]) -> Callable[[VMA, VMFault], FaultResult]:
    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        env.m.pages.get_page(pfns[vmf.pgoff])
        vmf.page = pfns[vmf.pgoff]
        return FaultResult.MINOR

    return fault


def _build(env: Env, mm: MM, kind: str) -> tuple[int, VMA]:
    """A VMA of N pages of the given kind with every page present in ``mm``."""
    ps = env.ps
    if kind == "anon-touched":
        addr = mm.mmap(N * ps, "rw", ANON)
        for i in range(N):
            mm.write(addr + i * ps, b"a")
    elif kind.startswith("mixedmap"):
        dev = env.devmem(N)
        shared = kind == "mixedmap-shared"
        addr, _ = map_device(
            env,
            mm,
            N,
            shared=shared,
            flags=MIXEDMAP,
            fault=inserting(memory.vm_insert_mixed, lambda i: dev + i),
        )
        for i in range(N):
            mm.access(addr + i * ps)
        if kind == "mixedmap-private-after-cow":
            mm.write(addr + ps, b"c")
    elif kind.startswith("pfnmap"):
        ram = env.driver_pages(N)[0]
        addr, vma = map_device(env, mm, N, shared=kind == "pfnmap-shared")
        memory.remap_pfn_range(vma, addr, ram, N * ps)
    elif kind == "insertpage":
        pfns = env.driver_pages(N)
        addr, vma = map_device(env, mm, N, shared=False)
        for i, p in enumerate(pfns):
            memory.vm_insert_page(vma, addr + i * ps, p)
    elif kind == "file-page-shared":
        pfns = env.driver_pages(N)
        addr, _ = map_device(env, mm, N, shared=True, fault=_page_handler(env, pfns))
        for i in range(N):
            mm.access(addr + i * ps)
    else:
        raise AssertionError(kind)
    found = mm.find_vma(addr)
    assert found is not None
    return addr, found


#: 2.6.27 copy_page_range: HUGETLB|NONLINEAR|PFNMAP|INSERTPAGE, or an anon_vma.
COPIED = {
    "anon-touched": True,
    "mixedmap-private-no-cow": False,
    "mixedmap-private-after-cow": True,
    "mixedmap-shared": False,
    "pfnmap-shared": True,
    "pfnmap-cow": True,
    "insertpage": True,
    "file-page-shared": False,
}


@pytest.mark.parametrize("kind", list(COPIED))
def test_fork_copy_decision(env: Env, kind: str) -> None:
    mm = env.m.new_mm()
    addr, vma = _build(env, mm, kind)
    parent = [env.pte(mm, addr + i * env.ps) for i in range(N)]
    child = mm.fork()
    cvma = child.find_vma(addr)
    assert cvma is not None and (cvma.start, cvma.end, cvma.flags) == (vma.start, vma.end, vma.flags), (
        env.say(f"{kind}: the child gets the same VMA ({flags_str(vma)})")
    )
    got = [env.pte(child, addr + i * env.ps) for i in range(N)]
    if COPIED[kind]:
        for i, (p, c) in enumerate(zip(parent, got, strict=True)):
            assert env.present(c) and env.pfn_of(c) == env.pfn_of(p), env.say(
                f"{kind}: page {i} copied", parent=p, child=c
            )
            assert env.special(c) == env.special(p), env.say(
                f"{kind}: page {i} special bit kept", parent=p, child=c
            )
    else:
        assert all(env.none(c) for c in got), env.say(
            f"{kind}: VMA not copied, child PTEs none: {[hx(c) for c in got]}"
        )
        assert child.rss == {"file": 0, "anon": 0}, env.say(f"{kind}: child RSS {child.rss}")
        # the child refaults and gets the same data
        assert child.read(addr + env.ps, 16) == mm.read(addr + env.ps, 16), env.say(
            f"{kind}: refault reads the same"
        )


def test_vm_dontcopy_vma_is_not_inherited(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = _build(env, mm, "anon-touched")
    vma.flags |= VM.DONTCOPY
    child = mm.fork()
    assert child.find_vma(addr) is None and child.vmas == [], env.say("VM_DONTCOPY VMA reached the child")
    assert child.rss == {"file": 0, "anon": 0}, env.say(f"child RSS {child.rss}")


@pytest.mark.parametrize("kind", ["anon-touched", "mixedmap-private-after-cow", "pfnmap-cow", "insertpage"])
def test_fork_write_protects_cow_ptes_in_parent_and_child(env: Env, kind: str) -> None:
    """copy_one_pte: COW VMA -> ptep_set_wrprotect in the parent and pte_wrprotect in the
    child; the child's copy is also pte_mkold. Nothing else changes (pfn, special bit)."""
    mm = env.m.new_mm()
    addr, _vma = _build(env, mm, kind)
    before = [env.pte(mm, addr + i * env.ps) for i in range(N)]
    child = mm.fork()
    for i, old in enumerate(before):
        p, c = env.pte(mm, addr + i * env.ps), env.pte(child, addr + i * env.ps)
        want_p = int(env.ops.pte_wrprotect(old))
        want_c = int(env.ops.pte_mkold(want_p))
        assert p == want_p, env.say(
            f"{kind} page {i}: parent PTE must be pte_wrprotect(old)", old=old, parent=p, want=want_p
        )
        assert c == want_c, env.say(
            f"{kind} page {i}: child = pte_mkold(pte_wrprotect(old))", old=old, child=c, want=want_c
        )
        assert not env.writable(p) and not env.writable(c), env.say(
            f"{kind} page {i} writable after fork", parent=p, child=c
        )
    # a write on either side is a write-protect fault, never a silent shared write
    mm.write(addr, b"P")
    child.write(addr, b"C")
    assert mm.read(addr, 1) == b"P" and child.read(addr, 1) == b"C", env.say(
        f"{kind}: COW separated the copies"
    )


def test_fork_of_a_shared_vma_keeps_the_parent_and_cleans_the_child(env: Env) -> None:
    mm = env.m.new_mm()
    addr, _vma = _build(env, mm, "pfnmap-shared")
    mm.write(addr, b"dirty")  # the MMU makes the PTE young and dirty
    before = env.pte(mm, addr)
    child = mm.fork()
    p, c = env.pte(mm, addr), env.pte(child, addr)
    assert p == before, env.say("shared VMA: the parent PTE is left alone", old=before, parent=p)
    want = int(env.ops.pte_mkold(env.ops.pte_mkclean(before)))
    assert c == want, env.say(
        "shared VMA: child = pte_mkold(pte_mkclean(parent))", parent=p, child=c, want=want
    )
    assert env.writable(c), env.say("a shared writable PTE stays writable in the child", child=c)


def test_fork_refcounts_normal_but_not_special(env: Env) -> None:
    """Invariant 20: per copied normal PTE refcount +1, mapcount +1, child RSS +1 of its
    type; per copied special PTE nothing (RAM-backed special pfns show it)."""
    mm = env.m.new_mm()
    ram = env.driver_pages(4)
    # a COW PFNMAP VMA over driver RAM (special), with page 1 COWed (anonymous, normal)
    addr, vma = map_device(env, mm, 2, shared=False)
    memory.remap_pfn_range(vma, addr, ram[0], 2 * env.ps)
    mm.write(addr + env.ps, b"anon")
    anon = env.pfn_of(env.pte(mm, addr + env.ps))
    # a vm_insert_page VMA (normal file pages)
    iaddr, ivma = map_device(env, mm, 2, shared=False)
    memory.vm_insert_page(ivma, iaddr, ram[2])
    memory.vm_insert_page(ivma, iaddr + env.ps, ram[3])
    before = {p: env.counts(p) for p in (*ram, anon)}
    assert mm.rss == {"file": 2, "anon": 1}, env.say(f"parent RSS {mm.rss}")
    child = mm.fork()
    after = {p: env.counts(p) for p in (*ram, anon)}
    want = dict(before)
    for p in (anon, ram[2], ram[3]):
        want[p] = (before[p][0] + 1, before[p][1] + 1)
    assert after == want, env.say(f"(refcount, mapcount) after fork {after}, want {want}")
    assert child.rss == {"file": 2, "anon": 1}, env.say(f"child RSS {child.rss} (file 2, anon 1)")
    assert mm.rss == {"file": 2, "anon": 1}, env.say(f"fork changed the parent's RSS {mm.rss}")
    child.exit()
    assert {p: env.counts(p) for p in (*ram, anon)} == before, env.say(
        "child exit must undo exactly the fork"
    )


# -- munmap ------------------------------------------------------------------------------------
def test_munmap_splits_vmas_and_zaps_only_its_range(env: Env) -> None:
    mm = env.m.new_mm()
    pfns = env.driver_pages(4)
    addr, vma = map_device(env, mm, 4, shared=True, pgoff=10, fault=_page_handler(env, [0] * 10 + pfns))
    for i in range(4):
        mm.access(addr + i * env.ps)
    flags = vma.flags
    before = [env.pte(mm, addr + i * env.ps) for i in range(4)]
    mm.munmap(addr + env.ps, env.ps)
    head, tail = mm.find_vma(addr), mm.find_vma(addr + 2 * env.ps)
    assert head is not None and tail is not None and head is not tail, env.say("munmap of the middle splits")
    assert (head.start, head.end, head.pgoff) == (addr, addr + env.ps, 10), env.say(
        f"head {head.describe()} {head.pgoff}"
    )
    assert (tail.start, tail.end, tail.pgoff) == (addr + 2 * env.ps, addr + 4 * env.ps, 12), env.say(
        f"tail {tail.describe()} pgoff {tail.pgoff} (split_vma adds the page offset)"
    )
    assert head.flags == tail.flags == flags, env.say("split VMAs keep the flags")
    assert mm.find_vma(addr + env.ps) is None, env.say("the hole has no VMA")
    after = [env.pte(mm, addr + i * env.ps) for i in range(4)]
    assert env.none(after[1]), env.say("the unmapped PTE is none", pte=after[1])
    for i in (0, 2, 3):
        assert after[i] == before[i], env.say(f"page {i} must be untouched", old=before[i], new=after[i])
    assert env.counts(pfns[1]) == (1, 0), env.say(
        f"zap: mapcount -1, reference dropped: {env.counts(pfns[1])}"
    )
    assert mm.rss == {"file": 3, "anon": 0}, env.say(f"file_rss -1: {mm.rss}")
    assert mm.read(addr + 2 * env.ps, 8) == env.frame(pfns[2])[:8], env.say("the tail still maps its page")
    mm.munmap(addr, 4 * env.ps)  # across the hole and both pieces
    assert mm.vmas == [] and mm.rss == {"file": 0, "anon": 0}, env.say(f"all gone: {mm.rss}")
    assert [env.counts(p) for p in pfns] == [(1, 0)] * 4, env.say("every reference dropped")


def test_munmap_of_special_ptes_changes_no_counter(env: Env) -> None:
    mm = env.m.new_mm()
    ram = env.driver_pages(4)[0]
    addr, vma = map_device(env, mm, 4, shared=False)
    memory.remap_pfn_range(vma, addr, ram, 4 * env.ps)
    mm.munmap(addr + 3 * env.ps, env.ps)  # the tail
    mm.munmap(addr, env.ps)  # the head
    rest = mm.find_vma(addr + env.ps)
    assert rest is not None and (rest.start, rest.end) == (addr + env.ps, addr + 3 * env.ps), env.say(
        "trimmed VMA"
    )
    assert rest.pgoff == ram + 1, env.say(f"vm_pgoff follows the head trim: {rest.pgoff:#x} != {ram + 1:#x}")
    assert [env.counts(ram + i) for i in range(4)] == [(1, 0)] * 4, env.say(
        "special zap touched struct pages"
    )
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"RSS {mm.rss}")


def test_zap_propagates_dirty_to_file_pages_only(env: Env) -> None:
    from mixedmap import PG

    mm = env.m.new_mm()
    (pfn,) = env.driver_pages(1)
    addr, vma = map_device(env, mm, 1, shared=True)
    memory.vm_insert_page(vma, addr, pfn)
    mm.write(addr, b"d")
    pte = env.pte(mm, addr)
    mm.munmap(addr, env.ps)
    if env.dirty(pte):  # s390 keeps dirty in the storage key, not the PTE
        assert env.page_flags(pfn) & PG.dirty, env.say("zap: pte_dirty -> set_page_dirty", pte=pte)
    else:
        assert not env.dirty(int(env.ops.pte_mkdirty(pte))), env.say("dirty bit lost before zap", pte=pte)


# -- mprotect ----------------------------------------------------------------------------------
MPROTECT = ["mixed-shared-special", "pfnmap-cow-special", "anon-normal", "insertpage-shared-normal"]


@pytest.mark.parametrize("kind", MPROTECT)
def test_mprotect_keeps_the_special_bit_and_the_pfn(env: Env, kind: str) -> None:
    """pte_modify keeps pfn and special bit (invariant 25); a private special PTE never
    becomes writable through mprotect -- the next write COWs."""
    mm = env.m.new_mm()
    shared = kind.endswith("shared-special") or kind.startswith("insertpage")
    if kind == "mixed-shared-special":
        dev = env.devmem(1)
        addr, vma = map_device(env, mm, 1, shared=True, flags=MIXEDMAP)
        memory.vm_insert_mixed(vma, addr, dev)
    elif kind == "pfnmap-cow-special":
        addr, vma = map_device(env, mm, 1, shared=False)
        memory.remap_pfn_range(vma, addr, env.devmem(1), env.ps)
    elif kind == "anon-normal":
        addr = mm.mmap(env.ps, "rw", ANON)
        mm.write(addr, b"x")
    else:
        addr, vma = map_device(env, mm, 1, shared=True)
        memory.vm_insert_page(vma, addr, env.driver_pages(1)[0])
    orig = env.pte(mm, addr)
    special = env.special(orig)
    for prot, writable in (("r", False), ("rw", shared), ("r", False), ("rw", shared)):
        old = env.pte(mm, addr)
        mm.mprotect(addr, env.ps, prot)
        vma2 = mm.find_vma(addr)
        assert vma2 is not None
        pte = env.pte(mm, addr)
        want = int(env.ops.pte_modify(old, vma2.page_prot))
        assert pte == want, env.say(
            f"{kind}: mprotect({prot}) must write pte_modify(old, prot)", old=old, new=pte, want=want
        )
        assert env.pfn_of(pte) == env.pfn_of(orig) and env.special(pte) == special, env.say(
            f"{kind}: mprotect({prot}) lost the pfn or the special bit", orig=orig, new=pte
        )
        assert env.writable(pte) == writable, env.say(f"{kind}: writable after mprotect({prot})", pte=pte)
    if kind == "pfnmap-cow-special":
        acc = mm.access(addr, write=True)
        assert acc.fault == "wp" and acc.pfn != env.pfn_of(orig), env.say(
            "the write COWs", pte=env.pte(mm, addr)
        )


def test_mprotect_splits_and_refuses_write_without_maywrite(env: Env) -> None:
    mm = env.m.new_mm()
    dev = env.devmem(3)
    addr, vma = map_device(env, mm, 3, shared=True, prot="r", writable=False, flags=MIXEDMAP)
    for i in range(3):
        memory.vm_insert_mixed(vma, addr + i * env.ps, dev + i)
    before = [env.pte(mm, addr + i * env.ps) for i in range(3)]
    with pytest.raises(EACCES):
        mm.mprotect(addr + env.ps, env.ps, "rw")  # MAP_SHARED of a read-only file: no VM_MAYWRITE
    assert len(mm.vmas) == 1 and [env.pte(mm, addr + i * env.ps) for i in range(3)] == before, env.say(
        "a refused mprotect must change nothing"
    )
    mm.mprotect(addr + env.ps, env.ps, "none")
    pieces = [(v.start - addr) // env.ps for v in mm.vmas]
    assert pieces == [0, 1, 2], env.say(f"mprotect of the middle page splits in three: {pieces}")
    assert [v.pgoff for v in mm.vmas] == [0, 1, 2], env.say(f"split pgoffs {[v.pgoff for v in mm.vmas]}")
    mid = env.pte(mm, addr + env.ps)
    assert env.pfn_of(mid) == dev + 1 and env.special(mid) == env.special(before[1]), env.say(
        "PROT_NONE kept pfn and special bit", old=before[1], new=mid
    )
    assert "mm" in flags_str(mm.vmas[1]) and "ms" in flags_str(mm.vmas[1]), env.say(flags_str(mm.vmas[1]))


# -- exit ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("order", ["child-first", "parent-first"])
def test_exit_frees_all_page_tables_and_leaks_nothing(env: Env, order: str) -> None:
    m, ps = env.m, env.ps
    free0 = m.pages.nr_free
    ram = env.driver_pages(6)
    devp = env.devmem(2, memmap=True)
    dev = env.devmem(2)
    counts0 = {p: env.counts(p) for p in (*ram, devp, devp + 1)}
    mm = m.new_mm()
    anon = mm.mmap(8 * ps, "rw", ANON)
    for i in range(0, 8, 2):
        mm.write(anon + i * ps, b"a")
    far = mm.mmap(ps, "rw", ANON | 0x10, addr=(mm.task_size // 2) & ~((1 << 30) - 1))  # MAP_FIXED, own tables
    mm.write(far, b"f")
    raddr, rvma = map_device(env, mm, 2, shared=False)
    memory.remap_pfn_range(rvma, raddr, ram[0], 2 * ps)
    mm.write(raddr, b"c")  # COW from a special pfn
    iaddr, ivma = map_device(env, mm, 2, shared=True)
    memory.vm_insert_page(ivma, iaddr, ram[2])
    memory.vm_insert_page(ivma, iaddr + ps, ram[3])
    maddr, _ = map_device(
        env,
        mm,
        4,
        shared=False,
        flags=MIXEDMAP,
        fault=inserting(memory.vm_insert_mixed, lambda i: [ram[4], devp, dev, devp + 1][i]),
    )
    for i in range(4):
        mm.access(maddr + i * ps)
    mm.write(maddr + 2 * ps, b"cow")
    pins = get_user_pages(mm, anon, 1, write=False)
    child = mm.fork()
    child.write(anon, b"child")
    child.write(raddr + ps, b"child")
    m.pages.put_page(pins)
    assert m.pagetable_bytes() > 0, env.say("setup: page tables exist before exit")
    first, second = (child, mm) if order == "child-first" else (mm, child)
    first.exit()
    second.exit()
    assert m.mms == [], env.say("exited mms must leave the machine")
    env.assert_clean()
    assert {p: env.counts(p) for p in counts0} == counts0, env.say(
        f"driver/device struct pages not restored: { ({p: env.counts(p) for p in counts0}) } != {counts0}"
    )
    assert m.pages.nr_free == free0 - len(ram), env.say(
        f"free RAM {m.pages.nr_free}, want {free0 - len(ram)}"
    )
