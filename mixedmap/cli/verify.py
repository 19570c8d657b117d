"""``mixedmap verify``: mixedmap's page tables checked by walkers nobody here wrote (issue 12)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from mixedmap._table import keyed_table
from mixedmap.cli.common import Ctx, emit_json, json_option, out_console
from mixedmap.verify.driver import Report, case_specs, run


def _report_json(rep: Report) -> dict[str, Any]:
    return {
        "ok": rep.ok,
        "seconds": rep.seconds,
        "not_built": dict(rep.not_built),
        "cells": [
            {
                "format": c.case,
                "walker": c.walker,
                "agreed": c.agreed,
                "total": c.total,
                "skipped": c.skipped,
                "walker_rules": dict(c.rules),
                "seconds": c.seconds,
                "disagreements": [
                    {
                        "va": f"{d.va:#x}",
                        "expected_pa": None if d.expected is None else f"{d.expected:#x}",
                        "prot": d.prot,
                        "special": d.special,
                        "page_size": d.size,
                        "walker_pa": None if d.said.pa is None else f"{d.said.pa:#x}",
                        "walker_said": d.said.detail,
                        "entries": list(d.entries),
                    }
                    for d in c.disagreements
                ],
            }
            for c in rep.cells
        ],
    }


def _print(rep: Report) -> None:
    out = out_console()
    walkers = list(dict.fromkeys(c.walker for c in rep.cells))
    fmts = list(dict.fromkeys(c.case for c in rep.cells))
    by = {(c.case, c.walker): c for c in rep.cells}
    table = keyed_table(["format"], walkers)
    reasons: dict[str, str] = {}
    for f in fmts:
        row = []
        for w in walkers:
            c = by.get((f, w))
            if c is None:
                row.append("")
            elif c.skipped:
                key = (
                    f"[{len(reasons) + 1}]"
                    if c.skipped not in reasons.values()
                    else next(k for k, v in reasons.items() if v == c.skipped)
                )
                reasons[key] = c.skipped
                row.append(f"not walked {key}")
            else:
                mark = "" if not c.disagreements else "[bold red] DISAGREE[/]"
                row.append(f"{c.agreed}/{c.total}{mark}")
        table.add_row(f, *row)
    out.print(table)
    uncovered = [f for f in fmts if all(by[(f, w)].skipped for w in walkers if (f, w) in by)]
    if uncovered:
        out.print("No external walker: " + ", ".join(uncovered))
    for k, v in reasons.items():
        out.print(f"{k} {v}")
    rules: dict[str, int] = {}
    for c in rep.cells:
        for r, n in c.rules:
            rules[f"{c.walker}: {r}"] = rules.get(f"{c.walker}: {r}", 0) + n
    if rules:
        out.print("Walkers' own documented rules (pages the walker does not map, not counted in the totals):")
        for r, n in rules.items():
            out.print(f"  {r}: {n} pages")
    for name, why in rep.not_built:
        out.print(f"{name}: {why}")
    for c in rep.cells:
        for d in c.disagreements:
            out.print(f"[red]{c.case} {c.walker}:[/] {d.describe()}")
    out.print(f"{'all agreed' if rep.ok else 'DISAGREEMENTS FOUND'} in {rep.seconds:.1f} s")


@click.command("verify")
@click.option("--arch", "-a", "arches", multiple=True, help="Only this arch; repeatable.")
@click.option("--kernel", "-k", "kernels", multiple=True, help="Only this kernel profile; repeatable.")
@click.option("--mode", "-m", "modes", multiple=True, help="Only this arch mode; repeatable.")
@click.option("--pages", "-n", default=2500, show_default=True, help="4 KiB pages mapped per format.")
@click.option("--seed", "-s", default=0, show_default=True, help="Random seed of the mappings.")
@click.option(
    "--keep", type=click.Path(file_okay=False), default=None, help="Keep the vmcores in this directory."
)
@json_option
@click.pass_obj
def verify(
    obj: Ctx,
    arches: tuple[str, ...],
    kernels: tuple[str, ...],
    modes: tuple[str, ...],
    pages: int,
    seed: int,
    keep: str | None,
    as_json: bool,
) -> None:
    """Translate random mappings with external walkers (drgn, volatility3, unicorn x86_64/s390x); exit 1 on any disagreement."""
    if pages < 1:
        raise click.BadParameter("--pages must be at least 1")
    specs = case_specs(arches, kernels, modes, obj.registry)
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        rep = run(specs, Path(keep), pages=pages, seed=seed, registry=obj.registry)
    else:
        with tempfile.TemporaryDirectory(prefix="mixedmap-verify-") as d:
            rep = run(specs, Path(d), pages=pages, seed=seed, registry=obj.registry)
    if as_json:
        emit_json(_report_json(rep))
    else:
        _print(rep)
    click.get_current_context().exit(0 if rep.ok else 1)
