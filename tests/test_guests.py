"""The guests experiment (kernel-mm-semantics.md 7.3, 7.4, S14) on every installed arch.

Small runs (3 guests x 16 MiB) on every arch x profile: what each guest spends is read from
its machine and must equal the kernel's formula -- 64 bytes of struct page per 4 KiB page of
image where the image memory has struct pages, 0 where it has none -- and the break-even
guest count is the smallest N with N x memmap >= image (64 at 64-byte struct pages). A
behaviour without a model carries a reason instead of figures; plots are valid PNG and SVG.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import attrs
import numpy as np
import pytest

from mixedmap import EINVAL, ENOMEM, ENOSPC, Machine, ProfileError, RangeDevice, UnknownArchError, XipFS
from mixedmap.errors import UnsupportedOperation
from mixedmap.guests import GuestsResult, break_even, run_guests
from mixedmap.plot import plot_guests
from tests.conftest import REGISTRY

MiB = 1 << 20
IMAGE = 16 * MiB
GUESTS = 3
ARCH_PROFILES = sorted({(b.name, m.profile) for b in REGISTRY for m in b.spec.modes})


def expected(arch: str, kernel: str, pre_series: bool) -> str:
    """What the kernel does with the image's memory: "pages" (struct pages), "none" (no
    struct pages), "reason" (no model), or "error" (no XIP driver on this arch/profile)."""
    drivers = {d.name: d for d in REGISTRY.bind(arch).xip_drivers if kernel in d.profiles}
    if not drivers:
        return "error"
    if "dcssblk" in drivers:
        if kernel == "6.18":  # dcssblk's DAX pagemap: ZONE_DEVICE struct pages
            return "error" if pre_series else "pages"
        return "pages" if pre_series else "none"
    if pre_series:
        return "reason"
    if "axonram" in drivers:
        return "none"
    if "brd" in drivers:
        return "pages"  # RAM pages
    return "reason"  # 6.18 pmem without a memmap: no DAX, nothing to map


def run(arch: str, kernel: str, pre_series: bool, **kw: object) -> GuestsResult:
    return run_guests(
        arch, kernel, guests=GUESTS, image_size=IMAGE, pre_series=pre_series, registry=REGISTRY, **kw
    )  # type: ignore[arg-type]


@pytest.mark.parametrize("pre_series", [False, True], ids=["series", "pre-series"])
@pytest.mark.parametrize(("arch", "kernel"), ARCH_PROFILES, ids=[f"{a}-{k}" for a, k in ARCH_PROFILES])
def test_guests_memmap_equals_the_kernel_formula(arch: str, kernel: str, pre_series: bool) -> None:
    want = expected(arch, kernel, pre_series)
    if want == "error":
        with pytest.raises((UnsupportedOperation, EINVAL)):
            run(arch, kernel, pre_series)
        return
    r = run(arch, kernel, pre_series)
    assert (r.arch, r.kernel, r.pre_series, r.guests, r.image_size) == (
        arch,
        kernel,
        pre_series,
        GUESTS,
        IMAGE,
    )
    if want == "reason":
        assert r.reason and not r.modelled and r.per_guest == () and r.memmap_bytes_per_guest is None
        assert r.break_even is None and r.total_memmap_bytes is None
        return
    assert r.reason is None and r.verified
    assert (r.page_size, r.struct_page_size) == (4096, 64)
    per = IMAGE // 4096 * 64 if want == "pages" else 0  # reference 7.3: 64 bytes per 4 KiB page
    assert r.memmap_bytes_per_guest == per
    assert [g.memmap_bytes for g in r.per_guest] == [per] * GUESTS
    assert r.total_memmap_bytes == GUESTS * per
    assert r.break_even == (64 if per else None)
    pages = IMAGE // r.page_size
    assert [g.index for g in r.per_guest] == list(range(GUESTS))
    assert {(g.ptes, g.faulted, g.smaps_rss_bytes) for g in r.per_guest} == {(pages, pages, IMAGE)}
    assert r.total_ptes == GUESTS * pages
    assert len({g.pagetable_bytes for g in r.per_guest}) == 1 and r.per_guest[0].pagetable_bytes > 0
    assert r.total_pagetable_bytes == GUESTS * r.per_guest[0].pagetable_bytes
    # RSS counts only refcounted pages: special PTEs (the bit, or no struct page) count nothing.
    # 6.18 maps the image with fs-dax, whose ZONE_DEVICE folios are refcounted (about 6.15):
    # the old 6.18 answer here (0) was 2.6.27's special-PTE rule on 6.18 encodings.
    refcounted = want == "pages" and ((r.kernel == "2.6.26" and arch != "s390x") or r.kernel == "6.18")
    assert {g.rss_pages for g in r.per_guest} == {pages if refcounted else 0}
    ram_copy = IMAGE if r.driver == "brd" else 0  # brd: each guest's RAM holds its own copy
    assert {g.image_ram_bytes for g in r.per_guest} == {ram_copy}
    assert r.machines == ()


def test_pmem_with_struct_pages_on_618() -> None:
    """6.18 pmem with its memmap (ZONE_DEVICE pages): the cost the series removed is back."""
    r = run("x86_64", "6.18", False, driver_params={"memmap": True})
    assert r.reason is None and r.memmap_bytes_per_guest == IMAGE // 64 and r.break_even == 64
    assert ("memmap", "True") in r.driver_params


def test_s14_pre_series_versus_series() -> None:
    """S14: with struct pages 100 guests spend 1.5625 x the image; after the series nothing."""
    pre, post = run("s390x", "2.6.27", True), run("s390x", "2.6.27", False)
    assert pre.memmap_bytes_per_guest == IMAGE // 64 and post.memmap_bytes_per_guest == 0
    assert 100 * (pre.memmap_bytes_per_guest or 0) == IMAGE * 25 // 16
    assert (pre.break_even, post.break_even) == (64, None)
    assert ("pre_series", "True") in pre.driver_params
    assert pre.total_ptes == post.total_ptes  # the same special PTEs either way (s390 has the bit)


def test_break_even() -> None:
    assert break_even(1 << 30, 16 * MiB) == 64
    assert break_even(2 << 30, 32 * MiB) == 64  # the reference's 2 GiB DCSS example
    assert break_even(1 << 30, 14 * MiB) == 74  # 56-byte struct pages: 1 GiB * 56 / 4096 = 14 MiB
    assert break_even(100, 30) == 4
    assert break_even(1 << 30, 0) is None


def test_kept_machines_hold_struct_pages_as_measured() -> None:
    """keep=True: the machines stay; the device's frames have struct pages (pfn_valid)
    exactly when memmap bytes were reported, and each mapping reads the image header."""
    progress: list[tuple[int, int]] = []
    for pre in (False, True):
        r = run("s390x", "2.6.26", pre, keep=True, progress=lambda d, t: progress.append((d, t)))
        assert len(r.machines) == GUESTS
        for m in r.machines:
            assert isinstance(m, Machine) and len(m.mms) == 1
            dev = next(iter(m.devices.values()))
            frames = dev.frames(np.arange(dev.size // m.page_size, dtype=np.int64)).astype(np.uint64)
            assert bool(m.pfn_valid(frames).all()) == pre and bool(m.pfn_valid(frames).any()) == pre
            mm = m.mms[0]
            va = mm.vmas[0].start
            assert mm.read(va, 24) == b"MIXEDMAP XIP GUEST IMAGE"
    assert progress == [(i, GUESTS) for i in range(1, GUESTS + 1)] * 2


def test_keep_first_keeps_only_the_first_guests() -> None:
    r = run("s390x", "2.6.27", False, keep_first=1)
    assert GUESTS > 1 and len(r.machines) == 1 and len(r.per_guest) == GUESTS
    assert r.machines[0].mms[0].read(r.machines[0].mms[0].vmas[0].start, 8) == b"MIXEDMAP"
    assert run("s390x", "2.6.27", False).machines == ()


def test_plots_are_valid_png_and_svg(tmp_path: Path) -> None:
    results = [run("s390x", "2.6.27", pre) for pre in (False, True)]
    results.append(run("ppc64", "2.6.27", True))  # not modelled: listed with its reason
    results = [attrs.evolve(r, guests=100) for r in results]
    png, svg = plot_guests(results, tmp_path / "sub" / "guests")
    assert (png.name, svg.name) == ("guests.png", "guests.svg")
    data = png.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000
    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    text = svg.read_text()
    assert "break-even" in text and "not modelled" in text
    with pytest.raises(EINVAL, match="no results"):
        plot_guests([], tmp_path / "empty")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"guests": 0}, EINVAL, "guests"),
        ({"image_size": IMAGE + 100}, EINVAL, "multiple of"),
        ({"image_size": 0}, EINVAL, "image_size"),
        ({"driver": "nosuch"}, UnknownArchError, "nosuch"),
        ({"driver": "pmem", "arch": "x86_64"}, ProfileError, "6.18"),
        ({"driver_params": {"bogus": 1}}, EINVAL, "bogus"),
    ],
    ids=["no-guests", "unaligned-image", "empty-image", "unknown-driver", "wrong-profile", "bad-param"],
)
def test_bad_input_is_named(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {
        "guests": GUESTS,
        "image_size": IMAGE,
        "pre_series": False,
        "registry": REGISTRY,
    }
    args.update(kwargs)
    arch = str(args.pop("arch", "s390x"))
    with pytest.raises(error, match=match):
        run_guests(arch, "2.6.27", **args)  # type: ignore[arg-type]


def test_an_arch_without_a_default_needs_a_driver() -> None:
    for arch, kernel in (("toyarch", "2.6.27"), ("ppc64", "6.18")):
        with pytest.raises(UnsupportedOperation, match="pass driver="):
            run(arch, kernel, False)
    with pytest.raises(UnknownArchError):
        run_guests("nosucharch", "2.6.27", guests=1, image_size=IMAGE, pre_series=False, registry=REGISTRY)


# -- the image: XipFS.create(allocate=True) and XipDevice.clear_pages ------------------------------
DRIVER_CASES = [
    ("s390x", "2.6.27", "dcssblk", {"segment": "IMG", "start": "256M", "size": IMAGE, "type": "SR"}),
    ("s390x", "2.6.26", "dcssblk", {"segment": "IMG", "start": "256M", "size": IMAGE, "pre_series": True}),
    ("ppc64", "2.6.27", "axonram", {"size": IMAGE}),
    ("x86_64", "2.6.27", "brd", {"size": IMAGE}),
    ("x86_64", "6.18", "pmem", {"size": IMAGE}),
]


@pytest.mark.parametrize(
    ("arch", "kernel", "driver", "params"), DRIVER_CASES, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in DRIVER_CASES]
)
def test_allocated_image_has_every_block_and_stores_no_zero_block(
    arch: str, kernel: str, driver: str, params: dict[str, object]
) -> None:
    if arch not in REGISTRY.names:
        pytest.skip(f"{arch} is not installed")
    m = Machine(arch, kernel, ram="64M", registry=REGISTRY)
    dev = m.create_xip_device(driver, **params)
    fs = XipFS(dev, read_only=True)
    stored = m.mem.stored_bytes
    inode = fs.create("img", data=b"HEAD" * 300, size=IMAGE, allocate=True)
    pages = IMAGE // m.page_size
    assert inode.size == IMAGE and inode.npages == pages and bool((inode.blocks >= 0).all())
    assert fs.free_bytes == 0 and len(set(inode.blocks.tolist())) == pages
    assert m.mem.stored_bytes - stored <= 4 * m.page_size  # the header, not 16 MiB of zeroes
    frames = dev.frames(inode.blocks)
    assert bool((frames >= 0).all())  # every block is backed (brd: a RAM page each)
    for pgoff in (0, 1, pages // 2, pages - 1):  # the batch's contract with direct_access
        assert fs.direct_access(int(inode.blocks[pgoff]))[1] == int(frames[pgoff])
    f = fs.open("img")
    assert f.read(0, 1200) == b"HEAD" * 300 and f.read(IMAGE - 5000, 5000) == bytes(5000)


def test_allocate_zeroes_reused_blocks_and_rolls_back() -> None:
    m = Machine("toyarch", "2.6.27", ram="64M", registry=REGISTRY)
    m.add_region("dev", 1 << 30, 64 * m.page_size, memmap=False)
    dev = RangeDevice(m, "dev", 1 << 30, 64 * m.page_size, read_only=False, kaddr_base=1 << 30)
    fs = XipFS(dev)
    old = fs.create("old", data=b"\xff" * (8 * m.page_size))
    fs.free_blocks(old.blocks)  # unlinked: its blocks keep their bytes until reused
    del fs.files["old"]
    new = fs.create("new", data=b"x", size=8 * m.page_size, allocate=True)
    assert fs.open("new").read(0, 8 * m.page_size) == b"x" + bytes(8 * m.page_size - 1)
    assert sorted(new.blocks.tolist()) == list(range(8))
    free = fs.free_bytes
    with pytest.raises(ENOSPC):
        fs.create("big", size=free + m.page_size, allocate=True)
    assert fs.free_bytes == free and "big" not in fs.files
    brd_m = Machine("x86_64", "2.6.27", ram="16M", registry=REGISTRY) if "x86_64" in REGISTRY.names else None
    if brd_m is not None:  # brd runs out of RAM part-way: the file never existed
        brd = brd_m.create_xip_device("brd", size=32 * MiB)
        brd_fs = XipFS(brd)
        with pytest.raises(ENOMEM):
            brd_fs.create("img", data=b"h", size=32 * MiB, allocate=True)
        assert brd_fs.free_bytes == 32 * MiB and brd_fs.files == {}
