"""Memory images (issue 6): dumping and re-checking a machine with 262,144 mapped pages.

Run: ``pytest benchmarks/test_bench_dump.py -q -p no:xdist``. Reported: seconds for
``dump_machine`` (raw + manifest, + LiME on x86_64) and for ``check_roundtrip``, and the
manifest's size.
"""

from __future__ import annotations

from pathlib import Path

from mixedmap import ArchRegistry, Machine
from mixedmap.dump import check_roundtrip, dump_machine
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE

N_PAGES = 262_144


def test_dump_262144_pages(benchmark, arch: str, kernel: str, registry: ArchRegistry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    m = Machine(arch, kernel, ram="2G", registry=registry)
    mm = m.new_mm()
    mm.mmap(N_PAGES * m.page_size, "rw", MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE)
    assert mm.rss["anon"] == N_PAGES
    out: dict[str, object] = {}

    def dump() -> None:
        out["files"] = dump_machine(m, tmp_path, "bench")

    benchmark.pedantic(dump, rounds=1, iterations=1)
    files = out["files"]
    rt = check_roundtrip(files.manifest, registry)  # type: ignore[attr-defined]
    assert rt.pages == N_PAGES
    benchmark.extra_info["manifest_mib"] = round(files.manifest.stat().st_size / (1 << 20), 1)  # type: ignore[attr-defined]
    benchmark.extra_info["lime"] = files.lime is not None  # type: ignore[attr-defined]
