"""ppc64 plugin: reference vectors (arch-formats.md 7.7, 7.8), geometry, helper properties, and
the independent walker (tests/walkers/powerpc.py) on hand-built and plugin-built tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytest.importorskip("mixedmap_powerpc")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mixedmap_powerpc import plugin
from mixedmap_powerpc.hpte import hpte_dword1_4k, htab_convert_pte_flags
from mixedmap_powerpc.radix import RadixOps

from mixedmap import (
    ENTRY_BAD,
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    VM_EXEC,
    VM_READ,
    VM_SHARED,
    VM_WRITE,
    ArchMode,
    ArchSpec,
    PageTableFormat,
    ProfileError,
    UnsupportedOperation,
)
from tests.walkers import powerpc as walker

ALL64 = (1 << 64) - 1
KERNELBASE = 0xC000_0000_0000_0000


SPEC: ArchSpec = plugin.mixedmap_arch_spec()
MODES: dict[tuple[str, str], ArchMode] = {(m.name, m.profile): m for m in SPEC.modes}
MODE_KEYS = list(MODES)
MODE_IDS = [f"{name}-{profile}" for name, profile in MODES]


def mode(name: str, profile: str) -> ArchMode:
    return MODES[(name, profile)]


def prot(m: ArchMode, name: str) -> int:
    return m.fmt.protections_map[name]


def mkspecial(m: ArchMode, v: int) -> int:
    out = plugin.mixedmap_pte_mkspecial(fmt=m.fmt, ptes=np.array([v], dtype=np.uint64))
    assert out is not None
    return int(out[0])


def be(v: int) -> str:
    return " ".join(f"{b:02x}" for b in v.to_bytes(8, "big"))


def stored(fmt: PageTableFormat, v: int) -> bytes:
    """The bytes an entry occupies in memory, through the format's dtype."""
    return np.array([v], dtype=np.uint64).astype(fmt.dtype).tobytes()


# -- the spec -------------------------------------------------------------------------------


def test_spec_profiles_defaults_and_options() -> None:
    assert SPEC.name == "ppc64" and SPEC.profiles == ("2.6.26", "2.6.27", "6.18")
    assert {(k, m.default) for k, m in MODES.items() if m.default} == {
        (("hash-4k", "2.6.26"), True),
        (("hash-4k", "2.6.27"), True),
        (("radix-4k", "6.18"), True),
    }
    assert SPEC.select("2.6.27", {}).name == "hash-4k"
    assert SPEC.select("6.18", {}).name == "radix-4k"
    assert SPEC.select("2.6.27", {"mmu": "hash", "page_size": 65536}).name == "hash-64k"
    assert SPEC.select("6.18", {"mmu": "radix", "page_size": 65536}).name == "radix-64k"
    assert SPEC.select("6.18", {"mmu": "hash", "page_size": 4096}).fmt.va_bits == 46
    assert SPEC.select("6.18", {"mode": "hash-64k"}).fmt.levels[0].index_bits == 8
    for m in SPEC.modes:
        assert m.ops.fmt is m.fmt and m.fmt.byteorder == "big" and m.fmt.va_rule == "quadrant"


@pytest.mark.parametrize("profile", ["2.6.26", "2.6.27"])
@pytest.mark.parametrize(
    "options", [{"mmu": "radix"}, {"mmu": "radix", "page_size": 65536}, {"mode": "radix-4k"}]
)
def test_radix_unsupported_before_4_7(profile: str, options: dict[str, object]) -> None:
    with pytest.raises(ProfileError, match=r"4\.7"):
        SPEC.select(profile, options)


def test_special_bit_per_profile() -> None:
    expect = {
        ("hash-4k", "2.6.26"): None,
        ("hash-64k", "2.6.26"): None,
        ("hash-4k", "2.6.27"): 0x10000,
        ("hash-64k", "2.6.27"): 0x400,
        ("radix-4k", "6.18"): 0x400,
        ("radix-64k", "6.18"): 0x400,
        ("hash-4k", "6.18"): 0x400,
        ("hash-64k", "6.18"): 0x400,
    }
    assert {k: m.fmt.special_mask for k, m in MODES.items()} == expect
    for k, m in MODES.items():
        named = {b.name: b.mask for b in m.fmt.pte_bits}
        assert named.get("_PAGE_SPECIAL") == expect[k], k


def test_memory_models() -> None:
    for (_, profile), m in MODES.items():
        assert m.memory.section_size_bits == 24
        assert m.memory.max_physmem_bits == (51 if profile == "6.18" else 44)


GEOMETRY = {
    # mode: [(name, shift, index bits, table bytes, alloc bytes, leaf_ok)]
    ("hash-4k", "2.6.27"): [
        ("pgd", 35, 9, 4096, 4096, False), ("pud", 28, 7, 1024, 1024, False),
        ("pmd", 21, 7, 1024, 1024, False), ("pte", 12, 9, 4096, 4096, False),
    ],
    ("hash-64k", "2.6.27"): [
        ("pgd", 40, 4, 128, 128, False), ("pmd", 28, 12, 32768, 32768, False),
        ("pte", 16, 12, 32768, 65536, False),
    ],
    ("radix-4k", "6.18"): [
        ("pgd", 39, 13, 65536, 65536, False), ("pud", 30, 9, 4096, 4096, True),
        ("pmd", 21, 9, 4096, 4096, True), ("pte", 12, 9, 4096, 4096, False),
    ],
    ("radix-64k", "6.18"): [
        ("pgd", 39, 13, 65536, 65536, False), ("pud", 30, 9, 4096, 4096, True),
        ("pmd", 21, 9, 4096, 4096, True), ("pte", 16, 5, 256, 256, False),
    ],
    ("hash-4k", "6.18"): [
        ("pgd", 37, 9, 4096, 4096, False), ("pud", 28, 9, 4096, 4096, False),
        ("pmd", 21, 7, 1024, 1024, False), ("pte", 12, 9, 4096, 4096, False),
    ],
    ("hash-64k", "6.18"): [
        ("pgd", 44, 8, 2048, 2048, False), ("pud", 34, 10, 8192, 16384, False),
        ("pmd", 24, 10, 8192, 16384, True), ("pte", 16, 8, 2048, 4096, False),
    ],
}  # fmt: skip


@pytest.mark.parametrize("key", list(GEOMETRY), ids=[f"{n}-{p}" for n, p in GEOMETRY])
def test_geometry(key: tuple[str, str]) -> None:
    got = [
        (lv.name, lv.shift, lv.index_bits, lv.table_bytes, lv.alloc_bytes, lv.leaf_ok)
        for lv in mode(*key).fmt.levels
    ]
    assert got == GEOMETRY[key]
    for lv in mode(*key).fmt.levels:
        assert lv.align == lv.alloc_bytes


def test_2626_geometry_equals_2627() -> None:
    for name in ("hash-4k", "hash-64k"):
        assert mode(name, "2.6.26").fmt.levels[:-1] == mode(name, "2.6.27").fmt.levels[:-1]


# -- protection maps ------------------------------------------------------------------------


def _pmap(m: ArchMode, *names: str) -> tuple[int, ...]:
    return tuple(prot(m, n) for n in names)


@pytest.mark.parametrize("profile", ["2.6.26", "2.6.27"])
def test_protection_map_2627(profile: str) -> None:
    m = mode("hash-4k", profile)
    assert _pmap(m, "PAGE_NONE", "PAGE_SHARED", "PAGE_READONLY", "PAGE_READONLY_X", "PAGE_KERNEL") == (
        0x101, 0x313, 0x113, 0x117, 0x391,
    )  # fmt: skip
    pm = m.fmt.protection_map
    assert pm[0] == pm[VM_SHARED] == 0x101
    assert pm[VM_READ | VM_WRITE] == 0x113  # private writable starts read-only (COW)
    assert pm[VM_SHARED | VM_READ | VM_WRITE] == 0x313
    assert pm[VM_EXEC] == 0x117  # no exec-only pages in 2008
    assert pm[VM_SHARED | VM_EXEC | VM_WRITE] == 0x317


def test_protection_map_618() -> None:
    m = mode("radix-4k", "6.18")
    base = 0x8000_0000_0000_0100
    pm = m.fmt.protection_map
    assert pm[0] == pm[VM_SHARED] == base
    assert pm[VM_READ] == pm[VM_WRITE] == pm[VM_READ | VM_WRITE] == base | 0x4
    assert pm[VM_EXEC] == pm[VM_SHARED | VM_EXEC] == base | 0x1  # PAGE_EXECONLY_X
    assert pm[VM_SHARED | VM_WRITE] == base | 0x6
    assert pm[VM_SHARED | VM_WRITE | VM_EXEC | VM_READ] == base | 0x7
    assert prot(m, "PAGE_KERNEL") == 0x8000_0000_0000_018E
    assert prot(m, "PAGE_KERNEL_RO") == 0x8000_0000_0000_010C
    for name in ("radix-64k", "hash-4k", "hash-64k"):
        assert mode(name, "6.18").fmt.protection_map == pm


# -- 7.7: 6.18 Linux PTE (radix format, same encoding under hash) --------------------------

OPS_77: dict[str, Callable[[ArchMode], int]] = {
    "1": lambda m: m.ops.pfn_pte(0x12345, prot(m, "PAGE_SHARED")),
    "2": lambda m: mkspecial(m, m.ops.pfn_pte(0xABCDE, prot(m, "PAGE_READONLY_X"))),
    "3": lambda m: m.ops.pfn_pte(0x100, prot(m, "PAGE_KERNEL")),
    "4": lambda m: m.ops.pfn_pte(0x12345, prot(m, "PAGE_NONE")),
    "5": lambda m: m.ops.pte_mkdirty(OPS_77["1"](m)),
    "6": lambda m: m.ops.pte_wrprotect(OPS_77["5"](m)),
    "7": lambda m: m.ops.pte_mkwrite(OPS_77["6"](m)),
    "8": lambda m: m.ops.pte_mkold(OPS_77["1"](m)),
    "9": lambda m: m.ops.mk_swap_pte(3, 0x1234),
}

VECTORS_77 = [
    ("1", 0xC000000012345106, "c0 00 00 00 12 34 51 06"),
    ("2", 0xC0000000ABCDE505, "c0 00 00 00 ab cd e5 05"),
    ("3", 0xC00000000010018E, "c0 00 00 00 00 10 01 8e"),
    ("4", 0xC000000012345100, "c0 00 00 00 12 34 51 00"),
    ("5", 0xC000000012345386, "c0 00 00 00 12 34 53 86"),
    ("6", 0xC000000012345384, "c0 00 00 00 12 34 53 84"),
    ("7", 0xC000000012345386, "c0 00 00 00 12 34 53 86"),
    ("8", 0xC000000012345006, "c0 00 00 00 12 34 50 06"),
    ("9", 0x4000000001234003, "40 00 00 00 01 23 40 03"),
]


@pytest.mark.parametrize("name", ["radix-4k", "hash-4k"])
@pytest.mark.parametrize(("num", "value", "raw"), VECTORS_77, ids=[f"7.7-{v[0]}" for v in VECTORS_77])
def test_vectors_77(name: str, num: str, value: int, raw: str) -> None:
    m = mode(name, "6.18")
    got = OPS_77[num](m)
    assert got == value, f"ppc64/{name} 7.7 #{num}: {got:#x} != {value:#x}"
    assert be(got) == raw
    assert stored(m.fmt, got) == bytes.fromhex(raw.replace(" ", ""))


def test_vector_77_4_protnone() -> None:
    m = mode("radix-4k", "6.18")
    v = OPS_77["4"](m)
    assert m.ops.pte_present(v) and not m.ops.pte_none(v)
    assert v & 0x8000_0000_0000_0007 == 0x8000_0000_0000_0000  # pte_protnone: present, no RWX


def test_vector_77_10_pmd_leaf() -> None:
    m = mode("radix-4k", "6.18")
    v = m.ops.mk_leaf(2, 0x200, prot(m, "PAGE_KERNEL"))
    assert v == 0xC00000000020018E and be(v) == "c0 00 00 00 00 20 01 8e"
    assert m.ops.entry_kind(2, v) == ENTRY_LEAF and m.ops.leaf_pfn(2, v) == 0x200


OPS_77_64K: dict[str, Callable[[ArchMode], int]] = {
    "1": lambda m: m.ops.pfn_pte(0x1234, prot(m, "PAGE_SHARED")),
    "2": lambda m: mkspecial(m, m.ops.pfn_pte(0x1234, prot(m, "PAGE_READONLY"))),
    "3": lambda m: m.ops.pfn_pte(0x10, prot(m, "PAGE_KERNEL")),
    "4": lambda m: m.ops.pfn_pte(0x1234, prot(m, "PAGE_NONE")),
    "5": lambda m: m.ops.mk_swap_pte(3, 0x1234),
}
VECTORS_77_64K = [
    ("1", 0xC000000012340106),
    ("2", 0xC000000012340504),
    ("3", 0xC00000000010018E),
    ("4", 0xC000000012340100),
    ("5", 0x4000000012340003),
]


@pytest.mark.parametrize("name", ["radix-64k", "hash-64k"])
@pytest.mark.parametrize(("num", "value"), VECTORS_77_64K, ids=[f"7.7-64k-{v[0]}" for v in VECTORS_77_64K])
def test_vectors_77_64k(name: str, num: str, value: int) -> None:
    m = mode(name, "6.18")
    got = OPS_77_64K[num](m)
    assert got == value, f"ppc64/{name} 7.7 64K #{num}: {got:#x} != {value:#x}"
    assert stored(m.fmt, got) == value.to_bytes(8, "big")


HPTE_77 = [
    (0xC000000012345106, 0x0000000012345117),
    (0xC000000012345386, 0x0000000012345196),
    (0xC00000000010018E, 0x0000000000100194),
    (0xC0000000ABCDE505, 0x00000000ABCDE113),
    (0xC00000000010010C, 0x0000000000100117),
]


@pytest.mark.parametrize(("pte", "hpte"), HPTE_77, ids=[f"7.7-hpte-{i + 1}" for i in range(len(HPTE_77))])
def test_vectors_77_hpte(pte: int, hpte: int) -> None:
    assert hpte_dword1_4k(pte) == hpte
    arr = hpte_dword1_4k(np.array([pte, pte], dtype=np.uint64))
    assert arr.dtype == np.uint64 and arr.tolist() == [hpte, hpte]


def test_htab_convert_cache_control() -> None:
    base = 0xC000000000000106  # user, RW, clean
    assert htab_convert_pte_flags(base | 0x30) & 0x78 == 0x20  # tolerant: I
    assert htab_convert_pte_flags(base | 0x20) & 0x78 == 0x28  # non-idempotent: I|G
    assert htab_convert_pte_flags(base | 0x10) & 0x78 == 0x70  # SAO: W|I|M
    assert htab_convert_pte_flags(base | 0x1) & 0x4 == 0  # executable: N clear


EA_77 = [
    # EA, quadrant, radix 4K, radix 64K, hash 4K, hash 64K  (pgd, pud, pmd, pte, offset)
    (0x00007FFF89ABC123, 0, (255, 510, 77, 188, 0x123), (255, 510, 77, 11, 0xC123),
     (511, 504, 77, 188, 0x123), (7, 1023, 905, 171, 0xC123)),
    (0xC000000001234567, 3, (0, 0, 9, 52, 0x567), (0, 0, 9, 3, 0x4567),
     (0, 0, 9, 52, 0x567), (0, 0, 1, 35, 0x4567)),
    (0x0000000010000000, 0, (0, 0, 128, 0, 0x0), (0, 0, 128, 0, 0x0),
     (0, 1, 0, 0, 0x0), (0, 0, 16, 0, 0x0)),
    (0xC00C000000000000, 3, (6144, 0, 0, 0, 0x0), (6144, 0, 0, 0, 0x0),
     (0, 0, 0, 0, 0x0), (192, 0, 0, 0, 0x0)),
    (0x000FFFFFFFFFFFFF, 0, (8191, 511, 511, 511, 0xFFF), (8191, 511, 511, 31, 0xFFFF),
     (511, 511, 127, 511, 0xFFF), (255, 1023, 1023, 255, 0xFFFF)),
]  # fmt: skip


def indices(fmt: PageTableFormat, ea: int) -> tuple[int, ...]:
    """Per-level indices and page offset from the format's shifts and index bits."""
    idx = tuple((ea >> lv.shift) & (lv.entries - 1) for lv in fmt.levels)
    return (*idx, ea & (fmt.page_size - 1))


@pytest.mark.parametrize("row", EA_77, ids=[f"{r[0]:#018x}" for r in EA_77])
def test_ea_indices_77(row: tuple[Any, ...]) -> None:
    ea, quadrant, *expect = row
    assert ea >> 62 == quadrant
    for name, want in zip(("radix-4k", "radix-64k", "hash-4k", "hash-64k"), expect, strict=True):
        assert indices(mode(name, "6.18").fmt, ea) == want, name


RADIX_NONLEAF = [
    ("1", lambda: mode("radix-4k", "6.18").ops.mk_table_entry(0, 0x2000000), 0x8000000002000009),
    ("2", lambda: mode("radix-4k", "6.18").ops.mk_table_entry(2, 0x3001000), 0x8000000003001009),
    ("3", lambda: mode("radix-64k", "6.18").ops.mk_table_entry(2, 0x3001100), 0x8000000003001105),
    ("4", lambda: _radix_ops().process_table_entry(0x1230000), 0x40000000012300AD),
    ("5", lambda: _radix_ops().partition_table_entry(0x1230000), 0xC0000000012300AD),
]


def _radix_ops() -> RadixOps:
    ops = mode("radix-4k", "6.18").ops
    assert isinstance(ops, RadixOps)
    return ops


@pytest.mark.parametrize(
    ("num", "fn", "value"), RADIX_NONLEAF, ids=[f"7.7-nonleaf-{r[0]}" for r in RADIX_NONLEAF]
)
def test_radix_nonleaf_77(num: str, fn: Callable[[], int], value: int) -> None:
    assert fn() == value


# -- 7.8: 2.6.27 hash Linux PTE -------------------------------------------------------------

OPS_78: dict[str, tuple[str, Callable[[ArchMode], int]]] = {
    "1": ("hash-4k", lambda m: m.ops.pfn_pte(0x12345, prot(m, "PAGE_SHARED"))),
    "2": ("hash-4k", lambda m: mkspecial(m, OPS_78["1"][1](m))),
    "3": ("hash-4k", lambda m: m.ops.pfn_pte(0x12345, prot(m, "PAGE_NONE"))),
    "4": ("hash-4k", lambda m: m.ops.pte_wrprotect(m.ops.pte_mkdirty(OPS_78["1"][1](m)))),
    "5": ("hash-4k", lambda m: m.ops.mk_swap_pte(3, 0x1234)),
    "6": ("hash-64k", lambda m: m.ops.pfn_pte(0x1234, prot(m, "PAGE_SHARED"))),
    "7": ("hash-64k", lambda m: mkspecial(m, OPS_78["6"][1](m))),
    "8": ("hash-64k", lambda m: m.ops.mk_swap_pte(3, 0x1234)),
}
VECTORS_78 = [
    ("1", 0x00000002468A0313),
    ("2", 0x00000002468B0313),
    ("3", 0x00000002468A0101),
    ("4", 0x00000002468A0193),
    ("5", 0x00000024680C0000),
    ("6", 0x0000048D00000313),
    ("7", 0x0000048D00000713),
    ("8", 0x00048D0180000000),
]


@pytest.mark.parametrize(("num", "value"), VECTORS_78, ids=[f"7.8-{v[0]}" for v in VECTORS_78])
def test_vectors_78(num: str, value: int) -> None:
    name, fn = OPS_78[num]
    m = mode(name, "2.6.27")
    got = fn(m)
    assert got == value, f"ppc64/{name} 2.6.27 7.8 #{num}: {got:#x} != {value:#x}"
    assert stored(m.fmt, got) == value.to_bytes(8, "big")


@pytest.mark.parametrize(("num", "value"), [v for v in VECTORS_78 if v[0] not in ("2", "7")])
def test_vectors_78_same_in_2626(num: str, value: int) -> None:
    name, fn = OPS_78[num]
    assert fn(mode(name, "2.6.26")) == value


EA_78 = [
    # EA, 4K (pgd, pud, pmd, pte, off), 64K (pgd, pmd, pte, off)
    (0x00000FFF89ABC123, (511, 120, 77, 188, 0x123), (15, 4088, 2475, 0xC123)),
    (0x0000000010000000, (0, 1, 0, 0, 0x0), (0, 1, 0, 0x0)),
    (0xD000000001234567, (0, 0, 9, 52, 0x567), (0, 0, 291, 0x4567)),
    (0x000000003FFFF000, (0, 3, 127, 511, 0x0), (0, 3, 4095, 0xF000)),
    (0x00000ABCDEF01234, (343, 77, 119, 257, 0x234), (10, 3021, 3824, 0x1234)),
]


@pytest.mark.parametrize("row", EA_78, ids=[f"{r[0]:#018x}" for r in EA_78])
def test_ea_indices_78(row: tuple[int, tuple[int, ...], tuple[int, ...]]) -> None:
    ea, four, sixty_four = row
    for profile in ("2.6.26", "2.6.27"):
        assert indices(mode("hash-4k", profile).fmt, ea) == four
        assert indices(mode("hash-64k", profile).fmt, ea) == sixty_four
        # pgd_index masks with 0x1ff in 2.6.27 (the region nibble drops out): same answer
        assert (ea >> mode("hash-64k", profile).fmt.levels[0].shift) & 0x1FF == sixty_four[0]


# -- 2.6.27 specifics -----------------------------------------------------------------------


def test_2627_pte_modify_special() -> None:
    """4K keeps _PAGE_SPECIAL across mprotect (PAGE_MASK covers it); 64K 2.6.27 loses it
    (_PAGE_CHG_MASK lacked it until 2.6.29-rc5); 6.18 keeps it."""
    m4, m64 = mode("hash-4k", "2.6.27"), mode("hash-64k", "2.6.27")
    assert m64.fmt.quirks == ("pte_modify_drops_special",) and m4.fmt.quirks == ()
    assert all(m.fmt.quirks == () for k, m in MODES.items() if k != ("hash-64k", "2.6.27"))
    s4 = mkspecial(m4, m4.ops.pfn_pte(0x12345, prot(m4, "PAGE_SHARED")))
    s64 = mkspecial(m64, m64.ops.pfn_pte(0x1234, prot(m64, "PAGE_SHARED")))
    assert m4.ops.pte_modify(s4, prot(m4, "PAGE_READONLY")) == 0x00000002468B0113
    assert m64.ops.pte_modify(s64, prot(m64, "PAGE_READONLY")) == 0x0000048D00000113
    r = mode("radix-4k", "6.18")
    sr = mkspecial(r, r.ops.pfn_pte(0x12345, prot(r, "PAGE_SHARED")))
    assert r.ops.pte_modify(sr, prot(r, "PAGE_READONLY")) == 0xC000000012345504


def test_2627_pte_none_ignores_hpte_flags() -> None:
    m4, m64 = mode("hash-4k", "2.6.27"), mode("hash-64k", "2.6.27")
    assert m4.ops.pte_none(0xFC00) and not m4.ops.pte_none(0x10000)
    assert m64.ops.pte_none(0x1FFFF800) and not m64.ops.pte_none(0x400)


@pytest.mark.parametrize("name", ["hash-4k", "hash-64k"])
@pytest.mark.parametrize("profile", ["2.6.26", "2.6.27"])
def test_2627_directory_entries(name: str, profile: str) -> None:
    m = mode(name, profile)
    ops, levels = m.ops, m.fmt.levels
    for i in range(len(levels) - 1):
        align = levels[i + 1].align
        pa = 0x12340000 & ~(align - 1) or align
        e = ops.mk_table_entry(i, pa)
        assert e == KERNELBASE + pa  # (unsigned long)table: a linear-map virtual address
        assert ops.entry_kind(i, e) == ENTRY_TABLE and ops.table_pa(i, e) == pa
        assert ops.entry_kind(i, 0) == ENTRY_NONE and ops.empty_entry(i) == 0
        with pytest.raises(UnsupportedOperation):
            ops.mk_leaf(i, 0, 0)
    last_upper = len(levels) - 2
    assert ops.entry_kind(last_upper, pa) == ENTRY_BAD  # a physical address: not a kernel address
    assert ops.entry_kind(last_upper, KERNELBASE + pa + 8) == ENTRY_BAD  # misaligned
    assert ops.root_value(0x5000) == 0x5000 == ops.root_table_pa(0x5000)


def test_2627_4k_pgd_bad_only_tests_zero() -> None:
    ops = mode("hash-4k", "2.6.27").ops
    assert ops.entry_kind(0, 0x1234) == ENTRY_TABLE  # pgd_bad(pgd) was (pgd_val(pgd) == 0)
    assert ops.entry_kind(1, 0x1234) == ENTRY_BAD


# -- 6.18 specifics -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["radix-4k", "radix-64k"])
def test_radix_entry_kinds(name: str) -> None:
    m = mode(name, "6.18")
    ops = m.ops
    leaf = ops.pfn_pte(0, prot(m, "PAGE_SHARED"))
    assert ops.entry_kind(0, leaf) == ENTRY_BAD  # no PGD leaves (RADIX_P4D_BAD_BITS)
    assert ops.entry_kind(1, leaf) == ENTRY_LEAF and ops.entry_kind(2, leaf) == ENTRY_LEAF
    assert ops.entry_kind(2, ops.mk_table_entry(2, 0x4000) | 0x20) == ENTRY_BAD  # reserved bit
    assert ops.entry_kind(1, ops.mk_table_entry(1, 0x4000) | (1 << 61)) == ENTRY_BAD  # SW0
    pud = ops.mk_leaf(1, 1 << (30 - m.fmt.page_shift), prot(m, "PAGE_KERNEL"))
    assert pud == 0xC00000004000018E and ops.leaf_pfn(1, pud) == 1 << (30 - m.fmt.page_shift)
    with pytest.raises(UnsupportedOperation):
        ops.mk_leaf(0, 0, 0)
    assert ops.pte_none(0x180) and not ops.pte_none(0x200)  # RADIX_PTE_NONE_MASK


def test_hash618_entries() -> None:
    for name in ("hash-4k", "hash-64k"):
        m = mode(name, "6.18")
        ops = m.ops
        assert ops.mk_table_entry(1, 0x8000) == 0x8000000000008000
        assert ops.table_pa(1, 0x8000000000008000) == 0x8000
        assert ops.entry_kind(0, 0x8000000000008000) == ENTRY_TABLE
        assert ops.entry_kind(2, 0x8000000000008008) == ENTRY_BAD
        assert ops.pte_none(0x40) and not ops.pte_none(0x180)  # H_PTE_NONE_MASK
    thp = mode("hash-64k", "6.18").ops
    v = thp.mk_leaf(2, 0x100, prot(mode("hash-64k", "6.18"), "PAGE_SHARED"))
    assert v == 0xC000000001002106 and thp.entry_kind(2, v) == ENTRY_LEAF and thp.leaf_pfn(2, v) == 0x100
    assert mode("hash-4k", "6.18").ops.entry_kind(2, v) == ENTRY_BAD


# -- the special-bit hooks ------------------------------------------------------------------


@pytest.mark.parametrize("key", [k for k in MODE_KEYS if MODES[k].fmt.special_mask is not None], ids=str)
def test_special_hooks(key: tuple[str, str]) -> None:
    m = MODES[key]
    ptes = np.array([m.ops.pfn_pte(p, prot(m, "PAGE_SHARED")) for p in (0, 1, 0x1234)], dtype=np.uint64)
    mk = plugin.mixedmap_pte_mkspecial(fmt=m.fmt, ptes=ptes)
    assert mk is not None and mk.dtype == np.uint64 and mk.shape == ptes.shape
    assert ((mk ^ ptes) == np.uint64(m.fmt.special_mask)).all()  # nothing else changes
    sp = plugin.mixedmap_pte_special(fmt=m.fmt, ptes=np.concatenate([ptes, mk]))
    assert sp is not None and sp.dtype == np.bool_ and sp.tolist() == [False] * 3 + [True] * 3
    assert (m.ops.pte_pfn(mk) == m.ops.pte_pfn(ptes)).all()


# -- hypothesis: scalar and array paths agree, helper algebra --------------------------------

UNARY = [
    "pte_pfn", "pte_present", "pte_none", "pte_write", "pte_mkwrite", "pte_wrprotect", "pte_dirty",
    "pte_mkdirty", "pte_mkclean", "pte_young", "pte_mkyoung", "pte_mkold",
]  # fmt: skip
u64s = st.integers(0, ALL64)


def _agree(fn: Callable[..., Any], *scalar_args: list[int]) -> None:
    """fn on Python ints equals fn on a one-element and a many-element uint64 array."""
    n = len(scalar_args[0])
    singles = [fn(*(a[k] for a in scalar_args)) for k in range(n)]
    for s in singles:
        assert isinstance(s, (bool, int)) and not isinstance(s, np.generic), type(s)
    many = fn(*(np.array(a, dtype=np.uint64) for a in scalar_args))
    one = fn(*(np.array(a[:1], dtype=np.uint64) for a in scalar_args))
    assert isinstance(many, np.ndarray) and many.dtype in (np.uint64, np.bool_)
    assert [int(x) for x in many.tolist()] == [int(s) for s in singles]
    assert [int(x) for x in np.atleast_1d(one).tolist()] == [int(singles[0])]


@pytest.mark.parametrize("key", MODE_KEYS, ids=MODE_IDS)
@given(vals=st.lists(u64s, min_size=1, max_size=6), protn=st.integers(0, 15))
def test_scalar_and_array_agree(key: tuple[str, str], vals: list[int], protn: int) -> None:
    m = MODES[key]
    ops, fmt = m.ops, m.fmt
    for name in UNARY:
        _agree(getattr(ops, name), vals)
    pgprot = fmt.protection_map[protn]
    _agree(lambda v: ops.pte_modify(v, pgprot), vals)
    pfns = [v % fmt.max_pfn for v in vals]
    _agree(lambda p: ops.pfn_pte(p, pgprot), pfns)
    _agree(lambda t, o: ops.mk_swap_pte(t, o), [v & 0x1F for v in vals], [v >> 40 for v in vals])
    for i, lv in enumerate(fmt.levels[:-1]):
        _agree(lambda e, i=i: ops.entry_kind(i, e), vals)
        _agree(lambda e, i=i: ops.table_pa(i, e), vals)
        align = fmt.levels[i + 1].align
        _agree(lambda pa, i=i: ops.mk_table_entry(i, pa), [(v % (1 << 50)) & ~(align - 1) for v in vals])
        if lv.leaf_ok:
            per = 1 << (lv.shift - fmt.page_shift)
            _agree(lambda p, i=i: ops.mk_leaf(i, p, pgprot), [(v % fmt.max_pfn) & ~(per - 1) for v in vals])
            _agree(lambda e, i=i: ops.leaf_pfn(i, e), vals)


@pytest.mark.parametrize("key", MODE_KEYS, ids=MODE_IDS)
@given(pfn=st.integers(0, ALL64), protn=st.integers(0, 15), other=st.integers(0, 15))
def test_helper_algebra(key: tuple[str, str], pfn: int, protn: int, other: int) -> None:
    m = MODES[key]
    ops, fmt = m.ops, m.fmt
    pfn %= fmt.max_pfn
    pgprot, newprot = fmt.protection_map[protn], fmt.protection_map[other]
    pte = ops.pfn_pte(pfn, pgprot)
    ctx = f"ppc64/{m.name} {m.profile} pte {pte:#x}"
    assert ops.pte_pfn(pte) == pfn == (pte & fmt.pfn_mask) >> fmt.pfn_shift, ctx
    assert ops.pte_present(pte) and not ops.pte_none(pte), ctx
    assert ops.pte_write(ops.pte_mkwrite(pte)) and not ops.pte_write(ops.pte_wrprotect(pte)), ctx
    assert ops.pte_dirty(ops.pte_mkdirty(pte)) and not ops.pte_dirty(ops.pte_mkclean(pte)), ctx
    assert ops.pte_young(ops.pte_mkyoung(pte)) and not ops.pte_young(ops.pte_mkold(pte)), ctx
    assert ops.pte_pfn(ops.pte_mkclean(ops.pte_mkdirty(ops.pte_wrprotect(pte)))) == pfn, ctx
    assert ops.pte_pfn(ops.pte_modify(pte, newprot)) == pfn, ctx
    assert ops.pte_modify(pte, newprot) == ops.pfn_pte(pfn, newprot), ctx  # prots all carry ACCESSED
    if fmt.special_mask is not None:
        sp = mkspecial(m, pte)
        assert sp ^ pte == fmt.special_mask and ops.pte_pfn(sp) == pfn, ctx
        kept = ops.pte_modify(sp, newprot) & fmt.special_mask
        lost = "pte_modify_drops_special" in fmt.quirks
        assert kept == (0 if lost else fmt.special_mask), ctx
    assert not ops.pte_present(ops.mk_swap_pte(pfn & 0x1F, pfn >> 20)), ctx


@pytest.mark.parametrize("key", MODE_KEYS, ids=MODE_IDS)
@given(pa=st.integers(0, (1 << 50) - 1))
def test_table_entries_roundtrip(key: tuple[str, str], pa: int) -> None:
    m = MODES[key]
    ops, levels = m.ops, m.fmt.levels
    for i in range(len(levels) - 1):
        tpa = pa & ~(levels[i + 1].align - 1)
        if tpa == 0:
            continue
        e = ops.mk_table_entry(i, tpa)
        assert ops.entry_kind(i, e) == ENTRY_TABLE and ops.table_pa(i, e) == tpa, f"{key} level {i} {e:#x}"
        assert ops.entry_kind(i, ops.empty_entry(i)) == ENTRY_NONE


# -- the independent walker: hand-built tables ----------------------------------------------


class DictMem:
    """Sparse big-endian physical memory for hand-built tables."""

    def __init__(self) -> None:
        self.words: dict[int, int] = {}

    def put(self, pa: int, value: int) -> None:
        assert pa % 8 == 0
        self.words[pa] = value

    def read8(self, pa: int) -> bytes:
        return self.words.get(pa, 0).to_bytes(8, "big")


def test_walker_radix_4k() -> None:
    mem, root = DictMem(), 0x10000
    va = 0x00007FFF89ABC123  # 255/510/77/188
    mem.put(root + 255 * 8, 0x8000000000020009)
    mem.put(0x20000 + 510 * 8, 0x8000000000021009)
    mem.put(0x21000 + 77 * 8, 0x8000000000022009)
    mem.put(0x22000 + 188 * 8, 0xC000000012345106)
    assert walker.walk(mem.read8, root, va, mode="radix-4k") == (0x12345123, 4096)
    mem.put(0x21000 + 78 * 8, 0xC00000000020018E)  # 2 MiB leaf (vector 7.7 #10)
    va2 = (va & ~((1 << 30) - 1)) | (78 << 21) | 0x12345
    assert walker.walk(mem.read8, root, va2, mode="radix-4k") == (0x200000 | 0x12345, 1 << 21)
    mem.put(0x20000 + 511 * 8, 0xC00000004000018E)  # 1 GiB leaf
    va3 = (255 << 39) | (511 << 30) | 0x1234567
    assert walker.walk(mem.read8, root, va3, mode="radix-4k") == (0x40000000 | 0x1234567, 1 << 30)
    assert walker.walk(mem.read8, root, va + 0x1000, mode="radix-4k") is None  # empty PTE
    assert walker.walk(mem.read8, root, va | (1 << 62), mode="radix-4k") is None  # quadrant 1
    assert walker.walk(mem.read8, root, va | (1 << 52), mode="radix-4k") is None  # beyond RTS
    assert walker.walk(mem.read8, root, va | (3 << 62), mode="radix-4k") == (0x12345123, 4096)
    mem.put(0x22000 + 188 * 8, 0x4000000012345106)  # V clear
    assert walker.walk(mem.read8, root, va, mode="radix-4k") is None
    mem.put(0x21000 + 77 * 8, 0x8000000000022809)  # NLB not aligned to the 4 KiB table
    assert walker.walk(mem.read8, root, va, mode="radix-4k") is None
    mem.put(0x21000 + 77 * 8, 0x8000000000022004)  # NLS < 5
    assert walker.walk(mem.read8, root, va, mode="radix-4k") is None


def test_walker_radix_64k_fragment() -> None:
    mem, root = DictMem(), 0x10000
    va = 0x00007FFF89ABC123  # 255/510/77/11 off 0xc123
    mem.put(root + 255 * 8, 0x8000000000020009)
    mem.put(0x20000 + 510 * 8, 0x8000000000021009)
    mem.put(0x21000 + 77 * 8, 0x8000000003001105)  # vector 7.7 non-leaf #3
    mem.put(0x3001100 + 11 * 8, 0xC000000012340106)
    assert walker.walk(mem.read8, root, va, mode="radix-64k") == (0x1234C123, 1 << 16)


def test_walker_hash_2627_4k() -> None:
    mem, root = DictMem(), 0x1000
    va = 0x00000FFF89ABC123  # 511/120/77/188
    mem.put(root + 511 * 8, KERNELBASE | 0x2000)
    mem.put(0x2000 + 120 * 8, KERNELBASE | 0x2400)
    mem.put(0x2400 + 77 * 8, KERNELBASE | 0x3000)
    mem.put(0x3000 + 188 * 8, 0x00000002468A0313)
    assert walker.walk(mem.read8, root, va, mode="hash-4k") == (0x12345123, 4096)
    assert walker.walk(mem.read8, root, va, mode="hash-4k", profile="2.6.26") == (0x12345123, 4096)
    assert walker.walk(mem.read8, root, va | (1 << 44), mode="hash-4k") is None
    mem.put(0x3000 + 188 * 8, 0x00000002468A0312)  # not present
    assert walker.walk(mem.read8, root, va, mode="hash-4k") is None
    mem.put(0x2400 + 77 * 8, 0x3000)  # a physical address in a pmd: no table
    assert walker.walk(mem.read8, root, va, mode="hash-4k") is None


def test_walker_hash_2627_64k() -> None:
    mem, root = DictMem(), 0x1000
    va = 0x00000ABCDEF01234  # 10/3021/3824 off 0x1234
    mem.put(root + 10 * 8, KERNELBASE | 0x10000)
    mem.put(0x10000 + 3021 * 8, KERNELBASE | 0x20000)
    mem.put(0x20000 + 3824 * 8, 0x0000048D00000313)
    assert walker.walk(mem.read8, root, va, mode="hash-64k") == (0x12341234, 1 << 16)
    mem.put(0x20000 + 3824 * 8, (0x12345 << 30) | 0x20000000 | 0x313)  # _PAGE_4K_PFN
    assert walker.walk(mem.read8, root, va, mode="hash-64k") == (0x12345234, 4096)


def test_walker_hash_618_64k_thp() -> None:
    mem, root = DictMem(), 0x800
    va = (7 << 44) | (5 << 34) | (9 << 24) | 0x123456
    mem.put(root + 7 * 8, 0x8000000000004000)
    mem.put(0x4000 + 5 * 8, 0x8000000000008000)
    mem.put(0x8000 + 9 * 8, 0xC000000001002106)  # THP leaf, pfn 0x100
    assert walker.walk(mem.read8, root, va, mode="hash-64k", profile="6.18") == (
        0x1000000 | 0x123456,
        1 << 24,
    )


def test_walker_matches_plugin_on_hand_built_tables() -> None:
    """Tables encoded with the plugin's helpers, read back by the walker."""
    for (name, profile), m in MODES.items():
        ops, levels = m.ops, m.fmt.levels
        mem = DictMem()
        va = 0x0000_0123_4567_8000 & ((1 << (m.fmt.va_bits - 1)) - 1)
        table, nxt = 0x100000, 0x200000
        for i, lv in enumerate(levels[:-1]):
            idx = (va >> lv.shift) & (lv.entries - 1)
            mem.put(table + idx * 8, int(ops.mk_table_entry(i, nxt)))
            table, nxt = nxt, nxt + 0x100000
        pte = int(ops.pfn_pte(0x777, m.fmt.prot("rw")))
        mem.put(table + ((va >> levels[-1].shift) & (levels[-1].entries - 1)) * 8, pte)
        got = walker.walk(mem.read8, ops.root_value(0x100000), va | 0x18, mode=name, profile=profile)
        off = (va | 0x18) & (m.fmt.page_size - 1)
        assert got == ((0x777 << m.fmt.page_shift) | off, m.fmt.page_size), (name, profile)


# -- the independent walker against tables built by the core --------------------------------


def _machine(key: tuple[str, str]) -> Any:
    mixedmap = pytest.importorskip("mixedmap")
    try:
        return mixedmap.Machine("ppc64", key[1], ram="64M", mode=key[0])
    except mixedmap.UnknownArchError:  # the plugin is importable but not installed
        pytest.skip("ppc64 entry point not installed")


@pytest.mark.parametrize("key", MODE_KEYS, ids=MODE_IDS)
@given(vpns=st.lists(st.integers(0, (1 << 24) - 1), min_size=1, max_size=8, unique=True), data=st.data())
def test_walker_agrees_with_core(key: tuple[str, str], vpns: list[int], data: st.DataObject) -> None:
    m = _machine(key)
    fmt = m.fmt
    pt = m.new_pagetable()
    spread = fmt.va_bits - fmt.page_shift - 24
    vas = [(v << spread << fmt.page_shift) for v in vpns]
    pfns = data.draw(
        st.lists(st.integers(0, min(fmt.max_pfn, 1 << 30) - 1), min_size=len(vas), max_size=len(vas))
    )
    for va, pfn in zip(vas, pfns, strict=True):
        pt.map(va, pfn, data.draw(st.sampled_from(["r", "rw", "rx", "rwx"])))
    probes = [va + 0x18 for va in vas] + [vas[0] + fmt.page_size, (1 << fmt.va_bits) - fmt.page_size]
    got = pt.translate(np.array(probes, dtype=np.uint64)).tolist()

    def read8(pa: int) -> bytes:
        return bytes(m.mem.read(pa, 8))

    for va, pa in zip(probes, got, strict=True):
        w = walker.walk(read8, pt.root, va, mode=key[0], profile=key[1])
        assert (w[0] if w else -1) == pa, f"ppc64/{key[0]} {key[1]} va {va:#x}: walker {w} core {pa:#x}"


@pytest.mark.parametrize(
    ("key", "size"),
    [(("radix-4k", "6.18"), 1 << 21), (("radix-4k", "6.18"), 1 << 30), (("radix-64k", "6.18"), 1 << 21),
     (("radix-64k", "6.18"), 1 << 30), (("hash-64k", "6.18"), 1 << 24)],
    ids=["radix4k-2M", "radix4k-1G", "radix64k-2M", "radix64k-1G", "hash64k-16M"],
)  # fmt: skip
def test_walker_agrees_with_core_on_leaves(key: tuple[str, str], size: int) -> None:
    m = _machine(key)
    pt = m.new_pagetable()
    per = size >> m.fmt.page_shift
    va = 5 * size
    value = pt.map(va, 3 * per, "rw", page_size=size)
    assert value >> 62 == 3  # V | L
    w = walker.walk(lambda pa: bytes(m.mem.read(pa, 8)), pt.root, va + 0x1238, mode=key[0], profile=key[1])
    assert w == ((3 * size) + 0x1238, size)
    assert pt.translate([va + 0x1238])[0] == 3 * size + 0x1238
