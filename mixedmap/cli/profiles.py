"""``mixedmap profiles``: the kernel semantics profiles a run can pick, and rule by rule what
each one means (:mod:`mixedmap.rules`)."""

from __future__ import annotations

import click

from mixedmap._table import keyed_table
from mixedmap.cli.common import emit_json, json_option, out_console
from mixedmap.profiles import PROFILES, get_profile
from mixedmap.rules import RULES


@click.command()
@click.option(
    "--rules",
    "show_rules",
    is_flag=True,
    help="Show each kernel rule, its release and the profiles that have it.",
)
@json_option
def profiles(show_rules: bool, as_json: bool) -> None:
    """List the kernel semantics profiles (with --rules: what differs between them, rule by rule)."""
    if show_rules:
        _rules(as_json)
        return
    rows = [
        {"name": p.name, "summary": p.summary, "default": p == get_profile(None)} for p in PROFILES.values()
    ]
    if as_json:
        emit_json(rows)
        return
    out = out_console()
    for r in rows:
        out.print(f"{r['name']:8} {'(default) ' if r['default'] else ''}{r['summary']}")


def _rules(as_json: bool) -> None:
    names = list(PROFILES)
    rows = [
        {
            "name": r.name,
            "function": r.function,
            "file": r.file,
            "since": r.since,
            "summary": r.summary,
            "profiles": [n for n in names if r.applies(PROFILES[n])],
        }
        for r in RULES
    ]
    if as_json:
        emit_json(rows)
        return
    table = keyed_table([], ["rule / kernel function", "since", *names], show_lines=True)
    for row in rows:
        cells = ["yes" if n in row["profiles"] else "-" for n in names]
        since = str(row["since"]).replace(", removed in ", "-")
        table.add_row(f"[bold]{row['name']}[/]\n{row['function']} ({row['file']})", since, *cells)
    out_console().print(table)
