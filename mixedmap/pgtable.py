"""Page tables as bytes in simulated physical memory, generic over ``PageTableFormat``.

Every entry lives in the machine's RAM in the arch's byte order and bit layout, so a dumped
image is walkable by any tool that knows the architecture. Range operations walk all VAs
of a batch level by level with numpy, no Python loop per PTE: a big batch reads and decodes
each table it visits once, whole (the arch's ``entry_kind`` per level, not per VA), and each
VA then steps down a level with one fancy index; a small or very scattered batch gathers
one entry per VA and level. The scalar ``lookup`` walks with plain ints because a numpy
call costs more than a whole walk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap.arch import ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE, BitField, PageTableFormat
from mixedmap.bits import ALL64
from mixedmap.errors import AddressError, PageTableError
from mixedmap.pgtable_alloc import TableAllocator
from mixedmap.phys.mem import PhysMem
from mixedmap.plugin.registry import BoundMode

_KIND_NAMES = {ENTRY_NONE: "none", ENTRY_TABLE: "table", ENTRY_LEAF: "leaf"}
#: Batches smaller than this walk lane by lane: decoding whole tables would cost more.
_SMALL_BATCH = 64
#: A batched walk decodes whole tables while they hold at most this many entries per VA
#: (plus the slack); past that the VAs are spread over so many tables that the per-VA walk,
#: one gather per VA and level, is cheaper.
_DENSE_PER_LANE = 2
_DENSE_SLACK = 4096


def decode_bits(value: int, fields: Sequence[BitField]) -> tuple[str, ...]:
    """Names of the single-bit fields set in ``value`` (multi-bit fields are skipped)."""
    return tuple(f.name for f in fields if f.kind != "field" and value & f.mask == f.mask)


def pte_helpers(mode: BoundMode, value: int) -> dict[str, Any]:
    """The arch's own helpers' verdicts on one PTE value (``pte_none``, ``pte_present``,
    ``pte_pfn``, ``pte_write``, ``pte_dirty``, ``pte_young``, ``pte_special``; None for the
    last where the arch has no special bit): what ``mixedmap pte decode`` and the explorer show."""
    ops = mode.mode.ops
    return {
        "pte_none": bool(ops.pte_none(value)),
        "pte_present": bool(ops.pte_present(value)),
        "pte_pfn": hex(int(ops.pte_pfn(value))),
        "pte_write": bool(ops.pte_write(value)),
        "pte_dirty": bool(ops.pte_dirty(value)),
        "pte_young": bool(ops.pte_young(value)),
        "pte_special": bool(mode.pte_special(np.array([value], dtype=np.uint64))[0])
        if mode.has_special
        else None,
    }


def table_fields(fields: Sequence[BitField]) -> tuple[BitField, ...]:
    """The fields that mean something in an entry pointing to a table: a one-bit flag that
    lies inside the next-table address (x86's PAT bit 12 of a large leaf, in a PMD that
    points to a table at 0x3000) is an address bit there, not a flag."""
    addr = 0
    for f in fields:
        if f.kind == "field":
            addr |= f.mask
    return tuple(f for f in fields if f.kind == "field" or not f.mask & addr)


@attrs.frozen(kw_only=True)
class Leaf:
    """The leaf entry that maps a virtual address."""

    va: int
    value: int
    pfn: int
    level: str
    page_size: int
    pa: int
    entry_pa: int
    _fields: tuple[BitField, ...] = attrs.field(repr=False, alias="fields")

    @property
    def flags(self) -> tuple[str, ...]:
        """Named bits set in the entry (decoded on demand: lookups stay cheap)."""
        return decode_bits(self.value, self._fields)


@attrs.frozen(kw_only=True)
class WalkStep:
    """One level of a walk: which table, which index, what was read there."""

    level: str
    hw_name: str
    table_pa: int
    index: int
    entry_pa: int
    value: int
    kind: str
    flags: tuple[str, ...]


class PageTable:
    """One address space's page tables (the kernel's ``mm->pgd`` and everything below)."""

    def __init__(self, mem: PhysMem, tables: TableAllocator | None, mode: BoundMode) -> None:
        self._mem = mem
        self._tables = tables
        self.mode = mode
        self.fmt: PageTableFormat = mode.fmt
        self._ops = mode.mode.ops
        self._bo = self.fmt.byteorder
        self._levels = self.fmt.levels
        self._last = len(self._levels) - 1
        self._owned: dict[int, int] = {}  # table pa -> level index
        # (va >> shift of the PTE table's reach, PTE table pa) of the last scalar walk: a
        # one-entry "TLB" for tables, dropped whenever any table is freed.
        self._pte_cache: tuple[int, int] = (-1, 0)
        self.root_pa = self._new_table(0) if tables is not None else 0

    @classmethod
    def attach(cls, mem: PhysMem, mode: BoundMode, root: int) -> PageTable:
        """Read-only view of tables already in ``mem`` (e.g. a loaded image) from ``root``."""
        pt = cls(mem, None, mode)
        pt.root_pa = int(mode.mode.ops.root_table_pa(root))
        return pt

    # -- bookkeeping --------------------------------------------------------------------
    @property
    def root(self) -> int:
        """What the CPU's root register holds (CR3, the ASCE, the radix PGD address)."""
        return int(self._ops.root_value(self.root_pa))

    @property
    def bytes_used(self) -> int:
        """RAM spent on this address space's tables (per-table allocation size)."""
        return sum(self._levels[i].alloc_bytes for i in self._owned.values())

    @property
    def nr_tables(self) -> dict[str, int]:
        out = {lv.name: 0 for lv in self._levels}
        for i in self._owned.values():
            out[self._levels[i].name] += 1
        return out

    def _new_table(self, i: int) -> int:
        if self._tables is None:
            raise PageTableError("this page table is a read-only view (attached to an image)")
        lv = self._levels[i]
        pa = self._tables.alloc(lv, self._ops.empty_entry(i), self.fmt.entry_size, self._bo)
        self._owned[pa] = i
        return pa

    def _free_table(self, pa: int) -> None:
        self._pte_cache = (-1, 0)
        i = self._owned.pop(pa)
        if self._tables is not None:
            self._tables.free(self._levels[i], pa)

    # -- validation -----------------------------------------------------------------------
    def leaf_level(self, page_size: int) -> int:
        """Level index whose entries map ``page_size`` bytes as a leaf."""
        for i, lv in enumerate(self._levels):
            if lv.page_size == page_size and (i == self._last or lv.leaf_ok):
                return i
        sizes = [lv.page_size for i, lv in enumerate(self._levels) if i == self._last or lv.leaf_ok]
        raise AddressError(
            f"{self.fmt.arch}/{self.fmt.mode}: page_size {page_size:#x} not supported; leaf sizes: "
            + ", ".join(f"{s:#x}" for s in sizes)
        )

    def in_space(self, vas: Any) -> Any:
        """The format's VA rule for an int or a uint64 array (bool or bool array)."""
        vb, rule = self.fmt.va_bits, self.fmt.va_rule
        if rule == "canonical":
            top = vas >> (vb - 1)
            return (top == 0) | (top == (1 << (65 - vb)) - 1)
        if vb >= 64:  # a 64-bit reach (s390 region-first): every address is inside
            return vas == vas
        if rule == "zero":
            return (vas >> vb) == 0
        return ((vas >> vb) & ((1 << (62 - vb)) - 1)) == 0

    def check_vas(self, vas: NDArray[np.uint64], align: int) -> None:
        """Raise AddressError for the first VA that is unaligned or outside the space."""
        vb, rule = self.fmt.va_bits, self.fmt.va_rule
        ok = np.asarray(self.in_space(vas), dtype=np.bool_) & ((vas & np.uint64(align - 1)) == 0)
        if not ok.all():
            va = int(vas[~ok][0])
            why = "is not aligned to" if va % align else "is outside the address space of"
            what = f"{align:#x}" if va % align else f"{self.fmt.arch}/{self.fmt.mode} ({rule}, {vb} bits)"
            raise AddressError(f"virtual address {va:#x} {why} {what}")

    def _check_pfns(self, pfns: NDArray[np.uint64], per_leaf: int) -> None:
        bad = pfns >= np.uint64(self.fmt.max_pfn)
        if bad.any():
            raise AddressError(
                f"pfn {int(pfns[bad][0]):#x} is beyond {self.fmt.arch}'s {self.fmt.pa_bits} physical "
                f"address bits (max pfn {self.fmt.max_pfn - 1:#x}, profile {self.fmt.profile})"
            )
        if per_leaf > 1:
            bad = (pfns & np.uint64(per_leaf - 1)) != 0
            if bad.any():
                raise AddressError(f"pfn {int(pfns[bad][0]):#x} is not aligned to the {per_leaf}-page leaf")

    def _index(self, i: int, vas: NDArray[np.uint64]) -> NDArray[np.uint64]:
        lv = self._levels[i]
        return (vas >> np.uint64(lv.shift)) & np.uint64(lv.entries - 1)

    # -- batched walk -------------------------------------------------------------------
    def _walk_to(self, vas: NDArray[np.uint64], target: int) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
        """Entry addresses at level ``target`` for every VA, read-only.

        Returns (entry_pa, reachable); a VA whose path is missing is not reachable (its
        address is meaningless). A large leaf on the way is a conflict and raises.
        """
        vas = np.ascontiguousarray(vas, dtype=np.uint64)
        n = vas.shape[0]
        found = (
            self._descend(vas.view(np.int64), None, target, compact_target=False)
            if n >= _SMALL_BATCH
            else None
        )
        if found is None:
            return self._walk_lanes(vas, target)
        ids, tables = found
        lv = self._levels[target]
        tpa = np.append(tables, np.uint64(0))
        epa = tpa[ids]
        idx = (vas >> np.uint64(lv.shift)) & np.uint64(lv.entries - 1)
        epa += idx * np.uint64(self.fmt.entry_size)
        return epa, ids != tables.size

    def _read_tables(self, i: int, tables: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """Every entry of the level-``i`` tables at ``tables``, row by row, in one gather."""
        lv = self._levels[i]
        offs = np.arange(lv.entries, dtype=np.uint64) * np.uint64(self.fmt.entry_size)
        return self._mem.gather_u64((tables[:, None] + offs[None, :]).ravel(), self._bo)

    def _descend(
        self,
        v: NDArray[np.int64],
        alive: NDArray[np.bool_] | None,
        target: int,
        *,
        compact_target: bool,
        leaves: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.intp], NDArray[np.uint64]] | None:
        """Walk levels ``0..target-1`` table by table instead of VA by VA.

        A batch visits few tables: each visited table is read and decoded whole, once (one
        gather and one ``entry_kind`` per level, however many VAs pass through it), and a VA
        then moves down a level with one fancy index into the decoded children, in place.
        A VA whose path ends (none, a leaf, a bad entry) moves to a dead row whose children
        are dead, so no lane is ever compacted away. ``v`` is the VAs' int64 view: the
        arithmetic shift leaves the index bits as a logical one would.

        Returns (table id per VA, the level-``target`` tables); the dead id is
        ``len(tables)``. With ``leaves`` (translate), a large leaf writes its physical
        address there; without, a leaf or bad entry on a live path raises, as a walk that
        must reach level ``target`` does. ``compact_target`` keeps only the tables some VA
        reaches (the caller reads them whole). None when the batch spreads over so many
        tables that reading them whole would cost more than the per-VA walk.
        """
        n = v.shape[0]
        budget = _DENSE_PER_LANE * n + _DENSE_SLACK
        levels = self._levels
        tables = np.array([self.root_pa], dtype=np.uint64)
        ids = np.zeros(n, dtype=np.intp)
        if target == 0:
            if alive is not None:
                ids[~alive] = 1
            return ids, tables
        e0 = levels[0].entries
        base = ids  # row * entries: where a VA's table starts in the decoded level
        if alive is not None:
            base[~alive] = e0
        flat = np.empty(n, dtype=np.intp)
        for i in range(target):
            lv, below = levels[i], levels[i + 1]
            width, k = lv.entries, tables.size
            ents = self._read_tables(i, tables)
            kind = np.asarray(self._ops.entry_kind(i, ents))
            is_table = kind == ENTRY_TABLE
            children = np.asarray(self._ops.table_pa(i, ents[is_table]), dtype=np.uint64)
            c = children.size
            np.right_shift(v, lv.shift, out=flat)
            np.bitwise_and(flat, width - 1, out=flat)
            flat += base
            odd = ~is_table & (kind != ENTRY_NONE)
            if odd.any():
                self._odd_entries(i, v, flat, ents, kind, odd, leaves)
            child = np.full(k * width + width, c, dtype=np.intp)  # the dead row: all dead
            child[: k * width][is_table] = np.arange(c, dtype=np.intp)
            last = i == target - 1
            if c * below.entries > budget and (compact_target or not last):
                cid = child[flat]
                used = np.zeros(c + 1, dtype=np.bool_)
                used[cid] = True
                used[c] = False
                keep = np.flatnonzero(used)
                if keep.size * below.entries > budget:
                    if not last:
                        return None
                    np.copyto(base, cid)  # the caller reads the target level VA by VA
                    return base, children
                remap = np.full(c + 1, keep.size, dtype=np.intp)
                remap[keep] = np.arange(keep.size, dtype=np.intp)
                np.take(remap, cid, out=base)
                children = children[keep]
                if not last:
                    base *= below.entries
            else:
                if not last:
                    child *= below.entries
                np.take(child, flat, out=base)
            tables = children
        return base, tables

    def _odd_entries(
        self,
        i: int,
        v: NDArray[np.int64],
        flat: NDArray[np.intp],
        ents: NDArray[np.uint64],
        kind: NDArray[Any],
        odd: NDArray[np.bool_],
        leaves: NDArray[np.int64] | None,
    ) -> None:
        """Large leaves and bad entries among the decoded level-``i`` entries: translate's
        answer for the VAs that end on a leaf, or the walk's conflict error."""
        width = self._levels[i].entries
        if leaves is None:
            flag = np.zeros(ents.size + width, dtype=np.bool_)
            flag[: ents.size] = odd
            hit = flag[flat]
            if hit.any():
                j = int(np.argmax(hit))
                e = int(flat[j])
                raise PageTableError(
                    f"virtual address {int(v[j]) & ALL64:#x}: {self._levels[i].name} entry {int(ents[e]):#x} is "
                    f"{'a large-page leaf' if kind[e] == ENTRY_LEAF else 'malformed'} on the path"
                )
            return
        leaf = kind == ENTRY_LEAF
        if not leaf.any():
            return
        start = np.full(ents.size + width, -1, dtype=np.int64)
        pfn = np.asarray(self._ops.leaf_pfn(i, ents[leaf]), dtype=np.uint64)
        start[: ents.size][leaf] = (pfn << np.uint64(self.fmt.page_shift)).astype(np.int64)
        got = start[flat]
        hit = got >= 0
        got[hit] += v[hit] & (self._levels[i].page_size - 1)
        np.maximum(leaves, got, out=leaves)

    def _walk_lanes(
        self, vas: NDArray[np.uint64], target: int
    ) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
        """:meth:`_walk_to` lane by lane: one gather per level for every VA (small batches,
        and paths through more tables than :meth:`_descend` would decode whole)."""
        n = vas.shape[0]
        table = np.full(n, self.root_pa, dtype=np.uint64)
        alive = np.ones(n, dtype=np.bool_)
        esz = np.uint64(self.fmt.entry_size)
        for i in range(target):
            epa = table + self._index(i, vas) * esz
            ent = self._mem.gather_u64(epa[alive], self._bo)
            kind = np.asarray(self._ops.entry_kind(i, ent))
            if (kind == ENTRY_LEAF).any() or (kind > ENTRY_LEAF).any():
                j = int(np.flatnonzero((kind != ENTRY_NONE) & (kind != ENTRY_TABLE))[0])
                va = int(vas[alive][j])
                raise PageTableError(
                    f"virtual address {va:#x}: {self._levels[i].name} entry {int(ent[j]):#x} is "
                    f"{'a large-page leaf' if kind[j] == ENTRY_LEAF else 'malformed'} on the path"
                )
            nxt = np.asarray(self._ops.table_pa(i, ent), dtype=np.uint64)
            idx = np.flatnonzero(alive)
            missing = kind == ENTRY_NONE
            alive[idx[missing]] = False
            table[idx[~missing]] = nxt[~missing]
        epa = table + self._index(target, vas) * esz
        return epa, alive

    def _populate(
        self, vas: NDArray[np.uint64], target: int, undo: list[tuple[int, int]]
    ) -> NDArray[np.uint64]:
        """Like _walk_to but allocates missing tables; returns target entry addresses."""
        n = vas.shape[0]
        table = np.full(n, self.root_pa, dtype=np.uint64)
        esz = np.uint64(self.fmt.entry_size)
        for i in range(target):
            epa = table + self._index(i, vas) * esz
            ent = self._mem.gather_u64(epa, self._bo)
            missing = np.asarray(self._ops.entry_kind(i, ent)) == ENTRY_NONE
            if missing.any():
                uniq, inv = np.unique(epa[missing], return_inverse=True)
                new = np.empty(uniq.size, dtype=np.uint64)
                for k, parent in enumerate(uniq.tolist()):
                    new[k] = self._new_table(i + 1)
                    undo.append((int(parent), int(new[k])))
                vals = np.asarray(self._ops.mk_table_entry(i, new), dtype=np.uint64)
                self._mem.scatter_u64(uniq, vals, self._bo)
                ent[missing] = vals[inv]
            table = np.asarray(self._ops.table_pa(i, ent), dtype=np.uint64)
        return table + self._index(target, vas) * esz

    # -- public operations -------------------------------------------------------------
    def map(
        self, va: int, pfn: int, prot: str | int = "rw", special: bool = False, page_size: int | None = None
    ) -> int:
        """Map one page; returns the entry value written."""
        out = self.map_range(va, np.array([pfn], dtype=np.uint64), prot, special, page_size)
        return int(out[0])

    def entry_values(
        self,
        pfns: NDArray[np.uint64],
        prot: str | int = "rw",
        special: bool = False,
        page_size: int | None = None,
    ) -> NDArray[np.uint64]:
        """Leaf entry values for ``pfns`` as ``map_range`` would write them."""
        size = page_size or self.fmt.page_size
        t = self.leaf_level(size)
        pgprot = self.fmt.prot(prot) if isinstance(prot, str) else int(prot)
        if t == self._last:
            vals = np.asarray(self._ops.pfn_pte(pfns, pgprot), dtype=np.uint64)
        else:
            vals = np.asarray(self._ops.mk_leaf(t, pfns, pgprot), dtype=np.uint64)
        if special:
            vals = self.mode.pte_mkspecial(vals)
        return vals

    def map_range(
        self,
        va: int,
        pfns: Sequence[int] | NDArray[np.uint64],
        prot: str | int = "rw",
        special: bool = False,
        page_size: int | None = None,
    ) -> NDArray[np.uint64]:
        """Map consecutive pages from ``va`` to ``pfns`` (batched); returns entry values.

        All checks run before the first write; a failure while allocating tables undoes
        every table it allocated, so the tables are never left half-populated.
        """
        size = page_size or self.fmt.page_size
        t = self.leaf_level(size)
        arr = np.asarray(pfns)
        if arr.dtype.kind not in "ui" or (arr.dtype.kind == "i" and arr.size and arr.min() < 0):
            raise AddressError(f"pfns must be non-negative integers, got dtype {arr.dtype}")
        arr = np.atleast_1d(arr).astype(np.uint64)
        if not 0 <= va <= ALL64:
            raise AddressError(f"virtual address {va:#x} does not fit 64 bits")
        self._check_pfns(arr, size >> self.fmt.page_shift)
        n = arr.shape[0]
        if va + (n - 1) * size > ALL64:
            raise AddressError(f"range {va:#x} + {n} x {size:#x} wraps around")
        vas = np.uint64(va) + np.arange(n, dtype=np.uint64) * np.uint64(size)
        self.check_vas(vas, size)
        vals = self.entry_values(arr, prot, special, size)
        epa, reach = self._walk_to(vas, t)
        if reach.any():
            cur = self._mem.gather_u64(epa[reach], self._bo)
            used = ~np.asarray(self._is_empty(t, cur), dtype=np.bool_)
            if used.any():
                j = int(np.flatnonzero(used)[0])
                raise PageTableError(
                    f"virtual address {int(vas[reach][j]):#x} is already mapped "
                    f"({self._levels[t].name} entry {int(cur[j]):#x})"
                )
        undo: list[tuple[int, int]] = []
        try:
            epa = self._populate(vas, t, undo)
        except BaseException:
            for _parent, child in reversed(undo):
                self._free_table(child)
            self._undo_parents(undo)
            raise
        self._mem.scatter_u64(epa, vals, self._bo)
        return vals

    def _undo_parents(self, undo: list[tuple[int, int]]) -> None:
        """Clear the parent entries written before an allocation failure."""
        for parent, _ in undo:
            i = self._level_of_entry(parent)
            if i is not None:
                self._mem.write_u64(parent, self._ops.empty_entry(i), self._bo)

    def _level_of_entry(self, entry_pa: int) -> int | None:
        for pa, i in self._owned.items():
            if pa <= entry_pa < pa + self._levels[i].table_bytes:
                return i
        return None

    def _is_empty(self, i: int, ent: NDArray[np.uint64]) -> NDArray[np.bool_]:
        if i == self._last:
            return np.asarray(self._ops.pte_none(ent), dtype=np.bool_)
        empty: NDArray[np.bool_] = np.asarray(self._ops.entry_kind(i, ent)) == ENTRY_NONE
        return empty

    def translate(self, vas: Sequence[int] | NDArray[np.uint64]) -> NDArray[np.int64]:
        """Physical addresses for many VAs (-1 where not mapped), the kernel's software view.

        A leaf counts as mapped when Linux considers it present (``pte_present``), as a
        ``follow_page`` walk would; the hardware may still fault on it (s390's invalid bit
        on old pages, x86 PROT_NONE).
        """
        vas = np.ascontiguousarray(np.atleast_1d(np.asarray(vas, dtype=np.uint64)))
        n = vas.shape[0]
        if n < _SMALL_BATCH:
            return self._translate_lanes(vas)
        ok = np.asarray(self.in_space(vas), dtype=np.bool_)
        v = vas.view(np.int64)
        leaves = np.full(n, -1, dtype=np.int64)
        found = self._descend(v, None if ok.all() else ok, self._last, compact_target=True, leaves=leaves)
        if found is None:
            return self._translate_lanes(vas)
        ids, tables = found
        lv = self._levels[self._last]
        width, k = lv.entries, tables.size
        if k * width > _DENSE_PER_LANE * n + _DENSE_SLACK:
            out = self._read_ptes_lanes(v, ids, tables)
        else:
            out = self._read_ptes_dense(v, ids, tables)
        if (leaves >= 0).any():
            np.maximum(out, leaves, out=out)
        return out

    def _read_ptes_lanes(
        self, v: NDArray[np.int64], ids: NDArray[np.intp], tables: NDArray[np.uint64]
    ) -> NDArray[np.int64]:
        """Translate's last level VA by VA: the VAs spread over more PTEs than they number."""
        lv = self._levels[self._last]
        live = np.flatnonzero(ids != tables.size)
        out = np.full(v.shape[0], -1, dtype=np.int64)
        vas = v[live].view(np.uint64)
        epa = tables[ids[live]] + ((vas >> np.uint64(lv.shift)) & np.uint64(lv.entries - 1)) * np.uint64(
            self.fmt.entry_size
        )
        ent = self._mem.gather_u64(epa, self._bo)
        present = np.asarray(self._ops.pte_present(ent), dtype=np.bool_)
        pfn = np.asarray(self._ops.pte_pfn(ent[present]), dtype=np.uint64)
        off = vas[present] & np.uint64(lv.page_size - 1)
        out[live[present]] = ((pfn << np.uint64(self.fmt.page_shift)) | off).astype(np.int64)
        return out

    def _read_ptes_dense(
        self, v: NDArray[np.int64], ids: NDArray[np.intp], tables: NDArray[np.uint64]
    ) -> NDArray[np.int64]:
        """Translate's last level table by table: decode every PTE of the tables reached
        once, then one fancy index per VA."""
        lv = self._levels[self._last]
        width, k = lv.entries, tables.size
        ents = self._read_tables(self._last, tables)
        present = np.asarray(self._ops.pte_present(ents), dtype=np.bool_)
        pfn = np.asarray(self._ops.pte_pfn(ents), dtype=np.uint64)
        # Per PTE: its page's physical address, -1 if not present; -1 | offset stays -1.
        page = np.full(k * width + width, -1, dtype=np.int64)
        np.copyto(page[: k * width], (pfn << np.uint64(self.fmt.page_shift)).astype(np.int64), where=present)
        ids *= width
        flat = np.right_shift(v, lv.shift)
        np.bitwise_and(flat, width - 1, out=flat)
        flat += ids
        out = np.take(page, flat)
        np.bitwise_and(v, lv.page_size - 1, out=flat)
        out |= flat
        return out

    def _translate_lanes(self, vas: NDArray[np.uint64]) -> NDArray[np.int64]:
        """:meth:`translate` lane by lane (small batches, or VAs over very many tables)."""
        vas = np.atleast_1d(np.asarray(vas, dtype=np.uint64))
        n = vas.shape[0]
        out = np.full(n, -1, dtype=np.int64)
        lanes = np.arange(n)
        table = np.full(n, self.root_pa, dtype=np.uint64)
        cur_vas = vas
        esz = np.uint64(self.fmt.entry_size)
        ok = np.asarray(self.in_space(vas), dtype=np.bool_)
        lanes, table, cur_vas = lanes[ok], table[ok], cur_vas[ok]
        for i, lv in enumerate(self._levels):
            if lanes.size == 0:
                break
            ent = self._mem.gather_u64(table + self._index(i, cur_vas) * esz, self._bo)
            if i == self._last:
                present = np.asarray(self._ops.pte_present(ent), dtype=np.bool_)
                pfn = np.asarray(self._ops.pte_pfn(ent[present]), dtype=np.uint64)
                off = cur_vas[present] & np.uint64(lv.page_size - 1)
                out[lanes[present]] = ((pfn << np.uint64(self.fmt.page_shift)) | off).astype(np.int64)
                break
            kind = np.asarray(self._ops.entry_kind(i, ent))
            leaf = kind == ENTRY_LEAF
            if leaf.any():
                pfn = np.asarray(self._ops.leaf_pfn(i, ent[leaf]), dtype=np.uint64)
                off = cur_vas[leaf] & np.uint64(lv.page_size - 1)
                out[lanes[leaf]] = ((pfn << np.uint64(self.fmt.page_shift)) + off).astype(np.int64)
            down = kind == ENTRY_TABLE
            nxt = np.asarray(self._ops.table_pa(i, ent[down]), dtype=np.uint64)
            lanes, table, cur_vas = lanes[down], nxt, cur_vas[down]
        return out

    def lookup(self, va: int) -> Leaf | None:
        """The leaf mapping ``va`` (scalar, no numpy), or None."""
        ops, mem, bo, esz = self._ops, self._mem, self._bo, self.fmt.entry_size
        if not 0 <= va <= ALL64 or not self.in_space(va):
            return None
        table = self.root_pa
        last = self._last
        for i, lv in enumerate(self._levels):
            epa = table + ((va >> lv.shift) & (lv.entries - 1)) * esz
            ent = mem.read_u64(epa, bo)
            if i == last:
                if not ops.pte_present(ent):
                    return None
                pfn = int(ops.pte_pfn(ent))
                fields = self.fmt.pte_bits
            else:
                kind = ops.entry_kind(i, ent)
                if kind == ENTRY_TABLE:
                    table = int(ops.table_pa(i, ent))
                    continue
                if kind != ENTRY_LEAF:
                    return None
                pfn = int(ops.leaf_pfn(i, ent))
                fields = lv.bits
            size = lv.page_size
            pa = (pfn << self.fmt.page_shift) + (va & (size - 1))
            return Leaf(
                va=va, value=ent, pfn=pfn, level=lv.name, page_size=size, pa=pa, entry_pa=epa, fields=fields
            )
        return None

    def walk(self, va: int) -> list[WalkStep]:
        """Every level visited for ``va``: indices, entry addresses, values, kinds."""
        self.check_vas(np.array([va], dtype=np.uint64), 1)
        steps: list[WalkStep] = []
        table = self.root_pa
        for i, lv in enumerate(self._levels):
            idx = (va >> lv.shift) & (lv.entries - 1)
            epa = table + idx * self.fmt.entry_size
            ent = self._mem.read_u64(epa, self._bo)
            if i == self._last:
                kind = (
                    "leaf"
                    if self._ops.pte_present(ent)
                    else ("none" if self._ops.pte_none(ent) else "not present")
                )
                fields = self.fmt.pte_bits
            else:
                kind = _KIND_NAMES.get(int(self._ops.entry_kind(i, ent)), "bad")
                fields = table_fields(lv.bits) if kind == "table" else lv.bits
            steps.append(
                WalkStep(
                    level=lv.name, hw_name=lv.hw_name, table_pa=table, index=idx, entry_pa=epa,
                    value=ent, kind=kind, flags=decode_bits(ent, fields),
                )
            )  # fmt: skip
            if kind != "table":
                break
            table = int(self._ops.table_pa(i, ent))
        return steps

    def unmap(self, va: int, count: int = 1, page_size: int | None = None) -> None:
        """Clear ``count`` consecutive leaves from ``va`` and free tables left empty.

        Every page must be mapped; otherwise nothing changes (the first unmapped VA is named).
        """
        size = page_size or self.fmt.page_size
        t = self.leaf_level(size)
        if count <= 0:
            raise ValueError(f"count must be positive, got {count}")
        vas = np.uint64(va) + np.arange(count, dtype=np.uint64) * np.uint64(size)
        self.check_vas(vas, size)
        epa, reach = self._walk_to(vas, t)
        cur = self._mem.gather_u64(epa[reach], self._bo) if reach.any() else np.zeros(0, dtype=np.uint64)
        empty = np.ones(count, dtype=np.bool_)
        empty[reach] = self._is_empty(t, cur)
        if empty.any():
            raise PageTableError(
                f"virtual address {int(vas[empty][0]):#x} is not mapped at {self._levels[t].name} level"
            )
        self._mem.scatter_u64(epa, np.full(count, self._ops.empty_entry(t), dtype=np.uint64), self._bo)
        self._free_empty(vas, t)

    def _free_empty(self, vas: NDArray[np.uint64], t: int) -> None:
        """Free tables below the root that no longer hold any entry (free_pgtables)."""
        for i in range(t, 0, -1):
            epa_parent, reach = self._walk_to(vas, i - 1)
            parents = np.unique(epa_parent[reach])
            ent = self._mem.gather_u64(parents, self._bo)
            kinds = np.asarray(self._ops.entry_kind(i - 1, ent))
            freed = False
            for ppa, e, k in zip(parents.tolist(), ent.tolist(), kinds.tolist(), strict=True):
                if k != ENTRY_TABLE:
                    continue
                child = int(self._ops.table_pa(i - 1, e))
                lv = self._levels[i]
                body = self._mem.gather_u64(
                    np.arange(
                        child, child + lv.entries * self.fmt.entry_size, self.fmt.entry_size, dtype=np.uint64
                    ),
                    self._bo,
                )
                if bool(np.all(self._is_empty(i, body))):
                    self._mem.write_u64(ppa, self._ops.empty_entry(i - 1), self._bo)
                    self._free_table(child)
                    freed = True
            if not freed:
                break

    # -- PTE-level access for the mm layer -------------------------------------------------
    def pte_slot(self, va: int, allocate: bool) -> int | None:
        """Address of the PTE for ``va`` (scalar); allocates missing tables if asked.

        None when a table on the path is missing and ``allocate`` is false. A large leaf
        on the path is a PageTableError (the mm layer maps base pages only).
        """
        ops, mem, bo, esz = self._ops, self._mem, self._bo, self.fmt.entry_size
        leaf = self._levels[self._last]
        key = va >> (leaf.shift + leaf.index_bits)
        if self._pte_cache[0] == key:
            return self._pte_cache[1] + ((va >> leaf.shift) & (leaf.entries - 1)) * esz
        table = self.root_pa
        for i in range(self._last):
            lv = self._levels[i]
            epa = table + ((va >> lv.shift) & (lv.entries - 1)) * esz
            ent = mem.read_u64(epa, bo)
            kind = ops.entry_kind(i, ent)
            if kind == ENTRY_NONE:
                if not allocate:
                    return None
                child = self._new_table(i + 1)
                mem.write_u64(epa, int(ops.mk_table_entry(i, child)), bo)
                table = child
                continue
            if kind != ENTRY_TABLE:
                raise PageTableError(f"virtual address {va:#x}: {lv.name} entry {ent:#x} is not a table")
            table = int(ops.table_pa(i, ent))
        self._pte_cache = (key, table)
        return table + ((va >> leaf.shift) & (leaf.entries - 1)) * esz

    def read_pte(self, epa: int) -> int:
        return self._mem.read_u64(epa, self._bo)

    def write_pte(self, epa: int, value: int) -> None:
        self._mem.write_u64(epa, value, self._bo)

    def pte_slots(
        self, vas: NDArray[np.uint64], allocate: bool
    ) -> tuple[NDArray[np.uint64], NDArray[np.bool_]]:
        """PTE addresses for many VAs; with ``allocate`` every path is populated.

        Returns (entry addresses, reachable); unreachable lanes (missing tables, only
        without ``allocate``) have meaningless addresses.
        """
        vas = np.asarray(vas, dtype=np.uint64)
        if allocate:
            undo: list[tuple[int, int]] = []
            try:
                epa = self._populate(vas, self._last, undo)
            except BaseException:
                for _parent, child in reversed(undo):
                    self._free_table(child)
                self._undo_parents(undo)
                raise
            return epa, np.ones(vas.shape, dtype=np.bool_)
        return self._walk_to(vas, self._last)

    def read_ptes(self, epas: NDArray[np.uint64]) -> NDArray[np.uint64]:
        return self._mem.gather_u64(epas, self._bo)

    def write_ptes(self, epas: NDArray[np.uint64], values: NDArray[np.uint64]) -> None:
        self._mem.scatter_u64(epas, values, self._bo)

    def range_ptes(
        self, start: int, npages: int
    ) -> tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.bool_]]:
        """(vas, ptes, reachable) for ``npages`` base pages from ``start``; missing = empty."""
        vas = np.uint64(start) + np.arange(npages, dtype=np.uint64) * np.uint64(self.fmt.page_size)
        epa, reach = self._walk_to(vas, self._last)
        ptes = np.full(npages, self._ops.empty_entry(self._last), dtype=np.uint64)
        if reach.any():
            ptes[reach] = self._mem.gather_u64(epa[reach], self._bo)
        return vas, ptes, reach

    def epas_for(self, vas: NDArray[np.uint64]) -> NDArray[np.uint64]:
        """PTE addresses of VAs whose paths exist (callers checked reachability)."""
        return self._walk_to(np.asarray(vas, dtype=np.uint64), self._last)[0]

    def free_pgtables(self, start: int, end: int) -> None:
        """Free page tables under [start, end) that hold no entry any more (free_pgtables)."""
        if end <= start:
            return
        step = self._levels[-2].page_size if len(self._levels) > 1 else self.fmt.page_size
        first = start - start % step
        vas = np.arange(first, end, step, dtype=np.uint64)
        self._free_empty(vas, self._last)

    def free(self) -> None:
        """Release every table, the root included (the mm is gone)."""
        for pa in list(self._owned):
            self._free_table(pa)
