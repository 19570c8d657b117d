"""The "N guests share one XIP image" experiment (kernel-mm-semantics.md 7.3, 7.4, S14).

The series that introduced VM_MIXEDMAP argued: 100 guests that each mount one shared
read-only image (a z/VM DCSS) must each allocate struct pages for it, so the guests spend
more RAM on memmap than the image holds (64 bytes per 4 KiB page: break-even at 64 guests).
After the series (2.6.26) the DCSS has no struct page and is mapped with special PTEs.

:func:`run_guests` builds every guest as a real :class:`Machine`: the image device through
the arch's XIP driver model, an XIP filesystem with one fully allocated file (a header page,
then zeroed blocks: a built image, not a sparse file), a private read-only executable mapping
of all of it (what the guests' program loader did with binaries on the shared disk: ELF text
is mapped ``MAP_PRIVATE``, ``PROT_READ|PROT_EXEC``), faulted in with :meth:`MM.fault_in`.
Every figure is read back from the machine: the memmap of the device's memory, the mm's
page-table bytes, its present PTEs, RSS. Each guest is measured fully and then dropped (unless
``keep``), so a hundred 1 GiB guests fit in host memory.

Under 2.6.26/2.6.27 the image is XIP (``filemap_xip``); under 6.18 it is ext4 ``-o dax``
(:mod:`mixedmap.xip.dax`): the device must have ZONE_DEVICE struct pages for DAX at all, and
each page is mapped as a refcounted folio, so RSS counts the image. A device without DAX
(pmem without its memmap) cannot be mounted ``-o dax``: the result carries that reason.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from types import TracebackType
from typing import Any

import attrs
import numpy as np

from mixedmap._log import get_logger
from mixedmap.errors import EINVAL, MixedmapError, UnsupportedOperation
from mixedmap.machine import Machine
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_PRIVATE, PROT_EXEC, PROT_READ
from mixedmap.plugin.registry import ArchRegistry
from mixedmap.rules import FILEMAP_XIP
from mixedmap.xip.device import XipDevice
from mixedmap.xip.fs import XipFS

log = get_logger("mixedmap.guests")

#: The mapping each guest makes (see the module docstring for why private).
MAPPING = "MAP_PRIVATE, PROT_READ|PROT_EXEC"
#: Guests dropped between two explicit garbage collections (machines hold reference cycles).
_COLLECT_EVERY = 8

#: First bytes of every image: what the data-integrity check reads back through a mapping.
HEADER_MAGIC = b"MIXEDMAP XIP GUEST IMAGE\n"
#: Default worker processes at most (each holds one guest at a time: about 100 MiB).
MAX_WORKERS = 8
#: Guests a worker builds per task: small, so the progress bar moves guest by guest.
_CHUNK = 2


#: glibc mallopt parameters (malloc.h) and what tune_host_malloc sets them to.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD = 32 << 20  # glibc's maximum on 64-bit hosts
_TRIM_THRESHOLD = 256 << 20


def tune_host_malloc() -> bool:
    """Let glibc keep freed multi-MiB blocks for reuse instead of handing each back to the
    host kernel (mmap threshold, heap trim): every guest allocates and drops the same few
    MiB of numpy arrays, and without this each of them faults its pages in again, about
    18,000 minor faults and a third of a guest's CPU time. For processes that build guests
    (the CLI, pool workers); a library call leaves the caller's malloc alone. False where
    there is no glibc."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def default_workers() -> int:
    """One worker per core, at most :data:`MAX_WORKERS`."""
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1))


@attrs.frozen(kw_only=True)
class GuestRecord:
    """What one guest spends on the image, read from its machine."""

    index: int
    #: struct page bytes behind the image's memory (the device's memmap).
    memmap_bytes: int
    #: RAM held by the mm's page tables (per-table allocation size, ``mm.pt.bytes_used``).
    pagetable_bytes: int
    #: Present PTEs mapping the image.
    ptes: int
    #: The kernel's RSS counters (file_rss + anon_rss, pages): special PTEs count in neither.
    rss_pages: int
    #: smaps ``Rss`` of the mapping (every present PTE, special ones included), bytes.
    smaps_rss_bytes: int
    #: Guest RAM holding a copy of the image (brd: the RAM disk's pages; DCSS, axonram: 0).
    image_ram_bytes: int
    #: Pages :meth:`MM.fault_in` newly mapped.
    faulted: int


@attrs.frozen(kw_only=True)
class GuestsResult:
    """The experiment for one (arch, kernel, driver, behaviour): per guest, totals, break-even.

    When the behaviour has no model (``reason`` is set) no guest is built and the figures
    are None.
    """

    arch: str
    kernel: str
    mode: str
    driver: str
    driver_params: tuple[tuple[str, str], ...]
    pre_series: bool
    mapping: str
    guests: int
    image_size: int
    page_size: int
    struct_page_size: int
    per_guest: tuple[GuestRecord, ...]
    memmap_bytes_per_guest: int | None
    total_memmap_bytes: int | None
    total_pagetable_bytes: int | None
    total_ptes: int | None
    total_rss_pages: int | None
    total_image_ram_bytes: int | None
    #: Smallest N with N x memmap_bytes_per_guest >= image_size (None when the memmap is 0).
    break_even: int | None
    #: Why the behaviour is not modelled (None when it was measured).
    reason: str | None = None
    #: The header read back through the first guest's mapping matched the image.
    verified: bool = False
    elapsed_s: float = attrs.field(default=0.0, eq=False)
    machines: tuple[Machine, ...] = attrs.field(default=(), eq=False, repr=False)
    #: Processes that built guests (1: all in this process); how the run went, not a figure.
    workers: int = attrs.field(default=1, eq=False)
    #: Peak host RSS (bytes) of each process that built guests, this one first.
    peak_rss_bytes: tuple[int, ...] = attrs.field(default=(), eq=False)

    @property
    def modelled(self) -> bool:
        return self.reason is None

    @property
    def behaviour(self) -> str:
        return "pre-series" if self.pre_series else "series"

    @property
    def label(self) -> str:
        return f"{self.arch} {self.kernel} {self.driver} ({self.behaviour})"


def break_even(image_size: int, memmap_per_guest: int) -> int | None:
    """Smallest N with ``N * memmap_per_guest >= image_size``; None when nothing is spent."""
    if memmap_per_guest <= 0:
        return None
    return -(-image_size // memmap_per_guest)


def _default_driver(machine: Machine) -> str:
    """The arch's first XIP driver model (in the plugin's order) that can hold an image."""
    have = machine.xip_drivers()
    for name, model in have.items():
        if model.image_params is not None:
            return name
    offered = ", ".join(have) or "no XIP driver"
    raise UnsupportedOperation(
        f"{machine.arch} under {machine.profile} offers {offered}, none with image_params for the "
        "guests experiment; pass driver= and driver_params="
    )


def _header(image_size: int) -> bytes:
    return HEADER_MAGIC + f"size={image_size}\n".encode()


def _image_memory(machine: Machine, device: XipDevice) -> tuple[int, int]:
    """(struct page bytes behind the device, bytes of System RAM holding its pages).

    A device over a physical range: the memmap of the regions it covers. A device of RAM
    pages (brd): the struct pages of its frames, which are RAM.
    """
    ps = machine.page_size
    rams = [r for r in machine.regions if r.kind == "ram"]
    rng = device.phys_range
    if rng is not None:
        lo, hi = rng
        memmap = sum(machine.memmap_bytes(r.name) for r in machine.regions if r.overlaps(lo, hi - lo))
        return memmap, sum(max(0, min(hi, r.end) - max(lo, r.start)) for r in rams)
    frames = device.frames(np.arange(device.size // ps, dtype=np.int64))
    backed = frames[frames >= 0]
    valid = int(machine.pfn_valid(backed.astype(np.uint64)).sum()) if backed.size else 0
    in_ram = np.zeros(backed.shape, dtype=np.bool_)
    for r in rams:
        in_ram |= (backed >= r.start // ps) & (backed < r.end // ps)
    return valid * machine.mode.mode.memory.struct_page_size, int(in_ram.sum()) * ps


@attrs.frozen
class _Guest:
    machine: Machine
    mm: MM
    va: int
    device: XipDevice
    fs: XipFS
    #: Why the image cannot be mapped directly (then nothing is mapped and ``va`` is 0).
    refused: str | None = None


def _build_guest(
    arch: str,
    kernel: str,
    ram: int | str,
    registry: ArchRegistry | None,
    driver: str,
    params: Mapping[str, Any],
    image_size: int,
) -> _Guest:
    machine = Machine(arch, kernel, ram, registry=registry)
    device = machine.create_xip_device(driver, **params)
    # The shared image is mounted read-only: ext2 -o ro,xip (2.6.2x), ext4 -o ro,dax (6.18);
    # on a 6.18 device without DAX -o dax is -EINVAL: mount it plainly and report why.
    fs = XipFS(device, read_only=True, dax=None if FILEMAP_XIP.applies(machine.profile) else device.dax)
    fs.create("image", data=_header(image_size), size=image_size, allocate=True)
    mm = machine.new_mm()
    refused = _refusal(fs)
    if refused is not None:
        return _Guest(machine=machine, mm=mm, va=0, device=device, fs=fs, refused=refused)
    va = mm.mmap(image_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, file=fs.open("image", "r"))
    return _Guest(machine=machine, mm=mm, va=va, device=device, fs=fs)


def _measure(index: int, g: _Guest, image_size: int, faulted: int) -> GuestRecord:
    mm, machine = g.mm, g.machine
    npages = image_size // machine.page_size
    _vas, ptes, reach = mm.pt.range_ptes(g.va, npages)
    present = int((reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)).sum())
    smaps = next(rec for rec in mm.smaps() if rec["start"] == g.va)
    memmap, in_ram = _image_memory(machine, g.device)
    return GuestRecord(
        index=index,
        memmap_bytes=memmap,
        pagetable_bytes=mm.pt.bytes_used,
        ptes=present,
        rss_pages=mm.rss_file + mm.rss_anon,
        smaps_rss_bytes=int(smaps["Rss"]),
        image_ram_bytes=in_ram,
        faulted=faulted,
    )


def _release(machine: Machine) -> None:
    """Hand a measured, dropped guest's struct-page arrays and stored frames back to the host
    now. The machine is a web of reference cycles that only the next collection frees (every
    :data:`_COLLECT_EVERY` guests); until then a 6.18 guest would hold the memmap of its whole
    image (ZONE_DEVICE struct pages) and its page-table frames. Its figures were read already.
    """
    machine.memmap.release_host()
    machine.mem.release_host()


def _verify(g: _Guest, image_size: int) -> bool:
    """Data integrity: the mapping reads the image's header, and zeroes at its end."""
    header = _header(image_size)
    tail = min(64, image_size - len(header))
    ok = g.mm.read(g.va, len(header)) == header
    return ok and g.mm.read(g.va + image_size - tail, tail) == bytes(tail)


def run_guests(
    arch: str,
    kernel: str,
    *,
    guests: int = 100,
    image_size: int = 1 << 30,
    pre_series: bool,
    driver: str | None = None,
    driver_params: Mapping[str, object] = {},
    ram: int | str | None = None,
    registry: ArchRegistry | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: bool = False,
    keep_first: int = 0,
    workers: int = 1,
    pool: GuestPool | None = None,
) -> GuestsResult:
    """Build ``guests`` machines that each map one ``image_size`` XIP image, and measure.

    ``driver`` defaults to the arch's first XIP driver model under ``kernel`` that declares
    ``image_params`` (the plugin knows how its driver holds an image: a DCSS defined above
    guest storage, an axonram bank, a RAM disk); ``driver_params`` override them.
    ``pre_series`` asks for the <=2.6.25 behaviour where the driver model declares one (the
    struct pages the old XIP API needed); otherwise the result carries the model's ``reason``
    and no figures. ``ram`` defaults to 256 MiB, plus the image for a RAM-backed driver.
    ``progress(done, total)`` is called after each guest. Guests are dropped once measured,
    except all of them with ``keep`` and the first ``keep_first`` (e.g. one to dump).

    Guests are independent machines, so ``workers`` > 1 (or a :class:`GuestPool` shared by
    several runs) builds them in worker processes that send back each guest's measured
    :class:`GuestRecord`: the same figures, read from the same real machines, as one process
    builds. Guest 0 (and the kept ones) are built here, checked and verified first, as the
    workers start on the rest. ``keep`` keeps every machine, so it runs in this process.
    """
    if isinstance(guests, bool) or not isinstance(guests, int) or guests < 1:
        raise EINVAL(f"guests={guests!r}: need at least one guest")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise EINVAL(f"image_size={image_size!r} must be a positive number of bytes")
    t0 = time.perf_counter()
    probe = Machine(arch, kernel, ram if ram is not None else "256M", registry=registry)
    ps = probe.page_size
    if image_size % ps:
        raise EINVAL(f"image_size={image_size:#x} is not a multiple of the {arch} page size {ps:#x}")
    if len(_header(image_size)) > image_size:
        raise EINVAL(f"image_size={image_size} is smaller than the image header")
    name = driver if driver is not None else _default_driver(probe)
    models = probe.xip_drivers()
    if name not in models:
        probe.create_xip_device(name)  # the machine's own error: unknown, or not in this profile
        raise UnsupportedOperation(f"{arch} under {kernel} has no XIP driver {name!r}")
    model = models[name]
    defaults = model.image_params(probe, image_size) if model.image_params is not None else {}
    params: dict[str, Any] = {**defaults, **driver_params}
    if ram is None:
        ram = 256 << 20
        if model.ram_backed:
            ram += image_size  # the device's pages are the guest's RAM
    base: dict[str, Any] = {
        "arch": probe.arch,
        "kernel": probe.profile.name,
        "mode": probe.mode.mode.name,
        "driver": name,
        "pre_series": pre_series,
        "mapping": MAPPING,
        "guests": guests,
        "image_size": image_size,
        "page_size": ps,
        "struct_page_size": probe.mode.mode.memory.struct_page_size,
    }
    if pre_series:
        if isinstance(model.pre_series, str):
            reason = model.pre_series or f"the {name} driver model has no pre-series behaviour to model"
            return _unmodelled(base, params, reason, t0)
        params.update(model.pre_series)
    del probe
    job = _Job(arch=arch, kernel=kernel, ram=ram, driver=name, params=params, image_size=image_size)
    if keep:
        local = guests
    elif pool is None and workers > 1 and guests > 1:
        with GuestPool(workers, registry) as own:
            return run_guests(
                arch, kernel, guests=guests, image_size=image_size, pre_series=pre_series, driver=driver,
                driver_params=driver_params, ram=ram, registry=registry, progress=progress,
                keep_first=keep_first, pool=own,
            )  # fmt: skip
    else:
        local = guests if pool is None or pool.workers < 2 else min(guests, max(1, keep_first))
    remote = _submit(pool, job, range(local, guests)) if pool is not None else []
    records: list[GuestRecord] = []
    kept: list[Machine] = []
    verified = False
    peaks: dict[int, int] = {}
    try:
        for i in range(local):
            g, record = _one_guest(job, registry, i)
            if g.refused is not None:  # guest 0: every guest is alike
                return _unmodelled(base, params, g.refused, t0)
            assert record is not None
            records.append(record)
            if i == 0:
                verified = _verify(g, image_size)
                if not verified:
                    raise MixedmapError(
                        f"guest 0 of {arch}/{kernel}/{name}: the mapping does not read the image"
                    )
            if keep or i < keep_first:
                kept.append(g.machine)
            else:
                _release(g.machine)
            del g
            if not keep and (i + 1) % _COLLECT_EVERY == 0:
                gc.collect()  # a dropped machine is a web of cycles (machine <-> mm, devices)
            if progress is not None:
                progress(min(i + 1 + _finished(remote), guests), guests)
        records.extend(_collect(remote, peaks, local, guests, progress))
    finally:
        for f, _chunk in remote:
            f.cancel()
    peaks = {os.getpid(): _peak_rss(), **peaks}
    per = records[0].memmap_bytes
    result = GuestsResult(
        **base,
        driver_params=_params_tuple(params),
        per_guest=tuple(records),
        memmap_bytes_per_guest=per,
        total_memmap_bytes=sum(r.memmap_bytes for r in records),
        total_pagetable_bytes=sum(r.pagetable_bytes for r in records),
        total_ptes=sum(r.ptes for r in records),
        total_rss_pages=sum(r.rss_pages for r in records),
        total_image_ram_bytes=sum(r.image_ram_bytes for r in records),
        break_even=break_even(image_size, per),
        verified=verified,
        elapsed_s=time.perf_counter() - t0,
        machines=tuple(kept),
        workers=pool.workers if pool is not None and remote else 1,
        peak_rss_bytes=tuple(peaks.values()),
    )
    log.info(
        "guests_measured", arch=result.arch, kernel=result.kernel, driver=name, pre_series=pre_series,
        guests=guests, image_size=image_size, memmap_per_guest=per, break_even=result.break_even,
        seconds=round(result.elapsed_s, 3), workers=result.workers,
    )  # fmt: skip
    return result


@attrs.frozen(kw_only=True)
class _Job:
    """What every guest of one run is built from (sent to the workers, so plain values)."""

    arch: str
    kernel: str
    ram: int | str
    driver: str
    params: Mapping[str, Any]
    image_size: int


def _one_guest(job: _Job, registry: ArchRegistry | None, index: int) -> tuple[_Guest, GuestRecord | None]:
    """Build guest ``index``, fault the image in, measure it (None when it is refused)."""
    g = _build_guest(job.arch, job.kernel, job.ram, registry, job.driver, job.params, job.image_size)
    if g.refused is not None:
        return g, None
    faulted = g.mm.fault_in(g.va, job.image_size)
    return g, _measure(index, g, job.image_size, faulted)


def _peak_rss() -> int:
    """This process's peak resident set (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class GuestPool:
    """Worker processes that build guests for :func:`run_guests`, started once for many runs.

    Forked, so each worker has the caller's registry (plugins passed in ``extra`` included)
    without pickling it; the workers start at once, before a caller starts threads of its
    own (a progress bar's), since forking a threaded process is unsafe. Where ``fork`` does
    not exist the pool has no workers and every guest is built in-process.
    """

    def __init__(self, workers: int, registry: ArchRegistry | None = None) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise EINVAL(f"workers={workers!r}: need at least one")
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            self._executor = ProcessPoolExecutor(
                max_workers=workers,
                mp_context=multiprocessing.get_context("fork"),
                initializer=_worker_init,
                initargs=(registry,),
            )
            list(self._executor.map(_worker_pid, range(workers)))
        else:
            self.workers = 1

    def submit(self, job: _Job, indices: tuple[int, ...]) -> Future[tuple[list[GuestRecord], int, int]]:
        assert self._executor is not None
        return self._executor.submit(_worker_guests, job, indices)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> GuestPool:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


_Remote = list[tuple["Future[tuple[list[GuestRecord], int, int]]", tuple[int, ...]]]


def _submit(pool: GuestPool, job: _Job, indices: range) -> _Remote:
    if pool.workers < 2 or not indices:
        return []
    chunks = [tuple(indices[k : k + _CHUNK]) for k in range(0, len(indices), _CHUNK)]
    return [(pool.submit(job, c), c) for c in chunks]


def _finished(remote: _Remote) -> int:
    """Guests the workers have measured so far."""
    return sum(len(c) for f, c in remote if f.done() and not f.cancelled() and f.exception() is None)


def _collect(
    remote: _Remote,
    peaks: dict[int, int],
    done: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> Iterator[GuestRecord]:
    """The workers' records in guest order; progress as chunks finish; the first failing
    guest's error (in guest order, as one process would have met it) is raised."""
    futures = {f: c for f, c in remote}
    for f in as_completed(futures):
        if f.exception() is None:
            done += len(futures[f])
            if progress is not None:
                progress(min(done, total), total)
    for f, _chunk in remote:
        records, pid, peak = f.result()
        peaks[pid] = max(peaks.get(pid, 0), peak)
        yield from records


#: A worker's registry, and the guests it dropped since its last collection.
_WORKER_REGISTRY: list[ArchRegistry | None] = [None]
_WORKER_DROPPED = [0]


def _worker_init(registry: ArchRegistry | None) -> None:
    _WORKER_REGISTRY[0] = registry
    tune_host_malloc()


def _worker_pid(_: int) -> int:
    return os.getpid()


def _worker_guests(job: _Job, indices: Sequence[int]) -> tuple[list[GuestRecord], int, int]:
    """In a worker: build, measure and drop the guests ``indices``."""
    out = []
    for i in indices:
        g, record = _one_guest(job, _WORKER_REGISTRY[0], i)
        if record is None:
            raise MixedmapError(f"guest {i} of {job.arch}/{job.kernel}/{job.driver}: {g.refused}")
        out.append(record)
        _release(g.machine)
        del g
        _WORKER_DROPPED[0] += 1
        if _WORKER_DROPPED[0] % _COLLECT_EVERY == 0:
            gc.collect()
    return out, os.getpid(), _peak_rss()


def _refusal(fs: XipFS) -> str | None:
    """Why the image cannot be mapped directly at all on this device: 6.18 has no fs-dax on
    it (no ``-o dax``), or 2.6.2x ``direct_access`` refuses."""
    device = fs.device
    who = f"{device.driver or type(device).__name__} {device.name}"
    if not fs.xip and not fs.dax:
        return (
            f"{who}: no DAX under {fs.machine.profile} (fs_dax_get_by_bdev finds no dax_device: fs-dax "
            "needs ZONE_DEVICE struct pages), so ext4 -o dax is -EINVAL and no guest can map the image"
        )
    if not fs.xip:
        return None
    try:
        fs.direct_access(fs.files["image"].block(0))
    except MixedmapError as exc:
        return (
            f"{who}: direct_access refuses ({exc}); xip_file_fault would answer VM_FAULT_OOM, so no "
            "guest can map the image"
        )
    return None


def _params_tuple(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in params.items()))


def _unmodelled(base: dict[str, Any], params: Mapping[str, Any], reason: str, t0: float) -> GuestsResult:
    log.info("guests_not_modelled", arch=base["arch"], driver=base["driver"], reason=reason)
    return GuestsResult(
        **base,
        driver_params=_params_tuple(params),
        per_guest=(),
        memmap_bytes_per_guest=None,
        total_memmap_bytes=None,
        total_pagetable_bytes=None,
        total_ptes=None,
        total_rss_pages=None,
        total_image_ram_bytes=None,
        break_even=None,
        reason=reason,
        elapsed_s=time.perf_counter() - t0,
    )
