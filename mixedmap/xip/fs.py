"""A small XIP filesystem on any XIP block device: ext2 ``-o xip`` (2.6.2x), ext4 ``-o dax`` (6.18).

Blocks are pages of the device (ext2 XIP and ext4 DAX both require block size == PAGE_SIZE);
a file is an array of block numbers per page offset, -1 for a hole. Metadata lives in Python
(this is not an on-disk ext2/ext4); file contents are real bytes on the device.

Which kernel code maps and reads a file follows the profile's rules:

* :data:`~mixedmap.rules.FILEMAP_XIP` (2.6.26 up to 4.0): ``get_xip_mem`` (``fs/ext2/xip.c``)
  and :mod:`mixedmap.xip.filemap`.
* :data:`~mixedmap.rules.DAX` (4.0 on, the 6.18 profile): the mount is ext4 ``-o dax`` and
  files go through :mod:`mixedmap.xip.dax`. A device without a ``dax_device``
  (:attr:`XipDevice.dax`: 6.18 fs-dax needs ZONE_DEVICE struct pages) is ext4's ``-EINVAL``
  ("DAX unsupported by block device.", 6.18 ``ext4_check_feature_compatibility``). ``dax=False``
  mounts without DAX: 6.18 then has only the page cache, which the model does not have, so
  such a file can be read and written but not mapped.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import EEXIST, EINVAL, ENOENT, ENOSPC, EROFS
from mixedmap.errors import ENODATA as ENODATA  # get_xip_mem's hole answer, re-exported
from mixedmap.rules import DAX, FILEMAP_XIP, require
from mixedmap.xip import dax, filemap
from mixedmap.xip.device import SECTOR_SIZE, XipDevice

if TYPE_CHECKING:
    from mixedmap.mm.vma import VMA

_ino = itertools.count(2)


class Inode:
    """A file: size in bytes and a block number per page (-1 = hole). The address_space."""

    def __init__(self, fs: XipFS, name: str) -> None:
        self.fs = fs
        self.name = name
        self.ino = next(_ino)
        self.size = 0
        self.blocks: NDArray[np.int64] = np.zeros(0, dtype=np.int64)

    @property
    def npages(self) -> int:
        return -(-self.size // self.fs.page_size)

    def _grow_blocks(self, npages: int) -> None:
        if npages > self.blocks.size:
            grown = np.full(npages, -1, dtype=np.int64)
            grown[: self.blocks.size] = self.blocks
            self.blocks = grown

    def block(self, pgoff: int) -> int:
        return int(self.blocks[pgoff]) if 0 <= pgoff < self.blocks.size else -1

    def __repr__(self) -> str:
        return f"<Inode {self.name} ino={self.ino} size={self.size}>"


class XipFile:
    """An open file (struct file): mode plus the inode; ``mmap`` is xip_file_mmap (2.6.2x) or
    ext4_file_mmap_prepare (6.18)."""

    def __init__(self, inode: Inode, readable: bool, writable: bool) -> None:
        self.inode = inode
        self.readable = readable
        self.writable = writable

    @property
    def mapping(self) -> Inode:
        return self.inode

    @property
    def mmap_sync(self) -> bool:
        """``FOP_MMAP_SYNC`` in f_op->fop_flags: ext4 has it (4.15 on); ext2 XIP never had."""
        return DAX.applies(self.inode.fs.machine.profile)

    def mmap(self, vma: VMA) -> None:
        if self.inode.fs.xip:
            filemap.xip_file_mmap(self, vma)
        else:
            dax.ext4_file_mmap(self, vma)

    def read(self, offset: int, length: int) -> bytes:
        if self.inode.fs.xip:
            return filemap.xip_file_read(self, offset, length)
        return dax.file_read(self, offset, length)

    def write(self, offset: int, data: bytes) -> int:
        if self.inode.fs.xip:
            return filemap.xip_file_write(self, offset, data)
        return dax.file_write(self, offset, data)

    def __repr__(self) -> str:
        return f"<XipFile {self.inode.name} {'r' if self.readable else ''}{'w' if self.writable else ''}>"


class XipFS:
    """A mounted XIP filesystem on ``device`` (read-only when the device is).

    ``dax`` (the 6.18 ``-o dax``): None means ``-o dax`` where the profile has DAX (a device
    without it is then -EINVAL) and XIP where it has filemap_xip; False is a plain 6.18 mount;
    any value asked of a 2.6.2x profile, which has no DAX yet, is an
    :class:`~mixedmap.rules.UnsupportedRule`. Checked before anything is set up.
    """

    def __init__(self, device: XipDevice, read_only: bool | None = None, *, dax: bool | None = None) -> None:
        self.device = device
        self.machine = device.machine
        self.page_size = device.machine.page_size
        profile = self.machine.profile
        #: filemap_xip (2.6.26 up to 4.0) rather than DAX serves this mount's files.
        self.xip = FILEMAP_XIP.applies(profile)
        if dax is not None and self.xip:
            require(DAX, profile, "mount -o dax")
        if device.size % self.page_size:
            raise EINVAL(
                f"{device.name}: size {device.size:#x} is not a whole number of {self.page_size}-byte blocks"
            )
        if not self.xip and dax is not False and not device.dax:
            raise EINVAL(
                f"{device.name}: DAX unsupported by block device. (6.18 ext4_check_feature_compatibility: "
                "fs_dax_get_by_bdev found no dax_device; fs-dax needs ZONE_DEVICE struct pages)"
            )
        #: Mounted ``-o dax``: files map through fs/dax.c (never under filemap_xip).
        self.dax = not self.xip and dax is not False
        self.read_only = device.read_only if read_only is None else (read_only or device.read_only)
        self.nblocks = device.size // self.page_size
        self._used = np.zeros(self.nblocks, dtype=np.bool_)
        self.files: dict[str, Inode] = {}

    # -- namespace ------------------------------------------------------------------------
    def create(
        self,
        name: str,
        data: bytes | str | Path = b"",
        size: int | None = None,
        holes: Any = (),
        *,
        allocate: bool = False,
    ) -> Inode:
        """Create a file from bytes or a host file, as the image was built.

        ``size`` larger than the data leaves holes at the end, unless ``allocate``: then
        every page from the end of the data up to ``size`` gets a zeroed block, as an image
        built with ``dd`` (or whose blocks ext2 allocated and ``ext2_clear_xip_target``
        zeroed) has them; the device stores no bytes for them (see
        :meth:`XipDevice.clear_pages`), so a GiB image with a one-page header costs the
        host one page. ``holes`` lists page offsets inside the data left unallocated (their
        bytes must be zero). Works on a read-only device too: building the image is not a
        write through the filesystem.
        """
        if name in self.files:
            raise EEXIST(f"{name!r} exists")
        blob = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
        total = len(blob) if size is None else size
        if total < len(blob):
            raise EINVAL(f"size {total} is smaller than the data ({len(blob)} bytes)")
        ps = self.page_size
        hole_set = {int(h) for h in holes}
        data_pages = [p for p in range(-(-len(blob) // ps)) if p not in hole_set]
        for p in hole_set:
            if p * ps < len(blob) and any(blob[p * ps : (p + 1) * ps]):
                raise EINVAL(f"page {p} of {name!r} is listed as a hole but holds data")
        first_tail, npages = -(-len(blob) // ps), -(-total // ps)
        ntail = npages - first_tail if allocate else 0
        if len(data_pages) + ntail > int((~self._used).sum()):
            raise ENOSPC(
                f"{self.device.name}: {len(data_pages) + ntail} blocks needed, {int((~self._used).sum())} free"
            )
        inode = Inode(self, name)
        inode._grow_blocks(npages)
        blocks = self._alloc_blocks(len(data_pages) + ntail)
        try:
            for p, b in zip(data_pages, blocks[: len(data_pages)].tolist(), strict=True):
                inode.blocks[p] = b
                chunk = blob[p * ps : (p + 1) * ps]
                self.device.fill(chunk + bytes(ps - len(chunk)), b * ps)
            if ntail:
                tail = blocks[len(data_pages) :]
                inode.blocks[first_tail:npages] = tail
                self.device.clear_pages(tail)
        except BaseException:
            self.free_blocks(blocks)  # the file never existed (a device error, e.g. brd ENOMEM)
            raise
        inode.size = total
        self.files[name] = inode
        return inode

    def open(self, name: str, mode: str = "r") -> XipFile:
        """Open ``name``; mode "r", "w" or "rw" (write needs a writable filesystem)."""
        if mode not in ("r", "w", "rw"):
            raise EINVAL(f"open mode {mode!r}; use r, w or rw")
        try:
            inode = self.files[name]
        except KeyError:
            raise ENOENT(f"no file {name!r} on {self.device.name}") from None
        if "w" in mode and self.read_only:
            raise EROFS(f"{self.device.name} is mounted read-only")
        return XipFile(inode, readable="r" in mode, writable="w" in mode)

    # -- blocks ---------------------------------------------------------------------------
    def _alloc_blocks(self, n: int) -> NDArray[np.int64]:
        free = np.flatnonzero(~self._used)[:n]
        if free.size < n:
            raise ENOSPC(f"{self.device.name}: no free block")
        self._used[free] = True
        return free.astype(np.int64)

    def alloc_block(self) -> int:
        """A zeroed free block (ext2_get_block(create) + ext2_clear_xip_target)."""
        (b,) = self._alloc_blocks(1).tolist()
        self.device.fill(bytes(self.page_size), b * self.page_size)
        return int(b)

    def free_blocks(self, blocks: NDArray[np.int64]) -> None:
        self._used[blocks[blocks >= 0]] = False

    def direct_access(self, block: int) -> tuple[int, int]:
        """The device's direct_access for a block (sector = block * PAGE_SIZE/512)."""
        return self.device.direct_access(block * (self.page_size // SECTOR_SIZE))

    def truncate(self, inode: Inode, size: int) -> None:
        """truncate(2): ``xip_truncate_page`` and friends (2.6.2x) or the 6.18 DAX truncate."""
        if self.xip:
            filemap.xip_truncate(inode, size)
        else:
            dax.dax_truncate(inode, size)

    def frame_of(self, inode: Inode, pgoff: int) -> int:
        """The pfn behind file page ``pgoff``: ``get_xip_mem`` (2.6.2x) or the block's
        ``dax_direct_access`` (6.18); ENODATA for a hole."""
        if self.xip:
            return filemap.get_xip_mem(inode, pgoff, create=False)[1]
        block = inode.block(pgoff)
        if block < 0:
            raise ENODATA(f"{inode.name}: page {pgoff} is a hole")
        return self.direct_access(block)[1]

    @property
    def free_bytes(self) -> int:
        return int((~self._used).sum()) * self.page_size
