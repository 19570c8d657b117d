"""``axonram``: the IBM Cell blade's Axon DDR2 banks as XIP block devices (2.6.26, 2.6.27).

Models ``arch/powerpc/sysdev/axonram.c`` (``CONFIG_AXON_RAM``, depends on
``PPC_IBM_CELL_BLADE``; merged in 2.6.23, removed by Michael Ellerman's Nov-2017 patch, so
absent from today's trees and not offered under 6.18). One block device per device-tree node
of ``type = "dma-memory"``; the bank's physical range is the node's first ``reg`` resource
(here: the ``start``/``size`` parameters), a zero-sized bank fails the probe with ``-ENODEV``.
Devices are ``axonram0``, ``axonram1``, ... from a static counter that is never reused, 16
minors each, 512-byte logical sectors, capacity ``size >> 9``, writable.

The bank is not System RAM: it never enters the kernel's memory map, so it has no struct
pages and ``pfn_valid`` is false for it (``add_region(..., memmap=False)``). The driver
``ioremap``-s it non-cached for the bio path and, in ``direct_access``, hands out

* ``*kaddr = (void *)(bank->ph_addr + offset)``: the *physical* address cast to a pointer,
  not the ioremap address (kept literally by this model: on ppc64 that is a quadrant-0
  effective address, so a memcpy through it would not reach the bank);
* ``*pfn = virt_to_phys(kaddr) >> PAGE_SHIFT`` where ``kaddr`` is the ``void **`` argument
  itself: the pfn of the caller's stack slot, "completely bogus, and has been since 2008"
  (Matthew Wilcox's later fix changed it to ``*kaddr``). The model returns the intended
  ``(ph_addr + offset) >> PAGE_SHIFT``; :meth:`AxonRamDevice.literal_pfn` computes what
  2.6.27 really returned for a given caller's slot address.

``direct_access`` checks no alignment (unlike brd and dcssblk): ``offset = (sector +
bd_part->start_sect) << 9`` in a 64-bit ``loff_t``, compared unsigned with the bank size,
``-ERANGE`` at or beyond it. Every page computation uses the machine's ``PAGE_SHIFT`` (12
for hash-4k, 16 for hash-64k).
"""

from __future__ import annotations

import errno
import logging
import operator
import weakref
from collections.abc import Iterable
from typing import Any, Final

from mixedmap import (
    EEXIST,
    EINVAL,
    ENOSPC,
    ERANGE,
    AddressError,
    KernelErrno,
    Machine,
    RangeDevice,
    XipDriverModel,
    parse_size,
)
from mixedmap_powerpc.hash2627 import KERNELBASE

log = logging.getLogger("mixedmap.ppc64")

DRIVER: Final = "axonram"
#: Kernels that have the driver and the 2008 ``direct_access(bdev, sector, &kaddr, &pfn)``.
PROFILES: Final = ("2.6.26", "2.6.27")
#: ``AXON_RAM_SECTOR_SHIFT``: 512-byte logical sectors (``blk_queue_hardsect_size``).
SECTOR_SHIFT: Final = 9
#: ``AXON_RAM_MINORS_PER_DISK``: partitions allowed.
MINORS_PER_DISK: Final = 16
#: ``DISK_NAME_LEN`` (32, with the terminating NUL) of ``struct gendisk.disk_name``.
DISK_NAME_LEN: Final = 32
#: Default placement: the first free 1 GiB-aligned physical address above RAM.
BANK_ALIGN: Final = 1 << 30
DEFAULT_SIZE: Final = "1G"
_U64: Final = (1 << 64) - 1

QUIRKS: Final = {
    "kaddr_is_physical": (
        "direct_access returns kaddr = ph_addr + offset, the physical address cast to a pointer, "
        "not the ioremap (io_addr) mapping the bio path uses"
    ),
    "pfn_of_pointer_argument": (
        "2.6.26/2.6.27 compute *pfn = virt_to_phys(kaddr) >> PAGE_SHIFT with kaddr the void ** "
        "argument: the pfn of the caller's stack slot, (slot - 0xC000000000000000) >> PAGE_SHIFT, "
        "a RAM page with a struct page. The model returns the intended (ph_addr + offset) >> "
        "PAGE_SHIFT; literal_pfn(slot) gives the literal value"
    ),
    "no_alignment_check": "any sector is accepted; only offset >= bank size gives -ERANGE",
    "offset_wraps_at_64_bits": (
        "offset = (sector + partition start) << 9 is 64-bit and compared unsigned, so sectors "
        "from 2**55 wrap around to the start of the bank"
    ),
    "bank_id_counts_failed_probes": (
        "the kernel increments its static bank id before validating, so a failed probe skips a "
        "name; the model consumes an id only when the device is created (a refused call changes "
        "nothing)"
    ),
}


class ENODEV(KernelErrno):
    """``-ENODEV``: the probe found no DDR2 memory (zero-sized bank), or the bank is gone."""

    errno = errno.ENODEV


def _u64(value: int, what: str, device: str) -> int:
    """A ``sector_t`` argument: an integer the C type can hold."""
    v = operator.index(value)
    if not 0 <= v <= _U64:
        raise EINVAL(f"{device}: {what} {v} is not a sector_t (0 .. 2**64-1)")
    return v


class AxonRamDevice(RangeDevice):
    """One Axon DDR2 bank (``struct axon_ram_bank``) and its gendisk ``axonram<N>``."""

    driver = DRIVER

    def __init__(self, machine: Machine, name: str, start: int, size: int, bank_id: int) -> None:
        # kaddr_base = ph_addr: the driver's literal *kaddr arithmetic (see module docstring).
        super().__init__(machine, name, start, size, read_only=False, kaddr_base=start)
        self.bank_id = bank_id
        #: ``bank->ecc_counter``: correctable-ECC interrupts seen (sysfs ``ecc``).
        self.ecc_counter = 0
        self._released = False

    # -- the bank ------------------------------------------------------------------------
    @property
    def ph_addr(self) -> int:
        """``bank->ph_addr``: physical start of the bank (DT ``reg``)."""
        return self.start

    @property
    def capacity(self) -> int:
        """``set_capacity(disk, size >> AXON_RAM_SECTOR_SHIFT)``: 512-byte sectors."""
        return self.size >> SECTOR_SHIFT

    @property
    def page_shift(self) -> int:
        return self.machine.fmt.page_shift

    def _live(self) -> None:
        if self._released:
            raise ENODEV(f"{self.name}: the device was removed")

    # -- direct_access ---------------------------------------------------------------------
    def offset(self, sector: int, *, part_start: int = 0) -> int:
        """Byte offset ``direct_access`` computes, or ``-ERANGE`` (the driver's only check).

        ``part_start`` is ``bd_part->start_sect`` when the bdev is a partition (0: whole disk).
        Sum and shift are 64-bit like ``sector_t``/``loff_t``, the comparison unsigned.
        """
        self._live()
        s = _u64(sector, "sector", self.name)
        p = _u64(part_start, "partition start", self.name)
        off = (((s + p) & _U64) << SECTOR_SHIFT) & _U64
        if off >= self.size:
            raise ERANGE(
                f"{self.name}: Access outside of address space: sector {s} (+{p}) is byte offset "
                f"{off:#x}, bank size {self.size:#x} ({self.capacity} sectors)"
            )
        return off

    def direct_access(self, sector: int, *, part_start: int = 0) -> tuple[int, int]:
        """``axon_ram_direct_access``: ``(ph_addr + offset, (ph_addr + offset) >> PAGE_SHIFT)``.

        kaddr is literal (the physical address as a pointer); pfn is the intended value, not
        the 2.6.27 bug (:meth:`literal_pfn`). No alignment check: an unaligned sector gives
        a kaddr inside a page and that page's pfn.
        """
        addr = self.ph_addr + self.offset(sector, part_start=part_start)
        return addr, addr >> self.page_shift

    def literal_pfn(self, kaddr_slot: int) -> int:
        """The pfn 2.6.26/2.6.27 really returned: ``virt_to_phys(kaddr) >> PAGE_SHIFT``.

        ``kaddr_slot`` is the kernel virtual address of the caller's ``void *`` that the
        ``void **kaddr`` argument points to (a stack slot in filemap_xip.c's callers). ppc64
        ``__pa(x)`` of 2.6.27 is ``x - PAGE_OFFSET`` (``MEMORY_START`` 0), modulo 2**64.
        """
        slot = _u64(kaddr_slot, "kaddr slot address", self.name)
        return ((slot - KERNELBASE) & _U64) >> self.page_shift

    def literal_direct_access(self, sector: int, kaddr_slot: int, *, part_start: int = 0) -> tuple[int, int]:
        """What the 2.6.27 driver wrote to ``*kaddr`` and ``*pfn`` (same checks as ``direct_access``)."""
        kaddr, _ = self.direct_access(sector, part_start=part_start)
        return kaddr, self.literal_pfn(kaddr_slot)

    def frame(self, pgoff: int) -> int:
        self._live()
        return super().frame(pgoff)

    # -- ECC -------------------------------------------------------------------------------
    def ecc_interrupt(self) -> int:
        """``axon_ram_irq_handler``: one correctable memory error; returns the new count."""
        self._live()
        self.ecc_counter += 1
        log.info("%s: Correctable memory error occured", self.name)
        return self.ecc_counter

    def sysfs_ecc(self) -> str:
        """Read of the sysfs attribute ``ecc`` (``sprintf(buf, "%ld\\n", ecc_counter)``)."""
        return f"{self.ecc_counter}\n"

    # -- lifecycle ------------------------------------------------------------------------
    def release(self) -> None:
        """``axon_ram_remove``: the disk and the bank's region go; idempotent."""
        if self._released:
            return
        self.machine.remove_region(self.name)
        self._released = True

    def describe(self) -> dict[str, Any]:
        rec = super().describe()
        rec.update(
            bank_id=self.bank_id,
            ph_addr=self.ph_addr,
            capacity_sectors=self.capacity,
            sector_size=1 << SECTOR_SHIFT,
            minors=MINORS_PER_DISK,
            page_size=self.machine.page_size,
            dt_node_type="dma-memory",
            kernel_mapping="ioremap non-cached (_PAGE_NO_CACHE), used by the bio path only",
            ecc=self.ecc_counter,
            direct_access="kaddr = ph_addr + offset (physical); pfn = (ph_addr + offset) >> PAGE_SHIFT",
            quirks=dict(QUIRKS),
        )
        return rec


# -- probe --------------------------------------------------------------------------------
#: Per machine: the driver's ``static int axon_ram_bank_id`` (next id; never reused).
_BANK_IDS: weakref.WeakKeyDictionary[Machine, int] = weakref.WeakKeyDictionary()
_PARAMS: Final = ("start", "size", "name")


def _align_up(value: int, align: int) -> int:
    return (value + align - 1) // align * align


def default_start(machine: Machine, size: int) -> int:
    """The first 1 GiB-aligned physical address above RAM where ``size`` bytes are free.

    A region with struct pages occupies its whole memory sections (``pfn_valid`` is per
    section), so a bank is never placed in a section shared with one.
    """
    model = machine.mode.mode.memory
    sec = 1 << model.section_size_bits
    spans = [
        (r.start // sec * sec, _align_up(r.end, sec)) if r.memmap else (r.start, r.end)
        for r in machine.regions
    ]
    ram_end = max((r.end for r in machine.regions if r.kind == "ram"), default=0)
    limit = 1 << model.max_physmem_bits
    cand = _align_up(ram_end, BANK_ALIGN)
    while cand + size <= limit:
        clash = next(((lo, hi) for lo, hi in spans if lo < cand + size and cand < hi), None)
        if clash is None:
            return cand
        cand = _align_up(clash[1], BANK_ALIGN)
    raise ENOSPC(
        f"axonram: no free 1 GiB-aligned range of {size:#x} bytes above RAM below "
        f"MAX_PHYSMEM_BITS={model.max_physmem_bits} ({limit:#x}); pass start="
    )


def _next_name(machine: Machine) -> tuple[int, str]:
    bank_id = _BANK_IDS.get(machine, 0)
    while f"{DRIVER}{bank_id}" in machine.devices or f"{DRIVER}{bank_id}" in machine.regions:
        bank_id += 1
    return bank_id, f"{DRIVER}{bank_id}"


def create(machine: Machine, **params: Any) -> AxonRamDevice:
    """``axon_ram_probe`` for one ``dma-memory`` node; everything is checked before any change."""
    unknown = sorted(set(params) - set(_PARAMS))
    if unknown:
        raise EINVAL(f"axonram: unknown parameter(s) {', '.join(unknown)}; parameters: {', '.join(_PARAMS)}")
    size = parse_size(params.get("size", DEFAULT_SIZE))
    bank_id, default_name = _next_name(machine)
    name = params.get("name") or default_name
    if not isinstance(name, str) or "/" in name or len(name) >= DISK_NAME_LEN:
        raise EINVAL(
            f"axonram: bad disk name {name!r} (a string without '/', at most {DISK_NAME_LEN - 1} chars)"
        )
    if size < 0:
        raise EINVAL(f"axonram: bank size {size} is negative")
    if size == 0:
        raise ENODEV(f"axonram: No DDR2 memory found for {name} (the dma-memory node's reg has size 0)")
    if size % machine.page_size:
        raise AddressError(
            f"axonram: bank size {size:#x} of {name} is not a multiple of the page size {machine.page_size:#x}"
        )
    if name in machine.devices or name in machine.regions:
        raise EEXIST(f"axonram: a device or region named {name!r} already exists")
    raw_start = params.get("start")
    start = default_start(machine, size) if raw_start is None else parse_size(raw_start)
    if start < 0:
        raise AddressError(f"axonram: bank start {start:#x} of {name} is negative")
    machine.add_region(name, start, size, memmap=False, owner=DRIVER)
    _BANK_IDS[machine] = bank_id + 1
    log.info("%s: Register DDR2 memory device with %dMB at %#x", name, size >> 20, start)
    return AxonRamDevice(machine, name, start, size, bank_id)


MODEL: Final = XipDriverModel(
    name=DRIVER,
    description=(
        "IBM Cell blade Axon DDR2 bank (dma-memory DT node), arch/powerpc/sysdev/axonram.c, "
        "2.6.23 until its removal (2017, 4.15 cycle): no struct pages, kaddr = physical address, "
        "pfn = (ph_addr + offset) >> PAGE_SHIFT (2.6.27's literal pfn was bogus: literal_pfn())"
    ),
    profiles=PROFILES,
    example=(("size", "64M"),),
    image_params=lambda _machine, size: {"size": size},
    pre_series=(
        "axonram memory was never in the memmap (the DDR2 bank is not System RAM), and the "
        "<=2.6.25 get_xip_page API needed a struct page (virt_to_page of the direct_access "
        "address), so XIP on axonram has no pre-series behaviour to model"
    ),
    params=(
        (
            "start",
            "physical address of the bank (DT reg); default: first free 1 GiB-aligned address above RAM",
        ),
        ("size", f"bank size in bytes, e.g. 1G (DT reg; 0 is refused with ENODEV); default {DEFAULT_SIZE}"),
        ("name", "disk name; default axonram<N> from the driver's bank counter (never reused)"),
    ),
    create=create,
)


def xip_drivers() -> Iterable[XipDriverModel]:
    """The ppc64 XIP driver models."""
    return (MODEL,)
