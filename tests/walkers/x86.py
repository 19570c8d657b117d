"""Independent x86-64 page walker, written from the Intel SDM Vol. 3A, section 4.5.

It shares nothing with the mixedmap_x86 plugin or mixedmap itself: it reads raw little-endian
paging-structure entries through ``read8`` and applies the manual's rules, so it can check
the core's batched ``translate`` over any tables the core built.

Rules applied (4-level paging with CR4.LA57=0, 5-level with LA57=1; MAXPHYADDR 52):

* The linear address must be canonical: bits 63..N-1 all equal bit N-1 (N = 48 or 57),
  otherwise the access faults (#GP) and nothing is mapped.
* CR3 bits 51:12 hold the physical address of the top table (PML5 or PML4); no PCID.
* Each table has 512 eight-byte entries indexed by 9 VA bits: PML5 56:48, PML4 47:39,
  PDPT 38:30, PD 29:21, PT 20:12; the page offset is the rest.
* An entry with P (bit 0) clear ends the walk: not mapped.
* PS (bit 7) must be 0 in a PML5E/PML4E (reserved-bit fault otherwise). PS=1 in a PDPTE maps
  a 1 GiB page (frame = bits 51:30, bits 29:13 reserved), in a PDE a 2 MiB page (frame =
  bits 51:21, bits 20:13 reserved); bit 12 of such an entry is PAT, not address.
* A PTE maps a 4 KiB page: frame = bits 51:12.
* Address bits at or above MAXPHYADDR are reserved in every entry (none with MAXPHYADDR 52).
"""

from __future__ import annotations

from collections.abc import Callable

_P = 1 << 0
_PS = 1 << 7
_ENTRY_INDEX_BITS = 9
_PAGE_SHIFT = 12
_LEVEL_NAMES = {5: ("PML5E", "PML4E", "PDPTE", "PDE", "PTE"), 4: ("PML4E", "PDPTE", "PDE", "PTE")}
_MODE_LEVELS = {"4level": 4, "la57": 5}


def _bits(hi: int, lo: int) -> int:
    """Mask of bits hi..lo inclusive."""
    return ((1 << (hi + 1)) - 1) & ~((1 << lo) - 1)


def is_canonical(va: int, va_bits: int) -> bool:
    """Bits 63..va_bits-1 are all zero or all one."""
    top = va >> (va_bits - 1)
    return top in (0, (1 << (65 - va_bits)) - 1)


def walk(
    read8: Callable[[int], bytes],
    root: int,
    va: int,
    *,
    levels: int | None = None,
    mode: str | None = None,
    maxphyaddr: int = 52,
) -> tuple[int, int] | None:
    """Translate ``va`` through the tables rooted at CR3 value ``root``.

    ``levels`` is 4 or 5 (``mode`` "4level"/"la57" is accepted instead). Returns
    ``(physical address, page size)`` or None when the access would fault.
    """
    if levels is None:
        levels = _MODE_LEVELS[mode] if mode is not None else 4
    if levels not in _LEVEL_NAMES:
        raise ValueError(f"x86-64 paging has 4 or 5 levels, not {levels}")
    if not 0 <= va < 1 << 64:
        raise ValueError(f"linear address {va:#x} is not a 64-bit value")
    va_bits = _PAGE_SHIFT + _ENTRY_INDEX_BITS * levels
    if not is_canonical(va, va_bits):
        return None

    addr_mask = _bits(maxphyaddr - 1, _PAGE_SHIFT)
    reserved_pa = _bits(51, maxphyaddr) if maxphyaddr < 52 else 0
    table = root & addr_mask
    for depth, name in enumerate(_LEVEL_NAMES[levels]):
        shift = _PAGE_SHIFT + _ENTRY_INDEX_BITS * (levels - 1 - depth)
        index = (va >> shift) & ((1 << _ENTRY_INDEX_BITS) - 1)
        raw = read8(table + 8 * index)
        if len(raw) != 8:
            raise ValueError(f"read8({table + 8 * index:#x}) returned {len(raw)} bytes")
        entry = int.from_bytes(raw, "little")
        if not entry & _P or entry & reserved_pa:
            return None
        if name == "PTE":
            return (entry & addr_mask) | (va & ((1 << _PAGE_SHIFT) - 1)), 1 << _PAGE_SHIFT
        if entry & _PS:
            if name not in ("PDPTE", "PDE"):
                return None  # PS is reserved in a PML5E/PML4E
            if entry & _bits(shift - 1, 13):
                return None  # reserved bits between PAT (bit 12) and the frame
            frame = entry & _bits(maxphyaddr - 1, shift)
            return frame | (va & ((1 << shift) - 1)), 1 << shift
        table = entry & addr_mask
    raise AssertionError("unreachable: the PTE level always returns")
