"""From a 6.18 Linux PTE to the second doubleword of a hashed page table entry (HPTE).

Under hash the MMU never reads the Linux PTE: ``hash_page`` builds an HPTE from it with
``htab_convert_pte_flags`` (L618 ``arch/powerpc/mm/book3s64/hash_utils.c``). Two rules make
the Linux ACCESSED/DIRTY bits work without hardware R/C updates: R is always set, and a clean
writable user page is entered read-only (PP 0b11) so the first store faults and sets DIRTY.
Modelled without protection keys and without ``MMU_FTR_KERNEL_RO``.
"""

from __future__ import annotations

from typing import Final

from mixedmap import bits
from mixedmap.bits import Value
from mixedmap_powerpc.pte618 import (
    CACHE_CTL,
    DIRTY,
    EXEC,
    NON_IDEMPOTENT,
    PRIVILEGED,
    RWX,
    SAO,
    TOLERANT,
    WRITE,
    rpn_mask,
)

# HPTE doubleword 1 ("R") bits (L618 book3s/64/mmu-hash.h; QEMU mmu-hash64.h).
HPTE_R_PP0: Final = 0x8000_0000_0000_0000
HPTE_R_R: Final = 0x100
HPTE_R_C: Final = 0x80
HPTE_R_W: Final = 0x40
HPTE_R_I: Final = 0x20
HPTE_R_M: Final = 0x10
HPTE_R_G: Final = 0x08
HPTE_R_N: Final = 0x04
HPTE_R_PP: Final = 0x03


def htab_convert_pte_flags(pteflags: Value) -> Value:
    """``htab_convert_pte_flags(pteflags, 0)``: N, PP, R, C and WIMG for a Linux PTE.

    Kernel (PRIVILEGED) pages: PP 0b00 when writable, 0b11 when read-only. User pages: PP 0b10
    when any of R/W/X, plus 0b01 unless WRITE and DIRTY are both set.
    """
    n = bits.select((pteflags & EXEC) == 0, HPTE_R_N, 0)
    kernel_pp = bits.select((pteflags & WRITE) == 0, 0x3, 0)
    user_pp = bits.select((pteflags & RWX) != 0, 0x2, 0) | bits.select(
        (pteflags & (WRITE | DIRTY)) == (WRITE | DIRTY), 0, 0x1
    )
    pp = bits.select((pteflags & PRIVILEGED) != 0, kernel_pp, user_pp)
    c = bits.select((pteflags & DIRTY) != 0, HPTE_R_C, 0)
    att = pteflags & CACHE_CTL
    wimg = bits.select(
        att == TOLERANT,
        HPTE_R_I,
        bits.select(
            att == NON_IDEMPOTENT,
            HPTE_R_I | HPTE_R_G,
            bits.select(att == SAO, HPTE_R_W | HPTE_R_I | HPTE_R_M, HPTE_R_M),
        ),
    )
    return n | pp | HPTE_R_R | c | wimg


def hpte_dword1_4k(pte: Value) -> Value:
    """HPTE doubleword 1 for a 4 KiB page: ``(pa & RPN) | htab_convert_pte_flags(pte)``."""
    return (pte & rpn_mask(12)) | htab_convert_pte_flags(pte)
