"""fs-dax under 6.18 (mixedmap.xip.dax) on x86_64 pmem and s390x dcssblk; 2.6.27 stays filemap_xip.

Each test names the kernel rule it holds the model to (fs/dax.c, mm/memory.c, fs/ext4/file.c,
mm/mmap.c as 6.18 has them): the mmap flags (no VM_MIXEDMAP since 4.19, VM_HUGEPAGE), a read
fault that maps a refcounted ZONE_DEVICE folio (normal PTE, refcount, mapcount, file RSS), a
hole that maps the zero page until a shared write allocates its block, a private write that
COWs in one fault, MAP_SYNC, truncate, munmap without a leak, a device without struct pages
(no fs-dax at all: -EINVAL at mount), filemap_xip refused on 6.18 before anything changes, and
the batched fault-in of a DAX file equal to page-by-page access on the whole machine.

Counts are relative to a device page's idle reference: the model's ZONE_DEVICE pages keep the
one the machine gave them (6.18 fsdax idles at 0), so a mapping adds exactly what the kernel's does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
import pytest

from mixedmap import EBUSY, EINVAL, VM, DeviceFile, Machine, XipDevice, XipFS
from mixedmap.errors import EOPNOTSUPP, SIGBUS, UnsupportedOperation
from mixedmap.mm import memory, zero
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import (
    MAP_FIXED,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_SYNC,
    VMA,
    VMFault,
    mnemonics,
)
from mixedmap.rules import UnsupportedRule
from mixedmap.xip import dax, filemap
from mixedmap.xip.fs import Inode
from tests.conftest import REGISTRY

RAM = "64M"
MiB = 1 << 20
DEV_SIZE = 2 * MiB  # one 2 MiB sub-section: pmem and dcssblk create ZONE_DEVICE pages for it
FILE_PAGES = 24
HOLES = (3, 9, 10, 23)


def _pmem(memmap: bool) -> Callable[[Machine], XipDevice]:
    return lambda m: m.create_xip_device("pmem", size=DEV_SIZE, memmap=memmap)


def _dcss(**extra: Any) -> Callable[[Machine], XipDevice]:
    def make(m: Machine) -> XipDevice:
        params: dict[str, Any] = {"segment": "DAXIMG", "start": "256M", "size": DEV_SIZE, "type": "SW"}
        return m.create_xip_device("dcssblk", **{**params, **extra})

    return make


#: kind: (arch, device factory, fs-dax possible). dcssblk's DAX pagemap needs 2 MiB alignment.
KINDS: dict[str, tuple[str, Callable[[Machine], XipDevice], bool]] = {
    "pmem": ("x86_64", _pmem(True), True),
    "pmem-raw": ("x86_64", _pmem(False), False),
    "dcssblk": ("s390x", _dcss(), True),
    "dcssblk-nodax": ("s390x", _dcss(dax=False), False),
    "dcssblk-unaligned": ("s390x", _dcss(start=257 * MiB), False),
}
DAX_KINDS = [k for k, (_, _, ok) in KINDS.items() if ok]
NO_DAX_KINDS = [k for k, (_, _, ok) in KINDS.items() if not ok]


def _need(arch: str) -> None:
    if arch not in REGISTRY.names:
        pytest.skip(f"{arch} is not installed")


@attrs.define
class Rig:
    m: Machine
    dev: XipDevice
    fs: XipFS
    inode: Inode

    @property
    def ps(self) -> int:
        return self.m.page_size

    def data(self, pgoff: int) -> bytes:
        return bytes([(pgoff * 7 + 1) & 0xFF or 1]) * self.ps


def rig(kind: str, kernel: str = "6.18") -> Rig:
    """A machine with the device, an ext4 -o dax (6.18) or ext2 -o xip (2.6.27) mount and a
    file of FILE_PAGES pages with HOLES."""
    arch, make, _ = KINDS[kind]
    _need(arch)
    m = Machine(arch, kernel, ram=RAM, registry=REGISTRY)
    dev = make(m)
    fs = XipFS(dev)
    r = Rig(m=m, dev=dev, fs=fs, inode=None)  # type: ignore[arg-type]
    blob = b"".join(bytes(m.page_size) if p in HOLES else r.data(p) for p in range(FILE_PAGES))
    r.inode = fs.create("f", data=blob, holes=HOLES)
    return r


def block_pfn(r: Rig, pgoff: int) -> int:
    return r.fs.frame_of(r.inode, pgoff)


def counts(m: Machine, pfn: int) -> tuple[int, int]:
    info = m.page(pfn)
    assert info is not None
    return info.refcount, info.mapcount


def pte_of(mm: MM, va: int) -> int | None:
    leaf = mm.pt.lookup(va)
    return None if leaf is None else leaf.value


def vma_at(mm: MM, va: int) -> VMA:
    vma = mm.find_vma(va)
    assert vma is not None
    return vma


def state(m: Machine) -> dict[str, Any]:
    """Everything a refused call must leave alone: bytes, struct pages, frames, mms, devices."""
    pfns = np.concatenate(
        [
            np.arange(r.start // m.page_size, r.end // m.page_size, dtype=np.uint64)
            for r in m.regions
            if r.memmap
        ]
    )
    row, col = m.memmap.rows(pfns)
    return {
        "mem": {pa: bytes(b) for pa, b in m.mem.blocks() if b.any()},
        "memmap": [
            a[row, col].tolist()
            for a in (m.memmap.refcount, m.memmap.mapcount, m.memmap.flags, m.memmap.index)
        ],
        "frames": (m.frames._used.tobytes(), m.frames.nr_free),
        "mms": [
            (
                mm.rss_file,
                mm.rss_anon,
                [(v.start, v.end, v.flags, v.page_prot, type(v.vm_ops)) for v in mm.vmas],
            )
            for mm in m.mms
        ],
        "zero": zero.current_zero_pfn(m),
        "sparse": filemap._sparse.get(m),
        "regions": [(r.name, r.start, r.size, r.memmap) for r in m.regions],
    }


def fs_state(r: Rig) -> Any:
    return r.fs._used.tobytes(), {n: (i.size, i.blocks.tolist()) for n, i in r.fs.files.items()}


# -- mount: fs-dax needs struct pages ------------------------------------------------------------------
@pytest.mark.parametrize("kind", NO_DAX_KINDS)
def test_no_struct_pages_no_fsdax(kind: str) -> None:
    """6.18 ext4_check_feature_compatibility: -o dax on a disk without a dax_device is -EINVAL
    (pmem without its memmap has no BLK_FEAT_DAX; dcssblk without its pagemap no dax_device).
    There are no raw-pfn special DAX PTEs in 6.18: nothing of the device can be mapped. A plain
    mount reads and writes; mapping it needs the page cache (not modelled); MAP_SYNC on it is
    -EOPNOTSUPP (daxdev_mapping_supported: the inode is not DAX)."""
    arch, make, _ = KINDS[kind]
    _need(arch)
    m = Machine(arch, "6.18", ram=RAM, registry=REGISTRY)
    dev = make(m)
    assert not dev.dax and not dev.has_struct_page and not dev.dax_synchronous
    before = state(m)
    with pytest.raises(EINVAL, match="DAX unsupported by block device"):
        XipFS(dev)
    assert state(m) == before
    fs = XipFS(dev, dax=False)  # mount without -o dax
    assert not fs.dax and not fs.xip
    inode = fs.create("f", data=b"plain" * 1000)
    assert fs.open("f").read(0, 10) == b"plainplain"
    mm = m.new_mm()
    before = state(m)
    with pytest.raises(UnsupportedOperation, match="page cache"):
        mm.mmap(m.page_size, "r", MAP_PRIVATE, file=fs.open("f"))
    for flags in (MAP_SHARED_VALIDATE | MAP_SYNC, MAP_PRIVATE | MAP_SYNC):
        with pytest.raises(EOPNOTSUPP, match="not DAX"):
            dax.mmap(mm, m.page_size, "r", flags, fs.open("f"))
    assert state(m) == before and inode.npages == 2


@pytest.mark.parametrize("kind", DAX_KINDS)
def test_dax_device_contract(kind: str) -> None:
    """The public contract a 6.18 mount reads: dax (ZONE_DEVICE struct pages behind it) and
    dax_synchronous (pmem on an e820 region and dcssblk call set_dax_synchronous)."""
    r = rig(kind)
    assert r.dev.dax and r.dev.has_struct_page and r.dev.dax_synchronous
    assert r.fs.dax and not r.fs.xip
    first = r.dev.frames(np.array([0], dtype=np.int64))
    assert r.dev.dax_frames(np.arange(4, dtype=np.int64)).tolist() == list(
        range(int(first[0]), int(first[0]) + 4)
    )


def test_2627_mount_has_no_dax_option() -> None:
    """2.6.27 has filemap_xip, not DAX (4.0): -o dax is an UnsupportedRule naming 4.0."""
    _need("s390x")
    m = Machine("s390x", "2.6.27", ram=RAM, registry=REGISTRY)
    dev = _dcss()(m)
    with pytest.raises(UnsupportedRule, match=r"introduced in 4\.0"):
        XipFS(dev, dax=True)
    assert XipFS(dev).xip and not XipFS(dev).dax


# -- mmap -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DAX_KINDS)
def test_mmap_flags_not_mixedmap(kind: str) -> None:
    """ext4_file_mmap_prepare: ext4_dax_vm_ops and VM_HUGEPAGE, no VM_MIXEDMAP (4.19,
    DAX_NO_MIXEDMAP) and no PFNMAP; a shared writable VMA gets the write-protected private
    protection (vma_wants_writenotify: the ops have page_mkwrite/pfn_mkwrite)."""
    r = rig(kind)
    mm = r.m.new_mm()
    a = mm.mmap(FILE_PAGES * r.ps, "r", MAP_PRIVATE, file=r.fs.open("f"))
    b = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_SHARED, file=r.fs.open("f", "rw"))
    va, vb = vma_at(mm, a), vma_at(mm, b)
    base = VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC | VM.HUGEPAGE
    assert va.flags == VM.READ | base
    assert vb.flags == VM.READ | VM.WRITE | VM.SHARED | VM.MAYSHARE | base
    for v in (va, vb):
        assert not v.flags & (VM.MIXEDMAP | VM.PFNMAP | VM.IO | VM.CAN_NONLINEAR | VM.SYNC)
        assert isinstance(v.vm_ops, dax.DaxVmOps) and dax.is_dax_vma(v) and not filemap.is_xip_vma(v)
        assert "hg" in mnemonics(v.flags) and "mm" not in mnemonics(v.flags).split()
    assert va.page_prot == mm.vm_get_page_prot(va.flags)
    assert vb.page_prot == mm.vm_get_page_prot(vb.flags & ~VM.SHARED) != mm.vm_get_page_prot(vb.flags)


# -- read faults ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DAX_KINDS)
def test_read_fault_maps_a_refcounted_folio(kind: str) -> None:
    """dax_fault_iter -> vmf_insert_page_mkwrite(write=false) (DAX_REFCOUNTED_FOLIOS, about 6.15):
    mk_pte(page, vm_page_prot) -- normal, not special, not young -- with a folio reference,
    file rmap and MM_FILEPAGES, per mapping; vm_normal_page returns the page."""
    r = rig(kind)
    pfn = block_pfn(r, 1)
    idle = counts(r.m, pfn)
    mms = [r.m.new_mm() for _ in range(2)]
    for i, mm in enumerate(mms, start=1):
        a = mm.mmap(FILE_PAGES * r.ps, "r", MAP_PRIVATE, file=r.fs.open("f"))
        acc = mm.access(a + r.ps)
        assert (acc.fault, acc.pfn) == ("fault", pfn)
        vma = vma_at(mm, a)
        value = pte_of(mm, a + r.ps)
        assert value == int(mm.ops.pfn_pte(pfn, vma.page_prot))
        assert not mm.pte_special_one(value)
        assert memory.vm_normal_page(vma, a + r.ps, value) == pfn
        assert counts(r.m, pfn) == (idle[0] + i, idle[1] + i)
        assert mm.rss == {"file": 1, "anon": 0}
        assert mm.read(a + r.ps, r.ps) == r.data(1)
    assert [s["Rss"] for s in mms[0].smaps()] == [r.ps]


@pytest.mark.parametrize("kind", DAX_KINDS)
def test_hole_is_the_zero_page_then_a_shared_write_allocates(kind: str) -> None:
    """dax_load_hole: a read of a hole maps the zero page, special and uncounted, and allocates
    nothing, in a shared writable VMA too. A write through the shared VMA allocates a zeroed
    block (ext4_iomap_alloc) and dax_insert_entry unmaps the zero page at that index from
    every mapping (unmap_mapping_pages, COWs kept); the write fault maps the new folio young,
    dirty and writable; the private mapping then refaults and reads the new bytes."""
    r = rig(kind)
    mm = r.m.new_mm()
    h = HOLES[0]
    a = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_PRIVATE, file=r.fs.open("f"))
    b = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_SHARED, file=r.fs.open("f", "rw"))
    c = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_PRIVATE, file=r.fs.open("f"))
    free = r.fs.free_bytes
    for va in (a, b, c):
        assert mm.read(va + h * r.ps, 8) == bytes(8)
    zpfn = zero.current_zero_pfn(r.m)
    assert zpfn is not None
    zcounts = counts(r.m, zpfn)
    for va in (a, b, c):
        value = pte_of(mm, va + h * r.ps)
        assert value == mm.mkspecial_one(int(mm.ops.pfn_pte(zpfn, vma_at(mm, va).page_prot)))
        assert mm.pte_special_one(value) and not mm.ops.pte_write(value)
        assert memory.vm_normal_page(vma_at(mm, va), va + h * r.ps, value) is None
    assert mm.rss == {"file": 0, "anon": 0} and r.fs.free_bytes == free and r.inode.block(h) < 0
    mm.write(c + h * r.ps, b"mine")  # a private COW of the zero page: kept by the unmap below
    assert mm.rss == {"file": 0, "anon": 1}
    acc = mm.access(b + h * r.ps, write=True)  # pfn_mkwrite on the read-only zero page
    assert acc.fault == "wp" and r.fs.free_bytes == free - r.ps and r.inode.block(h) >= 0
    pfn = block_pfn(r, h)
    assert acc.pfn == pfn and pte_of(mm, a + h * r.ps) is None  # the zero page is gone there
    value = pte_of(mm, b + h * r.ps)
    assert value is not None and not mm.pte_special_one(value)
    vb = vma_at(mm, b)
    assert value == int(
        mm.ops.pte_mkwrite(mm.ops.pte_mkdirty(mm.ops.pte_mkyoung(mm.ops.pfn_pte(pfn, vb.page_prot))))
    )
    mm.write(b + h * r.ps, b"new block")
    assert mm.read(a + h * r.ps, 9) == b"new block" and mm.read(c + h * r.ps, 4) == b"mine"
    assert r.fs.open("f").read(h * r.ps, 9) == b"new block"
    assert counts(r.m, zpfn) == zcounts and mm.rss == {"file": 2, "anon": 1}


# -- write faults -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DAX_KINDS)
def test_write_shared(kind: str) -> None:
    """do_shared_fault on an empty PTE: vmf_insert_page_mkwrite(write=true) maps the folio young,
    dirty, writable (one fault). On a read-faulted page the write is do_wp_page -> wp_page_shared
    -> ->page_mkwrite = ext4_dax_fault: same pfn, so only maybe_mkwrite and young, no new
    reference. The bytes land on the device."""
    r = rig(kind)
    mm = r.m.new_mm()
    b = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_SHARED, file=r.fs.open("f", "rw"))
    vma = vma_at(mm, b)
    ops = mm.ops
    p0, p1 = block_pfn(r, 0), block_pfn(r, 1)
    idle = counts(r.m, p0)
    assert mm.access(b, write=True).fault == "fault"
    assert pte_of(mm, b) == int(
        ops.pte_mkwrite(ops.pte_mkdirty(ops.pte_mkyoung(ops.pfn_pte(p0, vma.page_prot))))
    )
    assert counts(r.m, p0) == (idle[0] + 1, idle[1] + 1)
    mm.read(b + r.ps, 1)
    ro = pte_of(mm, b + r.ps)
    assert ro is not None and not ops.pte_write(ro)
    assert mm.access(b + r.ps, write=True).fault == "wp"
    assert pte_of(mm, b + r.ps) == int(ops.pte_mkyoung(ops.pte_mkwrite(ro)))
    assert counts(r.m, p1) == (idle[0] + 1, idle[1] + 1) and mm.rss == {"file": 2, "anon": 0}
    mm.write(b + r.ps + 5, b"DAX")
    assert r.dev.read(r.inode.block(1) * r.ps + 5, 3) == b"DAX"


@pytest.mark.parametrize("kind", DAX_KINDS)
def test_cow_of_a_private_mapping(kind: str) -> None:
    """do_cow_fault with vmf->cow_page (dax_fault_cow_page): a private write to an empty PTE is
    one fault into an anonymous copy of the block (copy_cow_page_dax) or a cleared page for a
    hole, no block allocated, no folio touched. After a read, do_wp_page -> wp_page_copy: the
    folio loses its PTE (file -1, anon +1, refcount and mapcount back)."""
    r = rig(kind)
    mm = r.m.new_mm()
    a = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_PRIVATE, file=r.fs.open("f"))
    ops = mm.ops
    p2, p4 = block_pfn(r, 2), block_pfn(r, 4)
    idle = counts(r.m, p2)
    free = r.fs.free_bytes
    acc = mm.access(a + 2 * r.ps, write=True)
    assert acc.fault == "fault" and acc.pfn != p2 and counts(r.m, p2) == idle
    vma = vma_at(mm, a)
    assert vma.anon_vma and pte_of(mm, a + 2 * r.ps) == int(
        ops.pte_mkwrite(ops.pte_mkdirty(ops.pfn_pte(acc.pfn, vma.page_prot)))
    )
    page = r.m.page(acc.pfn)
    assert page is not None and (page.refcount, page.mapcount) == (1, 1)
    assert mm.read(a + 2 * r.ps, r.ps) == r.data(2) and mm.rss == {"file": 0, "anon": 1}
    h = HOLES[1]
    assert mm.access(a + h * r.ps, write=True).fault == "fault"
    mm.write(a + h * r.ps, b"private")
    assert mm.read(a + h * r.ps, 9) == b"private\0\0" and r.fs.free_bytes == free and r.inode.block(h) < 0
    mm.read(a + 4 * r.ps, 1)
    assert counts(r.m, p4) == (idle[0] + 1, idle[1] + 1) and mm.rss == {"file": 1, "anon": 2}
    assert mm.access(a + 4 * r.ps, write=True).fault == "wp"
    assert counts(r.m, p4) == idle and mm.rss == {"file": 0, "anon": 3}
    mm.write(a + 4 * r.ps, b"copy")
    assert (
        mm.read(a + 4 * r.ps, 5) == b"copy" + r.data(4)[:1]
        and r.fs.open("f").read(4 * r.ps, 4) == r.data(4)[:4]
    )


# -- MAP_SYNC ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DAX_KINDS)
def test_map_sync(kind: str) -> None:
    """do_mmap (4.15 MAP_SHARED_VALIDATE, MAP_SYNC): calc_vm_flag_bits sets VM_SYNC, ext4 has
    FOP_MMAP_SYNC and the dax_device is synchronous, so MAP_SHARED_VALIDATE|MAP_SYNC (and, as
    the 6.18 text has it, MAP_PRIVATE|MAP_SYNC) are accepted with VM_SYNC; a write fault that
    allocates then goes through dax_finish_sync_fault to the same PTE. A file without
    FOP_MMAP_SYNC (a driver) is -EOPNOTSUPP before anything changes; 2.6.27 has no MAP_SYNC."""
    r = rig(kind)
    mm = r.m.new_mm()
    va = dax.mmap(mm, FILE_PAGES * r.ps, "rw", MAP_SHARED_VALIDATE | MAP_SYNC, r.fs.open("f", "rw"))
    vma = vma_at(mm, va)
    assert vma.flags & VM.SYNC and vma.flags & VM.SHARED and vma.file.inode is r.inode
    h = HOLES[2]
    mm.write(va + h * r.ps, b"synced")
    assert r.fs.open("f").read(h * r.ps, 6) == b"synced"
    priv = dax.mmap(mm, r.ps, "r", MAP_PRIVATE | MAP_SYNC, r.fs.open("f"))
    assert vma_at(mm, priv).flags & VM.SYNC and not vma_at(mm, priv).flags & VM.SHARED
    plain = dax.mmap(mm, r.ps, "rw", MAP_SHARED | MAP_SYNC, r.fs.open("f", "rw"))
    assert vma_at(mm, plain).flags & VM.SYNC  # VM_SYNC is computed before MAP_SHARED drops the flag
    drv = DeviceFile("drv", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.PFNMAP))
    before = state(r.m)
    with pytest.raises(EOPNOTSUPP, match="FOP_MMAP_SYNC"):
        dax.mmap(mm, r.ps, "r", MAP_SHARED_VALIDATE | MAP_SYNC, drv)
    with pytest.raises(EOPNOTSUPP):
        dax.mmap(mm, r.ps, "r", MAP_SHARED_VALIDATE | 0x40000000, r.fs.open("f"))
    assert state(r.m) == before
    old = rig(kind, "2.6.27") if kind == "dcssblk" else None
    if old is not None:
        with pytest.raises(UnsupportedRule, match=r"introduced in 4\.15"):
            dax.mmap(old.m.new_mm(), old.ps, "r", MAP_SHARED_VALIDATE | MAP_SYNC, old.fs.open("f"))


# -- truncate, munmap ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", DAX_KINDS)
def test_truncate(kind: str) -> None:
    """ext4_setattr: truncate_pagecache unmaps every page past the new EOF from every mapping,
    COWs included, the blocks are freed (folios back to idle), the tail of the last partial
    block is zeroed (dax_truncate_page); a fault past EOF is SIGBUS (dax_iomap_pte_fault)."""
    r = rig(kind)
    mm = r.m.new_mm()
    a = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_PRIVATE, file=r.fs.open("f"))
    b = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_SHARED, file=r.fs.open("f", "rw"))
    mm.fault_in(a, FILE_PAGES * r.ps)
    mm.fault_in(b, FILE_PAGES * r.ps)
    mm.write(a + 20 * r.ps, b"cow")
    pfn = block_pfn(r, 20)
    idle = (counts(r.m, pfn)[0] - 1, counts(r.m, pfn)[1] - 1)
    free = r.fs.free_bytes
    new_size = 12 * r.ps + 100
    r.fs.truncate(r.inode, new_size)
    assert (
        r.inode.size == new_size
        and r.fs.free_bytes == free + (FILE_PAGES - 13 - sum(h >= 13 for h in HOLES)) * r.ps
    )
    for va in (a, b):
        assert all(pte_of(mm, va + p * r.ps) is None for p in range(13, FILE_PAGES))
        assert pte_of(mm, va + 12 * r.ps) is not None
    assert counts(r.m, pfn) == idle and mm.rss["anon"] == 0
    assert r.fs.open("f").read(12 * r.ps + 90, 20) == r.data(12)[:10]
    assert r.dev.read(r.inode.block(12) * r.ps + 100, r.ps - 100) == bytes(r.ps - 100)
    with pytest.raises(SIGBUS):
        mm.read(a + 13 * r.ps, 1)
    r.fs.truncate(r.inode, 16 * r.ps)  # growing: holes, mapped as the zero page
    assert mm.read(b + 14 * r.ps, 4) == bytes(4)


@pytest.mark.parametrize("kind", DAX_KINDS)
def test_munmap_and_exit_leave_no_leak(kind: str) -> None:
    """zap_pte_range: each DAX PTE drops its folio reference, rmap and file RSS; the zero page
    and the COW copies go too. While a page is mapped the device cannot go (EBUSY); after
    munmap and exit every device page is idle and no RAM page is left but the zero page."""
    r = rig(kind)
    pfns = [block_pfn(r, p) for p in range(FILE_PAGES) if p not in HOLES]
    idle = {p: counts(r.m, p) for p in pfns}
    mm = r.m.new_mm()
    a = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_PRIVATE, file=r.fs.open("f"))
    b = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_SHARED, file=r.fs.open("f", "rw"))
    mm.fault_in(a, FILE_PAGES * r.ps)
    mm.fault_in(b, FILE_PAGES * r.ps)
    mm.write(a + r.ps, b"x")
    mm.write(b + 2 * r.ps, b"y")
    child = mm.fork()
    with pytest.raises(EBUSY):
        r.m.remove_xip_device(r.dev.name)
    mm.munmap(a, FILE_PAGES * r.ps)
    assert mm.rss == {"file": FILE_PAGES - len(HOLES), "anon": 0}
    mm.munmap(b, FILE_PAGES * r.ps)
    assert mm.rss == {"file": 0, "anon": 0}
    child.exit()
    mm.exit()
    assert {p: counts(r.m, p) for p in pfns} == idle
    assert zero.release_zero_page(r.m)
    assert r.m.pages.leaks() == {} and r.m.pagetable_bytes() == 0
    r.m.remove_xip_device(r.dev.name)


# -- filemap_xip is gone in 6.18 ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", DAX_KINDS)
def test_filemap_xip_entry_points_are_refused_on_618(kind: str) -> None:
    """FILEMAP_XIP was removed in 4.0: each entry point is an UnsupportedRule naming DAX, its
    replacement, raised before anything changes (no VMA flag, PTE, block or sparse page)."""
    r = rig(kind)
    mm = r.m.new_mm()
    va = mm.mmap(FILE_PAGES * r.ps, "rw", MAP_SHARED, file=r.fs.open("f", "rw"))
    vma = vma_at(mm, va)
    file = r.fs.open("f", "rw")
    calls: dict[str, Callable[[], object]] = {
        "xip_file_mmap": lambda: filemap.xip_file_mmap(file, vma),
        "get_xip_mem": lambda: filemap.get_xip_mem(r.inode, HOLES[0], create=True),
        "xip_file_fault": lambda: filemap.xip_file_fault(
            vma, VMFault(address=va + HOLES[0] * r.ps, pgoff=HOLES[0], write=True)
        ),
        "xip_fault_pfns": lambda: filemap.xip_fault_pfns(vma, np.arange(4, dtype=np.int64)),
        "xip_file_read": lambda: filemap.xip_file_read(file, 0, 10),
        "xip_file_write": lambda: filemap.xip_file_write(file, HOLES[0] * r.ps, b"x"),
        "xip_truncate": lambda: filemap.xip_truncate(r.inode, 0),
        "__xip_unmap": lambda: getattr(filemap, "__xip_unmap")(r.inode, 0),
    }
    before, fsb = state(r.m), fs_state(r)
    for name, call in calls.items():
        with pytest.raises(UnsupportedRule, match="DAX") as exc:
            call()
        assert "6.18" in str(exc.value) and "removed in 4.0" in str(exc.value), name
        assert state(r.m) == before and fs_state(r) == fsb, name


@pytest.mark.parametrize(("arch", "driver"), [("s390x", "dcssblk"), ("x86_64", "brd")])
def test_2627_still_maps_through_filemap_xip(arch: str, driver: str) -> None:
    """2.6.27 is unchanged: xip_file_mmap's VM_MIXEDMAP|VM_CAN_NONLINEAR, xip_file_vm_ops, a
    special PTE for a block, the sparse page for a hole; the DAX entry points are refused."""
    _need(arch)
    m = Machine(arch, "2.6.27", ram=RAM, registry=REGISTRY)
    dev = _dcss()(m) if driver == "dcssblk" else m.create_xip_device("brd", size=DEV_SIZE)
    fs = XipFS(dev)
    assert fs.xip and not fs.dax
    fs.create("f", data=b"X" * m.page_size * 2, size=3 * m.page_size)
    mm = m.new_mm()
    a = mm.mmap(3 * m.page_size, "r", MAP_PRIVATE, file=fs.open("f"))
    vma = vma_at(mm, a)
    assert vma.flags & VM.MIXEDMAP and vma.flags & VM.CAN_NONLINEAR and not vma.flags & VM.HUGEPAGE
    assert filemap.is_xip_vma(vma) and not dax.is_dax_vma(vma)
    assert mm.read(a, 1) == b"X" and mm.pte_special_one(pte_of(mm, a) or 0) and mm.rss["file"] == 0
    mm.read(a + 2 * m.page_size, 1)
    assert pte_of(mm, a + 2 * m.page_size) is not None and filemap.xip_sparse_allocated(m)
    with pytest.raises(UnsupportedRule, match=r"introduced in 4\.0"):
        dax.ext4_file_mmap(fs.open("f"), vma)
    with pytest.raises(UnsupportedRule):
        dax.file_read(fs.open("f"), 0, 1)


# -- the batched fault-in ---------------------------------------------------------------------------
def _twin_snapshot(r: Rig, mm: MM, events: list[dict[str, Any]]) -> dict[str, Any]:
    snap = state(r.m)
    snap["mms"] = [
        (x.rss_file, x.rss_anon, [(v.start, v.flags, v.anon_vma) for v in x.vmas]) for x in r.m.mms
    ]
    snap["fs"] = fs_state(r)
    snap["tables"] = (r.m.pagetable_bytes(), sorted(mm.pt._owned.items()), mm.pt.root_pa)
    snap["trace"] = [
        (e["event"], e["func"], e["addr"] - e["addr"] % r.ps + i * r.ps)
        for e in events
        for i in range(int(e.get("npages", 1)))
    ]
    return snap


def _world(kind: str) -> tuple[Rig, MM, dict[str, int], list[dict[str, Any]]]:
    r = rig(kind)
    events: list[dict[str, Any]] = []
    r.m.tracer = lambda **kw: events.append(kw)
    mm = r.m.new_mm()
    leaf = r.m.fmt.levels[-1]
    reach = 1 << (leaf.shift + leaf.index_bits)
    n = FILE_PAGES * r.ps
    vas = {
        "ro": mm.mmap(n, "r", MAP_PRIVATE | MAP_FIXED, file=r.fs.open("f"), addr=8 * reach - 10 * r.ps),
        "cow": mm.mmap(n, "rw", MAP_PRIVATE | MAP_FIXED, file=r.fs.open("f"), addr=10 * reach - 5 * r.ps),
        "shared": mm.mmap(
            n, "rw", MAP_SHARED | MAP_FIXED, file=r.fs.open("f", "rw"), addr=12 * reach - 12 * r.ps
        ),
    }
    return r, mm, vas, events


STEPS: list[tuple[str, str, int, int, bool]] = [
    ("touch", "ro", 5, 1, False),
    ("touch", "shared", HOLES[1], 1, False),
    ("touch", "cow", 7, 1, True),
    ("fault", "ro", 0, FILE_PAGES, False),
    ("fault", "shared", 0, FILE_PAGES, False),
    ("fault", "cow", 0, FILE_PAGES, False),
    ("fault", "shared", 0, FILE_PAGES, True),
    ("fault", "cow", 2, 10, True),
    ("fault", "ro", 0, FILE_PAGES + 3, False),  # runs into the gap: SIGSEGV at the same page
    ("fault", "ro", 0, FILE_PAGES, False),
]


@pytest.mark.parametrize("kind", DAX_KINDS)
def test_batched_fault_in_equals_page_by_page(kind: str) -> None:
    """MM.fault_in of DAX VMAs (BatchFault: dax_fault_pfns, insert_pages) leaves exactly what
    mm.access page by page leaves on the whole machine: bytes, struct pages, frames, page
    tables, RSS, VMA flags, the zero page, the filesystem and the trace, step after step
    (read and write, private, COW and shared, holes, a run into the gap)."""
    a, b = _world(kind), _world(kind)
    for op, name, first, npages, write in STEPS:
        outs = []
        for (r, mm, vas, _), batched in ((a, True), (b, False)):
            start = vas[name] + first * r.ps
            try:
                if op == "touch":
                    mm.access(start, write=write)
                elif batched:
                    mm.fault_in(start, npages * r.ps, write)
                else:
                    for i in range(npages):
                        mm.access(start + i * r.ps, write=write)
                outs.append(("ok", ""))
            except Exception as exc:
                outs.append((type(exc).__name__, str(exc)))
        label = f"{kind} {op} {name} +{first} x{npages} write={write}"
        assert outs[0] == outs[1], label
        sa, sb = _twin_snapshot(a[0], a[1], a[3]), _twin_snapshot(b[0], b[1], b[3])
        for key in sa:
            assert sa[key] == sb[key], f"{label}: {key} differs between fault_in and the per-page loop"


@pytest.mark.parametrize("kind", DAX_KINDS)
def test_fault_in_batches_a_whole_dax_image(kind: str) -> None:
    """A fully allocated image (the guests experiment's): every page is planned by the batch --
    range events only, one insert_page run per PTE table -- with the refcounted result."""
    arch, _, _ = KINDS[kind]
    _need(arch)
    size = 16 * MiB
    m = Machine(arch, "6.18", ram=RAM, registry=REGISTRY)
    dev = m.create_xip_device("pmem", size=size) if kind == "pmem" else _dcss(size=size)(m)
    fs = XipFS(dev, read_only=True)
    inode = fs.create("img", data=b"HEAD", size=size, allocate=True)
    events: list[dict[str, Any]] = []
    m.tracer = lambda **kw: events.append(kw)
    mm = m.new_mm()
    va = mm.mmap(size, "rx", MAP_PRIVATE, file=fs.open("img"))
    t0 = time.perf_counter()
    assert mm.fault_in(va, size) == size // m.page_size
    elapsed = time.perf_counter() - t0
    assert events and all("npages" in e and e["event"] == "insert_page" for e in events)
    assert sum(e["npages"] for e in events) == size // m.page_size
    assert mm.rss == {"file": size // m.page_size, "anon": 0}
    first = fs.frame_of(inode, 0)
    assert counts(m, first)[1] == 1 and mm.read(va, 4) == b"HEAD"
    assert elapsed < 5.0, f"fault_in of {size >> 20} MiB took {elapsed:.2f}s: not batched?"


def test_guests_experiment_runs_on_fsdax_under_618(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """``mixedmap run guests -k 6.18``: the image is ext4 -o dax on dcssblk's pagemap, so each
    guest spends the ZONE_DEVICE memmap again and RSS counts every page (refcounted folios),
    read back from the machines; pmem without its memmap has no fs-dax: a reason, no figures."""
    import json

    from mixedmap.cli import run

    _need("s390x")
    argv = ["run", "guests", "-a", "s390x", "-k", "6.18", "--guests", "2", "--image-size", "4M",
            "--out", str(tmp_path), "--json"]  # fmt: skip
    assert run(argv) == 0
    runs = {r["behaviour"]: r for r in json.loads(capsys.readouterr().out)["runs"]}
    assert set(runs) == {"pre-series", "6.18"}
    dax618, pages = runs["6.18"], (4 << 20) // 4096
    assert dax618["memmap_bytes_per_guest"] == dax618["formula_memmap_bytes_per_guest"] == pages * 64
    assert dax618["total_rss_pages"] == 2 * pages and dax618["total_ptes"] == 2 * pages and dax618["verified"]
    if "x86_64" in REGISTRY.names:
        from mixedmap.guests import run_guests

        r = run_guests("x86_64", "6.18", guests=1, image_size=4 << 20, pre_series=False, registry=REGISTRY)
        assert r.reason is not None and "DAX" in r.reason and r.per_guest == ()
