"""The showcase scenarios (zero-page, fork-mixedmap, vm-insert-page-mixedmap) under ``mixedmap diff``.

Each test runs :func:`mixedmap.scenario.diff.diff` on a bundled scenario under 2.6.26, 2.6.27
and 6.18 on one installed arch and checks that the differences the scenario was written to
show are reported, with the values each kernel gives and the kernel rule named as their cause.
A rule that breaks (a wrong release, a branch that no longer asks it) changes a value or a
cause and fails here. An arch without the 2.6.x profiles (riscv64) has nothing to compare.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from mixedmap.plugin.registry import default_registry
from mixedmap.scenario import schema as S
from mixedmap.scenario.diff import ArchDiff, Difference, DiffResult, diff
from mixedmap.scenario.load import load
from mixedmap.scenario.run import run_one

REG = default_registry()
ARCHES = REG.names
KERNELS = ("2.6.26", "2.6.27", "6.18")
NEW = {"2.6.26": "not run", "2.6.27": "not run", "6.18": "runs"}
#: Keys only the 6.18 page view reports (pin_user_pages, GUP_PIN_COUNTING_BIAS): not what these
#: scenarios are about.
PIN_KEYS = frozenset({"pins", "maybe_dma_pinned"})


@functools.cache
def _diff(name: str) -> DiffResult:
    return diff(load(name)[1], KERNELS, registry=REG)


@functools.cache
def _scheme_b_2626(name: str, arch: str) -> bool:
    """The arch had no pte_special in 2.6.26 (x86_64, ppc64): vm_normal_page's scheme B."""
    return not run_one(load(name)[1], arch, "2.6.26", registry=REG).special


def _arch(name: str, arch: str) -> ArchDiff:
    (a,) = [a for a in _diff(name).arches if a.arch == arch]
    if a.not_run:
        assert all("profile" in why for why in a.not_run.values()), a.not_run
        assert not a.differences
        pytest.skip(f"{arch} has no profile {', '.join(a.not_run)}: nothing to compare")
    return a


def _step(name: str, note: str) -> int:
    """The index of the scenario step whose note starts with ``note``."""
    steps = load(name)[1].steps
    found = [i for i, st in enumerate(steps) if st.note.startswith(note)]
    assert len(found) == 1, (name, note, found)
    return found[0]


def _row(a: ArchDiff, step: int, key: str) -> Difference:
    rows = [d for d in a.differences if d.step == step and d.key == key]
    assert len(rows) == 1, (a.arch, step, key, [(d.step, d.key) for d in a.differences])
    return rows[0]


def _end(a: ArchDiff, process: str, key: str) -> Difference:
    rows = [d for d in a.differences if d.step < 0 and d.label == f"end of run: {process}" and d.key == key]
    assert len(rows) == 1, (a.arch, process, key)
    return rows[0]


def _check(d: Difference, values: dict[str, Any], *causes: str) -> None:
    assert d.values == values, (d.arch, d.label, d.key, d.values)
    assert [c.name for c in d.causes] == list(causes), (d.arch, d.label, d.key, d.causes)
    for c in d.causes:  # the cause's split of the kernels is the one the values show
        assert {k for k in KERNELS if k in c.holds_in} in ({"6.18"}, {"2.6.26", "2.6.27"}, {"2.6.27", "6.18"})


def _pair(name: str, new: str, old: str) -> int:
    """The logical step of a pair written once per answer (6.18's form and 2.6.x's, each with
    its ``when``): the diff compares them as one step at the first one's index."""
    return min(_step(name, new), _step(name, old))


def _only(a: ArchDiff, step: int, expected: dict[str, tuple[Any, ...]], *causes: str) -> None:
    """Exactly these keys differ at ``step``, with these values in KERNELS order."""
    rows = {d.key: d for d in a.differences if d.step == step}
    assert set(rows) == set(expected), (a.arch, step, sorted(rows))
    for key, vals in expected.items():
        _check(rows[key], dict(zip(KERNELS, vals, strict=True)), *causes)


def test_the_showcases_run_the_three_kernels() -> None:
    for name in ("zero-page", "fork-mixedmap", "vm-insert-page-mixedmap"):
        scen = load(name)[1]
        assert tuple(scen.scenario.kernels or ()) == KERNELS
        assert not _diff(name).identical


def test_alternative_steps_are_compared_by_what_each_kernel_did() -> None:
    """No showcase difference is a "which copy ran" row where the copies pair up."""
    for name in ("zero-page", "fork-mixedmap", "vm-insert-page-mixedmap"):
        for a in _diff(name).arches:
            paired = [d for d in a.differences if d.key == "step" and d.values != NEW]
            assert not paired, (name, a.arch, paired)


# -- zero-page -----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_zero_page_read_fault_write_populate(arch: str) -> None:
    name = "zero-page"
    a = _arch(name, arch)
    z = ("zero_page",)
    first_read = _pair(name, "2.6.32 on: the shared zero pfn", "2.6.24-2.6.31: a fresh zeroed")
    _only(
        a,
        first_read,
        {
            "rss_anon": (1, 1, 0),  # the zero page is not counted (vm_normal_page: special)
            "special": (False, False, True),
            "writable": (True, True, False),
            "normal": (True, True, False),
            "mapcount": (1, 1, 0),
            "page_flags": ("uptodate|anon", "uptodate|anon", "reserved"),
        },
        *z,
    )
    write = _pair(name, "6.18: a write-protect fault", "2.6.27: the page is already private")
    _only(a, write, {"fault": ("none", "none", "wp")}, *z)
    populate = _pair(name, "6.18 populate_vma_page_range", "2.6.27 make_pages_present")
    _only(a, populate, {"present": (False, False, True)}, *z)
    touch = _pair(name, "touching every page afterwards", "2.6.27 allocates four")
    _only(
        a,
        touch,
        {"fault": ("fault", "fault", "none"), "faults": ({"fault": 4}, {"fault": 4}, {"none": 4})},
        *z,
    )
    _only(a, touch + 2, {"rss_anon": (5, 5, 1)}, *z)
    _check(_row(a, _step(name, "6.18: faultin_page mapped the zero page"), "step"), NEW, *z)
    # one COWed page against one per page touched (4 read-only ones and the heap page)
    _check(_end(a, "a", "rss_anon"), {"2.6.26": 5, "2.6.27": 5, "6.18": 1}, *z)


@pytest.mark.parametrize("arch", ARCHES)
def test_zero_page_cow_ends_alike(arch: str) -> None:
    """After the write every kernel holds the same private page, and the GUPs return one page
    everywhere: nothing differs at those steps."""
    name = "zero-page"
    a = _arch(name, arch)
    after_cow = _step(name, "the same private anonymous page")
    assert not [d for d in a.differences if d.step == after_cow]
    steps = load(name)[1].steps
    gups = [i for i, st in enumerate(steps) if isinstance(st, S.Gup)]
    assert gups and not [d for d in a.differences if d.step in gups]


# -- fork-mixedmap -------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_fork_copies_mixedmap_from_3_7(arch: str) -> None:
    name = "fork-mixedmap"
    a = _arch(name, arch)
    f = ("fork_copies_mixedmap",)
    # the child's PTEs for both MIXEDMAP pages: copied (6.18) or none (2.6.x, refault later)
    child_pte = _pair(name, "3.7 on: vma_needs_copy copies", "2.6.27: no PFNMAP/INSERTPAGE")
    _only(a, child_pte, {"present": (False, False, True)}, *f)
    _only(a, child_pte + 2, {"present": (False, False, True)}, *f)
    # its read: the device through the copied PTE, or a fresh anonymous zero-filled page
    read = _pair(name, "6.18: the child reads the device", "2.6.27: the refault finds no ->fault")
    _only(a, read, {"fault": ("fault", "fault", "none"), "data": ("......", "......", "device")}, *f)
    left = {d.key: d for d in a.differences if d.step == read + 1}
    _check(left["rss_anon"], {"2.6.26": 1, "2.6.27": 1, "6.18": 0}, *f)
    _check(left["normal"], {"2.6.26": True, "2.6.27": True, "6.18": False}, *f)
    # the PFNMAP VMA is copied by every kernel: its child PTE is present everywhere
    regs = _step(name, "PFNMAP was copied in every kernel")
    assert not [d for d in a.differences if d.step == regs and d.key in ("present", "normal", "rss_file")]
    # the child exited: nothing of it differs at the end
    assert not [d for d in a.differences if d.label == "end of run: child"]


@pytest.mark.parametrize("arch", ARCHES)
def test_fork_mixedmap_scheme_b_inserts(arch: str) -> None:
    """2.6.26 x86_64/ppc64 had no special bit: vm_insert_mixed of a pfn with a struct page
    took insert_page (refcounted, file rss); with the bit it is special and uncounted."""
    name = "fork-mixedmap"
    a = _arch(name, arch)
    insert = _pair(name, "a pfn with a struct page, where the arch has the special bit", "scheme B (2.6.26")
    if not _scheme_b_2626(name, arch):
        assert not [d for d in a.differences if d.step == insert]
        assert not [d for d in a.differences if d.label == "end of run: drv"]
        return
    sp = ("pte_special",)
    _only(
        a,
        insert,
        {
            "special": (False, True, True),
            "normal": (True, False, False),
            "refcount": (2, 1, 1),
            "mapcount": (1, 0, 0),
            "refcount_delta": (1, 0, 0),
            "mapcount_delta": (1, 0, 0),
        },
        *sp,
    )
    _check(_end(a, "drv", "rss_file"), {"2.6.26": 1, "2.6.27": 0, "6.18": 0}, *sp)


# -- vm-insert-page-mixedmap ---------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHES)
def test_vm_insert_page_sets_mixedmap_from_3_7(arch: str) -> None:
    name = "vm-insert-page-mixedmap"
    a = _arch(name, arch)
    v = "vm_insert_page_sets_mixedmap"
    mixed = _pair(name, "6.18: the VMA is VM_MIXEDMAP now", "2.6.27: VM_INSERTPAGE is not VM_MIXEDMAP")
    _only(a, mixed, {"outcome": ("BUG", "BUG", "ok")}, v)
    pfnmap = _pair(name, "6.18: BUG_ON(vma->vm_flags & VM_PFNMAP)", "2.6.27 inserts into the PFNMAP VMA")
    _check(_row(a, pfnmap, "outcome"), {"2.6.26": "ok", "2.6.27": "ok", "6.18": "BUG"}, v)
    # the page 2.6.27 put into the PFNMAP VMA is still mapped (file rss) at the end
    _check(_end(a, "drv", "rss_file"), {"2.6.26": 2, "2.6.27": 2, "6.18": 1}, v)


@pytest.mark.parametrize("arch", ARCHES)
def test_vm_insert_page_fork_copies_in_both_eras(arch: str) -> None:
    """VM_INSERTPAGE (2.6.27) and VM_MIXEDMAP (6.18) both make fork copy the VMA: the inserted
    page gains a reference and a mapcount for the child in every kernel."""
    name = "vm-insert-page-mixedmap"
    a = _arch(name, arch)
    steps = load(name)[1].steps
    fork = next(i for i, st in enumerate(steps) if isinstance(st, S.Fork))
    for i in (0, 1, 2, fork, fork + 1, fork + 2, fork + 3):
        assert {d.key for d in a.differences if d.step == i} <= PIN_KEYS, (arch, i)


@pytest.mark.parametrize("arch", ARCHES)
def test_vm_insert_page_vm_flags(arch: str) -> None:
    """The VMA's VmFlags at the end: "mm" from 3.7; VM_INSERTPAGE never had a mnemonic."""
    scen = load("vm-insert-page-mixedmap")[1]
    for kernel, mixed in (("2.6.27", False), ("6.18", True)):
        r = run_one(scen, arch, kernel, registry=REG)
        if r.skipped:
            assert "profile" in r.skipped
            continue
        buf, regs = r.processes["drv"]["vmas"]
        assert ("mm" in buf.split()) is mixed, (arch, kernel, buf)
        assert "mm" not in regs.split() and "pf" in regs.split(), (arch, kernel, regs)
