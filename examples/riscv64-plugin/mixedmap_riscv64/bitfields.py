"""Named bits and fields of RV64 entries under Linux 6.18 (decode, encode, layout diagram).

Aliases that only mean something in a particular kind of entry are listed as their own
software names on top of the hardware bit they reuse, with a doc saying when they apply
(``PROT_NONE`` on G). The swap-only ``_PAGE_SWP_EXCLUSIVE`` (on A) is left out: naming it
would make every present PTE decode as if it were set.
"""

from __future__ import annotations

from mixedmap import BitField

from mixedmap_riscv64 import hw, linux


def _hw(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="hw")


def _sw(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="sw")


def _field(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="field")


def _by_bit(fields: list[BitField]) -> tuple[BitField, ...]:
    """Lowest bit first; at a shared bit the hardware name stays ahead of its alias."""
    return tuple(sorted(fields, key=lambda f: f.shift))


def _low_bits() -> list[BitField]:
    """Bits 7:0, the same in every entry of every level."""
    return [
        _hw("PRESENT", linux.PRESENT, "V: valid; when clear the hart ignores every other bit"),
        _hw("READ", linux.READ, "R: readable (R=W=X=0 with V=1 points to the next table)"),
        _hw("WRITE", linux.WRITE, "W: writable (W without R is a reserved encoding)"),
        _hw("EXEC", linux.EXEC, "X: executable"),
        _hw("USER", linux.USER, "U: accessible in U-mode (S-mode only with sstatus.SUM)"),
        _hw("GLOBAL", linux.GLOBAL, "G: global mapping, present in every address space"),
        _sw(
            "PROT_NONE",
            linux.PROT_NONE,
            "_PAGE_PROT_NONE (V=0 only): alias of G; PROT_NONE entry, pte_present() true",
        ),
        _hw("ACCESSED", linux.ACCESSED, "A: accessed (set by the hart with Svadu, else a fault)"),
        _hw("DIRTY", linux.DIRTY, "D: dirty (set by the hart on a store with Svadu, else a fault)"),
    ]


def _high_bits(ppn_doc: str) -> list[BitField]:
    """Bits 63:54 and the PPN field, with the Svpbmt/Svnapot names Linux 6.18 defines."""
    return [
        _field("PFN", linux.PFN_MASK, ppn_doc),
        _field("RSV", hw.RESERVED, "bits 60:54, reserved for future standard use (must be 0)"),
        _field("PBMT", linux.MTMASK, "Svpbmt memory type: 0 PMA, 1 NC, 2 IO, 3 reserved (_PAGE_MTMASK)"),
        _hw(
            "NOCACHE",
            linux.NOCACHE,
            "_PAGE_NOCACHE: PBMT=1, non-cacheable idempotent memory (pgprot_writecombine)",
        ),
        _hw("IO", linux.IO, "_PAGE_IO: PBMT=2, non-cacheable strongly-ordered I/O (pgprot_noncached)"),
        _hw("NAPOT", linux.NAPOT, "N: Svnapot 64 KiB contiguous range; PPN[3:0]=1000 names its size"),
    ]


def pte_bits() -> tuple[BitField, ...]:
    """Every named bit and field of a 4 KiB leaf PTE (level 0)."""
    out = _low_bits()
    out += [
        _sw("SPECIAL", linux.SPECIAL, "_PAGE_SPECIAL (RSW bit 0): pte_special(), no refcounted struct page"),
        _sw("RSW1", hw.RSW1, "RSW bit 1 (_PAGE_SOFT = 3 << 8): free in 6.18 (_PAGE_DEVMAP until 6.17)"),
    ]
    out += _high_bits("PPN, bits 53:10: page frame number (pte_pfn; with N=1 its lowest set bit is the size)")
    return _by_bit(out)


def table_bits(level_name: str, leaf_size: str) -> tuple[BitField, ...]:
    """Bits of an upper-level entry: a table pointer (V=1, R=W=X=0) or a ``leaf_size`` leaf."""
    out = _low_bits()
    out += [
        _sw("SPECIAL", linux.SPECIAL, f"_PAGE_SPECIAL on a {leaf_size} leaf ({level_name}_special())"),
        _sw("RSW1", hw.RSW1, "RSW bit 1: free for supervisor software"),
    ]
    out += _high_bits(
        f"PPN, bits 53:10: next table's frame, or the {leaf_size} leaf's frame "
        "(its low PPN fields must be 0: a misaligned superpage faults)"
    )
    return _by_bit(out)
