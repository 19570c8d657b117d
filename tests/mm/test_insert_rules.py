"""The insertion primitives of 2.6.27 ``mm/memory.c`` (kernel-mm-semantics.md sections 4.5
and 5.1-5.6): ``vm_insert_page``, ``vm_insert_pfn``, ``vm_insert_mixed``,
``remap_pfn_range`` and ``zap_vma_ptes`` -- their BUG_ON preconditions (a :class:`VMBug`
naming the rule, nothing changed), their errno results, ``-EBUSY`` leaving the PTE
bit-for-bit unchanged, their flag side effects, and which PTE each one leaves behind under
scheme A (special bit) and scheme B (pfn_valid decides).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mixedmap import EBUSY, EFAULT, EINVAL, ENOMEM, EPERM, VMBug
from mixedmap.mm import memory
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import VMA

from .helpers import VM, Env, flags_str, map_device, snapshot

PFNMAP, MIXEDMAP = VM.PFNMAP, VM.MIXEDMAP


def _far(mm: MM) -> int:
    """An address whose page tables do not exist yet below the root (for -ENOMEM)."""
    return (mm.task_size // 2) & ~((1 << 30) - 1)


def _pfn(env: Env, kind: str) -> int:
    """A pfn of the given kind: device memory without struct page, a driver's RAM page, or
    device memory with struct pages (memmap=True)."""
    if kind == "nopage":
        return env.devmem(1)
    if kind == "ram":
        return env.driver_pages(1)[0]
    assert kind == "devpage"
    return env.devmem(1, memmap=True)


# -- vm_insert_pfn (5.2) ------------------------------------------------------------------------
BUG_CASES = [
    # id, VMA flags set by the driver, MAP_SHARED?, pfn kind, the BUG_ON the VMBug must name
    ("neither-flag", 0, True, "nopage", r"BUG_ON\(!\(vma->vm_flags & \(VM_PFNMAP\|VM_MIXEDMAP\)\)\)"),
    ("both-flags", PFNMAP | MIXEDMAP, True, "nopage", r"VM_PFNMAP and VM_MIXEDMAP both set"),
    ("pfnmap-cow", PFNMAP, False, "nopage", r"VM_PFNMAP && is_cow_mapping"),
    ("mixedmap-pfn_valid-ram", MIXEDMAP, True, "ram", r"VM_MIXEDMAP && pfn_valid"),
    ("mixedmap-pfn_valid-devpage", MIXEDMAP, False, "devpage", r"VM_MIXEDMAP && pfn_valid"),
]


@pytest.mark.parametrize(
    ("flags", "shared", "kind", "rule"), [c[1:] for c in BUG_CASES], ids=[c[0] for c in BUG_CASES]
)
def test_vm_insert_pfn_bug_on(env: Env, flags: int, shared: bool, kind: str, rule: str) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=shared, flags=flags)
    pfn = _pfn(env, kind)
    pages = [pfn] if env.m.page(pfn) else []
    before = snapshot(env, mm, vma, pages)
    with pytest.raises(VMBug, match=rule):
        memory.vm_insert_pfn(vma, addr, pfn)
    assert snapshot(env, mm, vma, pages) == before, env.say(f"vm_insert_pfn BUG ({rule}) changed state")
    # The BUG_ONs come before the range check: outside the VMA it is still the BUG.
    with pytest.raises(VMBug, match=rule):
        memory.vm_insert_pfn(vma, vma.end, pfn)


ALLOWED = [
    # id, flags, shared, kind: legal vm_insert_pfn calls (special PTE, no refcount) in both schemes
    ("pfnmap-shared-nopage", PFNMAP, True, "nopage"),
    ("pfnmap-shared-ram", PFNMAP, True, "ram"),
    ("mixedmap-shared-nopage", MIXEDMAP, True, "nopage"),
    ("mixedmap-private-nopage", MIXEDMAP, False, "nopage"),
]


@pytest.mark.parametrize(("flags", "shared", "kind"), [c[1:] for c in ALLOWED], ids=[c[0] for c in ALLOWED])
def test_vm_insert_pfn_installs_inert_special_pte(env: Env, flags: int, shared: bool, kind: str) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=shared, flags=flags)
    pfn = _pfn(env, kind)
    counts = env.m.page(pfn)
    memory.vm_insert_pfn(vma, addr + env.ps, pfn)
    pte = env.pte(mm, addr + env.ps)
    want = env.mkspecial(int(env.ops.pfn_pte(pfn, vma.page_prot)))
    assert pte == want, env.say(
        "vm_insert_pfn must write pte_mkspecial(pfn_pte(pfn, vm_page_prot))", pte=pte, want=want
    )
    assert env.special(pte) == (env.scheme == "A"), env.say("special bit iff the profile has one", pte=pte)
    assert env.normal_page(mm, addr + env.ps) is None, env.say("vm_normal_page must call it special", pte=pte)
    assert env.none(env.pte(mm, addr)), env.say("the neighbouring PTE must stay none", pte=env.pte(mm, addr))
    assert mm.rss == {"file": 0, "anon": 0}, env.say(
        f"special PTEs count in no RSS counter: {mm.rss}", pte=pte
    )
    assert env.m.page(pfn) == counts, env.say("no refcount/mapcount for a special PTE", pte=pte)
    assert vma.flags & VM.INSERTPAGE == 0, env.say(f"vm_insert_pfn sets no VM_INSERTPAGE: {flags_str(vma)}")


@pytest.mark.parametrize("where", ["below", "at-end"])
def test_vm_insert_pfn_efault_outside_the_vma(env: Env, where: str) -> None:
    mm = env.m.new_mm()
    _addr, vma = map_device(env, mm, 2, shared=True, flags=PFNMAP)
    bytes_before = env.m.pagetable_bytes()
    va = vma.start - env.ps if where == "below" else vma.end
    with pytest.raises(EFAULT):
        memory.vm_insert_pfn(vma, va, env.devmem(1))
    assert env.none(env.pte(mm, va)), env.say(f"nothing mapped at {va:#x}", pte=env.pte(mm, va))
    assert env.m.pagetable_bytes() == bytes_before, env.say(
        "-EFAULT is returned before any table is allocated"
    )


# -- -EBUSY leaves the PTE bit-for-bit unchanged (5.1, 5.2, invariant 9) ---------------------------
def _insert_page(vma: VMA, addr: int, pfn: int) -> None:
    memory.vm_insert_page(vma, addr, pfn)


BUSY = [
    # id, VMA flags, first (fn, kind), second (fn, kind)
    ("pfn-over-pfn", PFNMAP, (memory.vm_insert_pfn, "nopage"), (memory.vm_insert_pfn, "nopage")),
    ("pfn-over-ram-pfn", PFNMAP, (memory.vm_insert_pfn, "ram"), (memory.vm_insert_pfn, "ram")),
    (
        "mixed-over-mixed-nopage",
        MIXEDMAP,
        (memory.vm_insert_mixed, "nopage"),
        (memory.vm_insert_mixed, "nopage"),
    ),
    ("mixed-over-mixed-ram", MIXEDMAP, (memory.vm_insert_mixed, "ram"), (memory.vm_insert_mixed, "ram")),
    ("page-over-page", 0, (_insert_page, "ram"), (_insert_page, "ram")),
    ("pfn-over-page", MIXEDMAP, (_insert_page, "ram"), (memory.vm_insert_pfn, "nopage")),
    ("page-over-pfn", MIXEDMAP, (memory.vm_insert_pfn, "nopage"), (_insert_page, "ram")),
    ("mixed-ram-over-pfn", MIXEDMAP, (memory.vm_insert_pfn, "nopage"), (memory.vm_insert_mixed, "ram")),
]


@pytest.mark.parametrize(("flags", "first", "second"), [c[1:] for c in BUSY], ids=[c[0] for c in BUSY])
def test_ebusy_leaves_the_pte_bit_for_bit(
    env: Env,
    flags: int,
    first: tuple[Callable[[VMA, int, int], None], str],
    second: tuple[Callable[[VMA, int, int], None], str],
) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, flags=flags)
    pfn1, pfn2 = _pfn(env, first[1]), _pfn(env, second[1])
    first[0](vma, addr, pfn1)
    mm.access(addr, write=True)  # the MMU sets accessed/dirty: those bits must survive too
    pages = [p for p in (pfn1, pfn2) if env.m.page(p)]
    before = snapshot(env, mm, vma, pages)
    had_insertpage = vma.flags & VM.INSERTPAGE
    with pytest.raises(EBUSY):
        second[0](vma, addr, pfn2)
    if second[0] is _insert_page:  # vm_insert_page sets VM_INSERTPAGE before insert_page's -EBUSY
        assert vma.flags & VM.INSERTPAGE, env.say(f"VM_INSERTPAGE must be set: {flags_str(vma)}")
        vma.flags = vma.flags & ~VM.INSERTPAGE | had_insertpage
    after = snapshot(env, mm, vma, pages)
    assert after["ptes"] == before["ptes"], env.say(
        f"-EBUSY changed the PTE: {before['ptes']} -> {after['ptes']}"
    )
    assert after == before, env.say(f"-EBUSY changed counters: {before} -> {after}")


# -- -ENOMEM when a page table cannot be allocated --------------------------------------------------
ENOMEM_CASES = [
    ("vm_insert_pfn", PFNMAP, lambda vma, a, p: memory.vm_insert_pfn(vma, a, p), "nopage"),
    ("vm_insert_mixed", MIXEDMAP, lambda vma, a, p: memory.vm_insert_mixed(vma, a, p), "ram"),
    ("vm_insert_page", 0, _insert_page, "ram"),
    ("remap_pfn_range", 0, lambda vma, a, p: memory.remap_pfn_range(vma, a, p, vma.end - a), "nopage"),
]


@pytest.mark.parametrize(
    ("flags", "fn", "kind"), [c[1:] for c in ENOMEM_CASES], ids=[c[0] for c in ENOMEM_CASES]
)
def test_enomem_without_memory_for_a_page_table(
    env: Env, flags: int, fn: Callable[[VMA, int, int], None], kind: str
) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, flags=flags, addr=_far(mm))
    pfn = _pfn(env, kind)
    pages = [pfn] if env.m.page(pfn) else []
    counts = [env.m.page(p) for p in pages]
    with env.no_free_ram(), pytest.raises(ENOMEM):
        fn(vma, addr, pfn)
    assert env.none(env.pte(mm, addr)), env.say("-ENOMEM must map nothing", pte=env.pte(mm, addr))
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"-ENOMEM changed RSS: {mm.rss}")
    assert [env.m.page(p) for p in pages] == counts, env.say("-ENOMEM changed a refcount")
    fn(vma, addr, pfn)  # with memory back it works
    assert env.present(env.pte(mm, addr)), env.say("insert after -ENOMEM", pte=env.pte(mm, addr))


# -- vm_insert_page (5.1) ---------------------------------------------------------------------------
@pytest.mark.parametrize("flags", [0, MIXEDMAP], ids=["plain", "mixedmap"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_vm_insert_page_maps_a_refcounted_file_page(env: Env, flags: int, shared: bool) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=shared, flags=flags)
    (pfn,) = env.driver_pages(1)
    r0, m0 = env.counts(pfn)
    memory.vm_insert_page(vma, addr, pfn)
    pte = env.pte(mm, addr)
    want = int(env.ops.pfn_pte(pfn, vma.page_prot))
    assert pte == want, env.say(
        "vm_insert_page writes mk_pte(page, vm_page_prot), no special bit", pte=pte, want=want
    )
    assert not env.special(pte), env.say("a page inserted by vm_insert_page is never special", pte=pte)
    assert env.counts(pfn) == (r0 + 1, m0 + 1), env.say(f"refcount/mapcount +1: {env.counts(pfn)}", pte=pte)
    assert mm.rss == {"file": 1, "anon": 0}, env.say(f"file_rss +1: {mm.rss}", pte=pte)
    assert vma.flags & VM.INSERTPAGE, env.say(f"vm_insert_page sets VM_INSERTPAGE (2.6.27): {flags_str(vma)}")
    assert env.normal_page(mm, addr) == pfn, env.say("vm_normal_page returns the inserted page", pte=pte)
    mm.exit()
    assert env.counts(pfn) == (r0, m0), env.say(f"exit must drop the reference: {env.counts(pfn)}")


def test_vm_insert_page_into_a_shared_pfnmap_vma(env: Env) -> None:
    """2.6.27 does not forbid it (modern kernels BUG), but only scheme A can tell the page
    apart: scheme B calls every PTE of a non-COW PFNMAP VMA special, so zap never drops the
    reference and the page stays mapped in its struct page (the reason for the modern BUG)."""
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, flags=PFNMAP)
    (pfn,) = env.driver_pages(1)
    memory.vm_insert_page(vma, addr, pfn)
    pte = env.pte(mm, addr)
    assert env.counts(pfn) == (2, 1) and mm.rss["file"] == 1, env.say("insert_page accounting", pte=pte)
    want = pfn if env.scheme == "A" else None
    assert env.normal_page(mm, addr) == want, env.say(f"vm_normal_page must be {want}", pte=pte)
    mm.munmap(addr, 2 * env.ps)
    after = env.counts(pfn), mm.rss["file"]
    assert after == ((1, 0), 0) if env.scheme == "A" else after == ((2, 1), 1), env.say(
        f"after munmap (refcount, mapcount), file_rss = {after}", pte=pte
    )


def test_vm_insert_page_errors(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True)
    (pfn,) = env.driver_pages(1)
    # -EFAULT outside the VMA, before VM_INSERTPAGE is set
    for va in (vma.start - env.ps, vma.end):
        with pytest.raises(EFAULT):
            memory.vm_insert_page(vma, va, pfn)
    assert not vma.flags & VM.INSERTPAGE, env.say(f"-EFAULT must not set VM_INSERTPAGE: {flags_str(vma)}")
    # -EINVAL for a page with refcount 0 (a free page), also before VM_INSERTPAGE
    (free,) = env.m.pages.alloc_pages(1).tolist()
    env.m.pages.free_pages(free)
    with pytest.raises(EINVAL):
        memory.vm_insert_page(vma, addr, free)
    assert not vma.flags & VM.INSERTPAGE, env.say(
        f"page_count 0 -> -EINVAL before VM_INSERTPAGE: {flags_str(vma)}"
    )
    assert env.none(env.pte(mm, addr)), env.say("-EINVAL must map nothing", pte=env.pte(mm, addr))
    # -EINVAL for an anonymous page: insert_page checks PageAnon after vm_insert_page set the flag
    anon = mm.mmap(env.ps, "rw", 0x22)  # MAP_PRIVATE|MAP_ANONYMOUS
    apfn = mm.access(anon, write=True).pfn
    before = env.counts(apfn)
    with pytest.raises(EINVAL):
        memory.vm_insert_page(vma, addr, apfn)
    assert vma.flags & VM.INSERTPAGE, env.say(
        f"VM_INSERTPAGE is set before insert_page's PageAnon check: {flags_str(vma)}"
    )
    assert env.counts(apfn) == before and env.none(env.pte(mm, addr)), env.say(
        "anon page -EINVAL changed state"
    )
    assert mm.rss == {"file": 0, "anon": 1}, env.say(f"RSS after the refused inserts: {mm.rss}")


# -- vm_insert_mixed (5.3) and the outcome table (4.5) ---------------------------------------------
@pytest.mark.parametrize("flags", [0, PFNMAP], ids=["no-flag", "pfnmap-only"])
def test_vm_insert_mixed_bugs_without_mixedmap(env: Env, flags: int) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, flags=flags)
    pfn = env.devmem(1)
    before = snapshot(env, mm, vma)
    with pytest.raises(VMBug, match=r"BUG_ON\(!\(vma->vm_flags & VM_MIXEDMAP\)\)"):
        memory.vm_insert_mixed(vma, addr, pfn)
    with pytest.raises(VMBug, match="VM_MIXEDMAP"):
        memory.vm_insert_mixed(vma, vma.end, pfn)  # the BUG_ON precedes the range check
    assert snapshot(env, mm, vma) == before, env.say("vm_insert_mixed BUG changed state")


def test_vm_insert_mixed_efault(env: Env) -> None:
    mm = env.m.new_mm()
    _addr, vma = map_device(env, mm, 2, shared=True, flags=MIXEDMAP)
    for va in (vma.start - env.ps, vma.end):
        with pytest.raises(EFAULT):
            memory.vm_insert_mixed(vma, va, env.driver_pages(1)[0])
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"-EFAULT changed RSS: {mm.rss}")


@pytest.mark.parametrize("kind", ["nopage", "ram", "devpage"])
@pytest.mark.parametrize("flags", [MIXEDMAP, MIXEDMAP | PFNMAP], ids=["mixedmap", "mixedmap+pfnmap"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_vm_insert_mixed_outcome(env: Env, kind: str, flags: int, shared: bool) -> None:
    """Section 4.5 row 3/4: special unless scheme B meets a pfn_valid pfn (then a refcounted
    normal page, inserted through insert_page but without VM_INSERTPAGE)."""
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=shared, flags=flags)
    pfn = _pfn(env, kind)
    counts = env.counts(pfn) if kind != "nopage" else None
    memory.vm_insert_mixed(vma, addr, pfn)
    pte = env.pte(mm, addr)
    normal = env.scheme == "B" and kind != "nopage"
    base = int(env.ops.pfn_pte(pfn, vma.page_prot))
    want = base if normal else env.mkspecial(base)
    assert pte == want, env.say(f"vm_insert_mixed of a {kind} pfn", pte=pte, want=want)
    assert env.special(pte) == (env.scheme == "A"), env.say("special bit iff scheme A", pte=pte)
    assert env.normal_page(mm, addr) == (pfn if normal else None), env.say(
        f"vm_normal_page must agree with the insertion ({'normal' if normal else 'special'})", pte=pte
    )
    assert mm.rss == {"file": int(normal), "anon": 0}, env.say(f"RSS {mm.rss}", pte=pte)
    if counts is not None:
        r0, m0 = counts
        assert env.counts(pfn) == (r0 + normal, m0 + normal), env.say(
            f"refcount/mapcount {env.counts(pfn)}", pte=pte
        )
    assert not vma.flags & VM.INSERTPAGE, env.say(
        f"vm_insert_mixed never sets VM_INSERTPAGE: {flags_str(vma)}"
    )
    mm.exit()
    if counts is not None:
        assert env.counts(pfn) == counts, env.say(f"exit restored {env.counts(pfn)} != {counts}")


# -- remap_pfn_range (5.4) --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["nopage", "ram"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared", "cow"])
def test_remap_pfn_range_shape_and_flags(env: Env, kind: str, shared: bool) -> None:
    """Invariant 27: PTE i is special with pfn+i; VM_IO|VM_RESERVED|VM_PFNMAP; a COW VMA
    gets vm_pgoff := pfn, a shared one keeps its file offset."""
    mm = env.m.new_mm()
    n = 4
    addr, vma = map_device(env, mm, n, shared=shared, pgoff=7)
    pfn = env.devmem(n) if kind == "nopage" else env.driver_pages(n)[0]
    counts = [env.m.page(pfn + i) for i in range(n)]
    memory.remap_pfn_range(vma, addr, pfn, n * env.ps)
    for i in range(n):
        pte = env.pte(mm, addr + i * env.ps)
        want = env.mkspecial(int(env.ops.pfn_pte(pfn + i, vma.page_prot)))
        assert pte == want, env.say(f"PTE {i} must be special pfn {pfn + i:#x}", pte=pte, want=want)
        assert env.normal_page(mm, addr + i * env.ps) is None, env.say(f"PTE {i} classified normal", pte=pte)
    want_flags = VM.IO | VM.RESERVED | VM.PFNMAP
    assert vma.flags & want_flags == want_flags, env.say(
        f"flags must gain io|reserved|pfnmap: {flags_str(vma)}"
    )
    assert vma.pgoff == (7 if shared else pfn), env.say(
        f"vm_pgoff {vma.pgoff:#x} (pfn {pfn:#x}, shared={shared})"
    )
    assert [env.m.page(pfn + i) for i in range(n)] == counts, env.say("remap_pfn_range took a reference")
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"RSS {mm.rss}")


def test_remap_pfn_range_cow_must_cover_the_vma(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 4, shared=False, pgoff=3)
    pfn = env.devmem(4)
    before = snapshot(env, mm, vma)
    for start, size in ((addr, 2 * env.ps), (addr + env.ps, 3 * env.ps), (addr, 0)):
        with pytest.raises(EINVAL, match="whole"):
            memory.remap_pfn_range(vma, start, pfn, size)
    assert snapshot(env, mm, vma) == before, env.say(
        "a refused COW remap must change nothing (flags, pgoff, PTEs)"
    )


def test_remap_pfn_range_shared_partial_and_page_align(env: Env) -> None:
    """A non-COW VMA may be remapped piecewise; size is PAGE_ALIGNed (end = addr +
    PAGE_ALIGN(size)); size 0 hits BUG_ON(addr >= end)."""
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 4, shared=True)
    pfn = env.devmem(4)
    memory.remap_pfn_range(vma, addr + env.ps, pfn, env.ps + 1)  # 1 page + 1 byte -> 2 pages
    ptes = [env.pte(mm, addr + i * env.ps) for i in range(4)]
    assert env.none(ptes[0]) and env.none(ptes[3]), env.say(
        "outside the range stays none", p0=ptes[0], p3=ptes[3]
    )
    for i in (1, 2):
        assert env.present(ptes[i]) and env.pfn_of(ptes[i]) == pfn + i - 1, env.say(f"PTE {i}", pte=ptes[i])
    assert vma.pgoff == 0, env.say(f"shared remap keeps vm_pgoff, got {vma.pgoff:#x}")
    with pytest.raises(VMBug, match=r"addr >= end"):
        memory.remap_pfn_range(vma, addr + 3 * env.ps, pfn, 0)
    assert env.none(env.pte(mm, addr + 3 * env.ps)), env.say("BUG mapped something")
    # cow VMA with a size that PAGE_ALIGNs to the whole VMA is accepted
    addr2, vma2 = map_device(env, mm, 2, shared=False)
    memory.remap_pfn_range(vma2, addr2, pfn, env.ps + 5)
    assert vma2.pgoff == pfn and env.present(env.pte(mm, addr2 + env.ps)), env.say(
        "COW remap of PAGE_ALIGN(size) == VMA size", pte=env.pte(mm, addr2 + env.ps)
    )


def test_remap_pfn_range_bugs_on_a_populated_pte(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 4, shared=True)
    pfn = env.devmem(4)
    memory.remap_pfn_range(vma, addr + 2 * env.ps, pfn + 2, env.ps)
    before = snapshot(env, mm, vma)
    with pytest.raises(VMBug, match=r"BUG_ON\(!pte_none\(\*pte\)\)"):
        memory.remap_pfn_range(vma, addr, pfn, 4 * env.ps)
    assert snapshot(env, mm, vma) == before, env.say("the model checks every PTE first: nothing may change")


def test_remap_pfn_range_explicit_prot(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 1, shared=True, prot="rw")
    prot = env.m.fmt.protection_map[VM.READ | VM.SHARED]  # read-only shared
    pfn = env.devmem(1)
    memory.remap_pfn_range(vma, addr, pfn, env.ps, prot)
    pte = env.pte(mm, addr)
    assert pte == env.mkspecial(int(env.ops.pfn_pte(pfn, prot))), env.say(
        "remap uses the prot argument", pte=pte
    )
    assert not env.writable(pte), env.say("read-only prot gave a writable PTE", pte=pte)


# -- zap_vma_ptes (5.5) -----------------------------------------------------------------------------
def test_zap_vma_ptes_pfnmap_only(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 4, shared=True)
    ram = env.driver_pages(4)[0]
    memory.remap_pfn_range(vma, addr, ram, 4 * env.ps)
    counts = [env.m.page(ram + i) for i in range(4)]
    assert memory.zap_vma_ptes(vma, addr + env.ps, 2 * env.ps) == 0, env.say("zap_vma_ptes returns 0")
    ptes = [env.pte(mm, addr + i * env.ps) for i in range(4)]
    assert env.none(ptes[1]) and env.none(ptes[2]), env.say(
        "zapped PTEs must be none", p1=ptes[1], p2=ptes[2]
    )
    assert env.present(ptes[0]) and env.present(ptes[3]), env.say("others stay", p0=ptes[0], p3=ptes[3])
    assert [env.m.page(ram + i) for i in range(4)] == counts, env.say(
        "zapping special PTEs touched struct pages"
    )
    assert mm.rss == {"file": 0, "anon": 0}, env.say(f"RSS {mm.rss}")
    before = snapshot(env, mm, vma)
    with pytest.raises(EPERM):  # the kernel returns -1: the range must lie inside the VMA
        memory.zap_vma_ptes(vma, addr + 3 * env.ps, 2 * env.ps)
    assert snapshot(env, mm, vma) == before, env.say("a refused zap_vma_ptes changed PTEs")
    # not a PFNMAP VMA: -1 and nothing zapped, even for special PTEs of a MIXEDMAP VMA
    addr2, vma2 = map_device(env, mm, 1, shared=True, flags=MIXEDMAP)
    memory.vm_insert_mixed(vma2, addr2, env.devmem(1))
    before2 = snapshot(env, mm, vma2)
    with pytest.raises(EPERM):
        memory.zap_vma_ptes(vma2, addr2, env.ps)
    assert snapshot(env, mm, vma2) == before2, env.say(
        "zap_vma_ptes on a MIXEDMAP VMA zapped", pte=env.pte(mm, addr2)
    )


# -- the outcome table of section 4.5 ---------------------------------------------------------------
#: row -> {scheme: (normal, refcount delta, mapcount delta, rss file, rss anon)}
TABLE = {
    "remap_pfn_range-cow-linear": {"A": (False, 0, 0, 0, 0), "B": (False, 0, 0, 0, 0)},
    "remap_pfn_range-shared": {"A": (False, 0, 0, 0, 0), "B": (False, 0, 0, 0, 0)},
    "vm_insert_pfn-pfnmap": {"A": (False, 0, 0, 0, 0), "B": (False, 0, 0, 0, 0)},
    "vm_insert_pfn-mixedmap-nopage": {"A": (False, 0, 0, 0, 0), "B": (False, 0, 0, 0, 0)},
    "vm_insert_mixed-nopage": {"A": (False, 0, 0, 0, 0), "B": (False, 0, 0, 0, 0)},
    "vm_insert_mixed-page": {"A": (False, 0, 0, 0, 0), "B": (True, 1, 1, 1, 0)},
    "vm_insert_page": {"A": (True, 1, 1, 1, 0), "B": (True, 1, 1, 1, 0)},
    "cow-copy": {"A": (True, 0, 0, 0, 1), "B": (True, 0, 0, 0, 1)},
}


@pytest.mark.parametrize("row", list(TABLE))
def test_outcome_table(env: Env, row: str) -> None:
    """Which PTE each API leaves, by scheme; RAM (pfn_valid) targets wherever the API allows
    them, so a wrong classification would touch a struct page and show in the counts."""
    mm = env.m.new_mm()
    ram = env.driver_pages(2)[0]
    target = ram
    if row == "remap_pfn_range-cow-linear":
        addr, vma = map_device(env, mm, 1, shared=False)
        memory.remap_pfn_range(vma, addr, ram, env.ps)
    elif row == "remap_pfn_range-shared":
        addr, vma = map_device(env, mm, 2, shared=True)
        memory.remap_pfn_range(vma, addr, ram, env.ps)  # non-linear w.r.t. vm_pgoff 0: still special
    elif row == "vm_insert_pfn-pfnmap":
        addr, vma = map_device(env, mm, 1, shared=True, flags=PFNMAP)
        memory.vm_insert_pfn(vma, addr, ram)
    elif row == "vm_insert_pfn-mixedmap-nopage":
        addr, vma = map_device(env, mm, 1, shared=True, flags=MIXEDMAP)
        target = env.devmem(1)
        memory.vm_insert_pfn(vma, addr, target)
    elif row == "vm_insert_mixed-nopage":
        addr, vma = map_device(env, mm, 1, shared=False, flags=MIXEDMAP)
        target = env.devmem(1)
        memory.vm_insert_mixed(vma, addr, target)
    elif row == "vm_insert_mixed-page":
        addr, vma = map_device(env, mm, 1, shared=False, flags=MIXEDMAP)
        memory.vm_insert_mixed(vma, addr, ram)
    elif row == "vm_insert_page":
        addr, vma = map_device(env, mm, 1, shared=False)
        memory.vm_insert_page(vma, addr, ram)
    else:  # a COW copy of a special source: the new anonymous page
        addr, vma = map_device(env, mm, 1, shared=False)
        memory.remap_pfn_range(vma, addr, ram, env.ps)
        mm.access(addr, write=True)
        target = env.pfn_of(env.pte(mm, addr))
    normal, dr, dm, file_rss, anon_rss = TABLE[row][env.scheme]
    pte = env.pte(mm, addr)
    got = env.normal_page(mm, addr)
    assert got == (target if normal else None), env.say(f"{row}: vm_normal_page -> {got}", pte=pte)
    if env.scheme == "A":
        assert env.special(pte) == (not normal), env.say(f"{row}: special bit must be {not normal}", pte=pte)
    r, mc = env.counts(target) if env.m.page(target) else (None, None)
    if row == "cow-copy":
        assert (r, mc) == (1, 1), env.say(
            f"{row}: the new anon page has refcount/mapcount {(r, mc)}", pte=pte
        )
        assert env.counts(ram) == (1, 0), env.say(f"{row}: the special source was touched {env.counts(ram)}")
    elif r is not None:
        assert (r, mc) == (1 + dr, dm), env.say(f"{row}: refcount/mapcount {(r, mc)}", pte=pte)
    assert mm.rss == {"file": file_rss, "anon": anon_rss}, env.say(f"{row}: RSS {mm.rss}", pte=pte)
    mm.exit()
    assert env.counts(ram) == (1, 0), env.say(f"{row}: exit left the driver page at {env.counts(ram)}")
    env.assert_clean()
