"""s390x plugin: reference vectors (arch-formats.md 7.5, 7.6), geometry, mode selection,
helper properties, and the independent DAT walker (tests/walkers/s390.py) against tables the
plugin encodes."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

pytest.importorskip("mixedmap_s390")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mixedmap_s390 import plugin

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
from tests.walkers import s390 as walker

ALL64 = (1 << 64) - 1
MiB = 1 << 20


SPEC: ArchSpec = plugin.mixedmap_arch_spec()
MODES: dict[tuple[str, str, bool], ArchMode] = {
    (m.name, m.profile, bool(dict(m.options)["edat1"])): m for m in SPEC.modes
}
MODE_LIST = list(MODES.values())
MODE_IDS = [f"{m.fmt.mode}-{m.profile}" for m in MODE_LIST]
DEPTHS = {"segment": 2, "region3": 3, "region2": 4, "region1": 5}


def mode(name: str, profile: str, edat1: bool = False) -> ArchMode:
    return MODES[(name, profile, edat1)]


def prot(m: ArchMode, name: str) -> int:
    return m.fmt.protections_map[name]


def mkspecial(m: ArchMode, pte: int) -> int:
    out = plugin.mixedmap_pte_mkspecial(m.fmt, np.array([pte], dtype=np.uint64))
    return int(out[0])


def is_special(m: ArchMode, pte: int) -> bool:
    return bool(plugin.mixedmap_pte_special(m.fmt, np.array([pte], dtype=np.uint64))[0])


def level_index(fmt: PageTableFormat, name: str) -> int:
    return [lv.name for lv in fmt.levels].index(name)


def hx(v: int) -> str:
    return f"{v:#018x}"


def be_bytes(fmt: PageTableFormat, value: int) -> bytes:
    """The entry as the plugin's dtype stores it in memory."""
    return np.array([value], dtype=fmt.dtype).tobytes()


# --------------------------------------------------------------------------------------
# 7.5  s390x, Linux 6.18 (machine with IEP, CONFIG_MEM_SOFT_DIRTY=y)
# --------------------------------------------------------------------------------------

M618 = mode("region3", "6.18")
O618 = M618.ops
PAGE_NOEXEC_618 = 0x100


def _v1() -> int:
    return int(O618.pfn_pte(0x12345, prot(M618, "PAGE_RW")))


def _v2() -> int:
    return int(O618.pte_mkdirty(_v1()))


def _v3() -> int:
    return int(O618.pte_wrprotect(_v2()))


def _v4() -> int:
    return int(O618.pte_mkwrite(_v3()))


VECTORS_618: list[tuple[str, Callable[[], int], int, str]] = [
    ("1-pfn_pte-RW", _v1, 0x0000000012345335, "I=0 P=1 IEP=1"),
    ("2-mkdirty", _v2, 0x000000001234513F, "I=0 P=0 IEP=1"),
    ("3-wrprotect", _v3, 0x000000001234531F, "I=0 P=1 IEP=1"),
    ("4-mkwrite_novma", _v4, 0x000000001234513F, "I=0 P=0 IEP=1"),
    ("5-mkold", lambda: int(O618.pte_mkold(_v4())), 0x000000001234553B, "I=1 P=0 IEP=1"),
    ("6-mkclean", lambda: int(O618.pte_mkclean(_v2())), 0x0000000012345337, "I=0 P=1 IEP=1"),
    (
        "7-mkspecial-RO",
        lambda: mkspecial(M618, int(O618.pfn_pte(0xABCDE, prot(M618, "PAGE_RO")))),
        0x00000000ABCDE355,
        "I=0 P=1 IEP=1",
    ),
    (
        "8-pfn_pte-NONE",
        lambda: int(O618.pfn_pte(0x12345, prot(M618, "PAGE_NONE"))),
        0x0000000012345605,
        "I=1 P=1 IEP=0",
    ),
    (
        "9-pfn_pte-KERNEL",
        lambda: int(O618.pfn_pte(0x100, prot(M618, "PAGE_KERNEL"))),
        0x000000000010013D,
        "I=0 P=0 IEP=1",
    ),
    (
        "10-pfn_pte-RW-no-IEP",
        lambda: int(O618.pfn_pte(0x12345, prot(M618, "PAGE_RW") & ~PAGE_NOEXEC_618)),
        0x0000000012345235,
        "I=0 P=1 IEP=0",
    ),
    ("11-mk_swap_pte", lambda: int(O618.mk_swap_pte(3, 0x1234)), 0x000000000123460C, "I=1 P=1"),
]


def _hw_view(v: int) -> str:
    return f"I={v >> 10 & 1} P={v >> 9 & 1} IEP={v >> 8 & 1}"


@pytest.mark.parametrize(("name", "compute", "want", "view"), VECTORS_618, ids=[v[0] for v in VECTORS_618])
def test_vectors_7_5(name: str, compute: Callable[[], int], want: int, view: str) -> None:
    got = compute()
    assert got == want, f"7.5 #{name}: {hx(got)} != {hx(want)}"
    assert _hw_view(got).startswith(view), f"7.5 #{name}: hardware view {_hw_view(got)} != {view}"
    assert be_bytes(M618.fmt, got) == want.to_bytes(8, "big"), f"7.5 #{name}: stored bytes are not big-endian"


def test_vector_7_5_swap_is_a_swap_pte() -> None:
    v = int(O618.mk_swap_pte(3, 0x1234))
    assert v & 0x201 == 0x200 and not O618.pte_present(v) and not O618.pte_none(v)
    assert (v >> 2) & 0x1F == 3 and (v >> 12) == 0x1234


VA_ROWS = [
    (0x000003FFFFFFF000, (0, 0, 2047, 2047, 255), 0x0, 3),
    (0x0000000080000000, (0, 0, 1, 0, 0), 0x0, 3),
    (0x000003E000000000, (0, 0, 1984, 0, 0), 0x0, 3),
    (0x00000000000FF123, (0, 0, 0, 0, 255), 0x123, 3),
    (0x0012345678ABCDEF, (0, 1165, 172, 1930, 188), 0xDEF, 4),
    (0xFFFFFFFFFFFFF000, (2047, 2047, 2047, 2047, 255), 0x0, 5),
]


@pytest.mark.parametrize(("va", "indices", "bx", "need"), VA_ROWS, ids=[hx(r[0]) for r in VA_ROWS])
def test_va_index_table_7_5(va: int, indices: tuple[int, ...], bx: int, need: int) -> None:
    fmt = mode("region1", "6.18").fmt
    got = tuple((va >> lv.shift) & (lv.entries - 1) for lv in fmt.levels)
    assert got == indices, f"{hx(va)}: RFX..PX {got} != {indices}"
    assert va & (fmt.page_size - 1) == bx
    # Levels Linux needs: the shallowest 6.18 mode whose ASCE reaches the address.
    depth = min(DEPTHS[m.name] for m in SPEC.modes if m.profile == "6.18" and va >> m.fmt.va_bits == 0)
    assert depth == need, f"{hx(va)}: needs {depth} levels, reference says {need}"


def _crst(m: ArchMode, hw_name_prefix: str) -> int:
    return next(i for i, lv in enumerate(m.fmt.levels) if lv.hw_name.startswith(hw_name_prefix))


NONLEAF_618 = [
    ("1-user-ASCE-R3", lambda: M618.ops.root_value(0x12340000), 0x00000000123401C7),
    (
        "2-region3-entry",
        lambda: int(O618.mk_table_entry(_crst(M618, "region-third"), 0x7F0000000)),
        0x00000007F0000007,
    ),
    (
        "3-segment-entry",
        lambda: int(O618.mk_table_entry(_crst(M618, "segment"), 0x7F1234000)),
        0x00000007F1234001,
    ),
    ("4-empty-region3", lambda: O618.empty_entry(_crst(M618, "region-third")), 0x0000000000000024),
    ("5-empty-segment", lambda: O618.empty_entry(_crst(M618, "segment")), 0x0000000000000020),
    ("6-empty-pte", lambda: O618.empty_entry(len(M618.fmt.levels) - 1), 0x0000000000000400),
]


@pytest.mark.parametrize(("name", "compute", "want"), NONLEAF_618, ids=[v[0] for v in NONLEAF_618])
def test_asce_and_nonleaf_7_5(name: str, compute: Callable[[], int], want: int) -> None:
    got = compute()
    assert got == want, f"7.5 ASCE/non-leaf #{name}: {hx(got)} != {hx(want)}"
    assert be_bytes(M618.fmt, got) == want.to_bytes(8, "big")


# --------------------------------------------------------------------------------------
# 7.6  s390x, Linux 2.6.27 (and 2.6.26: the same encoding)
# --------------------------------------------------------------------------------------


def vectors_26(m: ArchMode) -> list[tuple[str, int, int]]:
    o = m.ops
    v1 = int(o.pfn_pte(0x12345, prot(m, "PAGE_RW")))
    return [
        ("1-pfn_pte-RW", v1, 0x0000000012345000),
        ("2-mkspecial-RO", mkspecial(m, int(o.pfn_pte(0x12345, prot(m, "PAGE_RO")))), 0x0000000012345204),
        ("3-pfn_pte-NONE", int(o.pfn_pte(0x12345, prot(m, "PAGE_NONE"))), 0x0000000012345401),
        ("4-wrprotect", int(o.pte_wrprotect(v1)), 0x0000000012345200),
        ("5-pfn_pte-EX_RW", int(o.pfn_pte(0x12345, prot(m, "PAGE_EX_RW"))), 0x0000000012345002),
        ("6-swap-even", int(o.mk_swap_pte(3, 0x1234)), 0x000000000091A40F),
        ("7-swap-odd", int(o.mk_swap_pte(3, 0x1235)), 0x000000000091A48F),
        ("8-TYPE_EMPTY", o.empty_entry(len(m.fmt.levels) - 1), 0x0000000000000400),
    ]


V26_IDS = [name for name, _, _ in vectors_26(mode("region3", "2.6.27"))]


@pytest.mark.parametrize("profile", ["2.6.26", "2.6.27"])
@pytest.mark.parametrize("index", range(len(V26_IDS)), ids=V26_IDS)
def test_vectors_7_6(profile: str, index: int) -> None:
    m = mode("region3", profile)
    name, got, want = vectors_26(m)[index]
    assert got == want, f"7.6 #{name} ({profile}): {hx(got)} != {hx(want)}"
    assert be_bytes(m.fmt, got) == want.to_bytes(8, "big")


@pytest.mark.parametrize("profile", ["2.6.26", "2.6.27"])
def test_vector_7_6_mkdirty_mkyoung_are_noops(profile: str) -> None:
    o = mode("region3", profile).ops
    v1 = 0x0000000012345000
    for helper in (o.pte_mkdirty, o.pte_mkyoung, o.pte_mkclean, o.pte_mkold):
        assert int(helper(v1)) == v1
    assert not o.pte_dirty(v1) and not o.pte_young(v1)


def test_swap_offsets_decode_26() -> None:
    o = mode("region3", "2.6.27").ops
    for off in (0x1234, 0x1235, 1, (1 << 53) - 1):
        v = int(o.mk_swap_pte(31, off))
        assert (v >> 11) | ((v >> 7) & 1) == off, hx(v)  # __swp_offset
        assert (v >> 2) & 0x1F == 31  # __swp_type
        assert v & 0x900 == 0, "IBM bits 52 and 55 must stay zero"
        assert not o.pte_present(v) and not o.pte_none(v)


# Non-leaf entries of 2.6.27, derived from include/asm-s390/pgtable.h/pgalloc.h/mmu_context.h:
# same ASCE bits as today, but pmd_populate writes _SEGMENT_ENTRY == 0 with the origin.
NONLEAF_26 = [
    ("user-ASCE-R3", "region3", lambda m: m.ops.root_value(0x12340000), 0x00000000123401C7),
    ("user-ASCE-R2", "region2", lambda m: m.ops.root_value(0x12340000), 0x00000000123401CB),
    ("user-ASCE-segment", "segment", lambda m: m.ops.root_value(0x12340000), 0x00000000123401C3),
    ("region2-entry", "region2", lambda m: int(m.ops.mk_table_entry(0, 0x7F0000000)), 0x00000007F000000B),
    ("region3-entry", "region3", lambda m: int(m.ops.mk_table_entry(0, 0x7F0000000)), 0x00000007F0000007),
    ("segment-entry", "region3", lambda m: int(m.ops.mk_table_entry(1, 0x7F1234800)), 0x00000007F1234800),
    ("empty-region2", "region2", lambda m: m.ops.empty_entry(0), 0x28),
    ("empty-region3", "region3", lambda m: m.ops.empty_entry(0), 0x24),
    ("empty-segment", "region3", lambda m: m.ops.empty_entry(1), 0x20),
]


@pytest.mark.parametrize(("name", "mname", "compute", "want"), NONLEAF_26, ids=[v[0] for v in NONLEAF_26])
def test_asce_and_nonleaf_2627(name: str, mname: str, compute: Callable[[ArchMode], int], want: int) -> None:
    m = mode(mname, "2.6.27")
    got = compute(m)
    assert got == want, f"2.6.27 {name}: {hx(got)} != {hx(want)}"
    assert m.ops.root_table_pa(m.ops.root_value(0x12340000)) == 0x12340000


# --------------------------------------------------------------------------------------
# Geometry, modes and selection
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
def test_geometry(m: ArchMode) -> None:
    fmt = m.fmt
    depth = DEPTHS[m.name]
    assert len(fmt.levels) == depth and dict(m.options) == {
        "levels": depth,
        "edat1": dict(m.options)["edat1"],
    }
    assert fmt.byteorder == "big" and fmt.dtype == np.dtype(">u8")
    assert fmt.va_rule == "zero" and fmt.va_bits == {2: 31, 3: 42, 4: 53, 5: 64}[depth]
    assert fmt.pa_bits == 64 and fmt.pfn_mask == 0xFFFFFFFFFFFFF000 and fmt.pfn_shift == 12
    assert fmt.root_name == "ASCE"
    *crst, pte = fmt.levels
    assert (pte.name, pte.shift, pte.index_bits, pte.table_bytes) == ("pte", 12, 8, 2048)
    assert (pte.alloc_bytes, pte.align) == ((2048, 2048) if m.profile != "6.18" else (4096, 4096))
    for lv in crst:
        assert (lv.index_bits, lv.table_bytes, lv.alloc_bytes, lv.align) == (11, 16384, 16384, 16384)
        assert lv.leaf_ok == (lv.shift == 20 and bool(dict(m.options)["edat1"]))
    names = (
        {53: "pgd", 42: "p4d", 31: "pud", 20: "pmd"}
        if m.profile == "6.18"
        else {42: "pgd", 31: "pud", 20: "pmd"}
    )
    assert [lv.name for lv in crst] == [names[lv.shift] for lv in crst]
    assert fmt.special_mask == (0x040 if m.profile == "6.18" else 0x004)
    assert fmt.tracks_young_dirty == (m.profile == "6.18")
    mem = m.memory
    assert (mem.kind, mem.section_size_bits, mem.max_physmem_bits) == (
        ("sparsemem", 27, 46) if m.profile == "6.18" else ("sparsemem", 28, 42)
    )


def test_profiles_and_defaults() -> None:
    by_profile: dict[str, set[tuple[str, bool]]] = {}
    for m in SPEC.modes:
        by_profile.setdefault(m.profile, set()).add((m.name, bool(dict(m.options)["edat1"])))
        if m.default:
            assert (m.name, dict(m.options)["edat1"]) == ("region3", False), m
    names_26 = {"segment", "region3", "region2"}
    for p in ("2.6.26", "2.6.27"):
        assert by_profile[p] == {(n, e) for n in names_26 for e in (False, True)}
    assert by_profile["6.18"] == {(n, e) for n in ("region3", "region2", "region1") for e in (False, True)}


@pytest.mark.parametrize(
    ("profile", "options", "want"),
    [
        ("2.6.27", {}, ("region3", False)),
        ("2.6.27", {"mode": "region2"}, ("region2", False)),
        ("2.6.27", {"levels": 2}, ("segment", False)),
        ("2.6.27", {"edat1": True}, ("region3", True)),
        ("2.6.26", {"levels": 4, "edat1": True}, ("region2", True)),
        ("6.18", {"mode": "region1", "edat1": True}, ("region1", True)),
        ("6.18", {"levels": 5}, ("region1", False)),
        ("6.18", {"mode": "region3", "levels": 3, "edat1": False}, ("region3", False)),
    ],
)
def test_select(profile: str, options: dict[str, object], want: tuple[str, bool]) -> None:
    m = SPEC.select(profile, options)
    assert (m.name, dict(m.options)["edat1"]) == want


@pytest.mark.parametrize(
    ("profile", "options", "text"),
    [
        ("2.6.26", {"levels": 5}, "1aea9b3f9210"),
        ("2.6.27", {"mode": "region1"}, "4.12"),
        ("2.6.27", {"mode": "region1", "edat1": True}, "region-second"),
        ("6.18", {"levels": 2}, "segment-table root"),
        ("6.18", {"mode": "segment"}, "crst_table_downgrade"),
        ("6.18", {"levels": 3, "mode": "region2"}, "no mode matches"),
    ],
)
def test_unsupported(profile: str, options: dict[str, object], text: str) -> None:
    with pytest.raises(ProfileError, match=text):
        SPEC.select(profile, options)


def test_bit_fields_are_complete_and_disjoint() -> None:
    for m in MODE_LIST:
        seen = 0
        for f in m.fmt.pte_bits:
            assert seen & f.mask == 0, f"{m.fmt.mode}/{m.profile}: {f.name} overlaps"
            seen |= f.mask
            assert f.doc
        named = 0xFFFFFFFFFFFFF000 | (0xFFF if m.profile == "6.18" else 0xF07)
        assert seen == named, f"{m.fmt.mode}/{m.profile}: pte_bits cover {hx(seen)}"
        for lv in m.fmt.levels[:-1]:
            acc = 0
            for f in lv.bits:
                assert acc & f.mask == 0, f"{lv.name}: {f.name} overlaps"
                acc |= f.mask


# --------------------------------------------------------------------------------------
# Upper levels: entry kinds, origins, leaves
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
def test_table_entries_roundtrip(m: ArchMode) -> None:
    o = m.ops
    for i, lv in enumerate(m.fmt.levels[:-1]):
        below = m.fmt.levels[i + 1]
        pa = 0x7F1234000 if below.shift == 12 else 0x7F0000000
        e = o.mk_table_entry(i, pa)
        assert o.entry_kind(i, e) == ENTRY_TABLE, f"{lv.name}: {hx(e)}"
        assert o.table_pa(i, e) == pa
        assert o.entry_kind(i, o.empty_entry(i)) == ENTRY_NONE
        if lv.shift != 20:  # a region entry of the wrong type
            wrong = pa | ((e & 0xC) ^ 0x4) | 0x3
            assert o.entry_kind(i, wrong) == ENTRY_BAD, f"{lv.name}: {hx(wrong)}"
    seg = len(m.fmt.levels) - 2
    leaf = 0x300000 | (0xD701 if m.profile == "6.18" else 0x500)  # a 1 MiB leaf of the era
    if m.fmt.levels[seg].leaf_ok:
        mine = int(o.mk_leaf(seg, 0x300, m.fmt.prot("rw")))
        assert o.entry_kind(seg, mine) == ENTRY_LEAF, hx(mine)
        assert o.leaf_pfn(seg, mine) == 0x300
    else:
        assert o.entry_kind(seg, leaf) == ENTRY_BAD, hx(leaf)
        with pytest.raises(ValueError, match="edat1"):
            o.mk_leaf(seg, 0x300, m.fmt.prot("rw"))


def test_large_leaves_618() -> None:
    m = mode("region3", "6.18", edat1=True)
    o = m.ops
    rw = int(o.mk_leaf(1, 0x12300, prot(m, "PAGE_RW")))
    # SEGMENT_RW 0xC101 | LARGE | YOUNG | PROTECT (pmd_mkhuge): young, clean, valid.
    assert rw == 0x12300000 | 0xD701, hx(rw)
    none = int(o.mk_leaf(1, 0x12300, prot(m, "PAGE_NONE")))
    assert none == 0x12300000 | 0x1621 and o.entry_kind(1, none) == ENTRY_LEAF
    old = rw | 0x20  # pmd_mkold sets I: still Linux's leaf
    assert o.entry_kind(1, old) == ENTRY_LEAF
    assert o.entry_kind(1, 0x12300000 | 0x30) == ENTRY_BAD  # a swap rste (I | COMM)


def test_large_leaves_2627() -> None:
    m = mode("region3", "2.6.27", edat1=True)
    o = m.ops
    cases = {"PAGE_RW": 0x500, "PAGE_RO": 0x700, "PAGE_EX_RO": 0x700, "PAGE_EX_RW": 0x500, "PAGE_NONE": 0x720}
    for name, low in cases.items():
        v = int(o.mk_leaf(1, 0x12300, prot(m, name)))
        assert v == 0x12300000 | low, f"pte_mkhuge({name}) = {hx(v)}"
        assert o.entry_kind(1, v) == ENTRY_LEAF and o.leaf_pfn(1, v) == 0x12300
    assert o.entry_kind(1, 0x12300000 | 0x420) == ENTRY_NONE  # huge_pte_none: I without RO
    assert o.entry_kind(1, 0x20) == ENTRY_NONE
    assert o.entry_kind(1, 0x7F1234000 | 0x001) == ENTRY_BAD  # 2.6.27 pmd_bad: low bits != 0


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
def test_root_value(m: ArchMode) -> None:
    depth = DEPTHS[m.name]
    asce = m.ops.root_value(0x12340000)
    assert asce == 0x12340000 | 0x1C0 | 0x3 | {2: 0x0, 3: 0x4, 4: 0x8, 5: 0xC}[depth]
    assert m.ops.root_table_pa(asce) == 0x12340000
    with pytest.raises(ValueError):
        m.ops.root_value(0x12340800)


# --------------------------------------------------------------------------------------
# Properties (hypothesis): scalar and batch paths agree; kernel invariants hold
# --------------------------------------------------------------------------------------

u64 = st.integers(0, ALL64)
PTE_HELPERS = ("pte_mkwrite", "pte_wrprotect", "pte_mkdirty", "pte_mkclean", "pte_mkyoung", "pte_mkold")
PTE_PREDICATES = ("pte_present", "pte_none", "pte_write", "pte_dirty", "pte_young")


def _agree(scalar: Callable[[int], object], batch: Callable[[np.ndarray], object], values: list[int]) -> None:
    arr = np.array(values, dtype=np.uint64)
    got = np.asarray(batch(arr))
    assert got.shape == arr.shape
    want = [scalar(v) for v in values]
    assert got.tolist() == [int(w) if not isinstance(w, (bool, np.bool_)) else bool(w) for w in want]
    one = np.asarray(batch(arr[:1]))
    assert one.tolist() == got[:1].tolist()


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
@given(
    values=st.lists(u64, min_size=1, max_size=16),
    pfns=st.lists(st.integers(0, (1 << 52) - 1), min_size=1, max_size=8),
)
def test_scalar_and_array_agree(m: ArchMode, values: list[int], pfns: list[int]) -> None:
    o = m.ops
    for name in (*PTE_HELPERS, *PTE_PREDICATES, "pte_pfn"):
        f = getattr(o, name)
        _agree(f, f, values)
    for _, p in m.fmt.protections:
        _agree(lambda v, p=p: o.pte_modify(v, p), lambda a, p=p: o.pte_modify(a, p), values)
        _agree(lambda v, p=p: o.pfn_pte(v, p), lambda a, p=p: o.pfn_pte(a, p), pfns)
    _agree(lambda v: o.mk_swap_pte(v & 31, v >> 5), lambda a: o.mk_swap_pte(a & 31, a >> 5), values)
    for i, lv in enumerate(m.fmt.levels[:-1]):
        _agree(lambda v, i=i: o.entry_kind(i, v), lambda a, i=i: o.entry_kind(i, a), values)
        _agree(lambda v, i=i: o.table_pa(i, v), lambda a, i=i: o.table_pa(i, a), values)
        _agree(
            lambda v, i=i: o.mk_table_entry(i, v & ~0xFFF & ALL64),
            lambda a, i=i: o.mk_table_entry(i, a & np.uint64(0xFFFFFFFFFFFFF000)),
            values,
        )
        if lv.leaf_ok:
            _agree(lambda v, i=i: o.leaf_pfn(i, v), lambda a, i=i: o.leaf_pfn(i, a), values)
            rw = m.fmt.prot("rw")
            _agree(lambda v, i=i, rw=rw: o.mk_leaf(i, v, rw), lambda a, i=i, rw=rw: o.mk_leaf(i, a, rw), pfns)


@pytest.mark.parametrize("m", [mm for mm in MODE_LIST if mm.profile == "6.18"], ids=lambda mm: mm.fmt.mode)
@given(
    pfn=st.integers(0, (1 << 52) - 1),
    start=st.sampled_from([p for _, p in M618.fmt.protections]),
    steps=st.lists(st.sampled_from([*PTE_HELPERS, "modify"]), max_size=12),
    newprot=st.sampled_from([p for _, p in M618.fmt.protections]),
)
def test_618_hardware_bits_follow_logical_state(
    m: ArchMode, pfn: int, start: int, steps: list[str], newprot: int
) -> None:
    """I = !(YOUNG && READ) and P = !(DIRTY && WRITE) after any helper chain (pgtable.h)."""
    o = m.ops
    p = int(o.pfn_pte(pfn, start))
    assert o.pte_young(p) and o.pte_present(p)
    for s in steps:
        p = int(o.pte_modify(p, newprot)) if s == "modify" else int(getattr(o, s)(p))
        young_read = p & 0x14 == 0x14
        dirty_write = p & 0x28 == 0x28
        assert bool(p & 0x400) == (not young_read), f"{s}: I wrong in {hx(p)}"
        assert bool(p & 0x200) == (not dirty_write), f"{s}: P wrong in {hx(p)}"
        assert int(o.pte_pfn(p)) == pfn and p & 0x800 == 0
    assert o.pte_write(o.pte_mkwrite(p)) and not o.pte_write(o.pte_wrprotect(p))
    assert o.pte_dirty(o.pte_mkdirty(p)) and not o.pte_dirty(o.pte_mkclean(p))
    assert o.pte_young(o.pte_mkyoung(p)) and not o.pte_young(o.pte_mkold(p))
    assert int(o.pte_mkdirty(p)) & 0x2, "soft-dirty follows pte_mkdirty"


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
@given(pfn=st.integers(0, (1 << 52) - 1), idx=st.integers(0, 15), idx2=st.integers(0, 15))
def test_pte_properties(m: ArchMode, pfn: int, idx: int, idx2: int) -> None:
    o, fmt = m.ops, m.fmt
    p = int(o.pfn_pte(pfn, fmt.protection_map[idx]))
    assert int(o.pte_pfn(p)) == pfn and o.pte_present(p) and not o.pte_none(p)
    assert o.pte_write(o.pte_mkwrite(p))
    s = mkspecial(m, p)
    assert s ^ p == fmt.special_mask and is_special(m, s) and not is_special(m, p)
    moved = int(o.pte_modify(s, fmt.protection_map[idx2]))
    assert is_special(m, moved) and int(o.pte_pfn(moved)) == pfn
    if m.profile != "6.18":
        # 2.6.27 keeps only frame and special; wrprotect leaves PROT_NONE (I set) alone.
        assert moved == (s & 0xFFFFFFFFFFFFF004) | fmt.protection_map[idx2]
        want_ro = p | 0x200 if not p & 0x400 else p
        assert int(o.pte_wrprotect(p)) == want_ro


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
@given(swp_type=st.integers(0, 31), offset=st.integers(0, (1 << 52) - 1))
def test_swap_entries(m: ArchMode, swp_type: int, offset: int) -> None:
    o = m.ops
    v = int(o.mk_swap_pte(swp_type, offset))
    assert not o.pte_present(v) and not o.pte_none(v)
    assert (v >> 2) & 0x1F == swp_type
    if m.profile == "6.18":
        assert v & 0x201 == 0x200 and (v >> 12) == offset
    else:
        assert (v >> 11) | ((v >> 7) & 1) == offset and v & 0x403 == 0x403


def test_special_hooks_batch_shape() -> None:
    for m in (M618, mode("region3", "2.6.27")):
        arr = np.array([0, m.fmt.special_mask, ALL64], dtype=np.uint64)
        got = plugin.mixedmap_pte_special(m.fmt, arr)
        assert got.dtype == np.bool_ and got.tolist() == [False, True, True]
        out = plugin.mixedmap_pte_mkspecial(m.fmt, arr)
        assert out.dtype == np.uint64 and (out ^ arr).tolist() == [m.fmt.special_mask, 0, 0]


# --------------------------------------------------------------------------------------
# The independent walker: hand-built tables, then tables the plugin encodes
# --------------------------------------------------------------------------------------


class Mem:
    """Dict-backed physical memory of big-endian doublewords.

    A table filled with its empty value is recorded as a range, not 2048 writes; anything
    else unwritten reads as zero."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}
        self.filled: list[tuple[int, int, int]] = []

    def put(self, pa: int, value: int) -> None:
        assert pa % 8 == 0
        self.words[pa] = value

    def get(self, pa: int) -> int:
        if pa in self.words:
            return self.words[pa]
        for start, end, value in self.filled:
            if start <= pa < end:
                return value
        return 0

    def read8(self, pa: int) -> bytes:
        return self.get(pa).to_bytes(8, "big")

    def fill(self, pa: int, count: int, value: int) -> None:
        self.filled.append((pa, pa + 8 * count, value))


R3_ASCE = 0x10000 | 0x1C0 | 0x3 | 0x4


def hand_built() -> Mem:
    """R3 table at 0x10000 -> segment table at 0x20000 -> page table at 0x30800."""
    mem = Mem()
    mem.fill(0x10000, 2048, 0x24)
    mem.fill(0x20000, 2048, 0x20)
    mem.fill(0x30800, 256, 0x400)
    mem.put(0x10000 + 1 * 8, 0x20000 | 0x07)  # RTX 1
    mem.put(0x20000 + 2 * 8, 0x30800 | 0x01)  # SX 2
    mem.put(0x30800 + 3 * 8, 0xABCDE000 | 0x035)  # PX 3
    mem.put(0x30800 + 4 * 8, 0xABCDF000 | 0x400)  # PX 4: invalid
    mem.put(0x30800 + 5 * 8, 0xABCE0000 | 0x800)  # PX 5: bit 52 set
    mem.put(0x20000 + 5 * 8, 0x7F300000 | 0x400 | 0x200)  # SX 5: 1 MiB frame (FC)
    mem.put(0x20000 + 6 * 8, 0x30800 | 0x10)  # SX 6: common segment
    mem.put(0x20000 + 7 * 8, 0x30800 | 0x04)  # SX 7: wrong table type
    return mem


def va3(rtx: int, sx: int, px: int, bx: int = 0) -> int:
    return rtx << 31 | sx << 20 | px << 12 | bx


def test_walker_hand_built_tables() -> None:
    mem = hand_built()
    w = walker.walk
    assert w(mem.read8, R3_ASCE, va3(1, 2, 3, 0x5A)) == (0xABCDE05A, 4096)
    assert w(mem.read8, R3_ASCE, va3(1, 2, 4)) is None, "PTE invalid"
    assert w(mem.read8, R3_ASCE, va3(1, 2, 5)) is None, "PTE bit 52"
    assert w(mem.read8, R3_ASCE, va3(1, 2, 6)) is None, "empty PTE"
    assert w(mem.read8, R3_ASCE, va3(0, 2, 3)) is None, "region-third entry invalid"
    assert w(mem.read8, R3_ASCE, va3(1, 3, 3)) is None, "segment entry invalid"
    assert w(mem.read8, R3_ASCE, va3(1, 2, 3) | 1 << 42) is None, "beyond the ASCE's reach"
    assert w(mem.read8, R3_ASCE, va3(1, 5, 0x12, 0x345), edat1=True) == (0x7F312345, MiB)
    # Without EDAT-1 the FC bit is not looked at: the entry is a page-table origin.
    assert w(mem.read8, R3_ASCE, va3(1, 5, 0x12, 0x345), edat1=False) == (0x345, 4096)
    assert w(mem.read8, R3_ASCE, va3(1, 6, 3)) is None, "CS with a private-space ASCE"
    assert w(mem.read8, R3_ASCE & ~0x100, va3(1, 6, 3, 1)) == (0xABCDE001, 4096), "CS without P"
    assert w(mem.read8, R3_ASCE, va3(1, 7, 3)) is None, "segment entry with TT 01"
    assert w(mem.read8, 0x20 | R3_ASCE, 0x123456789) == (0x123456789, 4096), "real-space ASCE"
    assert w(mem.read8, R3_ASCE, va3(1, 2, 3), levels=3) is not None
    with pytest.raises(ValueError):
        w(mem.read8, R3_ASCE, va3(1, 2, 3), levels=4)


def test_walker_table_lengths() -> None:
    mem = hand_built()
    w = walker.walk
    short = (R3_ASCE & ~0x3) | 0x0  # TL 0: only RTX 0..511
    assert w(mem.read8, short, va3(1, 2, 3)) == (0xABCDE000, 4096)
    mem.put(0x10000 + 600 * 8, 0x20000 | 0x07)
    assert w(mem.read8, R3_ASCE, va3(600, 2, 3)) is not None
    assert w(mem.read8, short, va3(600, 2, 3)) is None, "RTX beyond the ASCE's table length"
    mem.put(0x10000 + 2 * 8, 0x20000 | 0x04)  # region-third entry with TL 0
    mem.put(0x20000 + 1500 * 8, 0x30800 | 0x01)
    assert w(mem.read8, R3_ASCE, va3(2, 2, 3)) is not None
    assert w(mem.read8, R3_ASCE, va3(2, 1500, 3)) is None, "SX beyond the entry's table length"
    mem.put(0x10000 + 3 * 8, 0x20000 | 0x47)  # TF 1: SX 0..511 not in the table
    assert w(mem.read8, R3_ASCE, va3(3, 2, 3)) is None, "SX below the table offset"
    assert w(mem.read8, R3_ASCE, va3(3, 1500, 3)) is not None
    mem.put(0x10000 + 4 * 8, 0x20000 | 0x0B)  # a region-second entry in a region-third table
    assert w(mem.read8, R3_ASCE, va3(4, 2, 3)) is None


def test_walker_five_levels_and_edat2() -> None:
    mem = Mem()
    r1, r2, r3 = 0x100000, 0x104000, 0x108000
    asce = r1 | 0x1C0 | 0x3 | 0xC
    mem.put(r1 + 2047 * 8, r2 | 0x0F)
    mem.put(r2 + 2047 * 8, r3 | 0x0B)
    mem.put(r3 + 2047 * 8, 0x80000000 | 0x400 | 0x07)  # R3 with FC: a 2 GiB frame under EDAT-2
    va = 0xFFFFFFFFFFFFF123
    assert walker.walk(mem.read8, asce, va, edat1=True, edat2=True) == (
        0x80000000 | (va & 0x7FFFFFFF),
        1 << 31,
    )
    # Without EDAT-2 the R3 entry points to a segment table (zeros: origin 0 everywhere).
    assert walker.walk(mem.read8, asce, va, edat1=True) == (0x123, 4096)
    assert walker.walk(mem.read8, asce, va, levels=5, edat2=True) is not None


class Builder:
    """Builds tables with the plugin's helpers in a dict memory (no mixedmap core)."""

    def __init__(self, m: ArchMode) -> None:
        self.m, self.o, self.fmt = m, m.ops, m.fmt
        self.mem = Mem()
        self.next_pa = 0x100000
        self.root_pa = self.alloc(0)
        self.root = self.o.root_value(self.root_pa)

    def alloc(self, i: int) -> int:
        lv = self.fmt.levels[i]
        pa = -(-self.next_pa // lv.align) * lv.align
        self.next_pa = pa + lv.alloc_bytes
        self.mem.fill(pa, lv.entries, self.o.empty_entry(i))
        return pa

    def _slot(self, va: int, target: int) -> int:
        table = self.root_pa
        for i in range(target):
            lv = self.fmt.levels[i]
            epa = table + ((va >> lv.shift) & (lv.entries - 1)) * 8
            e = self.mem.get(epa)
            kind = self.o.entry_kind(i, e)
            if kind == ENTRY_NONE:
                e = int(self.o.mk_table_entry(i, self.alloc(i + 1)))
                self.mem.put(epa, e)
            assert self.o.entry_kind(i, e) == ENTRY_TABLE, f"{lv.name} {hx(e)} on the path of {hx(va)}"
            table = int(self.o.table_pa(i, e))
        lv = self.fmt.levels[target]
        return table + ((va >> lv.shift) & (lv.entries - 1)) * 8

    def map(self, va: int, value: int, target: int | None = None) -> None:
        t = len(self.fmt.levels) - 1 if target is None else target
        slot = self._slot(va, t)
        assert self.mem.get(slot) == self.o.empty_entry(t)
        self.mem.put(slot, value)

    def software_walk(self, va: int) -> int | None:
        """What Linux's helpers say (entry_kind / pte_present), for comparison."""
        table = self.root_pa
        last = len(self.fmt.levels) - 1
        for i, lv in enumerate(self.fmt.levels):
            e = self.mem.get(table + ((va >> lv.shift) & (lv.entries - 1)) * 8)
            if i == last:
                return int(self.o.pte_pfn(e)) << 12 | (va & 0xFFF) if self.o.pte_present(e) else None
            kind = self.o.entry_kind(i, e)
            if kind == ENTRY_LEAF:
                return int(self.o.leaf_pfn(i, e)) << 12 | (va & (lv.page_size - 1))
            if kind != ENTRY_TABLE:
                return None
            table = int(self.o.table_pa(i, e))
        return None


def _vas(m: ArchMode, rng: random.Random, n: int) -> list[int]:
    """Page addresses in a few clusters (shared upper tables) plus some loners."""
    top = m.fmt.va_bits
    bases = [rng.getrandbits(top) & ~(MiB * 4 - 1) for _ in range(3)]
    out = {(rng.choice(bases) + rng.getrandbits(22)) & ((1 << top) - 1) & ~0xFFF for _ in range(n)}
    out |= {rng.getrandbits(top) & ~0xFFF for _ in range(n // 10)}
    return sorted(out)


@pytest.mark.parametrize("m", MODE_LIST, ids=MODE_IDS)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_walker_agrees_with_plugin_tables(m: ArchMode, seed: int) -> None:
    rng = random.Random(seed)
    b = Builder(m)
    edat1 = bool(dict(m.options)["edat1"])
    valid = [p for name, p in m.fmt.protections if name != "PAGE_NONE"]
    expect: dict[int, int | None] = {}
    for k, va in enumerate(_vas(m, rng, 60)):
        pfn = rng.getrandbits(52)
        p = valid[k % len(valid)]
        if k % 11 == 5:  # a PROT_NONE page: Linux-present, invalid for the CPU
            p = m.fmt.protections_map["PAGE_NONE"]
        b.map(va, int(m.ops.pfn_pte(pfn, p)))
        expect[va] = None if k % 11 == 5 else (pfn << 12)
    seg = len(m.fmt.levels) - 2
    if edat1:
        for k in range(4):
            va = (rng.getrandbits(m.fmt.va_bits - 20) << 20) | 1  # bit 0 tags a leaf
            if any((x & ~0xFFFFF) == (va & ~0xFFFFF) for x in expect):
                continue
            pfn = rng.getrandbits(44) << 8
            name = ("PAGE_NONE", "PAGE_RO", "PAGE_RW", "PAGE_EX_RW" if m.profile != "6.18" else "PAGE_RWX")[k]
            b.map(va & ~1, int(m.ops.mk_leaf(seg, pfn, m.fmt.protections_map[name])), target=seg)
            expect[va] = None if name == "PAGE_NONE" else (pfn << 12)
    for tagged, pa in expect.items():
        va = tagged & ~1
        for off in (0, 0x18, 0xFF8) if not tagged & 1 else (0, 0x12345, 0xFFFF8):
            got = walker.walk(b.mem.read8, b.root, va + off, edat1=edat1, levels=len(m.fmt.levels))
            want = None if pa is None else (pa + off, MiB if tagged & 1 else 4096)
            assert got == want, f"{m.fmt.mode}/{m.profile}: va {hx(va + off)}: walker {got}, expected {want}"
            soft = b.software_walk(va + off)
            if pa is not None:
                assert soft == pa + off, f"{m.fmt.mode}/{m.profile}: Linux view of {hx(va + off)}: {soft}"
            else:
                assert soft is not None, "PROT_NONE is present to Linux"
    beyond = 1 << m.fmt.va_bits if m.fmt.va_bits < 64 else None
    if beyond is not None:
        assert walker.walk(b.mem.read8, b.root, beyond, edat1=edat1) is None
