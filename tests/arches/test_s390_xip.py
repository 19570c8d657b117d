"""s390x XIP driver model: z/VM DCSS segments (extmem) and the dcssblk block device.

The segment catalogue (CP DEFSEG), ``segment_load``/``segment_unload`` with extmem.c's error
cases per profile, dcssblk's lifecycle and sysfs attributes, contents (bytes, host files,
writes, SAVESEG), struct pages per profile and option, the memmap arithmetic (a 1 GiB DCSS:
16 MiB of struct page before the 2008 series or with 6.18's DAX pagemap, 0 from 2.6.26 on),
that a refused call changes nothing and that removal gives back everything it took.
"""

from __future__ import annotations

import errno
from typing import Any

import pytest

pytest.importorskip("mixedmap_s390")

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from mixedmap_s390 import plugin
from mixedmap_s390.dcssblk import DcssBlkDevice
from mixedmap_s390.extmem import (
    USER,
    VMEM_MAX_PHYS_26,
    attach_zvm,
    extmem,
    segment_load,
    segment_modify_shared,
    segment_save,
    segment_type,
    segment_unload,
    zvm,
)
from mixedmap_s390.kerrno import EAGAIN, ENAMETOOLONG, EOPNOTSUPP
from mixedmap_s390.zvm import ZVM, SegType

from mixedmap import (
    EBUSY,
    EEXIST,
    EINVAL,
    EIO,
    ENOENT,
    ENOSPC,
    ENOSYS,
    EPERM,
    ERANGE,
    EROFS,
    PG,
    AddressError,
    Machine,
    VMBug,
)

MiB, GiB = 1 << 20, 1 << 30
PAGE = 4096
OLD = ("2.6.26", "2.6.27")
ALL = ("2.6.26", "2.6.27", "6.18")


def machine(kernel: str = "2.6.27", ram: int | str = "256M") -> Machine:
    return Machine("s390x", kernel, ram=ram)


def snapshot(m: Machine) -> tuple[Any, ...]:
    """Everything a refused call must leave alone."""
    ext = extmem(m)
    return (
        list(m.regions),
        sorted(m.devices),
        m.memmap_bytes(),
        m.pages.nr_free,
        m.mem.stored_bytes,
        {k: (s.do_nonshared, dict(s.holders), s.memmap) for k, s in ext.loaded.items()},
        list(zvm(m)),
        ext.pre_series,
    )


def add(m: Machine, **params: Any) -> DcssBlkDevice:
    """sysfs ``add`` through the core's driver-model entry point."""
    dev = m.create_xip_device("dcssblk", **params)
    assert isinstance(dev, DcssBlkDevice)
    return dev


def dcss_regions(m: Machine) -> list[str]:
    return [r.name for r in m.regions if r.owner == "extmem"]


# -- the driver model is offered ------------------------------------------------------------
def test_hook_offers_dcssblk() -> None:
    (model,) = plugin.mixedmap_xip_drivers()
    assert model.name == "dcssblk"
    assert model.profiles == ALL
    assert {"segment", "name", "pre_series", "dax"} <= dict(model.params).keys()


@pytest.mark.parametrize("kernel", ALL)
def test_machine_lists_dcssblk(kernel: str) -> None:
    assert "dcssblk" in machine(kernel).xip_drivers()


# -- the z/VM catalogue (CP DEFSEG) ---------------------------------------------------------
def test_define_and_query() -> None:
    hv = ZVM()
    seg = hv.define("xipimg", "256M", size="1G", type="sr")
    assert (seg.name, seg.start, seg.end, seg.type) == ("XIPIMG", 256 * MiB, 256 * MiB + GiB - 1, SegType.SR)
    assert seg.size == GiB
    assert seg.defseg == "DEFSEG XIPIMG 10000-4FFFF SR"
    assert hv.query("XipImg") is seg
    assert "xipimg" in hv and list(hv) == [seg]
    same = hv.define("OTHER", 0x60000000, end=0x600FFFFF, type=SegType.EW)
    assert same.size == MiB


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        (("TOOLONGNAME", 0x10000000), {"size": PAGE}, EINVAL),
        (("", 0x10000000), {"size": PAGE}, EINVAL),
        (("A B", 0x10000000), {"size": PAGE}, EINVAL),
        (("A:B", 0x10000000), {"size": PAGE}, EINVAL),
        (("SEG", 0x10000000), {"size": PAGE, "type": "XX"}, EINVAL),
        (("SEG", 0x10000000), {}, EINVAL),
        (("SEG", 0x10000000, 0x10000FFF), {"size": PAGE}, EINVAL),
        (("SEG", 0x10000800), {"size": PAGE}, AddressError),
        (("SEG", 0x10000000, 0x10000800), {}, AddressError),
        (("SEG", 0x10000000, 0x0FFFFFFF), {}, AddressError),
        (("SEG", 512 * GiB - PAGE), {"size": 2 * PAGE}, AddressError),
    ],
    ids=[
        "name>8",
        "empty-name",
        "blank",
        "colon",
        "bad-type",
        "no-end-no-size",
        "end-and-size",
        "start-unaligned",
        "end-not-last-byte",
        "end-before-start",
        "beyond-defseg-page-7FFFFFF",
    ],
)
def test_define_rejects(args: tuple[Any, ...], kwargs: dict[str, Any], exc: type[Exception]) -> None:
    hv = ZVM()
    with pytest.raises(exc):
        hv.define(*args, **kwargs)
    assert list(hv) == []


def test_define_limits_and_duplicates() -> None:
    hv = ZVM()
    top = hv.define("TOP", 512 * GiB - PAGE, size=PAGE)
    assert top.pages == range(0x7FFFFFF, 0x8000000)
    with pytest.raises(EEXIST):
        hv.define("top", 0, size=PAGE)
    with pytest.raises(ENOENT):
        hv.query("NOSUCH")
    hv.purge("TOP")
    assert "TOP" not in hv


def test_segtype_codes() -> None:
    assert [t.value for t in SegType] == [0, 1, 2, 3, 4, 5, 6]
    assert [t.name for t in SegType if t.read_only] == ["SR", "ER", "SC"]
    assert [t.name for t in SegType if t.shared] == ["SW", "SR", "SN", "SC"]
    assert [t.name for t in SegType if not t.saves_data] == ["SN", "EN"]


def test_saved_image() -> None:
    hv = ZVM()
    hv.define("IMG", 0x10000000, size=4 * PAGE, type="SR")
    hv.store("IMG", b"abc", offset=PAGE - 1)
    assert hv.read_saved("IMG", PAGE - 1, 3) == b"abc"
    assert sorted(hv.saved("IMG")) == [0, 1]
    with pytest.raises(AddressError):
        hv.store("IMG", b"x", offset=4 * PAGE)
    hv.define("NOSAVE", 0x20000000, size=PAGE, type="EN")
    with pytest.raises(EINVAL):
        hv.store("NOSAVE", b"x")


# -- segment_load / segment_unload ------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL)
def test_load_unload_refcount(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("SEG", "256M", size="16M", type="SW")
    before = snapshot(m)
    assert segment_type(m, "seg") == SegType.SW
    kind, start, end = segment_load(m, "seg")
    assert (kind, start, end) == (SegType.SW, 256 * MiB, 272 * MiB - 1)
    assert isinstance(kind, int) and kind == 0
    assert dcss_regions(m) == ["SEG (DCSS)"]
    region = m.regions["SEG (DCSS)"]
    assert (region.start, region.size, region.memmap) == (256 * MiB, 16 * MiB, False)
    assert not m.pfn_valid(start >> 12)[0]
    assert m.page(start >> 12) is None
    assert segment_load(m, "SEG") == (kind, start, end)  # a second reference
    assert extmem(m).holders("SEG") == {USER: 2}
    segment_unload(m, "SEG")
    assert dcss_regions(m) == ["SEG (DCSS)"]
    segment_unload(m, "SEG")
    assert snapshot(m) == before
    with pytest.raises(EINVAL):
        segment_unload(m, "SEG")


def test_dcss_name_is_cut_to_8_characters() -> None:
    m = machine()
    zvm(m).define("LONGNAME", "256M", size="1M")
    assert segment_load(m, "longnamexyz")[0] == SegType.SW
    assert extmem(m).is_loaded("LONGNAME")


@pytest.mark.parametrize("kernel", ALL)
def test_unknown_segment_is_enoent(kernel: str) -> None:
    m = machine(kernel)
    before = snapshot(m)
    with pytest.raises(ENOENT) as info:
        segment_load(m, "NOSUCH")
    assert info.value.errno == errno.ENOENT
    assert snapshot(m) == before


@pytest.mark.parametrize(("kernel", "exc"), [("2.6.26", ENOSPC), ("2.6.27", ENOSPC), ("6.18", EBUSY)])
def test_overlap_with_guest_storage(kernel: str, exc: type[Exception]) -> None:
    """2.6.2x: vmem's memory-segment list holds the guest storage (ENOSPC); 6.18:
    request_resource finds System RAM (EBUSY)."""
    m = machine(kernel, ram="512M")
    zvm(m).define("LOW", "500M", size="16M")
    before = snapshot(m)
    with pytest.raises(exc):
        segment_load(m, "LOW")
    assert snapshot(m) == before


@pytest.mark.parametrize(("kernel", "exc"), [("2.6.27", ENOSPC), ("6.18", EBUSY)])
def test_overlap_with_loaded_dcss(kernel: str, exc: type[Exception]) -> None:
    m = machine(kernel)
    hv = zvm(m)
    hv.define("A", "256M", size="4M")
    hv.define("B", "258M", size="4M")
    segment_load(m, "A")
    before = snapshot(m)
    with pytest.raises(exc):
        segment_load(m, "B")
    assert snapshot(m) == before


def test_618_overlap_check_is_per_megabyte() -> None:
    """segment_overlaps_others compares addresses >> 20: byte-disjoint segments in one MiB
    are EBUSY under 6.18 and load side by side under 2.6.27."""
    for kernel, ok in (("2.6.27", True), ("6.18", False)):
        m = machine(kernel)
        zvm(m).define("A", "256M", size=PAGE)
        zvm(m).define("B", 256 * MiB + PAGE, size=PAGE)
        segment_load(m, "A")
        if ok:
            segment_load(m, "B")
            assert dcss_regions(m) == ["A (DCSS)", "B (DCSS)"]
        else:
            with pytest.raises(EBUSY):
                segment_load(m, "B")


@pytest.mark.parametrize("kernel", ALL)
def test_overlap_with_other_resource_is_ebusy(kernel: str) -> None:
    m = machine(kernel)
    m.add_region("firmware", 256 * MiB, MiB, memmap=False)
    zvm(m).define("SEG", "256M", size="4M")
    with pytest.raises(EBUSY):
        segment_load(m, "SEG")


@pytest.mark.parametrize("kernel", ALL)
def test_beyond_mapping_range_is_erange(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("SEG", "1G", size="16M")
    ext = extmem(m)
    assert ext.max_mappable == (VMEM_MAX_PHYS_26 if kernel in OLD else 512 * GiB)
    ext.max_mappable = GiB + 8 * MiB  # e.g. a large vmalloc= on 2.6.27
    before = snapshot(m)
    with pytest.raises(ERANGE):
        segment_load(m, "SEG")
    assert snapshot(m) == before
    ext.max_mappable = GiB + 16 * MiB
    segment_load(m, "SEG")


@pytest.mark.parametrize("kernel", OLD)
def test_26_cannot_reach_above_2g(kernel: str) -> None:
    """2.6.27 has only the 31-bit DIAGNOSE X'64' subcodes."""
    m = machine(kernel)
    zvm(m).define("HIGH", "2G", size="16M")
    with pytest.raises(EIO):
        segment_type(m, "HIGH")
    with pytest.raises(EIO):
        segment_load(m, "HIGH")
    m618 = machine("6.18")
    zvm(m618).define("HIGH", "2G", size="16M")
    assert segment_load(m618, "HIGH")[1] == 2 * GiB


@pytest.mark.parametrize("kernel", ALL)
def test_other_share_mode_is_eperm(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("SEG", "256M", size="1M", type="EW")
    segment_load(m, "SEG", do_nonshared=True)
    before = snapshot(m)
    with pytest.raises(EPERM):
        segment_load(m, "SEG")
    assert snapshot(m) == before
    assert segment_load(m, "SEG", do_nonshared=True)[0] == SegType.EW


def test_modify_shared_and_save() -> None:
    m = machine()
    hv = zvm(m)
    hv.define("SEG", "256M", size="1M", type="SW")
    hv.store("SEG", b"saved")
    segment_load(m, "SEG")
    assert m.mem.read(256 * MiB, 5) == b"saved"
    m.mem.write(256 * MiB, b"DIRTY")
    segment_load(m, "SEG")
    with pytest.raises(EAGAIN):
        segment_modify_shared(m, "SEG", True)
    segment_unload(m, "SEG")
    assert segment_modify_shared(m, "SEG", False) is False  # already shared
    assert segment_modify_shared(m, "SEG", True) is True  # reload: the copy is purged
    assert m.mem.read(256 * MiB, 5) == b"saved"
    m.mem.write(256 * MiB, b"newer")
    assert segment_save(m, "SEG") == "DEFSEG SEG 10000-100FF SW"
    segment_unload(m, "SEG")
    assert m.mem.read(256 * MiB, 5) == bytes(5)  # detached: nothing left in memory
    segment_load(m, "SEG", do_nonshared=True)
    assert m.mem.read(256 * MiB, 5) == b"newer"
    with pytest.raises(EINVAL):
        segment_modify_shared(m, "NOSUCH", True)


def test_n_type_saves_nothing() -> None:
    m = machine()
    zvm(m).define("SCRATCH", "256M", size="1M", type="SN")
    segment_load(m, "SCRATCH")
    m.mem.write(256 * MiB, b"gone")
    segment_save(m, "SCRATCH")
    segment_unload(m, "SCRATCH")
    segment_load(m, "SCRATCH")
    assert m.mem.read(256 * MiB, 4) == bytes(4)


def test_purge_while_loaded_is_ebusy() -> None:
    m = machine()
    zvm(m).define("SEG", "256M", size="1M")
    segment_load(m, "SEG")
    with pytest.raises(EBUSY):
        zvm(m).purge("SEG")


def test_shared_catalogue_between_machines() -> None:
    hv = ZVM()
    hv.define("IMG", "512M", size="16M", type="SR")
    hv.store("IMG", b"shared image")
    guests = [machine(ram="512M") for _ in range(3)]
    for g in guests:
        attach_zvm(g, hv)
        dev = add(g, segment="IMG")
        assert dev.read(0, 12) == b"shared image"
    with pytest.raises(EBUSY):
        attach_zvm(guests[0], ZVM())


def test_pre_series_switch() -> None:
    m = machine()
    zvm(m).define("SEG", "256M", size="1M")
    segment_load(m, "SEG")
    with pytest.raises(EINVAL):
        extmem(m).pre_series = True
    segment_unload(m, "SEG")
    extmem(m).pre_series = True
    m618 = machine("6.18")
    with pytest.raises(EINVAL):
        extmem(m618).pre_series = True


def test_extmem_is_per_machine() -> None:
    a, b = machine(), machine()
    zvm(a).define("SEG", "256M", size="1M")
    assert "SEG" in zvm(a) and "SEG" not in zvm(b)
    assert extmem(a) is extmem(a)


# -- dcssblk: lifecycle ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL)
def test_dcssblk_lifecycle(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("XIPIMG", "256M", size="64M", type="SR")
    before = snapshot(m)
    dev = add(m, segment="xipimg")
    assert isinstance(dev, DcssBlkDevice)
    assert dev.name == "dcssblk0" and dev.minor == 0
    assert (dev.start, dev.size, dev.nr_sectors) == (256 * MiB, 64 * MiB, 64 * MiB // 512)
    assert dev.phys_range == (256 * MiB, 320 * MiB)
    assert dev.read_only and dev.shared
    d = dev.describe()
    assert (d["segment"], d["type"], d["access"], d["driver"]) == ("XIPIMG", "SR", "shared", "dcssblk")
    assert d["segments"] == [{"name": "XIPIMG", "type": "SR", "start": 256 * MiB, "end": 320 * MiB - 1}]
    assert extmem(m).holders("XIPIMG") == {"dcssblk0": 1}
    m.remove_xip_device("dcssblk0")
    assert snapshot(m) == before
    assert "XIPIMG" in zvm(m)  # the definition stays on z/VM


def test_dcssblk_minors() -> None:
    m = machine(ram="256M")
    hv = zvm(m)
    for i, n in enumerate(("A", "B", "C")):
        hv.define(n, 256 * MiB + i * 16 * MiB, size="16M")
    a = add(m, segment="A")
    b = add(m, segment="B")
    assert (a.name, b.name) == ("dcssblk0", "dcssblk1")
    m.remove_xip_device("dcssblk0")
    c = add(m, segment="C")
    assert (c.name, c.minor) == ("dcssblk0", 0)
    named = add(m, segment="A", name="xipdisk")
    assert (named.name, named.minor) == ("xipdisk", 2)


def test_dcssblk_inline_define_and_rollback() -> None:
    m = machine()
    dev = add(m, segment="IMG", start="256M", size="32M", type="SW")
    assert zvm(m).query("IMG").type == SegType.SW and not dev.read_only
    m.remove_xip_device(dev.name)
    # same definition again is fine, a different one is not
    m.remove_xip_device(add(m, segment="IMG", start="256M", size="32M").name)
    with pytest.raises(EEXIST):
        add(m, segment="IMG", start="256M", size="16M")
    before = snapshot(m)
    with pytest.raises(ENOSPC):  # overlaps guest storage: the DEFSEG is undone too
        add(m, segment="LOW", start="128M", size="16M")
    assert snapshot(m) == before and "LOW" not in zvm(m)


@pytest.mark.parametrize(
    ("kernel", "segment", "exc"),
    [
        ("2.6.27", "", ENAMETOOLONG),
        ("2.6.27", "NINECHARS", ENAMETOOLONG),
        ("2.6.27", "A:B", ENOENT),  # one name of three characters
        ("2.6.27", "NOSUCH", ENOENT),
        ("6.18", "", ENAMETOOLONG),
        ("6.18", "A:", ENAMETOOLONG),
        ("6.18", "A::B", ENAMETOOLONG),
        ("6.18", "A:NINECHARS", ENAMETOOLONG),
        ("6.18", "NOSUCH", ENOENT),
    ],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_dcssblk_bad_names(kernel: str, segment: str, exc: type[Exception]) -> None:
    m = machine(kernel)
    zvm(m).define("A", "256M", size="1M")
    before = snapshot(m)
    with pytest.raises(exc):
        add(m, segment=segment)
    assert snapshot(m) == before


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"segment": "A", "bogus": 1},
        {"segment": "A", "dax": False},
        {"segment": "A", "identity_base": PAGE},
    ],
    ids=["no-segment", "unknown-param", "dax-on-2.6.27", "identity-base-on-2.6.27"],
)
def test_dcssblk_bad_params(params: dict[str, Any]) -> None:
    m = machine()
    zvm(m).define("A", "256M", size="1M")
    before = snapshot(m)
    with pytest.raises(EINVAL):
        add(m, **params)
    assert snapshot(m) == before


@pytest.mark.parametrize("kernel", ALL)
def test_dcssblk_segment_added_twice_is_eexist(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("A", "256M", size="1M")
    add(m, segment="A")
    before = snapshot(m)
    with pytest.raises(EEXIST):
        add(m, segment="a")
    with pytest.raises(EEXIST):
        add(m, segment="A", name="dcssblk0")
    assert snapshot(m) == before


@pytest.mark.parametrize("kernel", ALL)
def test_dcssblk_after_exclusive_load_is_eperm(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("A", "256M", size="1M", type="EW")
    segment_load(m, "A", do_nonshared=True)
    before = snapshot(m)
    with pytest.raises(EPERM):
        add(m, segment="A")
    assert snapshot(m) == before


@pytest.mark.parametrize("kernel", ALL)
def test_unload_under_a_device_is_ebusy(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("A", "256M", size="1M")
    add(m, segment="A")
    before = snapshot(m)
    with pytest.raises(EBUSY):
        segment_unload(m, "A")
    assert snapshot(m) == before
    # a direct user's own reference comes and goes beside the device's
    segment_load(m, "A")
    segment_unload(m, "A")
    assert extmem(m).holders("A") == {"dcssblk0": 1}


@pytest.mark.parametrize("kernel", ALL)
def test_remove_while_open_is_ebusy(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("A", "256M", size="1M")
    dev = add(m, segment="A")
    dev.open()
    before = snapshot(m)
    with pytest.raises(EBUSY):
        m.remove_xip_device(dev.name)
    with pytest.raises(EBUSY):
        dev.set_shared(False)
    assert snapshot(m) == before
    dev.close()
    with pytest.raises(VMBug):
        dev.close()
    m.remove_xip_device(dev.name)
    assert dcss_regions(m) == []
    with pytest.raises(EINVAL):
        dev.direct_access(0)


# -- dcssblk: contents ---------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL)
def test_contents_round_trip(kernel: str, tmp_path: Any) -> None:
    m = machine(kernel)
    zvm(m).define("IMG", "256M", size="8M", type="SR")
    dev = add(m, segment="IMG")
    image = bytes(range(256)) * 40  # 10 KiB, across pages
    assert dev.fill(image, offset=PAGE - 7) == len(image)
    assert dev.read(PAGE - 7, len(image)) == image
    path = tmp_path / "image.bin"
    path.write_bytes(b"from a host file")
    dev.fill(path, offset=3 * MiB)
    assert dev.read(3 * MiB, 16) == b"from a host file"
    _, pfn = dev.direct_access(3 * MiB // 512)
    assert m.mem.read(pfn * PAGE, 16) == b"from a host file"
    with pytest.raises(EROFS):
        dev.write(0, b"x")
    with pytest.raises(AddressError):
        dev.read(8 * MiB - 1, 2)
    # fill is how the image got there: it is in the saved segment and survives a reload
    m.remove_xip_device(dev.name)
    dev = add(m, segment="IMG")
    assert dev.read(PAGE - 7, len(image)) == image


@pytest.mark.parametrize("kernel", ALL)
def test_writes_persist_and_save(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("RW", "256M", size="4M", type="SW")
    dev = add(m, segment="RW")
    assert not dev.read_only
    dev.write(5000, b"written through the disk")
    assert dev.read(5000, 24) == b"written through the disk"
    assert m.mem.read(256 * MiB + 5000, 24) == b"written through the disk"
    m.remove_xip_device(dev.name)  # not saved: z/VM still has the old segment
    dev = add(m, segment="RW")
    assert dev.read(5000, 24) == bytes(24)
    dev.write(5000, b"saved this time")
    assert dev.save() is True
    m.remove_xip_device(dev.name)
    dev = add(m, segment="RW")
    assert dev.read(5000, 15) == b"saved this time"


def test_save_pending_until_last_close() -> None:
    m = machine()
    zvm(m).define("RW", "256M", size="1M", type="SW")
    dev = add(m, segment="RW")
    dev.open()
    dev.open()
    dev.write(0, b"later")
    assert dev.save() is False and dev.save_pending
    dev.close()
    assert zvm(m).read_saved("RW", 0, 5) == bytes(5)
    dev.close()
    assert not dev.save_pending
    assert zvm(m).read_saved("RW", 0, 5) == b"later"
    dev.open()
    dev.save()
    assert dev.cancel_save() is True
    dev.close()


@pytest.mark.parametrize("kernel", ALL)
def test_save_of_n_type_keeps_nothing(kernel: str) -> None:
    """2.6.27 issues DEFSEG + SAVESEG anyway (z/VM keeps no N-type data); 6.18 skips them."""
    m = machine(kernel)
    zvm(m).define("TMP", "256M", size="1M", type="EN")
    dev = add(m, segment="TMP")
    dev.write(0, b"temp")
    dev.save()
    assert zvm(m).read_saved("TMP", 0, 4) == bytes(4)


# -- dcssblk: shared / exclusive ----------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL)
def test_set_shared(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("RO", "256M", size="1M", type="SR")
    zvm(m).store("RO", b"image")
    dev = add(m, segment="RO")
    assert dev.read_only
    assert dev.set_shared(False) is True
    assert not dev.read_only and dev.access == "exclusive"
    assert extmem(m).loaded["RO"].do_nonshared is True
    dev.write(0, b"IMAGE")  # a private, writable copy
    assert dev.read(0, 5) == b"IMAGE"
    assert dev.set_shared(True) is True  # back to the shared copy: the private one is gone
    assert dev.read_only and dev.read(0, 5) == b"image"
    assert dev.set_shared(True) is False


@pytest.mark.parametrize("kernel", ALL)
def test_sc_cannot_go_exclusive(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("CPW", "256M", size="1M", type="SC")
    dev = add(m, segment="CPW")
    assert dev.read_only
    with pytest.raises(EINVAL):
        dev.set_shared(False)
    assert dev.shared and dev.read_only


@pytest.mark.parametrize(("kernel", "flips"), [("2.6.27", False), ("6.18", True)])
def test_set_shared_with_other_users(kernel: str, flips: bool) -> None:
    """segment_modify_shared says -EAGAIN; the driver swallows it. 2.6.27 leaves the device
    as it was, 6.18 flips is_shared and the read-only flag anyway."""
    m = machine(kernel)
    zvm(m).define("RO", "256M", size="1M", type="SR")
    dev = add(m, segment="RO")
    segment_load(m, "RO")
    assert dev.set_shared(False) is False
    assert extmem(m).loaded["RO"].do_nonshared is False
    assert (not dev.shared) is flips
    assert dev.read_only is not flips


# -- direct_access ------------------------------------------------------------------------------
@pytest.mark.parametrize("kernel", ALL)
def test_direct_access(kernel: str) -> None:
    m = machine(kernel)
    zvm(m).define("IMG", "256M", size="4M", type="SR")
    dev = add(m, segment="IMG")
    assert dev.direct_access(0) == (256 * MiB, 256 * MiB >> 12)
    assert dev.direct_access(8) == (256 * MiB + PAGE, (256 * MiB >> 12) + 1)
    last = 4 * MiB // 512 - 8
    assert dev.direct_access(last) == (260 * MiB - PAGE, (260 * MiB >> 12) - 1)
    with pytest.raises(EINVAL):
        dev.direct_access(4)
    with pytest.raises(ERANGE):
        dev.direct_access(last + 8)


SECTORS = 4 * MiB // 512


@given(sector=st.integers(min_value=0, max_value=2 * SECTORS))
def test_direct_access_any_sector(sector: int) -> None:
    m = _HYP_MACHINE
    dev = m.devices["dcssblk0"]
    if sector % 8:
        with pytest.raises(EINVAL):
            dev.direct_access(sector)
    elif sector >= SECTORS:
        with pytest.raises(ERANGE):
            dev.direct_access(sector)
    else:
        kaddr, pfn = dev.direct_access(sector)
        assert kaddr == 256 * MiB + sector * 512
        assert pfn == kaddr >> 12


@given(offset=st.integers(min_value=0, max_value=4 * MiB - 64), data=st.binary(min_size=1, max_size=64))
def test_write_read_any_offset(offset: int, data: bytes) -> None:
    dev = _HYP_MACHINE.devices["dcssblk0"]
    dev.write(offset, data)
    assert dev.read(offset, len(data)) == data
    assert _HYP_MACHINE.mem.read(256 * MiB + offset, len(data)) == data


def _hyp_machine() -> Machine:
    m = machine()
    zvm(m).define("HYP", "256M", size="4M", type="SW")
    add(m, segment="HYP")
    return m


_HYP_MACHINE = _hyp_machine()


def test_618_dax_direct_access() -> None:
    m = machine("6.18")
    zvm(m).define("IMG", "256M", size="4M", type="SR")
    dev = add(m, segment="IMG", identity_base="1T")
    assert dev.dax_direct_access(0, 16) == ((1 << 40) + 256 * MiB, 256 * MiB >> 12, 16)
    assert dev.dax_direct_access(1020, 16) == (
        (1 << 40) + 256 * MiB + 1020 * PAGE,
        (256 * MiB >> 12) + 1020,
        4,
    )
    assert dev.direct_access(8)[0] == (1 << 40) + 256 * MiB + PAGE
    with pytest.raises(ERANGE):
        dev.dax_direct_access(1024, 1)
    with pytest.raises(EINVAL):
        dev.dax_direct_access(0, -1)
    old = machine("2.6.27")
    zvm(old).define("IMG", "256M", size="4M")
    with pytest.raises(ENOSYS):
        add(old, segment="IMG").dax_direct_access(0, 1)


# -- struct pages and the memmap arithmetic ---------------------------------------------------------
@pytest.mark.parametrize(
    ("kernel", "params", "pages"),
    [
        ("2.6.26", {}, False),
        ("2.6.27", {}, False),
        ("2.6.26", {"pre_series": True}, True),
        ("2.6.27", {"pre_series": True}, True),
        ("6.18", {}, True),  # DAX on, 2 MiB aligned: ZONE_DEVICE pages
        ("6.18", {"dax": False}, False),
    ],
    ids=["2.6.26", "2.6.27", "2.6.26-pre-series", "2.6.27-pre-series", "6.18-dax", "6.18-no-dax"],
)
def test_one_gib_memmap(kernel: str, params: dict[str, Any], pages: bool) -> None:
    """A 1 GiB DCSS: 262144 struct pages of 64 bytes = 16 MiB, or none."""
    m = machine(kernel)
    zvm(m).define("BIG", "256M", size="1G", type="SR")
    ram_memmap = m.memmap_bytes()
    assert ram_memmap == (256 * MiB // PAGE) * 64
    dev = add(m, segment="BIG", **params)
    expected = 16 * MiB if pages else 0
    assert (GiB // PAGE) * 64 == 16 * MiB
    assert dev.has_struct_page is pages
    assert dev.memmap_bytes == expected
    assert m.memmap_bytes("BIG (DCSS)") == expected
    assert m.memmap_bytes() - ram_memmap == expected
    first = dev.start >> 12
    assert bool(m.pfn_valid(first)[0]) is pages
    info = m.page(first + 12345)
    if pages:
        assert info is not None
        assert (info.refcount, info.mapcount, info.flags) == (1, 0, PG.reserved)
    else:
        assert info is None
    m.remove_xip_device(dev.name)
    assert m.memmap_bytes() == ram_memmap
    assert not m.pfn_valid(first)[0]


def test_618_unaligned_has_no_dax() -> None:
    m = machine("6.18")
    zvm(m).define("ODD", 257 * MiB, size="4M")
    dev = add(m, segment="ODD")
    assert not dev.has_struct_page and dev.memmap_bytes == 0 and not dev.dax_pages
    with pytest.raises(EOPNOTSUPP):
        dev.direct_access(0)
    with pytest.raises(EOPNOTSUPP):
        dev.dax_direct_access(0, 1)
    assert dev.read(0, 4) == bytes(4)  # the block device still works
    assert dev.describe()["dax"] is True


def test_pre_series_conflicts() -> None:
    m = machine()
    zvm(m).define("A", "256M", size="1M")
    zvm(m).define("B", "272M", size="1M")
    add(m, segment="A")
    before = snapshot(m)
    with pytest.raises(EINVAL):
        add(m, segment="B", pre_series=True)
    assert snapshot(m) == before
    with pytest.raises(EINVAL):
        add(machine("6.18"), segment="X", start="256M", size="1M", pre_series=True)


def test_struct_pages_must_own_their_sections() -> None:
    """Model limitation: the core keeps a memmap per section, so a DCSS with struct pages
    may not share a 256 MiB section with other memory."""
    m = machine(ram="300M")
    zvm(m).define("A", "304M", size="16M")
    before = snapshot(m)
    with pytest.raises(AddressError):
        add(m, segment="A", pre_series=True)
    assert snapshot(m) == before


@pytest.mark.parametrize("kernel", OLD)
def test_pre_series_neighbours_in_one_section(kernel: str) -> None:
    """Two DCSSs with struct pages in one 256 MiB section: removing one leaves the other's
    struct pages (and their state) in place."""
    m = machine(kernel)
    zvm(m).define("A", "256M", size="16M")
    zvm(m).define("B", "272M", size="16M")
    a = add(m, segment="A", pre_series=True)
    b = add(m, segment="B")
    assert a.has_struct_page and b.has_struct_page
    pfn = b.start >> 12
    m.memmap.refcount[m.memmap.rows(np.array([pfn], dtype=np.uint64))] = 3  # someone holds it
    m.remove_xip_device(a.name)
    assert dcss_regions(m) == ["B (DCSS)"]
    info = m.page(pfn)
    assert info is not None and info.refcount == 3 and info.flags == PG.reserved
    before = snapshot(m)
    with pytest.raises(EBUSY):  # its page is still referenced
        m.remove_xip_device(b.name)
    assert snapshot(m) == before


def test_618_dax_pages_over_a_segment_loaded_without() -> None:
    """A segment loaded by someone else first gets its pagemap when dcssblk adds it, keeps
    its bytes, and loses the pages again when the device goes."""
    m = machine("6.18")
    zvm(m).define("A", "256M", size="4M", type="SW")
    segment_load(m, "A")
    m.mem.write(256 * MiB + 10, b"kept")
    assert not m.regions["A (DCSS)"].memmap
    dev = add(m, segment="A")
    assert dev.has_struct_page and m.regions["A (DCSS)"].memmap
    assert dev.read(10, 4) == b"kept"
    m.remove_xip_device(dev.name)
    assert not m.regions["A (DCSS)"].memmap and m.mem.read(256 * MiB + 10, 4) == b"kept"
    segment_unload(m, "A")
    assert dcss_regions(m) == []


def test_618_remove_with_dax_page_in_use_is_ebusy() -> None:
    m = machine("6.18")
    zvm(m).define("A", "256M", size="4M")
    segment_load(m, "A")
    dev = add(m, segment="A")
    pfn = dev.start >> 12
    m.memmap.refcount[m.memmap.rows(np.array([pfn], dtype=np.uint64))] = 2  # a mapping holds it
    before = snapshot(m)
    with pytest.raises(EBUSY):
        m.remove_xip_device(dev.name)
    assert snapshot(m) == before and dev.name in m.devices


# -- 6.18 multi-segment devices ---------------------------------------------------------------------
def test_618_contiguous_segments() -> None:
    m = machine("6.18")
    hv = zvm(m)
    hv.define("P1", "256M", size="2M", type="EW")
    hv.define("P2", "258M", size="2M", type="EN")
    dev = add(m, segment="p2:p1")
    assert dev.segment_name == "P2" and dev.segment_type == SegType.EN
    assert dev.has_struct_page and dev.memmap_bytes == 4 * MiB // PAGE * 64
    assert (dev.start, dev.size) == (256 * MiB, 4 * MiB)
    assert dev.describe()["segment"] == "P2:P1"
    dev.fill(b"across", offset=2 * MiB - 3)
    assert dev.read(2 * MiB - 3, 6) == b"across"
    assert hv.read_saved("P1", 2 * MiB - 3, 3) == b"acr"  # EW saves, EN does not
    assert hv.saved("P2") == {}
    m.remove_xip_device(dev.name)
    assert dcss_regions(m) == []


@pytest.mark.parametrize(
    ("types", "gap"),
    [(("SW", "SW"), 2 * MiB), (("SR", "SW"), 0), (("ER", "EW"), 0), (("SW", "SW"), None)],
    ids=["gap", "SR+SW", "ER+EW", "same-segment-twice"],
)
def test_618_incompatible_segments(types: tuple[str, str], gap: int | None) -> None:
    m = machine("6.18")
    hv = zvm(m)
    hv.define("P1", "256M", size="2M", type=types[0])
    if gap is not None:
        hv.define("P2", 258 * MiB + gap, size="2M", type=types[1])
    before = snapshot(m)
    with pytest.raises(EINVAL):
        add(m, segment="P1:P2" if gap is not None else "P1:P1")
    assert snapshot(m) == before


def test_26_has_no_segment_lists() -> None:
    m = machine("2.6.27")
    zvm(m).define("P1", "256M", size="2M")
    zvm(m).define("P2", "258M", size="2M")
    with pytest.raises(ENOENT):  # "P1:P2" is one five-character name
        add(m, segment="P1:P2")


def test_release_gives_everything_back() -> None:
    m = machine("6.18")
    zvm(m).define("A", "256M", size="64M", type="SW")
    zvm(m).define("B", "512M", size="64M", type="SR")
    before = snapshot(m)
    free = m.pages.nr_free
    leaks = m.pages.leaks()
    devs = [add(m, segment=s) for s in ("A", "B")]
    devs[0].write(0, b"x" * 3 * PAGE)
    assert m.pages.nr_free == free  # DCSS memory is not RAM
    for d in devs:
        m.remove_xip_device(d.name)
    assert snapshot(m) == before
    assert m.pages.leaks() == leaks
    assert m.mem.read(256 * MiB, 4) == bytes(4)
