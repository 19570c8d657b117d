"""``mixedmap run`` for a scenario with a ``[guests]`` table: the memmap experiment on every
arch and behaviour, with a progress bar, a report, a plot and optional memory images."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column

from mixedmap._table import keyed_table
from mixedmap.errors import MixedmapError, ProfileError
from mixedmap.guests import GuestPool, GuestsResult, default_workers, run_guests, tune_host_malloc
from mixedmap.machine import parse_size
from mixedmap.plugin.registry import ArchRegistry
from mixedmap.profiles import get_profile
from mixedmap.rules import FILEMAP_XIP
from mixedmap.scenario import schema as S

#: the profile a "pre-series" run uses: the 2008 kernel with the <=2.6.25 memmap for the image
PRE_SERIES_KERNEL = "2.6.27"


@attrs.frozen
class Planned:
    arch: str
    behaviour: str
    kernel: str
    pre_series: bool


def plan(guests: S.Guests, arches: Sequence[str], kernels: Sequence[str]) -> list[Planned]:
    """(arch, behaviour) pairs; ``--kernel`` narrows the kernel behaviours (pre-series stays),
    and a kernel it names that the file does not list is one more behaviour (``-k 6.18``: the
    image on fs-dax, see :mod:`mixedmap.guests`)."""
    behaviours = [*guests.behaviours, *(k for k in dict.fromkeys(kernels) if k not in guests.behaviours)]
    out = []
    for arch in arches:
        for b in behaviours:
            if b != "pre-series" and kernels and b not in kernels:
                continue
            pre = b == "pre-series"
            out.append(Planned(arch, b, PRE_SERIES_KERNEL if pre else b, pre))
    return out


def _advance(progress: Progress, task: TaskID) -> Callable[[int, int], None]:
    def update(done: int, _total: int) -> None:
        progress.update(task, completed=done)

    return update


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / (1 << 20):.1f}"


def _numbers(*headers: str) -> list[Column]:
    """Right-aligned figures that never wrap: a number broken over two lines misreads."""
    return [Column(h, justify="right", no_wrap=True) for h in headers]


def _formula(r: GuestsResult) -> int:
    """The kernel's figure: one struct page per page of the image (reference 7.3)."""
    return (r.image_size // r.page_size) * r.struct_page_size


def _record(p: Planned, r: GuestsResult | None, why: str | None) -> dict[str, Any]:
    rec: dict[str, Any] = {"arch": p.arch, "behaviour": p.behaviour, "kernel": p.kernel}
    if r is None:
        return rec | {"skipped": why}
    d = attrs.asdict(r, filter=lambda a, _v: a.name not in ("machines", "per_guest"))
    d["formula_memmap_bytes_per_guest"] = _formula(r)
    d["per_guest"] = [attrs.asdict(g) for g in r.per_guest]
    return rec | d


def run_guests_scenario(
    scen: S.Scenario,
    filename: str,
    registry: ArchRegistry,
    arches: Sequence[str],
    console: Console,
    as_json: bool,
    *,
    out: Path,
    dump: Path | None,
    count: int | None,
    image_size: str | None,
    kernels: Sequence[str],
    workers: int | None = None,
) -> bool:
    """Run, report, plot; True when a run failed its data check or could not be set up.

    ``workers`` processes (default: one per core, capped) build the guests of every run,
    forked once before the progress bar starts; 1 builds them all in this process."""
    from mixedmap.plot import plot_guests

    g = scen.guests
    assert g is not None
    n = count if count is not None else g.count
    size = parse_size(image_size if image_size is not None else g.image_size)
    if n < 1:
        raise MixedmapError(f"--guests {n}: need at least one guest")
    nworkers = default_workers() if workers is None else workers
    if nworkers < 1:
        raise MixedmapError(f"--workers {nworkers}: need at least one")
    todo = plan(g, list(dict.fromkeys(arches)), kernels)
    tune_host_malloc()  # this process builds guest 0 of every run (and all with --workers 1)
    results: list[tuple[Planned, GuestsResult | None, str | None]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    pool = GuestPool(min(nworkers, max(1, n - 1)), registry)
    with pool, Progress(*columns, console=Console(stderr=True), transient=as_json) as progress:
        for p in todo:
            task = progress.add_task(f"{p.arch} {p.behaviour}", total=n)
            over = g.drivers.get(p.arch)
            try:
                r = run_guests(
                    p.arch,
                    p.kernel,
                    guests=n,
                    image_size=size,
                    pre_series=p.pre_series,
                    driver=over.driver if over else None,
                    driver_params=dict(over.params) if over else {},
                    registry=registry,
                    progress=_advance(progress, task),
                    keep_first=1 if dump is not None else 0,  # all guests are alike: dump one
                    pool=pool,
                )
            except ProfileError as exc:
                results.append((p, None, str(exc)))
            except MixedmapError as exc:
                results.append((p, None, f"error: {exc}"))
            else:
                results.append((p, r, None))
            progress.update(task, completed=n)
    done = [r for _, r, _ in results if r is not None]
    plots: tuple[Path, Path] | None = None
    if g.plot and done:
        out.mkdir(parents=True, exist_ok=True)
        plots = plot_guests(done, out / g.plot)
    images = _dump(results, dump) if dump is not None else []
    failed = any(r is not None and not r.verified and r.reason is None for _, r, _ in results) or any(
        why is not None and why.startswith("error") for _, _, why in results
    )
    if as_json:
        doc = {
            "file": filename,
            "guests": n,
            "image_size": size,
            "workers": pool.workers,
            "runs": [_record(p, r, why) for p, r, why in results],
            "plots": [str(x) for x in plots] if plots else [],
            "dumps": [str(x) for x in images],
        }
        console.print_json(json.dumps(doc, default=str))
        return failed
    _render(scen, filename, n, size, results, console, pool.workers)
    if plots:
        console.print(f"plot: {plots[0]} and {plots[1]}")
    for path in images:
        console.print(f"memory image: {path}")
    return failed


def _render(
    scen: S.Scenario,
    filename: str,
    n: int,
    size: int,
    results: Sequence[tuple[Planned, GuestsResult | None, str | None]],
    console: Console,
    workers: int = 1,
) -> None:
    console.print(f"[bold]{scen.scenario.name}[/bold]  ({filename})")
    dax = any(not FILEMAP_XIP.applies(get_profile(p.kernel)) for p, _, _ in results)
    image = "XIP image (ext4 -o dax where the kernel has DAX)" if dax else "XIP image"
    console.print(f"{n} guests, each mapping all of one {_mib(size)} MiB read-only {image}")
    built = "in this process" if workers == 1 else f"by {workers} worker processes (guest 0 in this one)"
    console.print(f"guests built {built}")
    per_guest = keyed_table(
        ["arch", "behaviour", "driver"],
        _numbers("memmap", "w/ pages", "page tables", "PTEs"),
        title=f"per guest (MiB; image {_mib(size)} MiB; struct pages: 64 B per 4 KiB page)",
    )
    totals = keyed_table(
        ["arch", "behaviour"],
        _numbers("memmap", "page tables", "PTEs", "break-even", "s"),
        title=f"all {n} guests (MiB)",
    )
    notes = []
    for p, r, why in results:
        if r is None:
            notes.append(f"{p.arch} {p.behaviour}: {why}")
            continue
        if r.reason is not None:
            notes.append(f"{p.arch} {p.behaviour} ({r.driver}): {r.reason}")
            continue
        per = r.memmap_bytes_per_guest or 0
        if per not in (0, _formula(r)):  # a memmap is all or nothing: 64 bytes per page
            notes.append(
                f"✗ {p.arch} {p.behaviour}: {per} bytes per guest, the kernel's formula gives {_formula(r)}"
            )
        first = r.per_guest[0] if r.per_guest else None
        per_guest.add_row(
            p.arch,
            p.behaviour,
            r.driver,
            _mib(per),
            _mib(_formula(r)),
            _mib(first.pagetable_bytes if first else None),
            f"{first.ptes:,}" if first else "-",
        )
        totals.add_row(
            p.arch,
            p.behaviour,
            _mib(r.total_memmap_bytes),
            _mib(r.total_pagetable_bytes),
            str(r.total_ptes) if r.total_ptes is not None else "-",
            "never" if r.break_even is None else f"{r.break_even} guests",
            f"{r.elapsed_s:.1f}",
        )
    console.print(per_guest)
    console.print(totals)
    for note in notes:
        console.print(f"[dim]{note}[/dim]")


def _dump(results: Sequence[tuple[Planned, GuestsResult | None, str | None]], directory: Path) -> list[Path]:
    """The kept first guest of each (arch, behaviour) that ran (all its guests are alike)."""
    from mixedmap.dump import dump_machine

    paths = []
    for p, r, _ in results:
        if r is not None and r.machines:
            files = dump_machine(r.machines[0], directory, f"guest0-{p.arch}-{p.behaviour}")
            paths.append(files.manifest)
    return paths
