"""What an arch plugin declares: attrs value types plus the helper-operations contract.

The data half (``ArchSpec`` > ``ArchMode`` > ``PageTableFormat`` > ``Level``/``BitField``)
is what a tool such as volatility or drgn would need to walk the tables; the behaviour half
(:class:`PteOps`) is the arch's ``asm/pgtable.h``: every helper as bit operations that take
a Python int *or* a numpy uint64 array and return the same kind. Writing helpers with
``&``, ``|``, ``>>`` and :mod:`mixedmap.bits` gives both for free, so the scalar path stays
cheap and the batch path never loops in Python.

The three primitives the kernel leaves to the arch (``pte_special``, ``pte_mkspecial``,
``pfn_valid``) are not here: they are pluggy hooks (:mod:`mixedmap.plugin.spec`).
"""

from __future__ import annotations

import abc
import enum
import itertools
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap.bits import Value
from mixedmap.errors import ArchSpecError, ProfileError
from mixedmap.profiles import PROFILES

if TYPE_CHECKING:
    from mixedmap.machine import Machine

#: Kinds returned by :meth:`PteOps.entry_kind` for upper-level entries.
ENTRY_NONE = 0
ENTRY_TABLE = 1
ENTRY_LEAF = 2
ENTRY_BAD = 3

#: Index bits of the kernel's ``protection_map`` (``vm_flags & (VM_READ|VM_WRITE|VM_EXEC|VM_SHARED)``).
VM_READ = 0x1
VM_WRITE = 0x2
VM_EXEC = 0x4
VM_SHARED = 0x8


class Support(enum.Enum):
    """Tristate capability claim (drgn #643): unknown is allowed but reported."""

    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


@attrs.frozen(kw_only=True)
class BitField:
    """One named bit or field of an entry, for decode, encode and the layout diagram."""

    name: str
    mask: int
    doc: str = ""
    kind: Literal["hw", "sw", "field"] = "hw"

    @property
    def shift(self) -> int:
        return (self.mask & -self.mask).bit_length() - 1

    @property
    def width(self) -> int:
        return (self.mask >> self.shift).bit_length()


@attrs.frozen(kw_only=True)
class Level:
    """One level of the walk, top-down; ``name`` is Linux's (pgd/p4d/pud/pmd/pte)."""

    name: str
    hw_name: str
    shift: int
    index_bits: int
    table_bytes: int
    #: RAM the kernel spends per table; larger than table_bytes where the kernel pads
    #: (s390 6.18 puts a 2 KiB page table in a full 4 KiB page), smaller never.
    alloc_bytes: int
    align: int
    leaf_ok: bool = False
    bits: tuple[BitField, ...] = ()

    @property
    def entries(self) -> int:
        return 1 << self.index_bits

    @property
    def page_size(self) -> int:
        """Bytes one entry at this level maps."""
        return 1 << self.shift


@attrs.frozen(kw_only=True)
class PageTableFormat:
    """Geometry, byte order and every named bit of one (arch, mode, profile)."""

    arch: str
    mode: str
    profile: str
    levels: tuple[Level, ...]
    page_shift: int
    entry_size: int = 8
    byteorder: Literal["little", "big"]
    #: Address bits the tables translate (sum of index bits plus page_shift).
    va_bits: int
    #: "canonical": bits above va_bits copy bit va_bits-1 (x86); "zero": they must be 0
    #: (s390, the ASCE's reach); "quadrant": bits 63:62 pick a quadrant, bits between
    #: va_bits and 61 must be 0 (ppc64).
    va_rule: Literal["canonical", "zero", "quadrant"]
    #: Highest physical address bit + 1 a PTE can hold for this mode and profile.
    pa_bits: int
    pfn_mask: int
    pfn_shift: int
    special_mask: int | None
    pte_bits: tuple[BitField, ...]
    #: The kernel's protection_map, indexed by VM_READ|VM_WRITE|VM_EXEC|VM_SHARED.
    protection_map: tuple[int, ...]
    #: Named pgprot values (PAGE_NONE, PAGE_SHARED, ...), as (name, value) pairs.
    protections: tuple[tuple[str, int], ...] = ()
    root_name: str
    #: False where the hardware keeps referenced/changed outside the PTE (s390's storage
    #: key in 2.6.x), so pte_young/pte_dirty are constant and the helpers are no-ops.
    tracks_young_dirty: bool = True
    #: Kernel oddities of this profile the model reproduces on purpose, by name; known names:
    #: "pte_modify_drops_special" (mprotect loses _PAGE_SPECIAL, e.g. ppc64 64K in 2.6.27),
    #: "protnone_pte_write" (pte_write() is true for a PROT_NONE entry, s390 2.6.x).
    quirks: tuple[str, ...] = ()
    #: Whether this kernel had a lockless get_user_pages_fast for the arch. None means the
    #: usual answer: it needs the special bit and arrived in 2.6.27 (x86, powerpc); an arch
    #: that got it later (s390, 2010) says False for the older profiles.
    lockless_gup: bool | None = None
    source: str = ""

    def __attrs_post_init__(self) -> None:
        where = f"{self.arch}/{self.mode} (profile {self.profile})"
        if not self.levels:
            raise ArchSpecError(f"{where}: no levels")
        if self.levels[-1].shift != self.page_shift:
            raise ArchSpecError(
                f"{where}: last level shift {self.levels[-1].shift} != page_shift {self.page_shift}"
            )
        for upper, lower in zip(self.levels, self.levels[1:], strict=False):
            if upper.shift != lower.shift + lower.index_bits:
                raise ArchSpecError(
                    f"{where}: level {upper.name} shift {upper.shift} does not follow "
                    f"{lower.name} (shift {lower.shift} + {lower.index_bits} bits)"
                )
        top = self.levels[0]
        if top.shift + top.index_bits != self.va_bits:
            raise ArchSpecError(
                f"{where}: levels cover {top.shift + top.index_bits} bits, va_bits={self.va_bits}"
            )
        for lv in self.levels:
            if lv.entries * self.entry_size > lv.table_bytes:
                raise ArchSpecError(f"{where}: level {lv.name} table_bytes {lv.table_bytes} too small")
            if lv.alloc_bytes < lv.table_bytes or lv.align & (lv.align - 1):
                raise ArchSpecError(f"{where}: level {lv.name} alloc_bytes/align inconsistent")
        if self.special_mask is not None and self.special_mask & self.pfn_mask:
            raise ArchSpecError(f"{where}: special bit {self.special_mask:#x} lies inside the PFN field")
        if len(self.protection_map) != 16:
            raise ArchSpecError(f"{where}: protection_map needs 16 entries")
        if self.byteorder not in ("little", "big"):
            raise ArchSpecError(f"{where}: byteorder must be 'little' or 'big'")

    @property
    def page_size(self) -> int:
        return 1 << self.page_shift

    @property
    def has_lockless_gup(self) -> bool:
        """get_user_pages_fast exists with a lockless walk for this arch and profile."""
        if self.lockless_gup is not None:
            return self.lockless_gup and self.special_mask is not None
        return self.special_mask is not None and PROFILES[self.profile].version >= (2, 6, 27)

    @property
    def dtype(self) -> np.dtype[np.uint64]:
        """numpy dtype of an entry as stored in memory."""
        return np.dtype("<u8" if self.byteorder == "little" else ">u8")

    @property
    def max_pfn(self) -> int:
        """First PFN that does not fit the arch's physical address bits."""
        return 1 << (self.pa_bits - self.page_shift)

    @property
    def protections_map(self) -> Mapping[str, int]:
        return dict(self.protections)

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise KeyError(name)

    def prot(self, rwx: str, *, shared: bool = True) -> int:
        """pgprot for "r", "rw", "rx", "rwx", "x", "w", "wx" or "none" (vm_get_page_prot)."""
        bits = {"r": VM_READ, "w": VM_WRITE, "x": VM_EXEC}
        if rwx == "none":
            idx = 0
        else:
            if not rwx or any(c not in bits for c in rwx) or len(set(rwx)) != len(rwx):
                raise ValueError(f"unknown prot {rwx!r}; use r, rw, rx, rwx or none")
            idx = sum(bits[c] for c in rwx)
        if shared:
            idx |= VM_SHARED
        return self.protection_map[idx]


@attrs.frozen(kw_only=True)
class ReservedRange:
    """Physical memory the arch's kernel reserves at boot and never gives the page allocator.

    ``memblock_reserve`` (6.x) or ``reserve_bootmem``/``reserve_early``/``lmb_reserve``
    (2.6.2x) of a range the kernel owns from the start (s390's lowcore, x86's BIOS pages,
    ppc64's interrupt vectors). Its frames keep the struct page ``memmap_init_zone`` /
    ``__init_single_page`` gave them: refcount 1 and ``PG_reserved`` (``free_all_bootmem``
    in 2.6.27 and ``memmap_init_reserved_pages`` in mm/mm_init.c, 6.x, leave them out of
    the buddy allocator). ``start`` and ``size`` must be page-aligned for every mode that
    declares the range; ``kernel_ref`` names the kernel file and function that reserve it.
    """

    start: int
    size: int
    name: str
    kernel_ref: str
    why: str = ""
    #: "phys": ``start`` is a physical address (the kernel reserves that address wherever
    #: RAM is); "ram": an offset from the first byte of RAM (firmware at the start of DRAM,
    #: wherever the board puts DRAM).
    anchor: Literal["phys", "ram"] = "phys"

    def __attrs_post_init__(self) -> None:
        if self.start < 0 or self.size <= 0:
            raise ArchSpecError(f"reserved range {self.name!r}: start {self.start:#x}, size {self.size:#x}")
        if self.anchor not in ("phys", "ram"):
            raise ArchSpecError(f"reserved range {self.name!r}: anchor must be 'phys' or 'ram'")
        if not self.kernel_ref:
            raise ArchSpecError(f"reserved range {self.name!r}: kernel_ref must name the kernel code")

    @property
    def end(self) -> int:
        return self.start + self.size

    def __str__(self) -> str:
        where = "RAM+" if self.anchor == "ram" else ""
        return f"{self.name} [{where}{self.start:#x}, {where}{self.end:#x})"


@attrs.frozen(kw_only=True)
class MemoryModel:
    """The kernel's memory model for this arch and profile (feeds pfn_valid), and the
    physical ranges it reserves at boot (:class:`ReservedRange`, sorted, not overlapping)."""

    kind: Literal["sparsemem", "flatmem"] = "sparsemem"
    section_size_bits: int
    max_physmem_bits: int
    struct_page_size: int = 64
    reserved: tuple[ReservedRange, ...] = ()

    def __attrs_post_init__(self) -> None:
        for anchor in ("phys", "ram"):
            rs = sorted((r for r in self.reserved if r.anchor == anchor), key=lambda r: r.start)
            for a, b in itertools.pairwise(rs):
                if b.start < a.end:
                    raise ArchSpecError(f"reserved range {b} overlaps {a}")


class PteOps(abc.ABC):
    """One (arch, mode, profile)'s helpers: the arch's ``pgtable.h`` as bit operations.

    Every method takes a Python int or a numpy uint64 array (``Value``) and returns the
    same kind; predicates return bool or a bool array. ``i`` is an index into
    ``fmt.levels`` (0 = top). ``pte_special``/``pte_mkspecial`` are hooks, not methods.
    """

    fmt: PageTableFormat

    # -- leaf PTE helpers (kernel names) ------------------------------------------------
    @abc.abstractmethod
    def pfn_pte(self, pfn: Value, prot: int) -> Value: ...
    @abc.abstractmethod
    def pte_pfn(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_present(self, pte: Value) -> bool | NDArray[np.bool_]: ...
    @abc.abstractmethod
    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]: ...
    @abc.abstractmethod
    def pte_write(self, pte: Value) -> bool | NDArray[np.bool_]: ...
    @abc.abstractmethod
    def pte_mkwrite(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_wrprotect(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_dirty(self, pte: Value) -> bool | NDArray[np.bool_]: ...
    @abc.abstractmethod
    def pte_mkdirty(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_mkclean(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_young(self, pte: Value) -> bool | NDArray[np.bool_]: ...
    @abc.abstractmethod
    def pte_mkyoung(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_mkold(self, pte: Value) -> Value: ...
    @abc.abstractmethod
    def pte_modify(self, pte: Value, prot: int) -> Value: ...
    @abc.abstractmethod
    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value: ...

    # -- upper levels and the root ------------------------------------------------------
    @abc.abstractmethod
    def empty_entry(self, i: int) -> int:
        """Value of an empty entry at level i (what a new table is filled with)."""

    @abc.abstractmethod
    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        """Entry at level i pointing to a level i+1 table at physical address table_pa."""

    @abc.abstractmethod
    def entry_kind(self, i: int, entry: Value) -> Value:
        """ENTRY_NONE / ENTRY_TABLE / ENTRY_LEAF / ENTRY_BAD for an upper-level entry."""

    @abc.abstractmethod
    def table_pa(self, i: int, entry: Value) -> Value:
        """Physical address of the next table an ENTRY_TABLE entry at level i points to."""

    @abc.abstractmethod
    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        """Large-page leaf at upper level i (pfn in base pages, aligned to the leaf size)."""

    @abc.abstractmethod
    def leaf_pfn(self, i: int, entry: Value) -> Value:
        """First base-page PFN an ENTRY_LEAF entry at upper level i maps."""

    @abc.abstractmethod
    def root_value(self, root_pa: int) -> int:
        """What the root register holds for a top table at root_pa (CR3, ASCE, ...)."""

    @abc.abstractmethod
    def root_table_pa(self, root: int) -> int:
        """Inverse of root_value: the top table's physical address."""


@attrs.frozen(kw_only=True)
class ArchMode:
    """One selectable (mode, profile) of an arch: format, helpers and memory model."""

    name: str
    profile: str
    fmt: PageTableFormat
    ops: PteOps = attrs.field(eq=False, repr=False)
    memory: MemoryModel
    #: Arch options that select this mode, e.g. (("mmu", "radix"), ("page_size", 65536)).
    options: tuple[tuple[str, object], ...] = ()
    #: Chosen when no option is given for this profile.
    default: bool = False
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ArchSpecError(f"mode {self.name}: unknown profile {self.profile!r}")
        if self.ops.fmt is not self.fmt:
            raise ArchSpecError(f"mode {self.name}/{self.profile}: ops.fmt is not this mode's fmt")
        limit = 1 << min(self.fmt.pa_bits, self.memory.max_physmem_bits)
        for r in self.memory.reserved:
            where = f"mode {self.name}/{self.profile}: reserved range {r}"
            if (r.start | r.size) % self.fmt.page_size:
                raise ArchSpecError(f"{where} is not aligned to the {self.fmt.page_size:#x}-byte page")
            if r.end > limit:
                raise ArchSpecError(
                    f"{where} ends beyond the {limit.bit_length() - 1} physical address bits "
                    f"(pa_bits={self.fmt.pa_bits}, MAX_PHYSMEM_BITS={self.memory.max_physmem_bits})"
                )

    def matches(self, options: Mapping[str, object]) -> bool:
        own = dict(self.options)
        own.setdefault("mode", self.name)
        return all(k in own and own[k] == v for k, v in options.items())


@attrs.frozen(kw_only=True)
class Unsupported:
    """A combination a user may ask for that the kernel did not have, with the reason."""

    options: tuple[tuple[str, object], ...]
    profiles: tuple[str, ...]
    reason: str


@attrs.frozen(kw_only=True)
class Capabilities:
    """What the arch claims; must agree with the hooks it implements."""

    #: The arch implements mixedmap_pte_special/mkspecial (some profile has the bit).
    pte_special: Support


@attrs.frozen(kw_only=True)
class ArchSpec:
    """Everything an arch plugin declares; returned by ``mixedmap_arch_spec``."""

    name: str = attrs.field(validator=attrs.validators.matches_re(r"[a-z][a-z0-9_]*"))
    aliases: tuple[str, ...] = ()
    api_version: int
    description: str = ""
    modes: tuple[ArchMode, ...]
    caps: Capabilities
    unsupported: tuple[Unsupported, ...] = ()

    def __attrs_post_init__(self) -> None:
        if not self.modes:
            raise ArchSpecError(f"arch {self.name}: no modes")
        has_bit = any(m.fmt.special_mask is not None for m in self.modes)
        if has_bit != (self.caps.pte_special is Support.YES):
            raise ArchSpecError(
                f"arch {self.name}: caps.pte_special={self.caps.pte_special.value} but "
                f"{'some' if has_bit else 'no'} mode has a special bit"
            )
        for prof in {m.profile for m in self.modes}:
            defaults = [m for m in self.modes if m.profile == prof and m.default]
            if len(defaults) != 1:
                raise ArchSpecError(f"arch {self.name}: profile {prof} needs exactly one default mode")
        for m in self.modes:
            if m.fmt.arch != self.name:
                raise ArchSpecError(f"arch {self.name}: mode {m.name} formats arch {m.fmt.arch!r}")

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(p for p in PROFILES if any(m.profile == p for m in self.modes))

    def select(self, profile: str, options: Mapping[str, object]) -> ArchMode:
        """The mode for ``profile`` and arch ``options`` (none given: the default)."""
        cands = [m for m in self.modes if m.profile == profile]
        if not cands:
            for u in self.unsupported:
                if profile in u.profiles and (not u.options or set(dict(u.options)) <= set(options)):
                    raise ProfileError(f"arch {self.name}, profile {profile}: {u.reason}")
            raise ProfileError(
                f"arch {self.name} has no kernel profile {profile!r}; it has {', '.join(self.profiles)}"
            )
        if not options:
            return next(m for m in cands if m.default)
        hits = [m for m in cands if m.matches(options)]
        if len(hits) > 1:
            # Options not given take the profile default's values (mode="region2" alone
            # means region2 without EDAT-1 when the default has edat1=False).
            dflt = dict(next(m for m in cands if m.default).options)
            for key in sorted({k for m in hits for k, _ in m.options} - set(options)):
                if key in dflt and len({dict(m.options).get(key) for m in hits}) > 1:
                    hits = [m for m in hits if dict(m.options).get(key) == dflt[key]] or hits
        if len(hits) > 1:
            hits = [m for m in hits if m.default] or hits
        if len(hits) == 1:
            return hits[0]
        for u in self.unsupported:
            if (
                profile in u.profiles
                and all(dict(u.options).get(k) == v for k, v in options.items() if k in dict(u.options))
                and set(dict(u.options)) <= set(options)
            ):
                raise ProfileError(f"arch {self.name}, profile {profile}: {u.reason}")
        avail = "; ".join(f"{m.name}: " + ", ".join(f"{k}={v!r}" for k, v in m.options) for m in cands)
        given = ", ".join(f"{k}={v!r}" for k, v in options.items())
        what = "ambiguous" if hits else "no mode matches"
        raise ProfileError(f"arch {self.name}, profile {profile}: {what} {given}; modes: {avail}")


@attrs.frozen(kw_only=True)
class XipDriverModel:
    """An XIP device driver an arch offers; ``create(machine, **params)`` makes a device.

    A declaration, like the rest of this module: the device contract it creates lives in
    :mod:`mixedmap.xip.device`, above the machine, so this value type imports neither.
    """

    name: str
    description: str = ""
    profiles: tuple[str, ...] = ()
    params: tuple[tuple[str, str], ...] = ()
    #: Parameters that create a small device on a 256 MiB machine (the conformance suite
    #: uses them to exercise the driver's contract); () means "the defaults do".
    example: tuple[tuple[str, object], ...] = ()
    create: Callable[..., Any] = attrs.field(eq=False, repr=False)
    #: ``image_params(machine, size)``: parameters for one device holding a read-only image of
    #: ``size`` bytes on ``machine`` (the guests experiment); None: the driver cannot hold one.
    image_params: Callable[[Machine, int], dict[str, Any]] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    #: The <=2.6.25 (pre-series) behaviour: parameters that give the image the memmap the old
    #: XIP API needed, or, as a string, why the driver has no such behaviour to model.
    pre_series: tuple[tuple[str, object], ...] | str = ""
    #: The device's pages are the machine's RAM (brd): a guest needs RAM for the image.
    ram_backed: bool = False
