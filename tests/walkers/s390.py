"""Independent z/Architecture DAT walker, written from the Principles of Operation.

It shares nothing with the mixedmap_s390 plugin or mixedmap: it reads raw big-endian table
entries through ``read8`` and applies the architecture's translation rules (IBM z/Architecture
Principles of Operation, chapter 3, "Dynamic Address Translation" and "Translation
Tables"), so it can check the core's ``translate`` over any tables the core built.

IBM numbers bits from the left: bit 0 is the most significant bit of a doubleword, so IBM
bit *k* is ``1 << (63 - k)``. Rules applied:

* ASCE: bits 0-51 table origin, bit 55 P (private space), bit 58 R (real space: the
  address is not translated), bits 60-61 DT (designation type: 11 region-first, 10
  region-second, 01 region-third, 00 segment table), bits 62-63 TL (table length in units
  of 512 entries, i.e. the largest allowed value of the top two bits of the first index).
* Virtual address: RFX bits 0-10, RSX 11-21, RTX 22-32, SX 33-43 (11 bits each), PX 44-51
  (8 bits), BX 52-63. Index fields above the designated table must be zero, otherwise an
  ASCE-type exception: a VA beyond the ASCE's reach is not translatable.
* The first index's top two bits must not exceed the ASCE's TL (region/segment
  translation exception).
* Region-table entry: bits 0-51 next-table origin, bit 58 I (invalid), bits 60-61 TT (must
  name the table the entry was fetched from, else translation-specification exception),
  bits 56-57 TF and 62-63 TL bound the top two bits of the next index (TF <= x <= TL).
  A region-third entry with FC (bit 53) maps a 2 GiB frame only with EDAT-2 (``edat2``).
* Segment-table entry: bit 58 I, bits 60-61 TT = 00, bit 59 CS (common segment) together
  with a private-space ASCE is a translation-specification exception. With EDAT-1
  (``edat1``) bit 53 FC=1 maps a 1 MiB frame at bits 0-43; otherwise bits 0-52 are the
  origin of a 256-entry page table.
* Page-table entry: bits 0-51 frame real address, bit 53 I (invalid), bit 52 must be zero
  (translation-specification exception).
* Protection (P bits, IEP) and storage keys restrict the kind of access, not whether an
  address translates; they are ignored here. Prefixing (real to absolute) is not applied.
"""

from __future__ import annotations

from collections.abc import Callable

_ASCE_ORIGIN = 0xFFFF_FFFF_FFFF_F000  # IBM bits 0-51
_ASCE_P = 1 << (63 - 55)
_ASCE_R = 1 << (63 - 58)
_DT_SHIFT = 63 - 61  # bits 60-61
_TL_MASK = 0b11  # bits 62-63

_ENTRY_I = 1 << (63 - 58)
_ENTRY_CS = 1 << (63 - 59)
_TT_SHIFT = 63 - 61
_REGION_TF_SHIFT = 63 - 57  # bits 56-57
_REGION_ORIGIN = 0xFFFF_FFFF_FFFF_F000  # bits 0-51
_REGION3_FC = 1 << (63 - 53)
_REGION3_RFAA = 0xFFFF_FFFF_8000_0000  # bits 0-32
_SEGMENT_FC = 1 << (63 - 53)
_SEGMENT_ORIGIN = 0xFFFF_FFFF_FFFF_F800  # bits 0-52
_SEGMENT_SFAA = 0xFFFF_FFFF_FFF0_0000  # bits 0-43
_PTE_I = 1 << (63 - 53)
_PTE_ZERO = 1 << (63 - 52)
_PTE_PFRA = 0xFFFF_FFFF_FFFF_F000

# Table types: DT / TT codes.
_R1, _R2, _R3, _SEG = 3, 2, 1, 0
#: Leftmost (LSB-0) bit of each table's 11-bit index in the virtual address.
_INDEX_SHIFT = {_R1: 53, _R2: 42, _R3: 31, _SEG: 20}
_PX_SHIFT = 12
_FRAME_SIZE = {_R3: 1 << 31, _SEG: 1 << 20}


def _index(va: int, table_type: int) -> int:
    return (va >> _INDEX_SHIFT[table_type]) & 0x7FF


def _entry(read8: Callable[[int], bytes], table: int, index: int) -> int:
    raw = read8(table + index * 8)
    if len(raw) != 8:
        raise ValueError(f"read8 returned {len(raw)} bytes")
    return int.from_bytes(raw, "big")


def walk(
    read8: Callable[[int], bytes],
    root: int,
    va: int,
    *,
    edat1: bool = False,
    edat2: bool = False,
    levels: int | None = None,
) -> tuple[int, int] | None:
    """Translate ``va`` through the tables designated by the ASCE ``root``.

    ``edat1`` allows 1 MiB segment frames (FC=1), ``edat2`` 2 GiB region-third frames;
    ``levels`` (2..5), when given, must agree with the ASCE's designation type. Returns
    ``(physical address, frame size)`` or None where the CPU would raise an exception.
    """
    if not 0 <= va < 1 << 64 or not 0 <= root < 1 << 64:
        return None
    if root & _ASCE_R:
        return va, 1 << _PX_SHIFT
    dt = (root >> _DT_SHIFT) & 0b11
    if levels is not None and levels != dt + 2:
        raise ValueError(f"ASCE {root:#x} designates a {dt + 2}-level walk, not {levels}")
    private = bool(root & _ASCE_P)
    # Index fields above the designated table must be zero (ASCE-type exception).
    if dt != _R1 and va >> (_INDEX_SHIFT[dt] + 11):
        return None
    if _index(va, dt) >> 9 > root & _TL_MASK:
        return None
    table = root & _ASCE_ORIGIN
    level = dt
    while level != _SEG:  # region tables
        entry = _entry(read8, table, _index(va, level))
        if entry & _ENTRY_I:
            return None
        if (entry >> _TT_SHIFT) & 0b11 != level:
            return None
        if level == _R3 and edat2 and entry & _REGION3_FC:
            return (entry & _REGION3_RFAA) | (va & (_FRAME_SIZE[_R3] - 1)), _FRAME_SIZE[_R3]
        nxt = level - 1
        top2 = _index(va, nxt) >> 9
        if not (entry >> _REGION_TF_SHIFT) & 0b11 <= top2 <= entry & _TL_MASK:
            return None
        table = entry & _REGION_ORIGIN
        level = nxt
    entry = _entry(read8, table, _index(va, _SEG))
    if entry & _ENTRY_I:
        return None
    if (entry >> _TT_SHIFT) & 0b11 != _SEG:
        return None
    if entry & _ENTRY_CS and private:
        return None
    if edat1 and entry & _SEGMENT_FC:
        return (entry & _SEGMENT_SFAA) | (va & (_FRAME_SIZE[_SEG] - 1)), _FRAME_SIZE[_SEG]
    pte = _entry(read8, entry & _SEGMENT_ORIGIN, (va >> _PX_SHIFT) & 0xFF)
    if pte & _PTE_I:
        return None
    if pte & _PTE_ZERO:
        return None
    return (pte & _PTE_PFRA) | (va & ((1 << _PX_SHIFT) - 1)), 1 << _PX_SHIFT
