"""x86_64 plugin: reference vectors (arch-formats.md 7.1, 7.4), geometry, helper properties,
and the independent SDM walker (tests/walkers/x86.py) against tables the plugin encodes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("mixedmap_x86")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mixedmap_x86 import plugin

from mixedmap import (
    ENTRY_BAD,
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    ArchMode,
    ArchSpec,
    PageTableFormat,
    ProfileError,
)
from tests.walkers import x86 as walker

ALL64 = (1 << 64) - 1


SPEC: ArchSpec = plugin.mixedmap_arch_spec()
MODES: dict[tuple[str, str], ArchMode] = {(m.name, m.profile): m for m in SPEC.modes}
MODE_IDS = [f"{name}-{profile}" for name, profile in MODES]


def mode(name: str, profile: str) -> ArchMode:
    return MODES[(name, profile)]


def prot(m: ArchMode, name: str) -> int:
    return m.fmt.protections_map[name]


def mkspecial(m: ArchMode, pte: int) -> int:
    """pte_mkspecial through the plugin's batch hook, on a one-element array."""
    out = plugin.mixedmap_pte_mkspecial(m.fmt, np.array([pte], dtype=np.uint64))
    assert out is not None, f"{m.name}/{m.profile}: no special bit"
    return int(out[0])


def level_index(fmt: PageTableFormat, name: str) -> int:
    return [lv.name for lv in fmt.levels].index(name)


def hx(v: int) -> str:
    return f"{v:#018x}"


# --------------------------------------------------------------------------------------
# 7.1  x86-64, Linux 6.18 (4-level and 5-level share the PTE encoding)
# --------------------------------------------------------------------------------------

Vector = Callable[[ArchMode], int]


def _v1(m: ArchMode) -> int:
    return int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_SHARED")))


def _v4(m: ArchMode) -> int:
    return int(m.ops.pte_mkdirty(_v1(m)))


def _v5(m: ArchMode) -> int:
    return int(m.ops.pte_wrprotect(_v4(m)))


VECTORS_618: list[tuple[str, Vector, int]] = [
    ("1-pfn_pte-PAGE_SHARED", _v1, 0x8000000012345027),
    (
        "2-mkspecial-READONLY_EXEC",
        lambda m: mkspecial(m, int(m.ops.pfn_pte(0xFEDCB, prot(m, "PAGE_READONLY_EXEC")))),
        0x00000000FEDCB225,
    ),
    (
        "3-pfn_pte-PAGE_KERNEL",
        lambda m: int(m.ops.pfn_pte(0x100, prot(m, "PAGE_KERNEL"))),
        0x8000000000100163,
    ),
    ("4-mkdirty", _v4, 0x8000000012345867),
    ("5-wrprotect-saved-dirty", _v5, 0x8400000012345825),
    ("6-mkwrite-restores-dirty", lambda m: int(m.ops.pte_mkwrite(_v5(m))), 0x8000000012345867),
    ("7-mkclean", lambda m: int(m.ops.pte_mkclean(_v4(m))), 0x8000000012345827),
    ("8-mkold", lambda m: int(m.ops.pte_mkold(_v1(m))), 0x8000000012345007),
    (
        "9-pfn_pte-PAGE_NONE-inverted",
        lambda m: int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_NONE"))),
        0x000FFFFFEDCBA120,
    ),
    ("10-swap-type3-off1234", lambda m: int(m.ops.mk_swap_pte(3, 0x1234)), 0x1FFFFFFFFFDB9600),
    (
        "11-pmd-leaf-KERNEL_LARGE",
        lambda m: int(m.ops.mk_leaf(level_index(m.fmt, "pmd"), 0x200, prot(m, "PAGE_KERNEL_LARGE"))),
        0x80000000002001E3,
    ),
]


@pytest.mark.parametrize("mode_name", ["4level", "la57"])
@pytest.mark.parametrize(
    ("fn", "expected"), [(f, e) for _, f, e in VECTORS_618], ids=[i for i, _, _ in VECTORS_618]
)
def test_vectors_7_1(mode_name: str, fn: Vector, expected: int) -> None:
    m = mode(mode_name, "6.18")
    got = fn(m)
    assert got == expected, f"x86_64/{mode_name} 6.18: got {hx(got)}, want {hx(expected)}"
    stored = np.array([got], dtype=m.fmt.dtype).tobytes()
    assert stored == expected.to_bytes(8, "little"), f"x86_64/{mode_name}: bytes {stored.hex()}"


@pytest.mark.parametrize("mode_name", ["4level", "la57"])
def test_vector_7_1_9_pte_pfn_undoes_inversion(mode_name: str) -> None:
    m = mode(mode_name, "6.18")
    assert m.ops.pte_pfn(0x000FFFFFEDCBA120) == 0x12345
    assert m.ops.pte_present(0x000FFFFFEDCBA120), "PROT_NONE entry must be pte_present"


# --------------------------------------------------------------------------------------
# 7.4  x86-64, Linux 2.6.27 (2.6.26 shares every helper except the special bit)
# --------------------------------------------------------------------------------------


def _w1(m: ArchMode) -> int:
    return int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_SHARED")))


VECTORS_2008: list[tuple[str, Vector, int, tuple[str, ...]]] = [
    ("1-pfn_pte-PAGE_SHARED", _w1, 0x8000000012345027, ("2.6.26", "2.6.27")),
    (
        "2-mkspecial-READONLY",
        lambda m: mkspecial(m, int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_READONLY")))),
        0x8000000012345225,
        ("2.6.27",),
    ),
    (
        "3-pfn_pte-PAGE_NONE",
        lambda m: int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_NONE"))),
        0x00000000123450A0,
        ("2.6.26", "2.6.27"),
    ),
    (
        "4-wrprotect-mkdirty",
        lambda m: int(m.ops.pte_wrprotect(m.ops.pte_mkdirty(_w1(m)))),
        0x8000000012345065,
        ("2.6.26", "2.6.27"),
    ),
    (
        "5-swap-type3-off1234",
        lambda m: int(m.ops.mk_swap_pte(3, 0x1234)),
        0x0000000000123406,
        ("2.6.26", "2.6.27"),
    ),
]

CASES_2008 = [
    pytest.param(p, f, e, id=f"{p}-{vid}") for vid, f, e, profiles in VECTORS_2008 for p in profiles
]


@pytest.mark.parametrize(("profile", "fn", "expected"), CASES_2008)
def test_vectors_7_4(profile: str, fn: Vector, expected: int) -> None:
    m = mode("4level", profile)
    got = fn(m)
    assert got == expected, f"x86_64/4level {profile}: got {hx(got)}, want {hx(expected)}"
    assert np.array([got], dtype=m.fmt.dtype).tobytes() == expected.to_bytes(8, "little")


def test_2_6_26_has_no_special_bit() -> None:
    fmt = mode("4level", "2.6.26").fmt
    assert fmt.special_mask is None
    assert plugin.mixedmap_pte_special(fmt, np.array([0x200], dtype=np.uint64)) is None
    assert plugin.mixedmap_pte_mkspecial(fmt, np.array([0], dtype=np.uint64)) is None
    names = {b.name: b.mask for b in fmt.pte_bits}
    assert names["UNUSED1"] == 0x200 and "SPECIAL" not in names


# --------------------------------------------------------------------------------------
# VA -> per-level indices (7.1 index table), computed from fmt.levels
# --------------------------------------------------------------------------------------

VA_ROWS: list[tuple[int, str, tuple[int, ...], int]] = [
    (0x00007F1234567ABC, "4level", (254, 72, 418, 359), 0xABC),
    (0x00007FFFFFFFF000, "4level", (255, 511, 511, 511), 0x0),
    (0xFFFF888000000000, "4level", (273, 0, 0, 0), 0x0),
    (0xFFFFFFFF81000000, "4level", (511, 510, 8, 0), 0x0),
    (0xFFFFEA0000000000, "4level", (468, 0, 0, 0), 0x0),
    (0xFF11000000000000, "la57", (273, 0, 0, 0, 0), 0x0),
    (0x00FFFFFFFFFFF000, "la57", (255, 511, 511, 511, 511), 0x0),
    (0x0012345678ABCDEF, "la57", (18, 104, 345, 453, 188), 0xDEF),
    (0xFFD4000000000000, "la57", (468, 0, 0, 0, 0), 0x0),
    (0x00007F1234567ABC, "la57", (0, 254, 72, 418, 359), 0xABC),
]


@pytest.mark.parametrize(
    ("va", "mode_name", "indices", "offset"), VA_ROWS, ids=[f"{r[1]}-{r[0]:#x}" for r in VA_ROWS]
)
def test_va_indices(va: int, mode_name: str, indices: tuple[int, ...], offset: int) -> None:
    for profile in [p for (n, p) in MODES if n == mode_name]:
        fmt = mode(mode_name, profile).fmt
        got = tuple((va >> lv.shift) & (lv.entries - 1) for lv in fmt.levels)
        assert got == indices, f"x86_64/{mode_name} {profile}: {va:#x} -> {got}"
        assert va & (fmt.page_size - 1) == offset
        assert walker.is_canonical(va, fmt.va_bits)


# --------------------------------------------------------------------------------------
# Format, memory model, spec
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "profile", "levels", "va_bits", "pa_bits", "special", "protnone", "physmem"),
    [
        ("4level", "2.6.26", ("pgd", "pud", "pmd", "pte"), 48, 46, None, 0x80, 44),
        ("4level", "2.6.27", ("pgd", "pud", "pmd", "pte"), 48, 46, 0x200, 0x80, 44),
        ("4level", "6.18", ("pgd", "pud", "pmd", "pte"), 48, 52, 0x200, 0x100, 46),
        ("la57", "6.18", ("pgd", "p4d", "pud", "pmd", "pte"), 57, 52, 0x200, 0x100, 52),
    ],
)
def test_geometry(
    name: str,
    profile: str,
    levels: tuple[str, ...],
    va_bits: int,
    pa_bits: int,
    special: int | None,
    protnone: int,
    physmem: int,
) -> None:
    m = mode(name, profile)
    fmt = m.fmt
    assert tuple(lv.name for lv in fmt.levels) == levels
    assert [lv.shift for lv in fmt.levels] == [12 + 9 * (len(levels) - 1 - i) for i in range(len(levels))]
    assert all(
        lv.entries == 512 and lv.table_bytes == lv.alloc_bytes == lv.align == 4096 for lv in fmt.levels
    )
    assert [lv.leaf_ok for lv in fmt.levels] == [lv.name in ("pud", "pmd") for lv in fmt.levels]
    assert (fmt.va_bits, fmt.pa_bits, fmt.va_rule, fmt.byteorder) == (va_bits, pa_bits, "canonical", "little")
    assert fmt.pfn_mask == ((1 << pa_bits) - 1) & ~0xFFF and fmt.pfn_shift == 12
    assert fmt.special_mask == special
    assert fmt.root_name == "CR3"
    assert {b.name: b.mask for b in fmt.pte_bits}["PROTNONE"] == protnone
    assert m.memory.kind == "sparsemem" and m.memory.section_size_bits == 27
    assert m.memory.max_physmem_bits == physmem
    assert m.options == (("levels", len(levels)),)
    assert m.ops.fmt is fmt


@pytest.mark.parametrize("key", list(MODES), ids=MODE_IDS)
def test_pte_bits_cover_every_bit_linux_names(key: tuple[str, str]) -> None:
    fmt = MODES[key].fmt
    names = [b.name for b in fmt.pte_bits]
    assert len(names) == len(set(names)), f"duplicate names in {key}: {names}"
    covered = 0
    for b in fmt.pte_bits:
        covered |= b.mask
        assert b.doc, f"{key}: {b.name} has no doc"
    for bit in (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 63):
        assert covered >> bit & 1, f"{key}: bit {bit} unnamed"
    assert next(b for b in fmt.pte_bits if b.kind == "field" and b.name == "PFN").mask == fmt.pfn_mask
    if key[1] == "6.18":
        by_name = {b.name: b.mask for b in fmt.pte_bits}
        assert by_name["SOFT_DIRTY"] == 1 << 11 and by_name["UFFD_WP"] == 1 << 10
        assert by_name["SAVED_DIRTY"] == 1 << 58 and by_name["PKEY"] == 0xF << 59


PROTECTION_MAPS = {
    "2008": (
        0xA0, 0x8000000000000025, 0x8000000000000025, 0x8000000000000025, 0x25, 0x25, 0x25, 0x25,
        0xA0, 0x8000000000000025, 0x8000000000000027, 0x8000000000000027, 0x25, 0x25, 0x27, 0x27,
    ),
    "6.18": (
        0x120, 0x8000000000000025, 0x8000000000000025, 0x8000000000000025, 0x25, 0x25, 0x25, 0x25,
        0x120, 0x8000000000000025, 0x8000000000000027, 0x8000000000000027, 0x25, 0x25, 0x27, 0x27,
    ),
}  # fmt: skip


@pytest.mark.parametrize("key", list(MODES), ids=MODE_IDS)
def test_protection_map(key: tuple[str, str]) -> None:
    fmt = MODES[key].fmt
    want = PROTECTION_MAPS["6.18" if key[1] == "6.18" else "2008"]
    assert fmt.protection_map == want, [hx(v) for v in fmt.protection_map]
    assert fmt.prot("rw") == 0x8000000000000027 and fmt.prot("rw", shared=False) == 0x8000000000000025
    assert fmt.protections_map["PAGE_KERNEL"] == 0x8000000000000163
    assert fmt.protections_map["_PAGE_TABLE"] == 0x67


def test_spec_defaults_and_unsupported() -> None:
    assert SPEC.name == "x86_64" and SPEC.profiles == ("2.6.26", "2.6.27", "6.18")
    for profile in SPEC.profiles:
        assert SPEC.select(profile, {}).name == "4level"
    assert SPEC.select("6.18", {"mode": "la57"}).name == "la57"
    assert SPEC.select("6.18", {"levels": 5}).name == "la57"
    for profile in ("2.6.26", "2.6.27"):
        for opts in ({"mode": "la57"}, {"levels": 5}):
            with pytest.raises(ProfileError, match=r"4\.14"):
                SPEC.select(profile, opts)


def test_entry_point_registered() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="mixedmap") if ep.name == "x86_64"]
    assert [ep.value for ep in eps] == ["mixedmap_x86.plugin"]


# --------------------------------------------------------------------------------------
# Hypothesis: scalar and array paths agree; helper algebra (debug_vm_pgtable style)
# --------------------------------------------------------------------------------------

u64s = st.integers(min_value=0, max_value=ALL64)
u64_lists = st.lists(u64s, min_size=1, max_size=40)
PARAM_MODES = [pytest.param(m, id=f"{m.name}-{m.profile}") for m in SPEC.modes]


def all_prots(m: ArchMode) -> list[int]:
    return sorted(set(m.fmt.protection_map) | {v for _, v in m.fmt.protections})


def check_agree(m: ArchMode, name: str, scalar_fn: Callable[[Any], Any], values: list[int]) -> None:
    """scalar_fn over Python ints == scalar_fn over a uint64 array (and a 1-element array)."""
    want = [scalar_fn(v) for v in values]
    for w in want:
        assert isinstance(w, (int, bool)) and not isinstance(w, np.generic), f"{name}: scalar gave {type(w)}"
    arr = scalar_fn(np.array(values, dtype=np.uint64))
    assert isinstance(arr, np.ndarray) and arr.shape == (len(values),), f"{name}: array gave {arr!r}"
    assert arr.dtype in (np.uint64, np.bool_), f"{name}: dtype {arr.dtype}"
    assert [int(x) for x in arr] == [int(w) for w in want], (
        f"{m.name}/{m.profile} {name} {[hx(v) for v in values]}"
    )
    one = scalar_fn(np.array(values[:1], dtype=np.uint64))
    assert int(one[0]) == int(want[0]), f"{m.name}/{m.profile} {name} one-element"


UNARY = ["pte_pfn", "pte_mkwrite", "pte_wrprotect", "pte_mkdirty", "pte_mkclean", "pte_mkyoung", "pte_mkold"]
PREDICATES = ["pte_present", "pte_none", "pte_write", "pte_dirty", "pte_young"]


@pytest.mark.parametrize("m", PARAM_MODES)
@given(values=u64_lists)
def test_scalar_array_agree_leaf_helpers(m: ArchMode, values: list[int]) -> None:
    for name in UNARY + PREDICATES:
        check_agree(m, name, getattr(m.ops, name), values)
    for p in all_prots(m):
        check_agree(m, f"pte_modify/{p:#x}", lambda v, p=p: m.ops.pte_modify(v, p), values)
        check_agree(m, f"pfn_pte/{p:#x}", lambda v, p=p: m.ops.pfn_pte(v >> 12, p), values)


@pytest.mark.parametrize("m", PARAM_MODES)
@given(types=st.lists(st.integers(0, 31), min_size=1, max_size=20), data=st.data())
def test_scalar_array_agree_swap(m: ArchMode, types: list[int], data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, (1 << 50) - 1), min_size=len(types), max_size=len(types)))
    want = [m.ops.mk_swap_pte(t, o) for t, o in zip(types, offsets, strict=True)]
    got = m.ops.mk_swap_pte(np.array(types, dtype=np.uint64), np.array(offsets, dtype=np.uint64))
    assert [int(x) for x in got] == want
    mixed = m.ops.mk_swap_pte(types[0], np.array(offsets[:1], dtype=np.uint64))
    assert int(mixed[0]) == want[0]


@pytest.mark.parametrize("m", PARAM_MODES)
@given(values=u64_lists)
def test_scalar_array_agree_upper_levels(m: ArchMode, values: list[int]) -> None:
    for i, lv in enumerate(m.fmt.levels[:-1]):
        check_agree(m, f"entry_kind/{lv.name}", lambda v, i=i: m.ops.entry_kind(i, v), values)
        check_agree(m, f"table_pa/{lv.name}", lambda v, i=i: m.ops.table_pa(i, v), values)
        check_agree(
            m, f"mk_table_entry/{lv.name}", lambda v, i=i: m.ops.mk_table_entry(i, v & m.fmt.pfn_mask), values
        )
        if lv.leaf_ok:
            check_agree(m, f"leaf_pfn/{lv.name}", lambda v, i=i: m.ops.leaf_pfn(i, v), values)
            for p in all_prots(m):
                check_agree(
                    m, f"mk_leaf/{lv.name}/{p:#x}", lambda v, i=i, p=p: m.ops.mk_leaf(i, v >> 12, p), values
                )


def pfns(m: ArchMode) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=m.fmt.max_pfn - 1)


@pytest.mark.parametrize("m", PARAM_MODES)
@given(data=st.data())
def test_pfn_round_trip_and_state_helpers(m: ArchMode, data: st.DataObject) -> None:
    ops, where = m.ops, f"x86_64/{m.name} {m.profile}"
    pfn = data.draw(pfns(m))
    p = data.draw(st.sampled_from(all_prots(m)))
    pte = ops.pfn_pte(pfn, p)
    assert ops.pte_pfn(pte) == pfn, f"{where}: pfn {pfn:#x} prot {hx(p)} -> {hx(pte)}"
    assert ops.pte_present(pte) and not ops.pte_none(pte), f"{where}: {hx(pte)}"
    assert ops.pte_dirty(ops.pte_mkdirty(pte)) and not ops.pte_dirty(ops.pte_mkclean(pte))
    assert ops.pte_young(ops.pte_mkyoung(pte)) and not ops.pte_young(ops.pte_mkold(pte))
    assert ops.pte_write(ops.pte_mkwrite(pte)) and not ops.pte_write(ops.pte_wrprotect(pte))
    for helper in ("pte_mkdirty", "pte_mkclean", "pte_mkyoung", "pte_mkold", "pte_mkwrite", "pte_wrprotect"):
        assert ops.pte_pfn(getattr(ops, helper)(pte)) == pfn, f"{where}: {helper} moved the pfn"
    dirty = ops.pte_mkdirty(pte)
    assert ops.pte_dirty(ops.pte_wrprotect(dirty)) and ops.pte_dirty(
        ops.pte_mkwrite(ops.pte_wrprotect(dirty))
    )
    # mprotect between user protections: the result is what pfn_pte would build directly.
    user = ops.pfn_pte(pfn, data.draw(st.sampled_from(list(m.fmt.protection_map))))
    q = data.draw(st.sampled_from(list(m.fmt.protection_map)))
    assert ops.pte_modify(user, q) == ops.pfn_pte(pfn, q), f"{where}: pte_modify({hx(user)}, {hx(q)})"
    assert ops.pte_pfn(ops.pte_modify(pte, q)) == pfn
    if m.fmt.special_mask is not None:
        special = mkspecial(m, pte)
        assert special ^ pte == m.fmt.special_mask
        assert ops.pte_modify(special, q) & m.fmt.special_mask, "pte_modify dropped _PAGE_SPECIAL"
        out = plugin.mixedmap_pte_special(m.fmt, np.array([pte, special], dtype=np.uint64))
        assert out is not None and out.tolist() == [False, True]


@pytest.mark.parametrize(
    "m", [pytest.param(m, id=f"{m.name}-6.18") for m in SPEC.modes if m.profile == "6.18"]
)
@given(v=u64s)
def test_618_never_creates_shadow_stack_encoding(m: ArchMode, v: int) -> None:
    """(W=0, D=1) is shadow-stack memory: the helpers must not make it from anything else."""
    ops = m.ops
    for name in ("pte_wrprotect", "pte_mkdirty", "pte_mkwrite", "pte_mkclean"):
        out = getattr(ops, name)(v)
        assert (out & 0x42) != 0x40, f"{name}({hx(v)}) = {hx(out)}"
    assert ops.pte_dirty(ops.pte_wrprotect(v)) == ops.pte_dirty(v)


@pytest.mark.parametrize("m", PARAM_MODES)
@given(swp_type=st.integers(0, 31), offset=st.integers(0, (1 << 50) - 1))
def test_swap_entry_round_trip(m: ArchMode, swp_type: int, offset: int) -> None:
    v = m.ops.mk_swap_pte(swp_type, offset)
    if m.profile == "6.18":
        got_type, got_off = v >> 59, ((v ^ ALL64) << 5 & ALL64) >> 14  # __swp_type, __swp_offset
    else:
        got_type, got_off = (v >> 1) & 0x3F, v >> 8
    assert (got_type, got_off) == (swp_type, offset), hx(v)
    if v:
        assert not m.ops.pte_present(v) and not m.ops.pte_none(v), hx(v)


@pytest.mark.parametrize("m", PARAM_MODES)
@given(data=st.data())
def test_upper_level_round_trips(m: ArchMode, data: st.DataObject) -> None:
    ops, fmt = m.ops, m.fmt
    assert m.ops.root_table_pa(ops.root_value(0x1234000)) == 0x1234000
    for i, lv in enumerate(fmt.levels[:-1]):
        assert ops.empty_entry(i) == 0 and ops.entry_kind(i, 0) == ENTRY_NONE
        pa = data.draw(pfns(m)) << 12
        e = ops.mk_table_entry(i, pa)
        assert e == pa | 0x67 and ops.entry_kind(i, e) == ENTRY_TABLE and ops.table_pa(i, e) == pa
        assert ops.entry_kind(i, e ^ 1) == ENTRY_BAD  # P cleared, not empty
        if lv.leaf_ok:
            pfn = (data.draw(pfns(m)) >> (lv.shift - 12)) << (lv.shift - 12)
            p = data.draw(st.sampled_from(list(fmt.protection_map)))  # PAGE_NONE included
            leaf = ops.mk_leaf(i, pfn, p)
            assert leaf & 0x80, f"no PSE in {hx(leaf)}"
            assert ops.entry_kind(i, leaf) == ENTRY_LEAF and ops.leaf_pfn(i, leaf) == pfn, hx(leaf)
        else:
            assert ops.entry_kind(i, e | 0x80) == ENTRY_BAD, f"PS in a {lv.hw_name}E is reserved"


# --------------------------------------------------------------------------------------
# The independent walker: hand-built tables, then tables encoded by the plugin
# --------------------------------------------------------------------------------------


class Memory:
    """Physical memory as a dict of 8-byte words (little-endian), zero elsewhere."""

    def __init__(self) -> None:
        self.words: dict[int, bytes] = {}
        self.next_table = 0x100000

    def write(self, pa: int, value: int) -> None:
        self.words[pa] = value.to_bytes(8, "little")

    def read8(self, pa: int) -> bytes:
        assert pa % 8 == 0
        return self.words.get(pa, bytes(8))

    def new_table(self) -> int:
        pa, self.next_table = self.next_table, self.next_table + 0x1000
        return pa


def test_walker_hand_built_4level() -> None:
    mem = Memory()
    pml4, pdpt, pd, pt = 0x1000, 0x2000, 0x3000, 0x4000
    va = 0x00007F1234567ABC  # indices 254 / 72 / 418 / 359
    mem.write(pml4 + 8 * 254, pdpt | 0x67)
    mem.write(pdpt + 8 * 72, pd | 0x67)
    mem.write(pd + 8 * 418, pt | 0x67)
    mem.write(pt + 8 * 359, 0x8000000012345027)
    assert walker.walk(mem.read8, pml4, va, levels=4) == (0x12345ABC, 4096)
    assert walker.walk(mem.read8, pml4 | 0x18, va, mode="4level") == (0x12345ABC, 4096)  # PWT/PCD ignored
    # 2 MiB page at PD index 419 (PAT bit 12 set), 1 GiB page at PDPT index 73.
    mem.write(pd + 8 * 419, 0x0000000080001000 | 0xE3 | 0x1000)
    assert walker.walk(mem.read8, pml4, 0x00007F1234600123, levels=4) == (0x80000123, 1 << 21)
    mem.write(pdpt + 8 * 73, 0x8000000140000000 | 0xE3)
    assert walker.walk(mem.read8, pml4, 0x00007F1240000000 + 0x2345678, levels=4) == (0x142345678, 1 << 30)
    # not mapped: P clear at the PTE, an empty PDE, a non-canonical address
    mem.write(pt + 8 * 360, 0x12346000 | 0x120)  # PROT_NONE-style: P=0
    assert walker.walk(mem.read8, pml4, va + 0x1000, levels=4) is None
    assert walker.walk(mem.read8, pml4, 0x00007F1234800000, levels=4) is None
    assert walker.walk(mem.read8, pml4, 0x0000800000000000, levels=4) is None
    # PS in a PML4E is reserved; reserved bits 20:13 in a 2 MiB PDE fault
    mem.write(pml4 + 8 * 1, 0x40000000 | 0xE3)
    assert walker.walk(mem.read8, pml4, 1 << 39, levels=4) is None
    mem.write(pd + 8 * 420, 0x80200000 | 0xE3)
    assert walker.walk(mem.read8, pml4, 0x00007F1234800000, levels=4) == (0x80200000, 1 << 21)
    mem.write(pd + 8 * 420, 0x80202000 | 0xE3)
    assert walker.walk(mem.read8, pml4, 0x00007F1234800000, levels=4) is None


def test_walker_hand_built_5level() -> None:
    mem = Memory()
    pml5, pml4, pdpt, pd, pt = 0x10000, 0x11000, 0x12000, 0x13000, 0x14000
    va = 0x0012345678ABCDEF  # indices 18 / 104 / 345 / 453 / 188
    mem.write(pml5 + 8 * 18, pml4 | 0x67)
    mem.write(pml4 + 8 * 104, pdpt | 0x67)
    mem.write(pdpt + 8 * 345, pd | 0x67)
    mem.write(pd + 8 * 453, pt | 0x67)
    mem.write(pt + 8 * 188, 0x000FEDCBA9876025)
    assert walker.walk(mem.read8, pml5, va, levels=5) == (0x000FEDCBA9876DEF, 4096)
    assert walker.walk(mem.read8, pml5, va, mode="la57") == (0x000FEDCBA9876DEF, 4096)
    assert walker.walk(mem.read8, pml5, 0x0100000000000000, levels=5) is None  # non-canonical
    assert walker.walk(mem.read8, pml5, 0xFF11000000000000, levels=5) is None  # canonical, empty
    with pytest.raises(ValueError):
        walker.walk(mem.read8, pml5, va, levels=3)


def _map(m: ArchMode, mem: Memory, root: int, va: int, leaf_level: int, pfn: int, p: int) -> None:
    """Install one mapping with the plugin's encoders (what the core's pgtable would write)."""
    ops, fmt = m.ops, m.fmt
    table = root
    for i, lv in enumerate(fmt.levels):
        slot = table + 8 * ((va >> lv.shift) & (lv.entries - 1))
        if i == leaf_level:
            value = ops.pfn_pte(pfn, p) if i == len(fmt.levels) - 1 else ops.mk_leaf(i, pfn, p)
            mem.write(slot, int(value))
            return
        current = int.from_bytes(mem.read8(slot), "little")
        if ops.entry_kind(i, current) == ENTRY_NONE:
            nxt = mem.new_table()
            mem.write(slot, int(ops.mk_table_entry(i, nxt)))
        table = int(ops.table_pa(i, int.from_bytes(mem.read8(slot), "little")))


def _canonical(va: int, va_bits: int) -> int:
    va &= (1 << va_bits) - 1
    return va | (ALL64 ^ ((1 << va_bits) - 1)) if va >> (va_bits - 1) else va


@pytest.mark.parametrize("m", PARAM_MODES)
@given(data=st.data())
def test_walker_agrees_with_plugin_encoding(m: ArchMode, data: st.DataObject) -> None:
    fmt, ops = m.fmt, m.ops
    mem = Memory()
    root = mem.new_table()
    cr3 = ops.root_value(root)
    leaf_levels = [i for i, lv in enumerate(fmt.levels) if lv.leaf_ok] + [len(fmt.levels) - 1]
    mapped: dict[int, tuple[int, int, int]] = {}
    for _ in range(data.draw(st.integers(1, 6))):
        i = data.draw(st.sampled_from(leaf_levels))
        shift = fmt.levels[i].shift
        va = _canonical(data.draw(st.integers(0, (1 << fmt.va_bits) - 1)) >> shift << shift, fmt.va_bits)
        if any(va >> max(shift, s) == v >> max(shift, s) for v, (_, s, _) in mapped.items()):
            continue  # keep mappings disjoint
        pfn = data.draw(pfns(m)) >> (shift - 12) << (shift - 12)
        p = data.draw(st.sampled_from(list(fmt.protection_map)))
        _map(m, mem, root, va, i, pfn, p)
        mapped[va] = (pfn, shift, p)
    for va, (pfn, shift, p) in mapped.items():
        off = data.draw(st.integers(0, (1 << shift) - 1))
        got = walker.walk(mem.read8, cr3, va + off, levels=len(fmt.levels))
        # PAGE_NONE entries are present for Linux but P=0 for the CPU: the walk faults.
        want = ((pfn << 12) + off, 1 << shift) if p & 1 else None
        assert got == want, f"x86_64/{m.name} {m.profile} va {va + off:#x} prot {hx(p)}: {got} != {want}"
