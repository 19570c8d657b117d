"""The guests experiment at scale (issue 6): 100 guests x 1 GiB image, fully mapped.

Run: ``pytest benchmarks/test_bench_guests.py -q -p no:xdist`` (one process: ru_maxrss is the
process's peak). Target: 100 guests x 1 GiB (26,214,400 PTEs) in under 60 s and under 4 GiB
of host memory per default arch under its default kernel (2.6.27): s390x/dcssblk,
ppc64/axonram, x86_64/brd. Reported in ``extra_info``: seconds, ru_maxrss before and after
the timed run, the tracemalloc peak (Python and numpy allocations) of a short untimed run
of a few guests, and the figures of the run.

x86_64's brd holds its own copy of the image in each guest's RAM (262,144 RAM pages per
guest, allocated zeroed in one batch), so it is the heaviest of the three.

Each arch runs under 2.6.27 and 6.18 back to back, and the summary prints the 6.18/2.6.27
ratio of the seconds. Under 6.18 the image is ext4 ``-o dax`` on ZONE_DEVICE memory: a
refcounted, rmapped folio per PTE and the image's memmap in each guest (s390x dcssblk). The
default x86_64 6.18 driver, pmem, is a raw namespace for the experiment (no struct pages, so
no DAX: not modelled); the benchmark measures it with ``memmap=true`` (ZONE_DEVICE pages,
DAX) instead, noted in ``extra_info``. ppc64 has no 6.18 XIP driver (axonram is gone): skipped.
The targets are reported (``target_met`` and the summary's lines), not asserted: the cores
are shared. ``MIXEDMAP_BENCH_GUESTS`` sets the guest count (default 100) for a quicker run.
Guests are built by ``default_workers()`` worker processes (``MIXEDMAP_BENCH_WORKERS``
overrides; 1 = in-process); host memory is then the sum of every process's peak RSS.

``test_default_cli_run`` times ``mixedmap run guests`` as a user runs it (every installed
arch, every behaviour of the file, 100 guests x 1 GiB, the progress bar, default workers) in a
fresh process: issue 13's target is 60 s on this 2-core machine.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

from mixedmap import ArchRegistry
from mixedmap.errors import UnsupportedOperation
from mixedmap.guests import default_workers, run_guests

GiB = 1 << 30
MiB = 1 << 20
GUESTS = int(os.environ.get("MIXEDMAP_BENCH_GUESTS", "100"))
KERNELS = ("2.6.27", "6.18")
#: Per (arch, kernel): driver parameters that give the arch's default driver DAX under 6.18.
DAX_PARAMS: dict[tuple[str, str], dict[str, object]] = {("x86_64", "6.18"): {"memmap": True}}
TRACED_GUESTS = 3
TARGET_SECONDS = 60.0
TARGET_HOST_BYTES = 4 * GiB
DEFAULT_ARCHES = ("s390x", "ppc64", "x86_64")
WORKERS = int(os.environ.get("MIXEDMAP_BENCH_WORKERS", "0")) or default_workers()
CLI_TARGET_SECONDS = 60.0
SECTION = "guests experiment (issue 13; figures from this run)"


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("arch", DEFAULT_ARCHES)
def test_100_guests_1gib(
    benchmark: Any,
    figure: Callable[[str, str, str, float], None],
    report: Callable[[str, str], None],
    arch: str,
    kernel: str,
    registry: ArchRegistry,
) -> None:
    if arch not in registry.names:
        pytest.skip(f"the {arch} plugin is not installed")
    if kernel not in registry.bind(arch).spec.profiles:
        pytest.skip(f"{arch} has no {kernel} profile")
    params = DAX_PARAMS.get((arch, kernel), {})
    try:
        probe = run_guests(
            arch, kernel, guests=1, image_size=GiB, pre_series=False, driver_params=params, registry=registry
        )
    except UnsupportedOperation as exc:  # no XIP driver at all (ppc64 6.18: axonram is gone)
        pytest.skip(f"{arch} {kernel}: {exc}")
    if probe.reason is not None:
        pytest.skip(f"{arch} {kernel}: {probe.reason}")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out: dict[str, Any] = {}

    def run() -> None:
        t0 = time.perf_counter()
        out["result"] = run_guests(
            arch,
            kernel,
            guests=GUESTS,
            image_size=GiB,
            pre_series=False,
            driver_params=params,
            registry=registry,
            workers=WORKERS,
        )
        out["seconds"] = time.perf_counter() - t0

    benchmark.pedantic(run, rounds=1, iterations=1)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # tracemalloc slows every allocation (2-3x here): its peak comes from a short run after the
    # timed one. Guests are dropped as they go, so the peak of a few is the peak of a hundred
    # (ru_maxrss above covers the hundred, but is the process's peak: the kernel that runs
    # second in a session reports at least the first's).
    tracemalloc.start()
    run_guests(
        arch,
        kernel,
        guests=TRACED_GUESTS,
        image_size=GiB,
        pre_series=False,
        driver_params=params,
        registry=registry,
    )
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    r = out["result"]
    host = after + sum(r.peak_rss_bytes[1:])  # this process's peak and each worker's
    figure(f"guests {GUESTS} x 1 GiB", arch, kernel, out["seconds"])
    met = out["seconds"] < TARGET_SECONDS and host < TARGET_HOST_BYTES
    report(
        SECTION,
        f"{arch} {kernel} {r.driver}: {GUESTS} x 1 GiB in {out['seconds']:.1f} s with {r.workers} workers, "
        f"host peak {host / MiB:.0f} MiB (targets {TARGET_SECONDS:g} s, {TARGET_HOST_BYTES // MiB} MiB: "
        f"{'met' if met else 'missed'})",
    )
    benchmark.extra_info.update(
        arch=arch,
        kernel=kernel,
        driver=r.driver,
        driver_params=dict(params),
        guests=GUESTS,
        image_mib=GiB // MiB,
        seconds=round(out["seconds"], 2),
        tracemalloc_peak_mib=round(peak / MiB, 1),
        tracemalloc_guests=TRACED_GUESTS,
        ru_maxrss_before_mib=round(before / MiB, 1),
        ru_maxrss_mib=round(after / MiB, 1),
        workers=r.workers,
        worker_peak_rss_mib=[round(p / MiB, 1) for p in r.peak_rss_bytes[1:]],
        host_peak_mib=round(host / MiB, 1),
        total_ptes=r.total_ptes,
        memmap_per_guest_mib=(r.memmap_bytes_per_guest or 0) / MiB,
        pagetable_per_guest_kib=r.per_guest[0].pagetable_bytes / 1024,
        break_even=r.break_even,
        target_met=met,
    )
    assert r.verified and r.total_ptes == GUESTS * (GiB // r.page_size)


def test_default_cli_run(report: Callable[[str, str], None]) -> None:
    """``mixedmap run guests`` with its defaults, timed from outside as a user sees it."""
    with tempfile.TemporaryDirectory(prefix="mixedmap-bench-guests-") as out:
        argv = [
            sys.executable,
            "-c",
            "from mixedmap.cli import entry; entry()",
            "run",
            "guests",
            "--out",
            out,
        ]
        if GUESTS != 100:
            argv += ["--guests", str(GUESTS)]
        t0 = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, check=False)
        seconds = time.perf_counter() - t0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    assert done.returncode == 0, done.stderr[-2000:]
    built = next((line for line in done.stdout.splitlines() if line.startswith("guests built")), "?")
    met = seconds <= CLI_TARGET_SECONDS
    report(
        SECTION,
        f"mixedmap run guests (defaults, {GUESTS} x 1 GiB, every arch and behaviour): {seconds:.1f} s wall, "
        f"{built}; largest child peak {children.ru_maxrss / 1024:.0f} MiB "
        f"(target {CLI_TARGET_SECONDS:g} s: {'met' if met else 'missed'})",
    )
