"""The ``mixedmap verify`` driver: build random mappings, ask external walkers, compare.

Per (arch, profile, mode) case it maps, through the public :class:`PageTable` API and in
batches (``map_range`` per run of pages), runs of 4 KiB pages with every distinct pgprot
the arch's ``protection_map`` gives (private and shared, PROT_NONE included), special and
normal, and large leaves at every level the mode allows, leaving holes between them. The
expected answer is what was asked for (VA -> PFN), not what the model's ``translate``
reads back, so a corrupted entry in memory is a disagreement. The tables are written as a
vmcore (:mod:`mixedmap.vmcore`, shaped by the arch's :mod:`.targets` entry; an arch without
one is reported, not fatal) and every mapped VA plus a sample of unmapped VAs goes through
each external walker that can walk the format, one VA per call (the tools' API).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mixedmap._log import get_logger
from mixedmap.errors import MixedmapError
from mixedmap.machine import Machine
from mixedmap.pgtable import PageTable
from mixedmap.plugin.registry import ArchRegistry, default_registry
from mixedmap.verify.base import Answer, Built, Walker
from mixedmap.verify.drgn_walker import DrgnWalker
from mixedmap.verify.targets import VerifyTarget, extra_walkers, target
from mixedmap.verify.unicorn_s390x import UnicornS390xWalker
from mixedmap.verify.unicorn_walker import UnicornWalker
from mixedmap.verify.volatility_walker import VolatilityWalker
from mixedmap.vmcore import write_vmcore

log = get_logger("mixedmap.verify")

#: Pages per run of 4 KiB mappings, and the VA slot each run sits in (runs leave holes).
RUN_PAGES = 32
SLOT = 2 << 20
_RWX = ("r", "rw", "rx", "rwx", "none", "w", "wx", "x")

#: Walkers the issue names that this version does not drive yet, with the reason (none left:
#: unicorn's s390x DAT is :mod:`.unicorn_s390x`; its EDAT-1 gap is a per-page rule).
NOT_BUILT: dict[str, str] = {}


class VerifyError(MixedmapError):
    """Bad verify input (an unknown arch, profile or mode, or no walker usable at all)."""


@attrs.frozen(kw_only=True)
class CaseSpec:
    arch: str
    profile: str
    mode: str
    options: tuple[tuple[str, object], ...]

    @property
    def label(self) -> str:
        edat = dict(self.options).get("edat1")
        return f"{self.arch}/{self.profile}/{self.mode}" + ("+edat1" if edat else "")


@attrs.frozen(kw_only=True)
class Disagreement:
    va: int
    expected: int | None
    prot: str
    special: bool
    size: int
    said: Answer
    entries: tuple[str, ...]

    def describe(self) -> str:
        exp = "fault" if self.expected is None else f"{self.expected:#x}"
        got = "fault" if self.said.pa is None else f"{self.said.pa:#x}"
        how = f"{self.prot}{' special' if self.special else ''} {self.size:#x}" if self.prot else "hole"
        return (
            f"VA {self.va:#x}: expected {exp} ({how}), walker said {got}"
            f"{' (' + self.said.detail + ')' if self.said.detail else ''}"
            f"{'; ' + self.said.problem if self.said.problem else ''}; entries: " + ", ".join(self.entries)
        )


@attrs.frozen(kw_only=True)
class Cell:
    """One format x walker result."""

    case: str
    walker: str
    agreed: int = 0
    total: int = 0
    #: Pages the walker's own documented rule does not map, per rule (counted, not hidden).
    rules: tuple[tuple[str, int], ...] = ()
    disagreements: tuple[Disagreement, ...] = ()
    #: Set when the walker did not run: why (not installed + hint, cannot walk + reason).
    skipped: str | None = None
    seconds: float = 0.0


@attrs.frozen(kw_only=True)
class Report:
    cells: tuple[Cell, ...]
    not_built: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return not any(c.disagreements for c in self.cells)


def all_walkers() -> list[Walker]:
    """The built-in walkers, then those the installed plugins' VerifyTargets bring."""
    return [DrgnWalker(), VolatilityWalker(), UnicornWalker(), UnicornS390xWalker(), *extra_walkers()]


def case_specs(
    arches: Sequence[str] = (),
    kernels: Sequence[str] = (),
    modes: Sequence[str] = (),
    registry: ArchRegistry | None = None,
) -> list[CaseSpec]:
    """Every installed (arch, profile, mode) matching the filters; unknown names are errors."""
    reg = registry or default_registry()
    names = reg.names
    for a in arches:
        if a not in names:
            raise VerifyError(f"unknown arch {a!r}; installed: {', '.join(names)}")
    out: list[CaseSpec] = []
    for b in reg:
        if arches and b.name not in arches:
            continue
        for m in b.spec.modes:
            if (kernels and m.profile not in kernels) or (modes and m.name not in modes):
                continue
            out.append(CaseSpec(arch=b.name, profile=m.profile, mode=m.name, options=tuple(m.options)))
    if not out:
        raise VerifyError(
            f"no installed mode matches arch {list(arches) or 'any'}, kernel {list(kernels) or 'any'}, "
            f"mode {list(modes) or 'any'}"
        )
    return out


def _prots(machine: Machine) -> list[tuple[str, int]]:
    seen: dict[int, str] = {}
    for rwx in _RWX:
        for shared in (False, True):
            try:
                v = machine.fmt.prot(rwx, shared=shared)
            except ValueError:
                continue
            seen.setdefault(v, f"{rwx}{'/shared' if shared else ''}")
    return [(name, v) for v, name in seen.items()]


def build(
    spec: CaseSpec, pages: int, seed: int, workdir: Path, registry: ArchRegistry | None = None
) -> Built:
    """Map about ``pages`` pages at random for ``spec`` and write the case's vmcore."""
    rng = np.random.default_rng(seed)
    options: dict[str, Any] = dict(spec.options)
    m = Machine(spec.arch, spec.profile, ram="64M", registry=registry, mode=spec.mode, **options)
    pt = m.new_mm().pt
    fmt, ps, shift = m.fmt, m.page_size, m.fmt.page_shift
    limit = 1 << (fmt.va_bits - 1)
    chunk = limit // 8
    max_pfn = (1 << min(fmt.pa_bits, 40)) >> shift
    prots = _prots(m)
    vas: list[int] = []
    pas: list[int] = []
    prot_l: list[str] = []
    special_l: list[bool] = []
    size_l: list[int] = []
    run = RUN_PAGES
    slot = max(SLOT, run * ps * 2)
    n_slots = 3 * chunk // slot
    n_runs = min(-(-pages // run), n_slots)
    slots = rng.choice(n_slots, size=n_runs, replace=False)
    can_special = m.mode.has_special
    holes: list[int] = []
    for k, s in enumerate(sorted(slots.tolist())):
        base = chunk + s * slot
        start = base + int(rng.integers(0, slot // ps - run)) * ps
        name, prot = prots[k % len(prots)]
        special = bool(can_special and rng.integers(0, 2))
        pfn0 = int(rng.integers(1, max_pfn - run))
        pt.map_range(start, np.arange(pfn0, pfn0 + run, dtype=np.uint64), prot, special)
        off = np.arange(run, dtype=np.int64) * ps + int(rng.integers(0, ps // 8)) * 8
        vas += (start + off).tolist()
        pas += ((pfn0 << shift) + off).tolist()
        prot_l += [name] * run
        special_l += [special] * run
        size_l += [ps] * run
        holes.append(start - ps if start > base else start + run * ps)
    # large leaves: each level that can be a leaf, in a chunk of its own
    for i, lv in enumerate(fmt.levels[:-1]):
        size = lv.page_size
        try:
            pt.leaf_level(size)
        except MixedmapError:
            continue
        area = chunk * (4 + i)
        if chunk < 8 * size:
            continue
        per = size >> shift
        for j in range(4):
            name, prot = prots[j % len(prots)]
            va = area + j * 2 * size
            pfn0 = int(rng.integers(1, max(2, max_pfn // per - 1))) * per
            pt.map(va, pfn0, prot, special=False, page_size=size)
            for at in (0, size - ps + 8, int(rng.integers(0, size // 8)) * 8):
                vas.append(va + at)
                pas.append((pfn0 << shift) + at)
                prot_l.append(name)
                special_l.append(False)
                size_l.append(size)
            holes.append(va + size)
    n_mapped = len(vas)
    # unmapped sample: next to runs, and random VAs in the chunk that has no mappings
    holes += (int(v) * ps for v in rng.integers(1, chunk // ps, size=max(16, pages // 20)))
    vas += holes
    pas += [-1] * len(holes)
    prot_l += [""] * len(holes)
    special_l += [False] * len(holes)
    size_l += [0] * len(holes)
    label = spec.label
    path = workdir / (label.replace("/", "_").replace("+", "_") + ".vmcore")
    no_vmcore = _write_core(m, pt, path)
    return Built(
        label=label, machine=m, pt=pt, vmcore=path, vas=np.array(vas, dtype=np.uint64),
        pas=np.array(pas, dtype=np.int64), prot=tuple(prot_l), special=np.array(special_l),
        size=np.array(size_l, dtype=np.uint64), n_mapped=n_mapped, no_vmcore=no_vmcore,
    )  # fmt: skip


def _write_core(m: Machine, pt: PageTable, path: Path) -> str | None:
    """The case's vmcore, as the arch's VerifyTarget says; None, or why none was written."""
    t = target(m.arch)
    if not isinstance(t, VerifyTarget):
        return t
    with open(path, "wb") as fh:
        write_vmcore(m, fh, [pt.root], elf_machine=t.elf_machine, page_offset=t.base(m.fmt.mode),
                     extra_info=t.vmcoreinfo)  # fmt: skip
    return None


def _entries(built: Built, va: int) -> tuple[str, ...]:
    return tuple(f"{s.level}[{s.index}]@{s.entry_pa:#x}={s.value:#018x}" for s in built.pt.walk(va))


def compare(built: Built, walker: Walker) -> Cell:
    """Every VA of ``built`` through ``walker``; a documented walker rule is counted apart."""
    t0 = time.perf_counter()
    vas = built.vas.tolist()
    answers = walker.translate(built, vas)
    levels = {lv.name: i for i, lv in enumerate(built.machine.fmt.levels)}
    agreed = 0
    rules: dict[str, int] = {}
    bad: list[Disagreement] = []
    for j, (va, ans) in enumerate(zip(vas, answers, strict=True)):
        want = int(built.pas[j])
        expected = None if want < 0 else want
        if j < built.n_mapped and ans.pa is None:
            leaf = built.pt.lookup(va)
            rule = walker.rule(built, va, leaf.value, levels[leaf.level]) if leaf else None
            if rule is not None:
                rules[rule] = rules.get(rule, 0) + 1
                continue
        if ans.pa == expected and not ans.problem:
            agreed += 1
            continue
        bad.append(
            Disagreement(
                va=va, expected=expected, prot=built.prot[j], special=bool(built.special[j]),
                size=int(built.size[j]), said=ans, entries=_entries(built, va),
            )
        )  # fmt: skip
    return Cell(
        case=built.label, walker=walker.name, agreed=agreed, total=len(vas) - sum(rules.values()),
        rules=tuple(sorted(rules.items())), disagreements=tuple(bad),
        seconds=round(time.perf_counter() - t0, 3),
    )  # fmt: skip


def run(
    specs: Iterable[CaseSpec],
    workdir: Path,
    *,
    pages: int = 2500,
    seed: int = 0,
    walkers: Sequence[Walker] | None = None,
    registry: ArchRegistry | None = None,
    corrupt: int = 0,
) -> Report:
    """The whole matrix. ``corrupt`` > 0 flips a PFN bit in that many leaf PTEs per case
    after the vmcore's tables were built (a self-test that disagreements are reported)."""
    t0 = time.perf_counter()
    ws = list(walkers) if walkers is not None else all_walkers()
    missing = {w.name: w.missing() for w in ws}
    cells: list[Cell] = []
    for k, spec in enumerate(specs):
        built = build(spec, pages, seed + k, workdir, registry)
        if corrupt:
            built = _corrupt(built, corrupt)
        for w in ws:
            why = missing[w.name] or built.no_vmcore or w.cannot_walk(built.machine)
            if why:
                cells.append(Cell(case=built.label, walker=w.name, skipped=why))
                continue
            cells.append(compare(built, w))
            log.info("verify_cell", case=built.label, walker=w.name, agreed=cells[-1].agreed,
                     total=cells[-1].total, seconds=cells[-1].seconds)  # fmt: skip
    for w in ws:
        close = getattr(w, "close", None)
        if close is not None:
            close()
    return Report(cells=tuple(cells), not_built=tuple(NOT_BUILT.items()),
                  seconds=round(time.perf_counter() - t0, 3))  # fmt: skip


def _corrupt(built: Built, count: int) -> Built:
    """Flip the lowest PFN bit of the first ``count`` mapped 4 KiB PTEs, rewrite the vmcore."""
    ps = built.machine.page_size
    done = 0
    for j in range(built.n_mapped):
        if done >= count or int(built.size[j]) != ps:
            continue
        va = int(built.vas[j])
        leaf = built.pt.lookup(va)
        if leaf is None:
            continue
        built.pt.write_pte(leaf.entry_pa, leaf.value ^ (1 << built.machine.fmt.page_shift))
        done += 1
    _write_core(built.machine, built.pt, built.vmcore)
    return built
