"""Deliberately broken variants of the first-party arches, as installable arch plugins.

A :class:`Mutant` names a first-party base arch (x86_64, s390x, ppc64), the kernel profile
it is run under, and one bug. :func:`plugin_for` builds its plugin object: the
``mixedmap_arch_spec`` hook returns the base arch's spec under the mutant's own arch name
(the default mode of every profile, so cross-mode declarations stay visible; only the run
profile's mode carries the bug), the helpers are a :class:`DelegatingOps` subclass that
forwards to the real ops, and the primitive hooks are the mutant's own.
:func:`distribution_files` gives what ``make_distribution`` needs to install it under an
entry point, so ``mixedmap conformance`` finds it the way it finds any installed arch.

This file is copied verbatim into every mutant distribution (module
``mixedmap_meta_mutants``): it imports only the public mixedmap API, numpy and attrs, and
reaches the base arch through its entry point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap import (
    API_VERSION,
    ArchSpec,
    Capabilities,
    PageTableFormat,
    PteOps,
    Support,
    XipDriverModel,
    bits,
    hookimpl,
)
from mixedmap.bits import Value

LIBRARY_MODULE = "mixedmap_meta_mutants"
SHORT = {"x86_64": "x86", "s390x": "s390", "ppc64": "ppc"}
#: Base arches whose XIP driver models refuse a machine of another arch name (s390's DCSS
#: layer exists on "s390x" only): their mutants offer no driver, so the xip area skips.
XIP_TIED_TO_NAME = ("s390x",)
#: Run profile per base arch for mutants that do not need another one.
KERNEL = "2.6.27"


def base_plugin(arch: str) -> Any:
    """The installed first-party plugin module behind entry point ``arch``."""
    for ep in metadata.entry_points(group="mixedmap"):
        if ep.name == arch:
            return ep.load()
    raise LookupError(f"base arch {arch!r} is not installed")


def base_installed(arch: str) -> bool:
    return any(ep.name == arch for ep in metadata.entry_points(group="mixedmap"))


# -- helpers: forward everything, a mutant overrides one method ----------------------------
class DelegatingOps(PteOps):
    """The real arch's helpers under a renamed format (``ops.fmt`` must be the mode's fmt)."""

    def __init__(self, real: PteOps, fmt: PageTableFormat) -> None:
        self.real = real
        self.fmt = fmt

    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        return self.real.pfn_pte(pfn, prot)

    def pte_pfn(self, pte: Value) -> Value:
        return self.real.pte_pfn(pte)

    def pte_present(self, pte: Value) -> bool | NDArray[np.bool_]:
        return self.real.pte_present(pte)

    def pte_none(self, pte: Value) -> bool | NDArray[np.bool_]:
        return self.real.pte_none(pte)

    def pte_write(self, pte: Value) -> bool | NDArray[np.bool_]:
        return self.real.pte_write(pte)

    def pte_mkwrite(self, pte: Value) -> Value:
        return self.real.pte_mkwrite(pte)

    def pte_wrprotect(self, pte: Value) -> Value:
        return self.real.pte_wrprotect(pte)

    def pte_dirty(self, pte: Value) -> bool | NDArray[np.bool_]:
        return self.real.pte_dirty(pte)

    def pte_mkdirty(self, pte: Value) -> Value:
        return self.real.pte_mkdirty(pte)

    def pte_mkclean(self, pte: Value) -> Value:
        return self.real.pte_mkclean(pte)

    def pte_young(self, pte: Value) -> bool | NDArray[np.bool_]:
        return self.real.pte_young(pte)

    def pte_mkyoung(self, pte: Value) -> Value:
        return self.real.pte_mkyoung(pte)

    def pte_mkold(self, pte: Value) -> Value:
        return self.real.pte_mkold(pte)

    def pte_modify(self, pte: Value, prot: int) -> Value:
        return self.real.pte_modify(pte, prot)

    def mk_swap_pte(self, swp_type: Value, offset: Value) -> Value:
        return self.real.mk_swap_pte(swp_type, offset)

    def empty_entry(self, i: int) -> int:
        return self.real.empty_entry(i)

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        return self.real.mk_table_entry(i, table_pa)

    def entry_kind(self, i: int, entry: Value) -> Value:
        return self.real.entry_kind(i, entry)

    def table_pa(self, i: int, entry: Value) -> Value:
        return self.real.table_pa(i, entry)

    def mk_leaf(self, i: int, pfn: Value, prot: int) -> Value:
        return self.real.mk_leaf(i, pfn, prot)

    def leaf_pfn(self, i: int, entry: Value) -> Value:
        return self.real.leaf_pfn(i, entry)

    def root_value(self, root_pa: int) -> int:
        return self.real.root_value(root_pa)

    def root_table_pa(self, root: int) -> int:
        return self.real.root_table_pa(root)


class WrprotectLosesDirty(DelegatingOps):
    """``pte_wrprotect`` also cleans the entry: fork/mprotect would lose dirty data."""

    def pte_wrprotect(self, pte: Value) -> Value:
        return self.real.pte_mkclean(self.real.pte_wrprotect(pte))


class PtePfnOffByOne(DelegatingOps):
    """``pte_pfn`` answers the next frame."""

    def pte_pfn(self, pte: Value) -> Value:
        return self.real.pte_pfn(pte) + 1


class PfnPteDropsTopBit(DelegatingOps):
    """``pfn_pte`` masks the PFN one bit too narrow: the highest PFN bit is lost."""

    def pfn_pte(self, pfn: Value, prot: int) -> Value:
        return self.real.pfn_pte(bits.clear(pfn, self.fmt.max_pfn >> 1), prot)


class MkyoungNoop(DelegatingOps):
    """``pte_mkyoung`` returns the entry unchanged (right only where the hardware keeps
    the referenced bit outside the PTE, which this format does not claim)."""

    def pte_mkyoung(self, pte: Value) -> Value:
        return pte


class TableEntryWrongBit(DelegatingOps):
    """``mk_table_entry`` ORs in x86's PS bit (0x80): the entry claims a large page."""

    WRONG_BIT = 0x80

    def mk_table_entry(self, i: int, table_pa: Value) -> Value:
        return self.real.mk_table_entry(i, table_pa) | self.WRONG_BIT


class EmptyEntryZero(DelegatingOps):
    """New tables are filled with 0 at every level (the x86 habit; s390 needs the
    invalid bits: 0x400 in a page table, 0x20/0x24 in segment/region tables)."""

    def empty_entry(self, i: int) -> int:
        return 0


class ModifyDropsSpecial(DelegatingOps):
    """``pte_modify`` loses the special bit, without declaring the kernel quirk."""

    def pte_modify(self, pte: Value, prot: int) -> Value:
        return bits.clear(self.real.pte_modify(pte, prot), self.fmt.special_mask or 0)


# -- format changes (applied with attrs.evolve, so the core's validators run) -------------
def special_bit_in_pfn(fmt: PageTableFormat) -> PageTableFormat:
    """Declare the lowest PFN bit as the special bit."""
    return attrs.evolve(fmt, special_mask=fmt.pfn_mask & -fmt.pfn_mask)


def level_shift_off_by_one(fmt: PageTableFormat) -> PageTableFormat:
    """The level above the PTE level is declared one bit higher than it is."""
    levels = list(fmt.levels)
    levels[-2] = attrs.evolve(levels[-2], shift=levels[-2].shift + 1)
    return attrs.evolve(fmt, levels=tuple(levels))


def wrong_byteorder(fmt: PageTableFormat) -> PageTableFormat:
    """The other byte order than the hardware's, in the run profile's mode only.

    Flipped in every mode, the model would stay self-consistent (it stores and reads entries
    in the declared order): no arch-agnostic test can see that, only an outside reference
    such as the independent walkers under tests/walkers/.
    """
    return attrs.evolve(fmt, byteorder="big" if fmt.byteorder == "little" else "little")


def writable_private(fmt: PageTableFormat) -> PageTableFormat:
    """``__P011`` (private read/write) is the shared writable pgprot: COW cannot work."""
    pmap = list(fmt.protection_map)
    pmap[0x3] = pmap[0x8 | 0x3]
    return attrs.evolve(fmt, protection_map=tuple(pmap))


# -- plugin objects -------------------------------------------------------------------------
class MutantPlugin:
    """The spec hook and the base arch's XIP driver models; no special hooks."""

    def __init__(self, mutant: Mutant) -> None:
        self.mutant = mutant

    @functools.cached_property
    def spec(self) -> ArchSpec:
        return build_spec(self.mutant)

    @hookimpl
    def mixedmap_arch_spec(self) -> ArchSpec:
        return self.spec

    @hookimpl
    def mixedmap_xip_drivers(self) -> Iterable[XipDriverModel]:
        if self.mutant.base in XIP_TIED_TO_NAME:
            return ()
        hook = getattr(base_plugin(self.mutant.base), "mixedmap_xip_drivers", None)
        return tuple(hook()) if hook is not None else ()


class SpecialPlugin(MutantPlugin):
    """Plus ``pte_special``/``pte_mkspecial`` as "test/set fmt.special_mask"."""

    @hookimpl
    def mixedmap_pte_special(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        return self.special(fmt, ptes)

    @hookimpl
    def mixedmap_pte_mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        return self.mkspecial(fmt, ptes)

    def mask(self, fmt: PageTableFormat) -> np.uint64:
        return np.uint64(fmt.special_mask or 0)

    def special(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        return np.asarray((ptes & self.mask(fmt)) != 0, dtype=np.bool_)

    def mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        return np.asarray(ptes | self.mask(fmt), dtype=np.uint64)

    def mutated(self, fmt: PageTableFormat) -> bool:
        return fmt.profile == self.mutant.kernel


class SpecialAlwaysFalse(SpecialPlugin):
    """``pte_special`` never sees the bit ``pte_mkspecial`` sets."""

    def special(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        if not self.mutated(fmt):
            return super().special(fmt, ptes)
        return np.zeros(ptes.shape, dtype=np.bool_)


class MkspecialFlipsAnother(SpecialPlugin):
    """``pte_mkspecial`` also flips the bit next to the special bit (outside the PFN)."""

    def mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        if not self.mutated(fmt):
            return super().mkspecial(fmt, ptes)
        mask = fmt.special_mask or 0
        other = mask << 1 if not (mask << 1) & fmt.pfn_mask else mask >> 1
        return np.asarray((ptes | np.uint64(mask)) ^ np.uint64(other), dtype=np.uint64)


class SpecialHooksInPfn(SpecialPlugin):
    """The hooks test and set the lowest PFN bit; the format still declares the real bit."""

    def mask(self, fmt: PageTableFormat) -> np.uint64:
        if not self.mutated(fmt):
            return super().mask(fmt)
        return np.uint64(fmt.pfn_mask & -fmt.pfn_mask)


class MkspecialCleansDirty(SpecialPlugin):
    """``pte_mkspecial`` also clears x86's _PAGE_DIRTY (bit 6): a fresh ``pfn_pte`` is clean,
    so B0-B9 and "mkspecial changes only its bit on pfn_pte values" never see it."""

    def mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        if not self.mutated(fmt):
            return super().mkspecial(fmt, ptes)
        return np.asarray((ptes | self.mask(fmt)) & ~np.uint64(0x40), dtype=np.uint64)


class MkspecialToggles(SpecialPlugin):
    """``pte_mkspecial`` XORs the bit: right once, wrong on a PTE that is special already."""

    def mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        if not self.mutated(fmt):
            return super().mkspecial(fmt, ptes)
        return np.asarray(ptes ^ self.mask(fmt), dtype=np.uint64)


class PfnValidNextSection(SpecialPlugin):
    """``mixedmap_pfn_valid`` right for RAM, but also true for the section after every
    section with a memmap (an override that rounds the end up)."""

    @hookimpl
    def mixedmap_pfn_valid(self, memmap: Any, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        valid: NDArray[np.bool_] = memmap.pfn_valid(pfns)
        step = np.uint64(memmap.pages_per_section)
        prev = np.where(pfns >= step, pfns - step, pfns)
        return np.asarray(valid | memmap.pfn_valid(prev), dtype=np.bool_)


class PfnValidEverything(SpecialPlugin):
    """``mixedmap_pfn_valid`` answers True for every frame, device memory without a
    memmap included (an arch override that forgot the memory model)."""

    @hookimpl
    def mixedmap_pfn_valid(self, memmap: object, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        return np.ones(pfns.shape, dtype=np.bool_)


class TablePaLow32(DelegatingOps):
    """An upper-level ``table_pa`` that keeps only the low 32 bits of the next table's
    address: right while every table lies below 4 GiB."""

    def table_pa(self, i: int, entry: Value) -> Value:
        pa = self.real.table_pa(i, entry)
        if isinstance(pa, np.ndarray):
            return np.asarray(pa & np.uint64(0xFFFFFFFF), dtype=np.uint64)
        return int(pa) & 0xFFFFFFFF


# -- the mutants ------------------------------------------------------------------------
@attrs.frozen(kw_only=True)
class Mutant:
    """One bug in one first-party arch, run under one kernel profile."""

    name: str
    base: str
    what: str
    #: Suite areas expected to catch it; ("load",) when the plugin host must refuse it.
    catch: tuple[str, ...]
    kernel: str = KERNEL
    ops: type[DelegatingOps] = DelegatingOps
    plugin: type[MutantPlugin] = SpecialPlugin
    fmt_change: Callable[[PageTableFormat], PageTableFormat] | None = None
    #: For load-time mutants: a fragment of the error the host must report.
    load_error: str = ""
    #: A bug the suite let through before issue 15's checks: with those deselected
    #: (:data:`NEW_CHECKS`) the suite must pass it, so the new checks are what catch it.
    passed_old_suite: bool = False

    @property
    def group(self) -> tuple[str, str]:
        return (self.base, self.kernel)

    @property
    def is_control(self) -> bool:
        return not self.catch


def build_spec(m: Mutant) -> ArchSpec:
    """The base spec, renamed, with the default mode of each profile; the bug in ``m.kernel``."""
    base: ArchSpec = base_plugin(m.base).mixedmap_arch_spec()
    modes = []
    for mode in base.modes:
        if not mode.default:
            continue
        fmt = attrs.evolve(mode.fmt, arch=m.name)
        ops_cls = DelegatingOps
        if mode.profile == m.kernel:
            if m.fmt_change is not None:
                fmt = m.fmt_change(fmt)
            ops_cls = m.ops
        modes.append(attrs.evolve(mode, fmt=fmt, ops=ops_cls(mode.ops, fmt)))
    has_bit = any(md.fmt.special_mask is not None for md in modes)
    return ArchSpec(
        name=m.name,
        api_version=API_VERSION,
        description=f"MUTANT of {base.name} ({m.kernel}): {m.what}",
        modes=tuple(modes),
        caps=Capabilities(pte_special=Support.YES if has_bit else Support.NO),
        unsupported=base.unsupported,
    )


#: The checks added for the four kinds of porting bug the suite let through (issue 15).
NEW_CHECKS = (
    "test_helpers_change_only_what_they_name",
    "test_mkspecial_changes_only_the_special_bit",
    "test_helpers_are_idempotent",
    "test_tables_high_in_physical_memory",
    "test_cow_and_fork_with_tables_high",
    "test_pfn_valid_at_every_section_boundary",
)

MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        name="mut_x86_specialinpfn",
        base="x86_64",
        what="special bit declared inside the PFN field (0x1000)",
        catch=("load",),
        fmt_change=special_bit_in_pfn,
        load_error="lies inside the PFN field",
    ),
    Mutant(
        name="mut_x86_specialhookinpfn",
        base="x86_64",
        what="special hooks test/set the lowest PFN bit; the format declares bit 9",
        catch=("helpers", "pgtable"),
        plugin=SpecialHooksInPfn,
    ),
    Mutant(
        name="mut_ppc_specialfalse",
        base="ppc64",
        what="pte_special always False",
        catch=("helpers", "pgtable", "mm", "equivalence"),
        plugin=SpecialAlwaysFalse,
    ),
    Mutant(
        name="mut_x86_mkspecialflip",
        base="x86_64",
        what="pte_mkspecial also flips bit 10",
        catch=("helpers", "pgtable"),
        plugin=MkspecialFlipsAnother,
    ),
    Mutant(
        name="mut_x86_byteorder",
        base="x86_64",
        what="byteorder 'big' declared for the 2.6.27 mode (the CPU and the arch's other modes: little)",
        catch=("contract",),
        fmt_change=wrong_byteorder,
    ),
    Mutant(
        name="mut_x86_levelshift",
        base="x86_64",
        what="pmd level shift 22 instead of 21",
        catch=("load",),
        fmt_change=level_shift_off_by_one,
        load_error="does not follow",
    ),
    Mutant(
        name="mut_x86_pfnvalidall",
        base="x86_64",
        kernel="2.6.26",
        what="mixedmap_pfn_valid True for device memory without a memmap (scheme B profile)",
        catch=("mm", "xip", "equivalence"),
        plugin=PfnValidEverything,
    ),
    Mutant(
        name="mut_s390_capsnohooks",
        base="s390x",
        what="caps.pte_special=YES but the special hooks are not implemented",
        catch=("load",),
        plugin=MutantPlugin,
        load_error="declares pte_special=yes but does not implement",
    ),
    Mutant(
        name="mut_x86_wrprotectdirty",
        base="x86_64",
        what="pte_wrprotect loses the dirty bit",
        catch=("helpers",),
        ops=WrprotectLosesDirty,
    ),
    Mutant(
        name="mut_s390_pfnoffbyone",
        base="s390x",
        what="pte_pfn off by one",
        catch=("contract",),
        ops=PtePfnOffByOne,
    ),
    Mutant(
        name="mut_ppc_pfntopbit",
        base="ppc64",
        what="pfn_pte drops the top PFN bit",
        catch=("contract",),
        ops=PfnPteDropsTopBit,
    ),
    Mutant(
        name="mut_ppc_mkyoungnoop",
        base="ppc64",
        what="pte_mkyoung is a no-op",
        catch=("helpers",),
        ops=MkyoungNoop,
    ),
    Mutant(
        name="mut_x86_tableentry",
        base="x86_64",
        what="mk_table_entry sets the PS bit (0x80)",
        catch=("contract", "pgtable"),
        ops=TableEntryWrongBit,
    ),
    Mutant(
        name="mut_s390_emptyentry",
        base="s390x",
        what="empty_entry is 0 at every level (s390 needs the invalid bits)",
        catch=("contract",),
        ops=EmptyEntryZero,
    ),
    Mutant(
        name="mut_x86_modifydropsspecial",
        base="x86_64",
        what="pte_modify drops the special bit (quirk not declared)",
        catch=("helpers",),
        ops=ModifyDropsSpecial,
    ),
    Mutant(
        name="mut_ppc_protmapwritable",
        base="ppc64",
        what="protection_map __P011 is the shared writable pgprot",
        catch=("helpers", "mm"),
        fmt_change=writable_private,
    ),
    Mutant(
        name="mut_x86_mkspecialclean",
        base="x86_64",
        what="pte_mkspecial also clears the dirty bit",
        catch=("helpers",),
        plugin=MkspecialCleansDirty,
        passed_old_suite=True,
    ),
    Mutant(
        name="mut_x86_mkspecialxor",
        base="x86_64",
        what="pte_mkspecial toggles the special bit (XOR) instead of setting it",
        catch=("helpers",),
        plugin=MkspecialToggles,
        passed_old_suite=True,
    ),
    Mutant(
        name="mut_x86_tablepa32",
        base="x86_64",
        what="table_pa keeps only the low 32 bits of the next table's address",
        catch=("pgtable", "mm"),
        ops=TablePaLow32,
        passed_old_suite=True,
    ),
    Mutant(
        name="mut_x86_pfnvalidnext",
        base="x86_64",
        what="mixedmap_pfn_valid also true for the section after every section with a memmap",
        catch=("mm",),
        plugin=PfnValidNextSection,
        passed_old_suite=True,
    ),
)


def controls(mutants: Iterable[Mutant] = MUTANTS) -> tuple[Mutant, ...]:
    """One unmutated twin per (base, kernel): it must pass, or the mutants prove nothing."""
    groups = dict.fromkeys(m.group for m in mutants)
    return tuple(
        Mutant(
            name=f"ctl_{SHORT[base]}_{kernel.replace('.', '')}",
            base=base,
            kernel=kernel,
            what="no bug (control)",
            catch=(),
        )
        for base, kernel in groups
    )


def everything() -> Iterator[Mutant]:
    yield from MUTANTS
    yield from controls()


def by_name(name: str) -> Mutant:
    for m in everything():
        if m.name == name:
            return m
    raise KeyError(name)


def plugin_for(name: str) -> MutantPlugin:
    """The plugin object an entry point of a mutant distribution points at."""
    m = by_name(name)
    return m.plugin(m)


def distribution_files(m: Mutant) -> tuple[str, dict[str, str], dict[str, str]]:
    """(distribution name, modules, entry points) for ``make_distribution``."""
    stub = f"from {LIBRARY_MODULE} import plugin_for\n\nPLUGIN = plugin_for({m.name!r})\n"
    modules = {LIBRARY_MODULE: Path(__file__).read_text(), f"{m.name}_plugin": stub}
    return f"mixedmap-meta-{m.name.replace('_', '-')}", modules, {m.name: f"{m.name}_plugin:PLUGIN"}
