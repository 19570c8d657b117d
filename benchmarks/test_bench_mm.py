"""mm-layer figures (issues 4, 11, 13): XIP read faults, and fork/munmap of 262,144 PTEs.

Run: ``pytest benchmarks/test_bench_mm.py -q -p no:xdist``.
Targets: >= 150,000 XIP read faults per second touching a 1 GiB file page by page, with 6.18
within 20% of 2.6.27 (issue 11: the ratio line of "fault 1 GiB page by page"); fork of an mm
with 2 x 262,144 mapped PTEs and munmap of 262,144 of them <= 0.1 s each, on every arch and
profile (issue 13; issue 4 asked for 50,000 faults/s and 2 s). The scalar per-page paths
(``mm.read``/``mm.write``, anonymous and COW faults) are in ``test_bench_faults.py``.

Each arch runs under 2.6.27 and 6.18 in the same session (``conftest.CASES``), and the
summary prints the 6.18/2.6.27 ratio of each figure. The image is what each kernel maps:
2.6.27 ``ext2 -o xip`` on memory without struct pages (special PTEs, no struct page
touched), 6.18 ``ext4 -o dax`` on ZONE_DEVICE memory (a refcounted, rmapped folio per PTE).
Targets are reported (``extra_info["target_met"]``), not asserted: the figures come from
shared cores.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mixedmap import ArchRegistry, Machine, RangeDevice, XipFS
from mixedmap.mm.vma import MAP_PRIVATE, MAP_SHARED
from mixedmap.rules import FILEMAP_XIP

GiB = 1 << 30
N_PTES = 262_144


def _xip_machine(arch: str, kernel: str, registry: ArchRegistry) -> tuple[Machine, XipFS]:
    m = Machine(arch, kernel, ram="2G", registry=registry)
    start = 4 * GiB
    # filemap_xip needs no struct pages; 6.18 fs-dax needs ZONE_DEVICE ones (XipDevice.dax)
    m.add_region("xip", start, GiB, memmap=not FILEMAP_XIP.applies(m.profile))
    dev = RangeDevice(m, "xip", start, GiB, read_only=True, kaddr_base=start)
    fs = XipFS(dev)
    fs.create("image", size=GiB, allocate=True)  # a fully allocated 1 GiB file of zero blocks
    return m, fs


def test_xip_read_faults_1gib(
    benchmark: Any,
    figure: Callable[[str, str, str, float], None],
    arch: str,
    kernel: str,
    registry: ArchRegistry,
) -> None:
    m, fs = _xip_machine(arch, kernel, registry)
    f = fs.open("image", "r")
    ps = m.page_size
    npages = GiB // ps

    cpu: list[float] = []

    def run() -> int:
        mm = m.new_mm()
        base = mm.mmap(GiB, "r", MAP_PRIVATE, file=f)
        t0 = time.process_time()
        for k in range(npages):
            mm.access(base + k * ps)
        cpu.append(time.process_time() - t0)
        mm.exit()
        return npages

    benchmark.pedantic(run, rounds=2, iterations=1)
    rate = npages / benchmark.stats["min"]
    benchmark.extra_info["faults_per_second"] = rate
    benchmark.extra_info["faults_per_cpu_second"] = npages / min(cpu)
    benchmark.extra_info["target_met"] = rate >= 150_000  # a figure on shared cores, not asserted
    figure("fault 1 GiB page by page", arch, kernel, benchmark.stats["min"])
    # the faults alone, in this process's CPU seconds: what the neighbours' load leaves out
    figure("fault 1 GiB page by page (CPU s)", arch, kernel, min(cpu))


def test_fork_and_munmap_262144_ptes(
    benchmark: Any,
    figure: Callable[[str, str, str, float], None],
    arch: str,
    kernel: str,
    registry: ArchRegistry,
) -> None:
    m, fs = _xip_machine(arch, kernel, registry)
    ps = m.page_size
    n = N_PTES * 4096 // ps
    f = fs.open("image", "r")
    parent = m.new_mm()
    anon = parent.mmap(n * ps, "rw", 0x22)  # MAP_PRIVATE | MAP_ANONYMOUS
    parent.populate(anon, n * ps)
    shared = parent.mmap(n * ps, "r", MAP_SHARED, file=f)
    parent.populate(shared, n * ps)
    times: dict[str, float] = {}

    def fork_then_unmap() -> None:
        t0 = time.perf_counter()
        child = parent.fork()
        t1 = time.perf_counter()
        child.munmap(anon, n * ps)
        t2 = time.perf_counter()
        # the best of the rounds: the cores are shared, the work is the same every round
        times["fork"] = min(times.get("fork", t1 - t0), t1 - t0)
        times["munmap"] = min(times.get("munmap", t2 - t1), t2 - t1)
        assert child.rss == {"file": 0, "anon": 0}
        child.exit()

    benchmark.pedantic(fork_then_unmap, rounds=3, iterations=1)
    benchmark.extra_info.update(times)
    figure("fork 2x262144 PTEs", arch, kernel, times["fork"])
    figure("munmap 262144 anon PTEs", arch, kernel, times["munmap"])
    benchmark.extra_info["target_met"] = times["fork"] <= 0.1 and times["munmap"] <= 0.1
    assert parent.rss["anon"] == n
    parent.exit()
    assert m.pages.leaks() == {}
