"""Physical address-space layout: System RAM and device memory regions.

Each region says whether its frames have ``struct page`` (a memmap). SPARSEMEM decides
``pfn_valid`` per section, so a region without a memmap must not share a memory section
with one that has it: the kernel would then report struct pages for the device's frames.
"""

from __future__ import annotations

from typing import Literal

import attrs

from mixedmap.errors import AddressError


@attrs.frozen(kw_only=True)
class Region:
    """A named physical range (``/proc/iomem`` style)."""

    name: str
    start: int
    size: int
    kind: Literal["ram", "device"]
    memmap: bool
    owner: str = ""

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.start + self.size

    def overlaps(self, start: int, size: int) -> bool:
        return start < self.end and self.start < start + size


class RegionMap:
    """The regions of one machine, non-overlapping, kept sorted by address."""

    def __init__(self) -> None:
        self._regions: dict[str, Region] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._regions.values(), key=lambda r: r.start))

    def __getitem__(self, name: str) -> Region:
        try:
            return self._regions[name]
        except KeyError:
            raise AddressError(f"no region {name!r}; regions: {', '.join(self._regions) or 'none'}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._regions

    def check(self, region: Region, page_size: int) -> None:
        """Raise AddressError if ``region`` cannot be added; changes nothing."""
        if region.name in self._regions:
            raise AddressError(f"region name {region.name!r} is already used")
        if region.size <= 0:
            raise AddressError(f"region {region.name!r}: size {region.size:#x} must be positive")
        if region.start % page_size or region.size % page_size:
            raise AddressError(
                f"region {region.name!r} [{region.start:#x}, {region.end:#x}) is not aligned to the "
                f"page size {page_size:#x}"
            )
        for other in self._regions.values():
            if other.overlaps(region.start, region.size):
                raise AddressError(
                    f"region {region.name!r} [{region.start:#x}, {region.end:#x}) overlaps "
                    f"{other.name!r} [{other.start:#x}, {other.end:#x})"
                )

    def add(self, region: Region) -> None:
        self._regions[region.name] = region

    def remove(self, name: str) -> Region:
        region = self[name]
        del self._regions[name]
        return region

    def find(self, pa: int) -> Region | None:
        """The region holding physical address ``pa``."""
        for r in self._regions.values():
            if r.start <= pa < r.end:
                return r
        return None
