"""z/Architecture dynamic address translation: what the hardware defines, no Linux policy.

Bit numbering: IBM manuals count bit 0 as the most significant bit of a doubleword; every
mask here is a plain integer (IBM bit *k* is ``1 << (63 - k)``). Sources: IBM z/Architecture
Principles of Operation (SA22-7832), chapter 3 "Dynamic Address Translation" and
"Translation Tables"; QEMU ``target/s390x/mmu_helper.c`` (``mmu_translate_asce``); Linux
``arch/s390/include/asm/pgtable.h`` for the ``_ASCE_*``/``_REGION_*``/``_SEGMENT_*`` names.
"""

from __future__ import annotations

from typing import Final

PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT

# -- virtual-address split (RFX 63:53, RSX 52:42, RTX 41:31, SX 30:20, PX 19:12) ----------
REGION1_SHIFT: Final = 53
REGION2_SHIFT: Final = 42
REGION3_SHIFT: Final = 31
SEGMENT_SHIFT: Final = 20
CRST_INDEX_BITS: Final = 11  # region and segment tables: 2048 entries
PAGE_INDEX_BITS: Final = 8  # page tables: 256 entries

ENTRY_SIZE: Final = 8
CRST_ENTRIES: Final = 1 << CRST_INDEX_BITS
PAGE_ENTRIES: Final = 1 << PAGE_INDEX_BITS
CRST_TABLE_SIZE: Final = CRST_ENTRIES * ENTRY_SIZE  # 16 KiB ("_CRST_TABLE_SIZE")
PAGE_TABLE_SIZE: Final = PAGE_ENTRIES * ENTRY_SIZE  # 2 KiB ("_PAGE_TABLE_SIZE")
#: The hardware needs region/segment tables on 4 KiB boundaries (the origin fields end
#: at IBM bit 51); Linux allocates them as order-2 pages, hence 16 KiB aligned.
CRST_HW_ALIGN: Final = 4096
#: Page-table origins end at IBM bit 52: 2 KiB alignment.
PAGE_TABLE_HW_ALIGN: Final = 2048

# -- address-space-control element (ASCE) ---------------------------------------------------
ASCE_ORIGIN: Final = 0xFFFF_FFFF_FFFF_F000  # bits 0-51: table origin
ASCE_SUBSPACE_GROUP: Final = 0x200  # bit 54 G
ASCE_PRIVATE_SPACE: Final = 0x100  # bit 55 P
ASCE_ALT_EVENT: Final = 0x080  # bit 56 S storage-alteration event
ASCE_SPACE_SWITCH: Final = 0x040  # bit 57 X space-switch event
ASCE_REAL_SPACE: Final = 0x020  # bit 58 R: no translation
ASCE_TYPE_MASK: Final = 0x00C  # bits 60-61 DT designation type
ASCE_TABLE_LENGTH: Final = 0x003  # bits 62-63 TL (units of 512 entries; 3 = 2048)

# Designation / table types (the same two-bit code sits in ASCE.DT and entry TT).
TYPE_REGION1: Final = 0x0C
TYPE_REGION2: Final = 0x08
TYPE_REGION3: Final = 0x04
TYPE_SEGMENT: Final = 0x00

# -- region-table entries (R1, R2, R3) -------------------------------------------------------
REGION_ORIGIN: Final = 0xFFFF_FFFF_FFFF_F000  # bits 0-51: next-lower table origin
REGION3_FC: Final = 0x400  # bit 53: R3 format control (EDAT-2 2 GiB frame)
REGION3_RFAA: Final = 0xFFFF_FFFF_8000_0000  # bits 0-32: region-frame absolute address
REGION_P: Final = 0x200  # bit 54: DAT protection (honoured with EDAT-1)
REGION_IEP: Final = 0x100  # bit 55: instruction-execution protection (R3, FC=1)
REGION_TF: Final = 0x0C0  # bits 56-57: table offset of the next-lower table
REGION_I: Final = 0x020  # bit 58: region invalid
REGION_CR: Final = 0x010  # bit 59: common region (R3, FC=1)
REGION_TT: Final = 0x00C  # bits 60-61: table type
REGION_TL: Final = 0x003  # bits 62-63: length of the next-lower table

# -- segment-table entries --------------------------------------------------------------------
SEGMENT_ORIGIN: Final = 0xFFFF_FFFF_FFFF_F800  # bits 0-52: page-table origin (FC=0)
SEGMENT_SFAA: Final = 0xFFFF_FFFF_FFF0_0000  # bits 0-43: segment-frame absolute address (FC=1)
SEGMENT_AV: Final = 0x1_0000  # bit 47: access-control validity (FC=1)
SEGMENT_ACC: Final = 0xF000  # bits 48-51: access-control key (FC=1)
SEGMENT_F: Final = 0x800  # bit 52: fetch protection (FC=1)
SEGMENT_FC: Final = 0x400  # bit 53: format control (EDAT-1 1 MiB frame)
SEGMENT_P: Final = 0x200  # bit 54: DAT protection
SEGMENT_IEP: Final = 0x100  # bit 55: IEP (FC=1); change-recording override in older editions
SEGMENT_I: Final = 0x020  # bit 58: segment invalid
SEGMENT_CS: Final = 0x010  # bit 59: common segment
SEGMENT_TT: Final = 0x00C  # bits 60-61: table type, 00 for a segment table

# -- page-table entries --------------------------------------------------------------------------
PTE_PFRA: Final = 0xFFFF_FFFF_FFFF_F000  # bits 0-51: page-frame real address
PTE_ZERO: Final = 0x800  # bit 52: must be zero (translation-specification exception)
PTE_I: Final = 0x400  # bit 53: page invalid
PTE_P: Final = 0x200  # bit 54: page protection
PTE_IEP: Final = 0x100  # bit 55: instruction-execution protection (IEP facility)
PTE_SW: Final = 0x0FF  # bits 56-63: not used by the hardware

#: Physical address bits a PTE can carry: PFRA is IBM bits 0-51 of a 64-bit absolute
#: address, i.e. every 4 KiB frame below 2**64.
PTE_PA_BITS: Final = 64
