"""``mixedmap profiles``: the kernel semantics profiles a run can pick."""

from __future__ import annotations

import click

from mixedmap.cli.common import emit_json, json_option, out_console
from mixedmap.profiles import PROFILES, get_profile


@click.command()
@json_option
def profiles(as_json: bool) -> None:
    """List the kernel semantics profiles."""
    rows = [
        {"name": p.name, "summary": p.summary, "default": p == get_profile(None)} for p in PROFILES.values()
    ]
    if as_json:
        emit_json(rows)
        return
    out = out_console()
    for r in rows:
        out.print(f"{r['name']:8} {'(default) ' if r['default'] else ''}{r['summary']}")
