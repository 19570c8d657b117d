"""Helper algebra on every installed arch mode: the PTE checks of mm/debug_vm_pgtable.c.

B0-B9 are ``pte_basic_tests`` over all 16 protections; profiles whose hardware keeps
referenced/changed outside the PTE (s390 2.6.x: the storage key) instead must have constant
young/dirty predicates and no-op helpers, as the kernel did.
"""

from __future__ import annotations

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
