"""GUP as Linux 6.18 has it (mm/gup.c), rule by rule, on every arch with the 6.18 profile.

Each test names the rule it pins down (:mod:`mixedmap.rules`): FOLL_PIN and the pin bias
(``try_grab_folio``/``gup_put_folio``, 5.6/5.7), the uncounted zero page (6.5), -EEXIST for a
PTE without a struct page with a pages array and the populate that steps over it (4.3/5.18),
``check_vma_flags`` (VM_IO/VM_PFNMAP, FOLL_LONGTERM on fs-dax, forced writes, long-term
writable file pins), the lockless walk refusing special PTEs on every arch that has
CONFIG_HAVE_GUP_FAST in 6.18 (s390 included), pins still held when an mm exits, and every
function that exists only from a release on being an UnsupportedRule on 2.6.26/2.6.27 with
nothing changed. A hypothesis property checks refcount == base + gets + 1024 * pins at every
step of random get/pin/put/unpin sequences, and zero after teardown.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixedmap import EFAULT, VMBug
from mixedmap.errors import EEXIST, EOPNOTSUPP
from mixedmap.mm import gup, memory
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, VMA, FaultResult, VMFault
from mixedmap.mm.zero import is_zero_pfn, zero_pfn
from mixedmap.phys.memmap import PG
from mixedmap.rules import (
    FOLL_LONGTERM,
    GUP_EEXIST,
    GUP_FORCE_COW_ONLY,
    GUP_LONGTERM_FILE_WRITE,
    GUP_PAGES_EEXIST,
    GUP_PIN_COUNTING_BIAS,
    GUP_ZERO_PAGE_UNPINNED,
    PIN_USER_PAGES,
    POPULATE_WRITE_PRIVATE,
    UnsupportedRule,
)

from ..conftest import CASES, Case
from .helpers import REP_IDS, REPS, VM, Env, map_device

BIAS = gup.GUP_PIN_COUNTING_BIAS
ANON = MAP_PRIVATE | MAP_ANONYMOUS
#: One mode per arch under 6.18: the arch's default (x86_64, s390x, ppc64, riscv64, and the
#: fictional toyarch without a special bit and toyspecial with one).
CASES_618 = [c for c in CASES if c.mode.default and c.mode.profile == "6.18"]
IDS_618 = [c.id for c in CASES_618]
REAL_ARCHES = ("x86_64", "s390x", "ppc64", "riscv64")


@pytest.fixture(params=CASES_618, ids=IDS_618)
def env(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


def test_every_real_arch_has_a_6_18_case() -> None:
    have = {c.arch for c in CASES_618}
    assert set(REAL_ARCHES) <= have, f"6.18 cases: {sorted(have)}"


# -- helpers -------------------------------------------------------------------------------------
def _anon(env: Env, mm: MM, n: int) -> tuple[int, list[int]]:
    """``n`` written anonymous pages: (address, their pfns)."""
    addr = mm.mmap(n * env.ps, "rw", ANON)
    for i in range(n):
        mm.write(addr + i * env.ps, bytes([i + 1]))
    return addr, [env.pfn_of(env.pte(mm, addr + i * env.ps)) for i in range(n)]


def _inserting_pfn(pfn_for: Callable[[int], int]) -> Callable[[VMA, VMFault], FaultResult]:
    """A ->fault that installs ``pfn_for(pgoff)`` as a raw pfn PTE (``insert_pfn``: special
    where the profile has the bit) and returns NOPAGE, as a 6.18 vmf_insert_mixed driver."""

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        memory.insert_pfn(vma, vmf.address, pfn_for(vmf.pgoff), vma.page_prot)
        return FaultResult.NOPAGE

    return fault


def _no_page_pte(env: Env, mm: MM, addr: int | None = None, npages: int = 1) -> int:
    """A private MIXEDMAP mapping of device memory without struct pages, faulted in: PTEs for
    which vm_normal_page is NULL in both schemes (special bit, or no pfn_valid)."""
    dev = env.devmem(npages)
    a, _ = map_device(
        env,
        mm,
        npages,
        shared=False,
        prot="r",
        addr=addr,
        flags=VM.MIXEDMAP,
        fault=_inserting_pfn(lambda i: dev + i),
    )
    for i in range(npages):
        mm.access(a + i * env.ps)
    assert env.normal_page(mm, a) is None, env.say("setup: a PTE without a page", pte=env.pte(mm, a))
    return a


def _all_counts(env: Env) -> dict[int, tuple[int, int]]:
    """(refcount, mapcount) of every allocated RAM page: a refused call must change none."""
    used = np.flatnonzero(~env.m.pages.free_mask())
    return {int(p): env.counts(int(p)) for p in used}


def _fast_capable(env: Env) -> bool:
    return env.scheme == "A" and env.m.fmt.has_lockless_gup


# -- FOLL_PIN and GUP_PIN_COUNTING_BIAS (5.6, 5.7) ------------------------------------------------
def test_pin_adds_the_bias_and_unpin_restores(env: Env) -> None:
    """try_grab_folio: a small folio gains GUP_PIN_COUNTING_BIAS per pin; gup_put_folio drops
    it; folio_maybe_dma_pinned reads refcount >= 1024 (rule gup_pin_counting_bias, 5.7)."""
    m = env.m
    mm = m.new_mm()
    addr, (pfn,) = _anon(env, mm, 1)
    base = env.counts(pfn)
    assert base == (1, 1), env.say(f"setup {base}")
    pinned = gup.pin_user_pages(mm, addr, 1, write=True)
    assert pinned.tolist() == [pfn], env.say(f"pinned {pinned}")
    assert env.counts(pfn) == (1 + BIAS, 1), env.say(f"{GUP_PIN_COUNTING_BIAS.cite()}: {env.counts(pfn)}")
    assert gup.folio_maybe_dma_pinned(m, pfn).tolist() == [True], env.say("maybe pinned after a pin")
    assert m.pages.pin_count(pfn).tolist() == [1], env.say("ledger: one pin")
    again = gup.pin_user_pages(mm, addr, 1, write=False)
    assert env.counts(pfn) == (1 + 2 * BIAS, 1), env.say(f"two pins {env.counts(pfn)}")
    gup.unpin_user_pages(m, pinned)
    assert env.counts(pfn) == (1 + BIAS, 1), env.say(f"one unpinned {env.counts(pfn)}")
    gup.unpin_user_page(m, int(again[0]))
    assert env.counts(pfn) == base, env.say(f"unpin restores {env.counts(pfn)} != {base}")
    assert gup.folio_maybe_dma_pinned(m, pfn).tolist() == [False], env.say("no pin left")
    mm.exit()
    assert mm.pins_at_exit == (), env.say(f"nothing pinned at exit: {mm.pins_at_exit}")
    env.assert_clean()


def test_get_is_one_reference_and_pin_the_bias(env: Env) -> None:
    """FOLL_GET vs FOLL_PIN on the same page: +1 vs +1024; each is released its own way, and
    the wrong release is a VMBug that changes nothing (rule pin_user_pages, 5.6)."""
    m = env.m
    mm = m.new_mm()
    addr, (pfn,) = _anon(env, mm, 1)
    got = gup.get_user_pages(mm, addr, 1, write=False)
    assert env.counts(pfn) == (2, 1), env.say(f"FOLL_GET +1: {env.counts(pfn)}")
    pinned = gup.pin_user_pages(mm, addr, 1, write=False)
    assert env.counts(pfn) == (2 + BIAS, 1), env.say(f"FOLL_PIN +{BIAS}: {env.counts(pfn)}")
    assert m.pages.pin_count(pfn).tolist() == [1], env.say("the get is not a pin")
    # unpinning twice (one pin + the FOLL_GET reference) and a put_page eating the pin's refs
    before = _all_counts(env)
    with pytest.raises(VMBug, match="pin"):
        gup.unpin_user_pages(m, np.array([pfn, pfn], dtype=np.uint64))
    m.pages.put_page(got)  # the FOLL_GET reference: fine
    with pytest.raises(VMBug, match="FOLL_PIN"):  # the PTE's reference, then one of the pin's
        m.pages.put_page(np.concatenate([pinned, pinned]))
    assert env.counts(pfn) == (1 + BIAS, 1), env.say(f"refusals changed nothing but the put: {before}")
    gup.unpin_user_pages(m, pinned)
    assert env.counts(pfn) == (1, 1), env.say(f"released {env.counts(pfn)}")
    mm.exit()
    env.assert_clean()


def test_unpin_dirty_lock_dirties_then_unpins(env: Env) -> None:
    """unpin_user_pages_dirty_lock(make_dirty): PG_dirty on each page, then the unpin."""
    m = env.m
    mm = m.new_mm()
    addr, pfns = _anon(env, mm, 2)
    row, col = m.memmap.rows(np.array(pfns, dtype=np.uint64))
    m.memmap.flags[row, col] &= ~np.uint32(PG.dirty)
    pinned = gup.pin_user_pages(mm, addr, 2, write=True)
    gup.unpin_user_pages_dirty_lock(m, pinned, make_dirty=True)
    assert all(env.page_flags(p) & PG.dirty for p in pfns), env.say("dirtied")
    assert [env.counts(p) for p in pfns] == [(1, 1)] * 2, env.say("unpinned")
    mm.exit()
    env.assert_clean()


# -- the zero page (6.5) ----------------------------------------------------------------------------
def _zero_pte(env: Env, mm: MM) -> int:
    """A private MIXEDMAP VMA whose PTE maps the zero pfn (S13: vmf_insert_mixed of the zero
    pfn); special, so vm_normal_page is NULL and follow_page_pte's is_zero_pfn answers."""
    if env.scheme != "A":
        pytest.skip(f"{env.tag}: a raw zero-pfn PTE is a normal page without the special bit")
    zpfn = zero_pfn(env.m)
    a, _ = map_device(
        env, mm, 1, shared=False, prot="r", flags=VM.MIXEDMAP, fault=_inserting_pfn(lambda i: zpfn)
    )
    mm.access(a)
    assert env.pfn_of(env.pte(mm, a)) == zpfn and env.special(env.pte(mm, a)), env.say(
        "setup: zero pfn PTE", pte=env.pte(mm, a)
    )
    return a


def test_pin_of_the_zero_page_is_not_counted(env: Env) -> None:
    """follow_page_pte: the zero pfn is the zero page; try_grab_folio takes no pin on it and
    gup_put_folio ignores it (rule gup_zero_page_unpinned, 6.5); FOLL_GET still counts."""
    m = env.m
    mm = m.new_mm()
    a = _zero_pte(env, mm)
    zpfn = zero_pfn(m)
    base = env.counts(zpfn)
    got = gup.get_user_pages(mm, a, 1, write=False)
    assert got.tolist() == [zpfn] and env.counts(zpfn) == (base[0] + 1, base[1]), env.say(
        f"FOLL_GET of the zero page: {env.counts(zpfn)}"
    )
    m.pages.put_page(got)
    pinned = gup.pin_user_pages(mm, a, 1, write=False)
    assert pinned.tolist() == [zpfn], env.say(f"the pin returns the zero page: {pinned}")
    assert env.counts(zpfn) == base and m.pages.pin_count(zpfn).tolist() == [0], env.say(
        f"{GUP_ZERO_PAGE_UNPINNED.cite()}: {env.counts(zpfn)}"
    )
    assert not gup.folio_maybe_dma_pinned(m, zpfn)[0], env.say("the zero page never reads pinned")
    fast = gup.pin_user_pages_fast(mm, a, 1, write=False)
    assert fast.pfns.tolist() == [zpfn] and (fast.fast, fast.slow) == (0, 1), env.say(f"{fast}")
    if _fast_capable(env):
        assert fast.fallback_reason == "special pte", env.say(f"the zero PTE is special: {fast}")
    gup.unpin_user_pages(m, np.concatenate([pinned, fast.pfns]))
    assert env.counts(zpfn) == base, env.say(f"unpin of the zero page is a no-op: {env.counts(zpfn)}")
    mm.exit()


def test_pin_of_a_read_faulted_anonymous_page_is_the_uncounted_zero_page(env: Env) -> None:
    """With the 6.18 zero page (rule zero_page): a read of untouched anonymous memory maps the
    zero pfn, and pinning it for a write-less DMA takes no pin."""
    m = env.m
    mm = m.new_mm()
    a = mm.mmap(env.ps, "r", ANON)
    mm.access(a)
    pfn = env.pfn_of(env.pte(mm, a))
    if not is_zero_pfn(m, pfn)[0]:
        pytest.skip(f"{env.tag}: the 6.18 anonymous read fault does not map the zero page in this tree yet")
    before = env.counts(pfn)
    pinned = gup.pin_user_pages(mm, a, 1, write=False)
    assert pinned.tolist() == [pfn] and env.counts(pfn) == before, env.say(f"uncounted {env.counts(pfn)}")
    gup.unpin_user_pages(m, pinned)
    mm.exit()


# -- -EEXIST (4.3, 5.18) ------------------------------------------------------------------------------
def test_pte_without_a_page_is_eexist_with_a_pages_array(env: Env) -> None:
    """__get_user_pages: follow_pfn_pte's -EEXIST stops a GUP that fills pages: the count so
    far, or -EEXIST when it got none (rule gup_pages_eexist, 5.18; 2.6.27 said -EFAULT)."""
    m = env.m
    mm = m.new_mm()
    addr, pfns = _anon(env, mm, 2)
    _no_page_pte(env, mm, addr=addr + 2 * env.ps)
    for fn in (gup.get_user_pages, gup.pin_user_pages):
        got = fn(mm, addr, 3, write=False)
        assert got.tolist() == pfns, env.say(f"{fn.__name__}: the two pages before the PTE: {got}")
        if fn is gup.get_user_pages:
            m.pages.put_page(got)
        else:
            gup.unpin_user_pages(m, got)
    before = _all_counts(env), env.pte(mm, addr + 2 * env.ps), dict(mm.rss)
    for fn in (gup.get_user_pages, gup.pin_user_pages):
        with pytest.raises(EEXIST, match="follow_pfn_pte"):
            fn(mm, addr + 2 * env.ps, 1, write=False)
    after = _all_counts(env), env.pte(mm, addr + 2 * env.ps), dict(mm.rss)
    assert after == before, env.say(f"{GUP_PAGES_EEXIST.cite()}: nothing taken", old=before[1], new=after[1])
    mm.exit()
    env.assert_clean()


def test_populate_carries_on_past_ptes_without_pages(env: Env) -> None:
    """populate_vma_page_range passes no pages array: -EEXIST is stepped over (rule
    gup_eexist, 4.3), so MAP_POPULATE maps every page of a MIXEDMAP VMA where 2.6.27's
    make_pages_present stopped at the first special PTE; nothing is referenced."""
    m = env.m
    mm = m.new_mm()
    dev = env.devmem(4)
    counts = _all_counts(env)
    dfile = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
    dfile.on_fault = _inserting_pfn(lambda i: dev + i)
    a = mm.mmap(4 * env.ps, "r", MAP_PRIVATE | MAP_POPULATE, file=dfile)
    ptes = [env.pte(mm, a + i * env.ps) for i in range(4)]
    assert [env.present(p) for p in ptes] == [True] * 4, env.say(
        f"{GUP_EEXIST.cite()}: all four populated", **{f"pte{i}": p for i, p in enumerate(ptes)}
    )
    assert [env.pfn_of(p) for p in ptes] == [dev + i for i in range(4)], env.say("the device pfns")
    vma = mm.find_vma(a)
    assert vma is not None
    assert gup.populate_vma_page_range(vma, a, a + 4 * env.ps) == 4, env.say("again: four pages done")
    assert {k: v for k, v in _all_counts(env).items() if k in counts} == counts, env.say("no reference taken")
    mm.exit()
    env.assert_clean()


def test_populate_write_faults_only_private_writable_vmas(env: Env) -> None:
    """populate_vma_page_range: FOLL_WRITE for a private writable VMA (COW each page), a read
    for a shared one (rule populate_write_private, 2.6.38)."""
    m = env.m
    mm = m.new_mm()
    dev = env.devmem(2)
    for shared in (False, True):
        dfile = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        dfile.on_fault = _inserting_pfn(lambda i: dev + i)
        a = mm.mmap(2 * env.ps, "rw", (MAP_SHARED if shared else MAP_PRIVATE) | MAP_POPULATE, file=dfile)
        normal = [env.normal_page(mm, a + i * env.ps) is not None for i in range(2)]
        want = [False, False] if shared else [True, True]
        assert normal == want, env.say(
            f"{POPULATE_WRITE_PRIVATE.cite()}: shared={shared}: COWed {normal}", pte=env.pte(mm, a)
        )
    mm.exit()
    env.assert_clean()


# -- check_vma_flags --------------------------------------------------------------------------------
def _remapped(env: Env, mm: MM, shared: bool) -> int:
    def on_mmap(v: VMA) -> None:
        memory.remap_pfn_range(v, v.start, env.devmem(1) if not shared else env.driver_pages(1)[0], env.ps)

    a, vma = map_device(env, mm, 1, shared=shared, on_mmap=on_mmap)
    assert vma.flags & VM.PFNMAP and vma.flags & VM.IO, env.say(f"setup {vma.describe()}")
    mm.access(a)
    return a


@pytest.mark.parametrize("shared", [True, False], ids=["shared", "private"])
def test_vm_io_and_vm_pfnmap_are_efault(env: Env, shared: bool) -> None:
    """check_vma_flags: VM_IO|VM_PFNMAP -> -EFAULT for get and pin, slow and fast (the walk
    bails on the special PTE first); nothing changes."""
    mm = env.m.new_mm()
    a = _remapped(env, mm, shared)
    before = _all_counts(env), env.pte(mm, a), dict(mm.rss)
    calls: list[Callable[[], Any]] = [
        lambda: gup.get_user_pages(mm, a, 1, write=False),
        lambda: gup.pin_user_pages(mm, a, 1, write=False),
        lambda: gup.pin_user_pages(mm, a, 1, write=True, longterm=True),
    ]
    for call in calls:
        with pytest.raises(EFAULT, match="VM_IO/VM_PFNMAP"):
            call()
    for fast in (gup.get_user_pages_fast, gup.pin_user_pages_fast):
        with pytest.raises(EFAULT) as info:
            fast(mm, a, 1, write=False)
        if _fast_capable(env):
            assert info.value.fallback_reason == "special pte", env.say(f"{fast.__name__}: {info.value}")
    after = _all_counts(env), env.pte(mm, a), dict(mm.rss)
    assert after == before, env.say("refusals changed state", old=before[1], new=after[1])
    mm.exit()


class _FsDaxFile(DeviceFile):
    """A file standing for one on an fs-dax mount (``vma_is_fsdax``'s hook)."""

    fsdax = True


class _DirtyTrackedFile(DeviceFile):
    """A file whose shared writable mappings need dirty tracking (page_mkwrite/writeback)."""

    needs_dirty_tracking = True


def _file_pages(env: Env, mm: MM, file_cls: type[DeviceFile], shared: bool = True) -> tuple[int, int]:
    """A mapping of ``file_cls`` whose fault maps a driver RAM page with vm_insert_page
    (a normal, refcounted file page): (address, pfn)."""
    (pfn,) = env.driver_pages(1)

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        memory.insert_page(vma, vmf.address, pfn, vma.page_prot)
        return FaultResult.NOPAGE

    f = file_cls("file", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP), on_fault=fault)
    a = mm.mmap(env.ps, "rw", MAP_SHARED if shared else MAP_PRIVATE, file=f)
    mm.access(a)
    assert env.normal_page(mm, a) == pfn, env.say("setup: a normal file page", pte=env.pte(mm, a))
    return a, pfn


def test_longterm_pin_is_refused_on_fsdax(env: Env) -> None:
    """check_vma_flags: FOLL_LONGTERM on an fs-dax VMA -> -EOPNOTSUPP (rule foll_longterm;
    the fast walk leaves fs-dax folios to it); a short-term pin of the same page is fine."""
    m = env.m
    mm = m.new_mm()
    a, pfn = _file_pages(env, mm, _FsDaxFile)
    before = _all_counts(env)
    with pytest.raises(EOPNOTSUPP, match="fs-dax"):
        gup.pin_user_pages(mm, a, 1, write=False, longterm=True)
    with pytest.raises(EOPNOTSUPP) as info:
        gup.pin_user_pages_fast(mm, a, 1, write=False, longterm=True)
    if _fast_capable(env):
        assert info.value.fallback_reason == "fs-dax folio (FOLL_LONGTERM)", env.say(
            f"{info.value.fallback_reason}"
        )
    assert _all_counts(env) == before, env.say(f"{FOLL_LONGTERM.cite()}: nothing changed")
    pinned = gup.pin_user_pages(mm, a, 1, write=False)
    assert pinned.tolist() == [pfn] and env.counts(pfn)[0] == before[pfn][0] + BIAS, env.say("short-term pin")
    gup.unpin_user_pages(m, pinned)
    mm.exit()


def test_longterm_writable_pin_of_a_dirty_tracked_file_is_efault(env: Env) -> None:
    """writable_file_mapping_allowed: a long-term writable pin of a shared file mapping that
    needs dirty tracking -> -EFAULT; the fast walk hands every file-backed folio of such a
    pin to the slow path (rule gup_longterm_file_write, 6.5). Without the need it pins."""
    m = env.m
    mm = m.new_mm()
    a, pfn = _file_pages(env, mm, _DirtyTrackedFile)
    before = _all_counts(env)
    with pytest.raises(EFAULT, match="dirty tracking"):
        gup.pin_user_pages(mm, a, 1, write=True, longterm=True)
    with pytest.raises(EFAULT) as info:
        gup.pin_user_pages_fast(mm, a, 1, write=True, longterm=True)
    if _fast_capable(env):
        assert info.value.fallback_reason == "file-backed folio (long-term writable pin)", env.say(
            f"{GUP_LONGTERM_FILE_WRITE.cite()}: {info.value.fallback_reason}"
        )
    assert _all_counts(env) == before, env.say("nothing changed")
    for longterm, write in ((False, True), (True, False)):
        pinned = gup.pin_user_pages(mm, a, 1, write=write, longterm=longterm)
        assert pinned.tolist() == [pfn], env.say(f"longterm={longterm} write={write}: pinned")
        gup.unpin_user_pages(m, pinned)
    b, pfn2 = _file_pages(env, mm, DeviceFile)  # a character device needs no dirty tracking
    res = gup.pin_user_pages_fast(mm, b, 1, write=True, longterm=True)
    assert res.pfns.tolist() == [pfn2], env.say(f"not dirty-tracked: pinned by the slow path {res}")
    if _fast_capable(env):
        assert (res.fast, res.slow) == (0, 1), env.say(f"the walk still leaves file folios: {res}")
    gup.unpin_user_pages(m, res.pfns)
    mm.exit()


def test_longterm_pin_of_anonymous_memory_takes_the_fast_path(env: Env) -> None:
    mm = env.m.new_mm()
    addr, pfns = _anon(env, mm, 3)
    res = gup.pin_user_pages_fast(mm, addr, 3, write=True, longterm=True)
    assert res.pfns.tolist() == pfns, env.say(f"{res}")
    if _fast_capable(env):
        assert (res.fast, res.slow, res.fallback_reason) == (3, 0, ""), env.say(f"{res}")
    assert [env.counts(p) for p in pfns] == [(1 + BIAS, 1)] * 3, env.say("pinned")
    gup.unpin_user_pages(env.m, res.pfns)
    mm.exit()
    env.assert_clean()


def test_forced_write_only_in_a_cow_mapping(env: Env) -> None:
    """check_vma_flags: FOLL_FORCE|FOLL_WRITE on a VMA without VM_WRITE is -EFAULT unless it is
    a COW mapping (rule gup_force_cow_only, 3.15); in a private one it COWs, and
    can_follow_write_pte takes the exclusive anonymous copy behind the read-only PTE."""
    mm = env.m.new_mm()
    (pfn,) = env.driver_pages(1)

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        memory.insert_page(vma, vmf.address, pfn, vma.page_prot)
        return FaultResult.NOPAGE

    dfile = DeviceFile(
        "rw", writable=True, on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP), on_fault=fault
    )
    shared = mm.mmap(env.ps, "r", MAP_SHARED, file=dfile)
    vma = mm.find_vma(shared)
    assert vma is not None
    assert vma.flags & VM.MAYWRITE and not vma.flags & VM.WRITE, env.say(vma.describe())
    with pytest.raises(EFAULT, match="COW"):
        gup.get_user_pages(mm, shared, 1, write=True, force=True)
    assert env.pte(mm, shared) == mm.empty_pte, env.say(f"{GUP_FORCE_COW_ONLY.cite()}: not even faulted")
    priv = mm.mmap(env.ps, "r", ANON)
    got = gup.get_user_pages(mm, priv, 1, write=True, force=True)
    pte = env.pte(mm, priv)
    assert got.tolist() == [env.pfn_of(pte)] and not env.writable(pte), env.say(
        "forced COW, PTE read-only", pte=pte
    )
    env.m.pages.put_page(got)
    mm.exit()


# -- the lockless walk ---------------------------------------------------------------------------------
def test_lockless_walk_exists_on_every_6_18_arch_with_the_special_bit(env: Env) -> None:
    """CONFIG_HAVE_GUP_FAST (generic mm/gup.c): x86, powerpc, riscv and s390 all have it in
    6.18 (s390 since its own gup.c of 2010, generic since 5.x); without
    CONFIG_ARCH_HAS_PTE_SPECIAL gup_fast_pte_range is the empty stub (the plugins' formats
    declare it: ``fmt.has_lockless_gup``)."""
    want = env.scheme == "A"
    assert env.m.fmt.has_lockless_gup == want, env.say(f"has_lockless_gup={env.m.fmt.has_lockless_gup}")


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("pin", [False, True], ids=["get", "pin"])
def test_fast_path_refuses_special_ptes_and_falls_back(env: Env, k: int, pin: bool) -> None:
    """gup_fast_pte_range bails on pte_special; gup_fast_fallback hands the rest to the slow
    path, which stops at the PTE with -EEXIST: the k pages the walk took, or -EEXIST with the
    walk's reason when it took none."""
    m = env.m
    mm = m.new_mm()
    fn = gup.pin_user_pages_fast if pin else gup.get_user_pages_fast
    addr = mm.mmap((k + 1) * env.ps, "rw", ANON)
    mm.munmap(addr + k * env.ps, env.ps)
    for i in range(k):
        mm.write(addr + i * env.ps, b"k")
    _no_page_pte(env, mm, addr=addr + k * env.ps)
    pfns = [env.pfn_of(env.pte(mm, addr + i * env.ps)) for i in range(k)]
    reason = "special pte" if _fast_capable(env) else "no pte_special under 6.18: no lockless walk"
    if k == 0:
        with pytest.raises(EEXIST) as info:
            fn(mm, addr, 1, write=False)
        assert info.value.fallback_reason == reason, env.say(f"{info.value.fallback_reason!r}")
        mm.exit()
        return
    res = fn(mm, addr, k + 1, write=False)
    assert res.pfns.tolist() == pfns and res.fallback_reason == reason, env.say(f"{res}")
    assert (res.fast, res.slow) == ((k, 0) if _fast_capable(env) else (0, k)), env.say(f"{res}")
    ref = 1 + (BIAS if pin else 1)
    assert [env.counts(p) for p in pfns] == [(ref, 1)] * k, env.say(f"{[env.counts(p) for p in pfns]}")
    if pin:
        gup.unpin_user_pages(m, res.pfns)
    else:
        m.pages.put_page(res.pfns)
    mm.exit()
    env.assert_clean()


def test_fast_path_falls_back_for_an_absent_pte_and_pins_it(env: Env) -> None:
    mm = env.m.new_mm()
    addr = mm.mmap(3 * env.ps, "rw", ANON)
    mm.write(addr, b"a")
    res = gup.pin_user_pages_fast(mm, addr, 3, write=True)
    assert res.pfns.size == 3 and mm.rss["anon"] == 3, env.say(f"{res}")
    if _fast_capable(env):
        assert (res.fast, res.slow, res.fallback_reason) == (1, 2, "pte not present"), env.say(f"{res}")
    assert [env.counts(int(p)) for p in res.pfns] == [(1 + BIAS, 1)] * 3, env.say("pinned by both paths")
    gup.unpin_user_pages(env.m, res.pfns)
    mm.exit()
    env.assert_clean()


@pytest.mark.parametrize("case", CASES_618 + REPS, ids=IDS_618 + REP_IDS)
def test_fast_path_stops_at_an_old_prot_none_pte(case: Case) -> None:
    """The walk needs a user-accessible PTE (x86/powerpc _PAGE_PRESENT|_PAGE_USER in 2.6.27;
    pte_protnone/pte_access_permitted in 6.18), also when the PROT_NONE PTE is old, as fork
    leaves the child's; the slow path then refuses the VMA (no VM_READ): -EFAULT."""
    env = Env(case)
    mm = env.m.new_mm()
    addr, (pfn,) = _anon(env, mm, 1)
    mm.mprotect(addr, env.ps, "none")
    child = mm.fork()
    pte = env.pte(child, addr)
    assert env.present(pte) and env.pfn_of(pte) == pfn, env.say("setup: the child's PROT_NONE PTE", pte=pte)
    before = env.counts(pfn)
    with pytest.raises(EFAULT) as info:
        gup.get_user_pages_fast(child, addr, 1, write=False)
    if _fast_capable(env):
        assert info.value.fallback_reason == "pte not user-accessible (PROT_NONE)", env.say(
            f"{info.value.fallback_reason!r}", pte=pte
        )
    assert env.counts(pfn) == before, env.say(f"nothing pinned {env.counts(pfn)}", pte=pte)
    child.exit()
    mm.exit()
    env.assert_clean()


# -- pins at exit ----------------------------------------------------------------------------------------
def test_pins_outstanding_at_exit_are_reported_by_pfn(env: Env) -> None:
    """Pins outlive the mm (the pinner holds them): exit_mmap drops the mapping references,
    the pages stay; ``mm.pins_at_exit`` and ``leaks()`` name them by pfn, a ``pins_at_exit``
    event is traced; unpinning afterwards frees them."""
    m = env.m
    events: list[dict[str, Any]] = []
    m.tracer = lambda **kw: events.append(kw)
    free0 = m.pages.nr_free
    mm = m.new_mm()
    addr, pfns = _anon(env, mm, 3)
    pinned = gup.pin_user_pages(mm, addr, 2, write=True)
    mm.exit()
    got = {(p.pfn, p.pins, p.refcount) for p in mm.pins_at_exit}
    assert got == {(pfns[0], 1, BIAS), (pfns[1], 1, BIAS)}, env.say(f"pins at exit {mm.pins_at_exit}")
    leaks = m.pages.leaks()
    assert leaks.get("pinned") == 2 and {p.pfn for p in leaks.pinned} == set(pfns[:2]), env.say(f"{leaks!r}")
    assert all(f"{p:#x}" in repr(leaks) for p in pfns[:2]), env.say(f"the report names the pfns: {leaks!r}")
    ev = [e for e in events if e["event"] == "pins_at_exit"]
    assert len(ev) == 1 and ev[0]["npages"] == 2 and ev[0]["mm"] == mm.id, env.say(f"trace {ev}")
    m.tracer = None
    gup.unpin_user_pages(m, pinned)
    assert m.pages.leaks() == {} and m.pages.nr_free == free0, env.say(f"freed: {m.pages.leaks()!r}")


# -- before their release -----------------------------------------------------------------------------------
@pytest.fixture(params=REPS, ids=REP_IDS)
def env2008(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


def test_functions_that_exist_from_a_release_on_are_unsupported_before(env2008: Env) -> None:
    """pin_user_pages & co. on 2.6.26/2.6.27: UnsupportedRule naming the profile and the
    release that introduced them (5.6, 5.7, 4.3), raised before anything changes."""
    env = env2008
    m = env.m
    mm = m.new_mm()
    addr, (pfn,) = _anon(env, mm, 1)
    vma = mm.find_vma(addr)
    assert vma is not None
    before = _all_counts(env), env.pte(mm, addr), dict(mm.rss)
    profile = env.case.mode.profile
    calls: list[tuple[str, str, Callable[[], Any]]] = [
        ("pin_user_pages", "5.6", lambda: gup.pin_user_pages(mm, addr, 1, write=True)),
        ("pin_user_pages_fast", "5.6", lambda: gup.pin_user_pages_fast(mm, addr, 1, write=True)),
        ("unpin_user_pages", "5.6", lambda: gup.unpin_user_pages(m, [pfn])),
        ("unpin_user_page", "5.6", lambda: gup.unpin_user_page(m, pfn)),
        ("unpin_user_pages_dirty_lock", "5.6", lambda: gup.unpin_user_pages_dirty_lock(m, [pfn], True)),
        ("folio_maybe_dma_pinned", "5.7", lambda: gup.folio_maybe_dma_pinned(m, pfn)),
        ("populate_vma_page_range", "4.3", lambda: gup.populate_vma_page_range(vma, vma.start, vma.end)),
    ]
    for name, release, call in calls:
        with pytest.raises(UnsupportedRule) as info:
            call()
        msg = str(info.value)
        assert name in msg and profile in msg and f"introduced in {release}" in msg, env.say(msg)
    assert PIN_USER_PAGES.since == "5.6"
    after = _all_counts(env), env.pte(mm, addr), dict(mm.rss)
    assert after == before, env.say("an unsupported call changed state", old=before[1], new=after[1])
    mm.exit()
    env.assert_clean()


def test_2008_populate_still_stops_at_the_first_special_pte(env2008: Env) -> None:
    """The other side of gup_eexist: 2.6.27 make_pages_present is get_user_pages, whose
    -EFAULT ends MAP_POPULATE at the first PTE without a page (special, or not pfn_valid in a
    MIXEDMAP VMA without the bit)."""
    env = env2008
    mm = env.m.new_mm()
    dev = env.devmem(3)
    dfile = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
    dfile.on_fault = _inserting_pfn(lambda i: dev + i)
    a = mm.mmap(3 * env.ps, "r", MAP_PRIVATE | MAP_POPULATE, file=dfile)
    present = [env.present(env.pte(mm, a + i * env.ps)) for i in range(3)]
    assert present == [True, False, False], env.say(f"2.6.27 populate: {present}")
    mm.exit()


# -- the property ----------------------------------------------------------------------------------------------
_OP = st.tuples(
    st.sampled_from(["get", "get_fast", "pin", "pin_fast", "put", "unpin"]),
    st.integers(0, 3),
    st.integers(1, 4),
)


@pytest.mark.parametrize("case", CASES_618, ids=IDS_618)
@given(ops=st.lists(_OP, max_size=25), exit_first=st.booleans())
def test_refcount_is_base_plus_gets_plus_bias_times_pins(
    case: Case, ops: list[tuple[str, int, int]], exit_first: bool
) -> None:
    """Random get/pin/put/unpin over four anonymous pages: at every step each page's refcount
    is 1 (its PTE) + FOLL_GET references + 1024 * pins, its ledger says the pins, and
    folio_maybe_dma_pinned is exactly "has a pin"; after teardown (exit, then releasing what
    is held, or the reverse) every page is free and nothing leaks."""
    env = Env(case)
    m = env.m
    mm = m.new_mm()
    addr, pfns = _anon(env, mm, 4)
    gets: list[list[int]] = [[] for _ in pfns]  # outstanding FOLL_GET, per page: 1 per entry
    pins = [0] * 4
    for op, first, n in ops:
        n = min(n, 4 - first)
        va = addr + first * env.ps
        idx = range(first, first + n)
        if op in ("get", "get_fast"):
            got = (
                gup.get_user_pages(mm, va, n, write=True)
                if op == "get"
                else gup.get_user_pages_fast(mm, va, n, True).pfns
            )
            assert got.tolist() == [pfns[i] for i in idx]
            for i in idx:
                gets[i].append(1)
        elif op in ("pin", "pin_fast"):
            got = (
                gup.pin_user_pages(mm, va, n, write=True)
                if op == "pin"
                else gup.pin_user_pages_fast(mm, va, n, True).pfns
            )
            assert got.tolist() == [pfns[i] for i in idx]
            for i in idx:
                pins[i] += 1
        elif op == "put":
            take = [pfns[i] for i in idx if gets[i]]
            m.pages.put_page(np.array(take, dtype=np.uint64))
            for i in idx:
                if gets[i]:
                    gets[i].pop()
        else:
            take = [pfns[i] for i in idx if pins[i]]
            gup.unpin_user_pages(m, take)
            for i in idx:
                pins[i] = max(0, pins[i] - 1)
        counts = [env.counts(p)[0] for p in pfns]
        want = [1 + len(gets[i]) + BIAS * pins[i] for i in range(4)]
        assert counts == want, env.say(f"after {op}({first}, {n}): refcounts {counts} != {want}")
        assert m.pages.pin_count(np.array(pfns, dtype=np.uint64)).tolist() == pins, env.say("ledger")
        assert gup.folio_maybe_dma_pinned(m, pfns).tolist() == [p > 0 for p in pins], env.say("maybe pinned")

    def release() -> None:
        held = [pfns[i] for i in range(4) for _ in gets[i]]
        if held:
            m.pages.put_page(np.array(held, dtype=np.uint64))
        pinned = [pfns[i] for i in range(4) for _ in range(pins[i])]
        if pinned:
            gup.unpin_user_pages(m, pinned)

    if exit_first:
        mm.exit()
        assert {p.pfn for p in mm.pins_at_exit} == {pfns[i] for i in range(4) if pins[i]}, env.say(
            f"pins at exit {mm.pins_at_exit}"
        )
        release()
    else:
        release()
        mm.exit()
        assert mm.pins_at_exit == ()
    assert [env.m.pages.page_count(p)[0] for p in pfns] == [0] * 4, env.say("every page freed")
    env.assert_clean()


def test_page_needs_cow_for_dma_only_for_a_pinned_anonymous_page_of_a_cow_vma(env: Env) -> None:
    """page_needs_cow_for_dma (5.9 early COW of pinned pages at fork): a pinned anonymous page
    in a private VMA must be copied for the child; unpinned, or plainly referenced, it need not."""
    m = env.m
    mm = m.new_mm()
    addr, (pfn,) = _anon(env, mm, 1)
    vma = mm.find_vma(addr)
    assert vma is not None
    assert gup.page_needs_cow_for_dma(vma, pfn).tolist() == [False], env.say("no pin yet")
    got = gup.get_user_pages(mm, addr, 1, write=True)
    assert gup.page_needs_cow_for_dma(vma, pfn).tolist() == [False], env.say("a FOLL_GET reference")
    m.pages.put_page(got)
    pinned = gup.pin_user_pages(mm, addr, 1, write=True)
    assert gup.page_needs_cow_for_dma(vma, pfn).tolist() == [True], env.say("pinned anonymous page")
    gup.unpin_user_pages(m, pinned)
    assert gup.page_needs_cow_for_dma(vma, pfn).tolist() == [False], env.say("unpinned again")


@pytest.mark.parametrize("kernel", ["2.6.26", "2.6.27"])
def test_page_needs_cow_for_dma_is_unsupported_before_the_pin_bias(kernel: str) -> None:
    from mixedmap import Machine

    m = Machine("x86_64", kernel, "64M")
    mm = m.new_mm()
    addr = mm.mmap(4096, "rw", ANON)
    mm.write(addr, b"x")
    vma = mm.find_vma(addr)
    assert vma is not None
    with pytest.raises(UnsupportedRule, match=r"introduced in 5\.7"):
        gup.page_needs_cow_for_dma(vma, 0)
