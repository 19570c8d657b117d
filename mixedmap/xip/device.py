"""The XIP/DAX block-device contract and a base for arch driver models.

``direct_access(bdev, sector, &kaddr, &pfn)`` (2.6.26-2.6.27 ``include/linux/fs.h``) is all
the XIP layer asks of a device: a kernel address and a page frame number for a page-aligned
sector. Whether that frame has a ``struct page`` is the driver model's decision (brd: yes,
ordinary RAM; dcssblk and axonram: no), and it is what ``vm_insert_mixed`` later acts on.

DAX (6.18) asks two more things, declared here so a filesystem never looks inside a driver:
:attr:`XipDevice.dax` (the disk has a ``dax_device`` fs-dax can use: ``fs_dax_get_by_bdev``
answers one, which 6.18 drivers only register with ZONE_DEVICE struct pages) and
:attr:`XipDevice.dax_synchronous` (``dax_synchronous``: MAP_SYNC is allowed).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.errors import EINVAL, ERANGE, EROFS, AddressError

if TYPE_CHECKING:
    from mixedmap.machine import Machine

log = get_logger("mixedmap.xip")

SECTOR_SIZE = 512


class XipDevice(abc.ABC):
    """A block device with ``direct_access``; contents are real bytes in physical memory."""

    #: Driver name (brd, pmem, dcssblk, axonram).
    driver: str = ""

    def __init__(self, machine: Machine, name: str, size: int, read_only: bool) -> None:
        self.machine = machine
        self.name = name
        self.size = size
        self.read_only = read_only
        # The machine's page geometry, read once: direct_access runs once per fault.
        self._page_size = machine.page_size
        self._page_shift = machine.mode.fmt.page_shift

    # -- the contract ---------------------------------------------------------------------
    @property
    def nr_sectors(self) -> int:
        return self.size // SECTOR_SIZE

    def check_sector(self, sector: int) -> int:
        """Page offset of a sector, or the kernel's errno for a bad one."""
        per_page = self._page_size // SECTOR_SIZE
        if sector < 0 or sector % per_page:
            raise EINVAL(f"{self.name}: sector {sector} is not page aligned ({per_page} sectors per page)")
        pgoff = sector // per_page
        if pgoff * self._page_size >= self.size:
            raise ERANGE(f"{self.name}: sector {sector} is beyond the device ({self.nr_sectors} sectors)")
        return pgoff

    @abc.abstractmethod
    def direct_access(self, sector: int) -> tuple[int, int]:
        """(kaddr, pfn) of the page at ``sector``; errno errors as the driver returns them."""

    @abc.abstractmethod
    def frame(self, pgoff: int) -> int | None:
        """Physical frame holding page ``pgoff`` now (None: not backed yet, reads as zero)."""

    def frames(self, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        """:meth:`frame` for many pages at once: the frame of each, -1 where not backed yet.

        The batched fault-in (``mixedmap.mm.populate``) reads a whole file's frames through
        this instead of calling ``direct_access`` per page. The contract it relies on: when
        ``direct_access`` succeeds for a page that is backed, its pfn is ``frame(pgoff)``.
        This default asks :meth:`frame` page by page; a driver whose frames follow a formula
        overrides it with one numpy expression (as :class:`RangeDevice` does).
        """
        arr = np.asarray(pgoffs, dtype=np.int64)
        return np.fromiter(
            (-1 if (f := self.frame(p)) is None else f for p in arr.tolist()), dtype=np.int64, count=arr.size
        )

    def clear_pages(self, pgoffs: NDArray[np.int64]) -> None:
        """Make pages zeroed blocks of a built image without storing a byte per page.

        ``ext2_clear_xip_target`` zeroes a newly allocated block through ``direct_access``;
        an image built with ``dd`` has every block written. Either way every page exists on
        the device and reads as zero. A page not backed yet is backed through :meth:`fill`
        (a driver that allocates on write allocates it as it would for a write), a chunk at
        a time; then the frames' stored bytes are dropped, which is what zero means in
        sparse physical memory, so a GiB of zero blocks costs the host no GiB.
        """
        ps = self.machine.page_size
        arr = np.asarray(pgoffs, dtype=np.int64)
        for first, count in _runs(arr[self.frames(arr) < 0]):
            for lo in range(first, first + count, _CLEAR_CHUNK):
                n = min(_CLEAR_CHUNK, first + count - lo)
                self.fill(bytes(n * ps), lo * ps)
                self._forget(np.arange(lo, lo + n, dtype=np.int64))
        self._forget(arr)

    def _forget(self, pgoffs: NDArray[np.int64]) -> None:
        """Drop the host bytes of pages (they read as zero unstored), in one batch."""
        frames = self.frames(pgoffs)
        if (frames < 0).any():
            raise AddressError(f"{self.name}: page {int(pgoffs[frames < 0][0])} has no backing frame")
        self.machine.mem.discard_frames(frames.astype(np.uint64), self.machine.fmt.page_shift)

    @property
    @abc.abstractmethod
    def has_struct_page(self) -> bool:
        """Whether the device's frames have struct pages (pfn_valid true)."""

    @property
    def dax(self) -> bool:
        """Whether fs-dax can use the device (6.18 ``fs_dax_get_by_bdev`` non-NULL).

        fs-dax needs ZONE_DEVICE struct pages since ``FS_DAX_LIMITED`` went away (about 6.15:
        ``dax_fault_iter`` takes a folio reference, ``vmf_insert_page_mkwrite`` wants a page),
        so the default is :attr:`has_struct_page`; a driver that registers a ``dax_device``
        only in some configurations (pmem's memmap, dcssblk's pagemap) says so itself.
        """
        return self.has_struct_page

    @property
    def dax_synchronous(self) -> bool:
        """``dax_synchronous(dax_dev)``: whether a MAP_SYNC mapping is allowed (pmem on a
        synchronous nvdimm region and dcssblk call ``set_dax_synchronous``; virtio-pmem not)."""
        return self.dax

    def dax_frames(self, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        """:meth:`frames`, checked against ``direct_access``: -1 where only a per-page fault can tell.

        ``direct_access`` is asked for the first and the last backed page; a refusal that
        concerns the whole device (-EOPNOTSUPP without DAX, a removed device) or a driver
        whose pfns are not its frames gives -1 everywhere, so the per-page fault then meets
        exactly what it would have. The batched fault-in of filemap_xip and of DAX reads a
        whole file's frames through this instead of calling ``direct_access`` per page.
        """
        arr = np.asarray(pgoffs, dtype=np.int64)
        none = np.full(arr.shape, -1, dtype=np.int64)
        try:
            frames = self.frames(arr)
        except Exception:  # e.g. a removed device: the per-page fault meets it at its own page
            return none
        backed = np.flatnonzero(frames >= 0)
        if backed.size == 0:
            return none
        per_page = self.machine.page_size // SECTOR_SIZE
        for i in sorted({int(backed[0]), int(backed[-1])}):
            try:
                _, pfn = self.direct_access(int(arr[i]) * per_page)
            except Exception:  # the per-page fault raises or reports it at that page
                return none
            if pfn != int(frames[i]):
                return none
        return np.where(frames >= 0, frames, -1)

    @property
    def phys_range(self) -> tuple[int, int] | None:
        """[start, end) physical addresses when the device is one fixed range."""
        return None

    @property
    def memmap_bytes(self) -> int:
        """struct page bytes the kernel spends for this device's memory."""
        if not self.has_struct_page:
            return 0
        pages = self.size // self.machine.page_size
        return pages * self.machine.mode.mode.memory.struct_page_size

    # -- contents -------------------------------------------------------------------------
    def _check_span(self, offset: int, length: int) -> None:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise AddressError(
                f"{self.name}: [{offset:#x}, {offset + length:#x}) is outside the device ({self.size:#x} bytes)"
            )

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the device (what a bio read would return)."""
        self._check_span(offset, length)
        out = bytearray()
        ps = self.machine.page_size
        while length > 0:
            pgoff, off = divmod(offset, ps)
            n = min(length, ps - off)
            pfn = self.frame(pgoff)
            out += bytes(n) if pfn is None else self.machine.mem.read(pfn * ps + off, n)
            offset, length = offset + n, length - n
        return bytes(out)

    def write(self, offset: int, data: bytes) -> None:
        """Write through the block layer; a read-only device refuses with EROFS."""
        if self.read_only:
            raise EROFS(f"{self.name}: device is read-only")
        self.fill(data, offset)

    def fill(self, data: bytes | str | Path, offset: int = 0) -> int:
        """Load contents (bytes or a host file) at ``offset``, as the image was built.

        Unlike :meth:`write` this works on read-only devices: it models how the image got
        there (DEFSEG/SAVESEG, dd before a read-only mount). Returns the bytes written.
        """
        blob = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
        self._check_span(offset, len(blob))
        ps = self.machine.page_size
        pos = 0
        while pos < len(blob):
            pgoff, off = divmod(offset + pos, ps)
            n = min(len(blob) - pos, ps - off)
            pfn = self._backing(pgoff)
            self.machine.mem.write(pfn * ps + off, blob[pos : pos + n])
            pos += n
        log.debug("xip_device_filled", device=self.name, bytes=len(blob), offset=offset)
        return len(blob)

    def _backing(self, pgoff: int) -> int:
        """Frame for page ``pgoff``, allocating it if the driver allocates on demand."""
        pfn = self.frame(pgoff)
        if pfn is None:
            raise AddressError(f"{self.name}: page {pgoff} has no backing frame")
        return pfn

    def release(self) -> None:  # noqa: B027 - most devices have nothing to tear down
        """Tear the device down (free frames, remove its region)."""

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary: the CLI prints it."""
        rng = self.phys_range
        return {
            "name": self.name,
            "driver": self.driver,
            "size": self.size,
            "read_only": self.read_only,
            "phys_start": None if rng is None else rng[0],
            "phys_end": None if rng is None else rng[1],
            "struct_page": self.has_struct_page,
            "memmap_bytes": self.memmap_bytes,
        }


class RangeDevice(XipDevice):
    """A device over one fixed physical range (DCSS, axonram, pmem)."""

    def __init__(
        self, machine: Machine, name: str, start: int, size: int, read_only: bool, kaddr_base: int
    ) -> None:
        super().__init__(machine, name, size, read_only)
        self.start = start
        self.kaddr_base = kaddr_base

    @property
    def phys_range(self) -> tuple[int, int]:
        return self.start, self.start + self.size

    @property
    def has_struct_page(self) -> bool:
        return bool(self.machine.pfn_valid(self.start >> self.machine.mode.fmt.page_shift)[0])

    def frame(self, pgoff: int) -> int:
        return (self.start >> self.machine.mode.fmt.page_shift) + pgoff

    def frames(self, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        """The range's frames are linear in the page offset: one numpy expression."""
        return np.asarray(pgoffs, dtype=np.int64) + (self.start >> self.machine.mode.fmt.page_shift)

    def direct_access(self, sector: int) -> tuple[int, int]:
        pgoff = self.check_sector(sector)
        offset = pgoff * self._page_size
        return self.kaddr_base + offset, (self.start + offset) >> self._page_shift


#: Pages backed and zeroed per :meth:`XipDevice.fill` call in :meth:`XipDevice.clear_pages`:
#: bounds the host bytes a chunk of zeros holds before it is dropped again.
_CLEAR_CHUNK = 256


def _runs(pgoffs: NDArray[np.int64]) -> list[tuple[int, int]]:
    """(first, count) of each run of consecutive page offsets, in order."""
    if pgoffs.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(pgoffs) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [pgoffs.size]])
    return [(int(pgoffs[a]), int(b - a)) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
