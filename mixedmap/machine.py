"""Machine: one arch binding, its physical memory, and the address spaces built on it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.arch import PageTableFormat
from mixedmap.errors import AddressError
from mixedmap.pgtable import PageTable
from mixedmap.pgtable_alloc import TableAllocator
from mixedmap.phys.alloc import FrameAllocator
from mixedmap.phys.mem import PhysMem
from mixedmap.phys.memmap import MemMap
from mixedmap.plugin.registry import ArchRegistry, BoundMode, default_registry
from mixedmap.profiles import Profile, get_profile

log = get_logger("mixedmap.machine")

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

    RAM sits at physical address 0; frames are stored only once written, so a 64 GiB
    machine costs the host what it touched.
    """

    def __init__(
        self,
        arch: str,
        kernel: str | Profile | None = None,
        ram: int | str = "256M",
        *,
        registry: ArchRegistry | None = None,
        **arch_options: object,
    ) -> None:
        self.registry = registry or default_registry()
        self.binding = self.registry.bind(arch)
        self.profile = get_profile(kernel)
        self.mode: BoundMode = self.binding.mode(self.profile.name, **arch_options)
        fmt = self.mode.fmt
        size = parse_size(ram)
        if size <= 0 or size % fmt.page_size:
            raise AddressError(
                f"ram={size:#x} must be a positive multiple of the page size {fmt.page_size:#x}"
            )
        limit = 1 << self.mode.mode.memory.max_physmem_bits
        if size > limit:
            raise AddressError(
                f"ram={size:#x} exceeds MAX_PHYSMEM_BITS={self.mode.mode.memory.max_physmem_bits} "
                f"of {fmt.arch} under {self.profile}"
            )
        self.ram_size = size
        self.mem = PhysMem()
        self.frames = FrameAllocator(0, size >> fmt.page_shift)
        self.memmap = MemMap(self.mode.mode.memory, fmt.page_shift)
        self.memmap.add_sections(0, size >> fmt.page_shift)
        self.tables = TableAllocator(self.frames, self.mem, fmt.page_shift)
        log.debug(
            "machine_created", arch=self.arch, kernel=self.profile.name, mode=self.mode.mode.name, ram=size
        )

    @property
    def arch(self) -> str:
        return self.binding.name

    @property
    def fmt(self) -> PageTableFormat:
        return self.mode.fmt

    @property
    def page_size(self) -> int:
        return self.mode.fmt.page_size

    def new_pagetable(self) -> PageTable:
        """An empty set of page tables (a root table allocated from RAM)."""
        return PageTable(self.mem, self.tables, self.mode)

    def pfn_valid(self, pfns: int | NDArray[np.uint64]) -> NDArray[np.bool_]:
        """``pfn_valid`` for a batch, through the arch's resolved hook."""
        arr = np.atleast_1d(np.asarray(pfns, dtype=np.uint64))
        return self.binding.pfn_valid(self.memmap, arr)

    def pagetable_bytes(self) -> int:
        """RAM held by page tables of every address space on this machine."""
        return self.tables.bytes_held

    def dump_physmem(self, path: str | Path) -> int:
        """Write a flat raw image (file offset == physical address; sparse on disk)."""
        return self.mem.dump(path, size=self.ram_size)

    def __repr__(self) -> str:
        return f"Machine(arch={self.arch!r}, kernel={self.profile.name!r}, mode={self.mode.mode.name!r}, ram={self.ram_size:#x})"
