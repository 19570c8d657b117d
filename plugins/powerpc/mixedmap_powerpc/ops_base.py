"""What every ppc64 Linux tree shares: one set of helpers, fed with each profile's bits.

Between 2.6.27 ``arch/powerpc/include/asm/pgtable-ppc64.h`` and 6.18
``arch/powerpc/include/asm/book3s/64/pgtable.h`` the leaf-PTE flag helpers kept their shape
(``pte_write``/``pte_mkwrite``/``pte_wrprotect``, dirty, young: one AND/OR/ANDNOT each),
``pte_none`` stayed "zero once the ignored bits are dropped", ``pte_modify`` stayed
``(pte & _PAGE_CHG_MASK) | newprot`` and the Linux tree's root stayed the PGD's physical
address. What moved is named by the profile subclasses, each with the release that moved it:

* :mod:`mixedmap_powerpc.hash2627`: the 2.6.26/2.6.27 hash tree (kernel-virtual links, the PFN
  above the HPTE slot bits, no leaves in the Linux tree);
* :mod:`mixedmap_powerpc.pte618`: the 6.18 PTE (the radix layout, from 4.7), with
  :mod:`~mixedmap_powerpc.hash618` and :mod:`~mixedmap_powerpc.radix` for the two trees.

Directory entries are data too: per upper level, what ``p?d_populate`` ORs into the next
table's address, what ``p?d_page_vaddr``/``p?d_pgtable`` masks off, and what ``p?d_bad``
rejects (:class:`DirEntry`). So is ``protection_map``: every profile fills the same
``__P000..__S111`` shape from its named pgprots (:func:`protection_map`).
"""

from __future__ import annotations

from typing import ClassVar, Final, NamedTuple

import numpy as np
from numpy.typing import NDArray

from mixedmap import ENTRY_BAD, ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE, PageTableFormat, PteOps, bits
from mixedmap.bits import Value

#: ``protection_map`` by pgprot name, indexed VM_READ=1 | VM_WRITE=2 | VM_EXEC=4 | VM_SHARED=8:
#: write implies read, a private writable mapping starts as COPY (COW). ``None`` is exec-only.
_PROTECTION_MAP_NAMES: Final = (
    "PAGE_NONE", "PAGE_READONLY", "PAGE_COPY", "PAGE_COPY",
    None, "PAGE_READONLY_X", "PAGE_COPY_X", "PAGE_COPY_X",
    "PAGE_NONE", "PAGE_READONLY", "PAGE_SHARED", "PAGE_SHARED",
    None, "PAGE_READONLY_X", "PAGE_SHARED_X", "PAGE_SHARED_X",
)  # fmt: skip


def protection_map(protections: tuple[tuple[str, int], ...], *, exec_only: str) -> tuple[int, ...]:
    """``__P000..__S111`` from a profile's named pgprots; ``exec_only`` names the exec-only one."""
    prot = dict(protections)
    return tuple(prot[exec_only if name is None else name] for name in _PROTECTION_MAP_NAMES)


class DirEntry(NamedTuple):
    """How one upper level's entries link, decode and fail, as bit masks."""

    #: ``p?d_populate``: ORed into the next table's address.
    link: int
    #: ``p?d_page_vaddr``/``p?d_pgtable`` (with ``__pa``): cleared to get the table back.
    masked: int
    #: ``p?d_bad``: an entry with any of these bits set is bad.
    bad: int = 0
    #: ``p?d_bad``: an entry without all of these bits set is bad.
    required: int = 0


class Ppc64Ops(PteOps):
    """The ppc64 ``PteOps`` every profile shares; subclasses set the class bits below.

    ``none_mask`` is what ``pte_none`` ignores, ``chg_mask`` is ``_PAGE_CHG_MASK`` and
    ``dirs[i]`` describes upper level ``i``'s entries.
    """

    #: The bit ``pte_write`` tests and ``pte_wrprotect`` clears.
    WRITE_BIT: ClassVar[int]
    #: The bits ``pte_mkwrite`` sets.
    MKWRITE_BITS: ClassVar[int]
    #: The bit ``pte_dirty`` tests and ``pte_mkclean`` clears.
    DIRTY_BIT: ClassVar[int]
    #: The bits ``pte_mkdirty`` sets.
    MKDIRTY_BITS: ClassVar[int]
    #: ``_PAGE_ACCESSED``: ``pte_young``/``pte_mkyoung``/``pte_mkold``.
    YOUNG_BIT: ClassVar[int]
    #: The bit that makes a directory entry a leaf where a level allows one (0: never).
    LEAF_BIT: ClassVar[int] = 0

    def __init__(
        self, fmt: PageTableFormat, *, none_mask: int, chg_mask: int, dirs: tuple[DirEntry, ...]
    ) -> None:
        self.fmt = fmt
        self._none_mask = none_mask
        self._chg = chg_mask
        self._dirs = dirs

    # -- leaf PTE flags ------------------------------------------------------------------
    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_none``: empty once the bits this profile ignores are dropped."""
        return bits.clear(pte, self._none_mask) == 0  # type: ignore[no-any-return]

    def pte_write(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_write``: the profile's write bit."""
        return (pte & self.WRITE_BIT) != 0  # type: ignore[no-any-return]

    def pte_mkwrite(self, pte: Value) -> Value:
        """``pte_mkwrite``: set the profile's write bits."""
        return pte | self.MKWRITE_BITS

    def pte_wrprotect(self, pte: Value) -> Value:
        """``pte_wrprotect``: clear the write bit (any read bit stays)."""
        return bits.clear(pte, self.WRITE_BIT)

    def pte_dirty(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_dirty``: ``_PAGE_DIRTY``."""
        return (pte & self.DIRTY_BIT) != 0  # type: ignore[no-any-return]

    def pte_mkdirty(self, pte: Value) -> Value:
        """``pte_mkdirty``: set the profile's dirty bits."""
        return pte | self.MKDIRTY_BITS

    def pte_mkclean(self, pte: Value) -> Value:
        """``pte_mkclean``: clear ``_PAGE_DIRTY`` only."""
        return bits.clear(pte, self.DIRTY_BIT)

    def pte_young(self, pte: Value) -> bool | NDArray[np.bool_]:
        """``pte_young``: ``_PAGE_ACCESSED``."""
        return (pte & self.YOUNG_BIT) != 0  # type: ignore[no-any-return]

    def pte_mkyoung(self, pte: Value) -> Value:
        """``pte_mkyoung``: set ``_PAGE_ACCESSED``."""
        return pte | self.YOUNG_BIT

    def pte_mkold(self, pte: Value) -> Value:
        """``pte_mkold``: clear ``_PAGE_ACCESSED``."""
        return bits.clear(pte, self.YOUNG_BIT)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        """``pte_modify``: ``(pte & _PAGE_CHG_MASK) | newprot``."""
        return (pte & self._chg) | prot

    # -- upper levels and the root -------------------------------------------------------
    def _upper(self, i: int) -> None:
        if not 0 <= i < len(self.fmt.levels) - 1:
            raise IndexError(f"ppc64/{self.fmt.mode}: {i} is not an upper level")

    def empty_entry(self, i: int) -> int:
        """Tables are zero-filled at every level (zeroing kmem caches, ``__GFP_ZERO`` pages)."""
        return 0

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """``p?d_populate``: the next table's physical address with the level's link bits."""
        self._upper(i)
        return table_pa | self._dirs[i].link

    def entry_kind(self, i: int, entry: Value) -> Value:
        """``p?d_none`` / ``p?d_leaf`` / ``p?d_bad``, in the walkers' order.

        Zero is none; at a level that may hold leaves an entry with the leaf bit is one;
        anything else is bad when ``p?d_bad`` says so (a leaf bit where no leaf may be is).
        """
        self._upper(i)
        d = self._dirs[i]
        bad = ((entry & d.bad) != 0) | ((entry & d.required) != d.required)
        rest = bits.select(bad, ENTRY_BAD, ENTRY_TABLE)
        if self.fmt.levels[i].leaf_ok:
            rest = bits.select((entry & self.LEAF_BIT) != 0, ENTRY_LEAF, rest)
        return bits.select(entry == 0, ENTRY_NONE, rest)

    def table_pa(self, i: int, entry: Value) -> Value:
        """``__pa(p?d_page_vaddr(e))`` / ``__pa(p?d_pgtable(e))``: drop the masked bits."""
        self._upper(i)
        return bits.clear(entry, self._dirs[i].masked)

    def root_value(self, root_pa: int) -> int:
        """The PGD's physical address (under radix: what a process-table entry's RPDB holds)."""
        return root_pa

    def root_table_pa(self, root: int) -> int:
        """Inverse of :meth:`root_value`."""
        return root
