"""JSON-ready records of what the library says: arches, walks, entry layouts, scenario steps.

Every number shown by the explorer comes from a library call made here (``PageTable.walk``
and ``lookup``, the arch's ``pte_*`` helpers, ``Machine.page``, ``ScenarioRun``,
:func:`mixedmap.scenario.diff.diff`), so the page and ``mixedmap walk``/``layout``/``pte
decode`` cannot disagree. The page only renders these records.

:class:`Explorer` is the one mutable thing: the machine the user is mapping pages into. Each
change is validated by the library before anything is stored, and a change of arch builds the
new machine before dropping the old one, so a refused request leaves the machine as it was.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from mixedmap._log import get_logger
from mixedmap.arch import BitField, PageTableFormat
from mixedmap.errors import MixedmapError
from mixedmap.machine import Machine
from mixedmap.mm import memory
from mixedmap.mm.mm import MM
from mixedmap.pgtable import PageTable, decode_bits, pte_helpers, table_fields
from mixedmap.plugin.registry import ArchRegistry, BoundMode
from mixedmap.profiles import PROFILES
from mixedmap.scenario import schema as S
from mixedmap.scenario.diff import diff, to_json
from mixedmap.scenario.load import bundled, load, loads
from mixedmap.scenario.run import ScenarioRun, run_one
from mixedmap.trace import Tracer

log = get_logger("mixedmap.explore")

#: RAM of the explorer's machine: the same as ``mixedmap walk`` uses, so tables land alike.
RAM = "1G"


@attrs.frozen
class ApiError(Exception):
    """A request the library refused: ``field`` names the culprit (``va``, ``pfn``, ``arch``...)."""

    field: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, "field": self.field}


def parse_int(field: str, value: object) -> int:
    """An int from JSON: a number or a decimal/0x-hex string (as the CLI takes them)."""
    if isinstance(value, bool):
        raise ApiError(field, f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip().replace("_", ""), 0)
        except ValueError:
            pass
    raise ApiError(field, f"{value!r} is not an integer (decimal or 0x-hex)")


# -- arches ------------------------------------------------------------------------------------


def arches(registry: ArchRegistry) -> list[dict[str, Any]]:
    """Installed arches, their profiles and the modes each profile offers (default first)."""
    out = []
    for b in registry:
        spec = b.spec
        modes: dict[str, list[str]] = {}
        for m in sorted(spec.modes, key=lambda m: not m.default):
            modes.setdefault(m.profile, []).append(m.name)
        out.append({"name": spec.name, "profiles": list(spec.profiles), "modes": modes})
    return out


def bind(registry: ArchRegistry, arch: str, kernel: str | None, mode: str | None) -> BoundMode:
    """The bound mode, with the library's refusal turned into an error naming the culprit."""
    try:
        binding = registry.bind(arch)
    except MixedmapError as exc:
        raise ApiError("arch", str(exc)) from None
    if kernel is not None and kernel not in PROFILES:
        raise ApiError("kernel", f"unknown kernel profile {kernel!r}; profiles: {', '.join(PROFILES)}")
    try:
        return binding.mode(kernel, **({"mode": mode} if mode else {}))
    except MixedmapError as exc:
        raise ApiError("mode" if mode else "kernel", str(exc)) from None


# -- entries -----------------------------------------------------------------------------------


def fields_of(fmt: PageTableFormat, level: str) -> tuple[BitField, ...]:
    """The bit fields of a ``level`` entry (the PTE's for the last level)."""
    return fmt.pte_bits if level == fmt.levels[-1].name else fmt.level(level).bits


def entry_record(fmt: PageTableFormat, level: str, value: int, kind: str | None = None) -> dict[str, Any]:
    """An entry's value, its named fields (which are set, what a multi-bit field holds);
    ``kind == "table"`` leaves out the flags a table pointer's address covers."""
    fields = fields_of(fmt, level)
    if kind == "table":
        fields = table_fields(fields)
    return {
        "value": f"{value:#018x}",
        "width": fmt.entry_size * 8,
        "fields": [
            {
                "name": f.name,
                "mask": f"{f.mask:#x}",
                "shift": f.shift,
                "width": f.width,
                "bits": f"{f.shift + f.width - 1}:{f.shift}" if f.width > 1 else str(f.shift),
                "kind": f.kind,
                "doc": f.doc,
                "value": hex((value & f.mask) >> f.shift) if f.kind == "field" else bool(value & f.mask),
                "set": bool(value & f.mask),
            }
            for f in fields
        ],
        "set": list(decode_bits(value, fields)),
    }


def layout(bm: BoundMode, level: str | None = None) -> dict[str, Any]:
    """The entry's fields for ``mixedmap layout`` (the PTE unless ``level`` names another)."""
    fmt = bm.fmt
    name = level or fmt.levels[-1].name
    if name not in [lv.name for lv in fmt.levels]:
        raise ApiError("level", f"{name!r}; {fmt.arch} has {', '.join(lv.name for lv in fmt.levels)}")
    rec = entry_record(fmt, name, 0)
    return {
        "arch": fmt.arch,
        "mode": fmt.mode,
        "kernel": fmt.profile,
        "level": name,
        "byteorder": fmt.byteorder,
        "special_mask": None if fmt.special_mask is None else hex(fmt.special_mask),
        "fields": rec["fields"],
    }


def walk(pt: PageTable, mem_read: Callable[[int, int], bytes], va: int) -> dict[str, Any]:
    """``mixedmap walk``'s record plus, per level, the VA bits that index it, the entry's
    fields and the bytes as they are stored in memory (read back from physical memory)."""
    fmt = pt.fmt
    try:
        steps = pt.walk(va)
    except MixedmapError as exc:
        raise ApiError("va", str(exc)) from None
    leaf = pt.lookup(va)
    levels = {lv.name: lv for lv in fmt.levels}
    out_steps = []
    for n, s in enumerate(steps):
        lv = levels[s.level]
        raw = mem_read(s.entry_pa, fmt.entry_size)
        rec = {
            "level": s.level,
            "hw_name": s.hw_name,
            "table_pa": f"{s.table_pa:#x}",
            "index": s.index,
            "va_bits": f"{lv.shift + lv.index_bits - 1}:{lv.shift}",
            "entry_pa": f"{s.entry_pa:#x}",
            "kind": s.kind,
            "flags": list(s.flags),
            "bytes": raw.hex(" "),
            "next_table_pa": steps[n + 1].table_pa if n + 1 < len(steps) else None,
            **entry_record(fmt, s.level, s.value, s.kind),
        }
        if rec["next_table_pa"] is not None:
            rec["next_table_pa"] = f"{rec['next_table_pa']:#x}"
        if n == len(fmt.levels) - 1:
            rec["helpers"] = pte_helpers(pt.mode, s.value)
        out_steps.append(rec)
    return {
        "arch": fmt.arch,
        "mode": fmt.mode,
        "kernel": fmt.profile,
        "byteorder": fmt.byteorder,
        "root": f"{pt.root:#x}",
        "root_name": fmt.root_name,
        "va": f"{va:#x}",
        "steps": out_steps,
        "pa": None if leaf is None else f"{leaf.pa:#x}",
        "page_size": None if leaf is None else f"{leaf.page_size:#x}",
        "offset": None if leaf is None else f"{va & (leaf.page_size - 1):#x}",
    }


# -- the interactive machine -------------------------------------------------------------------


class Explorer:
    """The machine and page table the page maps into; one per app, guarded by a lock."""

    def __init__(self, registry: ArchRegistry, arch: str, kernel: str | None, mode: str | None) -> None:
        self.registry = registry
        self.lock = threading.Lock()
        self._machine, self._pt = self._build(arch, kernel, mode)
        self.mapped: list[dict[str, Any]] = []

    def _build(self, arch: str, kernel: str | None, mode: str | None) -> tuple[Machine, PageTable]:
        bm = bind(self.registry, arch, kernel, mode)
        m = Machine(
            bm.fmt.arch,
            bm.fmt.profile,
            ram=RAM,
            registry=self.registry,
            **({"mode": mode} if mode else {}),
        )
        return m, m.new_pagetable()

    def configure(self, arch: str, kernel: str | None, mode: str | None) -> dict[str, Any]:
        """A fresh machine for (arch, kernel, mode); on a refusal the old one stays."""
        with self.lock:
            self._machine, self._pt = self._build(arch, kernel, mode)
            self.mapped = []
            log.info("explore.configure", arch=arch, kernel=kernel, mode=mode)
            return self._state()

    def state(self) -> dict[str, Any]:
        with self.lock:
            return self._state()

    def _state(self) -> dict[str, Any]:
        fmt = self._pt.fmt
        return {
            "arch": fmt.arch,
            "kernel": fmt.profile,
            "mode": fmt.mode,
            "root": f"{self._pt.root:#x}",
            "root_name": fmt.root_name,
            "byteorder": fmt.byteorder,
            "page_size": f"{fmt.page_size:#x}",
            "va_bits": fmt.va_bits,
            "pa_bits": fmt.pa_bits,
            "levels": [
                {
                    "name": lv.name,
                    "hw_name": lv.hw_name,
                    "va_bits": f"{lv.shift + lv.index_bits - 1}:{lv.shift}",
                }
                for lv in fmt.levels
            ],
            "special_mask": None if fmt.special_mask is None else hex(fmt.special_mask),
            "mapped": list(self.mapped),
        }

    def map(self, va: object, pfn: object, prot: object = "rw", special: object = False) -> dict[str, Any]:
        """``PageTable.map`` one page; the library checks VA, pfn and prot before writing."""
        address, frame = parse_int("va", va), parse_int("pfn", pfn)
        if not isinstance(prot, str):
            raise ApiError("prot", f"{prot!r} is not a protection string (r, rw, rx, rwx, none)")
        with self.lock:
            fmt = self._pt.fmt
            if not 0 <= frame < fmt.max_pfn:
                raise ApiError("pfn", f"pfn {frame:#x} is beyond {fmt.pa_bits} physical address bits")
            try:
                self._pt.map(address, pfn=frame, prot=prot, special=bool(special))
            except MixedmapError as exc:
                raise ApiError(_culprit(str(exc)), str(exc)) from None
            except ValueError as exc:
                raise ApiError("prot", str(exc)) from None
            self.mapped.append(
                {"va": f"{address:#x}", "pfn": f"{frame:#x}", "prot": prot, "special": bool(special)}
            )
            log.info("explore.map", va=address, pfn=frame, prot=prot, special=bool(special))
            return self._state()

    def walk(self, va: object) -> dict[str, Any]:
        address = parse_int("va", va)
        with self.lock:
            return walk(self._pt, self._machine.mem.read, address)

    def layout(self, level: str | None) -> dict[str, Any]:
        with self.lock:
            return layout(self._pt.mode, level)


def _culprit(message: str) -> str:
    """Which input a library refusal names (its messages start with or mention it)."""
    low = message.lower()
    for word in ("pfn", "prot", "va"):
        if low.startswith(word) or f" {word} " in low or f"{word}=" in low:
            return word
    return "va"


# -- scenarios ---------------------------------------------------------------------------------


def scenarios() -> dict[str, str]:
    """Bundled scenario names and descriptions."""
    return bundled()


def load_scenario(name: str | None = None, text: str | None = None) -> tuple[str, S.Scenario]:
    """A bundled scenario (or a path) by ``name``, or TOML ``text``; errors name the culprit."""
    try:
        if text is not None:
            return "<uploaded>", loads(text, "<uploaded>")
        if not name:
            raise ApiError("scenario", "give a bundled scenario name or the TOML text")
        return load(name)
    except MixedmapError as exc:
        raise ApiError("scenario", str(exc)) from None


def _pte_row(run: ScenarioRun, mm: MM, va: int) -> dict[str, Any] | None:
    """One PTE as ``inspect`` reports it (present/special/writable/normal, the page's counts)."""
    slot = mm.pt.pte_slot(va, allocate=False)
    if slot is None:
        return None
    pte = mm.pt.read_pte(slot)
    if mm.ops.pte_none(pte):
        return None
    present = bool(mm.ops.pte_present(pte))
    row: dict[str, Any] = {"va": f"{va:#x}", "pte": f"{pte:#018x}", "present": present}
    if present:
        vma = mm.find_vma(va)
        pfn = int(mm.ops.pte_pfn(pte))
        info = run.m.page(pfn)
        row.update(
            special=bool(mm.pte_special_one(pte)),
            writable=bool(mm.ops.pte_write(pte)),
            normal=vma is not None and memory.vm_normal_page(vma, va, pte) is not None,
            pfn=f"{pfn:#x}",
            struct_page=info is not None,
            refcount=None if info is None else info.refcount,
            mapcount=None if info is None else info.mapcount,
        )
    return row


def snapshot(run: ScenarioRun, walks: bool = True) -> dict[str, Any]:
    """Every process's PTEs, RSS and VMAs, the struct pages of the pfns they map, and (with
    ``walks``) the full walk of every present PTE's VA, as the machine is now."""
    procs: dict[str, Any] = {}
    pages: dict[str, Any] = {}
    for name, mm in run.procs.items():
        alive = mm in run.m.mms
        rows: list[dict[str, Any]] = []
        walked: dict[str, Any] = {}
        for vma in mm.vmas if alive else []:
            for va in range(vma.start, vma.end, run.ps):
                row = _pte_row(run, mm, va)
                if row is None:
                    continue
                rows.append(row)
                if row["present"]:
                    pages.setdefault(row["pfn"], {"refcount": row["refcount"], "mapcount": row["mapcount"]})
                    if walks:
                        walked[row["va"]] = walk(mm.pt, run.m.mem.read, va)
        procs[name] = {
            "alive": alive,
            "rss": dict(mm.rss),
            "vmas": [v.describe() for v in mm.vmas] if alive else [],
            "ptes": rows,
            "walks": walked,
        }
    return {"processes": procs, "pages": pages}


def step_through(
    scen: S.Scenario, arch: str, kernel: str, registry: ArchRegistry, *, walks: bool = True
) -> dict[str, Any]:
    """The run step by step: each step's result, then the machine and trace events after it.

    Results are those of one whole run (:func:`run_one`, so end-of-run leak failures are
    there too). Step ``k``'s state is that of a fresh :class:`ScenarioRun` of the first ``k + 1`` steps
    (runs are deterministic, so it is the state the whole run passes through), and its events
    are the trace lines that run wrote after the first ``k`` steps' run stopped writing.
    """
    bind(registry, arch, kernel, None)
    whole = run_one(scen, arch, kernel, registry=registry)
    if whole.skipped or whole.error:
        raise ApiError(
            "kernel" if whole.skipped else "scenario", f"{arch}/{kernel}: {whole.skipped or whole.error}"
        )
    out_steps: list[dict[str, Any]] = []
    seen = 0  # trace lines the previous prefix wrote: this step's events come after them
    setup_events: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mixedmap-explore-") as tmp:
        for k in range(len(scen.steps) + 1):
            part = attrs.evolve(scen, steps=scen.steps[:k])
            path = Path(tmp) / f"trace-{k}.jsonl"
            with Tracer(path) as tracer:
                try:
                    run = ScenarioRun(part, arch, kernel, registry=registry, tracer=tracer)
                    run.setup()
                except MixedmapError as exc:
                    raise ApiError("scenario", f"{arch}/{kernel}: setup: {exc}") from None
                run.run()
            events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if k == 0:
                setup_events, seen = events, len(events)
                continue
            r = whole.steps[k - 1]  # the outcome as the whole run reports it (leaks too)
            out_steps.append(
                {
                    "index": r.index,
                    "op": r.op,
                    "label": r.label,
                    "note": scen.steps[k - 1].note,
                    "skipped": r.skipped,
                    "outcome": r.outcome,
                    "failures": list(r.failures),
                    "rules": list(r.rules),
                    "events": events[seen:],
                    **snapshot(run, walks=walks),
                }
            )
            seen = len(events)
    return {
        "scenario": scen.scenario.name,
        "description": scen.scenario.description,
        "arch": arch,
        "kernel": kernel,
        "mode": whole.mode,
        "failures": whole.failures,
        "setup_events": setup_events,
        "steps": out_steps,
    }


def kernel_diff(scen: S.Scenario, arch: str, registry: ArchRegistry) -> dict[str, Any]:
    """:func:`mixedmap.scenario.diff.diff` of the scenario on one arch, its kernels or all."""
    bind(registry, arch, None, None)
    kernels = tuple(k for k in (scen.scenario.kernels or PROFILES) if k in registry.bind(arch).spec.profiles)
    return to_json(diff(scen, kernels, [arch], registry=registry))
