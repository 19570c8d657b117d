"""Page-table throughput: the figures issue 2 asks for.

Run: ``pytest benchmarks -q`` (pytest-benchmark prints min/mean per arch).
Targets: translate >= 5M VAs/s; map_range of 262,144 pages < 1 s; lookup < 10 us.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmap import ArchRegistry, Machine

N_PAGES = 262_144  # 1 GiB of 4 KiB pages
N_VAS = 1_000_000


def _setup(arch: str, kernel: str, registry: ArchRegistry) -> tuple[Machine, int]:
    m = Machine(arch, kernel, ram="2G", registry=registry)
    base = 1 << 32 if m.fmt.va_bits > 33 else 0
    return m, base


def test_map_range_1gib(benchmark, arch: str, kernel: str, registry: ArchRegistry) -> None:  # type: ignore[no-untyped-def]
    m, base = _setup(arch, kernel, registry)
    pfns = np.arange(N_PAGES, dtype=np.uint64) + np.uint64(0x1000)
    n = N_PAGES * 4096 // m.page_size

    def run() -> None:
        pt = m.new_pagetable()
        pt.map_range(base, pfns[:n], "rw")
        pt.free()

    benchmark.pedantic(run, rounds=3, iterations=1)
    assert benchmark.stats["mean"] < 1.0, f"{arch}: map_range of 1 GiB took {benchmark.stats['mean']:.2f}s"


@pytest.fixture(scope="module")
def mapped(arch: str, kernel: str, registry: ArchRegistry):  # type: ignore[no-untyped-def]
    m, base = _setup(arch, kernel, registry)
    pt = m.new_pagetable()
    n = N_PAGES * 4096 // m.page_size
    pt.map_range(base, np.arange(n, dtype=np.uint64) + np.uint64(0x1000), "rw")
    rng = np.random.default_rng(1)
    vas = np.uint64(base) + rng.integers(0, n * m.page_size, size=N_VAS, dtype=np.uint64)
    return m, pt, base, vas


def test_translate_1m_random(benchmark, mapped) -> None:  # type: ignore[no-untyped-def]
    m, pt, base, vas = mapped
    pas = benchmark(pt.translate, vas)
    expect = (((vas - np.uint64(base)) >> np.uint64(m.fmt.page_shift)) + np.uint64(0x1000)) << np.uint64(
        m.fmt.page_shift
    )
    assert (pas.astype(np.uint64) == expect | (vas & np.uint64(m.page_size - 1))).all()
    rate = N_VAS / benchmark.stats["mean"]
    benchmark.extra_info["vas_per_second"] = rate
    assert rate >= 5e6, f"{m.arch}: translate {rate / 1e6:.1f}M VAs/s"


def test_lookup_single(benchmark, mapped) -> None:  # type: ignore[no-untyped-def]
    m, pt, base, _ = mapped
    leaf = benchmark(pt.lookup, base + 0x12345 * 8)
    assert leaf is not None
    assert benchmark.stats["mean"] < 10e-6, f"{m.arch}: lookup {benchmark.stats['mean'] * 1e6:.1f}us"
