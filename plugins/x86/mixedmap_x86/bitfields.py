"""Named bits and fields of x86-64 entries per kernel profile (decode/encode, layout diagram).

Aliases that only mean something in a non-present entry (``_PAGE_PROTNONE``, 2.6.x
``_PAGE_FILE``) are listed as their own software fields on top of the hardware bit they
reuse; their doc says when they apply. The 6.18 swap-entry flags (``_PAGE_SWP_SOFT_DIRTY``
bit 1, ``_PAGE_SWP_UFFD_WP`` bit 2, ``_PAGE_SWP_EXCLUSIVE`` bit 3) are left out: they
exist only inside a swap entry, and naming them would make every present PTE decode as if
they were set.
"""

from __future__ import annotations

from mixedmap import BitField
from mixedmap_x86 import hw
from mixedmap_x86.kernels import L618, KernelDefs


def _hw(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="hw")


def _sw(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="sw")


def _field(name: str, mask: int, doc: str) -> BitField:
    return BitField(name=name, mask=mask, doc=doc, kind="field")


def _by_bit(fields: list[BitField]) -> tuple[BitField, ...]:
    """Order by lowest bit; at a shared bit the hardware name stays ahead of its alias."""
    return tuple(sorted(fields, key=lambda f: f.shift))


def _common_low(leaf: bool) -> list[BitField]:
    """Bits 0..5, the same in every entry of every level."""
    return [
        _hw("PRESENT", hw.P, "P: present; when clear the CPU ignores every other bit"),
        _hw("RW", hw.RW, "R/W: writable (needed at every level of the walk for a write)"),
        _hw("USER", hw.US, "U/S: user-mode access allowed (needed at every level)"),
        _hw("PWT", hw.PWT, "PWT: page-level write-through (PAT index bit 0)"),
        _hw("PCD", hw.PCD, "PCD: page-level cache disable (PAT index bit 1)"),
        _hw("ACCESSED", hw.A, "A: set by the CPU when the entry is used" + ("" if leaf else " for a walk")),
    ]


def pte_bits(k: KernelDefs) -> tuple[BitField, ...]:
    """Every named bit and field of a 4 KiB PTE under kernel ``k``."""
    modern = k is L618
    out = _common_low(leaf=True)
    out.append(_hw("DIRTY", hw.D, "D: set by the CPU on the first write through this PTE"))
    if not modern:
        out.append(
            _sw("FILE", hw.D, "_PAGE_FILE (P=0 only): nonlinear file PTE holding a pgoff; clear: swap entry")
        )
    out.append(_hw("PAT", hw.PAT, "PAT: page-attribute index bit 2 of a 4 KiB PTE (_PAGE_PSE in a pmd/pud)"))
    if not modern:
        out.append(
            _sw(
                "PROTNONE",
                hw.PS,
                "_PAGE_PROTNONE (P=0 only): alias of PSE; PROT_NONE entry, pte_present() true",
            )
        )
    out.append(_hw("GLOBAL", hw.G, "G: global TLB entry (CR4.PGE), survives CR3 reloads"))
    if modern:
        out += [
            _sw(
                "PROTNONE",
                hw.G,
                "_PAGE_PROTNONE (P=0 only): alias of G; PROT_NONE entry, PFN stored inverted",
            ),
            _sw(
                "SPECIAL",
                1 << 9,
                "_PAGE_SPECIAL (SOFTW1): pte_special(), no refcounted struct page; also _PAGE_CPA_TEST",
            ),
            _sw("UFFD_WP", 1 << 10, "_PAGE_UFFD_WP (SOFTW2): userfaultfd write-protected"),
            _sw(
                "SOFT_DIRTY",
                1 << 11,
                "_PAGE_SOFT_DIRTY (SOFTW3): soft-dirty tracking; _PAGE_KERNEL_4K on kernel PTEs",
            ),
            _field(
                "PFN",
                k.pte_pfn_mask,
                "PTE_PFN_MASK bits 51:12: page frame number (inverted when P=0 and non-zero)",
            ),
            _sw("SOFTW4", 1 << 57, "_PAGE_SOFTW4: free software bit (was _PAGE_DEVMAP in 6.13)"),
            _sw(
                "SAVED_DIRTY",
                1 << 58,
                "_PAGE_SAVED_DIRTY (SOFTW5): holds D of a write-protected PTE (never W=0,D=1)",
            ),
            _field("PKEY", hw.PKEY, "_PAGE_PKEY_BIT0..3: memory protection key (CR4.PKE)"),
        ]
    else:
        special = k.special is not None
        out += [
            _sw(
                "SPECIAL" if special else "UNUSED1",
                1 << 9,
                "_PAGE_SPECIAL (= _PAGE_BIT_UNUSED1): pte_special(), no refcounted struct page"
                if special
                else "_PAGE_BIT_UNUSED1: free software bit (2.6.27 makes it _PAGE_SPECIAL)",
            ),
            _sw("UNUSED2", 1 << 10, "_PAGE_BIT_UNUSED2: free software bit"),
            _sw("UNUSED3", 1 << 11, "_PAGE_BIT_UNUSED3: free software bit"),
            _field(
                "PFN", k.pte_pfn_mask, "PTE_MASK bits 45:12 (__PHYSICAL_MASK_SHIFT 46): page frame number"
            ),
        ]
    out.append(_hw("NX", hw.NX, "XD: execute-disable (EFER.NXE)"))
    return _by_bit(out)


def table_bits(k: KernelDefs, *, leaf_ok: bool, entry_name: str) -> tuple[BitField, ...]:
    """Bits of an upper-level entry (PML5E/PML4E, or PDPTE/PDE which may map 1 GiB/2 MiB)."""
    out = _common_low(leaf=leaf_ok)
    if leaf_ok:
        out += [
            _hw("DIRTY", hw.D, "D: dirty (only when PS=1, i.e. a leaf)"),
            _hw("PSE", hw.PS, "PS: 1 = this entry maps a large page (leaf), 0 = points to a table"),
            _hw("GLOBAL", hw.G, "G: global (only when PS=1)"),
            _hw("PAT_LARGE", hw.PAT_LARGE, "PAT: page-attribute index bit 2 of a large leaf (PS=1)"),
        ]
        if k is L618:
            out += [
                _sw("SPECIAL", 1 << 9, "_PAGE_SPECIAL on a huge leaf: pmd_special()/pud_special()"),
                _sw("UFFD_WP", 1 << 10, "_PAGE_UFFD_WP on a huge leaf"),
                _sw("SOFT_DIRTY", 1 << 11, "_PAGE_SOFT_DIRTY on a huge leaf"),
                _sw("SAVED_DIRTY", 1 << 58, "_PAGE_SAVED_DIRTY on a huge leaf"),
                _field("PKEY", hw.PKEY, "protection key of a huge leaf"),
            ]
    else:
        out.append(_hw("PS", hw.PS, f"reserved (must be 0) in a {entry_name}"))
    addr_doc = "next-table physical address" + (
        "; with PS=1 the frame address (bits below the page size must be 0 apart from PAT)" if leaf_ok else ""
    )
    out.append(_field("ADDR", k.pte_pfn_mask, addr_doc))
    out.append(_hw("NX", hw.NX, "XD: execute-disable for everything below"))
    return _by_bit(out)
