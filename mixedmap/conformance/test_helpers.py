"""Helper algebra on every installed arch mode: the PTE checks of mm/debug_vm_pgtable.c.

B0-B9 are ``pte_basic_tests`` over all 16 protections; profiles whose hardware keeps
referenced/changed outside the PTE (s390 2.6.x: the storage key) instead must have constant
young/dirty predicates and no-op helpers, as the kernel did. :class:`TestHelperFrames` adds
what debug_vm_pgtable leaves out: over PTEs with any mix of the layout's named bits, each
helper changes only what it names and is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from mixedmap.bits import ALL64
from mixedmap.conformance.cases import SUITE_SETTINGS, ArchCase


def pfns_for(case: ArchCase) -> st.SearchStrategy[int]:
    return st.integers(0, min(case.mode.fmt.max_pfn, 1 << 40) - 1)


def ptes(case: ArchCase, pfn: int, idx: int) -> int:
    ops, fmt = case.mode.ops, case.mode.fmt
    return int(ops.pfn_pte(pfn, fmt.protection_map[idx]))


class TestHelperAlgebra:
    """mm/debug_vm_pgtable.c PTE checks, the special bit, scalar/batch agreement, protection_map."""

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_debug_vm_pgtable_basic(self, arch_case: ArchCase, data: st.DataObject) -> None:
        ops, fmt = arch_case.mode.ops, arch_case.mode.fmt
        pfn = data.draw(pfns_for(arch_case), label="pfn")
        idx = data.draw(st.integers(0, 15), label="protection index")
        p = ptes(arch_case, pfn, idx)
        tag = f"{arch_case.id}: p={p:#018x} (pfn {pfn:#x}, prot[{idx}]={fmt.protection_map[idx]:#x})"
        assert int(ops.pte_pfn(p)) == pfn, tag
        assert ops.pte_present(p), tag
        assert not ops.pte_none(p), tag
        assert not ops.pte_dirty(ops.pte_wrprotect(p)), f"B0 {tag}"
        assert ops.pte_write(ops.pte_mkwrite(ops.pte_wrprotect(p))), f"B4 {tag}"
        protnone = idx & 0x7 == 0
        if protnone and "protnone_pte_write" in fmt.quirks:  # the kernel's own answer
            assert ops.pte_write(ops.pte_wrprotect(p)), f"quirk declared but not shown: {tag}"
        else:
            assert not ops.pte_write(ops.pte_wrprotect(ops.pte_mkwrite(p))), f"B7 {tag}"
        assert not ops.pte_dirty(ops.pte_wrprotect(ops.pte_mkclean(p))), f"B8 {tag}"
        if fmt.tracks_young_dirty:
            assert ops.pte_young(ops.pte_mkyoung(ops.pte_mkold(p))), f"B2 {tag}"
            assert ops.pte_dirty(ops.pte_mkdirty(ops.pte_mkclean(p))), f"B3 {tag}"
            assert not ops.pte_young(ops.pte_mkold(ops.pte_mkyoung(p))), f"B5 {tag}"
            assert not ops.pte_dirty(ops.pte_mkclean(ops.pte_mkdirty(p))), f"B6 {tag}"
            assert ops.pte_dirty(ops.pte_wrprotect(ops.pte_mkdirty(p))), f"B9 {tag}"
        else:
            for helper in (ops.pte_mkyoung, ops.pte_mkold, ops.pte_mkdirty, ops.pte_mkclean):
                assert helper(p) == p, f"{helper.__name__} is not a no-op: {tag}"
            assert not ops.pte_young(p) and not ops.pte_dirty(ops.pte_mkdirty(p)), tag
        for helper in (
            ops.pte_mkwrite,
            ops.pte_wrprotect,
            ops.pte_mkdirty,
            ops.pte_mkclean,
            ops.pte_mkyoung,
            ops.pte_mkold,
        ):
            assert int(ops.pte_pfn(helper(p))) == pfn, f"{helper.__name__} lost the pfn: {tag}"

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_special_bit_algebra(self, arch_case: ArchCase, data: st.DataObject) -> None:
        fmt, bm = arch_case.mode.fmt, arch_case.bound
        pfn = data.draw(pfns_for(arch_case), label="pfn")
        idx = data.draw(st.integers(0, 15), label="protection index")
        p = ptes(arch_case, pfn, idx)
        arr = np.array([p], dtype=np.uint64)
        if fmt.special_mask is None:
            assert not bm.has_special and not bm.pte_special(arr)[0]
            return
        s = int(bm.pte_mkspecial(arr)[0])
        assert bm.pte_special(np.array([s], dtype=np.uint64))[0], f"{arch_case.id}: {s:#x}"
        assert not bm.pte_special(arr)[0], f"{arch_case.id}: fresh pfn_pte {p:#x} is special"
        assert s ^ p == fmt.special_mask, (
            f"{arch_case.id}: mkspecial changed {s ^ p:#x}, not just {fmt.special_mask:#x}"
        )
        assert int(arch_case.mode.ops.pte_pfn(s)) == pfn
        newprot = fmt.protection_map[data.draw(st.integers(0, 15), label="new protection")]
        m = int(arch_case.mode.ops.pte_modify(s, newprot))
        if "pte_modify_drops_special" in fmt.quirks:  # the kernel's bug, reproduced on purpose
            assert not m & fmt.special_mask, f"{arch_case.id}: quirk declared but pte_modify kept the bit"
        else:
            assert m & fmt.special_mask, (
                f"{arch_case.id}: pte_modify dropped the special bit ({s:#x} -> {m:#x})"
            )
        assert int(arch_case.mode.ops.pte_pfn(m)) == pfn, f"{arch_case.id}: pte_modify lost the pfn"

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_scalar_and_batch_paths_agree(self, arch_case: ArchCase, data: st.DataObject) -> None:
        ops, fmt = arch_case.mode.ops, arch_case.mode.fmt
        pfns = data.draw(st.lists(pfns_for(arch_case), min_size=1, max_size=20), label="pfns")
        idx = data.draw(st.integers(0, 15), label="protection index")
        prot = fmt.protection_map[idx]
        arr = ops.pfn_pte(np.array(pfns, dtype=np.uint64), prot)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.uint64
        assert arr.tolist() == [int(ops.pfn_pte(p, prot)) for p in pfns]
        raw = data.draw(st.lists(st.integers(0, ALL64), min_size=1, max_size=20), label="raw values")
        values = [*arr.tolist(), *raw]
        batch = np.array(values, dtype=np.uint64)
        for name in ("pte_pfn", "pte_present", "pte_none", "pte_write", "pte_dirty", "pte_young"):
            f = getattr(ops, name)
            assert np.asarray(f(batch)).tolist() == [
                bool(f(v)) if name != "pte_pfn" else int(f(v)) for v in values
            ], name
        for name in (
            "pte_mkwrite",
            "pte_wrprotect",
            "pte_mkdirty",
            "pte_mkclean",
            "pte_mkyoung",
            "pte_mkold",
        ):
            f = getattr(ops, name)
            assert np.asarray(f(batch)).tolist() == [int(f(v)) for v in values], f"{arch_case.id}: {name}"
        assert np.asarray(ops.pte_modify(batch, prot)).tolist() == [
            int(ops.pte_modify(v, prot)) for v in values
        ]

    def test_protection_map_is_kernel_shaped(self, arch_case: ArchCase) -> None:
        """Shared writable entries write; private (COW) ones never do (protection_map)."""
        ops, fmt = arch_case.mode.ops, arch_case.mode.fmt
        for idx, prot in enumerate(fmt.protection_map):
            p = int(ops.pfn_pte(1, prot))
            writable = bool(ops.pte_write(p))
            if idx & 0x7 == 0 and "protnone_pte_write" in fmt.quirks:
                assert writable, f"{arch_case.id}: quirk protnone_pte_write declared but not shown"
                continue
            if idx & 0x2 and idx & 0x8:
                assert writable, f"{arch_case.id}: __S{idx & 7:03b} {prot:#x} not writable"
            if not idx & 0x8:
                assert not writable, f"{arch_case.id}: __P{idx & 7:03b} {prot:#x} writable (COW would break)"


# -- frame and idempotence (mm/debug_vm_pgtable.c checks one bit at a time; these check the rest)
#: Each set/clear helper, the verdict it names and the value that verdict must take.
SETTERS: tuple[tuple[str, str, bool], ...] = (
    ("pte_mkwrite", "pte_write", True),
    ("pte_wrprotect", "pte_write", False),
    ("pte_mkdirty", "pte_dirty", True),
    ("pte_mkclean", "pte_dirty", False),
    ("pte_mkyoung", "pte_young", True),
    ("pte_mkold", "pte_young", False),
)
PREDICATES = ("pte_present", "pte_none", "pte_write", "pte_dirty", "pte_young")


def named_bits(case: ArchCase) -> list[int]:
    """Every single-bit hw/sw field of the PTE layout outside the pfn (the special bit too)."""
    fmt = case.mode.fmt
    out = {b.mask for b in fmt.pte_bits if b.kind != "field" and b.width == 1 and not b.mask & fmt.pfn_mask}
    if fmt.special_mask is not None:
        out.add(fmt.special_mask)
    return sorted(out)


def named_layout(case: ArchCase) -> int:
    """Every bit the PTE layout names outside the pfn field: a helper may change these only."""
    fmt = case.mode.fmt
    out = fmt.special_mask or 0
    for b in fmt.pte_bits:
        if not b.mask & fmt.pfn_mask:
            out |= b.mask
    return out


def present_ptes(case: ArchCase, data: st.DataObject, n: int) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """Present PTEs with any combination of the layout's named bits, not only the values
    ``pfn_pte`` makes: a helper that also changes a bit ``pfn_pte`` never sets hides there."""
    ops = case.mode.ops
    bits = named_bits(case)
    pfns = data.draw(st.lists(pfns_for(case), min_size=n, max_size=n), label="pfns")
    idx = data.draw(st.lists(st.integers(0, 15), min_size=n, max_size=n), label="prots")
    flips = data.draw(
        st.lists(st.integers(0, (1 << len(bits)) - 1), min_size=n, max_size=n), label="named bits to flip"
    )
    vals = []
    for pfn, i, f in zip(pfns, idx, flips, strict=True):
        p = ptes(case, pfn, i)
        for k, b in enumerate(bits):
            if f >> k & 1:
                p ^= b
        vals.append(p)
    arr = np.array(vals, dtype=np.uint64)
    present: np.ndarray[Any, np.dtype[np.bool_]] = np.asarray(ops.pte_present(arr), dtype=np.bool_)
    kept: np.ndarray[Any, np.dtype[np.uint64]] = arr[present]
    return kept


def verdicts(case: ArchCase, p: np.ndarray[Any, np.dtype[np.uint64]]) -> dict[str, np.ndarray[Any, Any]]:
    """What every predicate says of each PTE (and its pfn, and the special hook's answer)."""
    ops = case.mode.ops
    out = {name: np.asarray(getattr(ops, name)(p), dtype=np.bool_) for name in PREDICATES}
    out["pte_pfn"] = np.asarray(ops.pte_pfn(p), dtype=np.uint64)
    out["pte_special"] = case.bound.pte_special(p)
    return out


def _first_change(
    before: dict[str, np.ndarray[Any, Any]], after: dict[str, np.ndarray[Any, Any]], skip: str
) -> tuple[int, dict[str, tuple[object, object]]] | None:
    """The first PTE (index) whose verdicts other than ``skip`` changed, and how."""
    diff = np.zeros(next(iter(before.values())).shape, dtype=np.bool_)
    for k in before:
        if k != skip:
            diff |= before[k] != after[k]
    if not diff.any():
        return None
    j = int(np.flatnonzero(diff)[0])
    return j, {
        k: (before[k][j].item(), after[k][j].item())
        for k in before
        if k != skip and before[k][j] != after[k][j]
    }


class TestHelperFrames:
    """A helper changes what it names and nothing else, and doing it twice is doing it once.

    Over present PTEs with every combination of the layout's named bits: after ``pte_mkX`` /
    ``pte_clearX`` its own predicate says what it set and every other predicate, the pfn and
    ``pte_special`` are unchanged; ``pte_mkspecial`` changes exactly the special bit; each
    helper and ``pte_modify`` with the same prot are idempotent. (A ``pte_mkspecial`` that
    also cleared the dirty bit, or toggled the special bit, passed B0-B9.)
    """

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_helpers_change_only_what_they_name(self, arch_case: ArchCase, data: st.DataObject) -> None:
        ops, fmt = arch_case.mode.ops, arch_case.mode.fmt
        p = present_ptes(arch_case, data, 16)
        before = verdicts(arch_case, p)
        layout = named_layout(arch_case)
        for helper, verdict, value in SETTERS:
            q = np.asarray(getattr(ops, helper)(p), dtype=np.uint64)
            after = verdicts(arch_case, q)
            if not fmt.tracks_young_dirty and verdict in ("pte_dirty", "pte_young"):
                assert (q == p).all(), (
                    f"{arch_case.id}: {helper} must be a no-op where the storage key keeps it"
                )
                continue
            if not ("protnone_pte_write" in fmt.quirks and verdict == "pte_write"):
                bad = after[verdict] != value
                if bad.any():
                    j = int(np.flatnonzero(bad)[0])
                    raise AssertionError(
                        f"{arch_case.id}: {helper}({int(p[j]):#018x}) = {int(q[j]):#018x}: {verdict} is not {value}"
                    )
            stray = (q ^ p) & ~np.uint64(layout)
            if stray.any():
                j = int(np.flatnonzero(stray)[0])
                raise AssertionError(
                    f"{arch_case.id}: {helper}({int(p[j]):#018x}) = {int(q[j]):#018x} changed "
                    f"{int(stray[j]):#x}, bits the layout does not name (or the pfn)"
                )
            change = _first_change(before, after, verdict)
            assert change is None, (
                f"{arch_case.id}: {helper}({int(p[change[0]]):#018x}) = {int(q[change[0]]):#018x} "
                f"also changed {change[1]}"
            )

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_mkspecial_changes_only_the_special_bit(self, arch_case: ArchCase, data: st.DataObject) -> None:
        fmt, bm = arch_case.mode.fmt, arch_case.bound
        if fmt.special_mask is None:
            return
        p = present_ptes(arch_case, data, 16)
        s = bm.pte_mkspecial(p)
        mask = np.uint64(fmt.special_mask)
        other = (s ^ p) & ~mask
        for j in np.flatnonzero((other != 0) | (s & mask != mask)).tolist():
            raise AssertionError(
                f"{arch_case.id}: pte_mkspecial({int(p[j]):#018x}) = {int(s[j]):#018x}: must set "
                f"{fmt.special_mask:#x} and change nothing else (changed {int(other[j]):#x})"
            )
        before, after = verdicts(arch_case, p), verdicts(arch_case, s)
        assert after["pte_special"].all(), f"{arch_case.id}: pte_special false after pte_mkspecial"
        change = _first_change(before, after, "pte_special")
        assert change is None, (
            f"{arch_case.id}: pte_mkspecial({int(p[change[0]]):#018x}) also changed {change[1]}"
        )

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_helpers_are_idempotent(self, arch_case: ArchCase, data: st.DataObject) -> None:
        ops, fmt, bm = arch_case.mode.ops, arch_case.mode.fmt, arch_case.bound
        p = present_ptes(arch_case, data, 16)
        fns: list[tuple[str, Callable[[Any], Any]]] = [(h, getattr(ops, h)) for h, _v, _x in SETTERS]
        if fmt.special_mask is not None:
            fns.append(("pte_mkspecial", bm.pte_mkspecial))
        prot = fmt.protection_map[data.draw(st.integers(0, 15), label="prot for pte_modify")]
        fns.append((f"pte_modify(, {prot:#x})", lambda v: ops.pte_modify(v, prot)))
        for name, f in fns:
            once = np.asarray(f(p), dtype=np.uint64)
            twice = np.asarray(f(once), dtype=np.uint64)
            for j in np.flatnonzero(once != twice).tolist():
                raise AssertionError(
                    f"{arch_case.id}: {name} twice != once on {int(p[j]):#018x}: "
                    f"{int(once[j]):#018x} then {int(twice[j]):#018x}"
                )
