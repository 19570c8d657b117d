"""RV64 page-based virtual memory as the privileged architecture defines it.

Sources: The RISC-V Instruction Set Manual, Volume II (Privileged Architecture), sections
"Sv39: Page-Based 39-bit Virtual-Memory System", "Sv48", the ``satp`` register, and the
Svpbmt and Svnapot extensions. Nothing here is Linux's: the kernel's names and software bits
live in :mod:`mixedmap_riscv64.linux`. Masks are plain ints, bit n = ``1 << n``.
"""

from __future__ import annotations

from typing import Final

PAGE_SHIFT: Final = 12  # PAGESIZE = 2**12
TABLE_BYTES: Final = 4096  # every table is one page
ENTRY_BITS: Final = 9  # VPN[i] is 9 bits: 512 eight-byte PTEs per table (PTESIZE = 8)

# -- PTE bits 9:0 (identical at every level) ------------------------------------------------
V: Final = 1 << 0  # valid; when clear every other bit is ignored (page fault)
R: Final = 1 << 1  # readable
W: Final = 1 << 2  # writable (W=1 with R=0 is reserved)
X: Final = 1 << 3  # executable
U: Final = 1 << 4  # user-mode accessible
G: Final = 1 << 5  # global mapping (all address spaces)
A: Final = 1 << 6  # accessed
D: Final = 1 << 7  # dirty
RSW0: Final = 1 << 8  # reserved for supervisor software, bit 0 of the 2-bit RSW field
RSW1: Final = 1 << 9  # reserved for supervisor software, bit 1
RSW: Final = RSW0 | RSW1
#: R, W or X set: a leaf; all three clear (with V=1): a pointer to the next table.
LEAF: Final = R | W | X

# -- PPN and the upper bits ------------------------------------------------------------------
PPN_SHIFT: Final = 10
PPN_BITS: Final = 44  # PPN[2] 26 bits + PPN[1] 9 + PPN[0] 9 (Sv39); Sv48 splits it 17/9/9/9
PPN_MASK: Final = ((1 << PPN_BITS) - 1) << PPN_SHIFT  # bits 53:10
PA_BITS: Final = PAGE_SHIFT + PPN_BITS  # 56-bit physical addresses
RESERVED: Final = ((1 << 7) - 1) << 54  # bits 60:54, reserved for future standard use
PBMT_SHIFT: Final = 61
PBMT: Final = 3 << PBMT_SHIFT  # Svpbmt page-based memory type, bits 62:61
PBMT_NC: Final = 1 << PBMT_SHIFT  # 1: non-cacheable, idempotent main memory
PBMT_IO: Final = 2 << PBMT_SHIFT  # 2: non-cacheable, non-idempotent I/O; 3 is reserved
N: Final = 1 << 63  # Svnapot: naturally aligned power-of-two contiguous range (64 KiB)
#: Bits a non-leaf PTE must keep clear (D, A, U and, with the extensions, N and PBMT).
NONLEAF_RESERVED: Final = D | A | U | N | PBMT

# -- satp (RV64) -----------------------------------------------------------------------------
SATP_MODE_SHIFT: Final = 60  # MODE in bits 63:60
SATP_ASID_SHIFT: Final = 44  # ASID in bits 59:44
SATP_PPN: Final = (1 << 44) - 1  # PPN of the root table in bits 43:0
SATP_MODE_SV39: Final = 8
SATP_MODE_SV48: Final = 9

#: Leaf size per level index i of the spec (level 0 = 4 KiB page, 1 = megapage, ...).
SHIFT_4K: Final = 12
SHIFT_2M: Final = 21  # megapage
SHIFT_1G: Final = 30  # gigapage
SHIFT_512G: Final = 39  # terapage (Sv48 only)


def low_mask(shift: int) -> int:
    """``(1 << shift) - 1``."""
    return (1 << shift) - 1
