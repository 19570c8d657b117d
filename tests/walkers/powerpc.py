"""Independent ppc64 walkers, written from the architecture's and the kernel's walk rules.

Nothing here imports mixedmap or the plugin: the point is a second opinion.

* ``radix-4k`` / ``radix-64k``: the Power ISA v3.0B radix tree walk (Book III, "Radix Tree
  Translation"). The root is the process-table entry's RPDB (the PGD's real address) with
  RTS = 52 bits and RPDS = 13. Every entry is a big-endian doubleword: bit 63 V (valid), bit
  62 L (leaf). A directory entry gives NLB (next-level base, bits 59:8) and NLS (log2 of the
  next table's entries, bits 4:0); the page size of a leaf is whatever EA bits are left.
* ``hash-4k`` / ``hash-64k``: under the hash MMU the hardware walks the hashed page table,
  which ``hash_page`` fills from the Linux tree found by ``find_linux_pte``. That software
  walk is modelled: for kernels 2.6.26/2.6.27 (default) directory entries hold the kernel
  virtual address ``0xC000000000000000 + pa`` of the next table; for ``profile="6.18"`` they
  hold ``pa | 1 << 63``. A PTE translates when ``_PAGE_PRESENT`` is set; with 64 KiB pages
  ``_PAGE_4K_PFN`` (``H_PAGE_4K_PFN``) makes the PFN a 4 KiB frame mapped by a 4 KiB page.

``root`` is the tree of the address space the EA belongs to (the process-table entry for
that quadrant under radix, the mm's PGD under hash); ``mode`` is the mixedmap mode name and
``profile`` the kernel profile (it picks the 2.6.27 or the 6.18 hash tree).
"""

from __future__ import annotations

from collections.abc import Callable

Read8 = Callable[[int], bytes]

_V = 1 << 63
_L = 1 << 62
_RADIX_RPN = 0x01FF_FFFF_FFFF_F000  # RPN, bits 56:12
_RADIX_NLB = 0x0FFF_FFFF_FFFF_FF00
_RADIX_NLS = 0x1F
_RADIX_TREE_BITS = 52  # RTS as Linux programs it
_RADIX_ROOT_NLS = 13  # RPDS
_RADIX_PAGE_SIZES = frozenset({1 << 12, 1 << 16, 1 << 21, 1 << 30})  # POWER9/10

_KERNELBASE = 0xC000_0000_0000_0000


def _entry(read8: Read8, pa: int) -> int:
    return int.from_bytes(read8(pa), "big")


def walk(
    read8: Read8, root: int, va: int, *, mode: str, profile: str | None = None
) -> tuple[int, int] | None:
    """(physical address, page size) for ``va``, or None when it is not mapped."""
    mmu, _, size = mode.partition("-")
    if size not in ("4k", "64k") or mmu not in ("radix", "hash"):
        raise ValueError(f"unknown ppc64 mode {mode!r}")
    if not 0 <= va < 1 << 64:
        return None
    if mmu == "radix":
        if profile not in (None, "6.18"):
            raise ValueError(f"radix does not exist under kernel {profile}")
        return _walk_radix(read8, root, va)
    page_shift = 12 if size == "4k" else 16
    if profile in (None, "2.6.26", "2.6.27"):
        return _walk_hash_2627(read8, root, va, page_shift)
    if profile == "6.18":
        return _walk_hash_618(read8, root, va, page_shift)
    raise ValueError(f"unknown kernel profile {profile!r}")


def _walk_radix(read8: Read8, root: int, va: int) -> tuple[int, int] | None:
    quadrant = va >> 62
    if quadrant in (1, 2):  # not a process-scoped quadrant for an LPAR's own tables
        return None
    if (va >> _RADIX_TREE_BITS) & ((1 << (62 - _RADIX_TREE_BITS)) - 1):
        return None  # EA beyond the tree size: segment interrupt
    base, nls, left = root, _RADIX_ROOT_NLS, _RADIX_TREE_BITS
    while True:
        left -= nls
        if left < 12:
            return None
        entry = _entry(read8, base + ((va >> left) & ((1 << nls) - 1)) * 8)
        if not entry & _V:
            return None
        if entry & _L:
            size = 1 << left
            if size not in _RADIX_PAGE_SIZES:
                return None
            return (entry & _RADIX_RPN & ~(size - 1)) | (va & (size - 1)), size
        nls = entry & _RADIX_NLS
        base = entry & _RADIX_NLB
        if nls < 5 or base & ((8 << nls) - 1):
            return None  # invalid NLS or a misaligned next-level table


# (shift, index mask) per level, PTE level last; 2.6.27 pgd_index masks with 0x1ff.
_HASH_2627 = {
    12: ((35, 0x1FF), (28, 0x7F), (21, 0x7F), (12, 0x1FF)),
    16: ((40, 0x1FF), (28, 0xFFF), (16, 0xFFF)),
}
_HASH_2627_MASKED = {12: 0, 16: 0x1FF}  # p?d_page_vaddr drops these low bits
_HASH_2627_RPN_SHIFT = {12: 17, 16: 30}
_PAGE_4K_PFN_2627 = 0x2000_0000


def _walk_hash_2627(read8: Read8, root: int, va: int, page_shift: int) -> tuple[int, int] | None:
    if (va >> 44) & 0xFFFF:
        return None  # outside the 16 TB the Linux tree maps in each region
    levels = _HASH_2627[page_shift]
    table = root
    for shift, mask in levels[:-1]:
        entry = _entry(read8, table + ((va >> shift) & mask) * 8)
        if entry == 0:
            return None
        if entry < _KERNELBASE:
            return None  # not a linear-map address: no table there
        table = (entry & ~_HASH_2627_MASKED[page_shift]) - _KERNELBASE
    shift, mask = levels[-1]
    pte = _entry(read8, table + ((va >> shift) & mask) * 8)
    if not pte & 0x1:  # _PAGE_PRESENT
        return None
    pfn = pte >> _HASH_2627_RPN_SHIFT[page_shift]
    if page_shift == 16 and pte & _PAGE_4K_PFN_2627:
        return (pfn << 12) | (va & 0xFFF), 1 << 12
    size = 1 << page_shift
    return (pfn << page_shift) | (va & (size - 1)), size


_HASH_618 = {
    12: ((37, 9), (28, 9), (21, 7), (12, 9)),
    16: ((44, 8), (34, 10), (24, 10), (16, 8)),
}
_RPN_618 = (1 << 53) - 1
_DIR_ADDR_618 = 0x3FFF_FFFF_FFFF_FF00
_H_PAGE_4K_PFN = 0x2000


def _walk_hash_618(read8: Read8, root: int, va: int, page_shift: int) -> tuple[int, int] | None:
    levels = _HASH_618[page_shift]
    va_bits = levels[0][0] + levels[0][1]
    if (va >> va_bits) & ((1 << (62 - va_bits)) - 1):
        return None  # EA_MASK drops bits 63:62 only
    table = root
    for k, (shift, nbits) in enumerate(levels):
        entry = _entry(read8, table + ((va >> shift) & ((1 << nbits) - 1)) * 8)
        last = k == len(levels) - 1
        if entry == 0:
            return None
        if last or entry & _L:  # a PTE, or a huge (THP) leaf directory entry
            if not entry & _V:  # _PAGE_PRESENT
                return None
            if last and page_shift == 16 and entry & _H_PAGE_4K_PFN:
                return ((entry & _RPN_618) >> 16 << 12) | (va & 0xFFF), 1 << 12
            size = 1 << shift
            return (entry & _RPN_618 & ~(size - 1)) | (va & (size - 1)), size
        table = entry & _DIR_ADDR_618
    return None
