"""Independent RV64 Sv39/Sv48 page walker, written from the RISC-V privileged architecture.

It shares nothing with the mixedmap_riscv64 plugin or mixedmap itself: it reads raw
little-endian PTEs through ``read8`` and applies the manual's "Virtual Address Translation
Process" (Volume II, Sv39/Sv48 and the Svpbmt/Svnapot chapters), so it can check the core's
batched ``translate`` over tables the core built.

Rules applied (LEVELS = 3 for Sv39, 4 for Sv48; PAGESIZE 4096, PTESIZE 8):

* satp (RV64): MODE in bits 63:60 (8 = Sv39, 9 = Sv48), ASID 59:44, PPN 43:0. The root
  table is at satp.PPN x PAGESIZE.
* The VA must be canonical: bits 63..VABITS-1 all equal bit VABITS-1 (VABITS 39 or 48),
  otherwise a page fault.
* Step 2: with i = LEVELS-1 first, read the PTE at a + VPN[i] x 8, VPN[i] = VA bits
  12+9i+8 .. 12+9i.
* Step 3: page fault if V=0, if R=0 and W=1, or if a reserved bit or encoding is set:
  bits 60:54; N (bit 63) without Svnapot; PBMT (62:61) without Svpbmt, or PBMT=3.
* Step 4: R=X=0 (so W=0 too) is a pointer to the next table: its D, A, U, N and PBMT bits
  are reserved (page fault when set); i := i-1, page fault when i < 0; a := PTE.PPN x 4096.
* Step 5 (only with ``access``): R/W/X/U decide; a U=1 page is for U-mode (S-mode only
  with sstatus.SUM, never for fetches), a U=0 page for S-mode only. SUM=0 and MXR=0 here
  unless ``sum_`` is given.
* Step 6: a leaf at i > 0 whose PPN[i-1:0] is not 0 is a misaligned superpage: page fault.
* Step 7 (only with ``access``, Svade behaviour): A=0, or a store with D=0, faults.
* Svnapot: N=1 is only defined on a level-0 leaf with PPN[0][3:0] = 1000 (a 64 KiB range);
  any other N=1 encoding is reserved (page fault). The PA then takes VPN[0][3:0] from the VA.
* Step 8: PA = PPN with its low i x 9 bits taken from the VA (superpages) | page offset.
"""

from __future__ import annotations

from collections.abc import Callable

_PAGE_SHIFT = 12
_IDX_BITS = 9
_V, _R, _W, _X, _U, _G, _A, _D = (1 << b for b in range(8))
_PPN_SHIFT = 10
_PPN_MASK = ((1 << 44) - 1) << _PPN_SHIFT
_RESERVED = ((1 << 7) - 1) << 54
_PBMT = 3 << 61
_N = 1 << 63
_SATP_PPN = (1 << 44) - 1
_MODES = {8: 3, 9: 4}  # satp.MODE -> LEVELS
_MODE_NAMES = {"sv39": 3, "sv48": 4}
_NAPOT_64K_BITS = 4


def is_canonical(va: int, va_bits: int) -> bool:
    """Bits 63..va_bits-1 are all zero or all one."""
    top = va >> (va_bits - 1)
    return top in (0, (1 << (65 - va_bits)) - 1)


def _levels_for(root: int, levels: int | None, mode: str | None) -> int:
    satp_mode = root >> 60
    if satp_mode not in _MODES:
        raise ValueError(f"satp {root:#x}: MODE {satp_mode} is not Sv39 (8) or Sv48 (9)")
    from_satp = _MODES[satp_mode]
    asked = levels if levels is not None else (_MODE_NAMES[mode] if mode is not None else from_satp)
    if asked != from_satp:
        raise ValueError(f"satp {root:#x} selects {from_satp} levels, caller asked for {asked}")
    return from_satp


def _allowed(pte: int, access: str, user: bool, sum_: bool) -> bool:
    """Step 5: the R/W/X/U check for one access type ("r", "w" or "x")."""
    if pte & _U:
        if not user and (access == "x" or not sum_):
            return False
    elif user:
        return False
    need = {"r": _R, "w": _W, "x": _X}[access]
    return bool(pte & need)


def walk(
    read8: Callable[[int], bytes],
    root: int,
    va: int,
    *,
    levels: int | None = None,
    mode: str | None = None,
    svnapot: bool = True,
    svpbmt: bool = True,
    access: str | None = None,
    user: bool = True,
    sum_: bool = False,
) -> tuple[int, int] | None:
    """Translate ``va`` through the tables rooted at satp value ``root``.

    ``levels`` (3 or 4) or ``mode`` ("sv39"/"sv48") must agree with satp.MODE when given.
    Without ``access`` no permission or A/D check is made (the translation a debugger
    would compute); with "r", "w" or "x" the access is checked as a hart with Svade would.
    Returns ``(physical address, page size)`` or None when the access page-faults.
    """
    nlevels = _levels_for(root, levels, mode)
    if not 0 <= va < 1 << 64:
        raise ValueError(f"virtual address {va:#x} is not a 64-bit value")
    va_bits = _PAGE_SHIFT + _IDX_BITS * nlevels
    if not is_canonical(va, va_bits):
        return None
    a = (root & _SATP_PPN) << _PAGE_SHIFT
    i = nlevels - 1
    while True:
        vpn_i = (va >> (_PAGE_SHIFT + _IDX_BITS * i)) & ((1 << _IDX_BITS) - 1)
        raw = read8(a + vpn_i * 8)
        if len(raw) != 8:
            raise ValueError(f"read8({a + vpn_i * 8:#x}) returned {len(raw)} bytes")
        pte = int.from_bytes(raw, "little")
        if not pte & _V or (not pte & _R and pte & _W):
            return None
        if pte & _RESERVED or (pte & _N and not svnapot):
            return None
        pbmt = (pte & _PBMT) >> 61
        if (pbmt and not svpbmt) or pbmt == 3:
            return None
        ppn = (pte & _PPN_MASK) >> _PPN_SHIFT
        if not pte & (_R | _X):  # pointer to the next level
            if pte & (_D | _A | _U | _N | _PBMT):
                return None
            i -= 1
            if i < 0:
                return None
            a = ppn << _PAGE_SHIFT
            continue
        break
    if access is not None:
        if not _allowed(pte, access, user, sum_):
            return None
        if not pte & _A or (access == "w" and not pte & _D):
            return None
    low_bits = _IDX_BITS * i
    if ppn & ((1 << low_bits) - 1):
        return None  # misaligned superpage
    if pte & _N:
        if i != 0 or ppn & ((1 << _NAPOT_64K_BITS) - 1) != 1 << (_NAPOT_64K_BITS - 1):
            return None  # reserved NAPOT encoding
        low_bits = _NAPOT_64K_BITS
        ppn &= ~((1 << low_bits) - 1)
    size_shift = _PAGE_SHIFT + low_bits
    va_low = va & ((1 << size_shift) - 1)
    return (ppn << _PAGE_SHIFT) | va_low, 1 << size_shift
