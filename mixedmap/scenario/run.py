"""Running a scenario's steps on one (arch, kernel): every step's outcome as plain data.

A step that faults is an outcome (SIGSEGV, SIGBUS, an errno, BUG for a kernel ``BUG_ON``),
not a crash; the run goes on with the next step, as a test program checking the kernel would.
Outcomes hold no pfn or PTE value in the keys that ``expect`` compares across arches unless
the author asks for them, so one file states the kernel's answer for every arch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mixedmap.errors import SIGBUS, SIGSEGV, FaultError, KernelErrno, MixedmapError, ProfileError, VMBug
from mixedmap.machine import Machine, parse_size
from mixedmap.mm import memory
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.gup import get_user_pages, get_user_pages_fast
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, VM, VMA, mnemonics
from mixedmap.plugin.registry import ArchRegistry
from mixedmap.rules import BY_NAME, consulted
from mixedmap.scenario import schema as S
from mixedmap.scenario.load import parse_pfn_spec
from mixedmap.trace import Tracer
from mixedmap.xip.device import RangeDevice, XipDevice
from mixedmap.xip.fs import Inode, XipFS


@attrs.frozen
class StepResult:
    index: int
    op: str
    label: str
    outcome: dict[str, Any]
    skipped: bool = False
    failures: tuple[str, ...] = ()
    #: names of the kernel rules (:mod:`mixedmap.rules`) the step consulted, first-asked first
    rules: tuple[str, ...] = ()


@attrs.frozen
class RunResult:
    arch: str
    kernel: str
    mode: str
    steps: tuple[StepResult, ...]
    processes: dict[str, dict[str, Any]]
    machine: dict[str, int]
    #: a setup failure (device the arch cannot create...) instead of steps
    error: str | None = None
    #: why this (arch, kernel) was not run (the arch lacks the profile)
    skipped: str | None = None
    #: the arch's PTE format under this kernel has a special bit / a lockless GUP walk
    special: bool = False
    lockless_gup: bool = False

    @property
    def failures(self) -> int:
        return sum(len(s.failures) for s in self.steps) + (1 if self.error else 0)

    @property
    def key(self) -> str:
        return f"{self.arch}/{self.kernel}"


def _printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)


def _label(st: S.Step) -> str:
    parts = [st.OP]
    for name in ("process", "map", "child", "file", "name"):
        v = getattr(st, name, None)
        if v is not None:
            parts.append(f"{name}={v}")
    if hasattr(st, "map"):
        parts.append(f"page={st.page}")  # type: ignore[attr-defined]
    for name in ("pages", "prot", "write", "fast", "repeat", "pfn", "size", "data"):
        v = getattr(st, name, None)
        if v not in (None, False, ""):
            parts.append(f"{name}={v}")
    return " ".join(parts)


def _errname(exc: MixedmapError) -> str:
    """The outcome name: the signal a fault raised, the errno, or BUG for a ``BUG_ON``."""
    if isinstance(exc, FaultError):
        return exc.signal
    if isinstance(exc, VMBug):
        return "BUG"
    if isinstance(exc, KernelErrno):
        return exc.errname
    return "error"


def _file_pattern(name: str, npages: int, ps: int, holes: set[int]) -> bytes:
    """Recognisable bytes: every page repeats "<file>:<page>;" (holes stay zero)."""
    out = bytearray(npages * ps)
    for p in range(npages):
        if p not in holes:
            unit = f"{name}:{p};".encode()
            out[p * ps : (p + 1) * ps] = (unit * (ps // len(unit) + 1))[:ps]
    return bytes(out)


class ScenarioRun:
    """One machine running one scenario's steps."""

    def __init__(
        self,
        scen: S.Scenario,
        arch: str,
        kernel: str,
        *,
        registry: ArchRegistry | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.scen = scen
        opts = scen.machine.options.get(arch, {})
        self.m = Machine(arch, kernel, scen.machine.ram, registry=registry, **opts)
        if tracer is not None:
            tracer.bind(arch=arch, kernel=self.m.profile.name).attach_to(self.m)
        self.ps = self.m.page_size
        self.devices: dict[str, XipDevice] = {}
        self.files: dict[str, Inode] = {}
        self.procs: dict[str, MM] = {}
        self.maps: dict[tuple[str, str], int] = {}
        self.baseline: dict[int, tuple[int, int]] = {}
        self.held: list[np.ndarray[Any, Any]] = []

    # -- setup -------------------------------------------------------------------------
    def setup(self) -> None:
        """Devices, filesystems, files, processes: a failure here is the run's error."""
        kernel = self.m.profile.name
        for d in self.scen.devices:
            over = d.arch.get(self.m.arch)
            if over is not None and over.kernels is not None and kernel not in over.kernels:
                over = None
            driver = over.driver if over else d.driver
            params = dict(over.params if over else d.params)
            if driver == "range":
                start, size = parse_size(d.start if d.start is not None else 0), parse_size(d.size)
                per = d.kernel.get(kernel)
                memmap = d.memmap if per is None or per.memmap is None else per.memmap
                self.m.add_region(d.name, start, size, memmap=memmap, owner="scenario")
                self.devices[d.name] = RangeDevice(self.m, d.name, start, size, d.read_only, kaddr_base=start)
            else:
                params.setdefault("name", d.name)
                self.devices[d.name] = self.m.create_xip_device(driver, **params)
        # Only devices that hold files get a filesystem: a PCI BAR stand-in is never mounted
        # (and a 6.18 mount of a device without a dax_device would be -EINVAL).
        mounted = {f.device for f in self.scen.files}
        fss = {name: XipFS(dev, read_only=None) for name, dev in self.devices.items() if name in mounted}
        for f in self.scen.files:
            fs = fss[f.device]
            if f.text is not None:
                data = f.text.encode()
                inode = fs.create(f.name, data=data, size=max(len(data), f.pages * self.ps))
            else:
                data = _file_pattern(f.name, f.pages, self.ps, set(f.holes))
                inode = fs.create(f.name, data=data, holes=f.holes)
            self.files[f"{f.device}/{f.name}"] = inode
        for p in self.scen.scenario.processes:
            self.procs[p] = self.m.new_mm()
        for st in self.scen.steps:
            spec = getattr(st, "pfn", None)
            if spec is not None and parse_pfn_spec(spec)[0] in ("device", "file", "ram", "pfn"):
                try:
                    pfn = self.pfn(spec, None)
                except MixedmapError:
                    continue  # a hole or a not-yet-allocated brd page: no baseline to take
                info = self.m.page(pfn)
                if info is not None:
                    self.baseline[pfn] = (info.refcount, info.mapcount)

    # -- helpers -----------------------------------------------------------------------
    def pfn(self, spec: str | int, proc: str | None) -> int:
        kind, ref, n = parse_pfn_spec(spec)
        if kind == "pfn":
            return n
        if kind == "ram":
            return n
        if kind == "device":
            frame = self.devices[ref].frame(n)
            if frame is None:
                raise MixedmapError(f"device {ref}: page {n} has no frame (yet)")
            return frame
        if kind == "file":
            inode = self.files[ref]
            return inode.fs.frame_of(inode, n)
        assert proc is not None
        va = self.maps[(proc, ref)] + n * self.ps
        slot = self.procs[proc].pt.pte_slot(va, allocate=False)
        pte = self.procs[proc].pt.read_pte(slot) if slot is not None else 0
        if slot is None or not self.procs[proc].ops.pte_present(pte):
            raise MixedmapError(f"pte:{ref}+{n}: nothing mapped at {va:#x}")
        return int(self.procs[proc].ops.pte_pfn(pte))

    def va(self, st: Any) -> int:
        base = self.maps.get((st.process, st.map))
        if base is None:  # the loader checked the name: its mmap step failed or did not run
            raise MixedmapError(f"{st.process} has no mapping {st.map!r}: its mmap did not succeed")
        return base + int(st.page) * self.ps

    def vma(self, st: Any) -> VMA:
        vma = self.procs[st.process].find_vma(self.va(st))
        if vma is None:
            raise SIGSEGV(f"no VMA at {self.va(st):#x}", self.va(st))
        return vma

    def span(self, st: Any) -> int:
        """Pages from st.page to st.pages or to the end of the VMA."""
        if getattr(st, "pages", None):
            return int(st.pages)
        vma = self.vma(st)
        return (vma.end - self.va(st)) // self.ps

    def applies(self, when: S.When | None) -> bool:
        if when is None:
            return True
        m = self.m
        if when.special is not None and when.special != (m.fmt.special_mask is not None):
            return False
        if when.lockless_gup is not None and when.lockless_gup != m.fmt.has_lockless_gup:
            return False
        if when.kernels is not None and m.profile.name not in when.kernels:
            return False
        if when.arches is not None and m.arch not in when.arches:
            return False
        if when.rules and any(BY_NAME[n].applies(m.profile) != want for n, want in when.rules.items()):
            return False
        return not when.struct_page or all(
            self.devices[d].has_struct_page == want for d, want in when.struct_page.items()
        )

    # -- steps -------------------------------------------------------------------------
    def step(self, st: S.Step) -> dict[str, Any]:
        handler: Callable[[Any], dict[str, Any]] = getattr(self, f"_op_{st.OP}")
        try:
            out = handler(st)
        except MixedmapError as exc:
            return {"outcome": _errname(exc), "detail": str(exc)}
        return {"outcome": "ok", **out}

    def _op_mmap(self, st: S.Mmap) -> dict[str, Any]:
        mm = self.procs[st.process]
        flags = (MAP_SHARED if st.shared else MAP_PRIVATE) | (MAP_POPULATE if st.populate else 0)
        file: Any = None
        if st.file is not None:
            mode = st.open or ("rw" if st.shared and "w" in st.prot else "r")
            file = self.files[st.file].fs.open(self.files[st.file].name, mode)
        elif st.device is not None:
            vm = 0
            for name in st.vm_flags:
                vm |= int(getattr(VM, name))

            def on_mmap(vma: VMA, vm: int = vm) -> None:
                vma.flags |= vm

            file = DeviceFile(st.device, on_mmap=on_mmap)
        else:
            flags |= MAP_ANONYMOUS
        addr = mm.mmap(st.pages * self.ps, st.prot, flags, file=file, pgoff=st.pgoff)
        self.maps[(st.process, st.name)] = addr
        vma = mm.find_vma(addr)
        assert vma is not None
        return {"addr": f"{addr:#x}", "vm_flags": mnemonics(vma.flags)}

    def _op_read(self, st: S.Read) -> dict[str, Any]:
        mm, va = self.procs[st.process], self.va(st) + st.offset
        acc = mm.access(va)
        return {"fault": acc.fault, "data": _printable(mm.read(va, st.length))}

    def _op_write(self, st: S.Write) -> dict[str, Any]:
        mm, va = self.procs[st.process], self.va(st) + st.offset
        acc = mm.access(va, write=True)
        mm.write(va, st.data.encode())
        return {"fault": acc.fault}

    def _op_touch(self, st: S.Touch) -> dict[str, Any]:
        mm, va = self.procs[st.process], self.va(st)
        faults: Counter[str] = Counter()
        for i in range(st.pages):
            faults[mm.access(va + i * self.ps, write=st.write).fault] += 1
        return {"fault": ",".join(sorted(faults)), "faults": dict(faults)}

    def _op_fault_in(self, st: S.FaultIn) -> dict[str, Any]:
        mm, va, n = self.procs[st.process], self.va(st), self.span(st)
        return {"mapped": int(mm.fault_in(va, n * self.ps, write=st.write))}

    def _op_munmap(self, st: S.Munmap) -> dict[str, Any]:
        self.procs[st.process].munmap(self.va(st), self.span(st) * self.ps)
        return {}

    def _op_mprotect(self, st: S.Mprotect) -> dict[str, Any]:
        self.procs[st.process].mprotect(self.va(st), self.span(st) * self.ps, st.prot)
        return {}

    def _op_gup(self, st: S.Gup) -> dict[str, Any]:
        mm, va = self.procs[st.process], self.va(st)
        fast = slow = fallbacks = 0
        reasons: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        pinned = 0
        for _ in range(st.repeat):
            try:
                if st.fast:
                    r = get_user_pages_fast(mm, va, st.pages, st.write)
                    pfns, fast, slow = r.pfns, fast + r.fast, slow + r.slow
                    if r.fallback_reason:
                        fallbacks += 1
                        reasons[r.fallback_reason] += 1
                else:
                    pfns = get_user_pages(mm, va, st.pages, st.write)
                    slow += int(pfns.size)
            except (KernelErrno, SIGBUS) as exc:
                errors[_errname(exc)] += 1
                if st.fast:
                    fallbacks += 1
                    reasons[getattr(exc, "fallback_reason", "") or "slow path failed"] += 1
                continue
            pinned = int(pfns.size)
            if st.keep:
                self.held.append(pfns)
            else:
                self.m.pages.put_page(pfns)
        out: dict[str, Any] = {"pinned": pinned, "calls": st.repeat}
        if st.fast:
            out.update(fast_pages=fast, slow_pages=slow, fallbacks=fallbacks, reasons=dict(reasons))
            out["reason"] = "; ".join(sorted(reasons))
        if errors:
            out["errors"] = dict(errors)
            if sum(errors.values()) == st.repeat:
                name = next(iter(errors))
                raise _Outcome(name, out)
        return out

    def _insert(self, st: Any, fn: Callable[[VMA, int, int], None]) -> dict[str, Any]:
        vma, va = self.vma(st), self.va(st)
        pfn = self.pfn(st.pfn, st.process)
        fn(vma, va, pfn)
        return self._pte_view(st.process, va)

    def _op_vm_insert_pfn(self, st: S.VmInsertPfn) -> dict[str, Any]:
        return self._insert(st, memory.vm_insert_pfn)

    def _op_vm_insert_mixed(self, st: S.VmInsertMixed) -> dict[str, Any]:
        return self._insert(st, memory.vm_insert_mixed)

    def _op_vm_insert_page(self, st: S.VmInsertPage) -> dict[str, Any]:
        return self._insert(st, memory.vm_insert_page)

    def _op_remap_pfn_range(self, st: S.RemapPfnRange) -> dict[str, Any]:
        vma, va = self.vma(st), self.va(st)
        memory.remap_pfn_range(vma, va, self.pfn(st.pfn, st.process), self.span(st) * self.ps)
        return {"vm_flags": mnemonics(vma.flags)}

    def _op_zap_vma_ptes(self, st: S.ZapVmaPtes) -> dict[str, Any]:
        memory.zap_vma_ptes(self.vma(st), self.va(st), self.span(st) * self.ps)
        return {}

    def _op_fork(self, st: S.Fork) -> dict[str, Any]:
        self.procs[st.child] = self.procs[st.process].fork()
        for (p, name), addr in list(self.maps.items()):
            if p == st.process:
                self.maps[(st.child, name)] = addr
        return {}

    def _op_exit(self, st: S.Exit) -> dict[str, Any]:
        self.procs[st.process].exit()
        return {}

    def _op_truncate(self, st: S.Truncate) -> dict[str, Any]:
        size = st.size
        if isinstance(size, str) and size.strip().endswith("p"):  # "Np": N pages of this arch
            size = int(size.strip()[:-1], 0) * self.ps
        inode = self.files[st.file]
        inode.fs.truncate(inode, parse_size(size))
        return {}

    def _op_inspect(self, st: S.Inspect) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if st.process is not None:
            rss = self.procs[st.process].rss
            out.update(rss_file=rss["file"], rss_anon=rss["anon"])
        if st.map is not None:
            assert st.process is not None
            out.update(self._pte_view(st.process, self.va(st)))
        if st.pfn is not None:
            pfn = self.pfn(st.pfn, st.process)
            out.update(self._page_view(pfn))
        return out

    def _pte_view(self, proc: str, va: int) -> dict[str, Any]:
        mm = self.procs[proc]
        slot = mm.pt.pte_slot(va, allocate=False)
        pte = mm.pt.read_pte(slot) if slot is not None else int(mm.empty_pte)
        present = bool(mm.ops.pte_present(pte))
        out: dict[str, Any] = {"pte": f"{pte:#x}", "present": present}
        if present:
            vma = mm.find_vma(va)
            normal = vma is not None and memory.vm_normal_page(vma, va, pte) is not None
            pfn = int(mm.ops.pte_pfn(pte))
            out.update(
                special=bool(mm.pte_special_one(pte)),
                writable=bool(mm.ops.pte_write(pte)),
                normal=normal,
                pfn=pfn,
                **self._page_view(pfn),
            )
        return out

    def _page_view(self, pfn: int) -> dict[str, Any]:
        info = self.m.page(pfn)
        if info is None:
            return {"struct_page": False}
        out: dict[str, Any] = {"struct_page": True, "refcount": info.refcount, "mapcount": info.mapcount}
        out["page_flags"] = str(info.flags.name or int(info.flags))
        if pfn in self.baseline:
            r, m = self.baseline[pfn]
            out.update(refcount_delta=info.refcount - r, mapcount_delta=info.mapcount - m)
        return out

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> tuple[StepResult, ...]:
        results = []
        for i, st in enumerate(self.scen.steps):
            if not self.applies(st.when):
                results.append(StepResult(i, st.OP, _label(st), {}, skipped=True))
                continue
            with consulted() as seen:
                try:
                    out = self.step(st)
                except _Outcome as o:
                    out = {"outcome": o.name, **o.fields}
            asked = tuple(dict.fromkeys(r.name for r in seen))
            results.append(
                StepResult(i, st.OP, _label(st), out, failures=_compare(st.expect, out), rules=asked)
            )
        return tuple(results)

    def summary(self) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
        procs = {}
        for name, mm in self.procs.items():
            alive = mm in self.m.mms
            procs[name] = {
                "alive": alive,
                "rss_file": mm.rss["file"],
                "rss_anon": mm.rss["anon"],
                "pagetable_bytes": mm.pt.bytes_used if alive else 0,
                "vmas": [v.describe() for v in mm.vmas] if alive else [],
            }
        acc = self.m.accounting()
        acc["device_memmap_bytes"] = sum(self.m.memmap_bytes(n) for n in self.scen_regions())
        return procs, acc

    def scen_regions(self) -> list[str]:
        names = []
        for dev in self.devices.values():
            rng = dev.phys_range
            if rng is None:
                continue
            for r in self.m.regions:
                if r.start <= rng[0] < r.start + r.size:
                    names.append(r.name)
        return sorted(set(names))


class _Outcome(Exception):
    def __init__(self, name: str, fields: dict[str, Any]) -> None:
        self.name, self.fields = name, fields


def _compare(expect: Mapping[str, Any] | str | None, out: Mapping[str, Any]) -> tuple[str, ...]:
    if expect is None:
        return ()
    want = {"outcome": expect} if isinstance(expect, str) else dict(expect)
    fails = []
    for key, value in want.items():
        got = out.get(key)
        if got != value:
            fails.append(f"{key}: expected {value!r}, got {got!r}")
    return tuple(fails)


def run_one(
    scen: S.Scenario,
    arch: str,
    kernel: str,
    *,
    registry: ArchRegistry | None = None,
    tracer: Tracer | None = None,
    dump: Path | None = None,
) -> RunResult:
    """Run ``scen`` on one arch and kernel profile; setup failures become ``error``."""
    try:
        run = ScenarioRun(scen, arch, kernel, registry=registry, tracer=tracer)
    except ProfileError as exc:
        return RunResult(arch, kernel, "", (), {}, {}, skipped=str(exc))
    try:
        run.setup()
    except MixedmapError as exc:
        return RunResult(arch, kernel, run.m.mode.mode.name, (), {}, {}, error=f"setup: {exc}")
    steps = run.run()
    procs, acc = run.summary()
    if dump is not None:
        from mixedmap.dump import dump_machine

        dump_machine(run.m, dump, f"{arch}-{kernel}")
    fmt = run.m.fmt
    return RunResult(
        arch, kernel, run.m.mode.mode.name, steps, procs, acc,
        special=fmt.special_mask is not None, lockless_gup=fmt.has_lockless_gup,
    )  # fmt: skip
