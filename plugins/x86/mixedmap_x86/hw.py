"""x86-64 paging-structure bits as the hardware defines them (Intel SDM Vol. 3A, ch. 4.5).

These are the same in every kernel profile; what Linux layers on top (software bits, the
PROT_NONE alias, its physical-address mask) lives in :mod:`mixedmap_x86.kernels`.
All masks are plain ints with bit n = ``1 << n``.
"""

from __future__ import annotations

from typing import Final

PAGE_SHIFT: Final = 12
ENTRY_BITS: Final = 9  # 512 eight-byte entries per 4 KiB table
TABLE_BYTES: Final = 4096

P: Final = 1 << 0  # present
RW: Final = 1 << 1  # writable (must be 1 at every level for a write)
US: Final = 1 << 2  # user/supervisor
PWT: Final = 1 << 3  # page-level write-through
PCD: Final = 1 << 4  # page-level cache disable
A: Final = 1 << 5  # accessed, set by the CPU
D: Final = 1 << 6  # dirty, set by the CPU (leaf entries only)
PS: Final = 1 << 7  # page size in a PDPTE/PDE; PAT in a 4 KiB PTE; reserved in PML4E/PML5E
PAT: Final = PS  # 4 KiB PTE only
G: Final = 1 << 8  # global (CR4.PGE), leaf entries only
PAT_LARGE: Final = 1 << 12  # PAT bit of a 2 MiB / 1 GiB leaf
PKEY: Final = 0xF << 59  # protection key (CR4.PKE / PKS), leaf entries only
NX: Final = 1 << 63  # execute-disable (EFER.NXE)

#: The widest physical address 4-level and 5-level paging can express (MAXPHYADDR <= 52).
MAX_PA_BITS: Final = 52
#: Address bits 51:12 of any paging-structure entry or of CR3.
ADDR_MASK_52: Final = ((1 << MAX_PA_BITS) - 1) & ~((1 << PAGE_SHIFT) - 1)

#: CR3 without PCID (CR4.PCIDE=0): bits 51:12 locate the top table, bit 3 PWT, bit 4 PCD.
CR3_ADDR_MASK: Final = ADDR_MASK_52

#: Page sizes of a leaf at each level shift.
SHIFT_4K: Final = 12
SHIFT_2M: Final = 21
SHIFT_1G: Final = 30
SHIFT_512G: Final = 39
SHIFT_256T: Final = 48


def low_mask(shift: int) -> int:
    """``(1 << shift) - 1``: the offset bits below a page of that shift."""
    return (1 << shift) - 1


def addr_mask(pa_bits: int, shift: int) -> int:
    """Bits ``pa_bits-1 .. shift``: the frame address field of a leaf of that size."""
    return low_mask(pa_bits) & ~low_mask(shift)
