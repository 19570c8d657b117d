"""Running a scenario's steps on one (arch, kernel): every step's outcome as plain data.

A step that faults is an outcome (SIGSEGV, SIGBUS, an errno, BUG for a kernel ``BUG_ON``),
not a crash; the run goes on with the next step, as a test program checking the kernel would.
Outcomes hold no pfn or PTE value in the keys that ``expect`` compares across arches unless
the author asks for them, so one file states the kernel's answer for every arch.
"""

from __future__ import annotations

import errno
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from mixedmap.errors import (
    SIGBUS,
    SIGSEGV,
    FaultError,
    KernelErrno,
    MixedmapError,
    ProfileError,
    UnsupportedOperation,
    VMBug,
)
from mixedmap.machine import Machine, parse_size
from mixedmap.mm import memory, vmf
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.gup import (
    folio_maybe_dma_pinned,
    get_user_pages,
    get_user_pages_fast,
    pin_user_pages,
    pin_user_pages_fast,
    unpin_user_pages,
    unpin_user_pages_dirty_lock,
)
from mixedmap.mm.mm import MM, parse_prot
from mixedmap.mm.vma import (
    MAP_ANONYMOUS,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    VM,
    VMA,
    FaultResult,
    mnemonics,
)
from mixedmap.plugin.registry import ArchRegistry
from mixedmap.rules import BY_NAME, GUP_PIN_COUNTING_BIAS, PIN_USER_PAGES, consulted, require
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
class Leak:
    """References or pins a ``gup`` step kept that nothing released by the end of the run.

    In the kernel nothing releases them either: ``exit_mmap`` drops the PTEs' references but
    not a pinner's (mm/gup.c pins are the driver's, e.g. until its DMA completes), so a page
    whose pin is never unpinned stays allocated after its mm is gone.
    """

    pfn: int
    #: pins (``kind == "pin"``, FOLL_PIN) or references (``"ref"``, FOLL_GET) still held
    count: int
    kind: str
    #: the step that took them, its process and mapping
    step: int
    process: str
    map: str
    #: the step says ``leak = true``: the file states the leak, it is not a failure
    expected: bool = False

    def __str__(self) -> str:
        what = "pin(s) (unpin_user_pages)" if self.kind == "pin" else "reference(s) (put_page)"
        return f"pfn {self.pfn:#x}: {self.count} {what} still held at the end of the run"


@attrs.frozen
class Hold:
    """What one call of a ``keep = true`` gup step holds until an ``unpin``/``put`` step."""

    step: int
    process: str
    map: str
    pin: bool
    pfns: tuple[int, ...]
    expected: bool


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
    #: references and pins still held at the end (an unexpected one is also a failure of
    #: the step that took it)
    leaks: tuple[Leak, ...] = ()

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
    for name in (
        "pages",
        "prot",
        "write",
        "fast",
        "pin",
        "longterm",
        "keep",
        "dirty",
        "repeat",
        "pfn",
        "size",
        "data",
    ):
        v = getattr(st, name, None)
        if v not in (None, False, ""):
            parts.append(f"{name}={v}")
    return " ".join(parts)


def _kernel_errname(code: int) -> str:
    """The name the kernel's headers give an errno: 95 is EOPNOTSUPP in include/uapi (the C
    library's errno module calls it ENOTSUP, an alias Linux defines only for user space)."""
    if code == errno.EOPNOTSUPP:
        return "EOPNOTSUPP"
    return errno.errorcode.get(code, str(code))


def _errname(exc: MixedmapError) -> str:
    """The outcome name: the signal a fault raised, the errno, or BUG for a ``BUG_ON``."""
    if isinstance(exc, FaultError):
        return exc.signal
    if isinstance(exc, VMBug):
        return "BUG"
    if isinstance(exc, KernelErrno):
        return _kernel_errname(exc.errno) if exc.errno else exc.errname
    if isinstance(exc, UnsupportedOperation):
        return "Unsupported"  # the kernel has no such function (mixedmap.rules.UnsupportedRule)
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
        self.held: list[Hold] = []
        self.index = -1  # the step running

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
        """``get_user_pages``/``get_user_pages_fast`` (FOLL_GET), or with ``pin``
        ``pin_user_pages``/``pin_user_pages_fast`` (FOLL_PIN, mm/gup.c 5.6; ``longterm``:
        FOLL_LONGTERM, 5.2). Without ``keep`` every call's pages are released at once
        (``put_page``, or ``unpin_user_pages`` for pins). A kernel without pin_user_pages
        answers Unsupported before anything changes."""
        mm, va = self.procs[st.process], self.va(st)
        if st.pin:
            require(PIN_USER_PAGES, self.m.profile, "pin_user_pages_fast" if st.fast else "pin_user_pages")
        fast = slow = fallbacks = 0
        reasons: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        pinned = 0
        for _ in range(st.repeat):
            try:
                if st.fast:
                    if st.pin:
                        r = pin_user_pages_fast(mm, va, st.pages, st.write, longterm=st.longterm)
                    else:
                        r = get_user_pages_fast(mm, va, st.pages, st.write)
                    pfns, fast, slow = r.pfns, fast + r.fast, slow + r.slow
                    if r.fallback_reason:
                        fallbacks += 1
                        reasons[r.fallback_reason] += 1
                else:
                    if st.pin:
                        pfns = pin_user_pages(mm, va, st.pages, st.write, longterm=st.longterm)
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
                held = tuple(int(p) for p in pfns.tolist())
                self.held.append(Hold(self.index, st.process, st.map, st.pin, held, st.leak))
            elif st.pin:
                unpin_user_pages(self.m, pfns)
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

    def _release(self, st: S.Unpin | S.Put, pin: bool) -> tuple[list[Hold], np.ndarray[Any, Any]]:
        mine = [h for h in self.held if h.process == st.process and h.map == st.map and h.pin == pin]
        if not mine:
            other = [h for h in self.held if h.process == st.process and h.map == st.map]
            hint = ""
            if other:
                hint = (
                    f"; step {other[0].step} holds FOLL_GET references there: release them with put"
                    if pin
                    else f"; step {other[0].step} holds FOLL_PIN pins there: release them with unpin"
                )
            what = "pins" if pin else "get_user_pages references"
            raise MixedmapError(
                f"{st.OP}: process {st.process!r} holds no {what} on {st.map!r} "
                f"(the gup steps that keep them failed, did not run or were released){hint}"
            )
        pfns = np.array([p for h in mine for p in h.pfns], dtype=np.uint64)
        return mine, pfns

    def _op_unpin(self, st: S.Unpin) -> dict[str, Any]:
        """mm/gup.c ``unpin_user_pages`` (5.6) of every pin ``st.process`` holds on the map, or
        ``unpin_user_pages_dirty_lock(make_dirty=true)`` with ``dirty`` (after DMA into them).
        Pins outlive ``exit``: a driver unpins after the mm is gone, and the last unpin frees."""
        require(
            PIN_USER_PAGES,
            self.m.profile,
            "unpin_user_pages_dirty_lock" if st.dirty else "unpin_user_pages",
        )
        mine, pfns = self._release(st, pin=True)
        before = int(self.m.pages.page_count(pfns).sum()) if pfns.size else 0
        if st.dirty:
            unpin_user_pages_dirty_lock(self.m, pfns, True)
        else:
            unpin_user_pages(self.m, pfns)
        self.held = [h for h in self.held if h not in mine]
        alive = self.m.pfn_valid(pfns) if pfns.size else np.zeros(0, dtype=np.bool_)
        after = int(self.m.pages.page_count(pfns[alive]).sum()) if alive.any() else 0
        return {"unpinned": int(pfns.size), "refcount_dropped": before - after}

    def _op_put(self, st: S.Put) -> dict[str, Any]:
        """``put_page`` of every FOLL_GET reference ``st.process`` holds on the map."""
        mine, pfns = self._release(st, pin=False)
        freed = self.m.pages.put_page(pfns)
        self.held = [h for h in self.held if h not in mine]
        return {"released": int(pfns.size), "freed": int(freed.size)}

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

    def _vmf(self, st: Any, fn: Callable[[VMA, int, int], FaultResult]) -> dict[str, Any]:
        """A ``vmf_insert_*`` (mm/memory.c, 4.17 on): the VM_FAULT_* code it returns (a
        fault handler's answer, so the outcome is ok whatever the code) and the PTE view."""
        vma, va = self.vma(st), self.va(st)
        ret = fn(vma, va, self.pfn(st.pfn, st.process))
        return {"vm_fault": ret.name or str(int(ret)), **self._pte_view(st.process, va)}

    def _op_vmf_insert_pfn(self, st: S.VmfInsertPfn) -> dict[str, Any]:
        return self._vmf(st, vmf.vmf_insert_pfn)

    def _op_vmf_insert_pfn_prot(self, st: S.VmfInsertPfnProt) -> dict[str, Any]:
        def call(vma: VMA, va: int, pfn: int) -> FaultResult:
            bits = parse_prot(st.prot)  # PROT_READ/WRITE/EXEC are VM_READ/WRITE/EXEC's values
            prot = self.procs[st.process].vm_get_page_prot(bits | (vma.flags & VM.SHARED))
            return vmf.vmf_insert_pfn_prot(vma, va, pfn, prot)

        return self._vmf(st, call)

    def _op_vmf_insert_mixed(self, st: S.VmfInsertMixed) -> dict[str, Any]:
        return self._vmf(st, vmf.vmf_insert_mixed)

    def _op_vmf_insert_mixed_mkwrite(self, st: S.VmfInsertMixedMkwrite) -> dict[str, Any]:
        return self._vmf(st, vmf.vmf_insert_mixed_mkwrite)

    def _op_vm_insert_pages(self, st: S.VmInsertPages) -> dict[str, Any]:
        """mm/memory.c ``vm_insert_pages`` (5.8): ``pages`` consecutive pfns from ``pfn``; the
        outcome is its errno (ok for 0), with ``inserted``/``not_inserted`` (``*num``)."""
        vma, va = self.vma(st), self.va(st)
        base = self.pfn(st.pfn, st.process)
        r = vmf.vm_insert_pages(vma, va, np.arange(base, base + st.pages, dtype=np.uint64))
        out = {
            "inserted": st.pages - r.not_inserted,
            "not_inserted": r.not_inserted,
            "vm_flags": mnemonics(vma.flags),
            **self._pte_view(st.process, va),
        }
        if r.err:
            raise _Outcome(_kernel_errname(-r.err), out)
        return out

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
        if PIN_USER_PAGES.applies(self.m.profile):
            out["pins"] = int(self.m.pages.pin_count(pfn)[0])
        if GUP_PIN_COUNTING_BIAS.applies(self.m.profile):
            out["maybe_dma_pinned"] = bool(folio_maybe_dma_pinned(self.m, pfn)[0])
        if pfn in self.baseline:
            r, m = self.baseline[pfn]
            out.update(refcount_delta=info.refcount - r, mapcount_delta=info.mapcount - m)
        return out

    # -- the whole run -----------------------------------------------------------------
    def run(self) -> tuple[StepResult, ...]:
        results = []
        for i, st in enumerate(self.scen.steps):
            self.index = i
            # The rules a `when` names are asked first: they are why the step runs or not,
            # and why its answer differs (mixedmap diff explains by the rules a step asked).
            with consulted() as seen:
                runs = self.applies(st.when)
                if runs:
                    try:
                        out = self.step(st)
                    except _Outcome as o:
                        out = {"outcome": o.name, **o.fields}
            asked = tuple(dict.fromkeys(r.name for r in seen))
            if not runs:
                results.append(StepResult(i, st.OP, _label(st), {}, skipped=True, rules=asked))
                continue
            results.append(
                StepResult(i, st.OP, _label(st), out, failures=_compare(st.expect, out), rules=asked)
            )
        return tuple(results)

    def leaks(self) -> tuple[Leak, ...]:
        """What the ``keep`` steps still hold, by step and pfn (see :class:`Leak`)."""
        out: list[Leak] = []
        merged: dict[tuple[int, int], list[Any]] = {}
        for h in self.held:
            for p in h.pfns:
                key = (h.step, p)
                if key not in merged:
                    merged[key] = [h, 0]
                merged[key][1] += 1
        for (step, pfn), (h, n) in merged.items():
            out.append(Leak(pfn, n, "pin" if h.pin else "ref", step, h.process, h.map, h.expected))
        return tuple(out)

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


def _leak_failure(leaks: list[Leak]) -> str:
    """One failure line for what one step still holds at the end of the run."""
    pins = sum(lk.count for lk in leaks if lk.kind == "pin")
    refs = sum(lk.count for lk in leaks if lk.kind == "ref")
    what = " and ".join(
        x
        for x in (
            f"{pins} pin(s) (release: unpin)" if pins else "",
            f"{refs} reference(s) (release: put)" if refs else "",
        )
        if x
    )
    shown = ", ".join(f"{lk.pfn:#x}" for lk in leaks[:8]) + (", ..." if len(leaks) > 8 else "")
    return f"leak: {what} on {len(leaks)} page(s) still held at the end of the run (pfn {shown}; or say leak = true)"


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
    leaks = run.leaks()
    if any(not lk.expected for lk in leaks):
        by_step: dict[int, list[Leak]] = {}
        for lk in leaks:
            if not lk.expected:
                by_step.setdefault(lk.step, []).append(lk)
        steps = tuple(
            attrs.evolve(s, failures=(*s.failures, _leak_failure(by_step[s.index])))
            if s.index in by_step
            else s
            for s in steps
        )
    procs, acc = run.summary()
    if dump is not None:
        from mixedmap.dump import dump_machine

        dump_machine(run.m, dump, f"{arch}-{kernel}")
    fmt = run.m.fmt
    return RunResult(
        arch, kernel, run.m.mode.mode.name, steps, procs, acc,
        special=fmt.special_mask is not None, lockless_gup=fmt.has_lockless_gup, leaks=leaks,
    )  # fmt: skip
