"""x86_64 XIP driver models: brd (2.6.26, 2.6.27) and legacy pmem (6.18).

Lifecycle, the errno cases, contents round trips, struct-page presence per profile and
option, the memmap arithmetic (a 1 GiB device: 16 MiB with struct pages, 0 without), that a
refused call changes nothing and that teardown gives back everything it took.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

pytest.importorskip("mixedmap_x86")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mixedmap_x86 import plugin
from mixedmap_x86.xip_brd import BrdDevice
from mixedmap_x86.xip_pmem import PmemDevice

from mixedmap import (
    EBUSY,
    EEXIST,
    EINVAL,
    ENOENT,
    ENOMEM,
    ERANGE,
    PG,
    AddressError,
    KernelErrno,
    Machine,
    ProfileError,
)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
PAGE = 4096
SECTORS_PER_PAGE = PAGE // 512
PAGE_OFFSET = {
    ("2.6.26", "4level"): 0xFFFF_8100_0000_0000,
    ("2.6.27", "4level"): 0xFFFF_8800_0000_0000,
    ("6.18", "4level"): 0xFFFF_8880_0000_0000,
    ("6.18", "la57"): 0xFF11_0000_0000_0000,
}
BRD_PROFILES = ("2.6.26", "2.6.27")


def machine(kernel: str, ram: int | str = "256M", **opts: Any) -> Machine:
    return Machine("x86_64", kernel, ram=ram, **opts)


def snapshot(m: Machine) -> tuple[Any, ...]:
    """Everything a refused call must leave alone."""
    return (
        list(m.regions),
        sorted(m.devices),
        m.memmap_bytes(),
        m.pages.nr_free,
        m.memmap.sections.tolist(),
        m.mem.stored_bytes,
    )


def brd(m: Machine, **params: Any) -> BrdDevice:
    dev = m.create_xip_device("brd", **params)
    assert isinstance(dev, BrdDevice)
    return dev


def pmem(m: Machine, **params: Any) -> PmemDevice:
    dev = m.create_xip_device("pmem", **params)
    assert isinstance(dev, PmemDevice)
    return dev


def struct_page_bytes(m: Machine, size: int) -> int:
    return size // m.page_size * m.mode.mode.memory.struct_page_size


# -- registration and profiles ----------------------------------------------------------------
def test_hook_offers_both_models() -> None:
    names = {d.name: d for d in plugin.mixedmap_xip_drivers()}
    assert set(names) == {"brd", "pmem"}
    assert names["brd"].profiles == BRD_PROFILES
    assert names["pmem"].profiles == ("6.18",)


@pytest.mark.parametrize(
    ("kernel", "drivers"), [("2.6.26", ["brd"]), ("2.6.27", ["brd"]), ("6.18", ["pmem"])]
)
def test_drivers_per_profile(kernel: str, drivers: list[str]) -> None:
    assert sorted(machine(kernel).xip_drivers()) == drivers


@pytest.mark.parametrize(("kernel", "driver"), [("6.18", "brd"), ("2.6.27", "pmem"), ("2.6.26", "pmem")])
def test_core_refuses_a_model_outside_its_profiles(kernel: str, driver: str) -> None:
    m = machine(kernel)
    before = snapshot(m)
    with pytest.raises(ProfileError, match=driver):
        m.create_xip_device(driver, size="64M")
    assert snapshot(m) == before


# -- brd: lifecycle -----------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", BRD_PROFILES)
def test_brd_allocates_on_demand_and_frees_on_release(kernel: str) -> None:
    m = machine(kernel)
    free0, mm0 = m.pages.nr_free, m.memmap_bytes()
    dev = brd(m, size="64M")
    assert (dev.name, dev.size, dev.nr_sectors) == ("ram0", 64 * MiB, 64 * MiB // 512)
    assert dev.pages_allocated == 0 and m.pages.nr_free == free0
    assert dev.read(0, 3 * PAGE) == bytes(3 * PAGE)  # never-touched pages read as zeros ...
    assert dev.pages_allocated == 0 and m.pages.nr_free == free0  # ... without allocating

    kaddr, pfn = dev.direct_access(0)
    assert kaddr == PAGE_OFFSET[(kernel, "4level")] + pfn * PAGE
    assert bool(m.pfn_valid(pfn)[0]) and dev.has_struct_page
    info = m.page(pfn)
    assert info is not None
    assert (info.refcount, info.mapcount, info.index) == (1, 0, 0)
    assert info.flags & PG.driver
    assert dev.direct_access(0) == (kaddr, pfn)  # the same page again, nothing new
    assert dev.pages_allocated == 1 and m.pages.nr_free == free0 - 1

    _, pfn5 = dev.direct_access(5 * SECTORS_PER_PAGE)
    info5 = m.page(pfn5)
    assert info5 is not None and info5.index == 5  # page->index = page offset
    assert dev.frame(5) == pfn5 and dev.frame(4) is None
    assert m.memmap_bytes() == mm0  # brd pages are RAM: no memmap is added

    m.remove_xip_device("ram0")
    assert m.pages.nr_free == free0 and m.pages.leaks() == {}
    assert "ram0" not in m.devices
    with pytest.raises(ENOENT):
        m.remove_xip_device("ram0")


def test_brd_default_size_and_names() -> None:
    m = machine("2.6.27")
    first, second = brd(m), brd(m)
    assert (first.name, second.name) == ("ram0", "ram1")
    assert first.size == 4096 * KiB  # CONFIG_BLK_DEV_RAM_SIZE
    m.remove_xip_device("ram0")
    assert brd(m).name == "ram0"  # the lowest free number again
    assert brd(m, name="ram7").name == "ram7"


def test_brd_teardown_refused_while_a_page_is_referenced() -> None:
    m = machine("2.6.26")
    dev = brd(m, size="1M")
    _, pfn = dev.direct_access(8)
    m.pages.get_page(pfn)  # a normal 2.6.26 XIP mapping holds a reference
    before = snapshot(m)
    with pytest.raises(EBUSY, match=f"{pfn:#x}"):
        m.remove_xip_device(dev.name)
    assert snapshot(m) == before and dev.name in m.devices and dev.frame(1) == pfn
    m.pages.put_page(pfn)
    m.remove_xip_device(dev.name)
    assert m.pages.leaks() == {}


def test_brd_released_device_is_dead() -> None:
    m = machine("2.6.27")
    dev = brd(m, size="1M")
    dev.fill(b"x" * 100)
    m.remove_xip_device(dev.name)
    free = m.pages.nr_free
    for call in (lambda: dev.direct_access(0), lambda: dev.fill(b"y"), lambda: dev.read(0, 1)):
        with pytest.raises(KernelErrno) as exc:
            call()
        assert exc.value.errno == errno.ENODEV
    dev.release()  # idempotent
    assert m.pages.nr_free == free and m.pages.leaks() == {}


# -- brd: errno cases ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "sector", "err"),
    [
        (64 * KiB, 1, EINVAL),
        (64 * KiB, 7, EINVAL),
        (64 * KiB, -8, EINVAL),
        (64 * KiB, 128, ERANGE),  # == capacity
        (64 * KiB, 1 << 40, ERANGE),
        (6 * KiB, 8, ERANGE),  # rd_size=6: sector 8 + 8 > 12, the page is only half inside
        (6 * KiB, 4, EINVAL),
    ],
    ids=["unaligned1", "unaligned7", "negative", "at-capacity", "far", "partial-page", "partial-unaligned"],
)
def test_brd_direct_access_errors_change_nothing(size: int, sector: int, err: type[KernelErrno]) -> None:
    m = machine("2.6.27")
    dev = brd(m, size=size)
    before = snapshot(m)
    with pytest.raises(err, match="ram0"):
        dev.direct_access(sector)
    assert snapshot(m) == before and dev.pages_allocated == 0


def test_brd_partial_last_page_is_readable_and_writable() -> None:
    m = machine("2.6.27")
    dev = brd(m, size=6 * KiB)
    dev.fill(b"\xab" * 2048, 4096)
    assert dev.read(4096, 2048) == b"\xab" * 2048
    assert dev.memmap_bytes == 2 * 64  # two pages, the last only half used
    with pytest.raises(AddressError):
        dev.fill(b"z", 6 * KiB)


def test_brd_enomem_changes_nothing() -> None:
    m = machine("2.6.27", ram="16M")
    dev = brd(m, size="64M")  # bigger than RAM: allowed, pages come on demand
    dev.fill(b"keep", 0)
    hog = m.pages.alloc_pages(m.pages.nr_free - 2)
    before = snapshot(m)
    with pytest.raises(ENOMEM):
        dev.fill(bytes(3 * PAGE), PAGE)  # needs 3 new pages, 2 are free
    assert snapshot(m) == before and dev.pages_allocated == 1
    dev.fill(bytes(2 * PAGE), PAGE)  # 2 fit
    with pytest.raises(ENOMEM):
        dev.direct_access(3 * SECTORS_PER_PAGE)
    assert dev.pages_allocated == 3 and dev.read(0, 4) == b"keep"
    m.pages.free_pages(hog)
    m.remove_xip_device(dev.name)
    assert m.pages.leaks() == {}


@pytest.mark.parametrize(
    ("params", "err"),
    [
        ({"size": 0}, EINVAL),
        ({"size": 1000}, EINVAL),  # not a whole KiB
        ({"size": -4096}, EINVAL),
        ({"size": 1 << 41}, EINVAL),  # rd_size does not fit an int of KiB
        ({"size": True}, EINVAL),
        ({"size": "lots"}, AddressError),
        ({"name": "disk0"}, EINVAL),
        ({"name": "ram0"}, EEXIST),
        ({"rd_nr": 4}, EINVAL),
    ],
    ids=["zero", "not-kib", "negative", "too-big", "bool", "unparsable", "bad-name", "dup-name", "unknown"],
)
def test_brd_bad_params_change_nothing(params: dict[str, Any], err: type[Exception]) -> None:
    m = machine("2.6.26")
    brd(m, size="1M")
    before = snapshot(m)
    with pytest.raises(err):
        m.create_xip_device("brd", **params)
    assert snapshot(m) == before


# -- brd: contents --------------------------------------------------------------------------------
def test_brd_contents_round_trip_bytes_and_file(tmp_path: Any) -> None:
    m = machine("2.6.27")
    dev = brd(m, size="1M")
    image = bytes(range(256)) * 40  # 10240 bytes: three pages, the last partly
    path = tmp_path / "image.bin"
    path.write_bytes(image)
    assert dev.fill(path, 100) == len(image)
    assert dev.read(100, len(image)) == image
    assert dev.read(0, 100) == bytes(100)
    # The bytes live in the pages direct_access hands out (what an XIP mapping reads).
    kaddr, pfn = dev.direct_access(SECTORS_PER_PAGE)
    assert m.mem.read(pfn * PAGE, 16) == image[PAGE - 100 : PAGE - 100 + 16]
    assert kaddr - PAGE_OFFSET[("2.6.27", "4level")] == pfn * PAGE
    dev.write(5000, b"written")
    assert dev.read(5000, 7) == b"written"
    with pytest.raises(AddressError):
        dev.read(MiB - 2, 4)


# -- brd: memmap arithmetic -----------------------------------------------------------------------
@pytest.mark.parametrize("kernel", BRD_PROFILES)
def test_brd_1gib_memmap_is_16mib(kernel: str) -> None:
    m = machine(kernel)
    dev = brd(m, size="1G")
    assert dev.memmap_bytes == struct_page_bytes(m, GiB) == 16 * MiB
    assert dev.describe()["memmap_bytes"] == 16 * MiB and dev.describe()["struct_page"] is True


# -- brd: properties --------------------------------------------------------------------------------
@given(sector=st.integers(min_value=0, max_value=400), size_kib=st.integers(min_value=1, max_value=100))
def test_brd_direct_access_follows_the_driver(sector: int, size_kib: int) -> None:
    m = machine("2.6.27", ram="16M")
    dev = brd(m, size=size_kib * KiB)
    capacity = size_kib * 2
    if sector % SECTORS_PER_PAGE:
        with pytest.raises(EINVAL):
            dev.direct_access(sector)
    elif sector + SECTORS_PER_PAGE > capacity:
        with pytest.raises(ERANGE):
            dev.direct_access(sector)
    else:
        kaddr, pfn = dev.direct_access(sector)
        assert kaddr == PAGE_OFFSET[("2.6.27", "4level")] + pfn * PAGE
        assert dev.frame(sector // SECTORS_PER_PAGE) == pfn
        assert dev.pages_allocated == 1
        return
    assert dev.pages_allocated == 0


@given(
    writes=st.lists(
        st.tuples(st.integers(min_value=0, max_value=5 * PAGE), st.binary(min_size=0, max_size=2 * PAGE)),
        max_size=6,
    )
)
def test_brd_contents_match_a_flat_model(writes: list[tuple[int, bytes]]) -> None:
    m = machine("2.6.26", ram="16M")
    dev = brd(m, size=8 * PAGE)
    model = bytearray(8 * PAGE)
    for offset, data in writes:
        dev.write(offset, data)
        model[offset : offset + len(data)] = data
    assert dev.read(0, len(model)) == bytes(model)
    touched = {p for off, d in writes if d for p in range(off // PAGE, (off + len(d) - 1) // PAGE + 1)}
    assert dev.pages_allocated == len(touched)
    m.remove_xip_device(dev.name)
    assert m.pages.leaks() == {}


# -- pmem: lifecycle ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["4level", "la57"])
def test_pmem_with_pages_is_dax_in_the_direct_map(mode: str) -> None:
    m = machine("6.18", mode=mode)
    mm0 = m.memmap_bytes()
    dev = pmem(m, size="1G")
    assert (dev.name, dev.start, dev.size) == ("pmem0", GiB, GiB)
    region = m.regions["pmem0"]
    assert (region.start, region.size, region.memmap, region.kind) == (GiB, GiB, True, "device")
    assert dev.has_struct_page and dev.dax
    base = PAGE_OFFSET[("6.18", mode)]
    assert dev.direct_access(0) == (base + GiB, GiB // PAGE)
    assert dev.direct_access(8 * 3) == (base + GiB + 3 * PAGE, GiB // PAGE + 3)
    assert bool(m.pfn_valid(GiB // PAGE)[0]) and m.page(GiB // PAGE) is not None
    # dax_direct_access: pages available from pgoff, clamped to the request.
    n = GiB // PAGE
    assert dev.dax_direct_access(0, 16) == (16, base + GiB, GiB // PAGE)
    assert dev.dax_direct_access(n - 3, 16) == (3, base + 2 * GiB - 3 * PAGE, 2 * GiB // PAGE - 3)
    assert dev.dax_direct_access(5, 0)[0] == 0
    # The 1 GiB arithmetic: 16 MiB of struct pages, from the model's struct page size.
    assert dev.memmap_bytes == m.memmap_bytes("pmem0") == struct_page_bytes(m, GiB) == 16 * MiB
    assert m.memmap_bytes() == mm0 + 16 * MiB

    m.remove_xip_device("pmem0")
    assert "pmem0" not in m.regions and "pmem0" not in m.devices
    assert m.memmap_bytes() == mm0 and not bool(m.pfn_valid(GiB // PAGE)[0])


def test_pmem_without_pages_has_no_dax() -> None:
    m = machine("6.18")
    mm0 = m.memmap_bytes()
    dev = pmem(m, size="1G", memmap=False)
    assert not m.regions["pmem0"].memmap and not dev.has_struct_page and not dev.dax
    assert not bool(m.pfn_valid(dev.start // PAGE)[0]) and m.page(dev.start // PAGE) is None
    assert dev.memmap_bytes == m.memmap_bytes("pmem0") == 0 and m.memmap_bytes() == mm0
    for call in (lambda: dev.direct_access(0), lambda: dev.dax_direct_access(0, 1)):
        with pytest.raises(KernelErrno, match="BLK_FEAT_DAX") as exc:
            call()
        assert exc.value.errno == errno.EOPNOTSUPP
    assert dev.describe()["dax"] is False and dev.describe()["kaddr_base"] is None
    dev.write(4096, b"block I/O still works")  # the disk exists, only DAX is missing
    assert dev.read(4096, 21) == b"block I/O still works"
    m.remove_xip_device("pmem0")
    assert list(m.regions) == [m.regions["System RAM"]]


@pytest.mark.parametrize("memmap", [True, False, "false", 0, "yes"])
def test_pmem_memmap_param_forms(memmap: object) -> None:
    m = machine("6.18")
    dev = pmem(m, size="128M", memmap=memmap)
    assert dev.has_struct_page is (memmap in (True, "yes"))


def test_pmem_default_starts_and_names() -> None:
    m = machine("6.18", ram="1536M")
    a = pmem(m, size="1G")
    b = pmem(m, size="256M", memmap=False)
    c = pmem(m, size="2M", start=5 * GiB, name="pmem9")
    assert (a.name, a.start) == ("pmem0", 2 * GiB)  # first GiB boundary above 1.5 GiB of RAM
    assert (b.name, b.start) == ("pmem1", 3 * GiB)  # and above pmem0
    assert (c.name, c.start) == ("pmem9", 5 * GiB)
    assert pmem(m, size="2M").start == 6 * GiB


def test_pmem_teardown_refused_while_a_page_is_mapped() -> None:
    m = machine("6.18")
    dev = pmem(m, size="128M")
    pfn = dev.direct_access(16)[1]
    row, col = m.memmap.rows(np.array([pfn], dtype=np.uint64))
    m.memmap.mapcount[row, col] = 1  # an fs-dax mapping of that page
    before = snapshot(m)
    with pytest.raises(EBUSY):
        m.remove_xip_device(dev.name)
    assert snapshot(m) == before and dev.name in m.devices
    m.memmap.mapcount[row, col] = 0
    m.remove_xip_device(dev.name)
    assert "pmem0" not in m.regions


# -- pmem: errno and bad input ----------------------------------------------------------------------
def test_pmem_with_pages_may_not_share_a_section_with_ram() -> None:
    """Model limitation (the core drops a section's memmap when a region in it goes away)."""
    m = machine("6.18", ram="200M")
    before = snapshot(m)
    with pytest.raises(AddressError, match="System RAM"):
        m.create_xip_device("pmem", size="2M", start=202 * MiB)
    assert snapshot(m) == before
    raw = pmem(m, size="2M", start=256 * MiB, memmap=False)  # its own section: fine
    m.remove_xip_device(raw.name)
    assert bool(m.pfn_valid(199 * MiB // PAGE)[0]) and snapshot(m) == before


def test_pmem_dax_direct_access_errors() -> None:
    m = machine("6.18")
    dev = pmem(m, size="64M")
    n = 64 * MiB // PAGE
    with pytest.raises(EINVAL):
        dev.dax_direct_access(0, -1)
    for pgoff in (n, n + 1, -1):
        with pytest.raises(ERANGE):
            dev.dax_direct_access(pgoff, 1)
    with pytest.raises(EINVAL):
        dev.direct_access(3)
    with pytest.raises(ERANGE):
        dev.direct_access(64 * MiB // 512)


@pytest.mark.parametrize(
    ("params", "err", "text"),
    [
        ({}, EINVAL, "size is required"),
        ({"size": 0}, EINVAL, "positive"),
        ({"size": "1G", "start": GiB + PAGE}, EINVAL, "2 MiB"),
        ({"size": GiB + PAGE}, EINVAL, "2 MiB"),
        ({"size": "1G", "start": GiB + 100, "memmap": False}, AddressError, "aligned"),
        ({"size": "1G", "start": 0}, AddressError, "System RAM"),
        ({"size": "1G", "start": 2 * GiB}, AddressError, "overlaps"),  # the existing pmem0
        ({"size": "1G", "start": 1 << 46}, AddressError, "MAX_PHYSMEM_BITS"),
        ({"size": "64M", "start": 160 * MiB, "memmap": False, "name": "pmem5"}, AddressError, "overlaps"),
        ({"size": "64M", "start": 256 * MiB, "memmap": False}, AddressError, "section"),
        ({"size": "2M", "start": 300 * MiB}, AddressError, "section"),
        ({"size": "64M", "name": "pmem0"}, EEXIST, "pmem0"),
        ({"size": "64M", "name": "nvme0"}, EINVAL, "disk name"),
        ({"size": "64M", "memmap": "maybe"}, EINVAL, "boolean"),
        ({"size": "64M", "align": 4096}, EINVAL, "unknown"),
    ],
    ids=[
        "no-size",
        "zero",
        "start-not-2m",
        "size-not-2m",
        "unaligned-raw",
        "over-ram",
        "over-pmem",
        "beyond-physmem",
        "over-ram-raw",
        "shares-section",
        "shares-section-pages",
        "dup-name",
        "bad-name",
        "bad-bool",
        "unknown",
    ],
)
def test_pmem_bad_input_changes_nothing(params: dict[str, Any], err: type[Exception], text: str) -> None:
    m = machine("6.18")
    pmem(m, size="1G", start=2 * GiB)
    pmem(m, size="2M", start=256 * MiB + 128 * MiB - 2 * MiB)  # section 2 now has struct pages
    before = snapshot(m)
    with pytest.raises(err, match=text):
        m.create_xip_device("pmem", **params)
    assert snapshot(m) == before


# -- pmem: contents ---------------------------------------------------------------------------------
def test_pmem_contents_round_trip_bytes_and_file(tmp_path: Any) -> None:
    m = machine("6.18")
    dev = pmem(m, size="64M", start=4 * GiB)
    image = b"persistent!" * 1000
    path = tmp_path / "pmem.img"
    path.write_bytes(image)
    assert dev.fill(path, PAGE + 5) == len(image)
    assert dev.read(PAGE + 5, len(image)) == image
    kaddr, pfn = dev.direct_access(SECTORS_PER_PAGE)
    assert pfn * PAGE == 4 * GiB + PAGE and kaddr == PAGE_OFFSET[("6.18", "4level")] + pfn * PAGE
    assert m.mem.read(pfn * PAGE + 5, 11) == b"persistent!"
    dev.write(0, b"hello")
    assert m.mem.read(4 * GiB, 5) == b"hello"
    m.remove_xip_device(dev.name)
    assert m.mem.read(4 * GiB, 5) == bytes(5)  # the region's contents went with it
    with pytest.raises(KernelErrno):
        dev.read(0, 5)


# -- pmem: properties -------------------------------------------------------------------------------
@given(
    pgoff=st.integers(min_value=-2, max_value=2100),
    nr=st.integers(min_value=-2, max_value=3000),
    pages=st.integers(min_value=1, max_value=4).map(lambda k: k * 512),  # 2 MiB sub-sections
)
def test_pmem_dax_direct_access_formula(pgoff: int, nr: int, pages: int) -> None:
    m = machine("6.18")
    start = 3 * GiB
    dev = pmem(m, size=pages * PAGE, start=start)
    if nr < 0:
        with pytest.raises(EINVAL):
            dev.dax_direct_access(pgoff, nr)
    elif not 0 <= pgoff < pages:
        with pytest.raises(ERANGE):
            dev.dax_direct_access(pgoff, nr)
    else:
        avail, kaddr, pfn = dev.dax_direct_access(pgoff, nr)
        assert avail == min(pages - pgoff, nr)
        assert pfn == (start >> 12) + pgoff
        assert kaddr == PAGE_OFFSET[("6.18", "4level")] + start + pgoff * PAGE
        assert dev.direct_access(pgoff * SECTORS_PER_PAGE) == (kaddr, pfn)
