"""Physical memory figures (issue 3): batch page allocation and sparse big machines.

Run: ``pytest benchmarks/test_bench_phys.py -q``.
"""

from __future__ import annotations

import tracemalloc

import numpy as np

from mixedmap import ArchRegistry, Machine

N_PAGES = 262_144


def test_alloc_free_262144_pages_in_batches(
    benchmark, arch: str, kernel: str, registry: ArchRegistry
) -> None:  # type: ignore[no-untyped-def]
    m = Machine(arch, kernel, ram="4G", registry=registry)
    n = N_PAGES * 4096 // m.page_size

    def run() -> None:
        batches = [m.pages.alloc_pages(4096) for _ in range(n // 4096)]
        for b in batches:
            m.pages.free_pages(b)

    benchmark.pedantic(run, rounds=3, iterations=1)
    assert m.pages.leaks() == {}
    benchmark.extra_info["pages_per_second"] = 2 * n / benchmark.stats["mean"]


def test_64gib_machine_is_sparse(benchmark, arch: str, kernel: str, registry: ArchRegistry) -> None:  # type: ignore[no-untyped-def]
    def make() -> Machine:
        return Machine(arch, kernel, ram="64G", registry=registry)

    tracemalloc.start()
    m = benchmark.pedantic(make, rounds=3, iterations=1)
    m.new_pagetable().map(0x1000 * m.page_size, 3)
    m.pages.free_pages(m.pages.alloc_pages(1000))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    benchmark.extra_info["host_peak_bytes"] = peak
    benchmark.extra_info["kernel_memmap_bytes"] = m.memmap_bytes()
    assert m.memmap_bytes() == (64 << 30) // m.page_size * 64
    assert peak < 256 << 20, f"{arch}: a 64 GiB machine took {peak >> 20} MiB of host memory"
    assert np.all(m.pfn_valid(np.array([0, (64 << 30) // m.page_size - 1])))
