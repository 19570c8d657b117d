"""``mixedmap diff``: one scenario under several kernels, only what differs and the rule why."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console

from mixedmap.cli.common import Ctx, emit_json, keyed_table, out_console
from mixedmap.errors import MixedmapError
from mixedmap.profiles import get_profile
from mixedmap.scenario.diff import DEFAULT_KERNELS, Difference, DiffResult, diff, to_json
from mixedmap.scenario.load import ScenarioError, load


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k}={n}" for k, n in v.items()) or "-"
    return "-" if v is None else str(v)


def _why(d: Difference, legend: dict[str, int]) -> str:
    """The difference's causes as legend numbers ([1], [2]); the text is printed once below."""
    if not d.causes:
        return "earlier" if d.follows else "?"
    return " ".join(f"[{legend.setdefault(c.text(), len(legend) + 1)}]" for c in d.causes)


def render(res: DiffResult, console: Console) -> None:
    """Per arch, one row per differing key with a column per kernel, then what [n] means."""
    if res.identical:
        ran = [a.arch for a in res.arches if len(a.not_run) < len(res.kernels) - 1]
        console.print(
            f"{res.scenario}: identical under {', '.join(res.kernels)} on {', '.join(ran) or 'no arch'}"
        )
        return
    for a in res.arches:
        for k, why in a.not_run.items():
            console.print(f"[dim]{a.arch}/{k}: not run: {why}[/dim]", markup=True, highlight=False)
        if not a.differences:
            console.print(f"{a.arch}: identical under the kernels it ran")
            continue
        kernels = [k for k in res.kernels if k not in a.not_run]
        table = keyed_table(["step", "key"], [*kernels, "why"], title=f"{res.scenario} on {a.arch}")
        legend: dict[str, int] = {}
        for d in a.differences:
            step = (
                f"end {d.label.removeprefix('end of run: ')}"
                if d.step < 0
                else f"{d.step} {d.label.split()[0]}"
            )
            values = [_value(d.values.get(k)) for k in kernels]
            table.add_row(step, d.key, *values, _why(d, legend))
        console.print(table)
        for text, n in legend.items():
            console.print(f"  [{n}] {text}", markup=False, highlight=False)
        if any(not d.causes and d.follows for d in a.differences):
            console.print(
                "  earlier: no rule this step asked explains it; an earlier step already differed",
                highlight=False,
            )


@click.command("diff")
@click.argument("scenario")
@click.option(
    "--kernel",
    "-k",
    "kernels",
    multiple=True,
    help=f"Kernel profile (repeatable; default {', '.join(DEFAULT_KERNELS)}).",
)
@click.option(
    "--arch", "-a", "arches", multiple=True, help="Arch (repeatable; default: every installed one)."
)
@click.option("--json", "as_json_", is_flag=True, help="Print the differences as JSON.")
@click.pass_obj
def diff_cmd(obj: Ctx, scenario: str, kernels: Sequence[str], arches: Sequence[str], as_json_: bool) -> None:
    """Run SCENARIO (a file or a bundled name) under several kernels; show only what differs.

    Each difference names the kernel rule that causes it (function, file, the release that
    introduced it) or the arch format fact (a special bit, a lockless GUP walk).
    """
    try:
        _, scen = load(scenario)
    except ScenarioError as exc:
        raise click.UsageError(str(exc)) from None
    ks = tuple(kernels) or DEFAULT_KERNELS
    for k in ks:
        try:
            get_profile(k)
        except MixedmapError as exc:
            raise click.UsageError(str(exc)) from None
    reg = obj.registry
    for a in arches:
        if a not in reg.names:
            raise click.UsageError(f"arch {a!r} is not installed; installed: {', '.join(reg.names)}")
    res = diff(scen, ks, arches or None, registry=reg)
    if as_json_:
        emit_json(to_json(res))
        return
    render(res, out_console())
