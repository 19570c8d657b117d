"""The x86-64 kernel direct map: ``__va(pa) = pa + PAGE_OFFSET`` per (mode, profile).

``page_address(page)`` of a RAM page (brd) and the address ``devm_memremap_pages`` hands
back for ZONE_DEVICE memory (pmem with struct pages, ``__va(range.start)``) both lie in
the direct map, so a driver model's ``kaddr`` is ``PAGE_OFFSET + physical address``.

Values, checked against the kernel headers:

* 2.6.26 ``include/asm-x86/page_64.h``: ``__PAGE_OFFSET`` = 0xffff810000000000 (the
  pre-Xen layout; the 2.6.26 header still declares ``end_pfn``, which 2.6.27 renamed to
  ``max_pfn``).
* 2.6.27 ``include/asm-x86/page_64.h``: 0xffff880000000000, "the most negative possible
  address + PGDIR_SIZE*16 (pgd slot 272)", a hole left for a hypervisor (Xen).
* 6.18 ``arch/x86/include/asm/page_64_types.h``: ``__PAGE_OFFSET_BASE_L4`` =
  0xffff888000000000 and ``__PAGE_OFFSET_BASE_L5`` = 0xff11000000000000. With
  ``CONFIG_RANDOMIZE_MEMORY`` (KASLR) the kernel moves ``page_offset_base`` at boot; the
  model assumes it is off (``nokaslr``), i.e. the base values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from mixedmap import ProfileError
from mixedmap_x86.formats import MODE_4LEVEL, MODE_LA57

if TYPE_CHECKING:
    from mixedmap import Machine

#: ``PAGE_OFFSET`` per (mode, profile).
PAGE_OFFSET: Final = {
    (MODE_4LEVEL, "2.6.26"): 0xFFFF_8100_0000_0000,
    (MODE_4LEVEL, "2.6.27"): 0xFFFF_8800_0000_0000,
    (MODE_4LEVEL, "6.18"): 0xFFFF_8880_0000_0000,
    (MODE_LA57, "6.18"): 0xFF11_0000_0000_0000,
}


def page_offset(machine: Machine) -> int:
    """``PAGE_OFFSET`` of the machine's mode and kernel profile."""
    key = (machine.mode.mode.name, machine.profile.name)
    try:
        return PAGE_OFFSET[key]
    except KeyError:
        raise ProfileError(f"x86_64 has no direct-map base for mode {key[0]} under kernel {key[1]}") from None
