"""``pmem`` on legacy persistent memory (e820 type 12, ``memmap=nn!ss``): x86 DAX in 6.18.

The chain in 6.18: an e820 range of type 12 (``E820_TYPE_PRAM``, "Persistent Memory
(legacy)"; the boot option ``memmap=nn!ss`` makes one) -> platform device ``e820_pmem``
(``arch/x86/kernel/pmem.c``) -> ``drivers/nvdimm/e820.c`` creates an nvdimm region with
``ND_REGION_PAGEMAP`` -> an IO namespace -> ``drivers/nvdimm/pmem.c`` attaches ``/dev/pmemN``.

What the model keeps (``pmem_attach_disk``, ``__pmem_direct_access``, ``drivers/dax/super.c``):

* ``memmap=True`` (default): ``pmem_should_map_pages()`` holds, so ``devm_memremap_pages``
  creates ZONE_DEVICE struct pages (``MEMORY_DEVICE_FS_DAX``) with the memmap in RAM
  (``sizeof(struct page)`` per 4 KiB: 16 MiB per GiB), ``pfn_valid`` is true, the mapping is
  the direct map (``__va(start)``), the disk gets DAX (``PFN_MAP`` -> ``BLK_FEAT_DAX``).
  ``arch_add_memory`` -> ``check_pfn_span`` wants sub-section (2 MiB) alignment of start
  and size under SPARSEMEM_VMEMMAP, else ``-EINVAL``. Model limitation: such a range must
  not share a 128 MiB memory section with other memory (see :func:`_check_own_sections`).
* ``memmap=False``: the namespace's ``force_raw``: ``devm_memremap(..., ARCH_MEMREMAP_PMEM)``
  maps it without struct pages (``pfn_valid`` false; the mapping is an ``ioremap_cache``
  address the model does not assign). The disk then has no ``BLK_FEAT_DAX``:
  ``fs_dax_get_by_bdev`` returns NULL and ``dax_direct_access(NULL, ...)`` returns
  ``-EOPNOTSUPP``, so ``direct_access``/``dax_direct_access`` raise :class:`EOPNOTSUPP`;
  ext4 ``-o dax`` on it is -EINVAL ("DAX unsupported by block device.") and no file on it can
  be mapped directly. Block I/O (``read``/``write``/``fill``) works either way.
* The public contract: :attr:`PmemDevice.dax` (fs-dax can use it) and ``dax_synchronous``
  (an e820 region is a synchronous nvdimm region: ``is_nvdimm_sync`` -> ``set_dax_synchronous``
  in ``pmem_attach_disk``, so MAP_SYNC is allowed); with DAX a file's pages are mapped as
  refcounted ZONE_DEVICE folios (``mixedmap.xip.dax``).
* ``dax_direct_access(pgoff, nr_pages)``: ``nr_pages < 0`` -> ``-EINVAL``; otherwise
  ``kaddr = virt_addr + offset``, ``pfn = PHYS_PFN(phys_addr + offset)`` (a plain
  ``unsigned long`` in 6.18) and ``min(pages to the end of the device, nr_pages)``.

Not modelled: the fsdax info block (``nd_pfn``: ``data_offset``, ``pfn_pad``, memmap on the
device via ``vmem_altmap``), badblocks (``-EHWPOISON``), read-only regions, KASLR of the
direct map. A ``pgoff`` at or past the end raises ``ERANGE`` (what ``dax_direct_access``
returns when a driver reports no page); the kernel trusts its callers there. The range must
not overlap System RAM: the model's RAM cannot be carved the way ``memmap=nn!ss`` turns RAM
into type 12, so a caller places the range outside it (as firmware-provided type 12 is).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mixedmap import EINVAL, ERANGE, AddressError, RangeDevice, XipDriverModel
from mixedmap_x86.direct_map import page_offset
from mixedmap_x86.xip_common import (
    ENODEV,
    EOPNOTSUPP,
    bool_param,
    device_name,
    reject_unknown,
    size_param,
)

if TYPE_CHECKING:
    from mixedmap import Machine

DRIVER: Final = "pmem"
PROFILES: Final = ("6.18",)
#: ``E820_TYPE_PRAM``: legacy (pre-ACPI 6) persistent memory.
E820_TYPE_PRAM: Final = 12
#: ``SUBSECTION_SHIFT``: ZONE_DEVICE memory is added in 2 MiB sub-sections.
SUBSECTION_SIZE: Final = 1 << 21
#: A pmem range without a ``start`` goes to the first such boundary above RAM and regions.
DEFAULT_ALIGN: Final = 1 << 30


class PmemDevice(RangeDevice):
    """``/dev/pmemN`` over one legacy persistent-memory range."""

    driver = DRIVER

    def __init__(self, machine: Machine, name: str, start: int, size: int, memmap: bool) -> None:
        # kaddr_base is the direct-map address devm_memremap_pages returns; it is only ever
        # handed out when the device has DAX (struct pages).
        super().__init__(machine, name, start, size, read_only=False, kaddr_base=page_offset(machine) + start)
        self.memmap = memmap
        self._released = False

    @property
    def dax(self) -> bool:
        """``BLK_FEAT_DAX``: set exactly when the pages were mapped (``PFN_MAP``)."""
        return self.memmap

    @property
    def dax_synchronous(self) -> bool:
        """``is_nvdimm_sync(nd_region)``: an e820 pmem region is neither volatile nor
        ND_REGION_ASYNC, so ``pmem_attach_disk`` calls ``set_dax_synchronous``."""
        return self.dax

    @property
    def nr_pages(self) -> int:
        return self.size // self.machine.page_size

    def _check_dax(self) -> None:
        if self._released:
            raise ENODEV(f"{self.name}: the pmem device was torn down")
        if not self.dax:
            raise EOPNOTSUPP(
                f"{self.name}: a raw namespace without struct pages (memmap=False, force_raw) has no "
                "DAX in 6.18: the disk lacks BLK_FEAT_DAX, fs_dax_get_by_bdev() returns NULL and "
                "dax_direct_access() returns -EOPNOTSUPP"
            )

    def direct_access(self, sector: int) -> tuple[int, int]:
        """The 2008 contract on top of ``dax_direct_access(pgoff, 1)``: (kaddr, pfn)."""
        self._check_dax()
        return super().direct_access(sector)

    def dax_direct_access(self, pgoff: int, nr_pages: int) -> tuple[int, int, int]:
        """6.18 ``dax_direct_access``: (pages available from ``pgoff``, kaddr, pfn)."""
        self._check_dax()
        if nr_pages < 0:
            raise EINVAL(f"{self.name}: nr_pages={nr_pages} is negative")
        if pgoff < 0 or pgoff >= self.nr_pages:
            raise ERANGE(f"{self.name}: pgoff {pgoff} is beyond the device ({self.nr_pages} pages)")
        offset = pgoff * self.machine.page_size
        avail = self.nr_pages - pgoff
        pfn = (self.start + offset) >> self.machine.fmt.page_shift
        return min(avail, nr_pages), self.kaddr_base + offset, pfn

    # -- contents -------------------------------------------------------------------------
    def read(self, offset: int, length: int) -> bytes:
        if self._released:
            raise ENODEV(f"{self.name}: the pmem device was torn down")
        return super().read(offset, length)

    def fill(self, data: bytes | str | Path, offset: int = 0) -> int:
        if self._released:
            raise ENODEV(f"{self.name}: the pmem device was torn down")
        return super().fill(data, offset)

    # -- lifecycle ------------------------------------------------------------------------
    def release(self) -> None:
        """Unbind the namespace: the region (and its ZONE_DEVICE memmap) goes away; refused
        by the core with EBUSY while one of its pages is in use."""
        if self._released:
            return
        self.machine.remove_region(self.name)
        self._released = True

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            e820_type=E820_TYPE_PRAM,
            namespace="raw" if self.memmap else "raw (force_raw, no pages)",
            memmap=self.memmap,
            dax=self.dax,
            kaddr_base=self.kaddr_base if self.dax else None,
            memmap_in="RAM (ZONE_DEVICE, MEMORY_DEVICE_FS_DAX)" if self.memmap else None,
        )
        return out


def _default_start(machine: Machine) -> int:
    """First 1 GiB boundary at or above the end of RAM and of every region present."""
    top: int = max(r.end for r in machine.regions)
    return -(-top // DEFAULT_ALIGN) * DEFAULT_ALIGN


def _check_own_sections(machine: Machine, name: str, start: int, size: int) -> None:
    """Model limitation: a pmem range with struct pages gets memory sections of its own.

    6.18 adds ZONE_DEVICE memory per 2 MiB sub-section, so the kernel lets it share a
    128 MiB section with RAM or another device. The model's memmap is per section and
    ``Machine.remove_region`` drops the memmap of every section the region touches, which
    would take the struct pages of the neighbour with it on teardown; so such a range is
    refused here instead.
    """
    shift = machine.mode.mode.memory.section_size_bits
    first, last = start >> shift, (start + size - 1) >> shift
    for region in machine.regions:
        if region.overlaps(start, size):
            continue  # add_region reports the overlap itself
        if (region.start >> shift) <= last and first <= ((region.end - 1) >> shift):
            raise AddressError(
                f"{DRIVER}: {name} [{start:#x}, {start + size:#x}) would share a {1 << shift:#x}-byte "
                f"memory section with {region.name!r}; the model gives a pmem range with struct pages "
                "whole sections (6.18 itself works in 2 MiB sub-sections)"
            )


def create_pmem(
    machine: Machine,
    size: object = None,
    start: object = None,
    memmap: object = True,
    name: object = None,
    **extra: object,
) -> PmemDevice:
    """Boot with ``memmap=<size>!<start>`` (or firmware e820 type 12) and bind ``pmem``."""
    reject_unknown(DRIVER, extra, ("size", "start", "memmap", "name"))
    if size is None:
        raise EINVAL(f"{DRIVER}: size is required (memmap=nn!ss gives both size and start)")
    nbytes = size_param(DRIVER, "size", size)
    if nbytes <= 0:
        raise EINVAL(f"{DRIVER}: size={nbytes:#x} must be positive")
    with_pages = bool_param(DRIVER, "memmap", memmap)
    base = _default_start(machine) if start is None else size_param(DRIVER, "start", start)
    if with_pages and (base | nbytes) % SUBSECTION_SIZE:
        raise EINVAL(
            f"{DRIVER}: [{base:#x}, {base + nbytes:#x}) is not aligned to the 2 MiB sub-section that "
            "memremap_pages needs for struct pages (check_pfn_span); use memmap=False or align it"
        )
    dev_name = device_name(machine, DRIVER, "pmem", name)
    if with_pages:
        _check_own_sections(machine, dev_name, base, nbytes)
    device = PmemDevice(machine, dev_name, base, nbytes, with_pages)
    # The last step: add_region checks page alignment, overlap, sections and
    # MAX_PHYSMEM_BITS before it changes anything.
    machine.add_region(dev_name, base, nbytes, memmap=with_pages, owner=DRIVER)
    return device


PMEM: Final = XipDriverModel(
    name=DRIVER,
    description=(
        "legacy persistent memory (e820 type 12, memmap=nn!ss) with the nvdimm pmem driver: "
        "ZONE_DEVICE struct pages and DAX, or a raw namespace without pages and without DAX"
    ),
    profiles=PROFILES,
    example=(("size", "64M"),),
    # The page-less namespace: what the series' argument asks of a shared image. 6.18 refuses
    # DAX on it, and the guests report says so; memmap=true measures the ZONE_DEVICE cost.
    image_params=lambda _machine, size: {"size": size, "memmap": False},
    pre_series=(
        "pmem (4.1) postdates the series; in 6.18 its struct pages follow the namespace "
        "(memmap=true: ZONE_DEVICE pages), not a pre-series behaviour"
    ),
    params=(
        ("size", "bytes, e.g. 1G (required)"),
        ("start", "physical address; default the first 1 GiB boundary above RAM and other regions"),
        ("memmap", "true: struct pages in RAM, DAX (default); false: force_raw, no pages, no DAX"),
        ("name", "pmem<N>; default the lowest free"),
    ),
    create=create_pmem,
)
