"""``mixedmap run`` (a scenario file, or a bundled one, on one arch or on all of them) and
``mixedmap trace`` (what a run's ``--trace`` file holds)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.table import Column

from mixedmap.cli.common import Ctx, emit_json, json_option, keyed_table, out_console
from mixedmap.errors import MixedmapError
from mixedmap.plugin.registry import ArchRegistry
from mixedmap.profiles import DEFAULT_PROFILE, get_profile
from mixedmap.scenario import schema as S
from mixedmap.scenario.load import ScenarioError, bundled, load
from mixedmap.scenario.report import as_json, render
from mixedmap.scenario.run import RunResult, run_one
from mixedmap.trace import Tracer


def plan(
    scen: S.Scenario, registry: ArchRegistry, arches: Sequence[str], kernels: Sequence[str]
) -> list[tuple[str, str]]:
    """(arch, kernel) pairs to run: the command line wins over the file, the file over
    "every installed arch, default kernel"; unknown names fail before anything runs."""
    names = list(arches) or scen.scenario.arches or list(registry.names)
    for a in names:
        if a not in registry.names:
            raise click.UsageError(f"arch {a!r} is not installed; installed: {', '.join(registry.names)}")
    ks = list(kernels) or scen.scenario.kernels or [DEFAULT_PROFILE.name]
    for k in ks:
        try:
            get_profile(k)
        except MixedmapError as exc:
            raise click.UsageError(str(exc)) from None
    return [(a, k) for a in names for k in ks]


def _list(console: Console, as_json_: bool) -> None:
    found = bundled()
    if as_json_:
        click.echo(json.dumps(found, indent=2))
        return
    table = keyed_table(["name"], ["what it shows"], title="bundled scenarios (mixedmap run NAME)")
    for name, desc in found.items():
        table.add_row(name, desc)
    console.print(table)


@click.command("run")
@click.argument("scenario", required=False)
@click.option("--arch", "-a", "arches", multiple=True, help="Run on this arch (repeatable; default: all).")
@click.option("--kernel", "-k", "kernels", multiple=True, help="Kernel profile (repeatable).")
@click.option("--list", "list_", is_flag=True, help="List the bundled scenarios.")
@click.option("--json", "as_json_", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--trace", type=click.Path(dir_okay=False, path_type=Path), help="Write mm events (JSON lines)."
)
@click.option("--dump", type=click.Path(file_okay=False, path_type=Path), help="Write memory images here.")
@click.option(
    "--html",
    type=click.Path(path_type=Path),
    help="Write the explorer's page of the run to FILE.html (one arch and kernel), or of each run "
    "into a directory (SCENARIO-ARCH-KERNEL.html); the page opens offline.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory for plots (guests scenario).",
)
@click.option("--guests", type=int, default=None, help="Guests scenario: number of guests.")
@click.option("--image-size", default=None, help="Guests scenario: image size (e.g. 64M, 1G).")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Guests scenario: worker processes building guests (default: one per core, at most 8; "
    "1: all in this process). Every figure is still read from each guest's machine.",
)
@click.pass_obj
def run_cmd(
    obj: Ctx,
    scenario: str | None,
    arches: tuple[str, ...],
    kernels: tuple[str, ...],
    list_: bool,
    as_json_: bool,
    trace: Path | None,
    dump: Path | None,
    html: Path | None,
    out: Path,
    guests: int | None,
    image_size: str | None,
    workers: int | None,
) -> None:
    """Run a scenario file (or a bundled scenario by name) and report every step's outcome,
    per process RSS, memmap and page-table bytes, side by side for each arch and kernel.

    The exit status is 1 when an expectation in the file failed or a run could not be set
    up, 2 when the file itself is wrong (nothing runs then).
    """
    console = out_console()
    if list_:
        _list(console, as_json_)
        return
    if scenario is None:
        raise click.UsageError("give a scenario file or a bundled name (see --list)")
    try:
        filename, scen = load(scenario)
    except ScenarioError as exc:
        raise click.UsageError(str(exc)) from None
    registry = obj.registry
    pairs = plan(scen, registry, arches, kernels)
    if scen.guests is not None:
        from mixedmap.scenario.guests import run_guests_scenario

        if html is not None:
            raise click.UsageError("--html is for scenarios with steps (the explorer steps through them)")
        if trace is not None:
            raise click.UsageError(
                "--trace is for scenarios with steps: a guests run faults whole images in batches "
                "(26 million PTEs for 100 x 1 GiB); trace a small guest through a step scenario"
            )

        failed = run_guests_scenario(
            scen,
            filename,
            registry,
            [a for a, _ in pairs],
            console,
            as_json_,
            out=out,
            dump=dump,
            count=guests,
            image_size=image_size,
            kernels=kernels,
            workers=workers,
        )
        click.get_current_context().exit(1 if failed else 0)
    if guests is not None or image_size is not None or workers is not None:
        raise click.UsageError("--guests/--image-size/--workers apply to a scenario with a [guests] table")
    if html is not None and html.suffix == ".html" and len(pairs) != 1:
        raise click.UsageError(
            f"--html {html}: a file holds one run, this is {len(pairs)}; give one --arch and one "
            "--kernel, or a directory"
        )
    if dump is not None:
        dump.mkdir(parents=True, exist_ok=True)
    tracer = Tracer(trace) if trace is not None else None
    runs: list[RunResult] = []
    try:
        for arch, kernel in pairs:
            runs.append(run_one(scen, arch, kernel, registry=registry, tracer=tracer, dump=dump))
    finally:
        if tracer is not None:
            tracer.close()
    if as_json_:
        click.echo(json.dumps(as_json(scen, filename, runs), indent=2, default=str))
    else:
        render(scen, filename, runs, console)
        if tracer is not None:
            console.print(f"trace: {tracer.events} events in {trace}")
    if not any(r.skipped is None for r in runs):
        raise click.ClickException("no (arch, kernel) pair of this scenario could run here")
    if html is not None:
        _write_html(scenario, scen, runs, html, registry, console)
    click.get_current_context().exit(1 if any(r.failures for r in runs) else 0)


def _write_html(
    scenario: str,
    scen: S.Scenario,
    runs: Sequence[RunResult],
    directory: Path,
    registry: ArchRegistry,
    console: Console,
) -> None:
    """One offline explorer page per run that ran (:func:`mixedmap.explore.html.write_run_html`):
    into ``directory``, or into that one file when it is named ``*.html``."""
    from mixedmap.explore.api import ApiError
    from mixedmap.explore.html import write_run_html

    ran = [r for r in runs if r.skipped is None and r.error is None]
    single = directory.suffix == ".html"
    if single and len(ran) != 1:
        raise click.UsageError(
            f"--html {directory}: a file holds one run, this is {len(ran)}; give one --arch and one "
            "--kernel, or a directory"
        )
    if not single:
        directory.mkdir(parents=True, exist_ok=True)
    for r in ran:
        path = directory if single else directory / f"{scen.scenario.name}-{r.arch}-{r.kernel}.html"
        try:
            write_run_html(scenario, r.arch, r.kernel, path, registry=registry)
        except ApiError as exc:
            raise click.ClickException(f"--html {path}: {exc.field}: {exc.message}") from None
        console.print(f"html: {path}")


@click.group()
def trace() -> None:
    """mm event traces (JSON lines)."""


@trace.command("summarize")
@json_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def trace_summarize(as_json: bool, path: str) -> None:
    """Counts per event and per kernel function of a trace file."""
    from mixedmap.trace import summarize

    try:
        rec = summarize(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if as_json:
        emit_json(rec)
        return
    out = out_console()
    for title, counts in (("event", rec["events"]), ("kernel function", rec["functions"])):
        table = keyed_table([title], [Column("count", justify="right")], title=f"per {title}")
        for k, v in counts.items():
            table.add_row(k, f"{v:,}")
        out.print(table)
