"""Machine: one arch binding, its physical memory, and the address spaces built on it."""

from __future__ import annotations

import importlib
import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.arch import PageTableFormat, ReservedRange, XipDriverModel
from mixedmap.errors import EBUSY, EEXIST, ENOENT, AddressError, PluginError, ProfileError, UnknownArchError
from mixedmap.mm.mm import MM
from mixedmap.pgtable import PageTable
from mixedmap.pgtable_alloc import TableAllocator
from mixedmap.phys.alloc import FrameAllocator
from mixedmap.phys.mem import PhysMem
from mixedmap.phys.memmap import PG, MemMap
from mixedmap.phys.page_alloc import PageAllocator
from mixedmap.phys.regions import Region, RegionMap
from mixedmap.plugin.registry import ArchRegistry, BoundMode, default_registry
from mixedmap.profiles import Profile, get_profile
from mixedmap.xip.device import XipDevice

if TYPE_CHECKING:  # annotations only: dump is a layer above machine
    from mixedmap.dump import DumpFiles

log = get_logger("mixedmap.machine")


@attrs.frozen
class PageInfo:
    """A snapshot of one struct page (refcount as page_count, mapcount as page_mapcount)."""

    pfn: int
    refcount: int
    mapcount: int
    flags: PG
    mapping: int
    index: int


def boot_reservations(
    declared: tuple[ReservedRange, ...], base: int, size: int, where: str
) -> tuple[ReservedRange, ...]:
    """The declared boot reservations that fall in RAM [base, base+size), at physical addresses.

    A "ram"-anchored range moves with RAM. A "phys" range wholly below RAM is left out (RAM was
    placed above it: nothing there for the kernel to reserve); one that RAM only partly holds,
    or does not reach, is an :class:`AddressError` naming the plugin (``where``) and the range,
    raised before anything is built, as is a set of ranges that overlap or leave no free RAM.
    """
    end = base + size
    out: list[ReservedRange] = []
    for r in declared:
        start = base + r.start if r.anchor == "ram" else r.start
        if r.anchor == "phys" and r.end <= base:
            continue
        if start < base or start + r.size > end:
            raise AddressError(
                f"{where}: reserved range {r} ({r.kernel_ref}) is not inside RAM "
                f"[{base:#x}, {end:#x}); give the machine RAM that holds it"
            )
        out.append(attrs.evolve(r, start=start, anchor="phys"))
    out.sort(key=lambda r: r.start)
    for a, b in itertools.pairwise(out):
        if b.start < a.end:
            raise AddressError(f"{where}: reserved range {b} overlaps {a} in RAM [{base:#x}, {end:#x})")
    if sum(r.size for r in out) >= size:
        raise AddressError(f"{where}: the boot reservations leave no free RAM in [{base:#x}, {end:#x})")
    return tuple(out)


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(size: int | str) -> int:
    """Bytes from an int or a string such as "512M", "1G", "64GiB", "0x10000"."""
    if isinstance(size, int):
        return size
    m = re.fullmatch(r"\s*(0x[0-9a-fA-F]+|\d+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", size)
    if not m:
        raise AddressError(f"cannot parse size {size!r}; use e.g. 4096, 512M, 1G, 64GiB")
    return int(m.group(1), 0) * _UNITS[m.group(2).lower()]


class Machine:
    """A simulated machine of one arch, kernel profile and RAM size.

    RAM sits at physical address ``ram_base`` (default 0); frames are stored only once
    written, so a 64 GiB machine costs the host what it touched. A high ``ram_base`` puts
    every page table and page above it: the way to check that an arch's table entries hold
    addresses up to the top of its physical address bits, not only below 4 GiB.
    """

    def __init__(
        self,
        arch: str,
        kernel: str | Profile | None = None,
        ram: int | str = "256M",
        *,
        registry: ArchRegistry | None = None,
        ram_base: int | str = 0,
        **arch_options: object,
    ) -> None:
        self.registry = registry or default_registry()
        self.binding = self.registry.bind(arch)
        self.mode: BoundMode = self.binding.mode(
            None if kernel is None else get_profile(kernel).name, **arch_options
        )
        self.profile = get_profile(self.mode.mode.profile)
        fmt = self.mode.fmt
        size = parse_size(ram)
        if size <= 0 or size % fmt.page_size:
            raise AddressError(
                f"ram={size:#x} must be a positive multiple of the page size {fmt.page_size:#x}"
            )
        base = parse_size(ram_base)
        if base < 0 or base % fmt.page_size:
            raise AddressError(
                f"ram_base={base:#x} must be a non-negative multiple of the page size {fmt.page_size:#x}"
            )
        limit = 1 << min(self.mode.mode.memory.max_physmem_bits, fmt.pa_bits)
        if base + size > limit:
            raise AddressError(
                f"ram [{base:#x}, {base + size:#x}) exceeds MAX_PHYSMEM_BITS={self.mode.mode.memory.max_physmem_bits} "
                f"/ {fmt.pa_bits} PTE address bits of {fmt.arch} under {self.profile}"
            )
        self.ram_base = base
        self.ram_size = size
        #: What the arch's kernel reserved at boot in this machine's RAM, at physical addresses.
        self.reserved: tuple[ReservedRange, ...] = boot_reservations(
            self.mode.mode.memory.reserved, base, size, self.binding.report.where
        )
        self.mem = PhysMem()
        self.regions = RegionMap()
        self.memmap = MemMap(self.mode.mode.memory, fmt.page_shift)
        self._add_region(Region(name="System RAM", start=base, size=size, kind="ram", memmap=True))
        self.frames = FrameAllocator(base >> fmt.page_shift, (base + size) >> fmt.page_shift)
        for r in self.reserved:
            self._reserve_boot(r)
        self.pages = PageAllocator(self.frames, self.memmap, self.mem, fmt.page_shift)
        self.tables = TableAllocator(self.pages, self.mem, fmt.page_shift)
        self.devices: dict[str, XipDevice] = {}
        self.mms: list[MM] = []
        #: Called with keyword arguments for every mm event when set (see mixedmap.trace).
        self.tracer: Any = None
        log.debug(
            "machine_created", arch=self.arch, kernel=self.profile.name, mode=self.mode.mode.name, ram=size
        )

    def _reserve_boot(self, r: ReservedRange) -> None:
        """memblock_reserve: the frames never reach the allocator; their struct pages stay as
        memmap_init_zone left them, refcount 1 and PG_reserved (2.6.27 mm/page_alloc.c;
        6.18 reserve_bootmem_region in mm/mm_init.c)."""
        shift = self.mode.fmt.page_shift
        first, count = r.start >> shift, r.size >> shift
        self.frames.reserve(first, count)
        mm, pfns = self.memmap, np.arange(first, first + count, dtype=np.uint64)
        spans = mm.spans(pfns)
        if spans is None:  # not one run of struct pages: rows() names the pfn without one
            row, col = mm.rows(pfns)
            spans = [(int(r), int(c), int(c) + 1) for r, c in zip(row.tolist(), col.tolist(), strict=True)]
        for row_, lo, hi in spans:
            mm.refcount[row_, lo:hi] = 1
            mm.flags[row_, lo:hi] = PG.reserved
        log.debug("boot_reserved", arch=self.arch, range=str(r), kernel=r.kernel_ref)

    @property
    def arch(self) -> str:
        return self.binding.name

    @property
    def fmt(self) -> PageTableFormat:
        return self.mode.fmt

    @property
    def page_size(self) -> int:
        return self.mode.fmt.page_size

    def new_mm(self) -> MM:
        """A new, empty address space (mm_struct) with its own page tables."""
        mm = MM(self)
        self.mms.append(mm)
        return mm

    def new_pagetable(self) -> PageTable:
        """An empty set of page tables (a root table allocated from RAM)."""
        return PageTable(self.mem, self.tables, self.mode)

    def pfn_valid(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.bool_]:
        """``pfn_valid`` for a batch (a one-element array for an int), through the arch's
        implementation resolved at bind time (:func:`mixedmap.plugin.registry.resolve_pfn_valid`:
        the core's SPARSEMEM test is called directly, no pluggy dispatch per call)."""
        if type(pfns) is int and pfns >= 0 and self.binding.pfn_valid_is_core:
            return np.array([self.memmap.pfn_valid_one(pfns)], dtype=np.bool_)
        arr = np.atleast_1d(np.asarray(pfns, dtype=np.uint64))
        return self.binding.pfn_valid(self.memmap, arr)

    # -- physical layout ------------------------------------------------------------------
    def add_region(self, name: str, start: int, size: int, *, memmap: bool, owner: str = "") -> Region:
        """Add device memory at [start, start+size), with or without struct pages.

        Checked before anything changes: alignment, overlap, MAX_PHYSMEM_BITS, and that a
        region without a memmap shares no memory section with one that has it.
        """
        region = Region(name=name, start=start, size=size, kind="device", memmap=memmap, owner=owner)
        return self._add_region(region)

    def _add_region(self, region: Region) -> Region:
        fmt, model = self.mode.fmt, self.mode.mode.memory
        self.regions.check(region, fmt.page_size)
        if region.end > 1 << model.max_physmem_bits:
            raise AddressError(
                f"region {region.name!r} ends at {region.end:#x}, beyond MAX_PHYSMEM_BITS="
                f"{model.max_physmem_bits} of {fmt.arch} under {self.profile}"
            )
        first, count = region.start >> fmt.page_shift, region.size >> fmt.page_shift
        if not region.memmap and self.memmap.has_memmap(first, count):
            raise AddressError(
                f"region {region.name!r} [{region.start:#x}, {region.end:#x}) has no struct pages but "
                f"shares a {1 << model.section_size_bits:#x}-byte memory section with memory that has "
                f"them (pfn_valid is per section); align it to a section boundary"
            )
        if region.memmap:
            others = [r for r in self.regions if not r.memmap]
            for sec in self.memmap.section_range(first, count):
                lo, hi = sec << model.section_size_bits, (sec + 1) << model.section_size_bits
                clash = next((r for r in others if r.overlaps(lo, hi - lo)), None)
                if clash is not None:
                    raise AddressError(
                        f"region {region.name!r} would give struct pages to memory section {sec} "
                        f"which holds {clash.name!r} (no struct pages)"
                    )
            self.memmap.add_sections(first, count)
            if region.kind == "device":
                # memmap_init_zone: every struct page starts reserved with one reference;
                # only RAM is handed to the buddy allocator (refcount 0 = free).
                row, col = self.memmap.rows(np.arange(first, first + count, dtype=np.uint64))
                self.memmap.refcount[row, col] = 1
                self.memmap.flags[row, col] = PG.reserved
        self.regions.add(region)
        log.debug(
            "region_added", name=region.name, start=region.start, size=region.size, memmap=region.memmap
        )
        return region

    def remove_region(self, name: str) -> Region:
        """Remove a device region; its struct pages (if any) must all be unreferenced."""
        region = self.regions[name]
        if region.kind == "ram":
            raise AddressError(f"region {name!r} is System RAM and cannot be removed")
        fmt = self.mode.fmt
        first, count = region.start >> fmt.page_shift, region.size >> fmt.page_shift
        if region.memmap:
            pfns = np.arange(first, first + count, dtype=np.uint64)
            row, col = self.memmap.rows(pfns)
            busy = (self.memmap.mapcount[row, col] > 0) | (self.memmap.refcount[row, col] > 1)
            if busy.any():
                raise EBUSY(f"region {name!r}: page {int(pfns[busy][0]):#x} is still in use")
            shift = self.mode.mode.memory.section_size_bits
            for sec in self.memmap.section_range(first, count):
                lo, size = sec << shift, 1 << shift
                if not any(r.memmap and r.name != name and r.overlaps(lo, size) for r in self.regions):
                    self.memmap.remove_sections(sec << (shift - fmt.page_shift), 1)
        self.mem.discard(region.start, region.size)
        return self.regions.remove(name)

    def memmap_bytes(self, region: str | None = None) -> int:
        """Bytes of struct page the kernel would spend: the machine, or one region."""
        if region is None:
            return self.memmap.memmap_bytes()
        r = self.regions[region]
        if not r.memmap:
            return 0
        return (r.size >> self.mode.fmt.page_shift) * self.mode.mode.memory.struct_page_size

    def accounting(self) -> dict[str, int]:
        """The memory the model's kernel spends, itemised (compare with the kernel's formulas)."""
        return {
            "ram_bytes": self.ram_size,
            "memmap_bytes": self.memmap_bytes(),
            "pagetable_bytes": self.pagetable_bytes(),
            "allocator_bitmap_bytes": (self.frames.nr_frames + 7) // 8,
            "free_ram_bytes": self.frames.nr_free * self.page_size,
            "host_stored_bytes": self.mem.stored_bytes,
            "host_memmap_bytes": self.memmap.host_bytes,
        }

    def page(self, pfn: int) -> PageInfo | None:
        """struct page state of ``pfn``, or None when the frame has no struct page."""
        if not self.pfn_valid(pfn)[0]:
            return None
        row, col = self.memmap.rows(np.array([pfn], dtype=np.uint64))
        mm = self.memmap
        return PageInfo(
            pfn=pfn,
            refcount=int(mm.refcount[row[0], col[0]]),
            mapcount=int(mm.mapcount[row[0], col[0]]),
            flags=PG(int(mm.flags[row[0], col[0]])),
            mapping=int(mm.mapping[row[0], col[0]]),
            index=int(mm.index[row[0], col[0]]),
        )

    # -- XIP devices ------------------------------------------------------------------------
    def xip_drivers(self) -> dict[str, XipDriverModel]:
        """The arch's XIP driver models that exist under this machine's kernel profile."""
        return {
            d.name: d for d in self.binding.xip_drivers if not d.profiles or self.profile.name in d.profiles
        }

    def create_xip_device(self, driver: str, **params: Any) -> XipDevice:
        """Create a device with one of the arch's XIP driver models (see :meth:`xip_drivers`)."""
        drivers = self.xip_drivers()
        if driver not in drivers:
            every = {d.name: d for d in self.binding.xip_drivers}
            if driver in every:
                raise ProfileError(
                    f"XIP driver {driver!r} of {self.arch} does not exist under kernel {self.profile}; "
                    f"it models {', '.join(every[driver].profiles)}"
                )
            raise UnknownArchError(
                f"{self.arch} has no XIP driver {driver!r}; it has: {', '.join(every) or 'none'}"
            )
        device = drivers[driver].create(self, **params)
        if not isinstance(device, XipDevice):
            raise PluginError(
                f"{self.binding.report.where}: XIP driver {driver!r} returned {type(device).__name__}"
            )
        if device.name in self.devices:
            device.release()
            raise EEXIST(f"a device named {device.name!r} already exists")
        self.devices[device.name] = device
        log.debug("xip_device_created", driver=driver, device=device.name, size=device.size)
        return device

    def remove_xip_device(self, name: str) -> None:
        """Tear a device down (its driver decides what that means)."""
        try:
            device = self.devices[name]
        except KeyError:
            raise ENOENT(f"no XIP device {name!r}; devices: {', '.join(self.devices) or 'none'}") from None
        device.release()
        del self.devices[name]

    def pagetable_bytes(self) -> int:
        """RAM held by page tables of every address space on this machine."""
        return self.tables.bytes_held

    def dump_physmem(self, path: str | Path) -> int:
        """Write a flat raw image (file offset == physical address; sparse on disk)."""
        return self.mem.dump(path, size=self.ram_end)

    @property
    def ram_end(self) -> int:
        """First physical address above RAM."""
        return self.ram_base + self.ram_size

    def __repr__(self) -> str:
        return f"Machine(arch={self.arch!r}, kernel={self.profile.name!r}, mode={self.mode.mode.name!r}, ram={self.ram_size:#x})"

    def dump(self, directory: str | Path, name: str = "machine") -> DumpFiles:
        """Write this machine's memory images into ``directory`` (:func:`mixedmap.dump.dump_machine`).

        ``NAME.raw``, ``NAME.json``, ``NAME.lime`` on x86_64 and ``NAME.vmcore``; returns the
        DumpFiles. ``mixedmap.dump`` sits a layer above ``machine`` (pyproject.toml
        [tool.importlinter]: dump imports Machine), and import-linter counts an import
        inside a function as an edge too, so the module is looked up by name at call time.
        """
        dump = importlib.import_module("mixedmap.dump")
        files: DumpFiles = dump.dump_machine(self, directory, name)
        return files
