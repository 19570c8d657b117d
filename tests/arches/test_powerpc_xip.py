"""ppc64 XIP driver model ``axonram`` (arch-formats.md 6.3, arch/powerpc/sysdev/axonram.c):
profiles, lifecycle, direct_access arithmetic per page size, no struct pages, memmap cost,
contents, the errno cases (each changing nothing), release, ECC, and the 2.6.27 pfn quirk."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mixedmap_powerpc")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mixedmap_powerpc import axonram, plugin
from mixedmap_powerpc.axonram import ENODEV, AxonRamDevice

from mixedmap import (
    EEXIST,
    EINVAL,
    ENOENT,
    ENOSPC,
    ERANGE,
    AddressError,
    KernelErrno,
    Machine,
    ProfileError,
    XipDriverModel,
)
from mixedmap.cli import run

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
KERNELBASE = 0xC000_0000_0000_0000
U64 = (1 << 64) - 1

OLD = ("2.6.26", "2.6.27")
PAGE_SIZES = (4096, 65536)
CASES = [(k, ps) for k in OLD for ps in PAGE_SIZES]
CASE_IDS = [f"{k}-{'4k' if ps == 4096 else '64k'}" for k, ps in CASES]


def machine(kernel: str = "2.6.27", page_size: int = 4096, ram: str | int = "256M") -> Machine:
    return Machine("ppc64", kernel, ram=ram, mmu="hash", page_size=page_size)


def bank(m: Machine, **params: Any) -> AxonRamDevice:
    dev = m.create_xip_device("axonram", **params)
    assert isinstance(dev, AxonRamDevice)
    return dev


def snapshot(m: Machine) -> tuple[Any, ...]:
    """Everything a refused call must leave alone (the next default name included)."""
    return (
        list(m.regions),
        dict(m.devices),
        m.frames.nr_free,
        m.memmap_bytes(),
        m.mem.stored_bytes,
        axonram._next_name(m),
    )


# -- the hook and the profiles ---------------------------------------------------------------
def test_hook_offers_axonram_for_the_2008_profiles_only() -> None:
    (model,) = tuple(plugin.mixedmap_xip_drivers())
    assert isinstance(model, XipDriverModel)
    assert model.name == "axonram" and model.profiles == OLD
    assert [k for k, _ in model.params] == ["start", "size", "name"]


@pytest.mark.parametrize(("kernel", "page_size"), CASES, ids=CASE_IDS)
def test_offered_under_2626_and_2627(kernel: str, page_size: int) -> None:
    assert "axonram" in machine(kernel, page_size).xip_drivers()


@pytest.mark.parametrize("mode", ["radix-4k", "radix-64k", "hash-4k", "hash-64k"])
def test_refused_under_618_naming_the_profiles_it_models(mode: str) -> None:
    m = Machine("ppc64", "6.18", mode=mode)
    assert "axonram" not in m.xip_drivers()
    before = snapshot(m)
    with pytest.raises(ProfileError, match=r"axonram.*6\.18.*2\.6\.26, 2\.6\.27"):
        m.create_xip_device("axonram", size="1G")
    assert snapshot(m) == before


# -- lifecycle and placement -------------------------------------------------------------------
@pytest.mark.parametrize(("kernel", "page_size"), CASES, ids=CASE_IDS)
def test_lifecycle_names_and_default_placement(kernel: str, page_size: int) -> None:
    m = machine(kernel, page_size, ram="256M")
    a0 = bank(m)
    assert (a0.name, a0.start, a0.size) == ("axonram0", 1 * GiB, 1 * GiB)
    assert a0.describe()["read_only"] is False and a0.capacity == GiB >> 9 == a0.nr_sectors
    a1 = bank(m, size="512M")
    assert (a1.name, a1.start) == ("axonram1", 2 * GiB)
    region = m.regions["axonram1"]
    assert (region.start, region.size, region.memmap, region.owner) == (2 * GiB, 512 * MiB, False, "axonram")
    m.remove_xip_device("axonram0")
    assert "axonram0" not in m.regions and "axonram0" not in m.devices
    # the static bank counter is never reused; the freed 1 GiB slot is
    a2 = bank(m, size="1G")
    assert (a2.name, a2.bank_id, a2.start) == ("axonram2", 2, 1 * GiB)
    assert set(m.devices) == {"axonram1", "axonram2"}


def test_default_start_skips_occupied_ranges_and_sections_with_struct_pages() -> None:
    m = machine(ram="1G")
    m.add_region("other", 1 * GiB, 64 * MiB, memmap=False)
    m.add_region("withpages", 3 * GiB - 16 * MiB, 4 * KiB, memmap=True)
    a = bank(m, size="1G")
    # 1G is taken by "other"; [2G, 3G) would share the last memory section with "withpages"
    assert a.start == 3 * GiB


def test_explicit_start_from_the_device_tree() -> None:
    m = machine()
    a = bank(m, start="0x240000000", size="256M", name="axonram7")
    assert (a.start, a.name, a.phys_range) == (0x2_4000_0000, "axonram7", (0x2_4000_0000, 0x2_5000_0000))
    # every probe takes the next id of the driver's static counter, named or not
    assert a.bank_id == 0
    assert bank(m, size="16M").name == "axonram1"


def test_no_room_below_max_physmem_bits_is_enospc() -> None:
    m = machine()  # 2.6.27 MAX_PHYSMEM_BITS = 44: 16 TiB
    bank(m, size=8 * TiB)
    before = snapshot(m)
    with pytest.raises(ENOSPC, match="MAX_PHYSMEM_BITS=44"):
        bank(m, size=8 * TiB)
    assert snapshot(m) == before


# -- struct pages and memmap cost --------------------------------------------------------------
@pytest.mark.parametrize(("kernel", "page_size"), CASES, ids=CASE_IDS)
def test_no_struct_pages_pfn_valid_false(kernel: str, page_size: int) -> None:
    m = machine(kernel, page_size)
    a = bank(m, size="64M")
    shift = m.fmt.page_shift
    pfns = np.arange(a.start >> shift, a.phys_range[1] >> shift, dtype=np.uint64)
    assert not m.pfn_valid(pfns).any()
    assert a.has_struct_page is False and a.memmap_bytes == 0
    assert m.page(int(pfns[0])) is None and m.page(int(pfns[-1])) is None
    assert m.pfn_valid((m.ram_size >> shift) - 1)[0]  # RAM keeps its struct pages


@pytest.mark.parametrize(("kernel", "page_size"), CASES, ids=CASE_IDS)
def test_memmap_of_a_1gib_bank_is_zero_and_ram_memmap_is_unchanged(kernel: str, page_size: int) -> None:
    m = machine(kernel, page_size, ram="1G")
    struct_page = m.mode.mode.memory.struct_page_size
    ram_memmap = GiB // page_size * struct_page
    # 1 GiB with struct pages costs 16 MiB at 4 KiB pages (1 MiB at 64 KiB): System RAM here
    assert m.memmap_bytes() == m.memmap_bytes("System RAM") == ram_memmap
    if page_size == 4096:
        assert ram_memmap == 16 * MiB
    a = bank(m, size="1G")
    assert a.memmap_bytes == 0 == m.memmap_bytes(a.name) == a.describe()["memmap_bytes"]
    assert m.memmap_bytes() == ram_memmap
    assert m.accounting()["memmap_bytes"] == ram_memmap


# -- direct_access -----------------------------------------------------------------------------
@pytest.mark.parametrize(("kernel", "page_size"), CASES, ids=CASE_IDS)
def test_direct_access_page_aligned(kernel: str, page_size: int) -> None:
    m = machine(kernel, page_size)
    a = bank(m, size="64M")
    shift = m.fmt.page_shift
    per_page = page_size // 512
    assert a.direct_access(0) == (a.start, a.start >> shift)
    assert a.direct_access(per_page) == (a.start + page_size, (a.start >> shift) + 1)
    last = a.capacity - per_page
    assert a.direct_access(last) == (a.start + 64 * MiB - page_size, ((a.start + 64 * MiB) >> shift) - 1)
    with pytest.raises(ERANGE, match="outside of address space"):
        a.direct_access(a.capacity)


@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_direct_access_has_no_alignment_check(page_size: int) -> None:
    m = machine(page_size=page_size)
    a = bank(m, size="16M")
    kaddr, pfn = a.direct_access(3)
    assert (kaddr, pfn) == (a.start + 3 * 512, a.start >> m.fmt.page_shift)
    assert a.direct_access(a.capacity - 1)[0] == a.phys_range[1] - 512


def test_direct_access_partition_start_and_64bit_wrap() -> None:
    m = machine()
    a = bank(m, size="16M")
    assert a.direct_access(8, part_start=2048) == a.direct_access(2056)
    with pytest.raises(ERANGE):
        a.direct_access(0, part_start=a.capacity)
    # loff_t arithmetic: (2**55) << 9 == 2**64 == 0 modulo 2**64
    assert a.direct_access(1 << 55) == a.direct_access(0)
    assert a.direct_access(U64, part_start=1) == a.direct_access(0)
    with pytest.raises(ERANGE):
        a.direct_access((1 << 55) + a.capacity)
    for bad in (-1, 1 << 64):
        with pytest.raises(EINVAL, match="sector_t"):
            a.direct_access(bad)


@given(
    size_pages=st.integers(1, 4096),
    sector=st.integers(0, U64),
    page_size=st.sampled_from(PAGE_SIZES),
    kernel=st.sampled_from(OLD),
)
def test_direct_access_property(size_pages: int, sector: int, page_size: int, kernel: str) -> None:
    m = machine(kernel, page_size)
    a = bank(m, size=size_pages * page_size)
    offset = (sector << 9) & U64
    if offset >= a.size:
        with pytest.raises(ERANGE):
            a.direct_access(sector)
        return
    kaddr, pfn = a.direct_access(sector)
    assert kaddr == a.start + offset
    assert pfn == (a.start + offset) >> m.fmt.page_shift == a.frame(offset // page_size)
    assert not m.pfn_valid(pfn)[0]


@given(sector=st.integers(0, (64 * MiB >> 9) - 1), page_size=st.sampled_from(PAGE_SIZES))
def test_direct_access_agrees_with_the_contents(sector: int, page_size: int) -> None:
    m = machine(page_size=page_size)
    a = bank(m, size="64M")
    a.write(sector * 512, sector.to_bytes(8, "big"))
    kaddr, pfn = a.direct_access(sector)
    # kaddr is the physical address: the bytes live there, in frame pfn
    assert m.mem.read(kaddr, 8) == sector.to_bytes(8, "big")
    assert pfn == kaddr >> m.fmt.page_shift


# -- the 2.6.27 pfn bug ------------------------------------------------------------------------
@pytest.mark.parametrize(("page_size", "slot", "expect"), [
    (4096, KERNELBASE + 0x0123_4568, 0x1234),
    (65536, KERNELBASE + 0x0123_4568, 0x123),
    (4096, KERNELBASE + 0x0FFF_FFF8, 0xFFFF),
    (4096, 0x4000_0000, ((0x4000_0000 - KERNELBASE) & U64) >> 12),  # __pa wraps below PAGE_OFFSET
])  # fmt: skip
def test_literal_pfn_is_pa_of_the_callers_slot(page_size: int, slot: int, expect: int) -> None:
    m = machine(page_size=page_size)
    a = bank(m, size="16M")
    assert a.literal_pfn(slot) == expect
    kaddr, literal = a.literal_direct_access(8 * (page_size // 512), slot)
    assert kaddr == a.start + 8 * page_size and literal == expect
    assert a.direct_access(8 * (page_size // 512))[1] == (a.start >> m.fmt.page_shift) + 8 != literal


def test_literal_pfn_of_a_stack_slot_is_a_ram_page_with_struct_page() -> None:
    m = machine()
    a = bank(m, size="16M")
    stack_slot = KERNELBASE + 0x0ABC_DEF0  # a kernel stack in the linear mapping of RAM
    literal = a.literal_pfn(stack_slot)
    assert m.pfn_valid(literal)[0] and m.page(literal) is not None
    quirks = a.describe()["quirks"]
    assert {"pfn_of_pointer_argument", "kaddr_is_physical", "no_alignment_check"} <= set(quirks)
    assert "literal_pfn" in quirks["pfn_of_pointer_argument"]


# -- contents ----------------------------------------------------------------------------------
@pytest.mark.parametrize("page_size", PAGE_SIZES)
def test_contents_round_trip_bytes_and_file(page_size: int, tmp_path: Path) -> None:
    m = machine(page_size=page_size)
    a = bank(m, size="4M")
    assert a.read(0, 16) == bytes(16)
    blob = bytes(range(256)) * 300  # crosses page boundaries
    assert a.fill(blob, offset=page_size - 100) == len(blob)
    assert a.read(page_size - 100, len(blob)) == blob
    a.write(4 * MiB - 8, b"lastword")  # writable: no read-only handling in the driver
    assert a.read(4 * MiB - 8, 8) == b"lastword" == m.mem.read(a.phys_range[1] - 8, 8)
    image = tmp_path / "image.bin"
    image.write_bytes(b"\x7fELF" + bytes(5000))
    a.fill(image, offset=2 * page_size)
    assert a.read(2 * page_size, 4) == b"\x7fELF"
    with pytest.raises(AddressError, match="outside the device"):
        a.write(4 * MiB - 4, b"too long")
    assert a.read(4 * MiB - 8, 8) == b"lastword"


# -- refused calls change nothing --------------------------------------------------------------
REFUSALS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("zero-size", {"size": 0}, ENODEV, "No DDR2 memory found"),
    ("negative-size", {"size": -4096}, EINVAL, "negative"),
    ("size-not-page-multiple", {"size": 4096 + 512}, AddressError, "page size"),
    ("unparsable-size", {"size": "lots"}, AddressError, "cannot parse"),
    ("overlaps-ram", {"start": 0, "size": "16M"}, AddressError, "overlaps 'System RAM'"),
    ("overlaps-bank", {"start": "1G", "size": "16M"}, AddressError, "overlaps 'axonram0'"),
    ("unaligned-start", {"start": 0x5000_0800, "size": "16M"}, AddressError, "not aligned"),
    ("shares-ram-section", {"start": "200M", "size": "16M"}, AddressError, "shares"),
    ("beyond-max-physmem", {"start": 1 << 44, "size": "16M"}, AddressError, "MAX_PHYSMEM_BITS"),
    ("negative-start", {"start": -4096, "size": "16M"}, AddressError, "negative"),
    ("duplicate-name", {"name": "axonram0", "size": "16M"}, EEXIST, "already exists"),
    ("bad-name", {"name": "a/b", "size": "16M"}, EINVAL, "disk name"),
    ("long-name", {"name": "x" * 32, "size": "16M"}, EINVAL, "disk name"),
    ("unknown-param", {"size": "16M", "shared": 1}, EINVAL, "unknown parameter"),
]


@pytest.mark.parametrize(("params", "exc", "text"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refused_probe_changes_nothing(params: dict[str, Any], exc: type[Exception], text: str) -> None:
    m = machine(ram="200M")  # 200 MiB: RAM ends inside a 16 MiB memory section
    first = bank(m, size="64M")
    first.fill(b"keep")
    before = snapshot(m)
    with pytest.raises(exc, match=text):
        m.create_xip_device("axonram", **params)
    assert snapshot(m) == before
    assert first.read(0, 4) == b"keep"
    assert bank(m, size="16M").name == "axonram1"


def test_zero_sized_bank_errno_is_enodev() -> None:
    m = machine()
    with pytest.raises(KernelErrno) as info:
        bank(m, size=0)
    assert info.value.errno == errno.ENODEV and info.value.errname == "ENODEV"


# -- release -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("kernel", "page_size"), CASES, ids=CASE_IDS)
def test_release_frees_everything(kernel: str, page_size: int) -> None:
    m = machine(kernel, page_size)
    before = snapshot(m)
    a = bank(m, size="32M")
    a.fill(b"x" * 3 * page_size)
    assert m.frames.nr_free == before[2]  # the bank takes no RAM pages
    assert m.mem.stored_bytes > before[4]
    m.remove_xip_device(a.name)
    assert list(m.regions) == before[0] and m.devices == {}
    assert m.mem.stored_bytes == before[4] and m.frames.nr_free == before[2]
    assert m.memmap_bytes() == before[3]
    with pytest.raises(ENODEV, match="removed"):
        a.direct_access(0)
    with pytest.raises(ENODEV):
        a.read(0, 1)
    a.release()  # idempotent
    with pytest.raises(ENOENT):
        m.remove_xip_device(a.name)
    # a new bank at the same address reads zeros: the region's bytes were discarded
    b = bank(m, start=a.start, size="32M")
    assert b.read(0, 8) == bytes(8) and b.name == "axonram1"


# -- ECC counter -------------------------------------------------------------------------------
def test_ecc_counter_sysfs_attribute() -> None:
    a = bank(machine(), size="16M")
    assert a.sysfs_ecc() == "0\n"
    assert a.ecc_interrupt() == 1 and a.ecc_interrupt() == 2
    assert a.sysfs_ecc() == "2\n" and a.describe()["ecc"] == 2


def test_describe_fields() -> None:
    m = machine(page_size=65536)
    d = bank(m, size="1G").describe()
    assert d["driver"] == "axonram" and d["struct_page"] is False and d["memmap_bytes"] == 0
    assert (d["phys_start"], d["phys_end"], d["ph_addr"]) == (GiB, 2 * GiB, GiB)
    assert (d["capacity_sectors"], d["sector_size"], d["minors"], d["page_size"]) == (
        GiB >> 9,
        512,
        16,
        65536,
    )
    assert d["dt_node_type"] == "dma-memory"


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_creates_a_bank(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["xip", "create", "--arch", "ppc64", "--kernel", "2.6.27", "-d", "axonram", "-p", "size=256M"]
    assert run([*argv, "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["direct_access(0)"] == {"kaddr": "0x40000000", "pfn": "0x40000", "pfn_valid": False}
    assert rec["device"]["struct_page"] is False
