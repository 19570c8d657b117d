"""``vm_normal_page`` (kernel-mm-semantics.md section 4.1/4.2, invariants 4, 10-12) under both
schemes: the decision table on hand-made PTEs, the batched classifier agreeing with the
scalar one, the PFNMAP linearity rule end to end (COW, munmap/mprotect splits keep it), and
S16's theoretical corner case (scheme B: a COW page that lands on vm_pgoff + index is taken
for the original special PTE and leaks).
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmap import VMBug
from mixedmap.mm import memory
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import VMA

from .helpers import VM, Env, hx, map_device
from .scenarios import s16

PFNMAP, MIXEDMAP = VM.PFNMAP, VM.MIXEDMAP


def _vma(env: Env, flags: int, shared: bool, *, pgoff: int = 0, writable: bool = True) -> VMA:
    """A device VMA; ``pgoff`` is set as the driver's ->mmap would (it may be any pfn)."""
    mm = env.m.new_mm()
    prot = "rw" if writable or not shared else "r"
    _addr, vma = map_device(env, mm, 8, shared=shared, flags=flags, writable=writable, prot=prot)
    vma.pgoff = pgoff
    return vma


def _pte(env: Env, vma: VMA, pfn: int, special: bool) -> int:
    pte = int(env.ops.pfn_pte(pfn, vma.page_prot))
    return env.mkspecial(pte) if special else pte


def _classify(vma: VMA, idx: int, pte: int) -> int | str | None:
    try:
        return memory.vm_normal_page(vma, vma.start + idx * vma.mm.page_size, pte)
    except VMBug as exc:
        return f"BUG: {exc}"


def _batched(vma: VMA, idx: int, pte: int) -> int | str | None:
    vas = np.array([vma.start + idx * vma.mm.page_size], dtype=np.uint64)
    try:
        got = int(memory.vm_normal_pages(vma, vas, np.array([pte], dtype=np.uint64))[0])
    except VMBug as exc:
        return f"BUG: {exc}"
    return None if got < 0 else got


# (id, VMA flags, MAP_SHARED, file writable, pfn kind, linear?, special bit (scheme A only))
#   -> expected per scheme: "page", None (special) or "BUG"
GRID: list[tuple[str, int, bool, bool, str, bool, bool, dict[str, str | None]]] = [
    # scheme A: the bit alone decides
    ("A-special-pfnmap", PFNMAP, True, True, "ram", False, True, {"A": None}),
    ("A-special-mixedmap", MIXEDMAP, False, True, "nopage", False, True, {"A": None}),
    ("A-special-both", PFNMAP | MIXEDMAP, True, True, "ram", False, True, {"A": None}),
    ("A-special-plain-vma", 0, True, True, "ram", False, True, {"A": "BUG"}),
    ("A-normal-pfnmap-cow-linear", PFNMAP, False, True, "ram", True, False, {"A": "page"}),
    ("A-normal-pfnmap-shared", PFNMAP, True, True, "ram", False, False, {"A": "page"}),
    ("A-normal-mixedmap", MIXEDMAP, True, True, "ram", False, False, {"A": "page"}),
    ("A-normal-nopage", MIXEDMAP, True, True, "nopage", False, False, {"A": "BUG"}),
    # scheme B: MIXEDMAP by pfn_valid, PFNMAP by linearity and COW, else a page
    ("B-mixedmap-nopage", MIXEDMAP, False, True, "nopage", False, False, {"B": None}),
    ("B-mixedmap-ram", MIXEDMAP, False, True, "ram", False, False, {"B": "page"}),
    ("B-mixedmap-beats-pfnmap-linear", MIXEDMAP | PFNMAP, False, True, "ram", True, False, {"B": "page"}),
    ("B-both-nopage", MIXEDMAP | PFNMAP, True, True, "nopage", False, False, {"B": None}),
    ("B-pfnmap-cow-linear-ram", PFNMAP, False, True, "ram", True, False, {"B": None}),
    ("B-pfnmap-cow-linear-nopage", PFNMAP, False, True, "nopage", True, False, {"B": None}),
    ("B-pfnmap-cow-nonlinear-ram", PFNMAP, False, True, "ram", False, False, {"B": "page"}),
    ("B-pfnmap-cow-nonlinear-nopage", PFNMAP, False, True, "nopage", False, False, {"B": "BUG"}),
    ("B-pfnmap-shared-linear", PFNMAP, True, True, "ram", True, False, {"B": None}),
    ("B-pfnmap-shared-nonlinear-ram", PFNMAP, True, True, "ram", False, False, {"B": None}),
    ("B-pfnmap-shared-rofile-nonlinear", PFNMAP, True, False, "ram", False, False, {"B": None}),
    ("B-plain-ram", 0, False, True, "ram", False, False, {"B": "page"}),
    ("B-plain-nopage", 0, True, True, "nopage", False, False, {"B": "BUG"}),
]


def _grid_case(env: Env, row: tuple[str, int, bool, bool, str, bool, bool, dict[str, str | None]]) -> None:
    name, flags, shared, writable, kind, linear, special, expect = row
    if env.scheme not in expect:
        pytest.skip(f"row {name} is for scheme {next(iter(expect))}; {env.case.id} is scheme {env.scheme}")
    idx = 3
    pfn = env.devmem(1) if kind == "nopage" else env.driver_pages(idx + 1)[idx]  # pfn >= idx
    vma = _vma(env, flags, shared, pgoff=pfn - idx if linear else pfn + 100, writable=writable)
    assert vma.is_cow == (not shared), env.say(f"{name}: is_cow_mapping({vma.describe()})")
    pte = _pte(env, vma, pfn, special)
    got = _classify(vma, idx, pte)
    want = expect[env.scheme]
    if want == "BUG":
        assert isinstance(got, str) and got.startswith("BUG"), env.say(
            f"{name}: expected VM_BUG_ON, got {got}", pte=pte
        )
        assert "PFNMAP/MIXEDMAP" in got or "no struct page" in got, env.say(
            f"{name}: the BUG must name its rule: {got}"
        )
    else:
        assert got == (pfn if want == "page" else None), env.say(
            f"{name}: vm_normal_page in {vma.describe()} pgoff={vma.pgoff:#x} idx={idx} -> {got}", pte=pte
        )
    batched = _batched(vma, idx, pte)
    assert (batched == got) or (isinstance(batched, str) and isinstance(got, str)), env.say(
        f"{name}: vm_normal_pages (batched) says {batched}, vm_normal_page says {got}", pte=pte
    )


@pytest.mark.parametrize("row", [r for r in GRID if "A" in r[7]], ids=[r[0] for r in GRID if "A" in r[7]])
def test_scheme_a_decision_table(
    env_a: Env, row: tuple[str, int, bool, bool, str, bool, bool, dict[str, str | None]]
) -> None:
    """4.1: special bit set -> NULL (VM_BUG_ON outside PFNMAP/MIXEDMAP); clear -> the page
    (VM_BUG_ON(!pfn_valid)). vm_pgoff and pfn_valid are never consulted otherwise."""
    _grid_case(env_a, row)


@pytest.mark.parametrize("row", [r for r in GRID if "B" in r[7]], ids=[r[0] for r in GRID if "B" in r[7]])
def test_scheme_b_decision_table(
    env_b: Env, row: tuple[str, int, bool, bool, str, bool, bool, dict[str, str | None]]
) -> None:
    """4.2: MIXEDMAP -> NULL iff !pfn_valid (MIXEDMAP wins over PFNMAP); PFNMAP -> NULL if
    pfn == vm_pgoff + index or the VMA is not COW; anything else is a page."""
    _grid_case(env_b, row)


def test_scheme_b_has_no_bit_to_consult(env_b: Env) -> None:
    """Scheme B: pte_special is constantly false and pte_mkspecial the identity, so a PTE
    value carries nothing the classifier could use besides its pfn."""
    vma = _vma(env_b, PFNMAP, True)
    pfns = np.arange(1, 64, dtype=np.uint64)
    ptes = np.asarray(env_b.ops.pfn_pte(pfns, vma.page_prot), dtype=np.uint64)
    assert not env_b.m.mode.pte_special(ptes).any(), env_b.say("pte_special true on a scheme-B profile")
    assert all(env_b.mkspecial(int(p)) == int(p) for p in ptes[:4]), env_b.say(
        "mkspecial must be the identity"
    )


def test_batched_classifier_matches_scalar(env: Env) -> None:
    """vm_normal_pages over a whole COW PFNMAP range (zap/fork/smaps use it) gives exactly
    what vm_normal_page gives PTE by PTE."""
    mm = env.m.new_mm()
    ram = env.driver_pages(8)[0]
    addr, vma = map_device(env, mm, 8, shared=False)
    memory.remap_pfn_range(vma, addr, ram, 8 * env.ps)
    for i in (1, 4, 6):
        mm.access(addr + i * env.ps, write=True)  # COW some
    vas, ptes, _reach = mm.pt.range_ptes(addr, 8)
    batched = memory.vm_normal_pages(vma, vas, ptes).tolist()
    scalar = [memory.vm_normal_page(vma, int(v), int(p)) for v, p in zip(vas, ptes, strict=True)]
    assert [None if b < 0 else b for b in batched] == scalar, env.say(
        f"batched {batched} != scalar {scalar}; ptes {[hx(int(p)) for p in ptes]}"
    )
    assert [s is not None for s in scalar] == [i in (1, 4, 6) for i in range(8)], env.say(
        f"only the COWed PTEs are normal: {scalar}"
    )


# -- the PFNMAP linearity rule (4.2 corollary, invariant 10) ------------------------------------
def _cow_pfnmap_over_ram(env: Env, n: int = 4) -> tuple[MM, int, VMA, int]:
    mm = env.m.new_mm()
    ram = env.driver_pages(n)[0]
    addr, vma = map_device(env, mm, n, shared=False)
    memory.remap_pfn_range(vma, addr, ram, n * env.ps)
    return mm, addr, vma, ram


def test_linearity_survives_cow_and_splits(env: Env) -> None:
    """A COW PFNMAP VMA over pfn_valid RAM: un-COWed PTEs are special only because pfn ==
    vm_pgoff + index (scheme B), so every split must carry vm_pgoff along (split_vma). A
    misclassification would touch the driver's struct pages: the refcounts tell."""
    mm, addr, vma, ram = _cow_pfnmap_over_ram(env, 6)
    ps = env.ps
    assert vma.pgoff == ram, env.say(f"remap must set vm_pgoff := pfn ({vma.pgoff:#x} != {ram:#x})")
    mm.access(addr + 2 * ps, write=True)  # COW page 2 -> anonymous
    cow = env.pfn_of(env.pte(mm, addr + 2 * ps))
    mm.munmap(addr, ps)  # split: the tail VMA starts at page 1 with vm_pgoff ram + 1
    mm.mprotect(addr + 4 * ps, ps, "r")  # two more splits
    for i in range(1, 6):
        va = addr + i * ps
        v = mm.find_vma(va)
        assert v is not None and v.linear_pgoff(va) == ram + i, env.say(
            f"page {i}: linear pgoff lost by the split"
        )
        want = cow if i == 2 else None
        assert env.normal_page(mm, va) == want, env.say(
            f"page {i} misclassified after splits", pte=env.pte(mm, va)
        )
    assert [env.counts(ram + i) for i in range(6)] == [(1, 0)] * 6, env.say(
        f"driver pages touched: {[env.counts(ram + i) for i in range(6)]}"
    )
    mm.exit()
    assert [env.counts(ram + i) for i in range(6)] == [(1, 0)] * 6, env.say(
        "exit touched the special pfns' pages"
    )
    env.assert_clean()


def test_linearity_is_what_makes_a_cow_pfnmap_page_special(env: Env) -> None:
    """Moving vm_pgoff by one turns every un-COWed PTE of a COW PFNMAP VMA into a "page" in
    scheme B (and changes nothing in scheme A): the rule vm_insert_pfn's BUG_ON protects."""
    _mm, addr, vma, ram = _cow_pfnmap_over_ram(env)
    pte = env.pte(vma.mm, addr + env.ps)
    assert memory.vm_normal_page(vma, addr + env.ps, pte) is None, env.say(
        "linear PTE must be special", pte=pte
    )
    vma.pgoff += 1  # what a driver breaking the rule would leave
    got = memory.vm_normal_page(vma, addr + env.ps, pte)
    want = None if env.scheme == "A" else ram + 1
    assert got == want, env.say(f"non-linear PTE in a COW PFNMAP VMA -> {got}, want {want}", pte=pte)
    vma.pgoff -= 1


# -- S16: the theoretical scheme-B corner case (the runner lives in scenarios.py) ---------------
def test_s16_scheme_b_takes_the_cow_page_for_the_special_original(env_b: Env) -> None:
    """The COW page landed on vm_pgoff + index: scheme B calls it special, so zap skips it --
    anon_rss never drops, one mapcount and one reference stay behind (a leaked page). The
    2008 rules allow it; nothing checks for it (section 4.2, "theoretical")."""
    out = s16(env_b)
    o, pte = out.obs, int(str(out.detail["pte"]), 16)
    assert o["classified"] == ["special"] * 4, env_b.say(
        f"vm_normal_page must (wrongly) say special: {o}", pte=pte
    )
    assert o["rss_after_cow"] == {"file": 0, "anon": 1}, env_b.say(
        f"COW accounting {o['rss_after_cow']}", pte=pte
    )
    assert o["rss_after_munmap"] == {"file": 0, "anon": 1}, env_b.say(f"RSS after munmap {o}", pte=pte)
    assert o["cow_page_after_munmap"] == (1, 1), env_b.say(f"leaked (refcount, mapcount) {o}", pte=pte)
    assert o["leaks_after_exit"] == {"anon": 1}, env_b.say(f"exactly one anonymous page leaks: {o}", pte=pte)
    assert o["pagetable_bytes_after_exit"] == 0, env_b.say("exit must still free every page table")


def test_s16_same_setup_is_sound_in_scheme_a(env_a: Env) -> None:
    out = s16(env_a)
    o, pte = out.obs, int(str(out.detail["pte"]), 16)
    assert o["special_bit"] is False and o["classified"] == ["special", "special", "normal", "special"], (
        env_a.say(f"the bit-less COW PTE is a normal page in scheme A: {o}", pte=pte)
    )
    assert o["rss_after_munmap"] == {"file": 0, "anon": 0}, env_a.say(f"RSS after munmap {o}", pte=pte)
    assert o["cow_page_after_munmap"] == (0, 0), env_a.say(f"the COW page must be freed: {o}", pte=pte)
    assert o["leaks_after_exit"] == {}, env_a.say(f"nothing leaks: {o}", pte=pte)
