"""Scalar mm hot paths (issue 13): faults and accesses one page at a time, per arch and kernel.

Run: ``pytest benchmarks/test_bench_faults.py -q -p no:xdist``.

Targets (figures on shared cores, reported in ``extra_info["target_met"]``, not asserted):
XIP read faults page by page >= 150 k/s through ``mm.access`` and >= 100 k/s through
``mm.read(va, 1)``; ``mm.read``/``mm.write`` of already mapped pages >= 500 k calls/s;
anonymous and COW faults within 20% of the XIP rate. Each figure is also given as a multiple
of a *bare fault-path loop* timed in the same test: a VMA bisect, a walk of the levels reading
each entry's bytes, a table allocated where one is missing and the PTE written, in plain Python
over a bytearray, with none of the model's rules -- what one fault costs the interpreter at
least, so the multiple stays comparable between runs on a loaded machine.

Each arch runs under 2.6.27 and 6.18 (``conftest.CASES``); the summary prints the 6.18/2.6.27
ratio of every figure (seconds for the same number of operations, and the bare-loop multiples).
The seconds are CPU seconds of this process (``time.process_time``), the best of three rounds:
on cores shared with other work, wall time measures the neighbours as much as the code (each
test's wall-clock mean is pytest-benchmark's own table).
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from typing import Any

import pytest

from mixedmap import ArchRegistry, Machine, RangeDevice, XipFS
from mixedmap.mm.vma import MAP_PRIVATE
from mixedmap.rules import FILEMAP_XIP

GiB = 1 << 30
#: Pages faulted per figure (fewer on 64 KiB-page modes: the image is 1 GiB).
N_FAULTS = 32_768
#: Pages kept mapped for the read/write figures, and the passes over them.
N_MAPPED, ROUNDS = 4_096, 8

Figure = Callable[[str, str, str, float], None]


def _bare_fault_loop(page_shift: int, levels: list[tuple[int, int]], n: int) -> float:
    """Seconds per fault of the reference loop: ``n`` first touches of consecutive pages.

    Plain Python over a bytearray: find the VMA by bisect, walk ``levels`` ((shift, entries)
    root first) reading each 8-byte entry, allocate a zeroed table where an entry is empty,
    write the PTE. No arch helper, no struct page, no rule: the floor under any fault path.
    """
    mem = bytearray(1 << 16)
    top = [1 << 12]  # bump allocator of 4 KiB tables; 0 is never a table
    starts, ends = [0x1000_0000, 0x9000_0000], [0x1000_0000 + (n << page_shift), 0xA000_0000]
    root = 0x1000

    def new_table() -> int:
        top[0] += 1 << 12
        if top[0] + (1 << 12) > len(mem):
            mem.extend(bytes(len(mem)))
        return top[0]

    t0 = time.process_time()
    for k in range(n):
        va = starts[0] + (k << page_shift)
        i = bisect.bisect_right(starts, va) - 1
        if i < 0 or va >= ends[i]:
            raise AssertionError("no VMA")
        table = root
        for shift, entries in levels[:-1]:
            off = table + ((va >> shift) & (entries - 1)) * 8
            ent = int.from_bytes(mem[off : off + 8], "little")
            if not ent & 1:
                ent = new_table() | 1
                mem[off : off + 8] = ent.to_bytes(8, "little")
            table = ent & ~0xFFF
        shift, entries = levels[-1]
        off = table + ((va >> shift) & (entries - 1)) * 8
        if int.from_bytes(mem[off : off + 8], "little"):
            raise AssertionError("PTE already present")
        mem[off : off + 8] = ((0x12345 + k) << 12 | 0x25).to_bytes(8, "little")
    return (time.process_time() - t0) / n


def _bare(m: Machine, n: int) -> float:
    """The reference loop for ``m``'s page size and level geometry (best of two runs)."""
    levels = [(lv.shift, min(lv.entries, 512)) for lv in m.fmt.levels]
    return min(_bare_fault_loop(m.fmt.page_shift, levels, n) for _ in range(2))


def _xip(arch: str, kernel: str, registry: ArchRegistry) -> tuple[Machine, Any]:
    """An XIP image as each kernel maps it: 2.6.27 ``ext2 -o xip`` on memory without struct
    pages (special PTEs), 6.18 ``ext4 -o dax`` on ZONE_DEVICE memory (refcounted folios)."""
    m = Machine(arch, kernel, ram="1G", registry=registry)
    start = 4 * GiB
    m.add_region("xip", start, GiB, memmap=not FILEMAP_XIP.applies(m.profile))
    dev = RangeDevice(m, "xip", start, GiB, read_only=True, kaddr_base=start)
    fs = XipFS(dev)
    fs.create("image", size=GiB, allocate=True)
    return m, fs.open("image", "r")


def _report(
    benchmark: Any, figure: Figure, name: str, arch: str, kernel: str, n: int, seconds: float, bare: float
) -> float:
    """Record ``n`` operations in ``seconds``: rate, the bare-loop multiple, the figures."""
    rate = n / seconds
    multiple = seconds / n / bare
    benchmark.extra_info.update(per_second=rate, bare_loop_multiple=multiple, bare_loop_per_second=1 / bare)
    figure(f"{name} ({n})", arch, kernel, seconds)
    figure(f"{name} x bare loop", arch, kernel, multiple)
    return rate


def _timed(benchmark: Any, run: Callable[[], float], rounds: int = 3) -> float:
    """Best of ``rounds`` (each ``run`` returns its own measured seconds)."""
    best: list[float] = []

    def once() -> None:
        best.append(run())

    benchmark.pedantic(once, rounds=rounds, iterations=1)
    return min(best)


@pytest.mark.parametrize("via", ["access", "read"])
def test_xip_read_faults(
    benchmark: Any, figure: Figure, arch: str, kernel: str, registry: ArchRegistry, via: str
) -> None:
    """XIP/DAX read faults page by page through ``mm.access(va)`` or ``mm.read(va, 1)``."""
    m, f = _xip(arch, kernel, registry)
    ps = m.page_size
    n = min(N_FAULTS, GiB // ps)

    def run() -> float:
        mm = m.new_mm()
        base = mm.mmap(n * ps, "r", MAP_PRIVATE, file=f)
        touch = mm.access if via == "access" else (lambda va: mm.read(va, 1))
        t0 = time.process_time()
        for k in range(n):
            touch(base + k * ps)
        dt = time.process_time() - t0
        assert mm.rss == (
            {"file": 0, "anon": 0} if FILEMAP_XIP.applies(m.profile) else {"file": n, "anon": 0}
        )
        mm.exit()
        return dt

    seconds = _timed(benchmark, run)
    rate = _report(benchmark, figure, f"xip fault via {via}", arch, kernel, n, seconds, _bare(m, n))
    benchmark.extra_info["target_met"] = rate >= (150_000 if via == "access" else 100_000)


@pytest.mark.parametrize("op", ["read", "write"])
def test_mapped_access(
    benchmark: Any, figure: Figure, arch: str, kernel: str, registry: ArchRegistry, op: str
) -> None:
    """``mm.read(va, 1)`` / ``mm.write(va, b"x")`` on pages already mapped writable and dirty:
    the present-PTE path, no fault."""
    m = Machine(arch, kernel, ram="1G", registry=registry)
    ps = m.page_size
    mm = m.new_mm()
    base = mm.mmap(N_MAPPED * ps, "rw", 0x22)  # MAP_PRIVATE | MAP_ANONYMOUS
    for k in range(N_MAPPED):
        mm.write(base + k * ps, b"x")
    vas = [base + k * ps + 8 for k in range(N_MAPPED)]

    def run() -> float:
        t0 = time.process_time()
        if op == "read":
            for _ in range(ROUNDS):
                for va in vas:
                    mm.read(va, 1)
        else:
            for _ in range(ROUNDS):
                for va in vas:
                    mm.write(va, b"y")
        return time.process_time() - t0

    seconds = _timed(benchmark, run)
    n = N_MAPPED * ROUNDS
    rate = _report(benchmark, figure, f"mapped {op}", arch, kernel, n, seconds, _bare(m, N_MAPPED))
    benchmark.extra_info["target_met"] = rate >= 500_000
    mm.exit()
    assert m.pages.leaks() == {}


@pytest.mark.parametrize("kind", ["anon", "cow"])
def test_anon_and_cow_faults(
    benchmark: Any, figure: Figure, arch: str, kernel: str, registry: ArchRegistry, kind: str
) -> None:
    """Anonymous write faults (``do_anonymous_page``: a fresh zeroed page) and COW faults (a
    forked child writing pages the parent had written: ``do_wp_page`` copies), page by page
    through ``mm.access(va, write=True)``; to be within 20% of the XIP read-fault rate."""
    m = Machine(arch, kernel, ram="1G", registry=registry)
    ps = m.page_size
    n = min(N_FAULTS // 4, (256 << 20) // ps)

    def run() -> float:
        mm = m.new_mm()
        base = mm.mmap(n * ps, "rw", 0x22)
        target = mm
        if kind == "cow":
            mm.fault_in(base, n * ps, write=True)
            target = mm.fork()
        t0 = time.process_time()
        for k in range(n):
            target.access(base + k * ps, write=True)
        dt = time.process_time() - t0
        assert target.rss["anon"] == n
        if target is not mm:
            target.exit()
        mm.exit()
        return dt

    seconds = _timed(benchmark, run)
    rate = _report(benchmark, figure, f"{kind} write fault", arch, kernel, n, seconds, _bare(m, n))
    benchmark.extra_info["target_met"] = rate >= 0.8 * 150_000
