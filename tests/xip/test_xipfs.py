"""The XIP filesystem without mappings: get_xip_mem, xip_file_read/write, truncate, read-only.

Rules: kernel-mm-semantics.md 8.2 (``get_xip_mem``: pfn of a block, -ENODATA for a hole
unless create, a created block is zeroed) and 8.4 (``xip_file_read``: holes read as zeroes,
bytes up to EOF; ``xip_file_write``: allocate holes, extend i_size; ``xip_truncate_page``:
zero the tail of the last partial block). Every test runs on every arch case (one mode per
arch and profile) and every device kind: generic without / with struct pages and the arch's
own driver model. Bytes are always checked against the device itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mixedmap import EEXIST, EFAULT, EINVAL, ENOENT, ENOSPC, EROFS, RangeDevice, XipFS
from mixedmap.xip import filemap
from mixedmap.xip.device import SECTOR_SIZE
from mixedmap.xip.fs import ENODATA, XipFile
from tests.conftest import Case
from tests.xip import (
    DEV_START,
    XIP_CASES,
    Rig,
    block_pfn,
    case_ids,
    kinds_of,
    make_rig,
    pattern,
    run_labelled,
    teardown,
)

CASES = pytest.mark.parametrize("case", XIP_CASES, ids=case_ids(XIP_CASES))


def each_device(case: Case, body: Callable[[Rig], None], read_only: bool = False) -> None:
    """Run ``body(rig)`` on every device kind of ``case``, then tear the rig down."""
    for kind in kinds_of(case):
        rig = make_rig(case, kind, read_only=read_only)

        def run(rig: Rig = rig) -> None:
            body(rig)
            teardown(rig)

        run_labelled(rig.label(), run)


def file_bytes(rig: Rig, name: str) -> bytes:
    """What the device holds for a file, page by page (zeroes for holes), up to EOF."""
    inode = rig.fs.files[name]
    out = bytearray()
    for p in range(inode.npages):
        b = inode.block(p)
        out += bytes(rig.ps) if b < 0 else rig.dev.read(b * rig.ps, rig.ps)
    return bytes(out[: inode.size])


# -- get_xip_mem ------------------------------------------------------------------------------------
@CASES
def test_get_xip_mem_data_hole_create(case: Case) -> None:
    def body(rig: Rig) -> None:
        ps, m = rig.ps, rig.m
        data = pattern(3 * ps, 1)
        content = data[:ps] + bytes(ps) + data[2 * ps :]
        inode = rig.fs.create("f", data=content, size=4 * ps, holes=[1])
        free0 = rig.fs.free_bytes
        assert free0 == rig.dev.size - 2 * ps  # pages 0 and 2 have blocks; 1 and 3 are holes

        # data: the device's frame for the block, holding the file's bytes
        for p in (0, 2):
            kaddr, pfn = filemap.get_xip_mem(inode, p, create=False)
            block = inode.block(p)
            assert (kaddr, pfn) == rig.dev.direct_access(block * (ps // SECTOR_SIZE))
            assert pfn == rig.dev.frame(block)
            if rig.generic:
                assert kaddr == DEV_START + block * ps
                assert pfn == (DEV_START >> m.fmt.page_shift) + block
            assert m.mem.read(pfn * ps, ps) == content[p * ps : (p + 1) * ps]
            assert (m.page(pfn) is not None) == rig.dev.has_struct_page
        assert block_pfn(inode, 0) != block_pfn(inode, 2)
        # create on a present block changes nothing
        assert filemap.get_xip_mem(inode, 0, create=True) == filemap.get_xip_mem(inode, 0, create=False)
        assert rig.fs.free_bytes == free0

        # holes: ENODATA (errno 61) without create, nothing allocated
        for p in (1, 3):
            with pytest.raises(ENODATA) as info:
                filemap.get_xip_mem(inode, p, create=False)
            assert info.value.errno == 61
        assert rig.fs.free_bytes == free0

        # create: a zeroed block, the same one afterwards
        kaddr, pfn = filemap.get_xip_mem(inode, 3, create=True)
        assert inode.block(3) >= 0
        assert rig.fs.free_bytes == free0 - ps
        assert m.mem.read(pfn * ps, ps) == bytes(ps)
        assert filemap.get_xip_mem(inode, 3, create=False) == (kaddr, pfn)
        assert pfn not in {block_pfn(inode, 0), block_pfn(inode, 2)}
        assert inode.size == 4 * ps  # get_xip_mem never changes i_size
        assert file_bytes(rig, "f") == content + bytes(ps)

    each_device(case, body)


@CASES
def test_create_reuses_zeroed_blocks(case: Case) -> None:
    """A freed block that held data reads as zeroes when a hole is filled with it again."""

    def body(rig: Rig) -> None:
        ps = rig.ps
        inode = rig.fs.create("f", data=pattern(2 * ps, 2))
        old = block_pfn(inode, 1)
        filemap.xip_truncate(inode, ps)
        filemap.xip_truncate(inode, 2 * ps)  # page 1 is a hole now
        with pytest.raises(ENODATA):
            filemap.get_xip_mem(inode, 1, create=False)
        _, pfn = filemap.get_xip_mem(inode, 1, create=True)
        assert pfn == old  # the lowest free block comes back
        assert rig.m.mem.read(pfn * ps, ps) == bytes(ps)  # ext2_clear_xip_target

    each_device(case, body)


@CASES
def test_enospc(case: Case) -> None:
    def body(rig: Rig) -> None:
        ps = rig.ps
        nblocks = rig.dev.size // ps
        with pytest.raises(ENOSPC):
            rig.fs.create("big", data=pattern((nblocks + 1) * ps, 3))
        assert rig.fs.files == {} and rig.fs.free_bytes == rig.dev.size
        inode = rig.fs.create("full", data=pattern(nblocks * ps, 4), size=(nblocks + 1) * ps)
        assert rig.fs.free_bytes == 0
        with pytest.raises(ENOSPC):
            filemap.get_xip_mem(inode, nblocks, create=True)
        assert inode.block(nblocks) == -1

    each_device(case, body)


# -- the namespace ----------------------------------------------------------------------------------
def test_namespace_errors(tmp_path: Path) -> None:
    rig = make_rig(XIP_CASES[0], "nopage")
    ps = rig.ps
    host = tmp_path / "image.bin"
    blob = pattern(ps + 100, 5)
    host.write_bytes(blob)
    inode = rig.fs.create("host", data=host)  # from a host file, as the image was built
    assert inode.size == ps + 100 and file_bytes(rig, "host") == blob
    with pytest.raises(EEXIST):
        rig.fs.create("host", data=b"x")
    with pytest.raises(EINVAL):  # smaller than its data
        rig.fs.create("small", data=b"abc", size=2)
    with pytest.raises(EINVAL):  # a hole must hold no data
        rig.fs.create("holes", data=pattern(2 * ps, 6), holes=[1])
    with pytest.raises(ENOENT):
        rig.fs.open("missing")
    with pytest.raises(EINVAL):
        rig.fs.open("host", "a")
    assert set(rig.fs.files) == {"host"}
    assert rig.fs.free_bytes == rig.dev.size - 2 * ps
    f = rig.fs.open("host", "w")
    with pytest.raises(EINVAL):  # not open for reading
        f.read(0, 10)
    with pytest.raises(EINVAL):  # not open for writing
        rig.fs.open("host", "r").write(0, b"x")
    with pytest.raises(EFAULT):
        rig.fs.open("host").read(-1, 10)
    teardown(rig)


def test_fs_needs_whole_blocks() -> None:
    """ext2 XIP needs blocksize == PAGE_SIZE: a device of a partial block is refused."""
    rig = make_rig(XIP_CASES[0], "nopage")
    odd = RangeDevice(rig.m, "odd", DEV_START, rig.ps + SECTOR_SIZE, read_only=False, kaddr_base=DEV_START)
    with pytest.raises(EINVAL):
        XipFS(odd)
    teardown(rig)


# -- xip_file_read ----------------------------------------------------------------------------------
@CASES
def test_read_holes_and_eof(case: Case) -> None:
    def body(rig: Rig) -> None:
        ps = rig.ps
        data = pattern(3 * ps, 7)
        content = data[:ps] + bytes(ps) + data[2 * ps :]
        size = 4 * ps + 123  # page 3 and the partial page 4 are holes beyond the data
        rig.fs.create("f", data=content, size=size, holes=[1])
        free0 = rig.fs.free_bytes
        f = rig.fs.open("f")
        want = content + bytes(size - len(content))
        assert f.read(0, size) == want
        assert f.read(0, 10 * ps) == want  # stops at EOF
        assert f.read(ps - 5, 10) == want[ps - 5 : ps + 5]  # across data | hole
        assert f.read(2 * ps - 3, 6) == want[2 * ps - 3 : 2 * ps + 3]  # across hole | data
        assert f.read(size - 4, 100) == want[-4:]
        assert f.read(size, 10) == b"" and f.read(size + ps, 10) == b""
        assert f.read(0, 0) == b""
        assert file_bytes(rig, "f") == want
        assert rig.fs.free_bytes == free0  # reading a hole allocates nothing

    each_device(case, body)


# -- xip_file_write ---------------------------------------------------------------------------------
@CASES
def test_write_allocates_holes_and_extends(case: Case) -> None:
    def body(rig: Rig) -> None:
        ps = rig.ps
        data = pattern(2 * ps, 8)
        inode = rig.fs.create("f", data=data[:ps] + bytes(ps), size=3 * ps, holes=[1, 2])
        f = rig.fs.open("f", "rw")
        free0 = rig.fs.free_bytes
        want = bytearray(data[:ps] + bytes(2 * ps))

        # into a present block: no allocation, bytes reach the device block
        pfn0 = block_pfn(inode, 0)
        assert f.write(10, b"abcdef") == 6
        want[10:16] = b"abcdef"
        assert rig.fs.free_bytes == free0
        assert rig.m.mem.read(pfn0 * ps + 10, 6) == b"abcdef"

        # across the data | hole boundary: page 1 gets a zeroed block
        blob = pattern(100, 9)
        assert f.write(ps - 50, blob) == 100
        want[ps - 50 : ps + 50] = blob
        assert inode.block(1) >= 0 and inode.block(2) == -1
        assert rig.fs.free_bytes == free0 - ps
        assert rig.dev.read(inode.block(1) * ps, ps) == bytes(want[ps : 2 * ps])

        # past EOF: i_size grows to the end of the write, the gap stays a hole
        tail = pattern(10, 10)
        assert f.write(5 * ps + 7, tail) == 10
        assert inode.size == 5 * ps + 17
        want += bytes(5 * ps + 7 - len(want)) + tail
        assert [inode.block(p) >= 0 for p in range(6)] == [True, True, False, False, False, True]
        assert rig.fs.free_bytes == free0 - 2 * ps
        assert f.read(0, inode.size) == bytes(want)
        assert file_bytes(rig, "f") == bytes(want)

        # a write inside i_size never shrinks it
        f.write(0, b"Z")
        assert inode.size == 5 * ps + 17

    each_device(case, body)


# -- truncate ---------------------------------------------------------------------------------------
@CASES
def test_truncate_without_mappings(case: Case) -> None:
    def body(rig: Rig) -> None:
        ps = rig.ps
        data = pattern(4 * ps, 11)
        inode = rig.fs.create("f", data=data)
        f = rig.fs.open("f", "rw")
        free0 = rig.fs.free_bytes
        blk1 = inode.block(1)

        filemap.xip_truncate(inode, ps + 100)  # the partial page 1 keeps its block
        assert inode.size == ps + 100
        assert inode.block(1) == blk1 and inode.block(2) == inode.block(3) == -1
        assert rig.fs.free_bytes == free0 + 2 * ps
        # xip_truncate_page: the tail of the last block is zeroed on the device
        assert rig.dev.read(blk1 * ps, ps) == data[ps : ps + 100] + bytes(ps - 100)
        assert f.read(0, 4 * ps) == data[: ps + 100]

        # growing is a hole: zeroes, nothing allocated, the old tail stays zero
        filemap.xip_truncate(inode, 3 * ps)
        assert rig.fs.free_bytes == free0 + 2 * ps
        assert f.read(0, 3 * ps) == data[: ps + 100] + bytes(2 * ps - 100)

        # truncating at a block boundary zeroes nothing; to 0 frees every block
        filemap.xip_truncate(inode, ps)
        assert rig.dev.read(inode.block(0) * ps, ps) == data[:ps]
        filemap.xip_truncate(inode, 0)
        assert inode.size == 0 and rig.fs.free_bytes == rig.dev.size
        assert f.read(0, ps) == b""
        with pytest.raises(EINVAL):
            filemap.xip_truncate(inode, -1)

    each_device(case, body)


@CASES
def test_truncate_partial_hole(case: Case) -> None:
    """xip_truncate_page on a hole has nothing to zero (and allocates nothing)."""

    def body(rig: Rig) -> None:
        ps = rig.ps
        inode = rig.fs.create("f", data=pattern(ps, 12), size=3 * ps)
        free0 = rig.fs.free_bytes
        filemap.xip_truncate(inode, ps + 10)
        assert inode.block(1) == -1 and rig.fs.free_bytes == free0
        assert rig.fs.open("f").read(0, 3 * ps) == rig.dev.read(inode.block(0) * ps, ps) + bytes(10)

    each_device(case, body)


# -- read-only filesystems --------------------------------------------------------------------------
@CASES
def test_read_only_refuses_writes(case: Case) -> None:
    """A read-only device (or a read-only mount) refuses every write with EROFS and
    changes neither the device nor the block map; building the image still works."""

    def body(rig: Rig) -> None:
        ps = rig.ps
        data = pattern(2 * ps, 13)
        inode = rig.fs.create("f", data=data[:ps] + bytes(ps), size=3 * ps, holes=[1])
        snap = rig.dev.read(0, rig.dev.size)
        free0 = rig.fs.free_bytes
        with pytest.raises(EROFS):
            rig.fs.open("f", "rw")
        with pytest.raises(EROFS):
            rig.fs.open("f", "w")
        # a writable struct file cannot be had, but the write path checks again
        with pytest.raises(EROFS):
            XipFile(inode, readable=True, writable=True).write(0, b"x")
        with pytest.raises(EROFS):
            filemap.get_xip_mem(inode, 1, create=True)
        with pytest.raises(EROFS):
            filemap.xip_truncate(inode, ps)
        if rig.dev.read_only:
            with pytest.raises(EROFS):
                rig.dev.write(0, b"x")
        assert rig.fs.open("f").read(0, 3 * ps) == data[:ps] + bytes(2 * ps)
        assert inode.size == 3 * ps and inode.block(1) == -1
        assert rig.fs.free_bytes == free0
        assert rig.dev.read(0, rig.dev.size) == snap

    each_device(case, body, read_only=True)
