"""``brd`` with ``CONFIG_BLK_DEV_XIP``: the RAM block device ext2 ``-o xip`` ran on (2.6.26/27).

Models ``drivers/block/brd.c`` of 2.6.26/2.6.27 (identical in what is modelled here):

* The disk is ``ram<N>`` with ``rd_size`` KiB (``set_capacity(disk, rd_size * 2)``; the
  ``rd_size`` module parameter is an ``int`` of KiB, default ``CONFIG_BLK_DEV_RAM_SIZE`` =
  4096). Creating it allocates nothing.
* Its pages are ordinary RAM pages, allocated on first touch by ``brd_insert_page``
  (``alloc_page(GFP_NOIO | __GFP_ZERO)``, never highmem under XIP, so always in the direct
  map) and indexed by page offset (the kernel's radix tree; here a numpy array of pfns with
  -1 for "no page yet"); ``page->index`` is the page offset. A read of a page never written
  returns zeros and allocates nothing (``copy_from_brd`` memsets).
* ``brd_direct_access(bdev, sector, &kaddr, &pfn)``: ``sector & (PAGE_SECTORS-1)`` ->
  ``-EINVAL``; ``sector + PAGE_SECTORS > capacity`` -> ``-ERANGE``; no page and none to be
  had -> ``-ENOMEM``; else ``kaddr = page_address(page)`` (``PAGE_OFFSET + pa``) and
  ``pfn = page_to_pfn(page)``. The pages have struct pages: ``pfn_valid`` is true, which is
  why 2.6.26 x86 (no ``pte_special``) still gets a correct ``vm_normal_page``.
* ``brd_free_pages`` on teardown frees every page the device holds.

Deviations, on purpose: a write (``fill``/``write``) that needs more pages than are free is
refused up front with ``ENOMEM`` and changes nothing, where the kernel would fail the bio
part-way with some pages already inserted; teardown while one of the pages has another
reference (``get_page`` by a mapping) is refused with ``EBUSY`` (the kernel prevents it by
refusing to unload a block device that is open). DAX on brd was removed in 4.15
("brd: remove dax support", 7a862fbbdec6), so the model exists only for 2.6.26 and 2.6.27.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from numpy.typing import NDArray

from mixedmap import (
    EBUSY,
    EINVAL,
    ENOMEM,
    ERANGE,
    PG,
    SECTOR_SIZE,
    OutOfMemory,
    XipDevice,
    XipDriverModel,
)
from mixedmap_x86.direct_map import page_offset
from mixedmap_x86.xip_common import ENODEV, device_name, reject_unknown, size_param

if TYPE_CHECKING:
    from mixedmap import Machine

DRIVER: Final = "brd"
PROFILES: Final = ("2.6.26", "2.6.27")
#: ``CONFIG_BLK_DEV_RAM_SIZE`` default (KiB), the ``rd_size`` a plain ``modprobe brd`` gets.
DEFAULT_RD_SIZE_KIB: Final = 4096
#: ``rd_size`` is a ``module_param(rd_size, int, ...)`` counted in KiB.
RD_SIZE_MAX_KIB: Final = (1 << 31) - 1
_NO_PAGE: Final = -1


class BrdDevice(XipDevice):
    """One ``ram<N>`` disk: RAM pages allocated on demand, indexed per page offset."""

    driver = DRIVER

    def __init__(self, machine: Machine, name: str, size: int) -> None:
        super().__init__(machine, name, size, read_only=False)
        self.page_offset = page_offset(machine)
        ps = machine.page_size
        #: pfn of each page offset, or -1 while the page was never touched.
        self.pfns: NDArray[np.int64] = np.full(-(-size // ps), _NO_PAGE, dtype=np.int64)
        self._released = False

    # -- the contract ---------------------------------------------------------------------
    @property
    def has_struct_page(self) -> bool:
        """Ordinary RAM pages from the page allocator: always a struct page."""
        return True

    @property
    def memmap_bytes(self) -> int:
        """struct page bytes behind the device's pages (part of RAM's memmap, not extra)."""
        pages = len(self.pfns)
        return pages * self.machine.mode.mode.memory.struct_page_size

    @property
    def pages_allocated(self) -> int:
        return int(np.count_nonzero(self.pfns != _NO_PAGE))

    def check_sector(self, sector: int) -> int:
        """brd's own test: the whole page must lie inside the capacity (a partial last page
        of an ``rd_size`` that is not a page multiple is out of range)."""
        pgoff = super().check_sector(sector)
        per_page = self.machine.page_size // SECTOR_SIZE
        if sector + per_page > self.nr_sectors:
            raise ERANGE(
                f"{self.name}: sector {sector} + {per_page} is beyond the capacity "
                f"({self.nr_sectors} sectors): the page is only partly inside the disk"
            )
        return pgoff

    def direct_access(self, sector: int) -> tuple[int, int]:
        """``brd_direct_access``: (page_address(page), page_to_pfn(page)), allocating the page."""
        self._check_live()
        pgoff = self.check_sector(sector)
        pfn = self._insert_pages(np.array([pgoff], dtype=np.int64))[0]
        return self.page_offset + (int(pfn) << self.machine.fmt.page_shift), int(pfn)

    def frame(self, pgoff: int) -> int | None:
        """``brd_lookup_page``: the page at ``pgoff``, or None if never touched."""
        pfn = int(self.pfns[pgoff])
        return None if pfn == _NO_PAGE else pfn

    def frames(self, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        """The radix tree for many pages at once: -1 (``_NO_PAGE``) where never touched."""
        out: NDArray[np.int64] = self.pfns[np.asarray(pgoffs, dtype=np.int64)]
        return out

    def clear_pages(self, pgoffs: NDArray[np.int64]) -> None:
        """Back every page of a built image in one batch (``brd_insert_page`` hands out
        ``alloc_page(__GFP_ZERO)`` pages), then zero the ones that held bytes."""
        self._check_live()
        arr = np.asarray(pgoffs, dtype=np.int64)
        self._insert_pages(arr)
        super().clear_pages(arr)

    # -- contents -------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        self._check_live()
        return super().read(offset, length)

    def fill(self, data: bytes | str | Path, offset: int = 0) -> int:
        """Write bytes as a bio would, allocating the pages it touches (all or nothing)."""
        self._check_live()
        blob = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
        self._check_span(offset, len(blob))
        if not blob:
            return 0
        ps = self.machine.page_size
        first, last = offset // ps, (offset + len(blob) - 1) // ps
        pfns = self._insert_pages(np.arange(first, last + 1, dtype=np.int64))
        pos = 0
        for pfn in pfns.tolist():
            off = (offset + pos) % ps
            n = min(len(blob) - pos, ps - off)
            self.machine.mem.write(pfn * ps + off, blob[pos : pos + n])
            pos += n
        return len(blob)

    def _backing(self, pgoff: int) -> int:
        return int(self._insert_pages(np.array([pgoff], dtype=np.int64))[0])

    def _insert_pages(self, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        """``brd_insert_page`` for each page offset: existing pages, new zeroed ones for the
        rest. Allocation is all or nothing: ENOMEM leaves the device and RAM unchanged."""
        missing = pgoffs[self.pfns[pgoffs] == _NO_PAGE]
        if missing.size:
            try:
                new = self.machine.pages.alloc_pages(int(missing.size), int(PG.driver))
            except OutOfMemory as exc:
                raise ENOMEM(f"{self.name}: no free RAM page for {missing.size} brd page(s): {exc}") from None
            self._set_index(new, missing)
            self.pfns[missing] = new.astype(np.int64)
        result: NDArray[np.int64] = self.pfns[pgoffs]
        return result

    def _set_index(self, pfns: NDArray[np.uint64], pgoffs: NDArray[np.int64]) -> None:
        """``page->index = idx``, as brd_insert_page sets it (the core has no public setter)."""
        memmap = self.machine.memmap
        row, col = memmap.rows(pfns)
        memmap.index[row, col] = pgoffs.astype(np.uint64)

    # -- lifecycle ------------------------------------------------------------------------
    def _check_live(self) -> None:
        if self._released:
            raise ENODEV(f"{self.name}: the brd device was torn down")

    def release(self) -> None:
        """``brd_free_pages``: every page goes back to the allocator; refused while one of
        them still has another reference (a mapping holds it)."""
        if self._released:
            return
        held = self.pfns[self.pfns != _NO_PAGE].astype(np.uint64)
        if held.size:
            counts = self.machine.pages.page_count(held)
            busy = counts > 1
            if busy.any():
                raise EBUSY(
                    f"{self.name}: page {int(held[busy][0]):#x} still has "
                    f"{int(counts[busy][0]) - 1} other reference(s)"
                )
            self.machine.pages.free_pages(held)
        self.pfns[:] = _NO_PAGE
        self._released = True

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            rd_size_kib=self.size // 1024,
            pages_allocated=self.pages_allocated,
            page_offset=self.page_offset,
            memmap_in="System RAM (brd pages are RAM pages)",
        )
        return out


def create_brd(machine: Machine, size: object = None, name: object = None, **extra: object) -> BrdDevice:
    """``modprobe brd rd_size=<size/1024>``: one ``ram<N>`` disk of ``size`` bytes."""
    reject_unknown(DRIVER, extra, ("size", "name"))
    nbytes = DEFAULT_RD_SIZE_KIB * 1024 if size is None else size_param(DRIVER, "size", size)
    if nbytes <= 0 or nbytes % 1024:
        raise EINVAL(f"{DRIVER}: size={nbytes:#x} must be a positive multiple of 1 KiB (rd_size is in KiB)")
    if nbytes // 1024 > RD_SIZE_MAX_KIB:
        raise EINVAL(f"{DRIVER}: rd_size={nbytes // 1024} KiB does not fit the int module parameter")
    return BrdDevice(machine, device_name(machine, DRIVER, "ram", name), nbytes)


BRD: Final = XipDriverModel(
    name=DRIVER,
    description=(
        "RAM block device with CONFIG_BLK_DEV_XIP: RAM pages allocated on demand, struct pages "
        "(pfn_valid true), kaddr = page_address(page)"
    ),
    profiles=PROFILES,
    params=(
        ("size", "bytes, a multiple of 1K (rd_size is KiB), e.g. 64M; default 4M"),
        ("name", "ram<N>; default the lowest free"),
    ),
    create=create_brd,
    image_params=lambda _machine, size: {"size": size},
    ram_backed=True,
    pre_series=(
        "brd pages are ordinary RAM pages: they had struct pages before the series and after it; "
        "the series changed how they are mapped (special PTE or refcounted page), not the memmap"
    ),
)
