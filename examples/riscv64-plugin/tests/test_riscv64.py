"""mixedmap-riscv64: test vectors, geometry, helper properties and an independent walker.

Every expected value below was computed by hand from the RISC-V privileged specification
and Linux 6.18's ``arch/riscv/include/asm/pgtable-bits.h``, ``pgtable-64.h``, ``pgtable.h``
and ``arch/riscv/mm/init.c`` (see the plugin's README), not by running the plugin. The
walker at the bottom is written from the privileged spec's translation algorithm and shares
no code with the plugin; it reads the bytes the core wrote into simulated RAM.

Run: ``python -m pytest examples/riscv64-plugin/tests`` (from the mixedmap checkout) or
``python -m pytest`` inside ``examples/riscv64-plugin``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mixedmap_riscv64")

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mixedmap import (
    ENTRY_BAD,
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    ArchMode,
    ArchSpec,
    Machine,
    PageTableFormat,
    ProfileError,
    Support,
)

from mixedmap_riscv64 import plugin

ALL64 = (1 << 64) - 1
PROPS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SPEC: ArchSpec = plugin.mixedmap_arch_spec()
MODES: dict[str, ArchMode] = {m.name: m for m in SPEC.modes}
MODE_NAMES = ["sv39", "sv48"]


def prot(m: ArchMode, name: str) -> int:
    return m.fmt.protections_map[name]


def mkspecial(m: ArchMode, pte: int) -> int:
    """pte_mkspecial through the plugin's batch hook, on a one-element array."""
    out = plugin.mixedmap_pte_mkspecial(m.fmt, np.array([pte], dtype=np.uint64))
    assert out is not None
    return int(out[0])


def level_index(fmt: PageTableFormat, page_size: int) -> int:
    return next(i for i, lv in enumerate(fmt.levels) if lv.page_size == page_size)


def hx(v: int) -> str:
    return f"{v:#018x}"


# ------------------------------------------------------------------------------------------
# Vectors. Bits: V=0x1 R=0x2 W=0x4 X=0x8 U=0x10 G=0x20 A=0x40 D=0x80 SPECIAL=0x100,
# PFN << 10, PBMT IO = 1 << 62, N = 1 << 63. PAGE_SHARED = _PAGE_BASE(V|A|U) | R | W = 0x57,
# PAGE_READ_EXEC = 0x5b, PAGE_READ = 0x53, PAGE_NONE = G | R = 0x22,
# PAGE_KERNEL = R|W|V|A|D|G = 0xe7, PAGE_KERNEL_IO = 0xe7 | 2 << 61.
# ------------------------------------------------------------------------------------------

Vector = Callable[[ArchMode], int]


def _v1(m: ArchMode) -> int:
    return int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_SHARED")))


def _v4(m: ArchMode) -> int:
    return int(m.ops.pte_mkdirty(_v1(m)))


def _v5(m: ArchMode) -> int:
    return int(m.ops.pte_wrprotect(_v4(m)))


VECTORS: list[tuple[str, Vector, int]] = [
    ("pfn_pte-PAGE_SHARED", _v1, 0x00000000048D1457),
    (
        "mkspecial-PAGE_READ_EXEC",
        lambda m: mkspecial(m, int(m.ops.pfn_pte(0xFEDCB, prot(m, "PAGE_READ_EXEC")))),
        0x000000003FB72D5B,
    ),
    ("pfn_pte-PAGE_KERNEL", lambda m: int(m.ops.pfn_pte(0x80200, prot(m, "PAGE_KERNEL"))), 0x200800E7),
    ("mkdirty", _v4, 0x48D14D7),
    ("wrprotect-keeps-D", _v5, 0x48D14D3),
    ("mkwrite", lambda m: int(m.ops.pte_mkwrite(_v5(m))), 0x48D14D7),
    ("mkclean", lambda m: int(m.ops.pte_mkclean(_v4(m))), 0x48D1457),
    ("mkold", lambda m: int(m.ops.pte_mkold(_v1(m))), 0x48D1417),
    ("mkyoung", lambda m: int(m.ops.pte_mkyoung(m.ops.pte_mkold(_v1(m)))), 0x48D1457),
    ("pfn_pte-PAGE_NONE", lambda m: int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_NONE"))), 0x48D1422),
    ("swap-type3-off1234", lambda m: int(m.ops.mk_swap_pte(3, 0x1234)), 0x1234180),
    ("swap-type-masked-to-5-bits", lambda m: int(m.ops.mk_swap_pte(0x23, 1)), 0x1180),
    (
        "pte_modify-keeps-special-A-D",
        lambda m: int(m.ops.pte_modify(mkspecial(m, _v4(m)), prot(m, "PAGE_READ"))),
        0x48D15D3,
    ),
    (
        "pfn_pte-PAGE_KERNEL_IO",
        lambda m: int(m.ops.pfn_pte(0x12345, prot(m, "PAGE_KERNEL_IO"))),
        0x40000000048D14E7,
    ),
    (
        "pte_modify-takes-PBMT-from-prot",
        lambda m: int(
            m.ops.pte_modify(m.ops.pfn_pte(0x12345, prot(m, "PAGE_KERNEL_IO")), prot(m, "PAGE_KERNEL"))
        ),
        0x48D14E7,
    ),
    (
        "pmd-leaf-2M-PAGE_KERNEL",
        lambda m: int(m.ops.mk_leaf(level_index(m.fmt, 1 << 21), 0x200, prot(m, "PAGE_KERNEL"))),
        0x800E7,
    ),
    (
        "1G-leaf-PAGE_KERNEL",
        lambda m: int(m.ops.mk_leaf(level_index(m.fmt, 1 << 30), 0x40000, prot(m, "PAGE_KERNEL"))),
        0x100000E7,
    ),
    ("table-entry-0x80401000", lambda m: int(m.ops.mk_table_entry(0, 0x80401000)), 0x20100401),
    ("pte_pfn-napot-64K", lambda m: int(m.ops.pte_pfn(0x80000000048D20E7)), 0x12340),
    ("pte_pfn-same-without-N", lambda m: int(m.ops.pte_pfn(0x00000000048D20E7)), 0x12348),
]


@pytest.mark.parametrize("mode_name", MODE_NAMES)
@pytest.mark.parametrize(("fn", "expected"), [(f, e) for _, f, e in VECTORS], ids=[i for i, _, _ in VECTORS])
def test_vectors(mode_name: str, fn: Vector, expected: int) -> None:
    m = MODES[mode_name]
    got = fn(m)
    assert got == expected, f"riscv64/{mode_name}: got {hx(got)}, want {hx(expected)}"
    stored = np.array([got], dtype=m.fmt.dtype).tobytes()
    assert stored == expected.to_bytes(8, "little"), f"riscv64/{mode_name}: bytes {stored.hex()}"


@pytest.mark.parametrize(
    ("value", "memory"),
    [
        (0x48D1457, "57148d0400000000"),
        (0x40000000048D14E7, "e7148d0400000040"),
        (0x20100401, "0104102000000000"),
    ],
)
def test_bytes_in_memory_are_little_endian(value: int, memory: str) -> None:
    for m in SPEC.modes:
        assert np.array([value], dtype=m.fmt.dtype).tobytes().hex() == memory


@pytest.mark.parametrize(("mode_name", "satp"), [("sv39", 0x8000000000080400), ("sv48", 0x9000000000080400)])
def test_root_is_satp(mode_name: str, satp: int) -> None:
    ops = MODES[mode_name].ops
    assert ops.root_value(0x80400000) == satp  # MODE << 60 | PPN, ASID 0
    assert ops.root_table_pa(satp) == 0x80400000
    assert ops.root_table_pa(satp | 0x123 << 44) == 0x80400000, "the ASID is not part of the address"


def test_prot_none_and_swap_predicates() -> None:
    for m in SPEC.modes:
        ops = m.ops
        protnone, swap = 0x48D1422, 0x1234180
        assert ops.pte_present(protnone) and not ops.pte_none(protnone), "PROT_NONE (G, V=0) is present"
        assert not ops.pte_write(protnone)
        assert not ops.pte_present(swap) and not ops.pte_none(swap), "a swap entry is neither"
        assert ops.pte_none(0) and not ops.pte_present(0)


def test_special_hooks() -> None:
    for m in SPEC.modes:
        ptes = np.array([0x48D1457, 0x48D1557, 0x100, 0], dtype=np.uint64)
        special = plugin.mixedmap_pte_special(m.fmt, ptes)
        assert special is not None and special.tolist() == [False, True, True, False]
        made = plugin.mixedmap_pte_mkspecial(m.fmt, ptes)
        assert made is not None and made.dtype == np.uint64
        assert (made ^ ptes).tolist() == [0x100, 0, 0, 0x100]


# ------------------------------------------------------------------------------------------
# VA -> per-level indices, from fmt.levels (VPN[i] = VA bits 12+9i+8 .. 12+9i)
# ------------------------------------------------------------------------------------------

VA_ROWS: list[tuple[int, str, tuple[int, ...], int]] = [
    (0x0000003FFFFFF000, "sv39", (255, 511, 511), 0x0),  # last user page (TASK_SIZE 256 GiB)
    (0x0000000012345678, "sv39", (0, 145, 325), 0x678),
    (0xFFFFFFD600000000, "sv39", (344, 0, 0), 0x0),
    (0xFFFFFFFF80000000, "sv39", (510, 0, 0), 0x0),  # KERNEL_LINK_ADDR (-2 GiB)
    (0x00007FFFFFFFF000, "sv48", (255, 511, 511, 511), 0x0),
    (0x0000123456789ABC, "sv48", (36, 209, 179, 393), 0xABC),
    (0xFFFFFFFF80000000, "sv48", (511, 510, 0, 0), 0x0),
    (0x0000003FFFFFF000, "sv48", (0, 255, 511, 511), 0x0),
]


@pytest.mark.parametrize(
    ("va", "mode_name", "indices", "offset"), VA_ROWS, ids=[f"{r[1]}-{r[0]:#x}" for r in VA_ROWS]
)
def test_va_indices(va: int, mode_name: str, indices: tuple[int, ...], offset: int) -> None:
    fmt = MODES[mode_name].fmt
    assert tuple((va >> lv.shift) & (lv.entries - 1) for lv in fmt.levels) == indices
    assert va & (fmt.page_size - 1) == offset
    assert is_canonical(va, fmt.va_bits)


@pytest.mark.parametrize(("mode_name", "va"), [("sv39", 0x0000004000000000), ("sv48", 0x0000800000000000)])
def test_first_non_canonical_va_is_unmapped(mode_name: str, va: int) -> None:
    m = Machine("riscv64", "6.18", ram="64M", mode=mode_name)
    pt = m.new_pagetable()
    assert not is_canonical(va, m.fmt.va_bits)
    assert pt.lookup(va) is None and pt.translate([va])[0] == -1


# ------------------------------------------------------------------------------------------
# Format, spec, options
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode_name", "levels", "va_bits", "leaf_sizes"),
    [
        ("sv39", ("pgd", "pmd", "pte"), 39, (1 << 30, 1 << 21)),
        ("sv48", ("pgd", "pud", "pmd", "pte"), 48, (1 << 39, 1 << 30, 1 << 21)),
    ],
)
def test_geometry(mode_name: str, levels: tuple[str, ...], va_bits: int, leaf_sizes: tuple[int, ...]) -> None:
    m = MODES[mode_name]
    fmt = m.fmt
    assert tuple(lv.name for lv in fmt.levels) == levels
    assert [lv.shift for lv in fmt.levels] == [12 + 9 * (len(levels) - 1 - i) for i in range(len(levels))]
    assert all(
        lv.entries == 512 and lv.table_bytes == lv.alloc_bytes == lv.align == 4096 for lv in fmt.levels
    )
    assert tuple(lv.page_size for lv in fmt.levels if lv.leaf_ok) == leaf_sizes
    assert not fmt.levels[-1].leaf_ok
    assert (fmt.va_bits, fmt.va_rule, fmt.pa_bits, fmt.byteorder) == (va_bits, "canonical", 56, "little")
    assert (fmt.pfn_mask, fmt.pfn_shift) == (((1 << 54) - 1) ^ ((1 << 10) - 1), 10)
    assert fmt.special_mask == 0x100 and fmt.root_name == "satp" and fmt.profile == "6.18"
    assert fmt.max_pfn == 1 << 44
    assert (
        m.memory.kind == "sparsemem" and m.memory.section_size_bits == 27 and m.memory.max_physmem_bits == 56
    )
    assert m.options == (("levels", len(levels)),) and m.ops.fmt is fmt
    assert m.default == (mode_name == "sv39")


def test_protection_map_and_prots() -> None:
    want = (0x22, 0x53, 0x53, 0x53, 0x59, 0x5B, 0x5B, 0x5B, 0x22, 0x53, 0x57, 0x57, 0x59, 0x5B, 0x5F, 0x5F)
    for m in SPEC.modes:
        fmt = m.fmt
        assert fmt.protection_map == want, [hex(v) for v in fmt.protection_map]
        assert fmt.prot("rw") == 0x57 and fmt.prot("rw", shared=False) == 0x53
        assert fmt.prot("x") == 0x59 and fmt.prot("none") == 0x22
        named = fmt.protections_map
        assert named["PAGE_KERNEL"] == 0xE7 and named["PAGE_KERNEL_READ"] == 0xE3
        assert named["PAGE_KERNEL_EXEC"] == 0xEF and named["PAGE_KERNEL_READ_EXEC"] == 0xEB
        assert named["PAGE_KERNEL_IO"] == 0x40000000000000E7 and named["PAGE_TABLE"] == 0x1


@pytest.mark.parametrize("mode_name", MODE_NAMES)
def test_pte_bits_name_every_bit(mode_name: str) -> None:
    fmt = MODES[mode_name].fmt
    for fields in [fmt.pte_bits, *(lv.bits for lv in fmt.levels[:-1])]:
        names = [b.name for b in fields]
        assert len(names) == len(set(names)), names
        assert all(b.doc for b in fields)
        covered = 0
        for b in fields:
            covered |= b.mask
        assert covered == ALL64, f"unnamed bits {ALL64 ^ covered:#x}"
    by_name = {b.name: b for b in fmt.pte_bits}
    assert by_name["PFN"].kind == "field" and by_name["PFN"].mask == fmt.pfn_mask
    assert by_name["SPECIAL"].mask == 0x100 and by_name["SPECIAL"].kind == "sw"
    assert by_name["PROT_NONE"].mask == by_name["GLOBAL"].mask == 0x20
    assert by_name["NAPOT"].mask == 1 << 63 and by_name["PBMT"].mask == 3 << 61
    assert by_name["RSV"].mask == 0x7F << 54 and by_name["RSW1"].mask == 0x200


def test_spec_defaults_options_and_unsupported() -> None:
    assert SPEC.name == "riscv64" and SPEC.profiles == ("6.18",)
    assert SPEC.caps.pte_special is Support.YES
    assert SPEC.select("6.18", {}).name == "sv39"
    assert SPEC.select("6.18", {"levels": 4}).name == "sv48"
    assert SPEC.select("6.18", {"mode": "sv48"}).name == "sv48"
    assert SPEC.select("6.18", {"levels": 3}).name == "sv39"
    with pytest.raises(ProfileError):
        SPEC.select("6.18", {"levels": 5})
    for profile in ("2.6.26", "2.6.27"):
        with pytest.raises(ProfileError, match=r"6\.18"):
            SPEC.select(profile, {})
    (unsupported,) = SPEC.unsupported
    assert unsupported.profiles == ("2.6.26", "2.6.27") and "4.15" in unsupported.reason


def test_machine_uses_the_newest_profile_by_default() -> None:
    m = Machine("riscv64", ram="64M")
    assert m.profile.name == "6.18" and m.mode.mode.name == "sv39"
    assert Machine("riscv64", ram="64M", levels=4).mode.mode.name == "sv48"
    with pytest.raises(ProfileError):
        Machine("riscv64", "2.6.27", ram="64M")


def test_readme_python_example_runs() -> None:
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    runnable = [b for b in blocks if "Machine(" in b]
    assert runnable, "the README lost its Python example"
    namespace: dict[str, Any] = {}
    for block in runnable:
        exec(compile(block, str(readme), "exec"), namespace)
    assert namespace["pt"].root >> 60 == 9 and namespace["m"].mode.mode.name == "sv39"


def test_entry_point_registered() -> None:
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="mixedmap") if ep.name == "riscv64"]
    assert [ep.value for ep in eps] == ["mixedmap_riscv64.plugin"]


# ------------------------------------------------------------------------------------------
# Hypothesis: the scalar (int) and batch (uint64 array) paths agree; helper algebra
# ------------------------------------------------------------------------------------------

u64s = st.integers(min_value=0, max_value=ALL64)
u64_lists = st.lists(u64s, min_size=1, max_size=40)
PARAM_MODES = [pytest.param(m, id=m.name) for m in SPEC.modes]
UNARY = ["pte_pfn", "pte_mkwrite", "pte_wrprotect", "pte_mkdirty", "pte_mkclean", "pte_mkyoung", "pte_mkold"]
PREDICATES = ["pte_present", "pte_none", "pte_write", "pte_dirty", "pte_young"]


def all_prots(m: ArchMode) -> list[int]:
    return sorted(set(m.fmt.protection_map) | {v for _, v in m.fmt.protections})


def check_agree(where: str, fn: Callable[[Any], Any], values: list[int]) -> None:
    """fn over Python ints == fn over a uint64 array, and over a one-element array."""
    want = [fn(v) for v in values]
    for w in want:
        assert isinstance(w, (int, bool)) and not isinstance(w, np.generic), f"{where}: scalar gave {type(w)}"
    arr = fn(np.array(values, dtype=np.uint64))
    assert isinstance(arr, np.ndarray) and arr.shape == (len(values),), f"{where}: array gave {arr!r}"
    assert arr.dtype in (np.uint64, np.bool_), f"{where}: dtype {arr.dtype}"
    assert [int(x) for x in arr] == [int(w) for w in want], f"{where} {[hx(v) for v in values]}"
    one = fn(np.array(values[:1], dtype=np.uint64))
    assert int(one[0]) == int(want[0]), f"{where} one-element"


@pytest.mark.parametrize("m", PARAM_MODES)
@PROPS
@given(values=u64_lists)
def test_scalar_array_agree_leaf_helpers(m: ArchMode, values: list[int]) -> None:
    for name in UNARY + PREDICATES:
        check_agree(f"{m.name} {name}", getattr(m.ops, name), values)
    for p in all_prots(m):
        check_agree(f"{m.name} pte_modify/{p:#x}", lambda v, p=p: m.ops.pte_modify(v, p), values)
        check_agree(f"{m.name} pfn_pte/{p:#x}", lambda v, p=p: m.ops.pfn_pte(v >> 20, p), values)


@pytest.mark.parametrize("m", PARAM_MODES)
@PROPS
@given(types=st.lists(st.integers(0, 31), min_size=1, max_size=20), data=st.data())
def test_scalar_array_agree_swap(m: ArchMode, types: list[int], data: st.DataObject) -> None:
    offsets = data.draw(st.lists(st.integers(0, (1 << 52) - 1), min_size=len(types), max_size=len(types)))
    want = [m.ops.mk_swap_pte(t, o) for t, o in zip(types, offsets, strict=True)]
    got = m.ops.mk_swap_pte(np.array(types, dtype=np.uint64), np.array(offsets, dtype=np.uint64))
    assert [int(x) for x in got] == want
    mixed = m.ops.mk_swap_pte(types[0], np.array(offsets[:1], dtype=np.uint64))
    assert int(mixed[0]) == want[0]


@pytest.mark.parametrize("m", PARAM_MODES)
@PROPS
@given(values=u64_lists)
def test_scalar_array_agree_upper_levels(m: ArchMode, values: list[int]) -> None:
    for i, lv in enumerate(m.fmt.levels[:-1]):
        check_agree(f"{m.name} entry_kind/{lv.name}", lambda v, i=i: m.ops.entry_kind(i, v), values)
        check_agree(f"{m.name} table_pa/{lv.name}", lambda v, i=i: m.ops.table_pa(i, v), values)
        check_agree(f"{m.name} leaf_pfn/{lv.name}", lambda v, i=i: m.ops.leaf_pfn(i, v), values)
        check_agree(
            f"{m.name} mk_table_entry/{lv.name}",
            lambda v, i=i: m.ops.mk_table_entry(i, (v >> 8) & (ALL64 ^ 0xFFF)),
            values,
        )
        for p in all_prots(m):
            check_agree(
                f"{m.name} mk_leaf/{lv.name}/{p:#x}", lambda v, i=i, p=p: m.ops.mk_leaf(i, v >> 20, p), values
            )


def pfns(m: ArchMode) -> st.SearchStrategy[int]:
    return st.integers(min_value=0, max_value=m.fmt.max_pfn - 1)


@pytest.mark.parametrize("m", PARAM_MODES)
@PROPS
@given(data=st.data())
def test_helper_algebra(m: ArchMode, data: st.DataObject) -> None:
    """debug_vm_pgtable-style identities, and mprotect between user protections."""
    ops = m.ops
    pfn = data.draw(pfns(m), label="pfn")
    p = data.draw(st.sampled_from(all_prots(m)), label="prot")
    pte = ops.pfn_pte(pfn, p)
    assert ops.pte_pfn(pte) == pfn and not ops.pte_none(pte)
    assert ops.pte_present(pte) == bool(p & 0x21), "present = V or the PROT_NONE alias G"
    assert ops.pte_dirty(ops.pte_mkdirty(pte)) and not ops.pte_dirty(ops.pte_mkclean(pte))
    assert ops.pte_young(ops.pte_mkyoung(pte)) and not ops.pte_young(ops.pte_mkold(pte))
    assert ops.pte_write(ops.pte_mkwrite(pte)) and not ops.pte_write(ops.pte_wrprotect(pte))
    assert ops.pte_dirty(ops.pte_wrprotect(ops.pte_mkdirty(pte))), "wrprotect keeps D"
    for helper in ("pte_mkdirty", "pte_mkclean", "pte_mkyoung", "pte_mkold", "pte_mkwrite", "pte_wrprotect"):
        out = getattr(ops, helper)(pte)
        assert ops.pte_pfn(out) == pfn, helper
        assert bin(out ^ pte).count("1") <= 1, f"{helper} changed more than its bit"
    user = ops.pfn_pte(pfn, data.draw(st.sampled_from(list(m.fmt.protection_map))))
    q = data.draw(st.sampled_from(list(m.fmt.protection_map)))
    # _PAGE_CHG_MASK keeps A and D: unlike x86, riscv's PAGE_NONE (G|R) has no A of its own.
    assert ops.pte_modify(user, q) == ops.pfn_pte(pfn, q) | (user & 0xC0), f"pte_modify({hx(user)}, {q:#x})"
    special = mkspecial(m, pte)
    assert special ^ pte == 0x100 and ops.pte_modify(special, q) & 0x100, "pte_modify keeps _PAGE_SPECIAL"


@pytest.mark.parametrize("m", PARAM_MODES)
@PROPS
@given(swp_type=st.integers(0, 31), offset=st.integers(0, (1 << 52) - 1))
def test_swap_entry_round_trip(m: ArchMode, swp_type: int, offset: int) -> None:
    v = m.ops.mk_swap_pte(swp_type, offset)
    assert ((v >> 7) & 0x1F, v >> 12) == (swp_type, offset), hx(v)  # __swp_type, __swp_offset
    assert v & 0x2F == 0, "V, R, W, X and G (PROT_NONE) stay clear"
    if v:
        assert not m.ops.pte_present(v) and not m.ops.pte_none(v)


@pytest.mark.parametrize("m", PARAM_MODES)
@PROPS
@given(data=st.data())
def test_upper_level_round_trips(m: ArchMode, data: st.DataObject) -> None:
    ops, fmt = m.ops, m.fmt
    for i, lv in enumerate(fmt.levels[:-1]):
        assert ops.empty_entry(i) == 0 and ops.entry_kind(i, 0) == ENTRY_NONE
        pa = data.draw(st.integers(1, m.fmt.max_pfn - 1)) << 12
        e = ops.mk_table_entry(i, pa)
        assert e == (pa >> 2) | 1 and ops.entry_kind(i, e) == ENTRY_TABLE and ops.table_pa(i, e) == pa
        assert ops.entry_kind(i, e ^ 1) == ENTRY_BAD, "V cleared: not empty, not a table"
        per = lv.page_size >> 12
        pfn = data.draw(pfns(m)) // per * per
        p = data.draw(st.sampled_from([q for q in fmt.protection_map if q & 1]))
        leaf = ops.mk_leaf(i, pfn, p)
        assert ops.entry_kind(i, leaf) == ENTRY_LEAF and ops.leaf_pfn(i, leaf) == pfn, hx(leaf)
        assert ops.leaf_pfn(i, leaf | ((per - 1) << 10)) == pfn, "p?d_pfn masks with P?D_MASK"
        protnone = ops.mk_leaf(i, pfn, fmt.prot("none"))
        want = ENTRY_LEAF if lv.name == "pmd" else ENTRY_BAD  # pmd_present() tests _PAGE_PROT_NONE
        assert ops.entry_kind(i, protnone) == want, f"{lv.name}: {hx(protnone)}"


# ------------------------------------------------------------------------------------------
# An independent Sv39/Sv48 walker (RISC-V privileged spec, "Virtual Address Translation
# Process"), then hand-built tables, then tables the core built with this plugin.
# ------------------------------------------------------------------------------------------


def is_canonical(va: int, va_bits: int) -> bool:
    """VA bits 63..va_bits-1 must all equal bit va_bits-1."""
    top = va >> (va_bits - 1)
    return top == 0 or top == (1 << (65 - va_bits)) - 1


def spec_walk(read8: Callable[[int], bytes], satp: int, va: int) -> tuple[int, int] | None:
    """(pa, page size) per the spec's algorithm, or None for a page fault (no access check)."""
    levels = {8: 3, 9: 4}[satp >> 60]  # satp.MODE: Sv39 / Sv48
    if not is_canonical(va, 12 + 9 * levels):
        return None
    a = (satp & ((1 << 44) - 1)) * 4096  # step 1: a = satp.ppn x PAGESIZE
    for i in range(levels - 1, -1, -1):
        vpn = (va >> (12 + 9 * i)) & 0x1FF
        pte = int.from_bytes(read8(a + vpn * 8), "little")  # step 2
        v, r, w, x = (pte >> 0) & 1, (pte >> 1) & 1, (pte >> 2) & 1, (pte >> 3) & 1
        n, pbmt, rsv = pte >> 63, (pte >> 61) & 3, (pte >> 54) & 0x7F
        if not v or (not r and w) or rsv or pbmt == 3:  # step 3 (Svpbmt, Svnapot present)
            return None
        ppn = (pte >> 10) & ((1 << 44) - 1)
        if not r and not x:  # step 4: pointer to the next level
            if pte & 0xD0 or n or pbmt:  # D, A, U, N, PBMT reserved in a non-leaf PTE
                return None
            a = ppn * 4096
            continue
        if i > 0 and ppn % (1 << (9 * i)):  # step 6: misaligned superpage
            return None
        size = 1 << (12 + 9 * i)
        if n:  # Svnapot: only a level-0 leaf with ppn[3:0] = 0b1000 (64 KiB)
            if i or ppn & 0xF != 0b1000:
                return None
            size, ppn = 1 << 16, ppn & ~0xF
        return ppn * 4096 + va % size, size  # step 8
    return None  # step 4: i < 0


class Memory:
    """Physical memory as a dict of 8-byte little-endian words, zero elsewhere."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def write(self, pa: int, value: int) -> None:
        self.words[pa] = value

    def read8(self, pa: int) -> bytes:
        assert pa % 8 == 0
        return self.words.get(pa, 0).to_bytes(8, "little")


def _vpn(va: int, i: int) -> int:
    return (va >> (12 + 9 * i)) & 0x1FF


def _table(pa: int) -> int:
    return (pa >> 12) << 10 | 0x1  # V, R=W=X=0


def _leaf(pa: int, flags: int = 0xD7) -> int:  # V R W U A D
    return (pa >> 12) << 10 | flags


def build_sv39(mem: Memory) -> int:
    """Tables at 0x1000 (root), 0x2000 (L1), 0x3000 (L0); returns satp."""
    va = 0x12345678  # VPN 0 / 145 / 325
    mem.write(0x1000 + 8 * _vpn(va, 2), _table(0x2000))
    mem.write(0x2000 + 8 * _vpn(va, 1), _table(0x3000))
    mem.write(0x3000 + 8 * _vpn(va, 0), _leaf(0x8765_4000))
    mem.write(0x2000 + 8 * 146, _leaf(0x4020_0000))  # a 2 MiB megapage at VA 0x12400000
    mem.write(0x1000 + 8 * 3, _leaf(0xC000_0000))  # a 1 GiB gigapage at VA 0xC0000000
    return 8 << 60 | 0x1


def test_spec_walker_hand_built_sv39() -> None:
    mem = Memory()
    satp = build_sv39(mem)
    assert spec_walk(mem.read8, satp, 0x12345678) == (0x87654678, 4096)
    assert spec_walk(mem.read8, satp, 0x12400000 + 0x12345) == (0x40212345, 1 << 21)
    assert spec_walk(mem.read8, satp, 0xC0000000 + 0x3456789) == (0xC3456789, 1 << 30)
    assert spec_walk(mem.read8, satp, 0x12346000) is None  # empty PTE
    assert spec_walk(mem.read8, satp, 0x0000004000000000) is None  # not canonical
    assert spec_walk(mem.read8, satp, 0xFFFFFFC000000000) is None  # canonical, empty root slot


@pytest.mark.parametrize(
    ("what", "pte"),
    [
        ("V clear", _leaf(0x87654000) & ~1),
        ("W without R", (0x87654 << 10) | 0xD5),
        ("reserved bit 54", _leaf(0x87654000) | 1 << 54),
        ("PBMT 3", _leaf(0x87654000) | 3 << 61),
        ("NAPOT with ppn[3:0] != 1000", _leaf(0x87654000) | 1 << 63),
    ],
)
def test_spec_walker_faults_on_bad_leaf(what: str, pte: int) -> None:
    mem = Memory()
    satp = build_sv39(mem)
    mem.write(0x3000 + 8 * _vpn(0x12345678, 0), pte)
    assert spec_walk(mem.read8, satp, 0x12345678) is None, what


def test_spec_walker_superpage_and_table_rules() -> None:
    mem = Memory()
    satp = build_sv39(mem)
    mem.write(0x2000 + 8 * 146, _leaf(0x4020_1000))  # megapage with PPN[0] != 0
    assert spec_walk(mem.read8, satp, 0x12400000) is None, "misaligned superpage"
    mem.write(0x1000, _table(0x2000) | 0x40)  # A set in a non-leaf PTE
    assert spec_walk(mem.read8, satp, 0x12345678) is None, "A is reserved in a non-leaf PTE"
    mem.write(0x1000, _table(0x2000))
    mem.write(0x3000 + 8 * _vpn(0x12345678, 0), _table(0x5000))
    assert spec_walk(mem.read8, satp, 0x12345678) is None, "a pointer at level 0"
    napot = _leaf(0x8765_8000) | 1 << 63  # ppn ends in 1000: the 64 KiB block at 0x87650000
    mem.write(0x3000 + 8 * _vpn(0x12345678, 0), napot)
    assert spec_walk(mem.read8, satp, 0x12345678) == (0x87655678, 1 << 16)


def test_spec_walker_hand_built_sv48() -> None:
    mem = Memory()
    va = 0x0000123456789ABC  # VPN 36 / 209 / 179 / 393
    for i, (table, nxt) in enumerate([(0x1000, 0x2000), (0x2000, 0x3000), (0x3000, 0x4000)]):
        mem.write(table + 8 * _vpn(va, 3 - i), _table(nxt))
    mem.write(0x4000 + 8 * _vpn(va, 0), _leaf(0x00FF_FFFF_FFFF_F000))  # the top 4 KiB of the 56-bit PA space
    satp = 9 << 60 | 0x1
    assert spec_walk(mem.read8, satp, va) == (0x00FF_FFFF_FFFF_FABC, 4096)
    mem.write(0x1000 + 8 * 1, _leaf(0x0080_0000_0000))  # a 512 GiB terapage at VA 0x8000000000
    assert spec_walk(mem.read8, satp, 0x0000_0080_1234_5678) == (0x0080_1234_5678, 1 << 39)
    assert spec_walk(mem.read8, satp, 0x0000800000000000) is None  # not canonical for Sv48


def _random_tables(mode_name: str, seed: int) -> tuple[Machine, Any, list[int]]:
    m = Machine("riscv64", "6.18", ram="1G", mode=mode_name)
    pt = m.new_pagetable()
    rng = np.random.default_rng(seed)
    user_top = 1 << (m.fmt.va_bits - 1)
    vas: list[int] = []
    for k, vpn in enumerate(np.unique(rng.integers(0, user_top >> 12, size=150)).tolist()):
        pt.map(vpn << 12, int(rng.integers(0, 1 << 40)), ("r", "rw", "rx", "rwx")[k % 4])
        vas.append(vpn << 12 | int(rng.integers(0, 4096)))
    big = [(1 << 21, 0x200), (1 << 30, 0x40000)] + ([(1 << 39, 1 << 27)] if mode_name == "sv48" else [])
    for n, (size, per) in enumerate(big):
        va = user_top - (n + 2) * size
        if pt.lookup(va) is None and all(abs(v - va) >= size for v in vas):
            pt.map(va, per * (n + 5), "rw", page_size=size)
            vas.append(va + 0x2345)
    return m, pt, vas


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode_name", MODE_NAMES)
def test_plugin_tables_agree_with_spec_walker(mode_name: str, seed: int) -> None:
    m, pt, vas = _random_tables(mode_name, seed)
    probes = [*vas, *(v + 0x1000 for v in vas[:40]), 0x0000004000000000, 0xFFFFFFFFFFFFF000]
    got = pt.translate(np.array(probes, dtype=np.uint64)).tolist()

    def read8(pa: int) -> bytes:
        return m.mem.read(pa, 8)

    for va, pa in zip(probes, got, strict=True):
        ref = spec_walk(read8, pt.root, va)
        assert pa == (-1 if ref is None else ref[0]), f"{mode_name}: va {va:#x}: core {pa:#x}, spec {ref}"
        leaf = pt.lookup(va)
        assert (leaf is None) == (ref is None)
        if leaf is not None and ref is not None:
            assert (leaf.pa, leaf.page_size) == ref


def _core_walker() -> Any:
    """The core repo's tests/walkers/riscv64.py, when this example sits in a mixedmap checkout."""
    path = Path(__file__).resolve().parents[3] / "tests" / "walkers" / "riscv64.py"
    if not path.is_file():
        pytest.skip("not inside a mixedmap checkout: tests/walkers/riscv64.py not found")
    spec = importlib.util.spec_from_file_location("_mixedmap_core_riscv64_walker", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("mode_name", MODE_NAMES)
def test_core_suite_walker_agrees(mode_name: str) -> None:
    """Self-test of the walker the core suite uses (tests/walkers/riscv64.py)."""
    walker = _core_walker()
    mem = Memory()
    satp = build_sv39(mem)
    for va in (0x12345678, 0x12412345, 0xC3456789, 0x12346000, 0x0000004000000000):
        assert walker.walk(mem.read8, satp, va, levels=3) == spec_walk(mem.read8, satp, va)
    assert walker.walk(mem.read8, satp, 0x12345678, access="r") == (0x87654678, 4096)
    assert walker.walk(mem.read8, satp, 0x12345678, access="x") is None, "no X on the page"
    assert walker.walk(mem.read8, satp, 0x12345678, access="r", user=False) is None, "U page, SUM=0"
    with pytest.raises(ValueError):
        walker.walk(mem.read8, satp, 0x12345678, mode="sv48")
    m, pt, vas = _random_tables(mode_name, 7)

    def read8(pa: int) -> bytes:
        return m.mem.read(pa, 8)

    for va in vas:
        assert walker.walk(read8, pt.root, va, mode=mode_name) == spec_walk(read8, pt.root, va)


# ------------------------------------------------------------------------------------------
# The command line, as a user would check an installed plugin
# ------------------------------------------------------------------------------------------


def _cli(*args: str) -> Any:
    exe = shutil.which("mixedmap") or str(Path(sys.executable).with_name("mixedmap"))
    if not Path(exe).exists():
        pytest.skip("the mixedmap command is not installed")
    done = subprocess.run([exe, *args, "--json"], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_cli_sees_the_plugin() -> None:
    arches = {a["name"]: a for a in _cli("arches")["arches"]}
    rec = arches["riscv64"]
    assert rec["distribution"] == "mixedmap-riscv64" and rec["profiles"] == ["6.18"]
    assert rec["special_bit"] == {"6.18": "0x100"} and rec["pte_special"] == "yes"
    decoded = _cli("pte", "decode", "--arch", "riscv64", "0x48d1457")
    assert decoded["set"] == ["PRESENT", "READ", "WRITE", "USER", "ACCESSED"]
    assert decoded["helpers"]["pte_pfn"] == "0x12345" and decoded["bytes"] == "57 14 8d 04 00 00 00 00"
    walked = _cli("walk", "--arch", "riscv64", "--mode", "sv48", "--map", "0x12345000=0x1234", "0x12345678")
    assert walked["pa"] == "0x1234678" and [s["level"] for s in walked["steps"]] == [
        "pgd",
        "pud",
        "pmd",
        "pte",
    ]
    assert walked["root"].startswith("0x9000")
