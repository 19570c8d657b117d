"""Every named bit of every entry kind, per kernel era, for decode/encode and the diagrams.

Linux names are used where the kernel of that era defines one; hardware bits it leaves
unnamed carry their Principles-of-Operation names.
"""

from __future__ import annotations

from collections.abc import Mapping

from mixedmap import BitField
from mixedmap_s390 import hw, linux26, linux618


def _f(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="field")


def _hw(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="hw")


def _sw(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="sw")


PFRA = _f("PFRA", hw.PTE_PFRA, "page-frame real address, IBM bits 0-51 (pfn << 12)")

PTE_BITS_26: tuple[BitField, ...] = (
    PFRA,
    _hw("PTE_BIT52", hw.PTE_ZERO, "IBM bit 52: must be zero, else translation-specification exception"),
    _hw("_PAGE_INVALID", linux26._PAGE_INVALID, "I page-invalid (IBM bit 53); with t clear: pte_none"),
    _hw("_PAGE_RO", linux26._PAGE_RO, "P page-protection (IBM bit 54): stores forbidden, pte_write = !P"),
    _hw("PTE_BIT55", hw.PTE_IEP, "IBM bit 55: zero under Linux 2.6.27 (later machines: IEP)"),
    _sw("_PAGE_SPECIAL", linux26._PAGE_SPECIAL, "pte_special: no refcounted struct page behind it"),
    _sw("_PAGE_SWX", linux26._PAGE_SWX, "type bit x: executable (noexec shadow tables); FILE: offset bit"),
    _sw(
        "_PAGE_SWT",
        linux26._PAGE_SWT,
        "type bit t: with I set marks NONE (0x401), SWAP (0x403), FILE (0x601)",
    ),
)

PTE_BITS_618: tuple[BitField, ...] = (
    PFRA,
    _sw("_PAGE_LARGE", linux618._PAGE_LARGE, "software view of a huge pte only (IBM bit 52 must be 0); "
        "_PAGE_SWP_EXCLUSIVE in swap ptes"),
    _hw("_PAGE_INVALID", linux618._PAGE_INVALID, "I page-invalid: set unless YOUNG and READ"),
    _hw("_PAGE_PROTECT", linux618._PAGE_PROTECT, "P page-protection: set unless DIRTY and WRITE"),
    _hw("_PAGE_NOEXEC", linux618._PAGE_NOEXEC, "IEP instruction-execution protection (machine has IEP)"),
    _sw("_PAGE_UNUSED", linux618._PAGE_UNUSED, "page-state hint for KVM (pgste usage state)"),
    _sw("_PAGE_SPECIAL", linux618._PAGE_SPECIAL, "pte_special: no refcounted struct page behind it"),
    _sw("_PAGE_WRITE", linux618._PAGE_WRITE, "logical write permission (pte_write)"),
    _sw("_PAGE_READ", linux618._PAGE_READ, "logical read permission (clear: PROT_NONE)"),
    _sw("_PAGE_DIRTY", linux618._PAGE_DIRTY, "dirty (pte_dirty)"),
    _sw("_PAGE_YOUNG", linux618._PAGE_YOUNG, "referenced (pte_young)"),
    _sw("_PAGE_SOFT_DIRTY", linux618._PAGE_SOFT_DIRTY, "soft-dirty (CONFIG_MEM_SOFT_DIRTY)"),
    _sw("_PAGE_PRESENT", linux618._PAGE_PRESENT, "Linux present (pte_present)"),
)  # fmt: skip


def _region_26(shift: int) -> tuple[BitField, ...]:
    tail: tuple[BitField, ...] = ()
    if shift == hw.REGION3_SHIFT:
        tail = (_hw("FC", hw.REGION3_FC, "format control: EDAT-2 2 GiB frame (unused by 2.6.27)"),)
    return (
        _f("_REGION_ENTRY_ORIGIN", hw.REGION_ORIGIN, "origin of the next-lower table (4 KiB aligned)"),
        *tail,
        _hw("P", hw.REGION_P, "DAT protection for the region (EDAT-1)"),
        _f("TF", hw.REGION_TF, "table offset of the next-lower table (Linux: 0)"),
        _hw("_REGION_ENTRY_INV", hw.REGION_I, "region invalid (pgd_none/pud_none)"),
        _f("_REGION_ENTRY_TYPE_MASK", hw.REGION_TT, "table type: 11 R1, 10 R2, 01 R3"),
        _f("_REGION_ENTRY_LENGTH", hw.REGION_TL, "length of the next-lower table (Linux: 3)"),
    )


def _region_618(shift: int) -> tuple[BitField, ...]:
    mid: tuple[BitField, ...] = ()
    tail: tuple[BitField, ...] = ()
    if shift == hw.REGION3_SHIFT:
        mid = (
            _hw("_REGION3_ENTRY_LARGE", hw.REGION3_FC, "format control: EDAT-2 2 GiB frame (not modelled)"),
        )
        tail = (_hw("_REGION3_ENTRY_COMM", hw.REGION_CR, "common region; marks a region-third swap entry"),)
    return (
        _f("_REGION_ENTRY_ORIGIN", hw.REGION_ORIGIN, "origin of the next-lower table (4 KiB aligned)"),
        *mid,
        _hw("_REGION_ENTRY_PROTECT", hw.REGION_P, "DAT protection for the region"),
        _hw("_REGION_ENTRY_NOEXEC", hw.REGION_IEP, "IEP (region-third large entries)"),
        _f("_REGION_ENTRY_OFFSET", hw.REGION_TF, "table offset of the next-lower table (Linux: 0)"),
        _hw("_REGION_ENTRY_INVALID", hw.REGION_I, "region invalid"),
        *tail,
        _f("_REGION_ENTRY_TYPE_MASK", hw.REGION_TT, "table type: 11 R1, 10 R2, 01 R3"),
        _f("_REGION_ENTRY_LENGTH", hw.REGION_TL, "length of the next-lower table (Linux: 3; "
           "bit 63 doubles as _REGION3_ENTRY_PRESENT)"),
    )  # fmt: skip


SEGMENT_BITS_26: tuple[BitField, ...] = (
    _f("_SEGMENT_ENTRY_ORIGIN", hw.SEGMENT_ORIGIN, "page-table origin (2 KiB aligned); with LARGE "
       "bits 63:20 are the 1 MiB frame"),
    _hw("_SEGMENT_ENTRY_LARGE", hw.SEGMENT_FC, "format control: 1 MiB frame (EDAT-1)"),
    _hw("_SEGMENT_ENTRY_RO", hw.SEGMENT_P, "DAT protection for the whole segment"),
    _hw("_SEGMENT_ENTRY_CO", hw.SEGMENT_IEP, "change-recording override (large entries, hugetlbfs)"),
    _hw("_SEGMENT_ENTRY_INV", hw.SEGMENT_I, "segment invalid (pmd_none)"),
    _hw("CS", hw.SEGMENT_CS, "common segment (unused by Linux)"),
    _f("TT", hw.SEGMENT_TT, "table type: 00 segment table"),
)  # fmt: skip

SEGMENT_BITS_618: tuple[BitField, ...] = (
    _f("_SEGMENT_ENTRY_ORIGIN", hw.SEGMENT_ORIGIN, "page-table origin (2 KiB aligned); with LARGE "
       "bits 63:20 are the 1 MiB frame and 15:12 WRITE/READ/DIRTY/YOUNG software bits"),
    _hw("_SEGMENT_ENTRY_LARGE", hw.SEGMENT_FC, "format control: 1 MiB frame (EDAT-1)"),
    _hw("_SEGMENT_ENTRY_PROTECT", hw.SEGMENT_P, "DAT protection for the whole segment"),
    _hw("_SEGMENT_ENTRY_NOEXEC", hw.SEGMENT_IEP, "IEP (large entries)"),
    _hw("_SEGMENT_ENTRY_INVALID", hw.SEGMENT_I, "segment invalid"),
    _hw("_SEGMENT_ENTRY_COMM", hw.SEGMENT_CS, "common segment; marks a segment swap entry"),
    _f("_SEGMENT_ENTRY_TYPE_MASK", hw.SEGMENT_TT, "table type: 00 segment table"),
    _sw("_SEGMENT_ENTRY_SOFT_DIRTY", linux618._SEGMENT_ENTRY_SOFT_DIRTY, "soft-dirty (large entries)"),
    _sw("_SEGMENT_ENTRY_PRESENT", linux618._SEGMENT_ENTRY_PRESENT, "Linux present (pmd_present)"),
)  # fmt: skip


def level_bits(era: str, shift: int) -> tuple[BitField, ...]:
    """Named bits of a region or segment entry at ``shift`` for ``era`` ("2.6" or "6.18")."""
    if shift == hw.SEGMENT_SHIFT:
        return SEGMENT_BITS_26 if era == "2.6" else SEGMENT_BITS_618
    return _region_26(shift) if era == "2.6" else _region_618(shift)


PTE_BITS: Mapping[str, tuple[BitField, ...]] = {"2.6": PTE_BITS_26, "6.18": PTE_BITS_618}
