"""get_user_pages (2.6.27 mm/memory.c) and get_user_pages_fast (2.6.27 arch/x86/mm/gup.c)
over special mappings (kernel-mm-semantics.md 6.5, 6.6, 9.2, invariants 22-24): the slow
path's refusals (-EFAULT, or the count pinned so far), a write GUP COWs before it
classifies, the lockless walk stops at the first special (or absent, or read-only for a
write) PTE and names why, and there is no lockless walk without the special bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from mixedmap import EFAULT
from mixedmap.mm import memory
from mixedmap.mm.gup import get_user_pages, get_user_pages_fast
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, VMA, FaultResult, VMFault

from .helpers import VM, Env, hx, inserting, map_device

PFNMAP, MIXEDMAP = VM.PFNMAP, VM.MIXEDMAP
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def _fast_capable(env: Env) -> bool:
    """The kernel's rule: a lockless walk needs the special bit and the arch's gup.c
    (x86 and powerpc from 2.6.27; s390 only later), as the format declares."""
    return env.scheme == "A" and env.case.mode.fmt.has_lockless_gup


def _all_counts(env: Env) -> dict[int, tuple[int, int]]:
    """(refcount, mapcount) of every allocated RAM page: a refused GUP must change none."""
    used = np.flatnonzero(~env.m.pages.free_mask())
    return {int(p): env.counts(int(p)) for p in used}


# -- slow path refusals (6.5, invariant 23) ------------------------------------------------------
def _io_vma(env: Env, mm: MM) -> int:
    (pfn,) = env.driver_pages(1)

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        memory.vm_insert_page(vma, vmf.address, pfn)
        return FaultResult.NOPAGE

    addr, _ = map_device(env, mm, 1, shared=True, flags=VM.IO, fault=fault)
    mm.access(addr)
    return addr


def _pfnmap(env: Env, mm: MM) -> int:
    addr, vma = map_device(env, mm, 1, shared=True)
    memory.remap_pfn_range(vma, addr, env.driver_pages(1)[0], env.ps)
    return addr


def _pfnmap_cowed(env: Env, mm: MM) -> int:
    addr, vma = map_device(env, mm, 1, shared=False)
    memory.remap_pfn_range(vma, addr, env.devmem(1), env.ps)
    mm.write(addr, b"cow")  # now a normal anonymous page -- still refused (S6 step 5)
    return addr


def _pfnmap_no_io_cowed(env: Env, mm: MM) -> int:
    """remap_pfn_range, then the driver clears VM_IO (some did, hoping for ptrace access): the
    COWed page is a plain anonymous page, and only VM_PFNMAP makes GUP refuse it."""

    def on_mmap(v: VMA) -> None:
        memory.remap_pfn_range(v, v.start, env.devmem(1), env.ps)
        v.flags &= ~VM.IO

    addr, vma = map_device(env, mm, 1, shared=False, on_mmap=on_mmap)
    assert vma.flags & VM.PFNMAP and not vma.flags & VM.IO, env.say(f"setup: {vma.describe()}")
    mm.write(addr, b"cow")
    assert env.normal_page(mm, addr) is not None, env.say(
        "setup: the COWed page is normal", pte=env.pte(mm, addr)
    )
    return addr


def _mixed_special(env: Env, mm: MM) -> int:
    dev = env.devmem(1)
    addr, _ = map_device(
        env, mm, 1, shared=False, flags=MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: dev)
    )
    mm.access(addr)
    return addr


def _prot_none(env: Env, mm: MM) -> int:
    return mm.mmap(env.ps, "none", ANON)


def _no_vma(env: Env, mm: MM) -> int:
    return mm.task_size - 4 * env.ps


def _ro_anon(env: Env, mm: MM) -> int:
    addr = mm.mmap(env.ps, "r", ANON)
    mm.access(addr)
    return addr


REFUSALS: list[tuple[str, Callable[[Env, MM], int], bool]] = [
    ("vm_io", _io_vma, False),
    ("vm_pfnmap", _pfnmap, False),
    ("vm_pfnmap-cowed-page", _pfnmap_cowed, False),
    ("vm_pfnmap-without-vm_io-cowed-page", _pfnmap_no_io_cowed, False),
    ("vm_pfnmap-without-vm_io-cowed-page-write", _pfnmap_no_io_cowed, True),
    ("special-pte-read", _mixed_special, False),
    ("no-read-permission", _prot_none, False),
    ("no-vma", _no_vma, False),
    ("write-without-vm_write", _ro_anon, True),
]


@pytest.mark.parametrize(("make", "write"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_slow_path_refusals(env: Env, make: Callable[[Env, MM], int], write: bool) -> None:
    mm = env.m.new_mm()
    addr = make(env, mm)
    before = _all_counts(env), env.pte(mm, addr), dict(mm.rss)
    with pytest.raises(EFAULT):
        get_user_pages(mm, addr, 1, write=write)
    after = _all_counts(env), env.pte(mm, addr), dict(mm.rss)
    assert after == before, env.say(
        f"a refused GUP changed state ({before[2]} -> {after[2]})", old=before[1], new=after[1]
    )


def test_slow_path_returns_the_count_pinned_before_a_refusal(env: Env) -> None:
    """get_user_pages returns i (pages pinned so far) when it stops at page i > 0."""
    mm = env.m.new_mm()
    ps = env.ps
    anon = mm.mmap(2 * ps, "rw", ANON)
    dev = env.devmem(1)
    map_device(
        env,
        mm,
        1,
        shared=False,
        addr=anon + 2 * ps,
        flags=MIXEDMAP,
        fault=inserting(memory.vm_insert_mixed, lambda i: dev),
    )
    mm.access(anon + 2 * ps)
    pinned = get_user_pages(mm, anon, 3, write=False)
    assert pinned.size == 2, env.say(f"two anon pages pinned, then -EFAULT on the special PTE: {pinned}")
    assert [env.counts(int(p)) for p in pinned] == [(2, 1), (2, 1)], env.say("each pinned page +1 reference")
    assert [int(p) for p in pinned] == [env.pfn_of(env.pte(mm, anon + i * ps)) for i in range(2)], env.say(
        "pfns"
    )
    env.m.pages.put_page(pinned)


def test_read_gup_of_a_vm_insert_mixed_ram_page_depends_on_the_scheme(env: Env) -> None:
    """Section 4.5 row 4 seen by GUP: scheme A made it special (-EFAULT), scheme B a
    refcounted normal page (pinned)."""
    mm = env.m.new_mm()
    (pfn,) = env.driver_pages(1)
    addr, _ = map_device(
        env, mm, 1, shared=True, flags=MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: pfn)
    )
    mm.access(addr)
    pte = env.pte(mm, addr)
    if env.scheme == "A":
        with pytest.raises(EFAULT):
            get_user_pages(mm, addr, 1, write=False)
        assert env.counts(pfn) == (1, 0), env.say(f"special: untouched {env.counts(pfn)}", pte=pte)
    else:
        pinned = get_user_pages(mm, addr, 1, write=False)
        assert pinned.tolist() == [pfn] and env.counts(pfn) == (3, 1), env.say(
            f"pinned {env.counts(pfn)}", pte=pte
        )
        env.m.pages.put_page(pinned)


# -- write GUP COWs first (6.5 step 2, invariant 24) ---------------------------------------------
@pytest.mark.parametrize("source", ["mixed-nopage", "mixed-ram", "remap-nopage"])
def test_write_gup_cows_before_classifying(env: Env, source: str) -> None:
    mm = env.m.new_mm()
    src = env.devmem(1) if source.endswith("nopage") else env.driver_pages(1)[0]
    data = env.frame(src)
    if source.startswith("mixed"):
        addr, vma = map_device(
            env, mm, 1, shared=False, flags=MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: src)
        )
        mm.access(addr)
    else:
        addr, vma = map_device(env, mm, 1, shared=False)
        memory.remap_pfn_range(vma, addr, src, env.ps)
    old = env.pte(mm, addr)
    src_normal = env.normal_page(mm, addr) is not None  # scheme B, mixed-ram
    if source.startswith("remap"):
        with pytest.raises(EFAULT):  # VM_PFNMAP: refused before any fault
            get_user_pages(mm, addr, 1, write=True)
        return
    pinned = get_user_pages(mm, addr, 1, write=True)
    (new,) = pinned.tolist()
    pte = env.pte(mm, addr)
    assert new != src and env.pfn_of(pte) == new, env.say(
        f"{source}: GUP(write) must return the COW page", old=old, new=pte
    )
    assert env.writable(pte) and not env.special(pte), env.say(f"{source}: the COW PTE", pte=pte)
    assert env.counts(new) == (2, 1), env.say(
        f"{source}: COW page mapped once, pinned once: {env.counts(new)}"
    )
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"{source}: RSS {mm.rss}")
    assert env.frame(new) == data, env.say(f"{source}: the COW copied the source bytes")
    if src_normal:
        assert env.counts(src) == (1, 0), env.say(
            f"{source}: COW from a normal page restored it {env.counts(src)}"
        )
    elif env.m.page(src) is not None:
        assert env.counts(src) == (1, 0), env.say(f"{source}: special source untouched {env.counts(src)}")
    env.m.pages.put_page(pinned)
    assert env.counts(new) == (1, 1), env.say("put_page releases the pin")
    again = get_user_pages(mm, addr, 1, write=False)
    assert again.tolist() == [new], env.say("a read GUP now pins the anonymous page")
    env.m.pages.put_page(again)


def test_write_gup_breaks_cow_of_a_shared_anon_page(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(env.ps, "rw", ANON)
    mm.write(addr, b"x")
    orig = env.pfn_of(env.pte(mm, addr))
    child = mm.fork()
    pinned = get_user_pages(mm, addr, 1, write=True)
    assert pinned.tolist() != [orig], env.say(
        "the parent's write GUP must COW the shared page", pte=env.pte(mm, addr)
    )
    assert env.counts(orig) == (1, 1), env.say(f"the child keeps the original {env.counts(orig)}")
    assert env.pfn_of(env.pte(child, addr)) == orig, env.say("child PTE unchanged", pte=env.pte(child, addr))
    env.m.pages.put_page(pinned)


# -- get_user_pages_fast (6.6, 9.2, invariant 22) ------------------------------------------------
def _anon_then(env: Env, mm: MM, n_anon: int, tail: str | None) -> int:
    """n_anon written anonymous pages followed (contiguously) by one page of ``tail``."""
    ps = env.ps
    addr = mm.mmap((n_anon + 1) * ps, "rw", ANON)
    for i in range(n_anon):
        mm.write(addr + i * ps, bytes([i + 1]))
    last = addr + n_anon * ps
    if tail == "special":
        mm.munmap(last, ps)
        dev = env.devmem(1)
        map_device(
            env,
            mm,
            1,
            shared=False,
            addr=last,
            flags=MIXEDMAP,
            fault=inserting(memory.vm_insert_mixed, lambda i: dev),
        )
        mm.access(last)
    elif tail == "absent":
        pass
    elif tail == "normal":
        mm.write(last, b"n")
    return addr


def test_fast_path_pins_present_normal_ptes_without_falling_back(env: Env) -> None:
    """S10: every PTE present, user, writable, not special -> all pinned by the walk."""
    mm = env.m.new_mm()
    addr = _anon_then(env, mm, 4, "normal")
    res = get_user_pages_fast(mm, addr, 5, write=True)
    pfns = [env.pfn_of(env.pte(mm, addr + i * env.ps)) for i in range(5)]
    assert res.pfns.tolist() == pfns, env.say(f"pinned {res.pfns.tolist()} != mapped {pfns}")
    assert [env.counts(p) for p in pfns] == [(2, 1)] * 5, env.say("one reference per page")
    if _fast_capable(env):
        assert (res.fast, res.slow, res.fallback_reason) == (5, 0, ""), env.say(f"lockless: {res}")
    else:
        assert (res.fast, res.slow) == (0, 5), env.say(f"no lockless walk: {res}")
        want = (
            "no pte_special"
            if env.scheme == "B"
            else "before 2.6.27"
            if env.case.mode.profile == "2.6.26"
            else "no lockless get_user_pages_fast"
        )
        assert want in res.fallback_reason, env.say(f"reason {res.fallback_reason!r} must say {want!r}")
    env.m.pages.put_page(res.pfns)


@pytest.mark.parametrize("k", [0, 2])
def test_fast_path_stops_at_a_special_pte(env: Env, k: int) -> None:
    """The walk bails at the special PTE; the slow path then refuses it (-EFAULT), so the
    call returns the k pages the walk pinned -- or -EFAULT when it pinned none."""
    mm = env.m.new_mm()
    addr = _anon_then(env, mm, k, "special")
    special = env.pte(mm, addr + k * env.ps)
    if k == 0:
        with pytest.raises(EFAULT):
            get_user_pages_fast(mm, addr, 1, write=False)
        return
    res = get_user_pages_fast(mm, addr, k + 1, write=False)
    assert res.pfns.size == k, env.say(f"only the {k} pages before the special PTE: {res}", special=special)
    assert env.pfn_of(special) not in res.pfns.tolist(), env.say("a special PTE was pinned", special=special)
    if _fast_capable(env):
        assert (res.fast, res.slow, res.fallback_reason) == (k, 0, "special pte"), env.say(
            f"{res}", special=special
        )
    else:
        assert (res.fast, res.slow) == (0, k), env.say(f"slow path only: {res}", special=special)
    env.m.pages.put_page(res.pfns)


def test_fast_path_falls_back_for_absent_and_read_only_ptes(env: Env) -> None:
    mm = env.m.new_mm()
    addr = _anon_then(env, mm, 2, "absent")
    res = get_user_pages_fast(mm, addr, 3, write=False)
    assert res.pfns.size == 3 and mm.rss == {"file": 0, "anon": 3}, env.say(
        f"the slow path faulted page 2 in: {res}"
    )
    if _fast_capable(env):
        assert (res.fast, res.slow, res.fallback_reason) == (2, 1, "pte not present"), env.say(f"{res}")
    env.m.pages.put_page(res.pfns)
    child = mm.fork()  # every PTE read-only now
    ro = env.pte(mm, addr)
    res2 = get_user_pages_fast(mm, addr, 1, write=True)
    assert res2.pfns.tolist() != [env.pfn_of(ro)], env.say("a write GUP must COW the shared page", old=ro)
    if _fast_capable(env):
        assert (res2.fast, res2.slow, res2.fallback_reason) == (0, 1, "pte not writable"), env.say(
            f"{res2}", pte=ro
        )
    env.m.pages.put_page(res2.pfns)
    child.exit()


def test_fast_path_ignores_vma_flags_s6_step5(env: Env) -> None:
    """S6 step 5: the slow path refuses any VM_PFNMAP VMA, but the lockless walk only looks at
    the PTE: it pins the COWed (normal) page of a COW PFNMAP VMA."""
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=False)
    memory.remap_pfn_range(vma, addr, env.devmem(2), 2 * env.ps)
    mm.write(addr + env.ps, b"cow")
    cow = env.pfn_of(env.pte(mm, addr + env.ps))
    with pytest.raises(EFAULT):
        get_user_pages(mm, addr + env.ps, 1, write=False)
    if _fast_capable(env):
        res = get_user_pages_fast(mm, addr + env.ps, 1, write=False)
        assert res.pfns.tolist() == [cow] and res.fast == 1, env.say(f"lockless pin of the COW page: {res}")
        assert env.counts(cow) == (2, 1), env.say(f"pinned {env.counts(cow)}")
        env.m.pages.put_page(res.pfns)
        with pytest.raises(EFAULT):  # the un-COWed special neighbour: walk bails, slow refuses
            get_user_pages_fast(mm, addr, 1, write=False)
    else:
        with pytest.raises(EFAULT):
            get_user_pages_fast(mm, addr + env.ps, 1, write=False)


def test_lockless_walk_exists_only_where_the_kernel_had_it(env: Env, request: pytest.FixtureRequest) -> None:
    """get_user_pages_fast arrived in 2.6.27 (x86 and powerpc, both needing pte_special);
    s390 got its lockless walk only in 2010 ("Copyright IBM Corp. 2010" in
    arch/s390/mm/gup.c), so under 2.6.27 s390 took mm/util.c's slow fallback."""
    profile, arch = env.case.mode.profile, env.case.arch
    kernel_had_it = profile == "2.6.27" and arch in ("x86_64", "ppc64", "toyspecial")
    mm = env.m.new_mm()
    addr = _anon_then(env, mm, 1, None)
    res = get_user_pages_fast(mm, addr, 1, write=False)
    env.m.pages.put_page(res.pfns)
    assert (res.fast == 1) == kernel_had_it, env.say(
        f"{arch} {profile}: lockless walk {res}, kernel had it: {kernel_had_it}"
    )


def test_fast_path_never_pins_a_special_pte(env: Env) -> None:
    """Invariant 22 over a mixed range: whatever the walk and the slow path did, no pinned
    pfn is one a special PTE maps."""
    mm = env.m.new_mm()
    ps = env.ps
    dev = env.devmem(4)
    ram = env.driver_pages(4)
    pfns = [dev, ram[0], dev + 1, ram[1]]
    addr, _ = map_device(
        env, mm, 4, shared=True, flags=MIXEDMAP, fault=inserting(memory.vm_insert_mixed, lambda i: pfns[i])
    )
    for i in range(4):
        mm.access(addr + i * ps)
    special = {
        env.pfn_of(env.pte(mm, addr + i * ps)) for i in range(4) if env.normal_page(mm, addr + i * ps) is None
    }
    for start in range(4):
        try:
            res = get_user_pages_fast(mm, addr + start * ps, 4 - start, write=False)
        except EFAULT:
            continue
        assert not special & set(res.pfns.tolist()), env.say(
            f"pinned special pfns {special & set(res.pfns.tolist())}: {[hx(env.pte(mm, addr + i * ps)) for i in range(4)]}"
        )
        env.m.pages.put_page(res.pfns)
    assert [env.counts(p) for p in ram[:2]] == ([(1, 0)] * 2 if env.scheme == "A" else [(2, 1)] * 2), env.say(
        f"pins released: {[env.counts(p) for p in ram[:2]]}"
    )


def test_s10_repeated_fast_gup_is_refcount_plus_one_per_call(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(8 * env.ps, "rw", ANON)
    for i in range(8):
        mm.write(addr + i * env.ps, b"db2")
    pfns = [env.pfn_of(env.pte(mm, addr + i * env.ps)) for i in range(8)]
    results = [get_user_pages_fast(mm, addr, 8, write=True) for _ in range(4)]
    assert [env.counts(p) for p in pfns] == [(5, 1)] * 8, env.say(
        f"4 calls -> +4 each: {[env.counts(p) for p in pfns]}"
    )
    if _fast_capable(env):
        assert all((r.fast, r.slow) == (8, 0) for r in results), env.say(f"no slow-path entry: {results}")
    for r in results:
        env.m.pages.put_page(r.pfns)
    assert [env.counts(p) for p in pfns] == [(1, 1)] * 8, env.say("all pins released")
