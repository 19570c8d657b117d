"""``toyarch``: a clearly fictional arch for exercising the core's fallback paths.

Three levels of 512 little-endian 8-byte entries (39-bit VAs), x86-like bits, and by default
no special bit, so the scheme-B paths (pfn_valid / linearity decide) always run in the
core's own tests whatever real arches are installed. ``ToyPlugin(special=True)`` gives the
scheme-A variant. Not a real architecture; nothing here models hardware.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from mixedmap import bits
from mixedmap.arch import (
    ENTRY_LEAF,
    ENTRY_NONE,
    ENTRY_TABLE,
    ArchMode,
    ArchSpec,
    BitField,
    Capabilities,
    Level,
    MemoryModel,
    PageTableFormat,
    PteOps,
    Support,
)
from mixedmap.bits import Value
from mixedmap.plugin import API_VERSION, hookimpl

P, W, U, A, D, PS, PROTNONE, SPECIAL = 0x1, 0x2, 0x4, 0x20, 0x40, 0x80, 0x100, 0x200
PFN_MASK = 0x000000FFFFFFF000
TABLE = P | W | U | A | D

_BITS = (
    BitField(name="P", mask=P, doc="present"),
    BitField(name="W", mask=W, doc="writable"),
    BitField(name="U", mask=U, doc="user"),
    BitField(name="A", mask=A, doc="accessed"),
    BitField(name="D", mask=D, doc="dirty"),
    BitField(
        name="PROTNONE", mask=PROTNONE, doc="PROT_NONE marker (present to Linux, not to the MMU)", kind="sw"
    ),
    BitField(name="PFN", mask=PFN_MASK, doc="page frame number", kind="field"),
)


def _prot_map() -> tuple[int, ...]:
    out = []
    for idx in range(16):
        r, w, x, s = idx & 1, idx & 2, idx & 4, idx & 8
        v = PROTNONE | A if not (r or w or x) else P | U | A
        if w and s:
            v |= W
        out.append(v)
    return tuple(out)


class ToyOps(PteOps):
    """Plain AND/OR helpers; the point is the core's generic machinery, not the bits."""

    def __init__(self, fmt: PageTableFormat) -> None:
        self.fmt = fmt

    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        return ((pfn << 12) & PFN_MASK) | prot

    def pte_pfn(self, pte: Value) -> Value:
        return (pte & PFN_MASK) >> 12

    def pte_present(self, pte: Value) -> Value:
        return (pte & (P | PROTNONE)) != 0

    def pte_none(self, pte: Value) -> Value:
        return pte == 0

    def pte_write(self, pte: Value) -> Value:
        return (pte & W) != 0

    def pte_mkwrite(self, pte: Value) -> Value:
        return pte | W

    def pte_wrprotect(self, pte: Value) -> Value:
        return bits.clear(pte, W)

    def pte_dirty(self, pte: Value) -> Value:
        return (pte & D) != 0

    def pte_mkdirty(self, pte: Value) -> Value:
        return pte | D

    def pte_mkclean(self, pte: Value) -> Value:
        return bits.clear(pte, D)

    def pte_young(self, pte: Value) -> Value:
        return (pte & A) != 0

    def pte_mkyoung(self, pte: Value) -> Value:
        return pte | A

    def pte_mkold(self, pte: Value) -> Value:
        return bits.clear(pte, A)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        keep = PFN_MASK | A | D | (self.fmt.special_mask or 0)
        return (pte & keep) | prot

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        return ((swp_type & 0x1F) << 1) | ((offset << 12) & PFN_MASK)

    def empty_entry(self, i: int) -> int:
        return 0

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        return table_pa | TABLE

    def entry_kind(self, i: int, entry: Value) -> Value:
        present = (entry & P) != 0
        leaf = bits.select((entry & PS) != 0, ENTRY_LEAF, ENTRY_TABLE)
        return bits.select(present, leaf, ENTRY_NONE)

    def table_pa(self, i: int, entry: Value) -> Value:
        return entry & PFN_MASK

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        return ((pfn << 12) & PFN_MASK) | prot | PS

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        return (entry & PFN_MASK) >> 12

    def root_value(self, root_pa: int) -> int:
        return root_pa

    def root_table_pa(self, root: int) -> int:
        return root & PFN_MASK


def make_spec(name: str = "toyarch", special: bool = False) -> ArchSpec:
    """The toy ArchSpec; ``special=True`` adds a special bit (bit 9) in every profile."""
    modes = []
    for profile in ("2.6.26", "2.6.27", "6.18"):
        fmt = PageTableFormat(
            arch=name,
            mode="3level",
            profile=profile,
            levels=(
                Level(name="pgd", hw_name="L3", shift=30, index_bits=9, table_bytes=4096, alloc_bytes=4096, align=4096),
                Level(name="pmd", hw_name="L2", shift=21, index_bits=9, table_bytes=4096, alloc_bytes=4096, align=4096, leaf_ok=True),
                Level(name="pte", hw_name="L1", shift=12, index_bits=9, table_bytes=4096, alloc_bytes=4096, align=4096),
            ),
            page_shift=12,
            byteorder="little",
            va_bits=39,
            va_rule="zero",
            pa_bits=40,
            pfn_mask=PFN_MASK,
            pfn_shift=12,
            special_mask=SPECIAL if special else None,
            pte_bits=_BITS + ((BitField(name="SPECIAL", mask=SPECIAL, doc="special", kind="sw"),) if special else ()),
            protection_map=_prot_map(),
            protections=(("PAGE_NONE", PROTNONE | A), ("PAGE_SHARED", P | U | A | W), ("PAGE_READONLY", P | U | A)),
            root_name="ROOT",
            source="fictional",
        )  # fmt: skip
        modes.append(
            ArchMode(
                name="3level",
                profile=profile,
                fmt=fmt,
                ops=ToyOps(fmt),
                memory=MemoryModel(section_size_bits=27, max_physmem_bits=40),
                default=True,
                description="fictional 3-level arch",
            )
        )
    caps = Capabilities(pte_special=Support.YES if special else Support.NO)
    return ArchSpec(
        name=name, api_version=API_VERSION, description="fictional test arch", modes=tuple(modes), caps=caps
    )


class ToyPlugin:
    """Register an instance: ``ArchRegistry.load(extra=[("toyarch", ToyPlugin())])``."""

    special = False

    def __init__(self, name: str = "toyarch") -> None:
        self._spec = make_spec(name, self.special)

    @hookimpl
    def mixedmap_arch_spec(self) -> ArchSpec:
        return self._spec


class ToySpecialPlugin(ToyPlugin):
    """The scheme-A variant: implements the special hooks (bit 9)."""

    special = True

    @hookimpl
    def mixedmap_pte_special(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        special: NDArray[np.bool_] = (ptes & np.uint64(fmt.special_mask or 0)) != 0
        return special

    @hookimpl
    def mixedmap_pte_mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        return ptes | np.uint64(fmt.special_mask or 0)
