"""Boot reservations: what each first-party arch's kernel keeps from the page allocator, and
what the core does with a declaration (and with a bad one)."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from mixedmap import (
    PG,
    AddressError,
    ArchRegistry,
    ArchSpec,
    ArchSpecError,
    Machine,
    PluginError,
    ReservedRange,
    VMBug,
    hookimpl,
)
from mixedmap.testing.synthetic_arch import make_spec

KiB, MiB = 1 << 10, 1 << 20

#: (arch, profile) -> [(start, end)] as the kernel text says (see each plugin's reserved.py).
KERNEL_SAYS = {
    ("s390x", "2.6.26"): [(0, 0x2000), (0x2000, 0x10000)],  # lowcore, then up to startup (head.S)
    ("s390x", "2.6.27"): [(0, 0x2000), (0x2000, 0x10000)],
    ("s390x", "6.18"): [
        (0, 0x2000),
        (0x2000, 0x10000),
    ],  # reserve_lowcore; memblock_reserve(0, STARTUP_NORMAL_OFFSET)
    ("x86_64", "2.6.26"): [(0, 0x1000), (0x6000, 0x8000), (0x9F000, MiB)],  # early_res[]; reserve_ebda_region
    ("x86_64", "2.6.27"): [(0, 0x1000), (0x6000, 0x8000), (0x9F000, MiB)],
    ("x86_64", "6.18"): [(0, MiB)],  # reserve_real_mode: memblock_reserve(0, SZ_1M)
    ("ppc64", "2.6.26"): [(0, 0x8000)],  # the interrupt vectors at the bottom of the kernel
    ("ppc64", "2.6.27"): [(0, 0x8000)],
    ("ppc64", "6.18"): [(0, 0x8000)],
}
FIRST_PARTY = ("s390x", "x86_64", "ppc64")


def every_mode(arches: tuple[str, ...] = FIRST_PARTY) -> list[tuple[str, str, dict[str, object]]]:
    reg = ArchRegistry.load(disable=())
    out = []
    for name in arches:
        for m in reg.bind(name).spec.modes:
            out.append((name, m.profile, {"mode": m.name, **dict(m.options)}))
    return out


MODES = every_mode()
IDS = [f"{a}-{p}-{o['mode']}" + ("-edat1" if o.get("edat1") else "") for a, p, o in MODES]


@pytest.mark.parametrize(("arch", "profile", "options"), MODES, ids=IDS)
def test_first_root_table_is_not_at_pa0(arch: str, profile: str, options: dict[str, object]) -> None:
    """On RAM at 0 the first root table used to land at PA 0 (s390x: ASCE 0x1c7), where the
    real machine has its lowcore, BIOS page or vectors; now it is the first frame the boot
    reservations leave, aligned as the top level needs."""
    m = Machine(arch, profile, **options)
    fmt = m.fmt
    want = [(s, e) for s, e in KERNEL_SAYS[(arch, profile)]]
    if fmt.page_size > 0x8000 and arch == "ppc64":  # one 64 KiB page holds the vectors
        want = [(0, fmt.page_size)]
    assert [(r.start, r.end) for r in m.reserved] == want, [str(r) for r in m.reserved]
    align = max(fmt.levels[0].align, fmt.page_size)
    pa = 0
    while any(pa < r.end and r.start < pa + fmt.levels[0].alloc_bytes for r in m.reserved):
        pa += align
    pt = m.new_pagetable()
    assert pt.root_pa == pa != 0, (
        f"{arch} {profile} {options}: root {pt.root:#x} at {pt.root_pa:#x}, want {pa:#x}"
    )
    assert pt.root == m.mode.mode.ops.root_value(pa)


def test_s390x_asce_no_longer_designates_pa0() -> None:
    pt = Machine("s390x").new_pagetable()
    assert pt.root != 0x1C7 and pt.root & ~0xFFF == pt.root_pa == 0x10000, hex(pt.root)


@pytest.mark.parametrize("arch", FIRST_PARTY)
@pytest.mark.parametrize("profile", ["2.6.27", "6.18"])
def test_reserved_frames_have_reserved_struct_pages(arch: str, profile: str) -> None:
    """memmap_init_zone / __init_single_page: refcount 1, PG_reserved; never free, not leaks."""
    m = Machine(arch, profile, ram="64M")
    shift = m.fmt.page_shift
    held = 0
    for r in m.reserved:
        for pfn in range(r.start >> shift, r.end >> shift):
            info = m.page(pfn)
            assert info is not None and (info.refcount, info.mapcount, info.flags) == (1, 0, PG.reserved), (
                pfn,
                info,
            )
        held += r.size >> shift
    assert held and m.frames.nr_reserved == held
    assert m.frames.nr_free == (64 * MiB >> shift) - held
    assert m.accounting()["free_ram_bytes"] == 64 * MiB - (held << shift)
    assert m.pages.leaks() == {}
    first_free = int(np.flatnonzero(m.pages.free_mask())[0])
    assert all(not r.start >> shift <= first_free < r.end >> shift for r in m.reserved)


def test_freeing_a_reserved_frame_is_a_bug_and_changes_nothing() -> None:
    m = Machine("x86_64", "6.18", ram="64M")
    before = (m.frames._used.copy(), m.frames.nr_free)
    with pytest.raises(VMBug, match=r"frame 0x5 is reserved at boot"):
        m.frames.free(np.array([5], dtype=np.uint64))
    with pytest.raises(VMBug, match=r"reserved at boot"):  # a batch that also holds a real page
        (pfn,) = m.pages.alloc_pages(1).tolist()
        m.frames.free(np.array([0x10, pfn], dtype=np.uint64))
    m.pages.free_pages(pfn)
    assert (m.frames._used == before[0]).all() and m.frames.nr_free == before[1]


def test_reserve_refuses_frames_outside_ram_or_in_use() -> None:
    m = Machine("s390x", ram="64M")
    with pytest.raises(AddressError, match="outside RAM"):
        m.frames.reserve(m.frames.end_pfn - 1, 2)
    (pfn,) = m.pages.alloc_pages(1).tolist()
    with pytest.raises(AddressError, match="already in use"):
        m.frames.reserve(pfn, 1)


def test_ram_above_a_phys_reservation_leaves_it_out() -> None:
    """RAM placed above the low reservations (the high-RAM checks): nothing to reserve there."""
    m = Machine("x86_64", "6.18", ram="64M", ram_base=4 << 30)
    assert m.reserved == () and m.new_pagetable().root_pa == 4 << 30
    m = Machine("s390x", ram="64M", ram_base=0x10000)
    assert m.reserved == () and m.new_pagetable().root_pa == 0x10000


def test_reservation_ram_does_not_hold_is_an_error_naming_the_plugin() -> None:
    with pytest.raises(AddressError, match=r"mixedmap-s390.*boot area \[0x2000, 0x10000\).*not inside RAM"):
        Machine("s390x", ram="32K")
    with pytest.raises(AddressError, match=r"mixedmap-s390.*boot area.*not inside RAM \[0x8000"):
        Machine("s390x", ram="64M", ram_base=0x8000)  # RAM starts inside the boot area
    with pytest.raises(AddressError, match=r"mixedmap-x86.*leave no free RAM"):
        Machine("x86_64", "6.18", ram="1M")


class ReservingToy:
    """toyarch with the given boot reservations in every mode (built in the hook, as a
    third-party plugin would, so a bad declaration is a load error naming the plugin)."""

    def __init__(self, *reserved: ReservedRange) -> None:
        self.reserved = reserved

    @hookimpl
    def mixedmap_arch_spec(self) -> ArchSpec:
        spec = make_spec("resvtoy")
        modes = tuple(
            attrs.evolve(m, memory=attrs.evolve(m.memory, reserved=self.reserved)) for m in spec.modes
        )
        return attrs.evolve(spec, modes=modes)


def _toy(*reserved: ReservedRange) -> ArchRegistry:
    return ArchRegistry.load(extra=[("resvtoy", ReservingToy(*reserved))], entry_points=False, disable=())


def _r(start: int, size: int, name: str = "fw", anchor: str = "phys") -> ReservedRange:
    return ReservedRange(start=start, size=size, name=name, kernel_ref="fictional.c: reserve", anchor=anchor)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reserved", "message"),
    [
        ((_r(0x800, 0x1000),), r"fw \[0x800, 0x1800\) is not aligned to the 0x1000-byte page"),
        ((_r(0, 0x3000, "a"), _r(0x2000, 0x1000, "b")), r"b \[0x2000, 0x3000\) overlaps a \[0x0, 0x3000\)"),
        (
            (_r(1 << 40, 0x1000),),
            r"fw \[0x10000000000, 0x10000001000\) ends beyond the 40 physical address bits",
        ),
    ],
    ids=["misaligned", "overlapping", "beyond-pa-bits"],
)
def test_bad_declaration_is_a_load_error_naming_plugin_and_range(
    reserved: tuple[ReservedRange, ...], message: str
) -> None:
    reg = _toy(*reserved)
    assert "resvtoy" not in reg.names
    with pytest.raises(PluginError, match=r"entry point 'resvtoy'.*ArchSpecError.*" + message):
        Machine("resvtoy", registry=reg)


def test_bad_range_values_are_refused() -> None:
    with pytest.raises(ArchSpecError, match="size 0x0"):
        _r(0, 0)
    with pytest.raises(ArchSpecError, match="kernel_ref"):
        ReservedRange(start=0, size=0x1000, name="x", kernel_ref="")


def test_ram_anchored_range_moves_with_ram() -> None:
    reg = _toy(_r(0, 0x4000, "firmware", "ram"), _r(0x10000, 0x1000, "low page"))
    m = Machine("resvtoy", "6.18", ram="64M", registry=reg)
    assert [(r.name, r.start, r.end) for r in m.reserved] == [
        ("firmware", 0, 0x4000),
        ("low page", 0x10000, 0x11000),
    ]
    base = 0x8000_0000
    m = Machine("resvtoy", "6.18", ram="64M", ram_base=base, registry=reg)
    assert [(r.name, r.start, r.anchor) for r in m.reserved] == [("firmware", base, "phys")]
    assert m.new_pagetable().root_pa == base + 0x4000
    with pytest.raises(AddressError, match=r"firmware \[RAM\+0x0, RAM\+0x4000\).*not inside RAM"):
        Machine("resvtoy", "6.18", ram="8K", registry=reg)


def test_ram_and_phys_ranges_that_meet_in_ram_are_an_error() -> None:
    reg = _toy(_r(0, 0x4000, "firmware", "ram"), _r(0x10000, 0x1000, "page"))
    with pytest.raises(AddressError, match=r"overlaps firmware"):
        Machine("resvtoy", "6.18", ram="64M", ram_base=0xE000, registry=reg)


def test_riscv64_firmware_sits_at_the_start_of_ram() -> None:
    pytest.importorskip("mixedmap_riscv64")
    base = 0x8000_0000  # QEMU virt DRAM
    m = Machine("riscv64", ram="64M", ram_base=base)
    assert [(r.name, r.start, r.size) for r in m.reserved] == [("SBI firmware", base, 256 * KiB)]
    assert m.new_pagetable().root_pa == base + 256 * KiB


def test_arches_command_shows_reserved_ranges(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``mixedmap arches``: per profile (default mode) and per mode in --json, and in the table."""
    from mixedmap.cli import run

    monkeypatch.setenv("COLUMNS", "200")  # one range per table line

    assert run(["arches", "--json"]) == 0
    recs = {a["name"]: a for a in json.loads(capsys.readouterr().out)["arches"]}
    reg = ArchRegistry.load(disable=())
    for name in FIRST_PARTY:
        spec = reg.bind(name).spec
        rec = recs[name]
        for p in spec.profiles:
            want = spec.select(p, {}).memory.reserved
            got = rec["reserved"][p]
            assert [(g["name"], g["start"], g["end"], g["kernel_ref"]) for g in got] == [
                (r.name, hex(r.start), hex(r.end), r.kernel_ref) for r in want
            ], (name, p)
            assert [(s, e) for s, e in KERNEL_SAYS[(name, p)]] == [
                (int(g["start"], 16), int(g["end"], 16)) for g in got
            ]
        for mrec, mode in zip(rec["modes"], spec.modes, strict=True):
            assert [g["text"] for g in mrec["reserved"]] == [str(r) for r in mode.memory.reserved], mode.name
    assert run(["arches"]) == 0
    out = capsys.readouterr().out
    assert "reserved at boot" in out and "lowcore [0x0, 0x2000)" in out and "low 1 MiB [0x0, 0x100000)" in out
