"""The end-to-end scenarios of kernel-mm-semantics.md section 12 that need no XIP filesystem
(S6, S7, S8, S10, S11, S16), written once and run on every representative arch.

Each runner asserts the scenario's per-step rules as it goes (messages name the arch and show
PTEs in hex) and returns an :class:`Outcome`: ``obs`` holds the observable results --
refcounts, mapcounts, RSS, the bytes read (as a digest), errnos, classifications -- which must
be *identical* on every arch (pfns and PTE values never go there: they differ by arch), and
``detail`` what is arch-specific (PTE values, which GUP path pinned).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import attrs
import numpy as np

from mixedmap import EFAULT, KernelErrno, VMBug
from mixedmap.mm import memory
from mixedmap.mm.gup import get_user_pages, get_user_pages_fast
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE

from .helpers import VM, Env, flags_str, hx, inserting, map_device

ANON = MAP_PRIVATE | MAP_ANONYMOUS


@attrs.frozen
class Outcome:
    obs: dict[str, object]
    detail: dict[str, object]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _kinds(env: Env, mm: MM, addr: int, n: int) -> list[str]:
    return ["special" if env.normal_page(mm, addr + i * env.ps) is None else "normal" for i in range(n)]


def _errno(fn: Callable[[], object]) -> str:
    try:
        fn()
    except VMBug:
        return "VMBug"
    except KernelErrno as exc:
        return exc.errname
    return "ok"


def _const(pfn: int) -> Callable[[int], int]:
    return lambda _pgoff: pfn


def gup_fast_capable(env: Env) -> bool:
    """The kernel's rule (see test_gup): the special bit and the arch's lockless gup.c, as
    the format declares it (x86/powerpc from 2.6.27, s390 later)."""
    return env.scheme == "A" and env.case.mode.fmt.has_lockless_gup


# -- S6 -------------------------------------------------------------------------------------------
def s6(env: Env) -> Outcome:
    """Private /dev/mem-style PFNMAP (remap_pfn_range at mmap), write, fork, partial remap,
    GUP."""
    ps = env.ps
    obs: dict[str, object] = {}
    detail: dict[str, object] = {}
    base = env.devmem(4)
    mm = env.m.new_mm()
    addr, vma = map_device(
        env, mm, 4, shared=False, on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, 4 * ps)
    )
    obs["vmflags"] = flags_str(vma)
    obs["vm_pgoff_is_pfn"] = vma.pgoff == base
    obs["kinds_after_remap"] = _kinds(env, mm, addr, 4)
    detail["ptes_after_remap"] = [hx(env.pte(mm, addr + i * ps)) for i in range(4)]
    # 1. write at page 2: COW from the user address
    acc = mm.access(addr + 2 * ps, write=True)
    mm.write(addr + 2 * ps + 100, b"S6 was here")
    n = env.pfn_of(env.pte(mm, addr + 2 * ps))
    obs["write_fault"] = acc.fault
    obs["rss_after_write"] = dict(mm.rss)
    obs["cow_page_counts"] = env.counts(n)
    obs["cow_page_is_linear"] = n == base + 2
    want = env.pattern(2, salt=1)
    want = want[:100] + b"S6 was here" + want[111:]
    data = mm.read(addr + 2 * ps, ps)
    assert data == want, env.say(
        "S6: page 2 must hold the device bytes plus the write", pte=env.pte(mm, addr + 2 * ps)
    )
    obs["page2_digest"] = digest(data)
    obs["device_untouched"] = env.frame(base + 2) == env.pattern(2, salt=1)
    # 2. classification: scheme B sees pfn N != vm_pgoff + 2 in a COW VMA -> normal
    obs["kinds_after_write"] = _kinds(env, mm, addr, 4)
    # 3. fork: PFNMAP -> copied
    child = mm.fork()
    obs["child_kinds"] = _kinds(env, child, addr, 4)
    obs["cow_page_counts_after_fork"] = env.counts(n)
    obs["child_rss"] = dict(child.rss)
    p2, c2 = env.pte(mm, addr + 2 * ps), env.pte(child, addr + 2 * ps)
    obs["page2_writable_after_fork"] = (env.writable(p2), env.writable(c2))
    detail["page2_after_fork"] = (hx(p2), hx(c2))
    obs["child_page2_digest"] = digest(child.read(addr + 2 * ps, ps))
    # 4. partial remap of the COW VMA
    obs["partial_remap"] = _errno(lambda: memory.remap_pfn_range(vma, addr, base, 2 * ps))
    # 5. get_user_pages refuses any VM_PFNMAP VMA, even the COWed page
    obs["gup_slow_page2"] = _errno(lambda: get_user_pages(mm, addr + 2 * ps, 1, write=False))
    try:
        res = get_user_pages_fast(mm, addr + 2 * ps, 1, write=False)
        detail["gup_fast_page2"] = (res.fast, res.slow, res.fallback_reason)
        assert gup_fast_capable(env) and res.pfns.tolist() == [n], env.say(
            f"S6 step 5: lockless pin {res}", pte=p2
        )
        env.m.pages.put_page(res.pfns)
    except EFAULT:
        detail["gup_fast_page2"] = "EFAULT"
        assert not gup_fast_capable(env), env.say(
            "S6 step 5: the lockless walk must pin the COWed page", pte=p2
        )
    child.exit()
    obs["cow_page_counts_after_child_exit"] = env.counts(n)
    mm.exit()
    obs["leaks"] = env.m.pages.leaks()
    obs["pagetable_bytes"] = env.m.pagetable_bytes()
    return Outcome(obs, detail)


# -- S7 -------------------------------------------------------------------------------------------
def s7(env: Env) -> Outcome:
    """Shared VM_PFNMAP device filled by vm_insert_pfn from ->fault; a racing insert gets
    -EBUSY; zap_vma_ptes and munmap clear PTEs without touching any counter."""
    ps = env.ps
    obs: dict[str, object] = {}
    detail: dict[str, object] = {}
    (ram,) = env.driver_pages(1)  # page 0: RAM with a struct page (must stay untouched)
    dev = env.devmem(1)  # page 1: device memory
    pfns = [ram, dev]
    mm = env.m.new_mm()
    addr, vma = map_device(
        env, mm, 2, shared=True, flags=VM.PFNMAP, fault=inserting(memory.vm_insert_pfn, lambda i: pfns[i])
    )
    obs["vmflags"] = flags_str(vma)
    obs["faults"] = [mm.access(addr).fault, mm.access(addr + ps).fault, mm.access(addr).fault]
    obs["kinds"] = _kinds(env, mm, addr, 2)
    ptes = [env.pte(mm, addr + i * ps) for i in range(2)]
    detail["ptes"] = [hx(p) for p in ptes]
    obs["special_bit"] = [env.special(p) for p in ptes] == [env.scheme == "A"] * 2
    obs["ram_counts"] = env.counts(ram)
    obs["rss"] = dict(mm.rss)
    obs["bytes"] = [digest(mm.read(addr + i * ps, ps)) for i in range(2)]
    # 2. a second thread inserting at the same address
    obs["racing_insert"] = _errno(lambda: memory.vm_insert_pfn(vma, addr, dev))
    obs["pte_unchanged_after_ebusy"] = env.pte(mm, addr) == ptes[0]
    assert obs["pte_unchanged_after_ebusy"], env.say(
        "S7: -EBUSY changed the PTE", old=ptes[0], new=env.pte(mm, addr)
    )
    # 4. zap_vma_ptes is allowed on PFNMAP and returns 0
    obs["zap_vma_ptes"] = memory.zap_vma_ptes(vma, addr, 2 * ps)
    obs["after_zap"] = [env.none(env.pte(mm, addr + i * ps)) for i in range(2)]
    obs["ram_counts_after_zap"] = env.counts(ram)
    obs["refault"] = mm.access(addr + ps).fault
    obs["bytes_after_refault"] = digest(mm.read(addr + ps, ps))
    # 3. munmap: PTEs cleared, no counter changes
    mm.munmap(addr, 2 * ps)
    obs["after_munmap"] = [env.none(env.pte(mm, addr + i * ps)) for i in range(2)]
    obs["ram_counts_after_munmap"] = env.counts(ram)
    obs["rss_after_munmap"] = dict(mm.rss)
    mm.exit()
    obs["pagetable_bytes"] = env.m.pagetable_bytes()
    return Outcome(obs, detail)


# -- S8 -------------------------------------------------------------------------------------------
def s8(env: Env) -> Outcome:
    """Illegal inserts are BUGs (2008): (a) vm_insert_pfn into a private PFNMAP VMA, (b)
    vm_insert_pfn of a pfn_valid pfn into MIXEDMAP, (c) vm_insert_pfn into PFNMAP|MIXEDMAP
    (which vm_insert_mixed and remap_pfn_range accept), (d) vm_insert_mixed without
    MIXEDMAP. (e) is a modern-kernel rule."""
    obs: dict[str, object] = {}
    detail: dict[str, object] = {}
    mm = env.m.new_mm()
    dev = env.devmem(4)
    (ram,) = env.driver_pages(1)
    cases = {
        "a_pfn_private_pfnmap": (VM.PFNMAP, False, memory.vm_insert_pfn, dev),
        "b_pfn_valid_mixedmap": (VM.MIXEDMAP, True, memory.vm_insert_pfn, ram),
        "c_pfn_both_flags": (VM.PFNMAP | VM.MIXEDMAP, True, memory.vm_insert_pfn, dev + 1),
        "d_mixed_without_mixedmap": (VM.PFNMAP, True, memory.vm_insert_mixed, dev + 2),
    }
    for name, (flags, shared, fn, pfn) in cases.items():
        addr, vma = map_device(env, mm, 1, shared=shared, flags=flags)
        before = (env.pte(mm, addr), flags_str(vma), dict(mm.rss), env.counts(ram))
        obs[name] = _errno(lambda fn=fn, vma=vma, addr=addr, pfn=pfn: fn(vma, addr, pfn))  # type: ignore[misc]
        after = (env.pte(mm, addr), flags_str(vma), dict(mm.rss), env.counts(ram))
        obs[f"{name}_unchanged"] = after == before
        assert after == before, env.say(f"S8 {name}: a BUG must change nothing", old=before[0], new=after[0])
    addr, vma = map_device(env, mm, 2, shared=True, flags=VM.PFNMAP | VM.MIXEDMAP)
    obs["c_mixed_accepts_both"] = _errno(lambda: memory.vm_insert_mixed(vma, addr, dev + 3))
    obs["c_remap_accepts_both"] = _errno(lambda: memory.remap_pfn_range(vma, addr + env.ps, dev, env.ps))
    obs["c_kinds"] = _kinds(env, mm, addr, 2)
    detail["c_ptes"] = [hx(env.pte(mm, addr + i * env.ps)) for i in range(2)]
    mm.exit()
    obs["pagetable_bytes"] = env.m.pagetable_bytes()
    return Outcome(obs, detail)


# -- S10 ------------------------------------------------------------------------------------------
def s10(env: Env, threads: int = 4, npages: int = 16) -> Outcome:
    """DB2-style direct I/O: many get_user_pages_fast calls on present anonymous pages --
    refcount +1 per page per call, no slow-path entry; an absent or special PTE makes a call
    fall back from the first unpinned page onward."""
    ps = env.ps
    obs: dict[str, object] = {}
    detail: dict[str, object] = {}
    mm = env.m.new_mm()
    addr = mm.mmap((npages + 2) * ps, "rw", ANON)
    for i in range(npages):
        mm.write(addr + i * ps, bytes([i]) * 8)
    pfns = [env.pfn_of(env.pte(mm, addr + i * ps)) for i in range(npages)]
    results = [get_user_pages_fast(mm, addr, npages, write=True) for _ in range(threads)]
    obs["pinned_per_call"] = [int(r.pfns.size) for r in results]
    obs["pins_match_ptes"] = all(r.pfns.tolist() == pfns for r in results)
    obs["counts_while_pinned"] = sorted({env.counts(p) for p in pfns})
    detail["paths"] = [(r.fast, r.slow, r.fallback_reason) for r in results]
    if gup_fast_capable(env):
        assert all((r.fast, r.slow) == (npages, 0) for r in results), env.say(
            f"S10: zero slow-path entries {detail}"
        )
    for r in results:
        env.m.pages.put_page(r.pfns)
    obs["counts_released"] = sorted({env.counts(p) for p in pfns})
    # page npages is absent: the call falls back there and faults it in
    res = get_user_pages_fast(mm, addr + (npages - 2) * ps, 3, write=True)
    obs["fallback_absent_pinned"] = int(res.pfns.size)
    obs["rss_after_fallback"] = dict(mm.rss)
    detail["fallback_absent"] = (res.fast, res.slow, res.fallback_reason)
    if gup_fast_capable(env):
        assert (res.fast, res.slow, res.fallback_reason) == (2, 1, "pte not present"), env.say(f"S10: {res}")
    env.m.pages.put_page(res.pfns)
    # a special PTE right after the anonymous pages
    last = addr + (npages + 1) * ps
    mm.munmap(last, ps)
    dev = env.devmem(1)
    map_device(
        env,
        mm,
        1,
        shared=True,
        addr=last,
        flags=VM.MIXEDMAP,
        fault=inserting(memory.vm_insert_mixed, lambda i: dev),
    )
    mm.access(last)
    res2 = get_user_pages_fast(mm, addr + npages * ps, 2, write=True)
    obs["fallback_special_pinned"] = int(res2.pfns.size)
    detail["fallback_special"] = (res2.fast, res2.slow, res2.fallback_reason, hx(env.pte(mm, last)))
    if gup_fast_capable(env):
        assert (res2.fast, res2.fallback_reason) == (1, "special pte"), env.say(
            f"S10: {res2}", pte=env.pte(mm, last)
        )
    env.m.pages.put_page(res2.pfns)
    mm.exit()
    obs["leaks"] = env.m.pages.leaks()
    return Outcome(obs, detail)


# -- S11 ------------------------------------------------------------------------------------------
def s11(env: Env) -> Outcome:
    """mprotect round trip on special PTEs: read-only keeps special bit and pfn; back to rw a
    shared PTE is writable again (no write-notify), a private one never is -- its next
    write COWs."""
    ps = env.ps
    obs: dict[str, object] = {}
    detail: dict[str, object] = {}
    mm = env.m.new_mm()
    dev = env.devmem(2)
    for name, shared in (("shared", True), ("private", False)):
        pfn = dev if shared else dev + 1
        addr, _ = map_device(
            env,
            mm,
            1,
            shared=shared,
            flags=VM.MIXEDMAP,
            fault=inserting(memory.vm_insert_mixed, _const(pfn)),
        )
        mm.access(addr)
        steps = [env.pte(mm, addr)]
        for prot in ("r", "rw"):
            mm.mprotect(addr, ps, prot)
            steps.append(env.pte(mm, addr))
        detail[name] = [hx(p) for p in steps]
        orig = steps[0]
        obs[f"{name}_writable"] = [env.writable(p) for p in steps]
        obs[f"{name}_special_kept"] = all(env.special(p) == env.special(orig) for p in steps)
        obs[f"{name}_pfn_kept"] = all(env.pfn_of(p) == pfn for p in steps)
        obs[f"{name}_classified"] = _kinds(env, mm, addr, 1)
        acc = mm.access(addr, write=True)
        obs[f"{name}_write"] = (acc.fault, acc.pfn == pfn)
        obs[f"{name}_rss_after_write"] = dict(mm.rss)
        obs[f"{name}_device_bytes_changed"] = env.frame(pfn) != env.pattern(pfn - dev, salt=1)
        mm.write(addr, b"s11")
        obs[f"{name}_device_written"] = env.frame(pfn)[:3] == b"s11"
    mm.exit()
    obs["leaks"] = env.m.pages.leaks()
    return Outcome(obs, detail)


# -- S16 ------------------------------------------------------------------------------------------
def s16(env: Env, i: int = 2, n: int = 4) -> Outcome:
    """Scheme B's theoretical corner case: a COW PFNMAP VMA at pfn base B over *free* RAM,
    B chosen so that the allocator's next frame is B + i -- the COW page of page i lands on
    vm_pgoff + i and is taken for the original special PTE."""
    m, ps = env.m, env.ps
    mm = m.new_mm()
    addr, vma = map_device(env, mm, n, shared=False)
    for k in range(n):  # the page tables first, so the COW allocation is the next one
        mm.pt.pte_slot(addr + k * ps, allocate=True)
    (probe,) = m.pages.alloc_pages(1).tolist()
    m.pages.free_pages(probe)
    # the allocator hands out the lowest free frame after its cursor (past boot reservations)
    nxt = probe + 1 + int(np.argmin(m.frames.is_used(np.arange(probe + 1, probe + 1025, dtype=np.uint64))))
    assert not m.frames.is_used(np.array([nxt], dtype=np.uint64))[0], env.say(
        "S16 setup: the next frame is taken"
    )
    base = nxt - i
    memory.remap_pfn_range(vma, addr, base, n * ps)
    mm.write(addr + i * ps, b"S16")
    pte = env.pte(mm, addr + i * ps)
    cow = env.pfn_of(pte)
    assert cow == base + i, env.say(
        f"S16 setup: the COW page {cow:#x} is not vm_pgoff + {i} = {base + i:#x}", pte=pte
    )
    obs: dict[str, object] = {
        "special_bit": env.special(pte),
        "classified": _kinds(env, mm, addr, n),
        "rss_after_cow": dict(mm.rss),
        "bytes": mm.read(addr + i * ps, 3),
    }
    mm.munmap(addr, n * ps)
    page = m.page(cow)
    assert page is not None
    obs["rss_after_munmap"] = dict(mm.rss)
    obs["cow_page_after_munmap"] = (page.refcount, page.mapcount)
    mm.exit()
    obs["leaks_after_exit"] = m.pages.leaks()
    obs["pagetable_bytes_after_exit"] = m.pagetable_bytes()
    return Outcome(obs, {"pte": hx(pte), "vm_pgoff": hex(base)})


SCENARIOS: dict[str, Callable[[Env], Outcome]] = {
    "S6": s6,
    "S7": s7,
    "S8": s8,
    "S10": s10,
    "S11": s11,
    "S16": s16,
}

#: The kernel's answer for each scenario (section 12), per scheme where the schemes differ.
EXPECTED: dict[str, dict[str, dict[str, object]]] = {
    "S6": {
        "*": {
            "vmflags": "rd wr mr mw me pf io",
            "vm_pgoff_is_pfn": True,
            "kinds_after_remap": ["special"] * 4,
            "write_fault": "wp",
            "rss_after_write": {"file": 0, "anon": 1},
            "cow_page_counts": (1, 1),
            "cow_page_is_linear": False,
            "device_untouched": True,
            "kinds_after_write": ["special", "special", "normal", "special"],
            "child_kinds": ["special", "special", "normal", "special"],
            "cow_page_counts_after_fork": (2, 2),
            "child_rss": {"file": 0, "anon": 1},
            "page2_writable_after_fork": (False, False),
            "partial_remap": "EINVAL",
            "gup_slow_page2": "EFAULT",
            "cow_page_counts_after_child_exit": (1, 1),
            "leaks": {},
            "pagetable_bytes": 0,
        }
    },
    "S7": {
        "*": {
            "vmflags": "rd wr sh mr mw me ms pf",
            "faults": ["fault", "fault", "none"],
            "kinds": ["special", "special"],
            "special_bit": True,
            "ram_counts": (1, 0),
            "rss": {"file": 0, "anon": 0},
            "racing_insert": "EBUSY",
            "pte_unchanged_after_ebusy": True,
            "zap_vma_ptes": 0,
            "after_zap": [True, True],
            "ram_counts_after_zap": (1, 0),
            "refault": "fault",
            "after_munmap": [True, True],
            "ram_counts_after_munmap": (1, 0),
            "rss_after_munmap": {"file": 0, "anon": 0},
            "pagetable_bytes": 0,
        }
    },
    "S8": {
        "*": {
            "a_pfn_private_pfnmap": "VMBug",
            "b_pfn_valid_mixedmap": "VMBug",
            "c_pfn_both_flags": "VMBug",
            "d_mixed_without_mixedmap": "VMBug",
            "a_pfn_private_pfnmap_unchanged": True,
            "b_pfn_valid_mixedmap_unchanged": True,
            "c_pfn_both_flags_unchanged": True,
            "d_mixed_without_mixedmap_unchanged": True,
            "c_mixed_accepts_both": "ok",
            "c_remap_accepts_both": "ok",
            "c_kinds": ["special", "special"],
            "pagetable_bytes": 0,
        }
    },
    "S10": {
        "*": {
            "pinned_per_call": [16] * 4,
            "pins_match_ptes": True,
            "counts_while_pinned": [(5, 1)],
            "counts_released": [(1, 1)],
            "fallback_absent_pinned": 3,
            "rss_after_fallback": {"file": 0, "anon": 17},
            "fallback_special_pinned": 1,
            "leaks": {},
        }
    },
    "S11": {
        "*": {
            "shared_writable": [True, False, True],
            "shared_special_kept": True,
            "shared_pfn_kept": True,
            "shared_classified": ["special"],
            "shared_write": ("none", True),
            "shared_rss_after_write": {"file": 0, "anon": 0},
            "shared_device_bytes_changed": False,
            "shared_device_written": True,
            "private_writable": [False, False, False],
            "private_special_kept": True,
            "private_pfn_kept": True,
            "private_classified": ["special"],
            "private_write": ("wp", False),
            "private_rss_after_write": {"file": 0, "anon": 1},
            "private_device_bytes_changed": False,
            "private_device_written": False,
            "leaks": {},
        }
    },
    "S16": {
        "A": {
            "special_bit": False,
            "classified": ["special", "special", "normal", "special"],
            "rss_after_cow": {"file": 0, "anon": 1},
            "bytes": b"S16",
            "rss_after_munmap": {"file": 0, "anon": 0},
            "cow_page_after_munmap": (0, 0),
            "leaks_after_exit": {},
            "pagetable_bytes_after_exit": 0,
        },
        "B": {
            "special_bit": False,
            "classified": ["special"] * 4,
            "rss_after_cow": {"file": 0, "anon": 1},
            "bytes": b"S16",
            "rss_after_munmap": {"file": 0, "anon": 1},
            "cow_page_after_munmap": (1, 1),
            "leaks_after_exit": {"anon": 1},
            "pagetable_bytes_after_exit": 0,
        },
    },
}


def expected(name: str, scheme: str) -> dict[str, object]:
    table = EXPECTED[name]
    return table.get(scheme) or table["*"]


__all__ = ["EXPECTED", "SCENARIOS", "Outcome", "expected"]
