"""mm-layer figures (issue 4): XIP read faults, and fork/munmap of 262,144 PTEs.

Run: ``pytest benchmarks/test_bench_mm.py -q``.
Targets: >= 50,000 XIP read faults per second touching a 1 GiB file page by page;
fork and munmap of an mm with 262,144 mapped PTEs under 2 s each.
"""

from __future__ import annotations

from mixedmap import ArchRegistry, Machine, RangeDevice, XipFS
from mixedmap.mm.vma import MAP_PRIVATE, MAP_SHARED

GiB = 1 << 30
N_PTES = 262_144


def _xip_machine(arch: str, kernel: str, registry: ArchRegistry) -> tuple[Machine, XipFS]:
    m = Machine(arch, kernel, ram="2G", registry=registry)
    start = 4 * GiB
    m.add_region("xip", start, GiB, memmap=False)
    dev = RangeDevice(m, "xip", start, GiB, read_only=True, kaddr_base=start)
    fs = XipFS(dev)
    fs.create("image", size=GiB, allocate=True)  # a fully allocated 1 GiB file of zero blocks
    return m, fs


def test_xip_read_faults_1gib(benchmark, arch: str, kernel: str, registry: ArchRegistry) -> None:  # type: ignore[no-untyped-def]
    m, fs = _xip_machine(arch, kernel, registry)
    f = fs.open("image", "r")
    ps = m.page_size
    npages = GiB // ps

    def run() -> int:
        mm = m.new_mm()
        base = mm.mmap(GiB, "r", MAP_PRIVATE, file=f)
        for k in range(npages):
            mm.access(base + k * ps)
        mm.exit()
        return npages

    benchmark.pedantic(run, rounds=1, iterations=1)
    rate = npages / benchmark.stats["mean"]
    benchmark.extra_info["faults_per_second"] = rate
    assert rate >= 50_000, f"{arch}/{kernel}: {rate:,.0f} XIP faults/s"


def test_fork_and_munmap_262144_ptes(benchmark, arch: str, kernel: str, registry: ArchRegistry) -> None:  # type: ignore[no-untyped-def]
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
        import time

        t0 = time.perf_counter()
        child = parent.fork()
        t1 = time.perf_counter()
        child.munmap(anon, n * ps)
        t2 = time.perf_counter()
        times["fork"], times["munmap"] = t1 - t0, t2 - t1
        assert child.rss == {"file": 0, "anon": 0}
        child.exit()

    benchmark.pedantic(fork_then_unmap, rounds=2, iterations=1)
    benchmark.extra_info.update(times)
    assert parent.rss["anon"] == n
    assert times["fork"] < 2.0 and times["munmap"] < 2.0, f"{arch}/{kernel}: {times}"
    parent.exit()
    assert m.pages.leaks() == {}
