"""The 6.18 rules of the insert, remap, zap and fork paths (kernel-mm-semantics.md 5.1-5.6,
6.3; S5, S6, S7, S8, S13), each next to the 2.6.27 answer it replaced.

Every test runs on the default mode of each arch that has the 6.18 profile (x86_64, s390x,
ppc64, riscv64, and the fictional toyarch without a special bit and toyspecial with one) or on
the 2008 profiles of every arch, and names the rule of :mod:`mixedmap.rules` it checks: fork
copies a MIXEDMAP VMA without an anon_vma (``fork_copies_mixedmap``), ``vm_insert_page`` sets
VM_MIXEDMAP and BUGs on PFNMAP, ``remap_pfn_range`` flags and zap-on-error, ``zap_vma_ptes``
returning nothing, the ``vmf_insert_*`` family (NOPAGE over a populated PTE, the mkwrite
upgrade, SIGBUS refusals, the zero page, the BUG_ONs), ``vm_insert_pages`` and the
UnsupportedRule every new function raises on a 2008 kernel before anything changes.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mixedmap import EBUSY, EFAULT, EINVAL, ENOMEM, EPERM, VMBug
from mixedmap.mm import memory, vmf, zero
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, VMA, FaultResult, VMFault
from mixedmap.profiles import get_profile
from mixedmap.rules import (
    FORK_COPIES_MIXEDMAP,
    MIXED_ZEROPAGE,
    REMAP_DONTEXPAND_DONTDUMP,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    VM_INSERT_PAGES,
    VM_INSERT_PFN_ERRNO,
    VM_MIXED_OK,
    VMF_INSERT,
    VMF_INSERT_MIXED_MKWRITE,
    VMF_INSERT_PFN_PROT,
    ZAP_VMA_PTES_VOID,
    Rule,
    UnsupportedRule,
)
from tests.conftest import CASES, Case

from .helpers import VM, Env, flags_str, map_device, snapshot

PFNMAP, MIXEDMAP = VM.PFNMAP, VM.MIXEDMAP
NOPAGE, SIGBUS, OOM = FaultResult.NOPAGE, FaultResult.SIGBUS, FaultResult.OOM

#: The default mode of every arch with a 6.18 profile, and the 2008 profiles of every arch.
MODERN: list[Case] = [c for c in CASES if c.mode.default and c.mode.profile == "6.18"]
OLD: list[Case] = [c for c in CASES if c.mode.default and c.mode.profile in ("2.6.26", "2.6.27")]
OLD27: list[Case] = [c for c in OLD if c.mode.profile == "2.6.27"]


@pytest.fixture(params=MODERN, ids=[c.id for c in MODERN])
def env618(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


@pytest.fixture(params=OLD27, ids=[c.id for c in OLD27])
def env27(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


@pytest.fixture(params=OLD, ids=[c.id for c in OLD])
def env_old(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


#: Tests that state both answers run on the 6.18 and the 2.6.27 cases.
BOTH = MODERN + OLD27


@pytest.fixture(params=BOTH, ids=[c.id for c in BOTH])
def env_any(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


def test_the_6_18_fixture_covers_every_arch_with_the_profile() -> None:
    arches = {c.arch for c in MODERN}
    assert {"x86_64", "s390x", "ppc64", "riscv64"} <= arches, arches
    for rule in (FORK_COPIES_MIXEDMAP, VMF_INSERT, VM_INSERT_PAGES, MIXED_ZEROPAGE, ZAP_VMA_PTES_VOID):
        assert all(rule.applies(get_profile(c.mode.profile)) for c in MODERN)
        assert not any(rule.applies(get_profile(c.mode.profile)) for c in OLD)


# -- helpers --------------------------------------------------------------------------------------
def state(env: Env, mm: MM, vma: VMA, pfns: Sequence[int] = ()) -> dict[str, object]:
    """What a refused call must leave as it was (PTEs in hex, flags, counters, tables)."""
    return {**snapshot(env, mm, vma, pfns), "pagetable_bytes": env.m.pagetable_bytes()}


def vmf_handler(insert: Callable[[VMA, int, int], FaultResult], pfn_for: Callable[[int], int]) -> Any:
    """A modern ->fault: the driver returns what the vmf_insert_* call answered."""

    def fault(vma: VMA, f: VMFault) -> FaultResult:
        return insert(vma, f.address, pfn_for(f.pgoff))

    return fault


def counted(env: Env, pfn: int) -> tuple[int, int]:
    return env.counts(pfn)


def far(mm: MM) -> int:
    """An address whose page tables do not exist yet below the root (for OOM)."""
    return (mm.task_size // 2) & ~((1 << 30) - 1)


# -- fork (6.3, S5): vma_needs_copy ---------------------------------------------------------------
def _mixed_private(env: Env, mm: MM, insert: Callable[[VMA, int, int], Any], n: int = 2) -> tuple[int, VMA]:
    dev = env.devmem(n)

    def fault(vma: VMA, f: VMFault) -> FaultResult:
        ret = insert(vma, f.address, dev + f.pgoff)
        return ret if isinstance(ret, FaultResult) else NOPAGE

    addr, vma = map_device(env, mm, n, shared=False, flags=MIXEDMAP, fault=fault)
    for i in range(n):
        mm.access(addr + i * env.ps)
    return addr, vma


def test_fork_copies_a_mixedmap_vma_without_anon_vma_618(env618: Env) -> None:
    """S5 (>= 3.7): a private MIXEDMAP VMA that never COWed is copied; its special PTEs are
    copied as they are (read-only already, so not write-protected again), only aged."""
    mm = env618.m.new_mm()
    addr, vma = _mixed_private(env618, mm, vmf.vmf_insert_mixed)
    assert not vma.anon_vma
    parent = [env618.pte(mm, addr + i * env618.ps) for i in range(2)]
    child = mm.fork()
    for i, pte in enumerate(parent):
        va = addr + i * env618.ps
        got = env618.pte(child, va)
        want = int(env618.ops.pte_mkold(pte))
        assert got == want, env618.say(
            "fork_copies_mixedmap: child PTE = pte_mkold(parent's)", got=got, want=want
        )
        assert env618.pte(mm, va) == pte, env618.say(
            "a read-only PTE is not rewritten in the parent", pte=pte
        )
        assert env618.normal_page(child, va) is None, env618.say("still special in the child", pte=got)
    assert child.rss == {"file": 0, "anon": 0}, env618.say(f"special PTEs count in no RSS: {child.rss}")
    assert child.read(addr, 4) == mm.read(addr, 4)
    child.exit()
    mm.exit()
    env618.assert_clean()


def test_fork_does_not_copy_a_mixedmap_vma_without_anon_vma_2627(env27: Env) -> None:
    """S5 (2.6.27): without HUGETLB|NONLINEAR|PFNMAP|INSERTPAGE and an anon_vma the child
    gets no PTE at all and refaults."""
    mm = env27.m.new_mm()
    addr, vma = _mixed_private(env27, mm, memory.vm_insert_mixed)
    assert not FORK_COPIES_MIXEDMAP.applies(env27.m.profile) and not vma.anon_vma
    child = mm.fork()
    for i in range(2):
        va = addr + i * env27.ps
        assert env27.none(env27.pte(child, va)), env27.say("2.6.27 copies no PTE", pte=env27.pte(child, va))
    assert child.read(addr, 4) == mm.read(addr, 4)  # the child refaults
    child.exit()
    mm.exit()
    env27.assert_clean()


def test_fork_write_protects_only_writable_ptes_618(env618: Env) -> None:
    """6.18 ``__copy_present_ptes``: in a COW VMA a writable PTE is write-protected in parent
    and child, a read-only (special) one is copied as it is; every child PTE is old; the
    COWed anonymous page is shared (refcount, mapcount, child anon RSS +1)."""
    mm = env618.m.new_mm()
    addr, _vma = _mixed_private(env618, mm, vmf.vmf_insert_mixed)
    mm.write(addr + env618.ps, b"cow")
    ops = env618.ops
    before = [env618.pte(mm, addr + i * env618.ps) for i in range(2)]
    anon = env618.pfn_of(before[1])
    assert env618.writable(before[1]) and not env618.writable(before[0])
    child = mm.fork()
    for i, pte in enumerate(before):
        va = addr + i * env618.ps
        protected = int(ops.pte_wrprotect(pte)) if env618.writable(pte) else pte
        assert env618.pte(mm, va) == protected, env618.say(
            "parent PTE", got=env618.pte(mm, va), want=protected
        )
        want = int(ops.pte_mkold(protected))
        assert env618.pte(child, va) == want, env618.say("child PTE", got=env618.pte(child, va), want=want)
        assert not env618.writable(env618.pte(child, va))
    assert env618.counts(anon) == (2, 2) and child.rss == {"file": 0, "anon": 1}
    child.exit()
    mm.exit()
    env618.assert_clean()


def test_fork_leaves_read_only_ptes_alone_618(env618: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """``fork_wrprotect_writable``: a read-only COW PTE is not passed through pte_wrprotect at
    all (2.6.27 write-protected every one). No arch's pte_wrprotect changes a read-only PTE, so
    the test gives it one that would: any read-only PTE it touched would show the mark."""
    env = env618
    mm = env.m.new_mm()
    addr, _vma = _mixed_private(env, mm, vmf.vmf_insert_mixed)
    before = [env.pte(mm, addr + i * env.ps) for i in range(2)]
    assert not any(env.writable(p) for p in before)
    ops = env.ops
    real = ops.pte_wrprotect
    mark = np.uint64(1 << 62)
    monkeypatch.setattr(ops, "pte_wrprotect", lambda p: np.asarray(real(p), dtype=np.uint64) ^ mark)
    child = mm.fork()
    monkeypatch.undo()
    for i, pte in enumerate(before):
        va = addr + i * env.ps
        assert env.pte(mm, va) == pte, env.say(
            "read-only parent PTE untouched", got=env.pte(mm, va), want=pte
        )
        assert env.pte(child, va) == int(ops.pte_mkold(pte)), env.say("child = pte_mkold(pte)")
    child.exit()
    mm.exit()


def test_fork_marks_shared_copies_clean_618(env618: Env) -> None:
    """A shared MIXEDMAP VMA is copied (no anon_vma needed); the child's PTEs are clean and old,
    the parent's stay writable."""
    mm = env618.m.new_mm()
    dev = env618.devmem(1)
    addr, _vma = map_device(
        env618, mm, 1, shared=True, flags=MIXEDMAP, fault=vmf_handler(vmf.vmf_insert_mixed, lambda i: dev)
    )
    mm.write(addr, b"w")
    pte = env618.pte(mm, addr)
    child = mm.fork()
    assert env618.pte(mm, addr) == pte
    want = int(env618.ops.pte_mkold(env618.ops.pte_mkclean(pte)))
    assert env618.pte(child, addr) == want, env618.say(
        "child = mkold(mkclean(pte))", got=env618.pte(child, addr), want=want
    )
    child.exit()
    mm.exit()


# -- vm_insert_page (5.1) ---------------------------------------------------------------------------
def test_vm_insert_page_flag_per_profile(env_any: Env) -> None:
    """3.7 folded VM_INSERTPAGE into VM_MIXEDMAP; the page is a normal, counted PTE in both."""
    env = env_any
    mm = env.m.new_mm()
    (pfn,) = env.driver_pages(1)
    addr, vma = map_device(env, mm, 2, shared=True)
    memory.vm_insert_page(vma, addr, pfn)
    sets_mixed = VM_INSERT_PAGE_SETS_MIXEDMAP.applies(env.m.profile)
    assert sets_mixed == (env.m.profile.name == "6.18")
    assert bool(vma.flags & MIXEDMAP) == sets_mixed, env.say(f"VM_MIXEDMAP: {flags_str(vma)}")
    assert bool(vma.flags & VM.INSERTPAGE) == (not sets_mixed), env.say(f"VM_INSERTPAGE: {flags_str(vma)}")
    pte = env.pte(mm, addr)
    assert pte == int(env.ops.pfn_pte(pfn, vma.page_prot)) and not env.special(pte)
    assert env.normal_page(mm, addr) == pfn and env.counts(pfn) == (2, 1) and mm.rss == {"file": 1, "anon": 0}
    mm.exit()
    assert env.counts(pfn) == (1, 0)


def test_vm_insert_page_on_pfnmap_bugs_618(env618: Env) -> None:
    """S8 (e): a VMA without MIXEDMAP but with PFNMAP is a BUG, before anything changes; the
    2.6.27 function has no such check."""
    mm = env618.m.new_mm()
    (pfn,) = env618.driver_pages(1)
    addr, vma = map_device(env618, mm, 1, shared=True, flags=PFNMAP)
    before = state(env618, mm, vma, [pfn])
    with pytest.raises(VMBug, match=r"BUG_ON\(vma->vm_flags & VM_PFNMAP\)"):
        memory.vm_insert_page(vma, addr, pfn)
    assert state(env618, mm, vma, [pfn]) == before
    mm.exit()


def test_vm_insert_page_on_pfnmap_allowed_2627(env27: Env) -> None:
    mm = env27.m.new_mm()
    (pfn,) = env27.driver_pages(1)
    addr, vma = map_device(env27, mm, 1, shared=True, flags=PFNMAP)
    memory.vm_insert_page(vma, addr, pfn)
    assert vma.flags & VM.INSERTPAGE and env27.counts(pfn) == (2, 1)
    mm.exit()


def test_validate_page_before_insert_618(env618: Env) -> None:
    """-EINVAL for a page with refcount 0 (MIXEDMAP is already set then, as in the kernel)
    and for an anonymous page; -EFAULT outside the VMA before MIXEDMAP is set."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True)
    (pfn,) = env.driver_pages(1)
    with pytest.raises(EFAULT):
        memory.vm_insert_page(vma, vma.end, pfn)
    assert not vma.flags & MIXEDMAP
    (free,) = env.m.pages.alloc_pages(1).tolist()
    env.m.pages.free_pages(free)
    with pytest.raises(EINVAL, match="page_count 0"):
        memory.vm_insert_page(vma, addr, free)
    assert vma.flags & MIXEDMAP and env.none(env.pte(mm, addr))
    anon = mm.mmap(env.ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    mm.write(anon, b"a")
    apfn = env.pfn_of(env.pte(mm, anon))
    with pytest.raises(EINVAL, match="anonymous"):
        memory.vm_insert_page(vma, addr, apfn)
    assert env.none(env.pte(mm, addr)) and env.counts(apfn) == (1, 1)
    memory.vm_insert_page(vma, addr, pfn)
    before = env.pte(mm, addr)
    with pytest.raises(EBUSY):
        memory.vm_insert_page(vma, addr, pfn)
    assert env.pte(mm, addr) == before and env.counts(pfn) == (2, 1)
    mm.exit()


@pytest.mark.parametrize(
    ("shared", "prot", "allowed"), [(False, "rw", True), (True, "r", True), (True, "rw", False)]
)
def test_vm_insert_page_zero_page_618(env618: Env, shared: bool, prot: str, allowed: bool) -> None:
    """6.11 (``mixed_zeropage``): the shared zero page is mapped special and uncounted in a COW
    VMA or one that can never be writable; in a writable shared VMA it is -EINVAL."""
    env = env618
    mm = env.m.new_mm()
    zpfn = zero.zero_pfn(env.m)
    counts = env.counts(zpfn)
    addr, vma = map_device(env, mm, 1, shared=shared, prot=prot, writable=prot == "rw")
    if not allowed:
        assert not vmf.vm_mixed_zeropage_allowed(vma)
        with pytest.raises(EINVAL, match="zero page"):
            memory.vm_insert_page(vma, addr, zpfn)
        assert env.none(env.pte(mm, addr))
    else:
        assert vmf.vm_mixed_zeropage_allowed(vma)
        memory.vm_insert_page(vma, addr, zpfn)
        pte = env.pte(mm, addr)
        assert pte == env.mkspecial(int(env.ops.pfn_pte(zpfn, vma.page_prot))), env.say(
            "special zero PTE", pte=pte
        )
        assert env.counts(zpfn) == counts and mm.rss == {"file": 0, "anon": 0}
        assert mm.read(addr, 8) == bytes(8)
    mm.exit()
    assert env.counts(zpfn) == counts
    zero.release_zero_page(env.m)


# -- remap_pfn_range (5.4) and zap_vma_ptes (5.5) ---------------------------------------------------
def test_remap_flags_per_profile(env_any: Env) -> None:
    """3.7: VM_RESERVED is gone, remap_pfn_range sets VM_DONTEXPAND and VM_DONTDUMP instead."""
    env = env_any
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True)
    memory.remap_pfn_range(vma, addr, env.devmem(2), 2 * env.ps)
    modern = env.m.profile.name == "6.18"
    assert REMAP_DONTEXPAND_DONTDUMP.applies(env.m.profile) == modern
    if modern:
        want, gone = VM.IO | PFNMAP | VM.DONTEXPAND | VM.DONTDUMP, VM.RESERVED
        assert {"io", "pf", "de", "dd"} <= set(flags_str(vma).split())
    else:
        want, gone = VM.IO | VM.RESERVED | PFNMAP, VM.DONTEXPAND | VM.DONTDUMP
    assert vma.flags & want == want and not vma.flags & gone, env.say(f"remap flags: {flags_str(vma)}")
    assert all(env.special(env.pte(mm, addr + i * env.ps)) == (env.scheme == "A") for i in range(2))
    mm.exit()


def _private_remap(env: Env, mm: MM) -> tuple[int, VMA, int]:
    base = env.devmem(4)
    addr, vma = map_device(
        env, mm, 4, shared=False, on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, 4 * env.ps)
    )
    mm.write(addr + 2 * env.ps, b"cow")
    return addr, vma, base


def test_partial_cow_remap_zaps_the_range_618(env618: Env) -> None:
    """S6 step 4, 6.18: the whole-VMA rule still gives -EINVAL, but from 6.11
    ``remap_pfn_range_notrack`` zaps [addr, addr + size) on any failure: the special PTEs
    vanish and a COWed page in the range is unmapped and freed."""
    env = env618
    mm = env.m.new_mm()
    addr, vma, base = _private_remap(env, mm)
    anon = env.pfn_of(env.pte(mm, addr + 2 * env.ps))
    assert mm.rss == {"file": 0, "anon": 1}
    with pytest.raises(EINVAL, match="remapped whole"):
        memory.remap_pfn_range(vma, addr + env.ps, base, 2 * env.ps)
    assert [env.none(env.pte(mm, addr + i * env.ps)) for i in range(4)] == [False, True, True, False]
    assert mm.rss == {"file": 0, "anon": 0} and env.m.page(anon).refcount == 0  # type: ignore[union-attr]
    assert vma.pgoff == base
    mm.exit()
    env.assert_clean()


def test_partial_cow_remap_changes_nothing_2627(env27: Env) -> None:
    env = env27
    mm = env.m.new_mm()
    addr, vma, base = _private_remap(env, mm)
    before = state(env, mm, vma)
    with pytest.raises(EINVAL):
        memory.remap_pfn_range(vma, addr + env.ps, base, 2 * env.ps)
    assert state(env, mm, vma) == before
    mm.exit()


def test_remap_unaligned_and_oom_618(env618: Env) -> None:
    """An unaligned address is -EINVAL before anything; -ENOMEM leaves the new flags (set
    before the walk) and no PTE."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, addr=far(mm))
    before = state(env, mm, vma)
    with pytest.raises(EINVAL, match="aligned"):
        memory.remap_pfn_range(vma, addr + 8, env.devmem(1), env.ps)
    assert state(env, mm, vma) == before
    with env.no_free_ram(), pytest.raises(ENOMEM):
        memory.remap_pfn_range(vma, addr, env.devmem(2), 2 * env.ps)
    assert (
        vma.flags & (VM.IO | PFNMAP | VM.DONTEXPAND | VM.DONTDUMP)
        == VM.IO | PFNMAP | VM.DONTEXPAND | VM.DONTDUMP
    )
    assert all(env.none(env.pte(mm, addr + i * env.ps)) for i in range(2))
    mm.exit()
    env.assert_clean()


def test_zap_vma_ptes_per_profile(env_any: Env) -> None:
    """4.18 (``zap_vma_ptes_void``): misuse returns nothing and changes nothing (2.6.27: -1,
    EPERM here); on a PFNMAP VMA it zaps (2.6.27 returns 0)."""
    env = env_any
    void = env.m.profile.name == "6.18"
    assert ZAP_VMA_PTES_VOID.applies(env.m.profile) == void
    mm = env.m.new_mm()
    (ram,) = env.driver_pages(1)
    iaddr, ivma = map_device(env, mm, 1, shared=True)
    memory.vm_insert_page(ivma, iaddr, ram)
    before = state(env, mm, ivma, [ram])
    if void:
        assert memory.zap_vma_ptes(ivma, iaddr, env.ps) is None
    else:
        with pytest.raises(EPERM):
            memory.zap_vma_ptes(ivma, iaddr, env.ps)
    assert state(env, mm, ivma, [ram]) == before
    addr, vma = map_device(env, mm, 2, shared=True)
    memory.remap_pfn_range(vma, addr, env.devmem(2), 2 * env.ps)
    if void:
        assert memory.zap_vma_ptes(vma, addr, 3 * env.ps) is None  # beyond the VMA: nothing
        assert not env.none(env.pte(mm, addr))
        assert memory.zap_vma_ptes(vma, addr, 2 * env.ps) is None
    else:
        assert memory.zap_vma_ptes(vma, addr, 2 * env.ps) == 0
    assert all(env.none(env.pte(mm, addr + i * env.ps)) for i in range(2))
    mm.exit()


# -- vmf_insert_pfn (5.2, S7, S8) ---------------------------------------------------------------------
def test_vmf_insert_pfn_twice_is_nopage_and_changes_nothing_618(env618: Env) -> None:
    """S7 step 2, modern: a second insert at a populated PTE is NOPAGE with the PTE bit for bit
    as it was, whatever pfn it names; the 2008 name answers the same on 6.18 (no -EBUSY)."""
    env = env618
    mm = env.m.new_mm()
    dev = env.devmem(2)
    addr, vma = map_device(
        env, mm, 2, shared=True, flags=PFNMAP, fault=vmf_handler(vmf.vmf_insert_pfn, lambda i: dev + i)
    )
    mm.access(addr)
    pte = env.pte(mm, addr)
    assert pte == env.mkspecial(int(env.ops.pfn_pte(dev, vma.page_prot)))
    assert vmf.vmf_insert_pfn(vma, addr, dev) == NOPAGE
    assert vmf.vmf_insert_pfn(vma, addr, dev + 1) == NOPAGE
    assert not VM_INSERT_PFN_ERRNO.applies(env.m.profile)
    memory.vm_insert_pfn(vma, addr, dev + 1)  # 6.18 has only vmf_insert_pfn: success, unchanged
    assert env.pte(mm, addr) == pte, env.say("the populated PTE must not change", pte=env.pte(mm, addr))
    assert vmf.vmf_insert_pfn(vma, vma.end, dev) == SIGBUS
    assert mm.rss == {"file": 0, "anon": 0}
    mm.munmap(addr, 2 * env.ps)
    assert env.none(env.pte(mm, addr))
    mm.exit()
    env.assert_clean()


def test_vm_insert_pfn_twice_is_ebusy_2627(env27: Env) -> None:
    env = env27
    mm = env.m.new_mm()
    dev = env.devmem(2)
    addr, vma = map_device(env, mm, 2, shared=True, flags=PFNMAP)
    memory.vm_insert_pfn(vma, addr, dev)
    pte = env.pte(mm, addr)
    with pytest.raises(EBUSY):
        memory.vm_insert_pfn(vma, addr, dev + 1)
    assert env.pte(mm, addr) == pte
    mm.exit()


BUGS = [
    # id, flags, MAP_SHARED, pfn kind, the BUG_ON named
    ("neither-flag", 0, True, "nopage", r"BUG_ON\(!\(vma->vm_flags & \(VM_PFNMAP\|VM_MIXEDMAP\)\)\)"),
    ("both-flags", PFNMAP | MIXEDMAP, True, "nopage", r"both set"),
    ("pfnmap-cow", PFNMAP, False, "nopage", r"VM_PFNMAP && is_cow_mapping"),
    ("mixedmap-pfn_valid", MIXEDMAP, True, "ram", r"VM_MIXEDMAP && pfn_valid"),
]


@pytest.mark.parametrize(("flags", "shared", "kind", "bug"), [b[1:] for b in BUGS], ids=[b[0] for b in BUGS])
@pytest.mark.parametrize("fn", ["vmf_insert_pfn", "vmf_insert_pfn_prot"])
def test_vmf_insert_pfn_bug_on_618(
    env618: Env, flags: int, shared: bool, kind: str, bug: str, fn: str
) -> None:
    """S8 (a)-(c) modern: the four BUG_ONs of vmf_insert_pfn_prot, before the range check and
    before anything changes."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 1, shared=shared, flags=flags)
    pfn = env.devmem(1) if kind == "nopage" else env.driver_pages(1)[0]
    before = state(env, mm, vma, [pfn] if kind == "ram" else [])
    for va in (addr, vma.end):
        with pytest.raises(VMBug, match=bug):
            if fn == "vmf_insert_pfn":
                vmf.vmf_insert_pfn(vma, va, pfn)
            else:
                vmf.vmf_insert_pfn_prot(vma, va, pfn, vma.page_prot)
    assert state(env, mm, vma, [pfn] if kind == "ram" else []) == before
    mm.exit()


def test_vmf_insert_pfn_prot_uses_the_callers_prot_and_oom_618(env618: Env) -> None:
    env = env618
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 1, shared=True, flags=PFNMAP)
    ro = mm.vm_get_page_prot(VM.READ | VM.SHARED)
    dev = env.devmem(1)
    assert vmf.vmf_insert_pfn_prot(vma, addr, dev, ro) == NOPAGE
    assert env.pte(mm, addr) == env.mkspecial(int(env.ops.pfn_pte(dev, ro)))
    faddr, fvma = map_device(env, mm, 1, shared=True, flags=PFNMAP, addr=far(mm))
    with env.no_free_ram():
        assert vmf.vmf_insert_pfn(fvma, faddr, dev) == OOM
    assert env.none(env.pte(mm, faddr))
    mm.exit()


# -- vmf_insert_mixed(_mkwrite) (5.3, S13) ---------------------------------------------------------
def _mixed_shared(env: Env, mm: MM, prot: str = "rw") -> tuple[int, VMA]:
    return map_device(env, mm, 2, shared=True, prot=prot, flags=MIXEDMAP)


@pytest.mark.parametrize("prot", ["rw", "r"])
def test_mkwrite_upgrades_the_same_pfn_618(env618: Env, prot: str) -> None:
    """vmf_insert_mixed_mkwrite over the same pfn: young, dirty, and writable if the VMA is
    (``maybe_mkwrite``); the pfn and the special bit stay; no counter moves."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = _mixed_shared(env, mm, prot)
    dev = env.devmem(1)
    ro = mm.vm_get_page_prot(VM.READ | VM.SHARED)
    assert vmf.vmf_insert_pfn_prot(vma, addr, dev, ro) == NOPAGE
    old = env.pte(mm, addr)
    ops = env.ops
    assert vmf.vmf_insert_mixed_mkwrite(vma, addr, dev) == NOPAGE
    want = int(ops.pte_mkdirty(ops.pte_mkyoung(old)))
    if prot == "rw":
        want = int(ops.pte_mkwrite(want))
    got = env.pte(mm, addr)
    assert got == want, env.say("maybe_mkwrite(pte_mkdirty(pte_mkyoung(old)))", got=got, want=want, old=old)
    assert env.pfn_of(got) == dev and env.writable(got) == (prot == "rw")
    assert env.special(got) == env.special(old) and mm.rss == {"file": 0, "anon": 0}
    # A different pfn is left alone (racing block allocation), as is a plain re-insert.
    assert vmf.vmf_insert_mixed_mkwrite(vma, addr, env.devmem(1)) == NOPAGE
    assert vmf.vmf_insert_mixed(vma, addr, dev) == NOPAGE
    assert env.pte(mm, addr) == got
    mm.exit()


def test_mkwrite_new_pte_is_young_dirty_writable_618(env618: Env) -> None:
    env = env618
    mm = env.m.new_mm()
    addr, vma = _mixed_shared(env, mm)
    dev = env.devmem(1)
    assert vmf.vmf_insert_mixed_mkwrite(vma, addr, dev) == NOPAGE
    pte = env.pte(mm, addr)
    assert env.writable(pte) and env.made_dirty(pte) and env.made_young(pte) and env.pfn_of(pte) == dev
    mm.exit()


def test_mkwrite_other_pfn_scheme_b_is_sigbus_618(env618: Env) -> None:
    """Without a special bit a pfn_valid pfn goes through insert_page, whose mkwrite variant
    answers -EFAULT (so SIGBUS) for a different pfn, and upgrades the same one."""
    env = env618
    if env.scheme == "A":
        pytest.skip(f"{env.case.id}: the special bit sends every pfn through insert_pfn")
    mm = env.m.new_mm()
    addr, vma = _mixed_shared(env, mm)
    page = env.devmem(2, memmap=True)
    assert vmf.vmf_insert_mixed(vma, addr, page) == NOPAGE
    old = env.pte(mm, addr)
    assert env.normal_page(mm, addr) == page and env.counts(page) == (2, 1)
    assert vmf.vmf_insert_mixed_mkwrite(vma, addr, page + 1) == SIGBUS
    assert env.pte(mm, addr) == old
    assert vmf.vmf_insert_mixed_mkwrite(vma, addr, page) == NOPAGE
    assert env.writable(env.pte(mm, addr)) and env.counts(page) == (2, 1)
    mm.exit()
    assert env.counts(page) == (1, 0)


def test_vmf_insert_mixed_without_mixedmap_is_sigbus_618(env618: Env) -> None:
    """S8 (d) modern: vm_mixed_ok refuses a non-zero pfn in a VMA without MIXEDMAP (2.6.27
    BUG_ONs); outside the VMA is SIGBUS too; nothing changes. The 2008 name answers -EFAULT."""
    env = env618
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 1, shared=True, flags=PFNMAP)
    dev = env.devmem(1)
    before = state(env, mm, vma)
    assert not vmf.vm_mixed_ok(vma, dev)
    assert vmf.vmf_insert_mixed(vma, addr, dev) == SIGBUS
    with pytest.raises(EFAULT, match="SIGBUS"):
        memory.vm_insert_mixed(vma, addr, dev)
    maddr, mvma = _mixed_shared(env, mm)
    assert vmf.vmf_insert_mixed(mvma, mvma.end, dev) == SIGBUS
    assert state(env, mm, vma) == before and env.none(env.pte(mm, maddr))
    mm.exit()


def test_vm_insert_mixed_without_mixedmap_bugs_2627(env27: Env) -> None:
    mm = env27.m.new_mm()
    addr, vma = map_device(env27, mm, 1, shared=True, flags=PFNMAP)
    with pytest.raises(VMBug, match="VM_MIXEDMAP"):
        memory.vm_insert_mixed(vma, addr, env27.devmem(1))
    mm.exit()


def test_zero_pfn_in_a_cow_vma_is_special_and_uncounted_618(env618: Env) -> None:
    """S13: the zero pfn in a private MIXEDMAP VMA: vm_mixed_ok, a special PTE, no counter; a
    write then COWs it into a fresh zeroed anonymous page."""
    env = env618
    mm = env.m.new_mm()
    zpfn = zero.zero_pfn(env.m)
    counts = env.counts(zpfn)
    addr, vma = map_device(
        env, mm, 1, shared=False, flags=MIXEDMAP, fault=vmf_handler(vmf.vmf_insert_mixed, lambda i: zpfn)
    )
    assert vmf.vm_mixed_ok(vma, zpfn)
    assert mm.read(addr, 8) == bytes(8)
    pte = env.pte(mm, addr)
    assert env.pfn_of(pte) == zpfn and pte == env.mkspecial(int(env.ops.pfn_pte(zpfn, vma.page_prot)))
    if env.scheme == "A":
        assert env.special(pte) and env.normal_page(mm, addr) is None
    assert env.counts(zpfn) == counts and mm.rss == {"file": 0, "anon": 0}
    mm.write(addr, b"z")
    assert mm.rss == {"file": 0, "anon": 1} and env.pfn_of(env.pte(mm, addr)) != zpfn
    assert mm.read(addr, 8) == b"z" + bytes(7) and env.counts(zpfn) == counts
    mm.exit()
    assert env.counts(zpfn) == counts
    zero.release_zero_page(env.m)
    env.assert_clean()


@pytest.mark.parametrize("how", ["mkwrite", "shared-writable"])
def test_zero_pfn_refused_618(env618: Env, how: str) -> None:
    """S13: with mkwrite, or into a writable shared VMA without pfn_mkwrite + DAX/IO, the zero
    pfn is refused: VM_FAULT_SIGBUS and nothing changes."""
    env = env618
    mm = env.m.new_mm()
    zpfn = zero.zero_pfn(env.m)
    addr, vma = map_device(env, mm, 1, shared=how == "shared-writable", flags=MIXEDMAP)
    before = state(env, mm, vma, [zpfn])
    assert not vmf.vm_mixed_ok(vma, zpfn, mkwrite=how == "mkwrite")
    ret = (
        vmf.vmf_insert_mixed_mkwrite(vma, addr, zpfn)
        if how == "mkwrite"
        else vmf.vmf_insert_mixed(vma, addr, zpfn)
    )
    assert ret == SIGBUS
    assert state(env, mm, vma, [zpfn]) == before
    mm.exit()
    zero.release_zero_page(env.m)


# -- vm_insert_pages (5.1) ------------------------------------------------------------------------
def test_vm_insert_pages_maps_the_batch_618(env618: Env) -> None:
    env = env618
    mm = env.m.new_mm()
    pfns = env.driver_pages(8)
    addr, vma = map_device(env, mm, 8, shared=True)
    assert vmf.vm_insert_pages(vma, addr, np.array(pfns)) == (0, 0)
    assert vma.flags & MIXEDMAP and not vma.flags & VM.INSERTPAGE
    for i, p in enumerate(pfns):
        pte = env.pte(mm, addr + i * env.ps)
        assert pte == int(env.ops.pfn_pte(p, vma.page_prot)) and env.normal_page(mm, addr + i * env.ps) == p
        assert env.counts(p) == (2, 1)
    assert mm.rss == {"file": 8, "anon": 0}
    mm.exit()
    assert all(env.counts(p) == (1, 0) for p in pfns)


@pytest.mark.parametrize("what", ["refcount-0", "anonymous", "busy"])
def test_vm_insert_pages_stops_at_the_first_failure_618(env618: Env, what: str) -> None:
    """Pages before the failing one stay mapped; the result is the errno and *num, the
    count not inserted."""
    env = env618
    mm = env.m.new_mm()
    pfns = env.driver_pages(6)
    addr, vma = map_device(env, mm, 6, shared=True, flags=MIXEDMAP)
    if what == "busy":
        memory.vm_insert_page(vma, addr + 3 * env.ps, pfns[3])
        want = (-errno.EBUSY, 3)
    else:
        if what == "refcount-0":
            (bad,) = env.m.pages.alloc_pages(1).tolist()
            env.m.pages.free_pages(bad)
        else:
            anon = mm.mmap(env.ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
            mm.write(anon, b"a")
            bad = env.pfn_of(env.pte(mm, anon))
        pfns[3] = bad
        want = (-errno.EINVAL, 3)
    got = vmf.vm_insert_pages(vma, addr, pfns)
    assert got == want, env.say(f"{what}: {got} != {want}")
    for i in range(3):
        assert env.normal_page(mm, addr + i * env.ps) == pfns[i]
    for i in (4, 5):
        assert env.none(env.pte(mm, addr + i * env.ps))
    assert mm.rss["file"] == 3 + (what == "busy")
    mm.exit()


def test_vm_insert_pages_refusals_618(env618: Env) -> None:
    """-EFAULT outside the VMA with *num untouched, a PFNMAP VMA BUGs, -ENOMEM for a table it
    cannot allocate (the pages of the tables it had are mapped), bad input before anything."""
    env = env618
    mm = env.m.new_mm()
    pfns = env.driver_pages(4)
    addr, vma = map_device(env, mm, 4, shared=True)
    before = state(env, mm, vma, pfns)
    assert vmf.vm_insert_pages(vma, addr + env.ps, pfns) == (-errno.EFAULT, 4)
    with pytest.raises(ValueError):
        vmf.vm_insert_pages(vma, addr, np.array([[1, 2]]))
    assert state(env, mm, vma, pfns) == before
    paddr, pvma = map_device(env, mm, 1, shared=True, flags=PFNMAP)
    with pytest.raises(VMBug, match="VM_PFNMAP"):
        vmf.vm_insert_pages(pvma, paddr, pfns[:1])
    # a batch across a PTE-table boundary whose second table cannot be allocated
    span = env.ps << env.m.fmt.levels[-1].index_bits
    start = far(mm) + span - 3 * env.ps
    baddr, bvma = map_device(env, mm, 6, shared=True, addr=start)
    memory.vm_insert_page(bvma, baddr, pfns[0])  # the first table exists now
    with env.no_free_ram():
        got = vmf.vm_insert_pages(bvma, baddr + env.ps, [*pfns[1:4], pfns[0]])
    assert got == (-errno.ENOMEM, 2), env.say(f"ENOMEM at the second table: {got}")
    assert [env.none(env.pte(mm, baddr + i * env.ps)) for i in range(6)] == [False] * 3 + [True] * 3
    mm.exit()
    assert all(env.counts(p) == (1, 0) for p in pfns)


# -- 2.6.26/2.6.27: none of the new functions exists -------------------------------------------------
NEW: dict[str, tuple[Rule, Callable[[VMA, int, int], object]]] = {
    "vmf_insert_pfn": (VMF_INSERT, lambda v, a, p: vmf.vmf_insert_pfn(v, a, p)),
    "vmf_insert_pfn_prot": (
        VMF_INSERT_PFN_PROT,
        lambda v, a, p: vmf.vmf_insert_pfn_prot(v, a, p, v.page_prot),
    ),
    "vmf_insert_mixed": (VMF_INSERT, lambda v, a, p: vmf.vmf_insert_mixed(v, a, p)),
    "vmf_insert_mixed_mkwrite": (
        VMF_INSERT_MIXED_MKWRITE,
        lambda v, a, p: vmf.vmf_insert_mixed_mkwrite(v, a, p),
    ),
    "vm_insert_page": (VM_INSERT_PAGE_SETS_MIXEDMAP, lambda v, a, p: vmf.vm_insert_page(v, a, p)),
    "vm_insert_pages": (VM_INSERT_PAGES, lambda v, a, p: vmf.vm_insert_pages(v, a, [p])),
    "vm_mixed_ok": (VM_MIXED_OK, lambda v, a, p: vmf.vm_mixed_ok(v, p)),
    "vm_mixed_zeropage_allowed": (MIXED_ZEROPAGE, lambda v, a, p: vmf.vm_mixed_zeropage_allowed(v)),
}


@pytest.mark.parametrize("name", list(NEW))
@pytest.mark.parametrize("flags", [MIXEDMAP, PFNMAP, 0], ids=["mixedmap", "pfnmap", "none"])
def test_new_functions_are_unsupported_on_2008_kernels(env_old: Env, name: str, flags: int) -> None:
    """Each modern function raises UnsupportedRule naming the profile and the release that
    introduced it, before any PTE, refcount, flag or table changes."""
    env = env_old
    rule, call = NEW[name]
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, flags=flags)
    (ram,) = env.driver_pages(1)
    dev = env.devmem(1)
    for pfn in (ram, dev):
        before = state(env, mm, vma, [ram])
        with pytest.raises(UnsupportedRule) as exc:
            call(vma, addr, pfn)
        msg = str(exc.value)
        assert (
            f"kernel {env.m.profile}" in msg and f"introduced in {'.'.join(map(str, rule.introduced))}" in msg
        ), msg
        assert exc.value.rule is rule and exc.value.profile == env.m.profile
        assert state(env, mm, vma, [ram]) == before, env.say(f"{name} changed state before refusing")
    mm.exit()


# -- hypothesis: random vmf_insert_* sequences -------------------------------------------------------
KINDS = ("nopage", "devpage", "ram", "zero")
OPS = ("mixed", "mixed_mkwrite", "pfn", "page", "pages")


@pytest.mark.parametrize("case", MODERN, ids=[c.id for c in MODERN])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_random_inserts_agree_with_vm_normal_page(case: Case, shared: bool, data: st.DataObject) -> None:
    """Random vmf_insert_* / vm_insert_page(s) over a MIXEDMAP VMA: after every step each present
    PTE is normal exactly when the struct page behind it is counted for it (refcount, mapcount
    and file RSS match the normal PTEs), and munmap gives every reference back."""
    env = Env(case, ram="32M")
    m = env.m
    mm = m.new_mm()
    n = 6
    addr, vma = map_device(env, mm, n, shared=shared, flags=MIXEDMAP)
    pool = {
        "nopage": env.devmem(n, fill=False),
        "devpage": env.devmem(n, memmap=True, fill=False),
        "ram": env.driver_pages(n)[0],
    }
    zpfn = zero.zero_pfn(m)
    pages = [pool["devpage"] + i for i in range(n)] + [pool["ram"] + i for i in range(n)] + [zpfn]
    initial = {p: env.counts(p) for p in pages}
    steps = data.draw(
        st.lists(
            st.tuples(
                st.sampled_from(OPS), st.integers(0, n - 1), st.sampled_from(KINDS), st.integers(0, n - 1)
            ),
            max_size=12,
        )
    )
    for op, idx, kind, j in steps:
        va = addr + idx * env.ps
        pfn = zpfn if kind == "zero" else pool[kind] + j
        valid = kind != "nopage"
        if op == "mixed":
            assert vmf.vmf_insert_mixed(vma, va, pfn) in (NOPAGE, SIGBUS)
        elif op == "mixed_mkwrite":
            assert vmf.vmf_insert_mixed_mkwrite(vma, va, pfn) in (NOPAGE, SIGBUS)
        elif op == "pfn":
            if valid:
                with pytest.raises(VMBug):
                    vmf.vmf_insert_pfn(vma, va, pfn)
            else:
                assert vmf.vmf_insert_pfn(vma, va, pfn) == NOPAGE
        elif op == "page":
            with contextlib.suppress(EBUSY, EINVAL):
                vmf.vm_insert_page(vma, va, pfn)
        else:
            count = min(2, n - idx)
            vmf.vm_insert_pages(vma, va, [pfn] * count if valid else [pool["ram"]] * count)
        _check_accounting(env, mm, vma, pages, initial)
    mm.munmap(addr, n * env.ps)
    assert mm.rss == {"file": 0, "anon": 0}
    assert {p: env.counts(p) for p in pages} == initial
    mm.exit()


def _check_accounting(
    env: Env, mm: MM, vma: VMA, pages: list[int], initial: dict[int, tuple[int, int]]
) -> None:
    vas, ptes, reach = mm.pt.range_ptes(vma.start, vma.npages)
    present = reach & np.asarray(env.ops.pte_present(ptes), dtype=np.bool_)
    normal: dict[int, int] = {}
    for va, pte in zip(vas[present].tolist(), ptes[present].tolist(), strict=True):
        pfn = memory.vm_normal_page(vma, va, pte)
        if env.scheme == "A":
            assert (pfn is None) == env.special(pte), env.say("the bit decides", pte=pte)
        if pfn is not None:
            normal[pfn] = normal.get(pfn, 0) + 1
    assert mm.rss == {"file": sum(normal.values()), "anon": 0}
    for p in pages:
        ref0, map0 = initial[p]
        k = normal.get(p, 0)
        assert env.counts(p) == (ref0 + k, map0 + k), env.say(
            f"pfn {p:#x}: {env.counts(p)} for {k} normal PTEs"
        )
