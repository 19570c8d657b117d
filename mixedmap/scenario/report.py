"""Scenario reports: the runs side by side (rich tables) or as JSON.

The steps table has one column per (arch, kernel): reading a row across shows where arches
and schemes agree and where they part, which is the point of running one file everywhere.
When the columns do not fit the terminal whole, the table comes in parts, a few arches each.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from rich.console import Console
from rich.table import Column
from rich.text import Text

from mixedmap._table import Row, Spec, keyed_table, side_by_side
from mixedmap.scenario import schema as S
from mixedmap.scenario.load import to_dict
from mixedmap.scenario.run import RunResult, StepResult

#: outcome keys shown in a cell, in this order (pfns, PTE values and addresses differ by
#: arch and live in the JSON report)
_CELL_KEYS = (
    "vm_fault",
    "fault",
    "data",
    "mapped",
    "pinned",
    "unpinned",
    "released",
    "inserted",
    "fast_pages",
    "slow_pages",
    "fallbacks",
    "errors",
    "present",
    "special",
    "writable",
    "normal",
    "struct_page",
    "refcount",
    "mapcount",
    "refcount_delta",
    "mapcount_delta",
    "pins",
    "maybe_dma_pinned",
    "rss_file",
    "rss_anon",
)
_SHORT = {
    "refcount_delta": "Δref",
    "mapcount_delta": "Δmap",
    "refcount": "ref",
    "mapcount": "map",
    "maybe_dma_pinned": "dma_pinned",
}


def cell(step: StepResult) -> Text:
    """One step's outcome as a short coloured text."""
    if step.skipped:
        return Text("-", style="dim")
    out = step.outcome
    name = str(out.get("outcome", "?"))
    text = Text(name, style="green" if name == "ok" else "yellow")
    for key in _CELL_KEYS:
        if key in out:
            v = out[key]
            shown = ("y" if v else "n") if isinstance(v, bool) else str(v)
            text.append(f" {_SHORT.get(key, key)}={shown}")
    for f in step.failures:
        text.append(f"\n✗ {f}", style="bold red")
    return text


def _bytes(n: int) -> str:
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            return f"{n / div:.2f} {unit}".replace(".00 ", " ")
    return f"{n} B"


def render(scen: S.Scenario, filename: str, runs: Sequence[RunResult], console: Console) -> None:
    h = scen.scenario
    console.print(f"[bold]{h.name}[/bold]  ({filename})")
    if h.description:
        console.print(h.description)
    if h.reference:
        console.print(f"[dim]reference: {h.reference}[/dim]")
    active = [r for r in runs if r.skipped is None]
    for r in runs:
        if r.skipped:
            console.print(f"[dim]{r.key}: not run: {r.skipped}[/dim]")
        elif r.error:
            console.print(f"[bold red]{r.key}: {r.error}[/bold red]")
    shown = [r for r in active if r.error is None]
    if not shown:
        return
    keys = [r.key for r in shown]
    step_rows: list[Row] = []
    for i, st in enumerate(scen.steps):
        label = Text(shown[0].steps[i].label)
        if st.note:
            label.append(f"\n{st.note}", style="dim")
        step_rows.append(((str(i), label), [cell(r.steps[i]) for r in shown]))
    lead: list[Spec] = [Column("#", justify="right"), "step"]
    console.print(side_by_side(lead, keys, step_rows, title="steps", show_lines=True))
    end_rows: list[Row] = [
        ((f"{p}: rss file/anon",), [_proc_cell(r.processes.get(p)) for r in shown])
        for p in sorted({p for r in shown for p in r.processes})
    ]
    for key, title in (
        ("memmap_bytes", "memmap (whole machine)"),
        ("device_memmap_bytes", "memmap of scenario devices"),
        ("pagetable_bytes", "page tables"),
    ):
        end_rows.append(((title,), [_bytes(int(r.machine.get(key, 0))) for r in shown]))
    end_rows.append(
        (
            ("expectations failed",),
            [Text(str(r.failures), style="red" if r.failures else "green") for r in shown],
        )
    )
    console.print(side_by_side([""], keys, end_rows, title="at the end", justify="right"))
    _gup_table(scen, shown, console)
    for r in shown:
        for res in r.steps:
            for f in res.failures:
                console.print(
                    f"[bold red]✗ {r.key} step {res.index} ({res.label}): {f}[/bold red]", soft_wrap=True
                )


def _proc_cell(p: dict[str, Any] | None) -> str:
    if p is None:
        return "-"
    return f"{p['rss_file']}/{p['rss_anon']}" + ("" if p["alive"] else " (exited)")


def _gup_table(scen: S.Scenario, runs: Sequence[RunResult], console: Console) -> None:
    """get_user_pages_fast totals: how often the lockless walk did the whole job, and why not."""
    idx = [i for i, st in enumerate(scen.steps) if isinstance(st, S.Gup) and st.fast]
    if not idx:
        return
    table = keyed_table(
        ["run"],
        ["step", "calls", "fast pages", "slow pages", "fell back", "why"],
        title="get_user_pages_fast",
    )
    for r in runs:
        for i in idx:
            o = r.steps[i].outcome
            if r.steps[i].skipped:
                continue
            why = "; ".join(f"{n}x {k}" for k, n in o.get("reasons", {}).items()) or "-"
            table.add_row(
                r.key,
                str(i),
                str(o.get("calls", 0)),
                str(o.get("fast_pages", 0)),
                str(o.get("slow_pages", 0)),
                str(o.get("fallbacks", 0)),
                why,
            )
    console.print(table)


def as_json(scen: S.Scenario, filename: str, runs: Sequence[RunResult]) -> dict[str, Any]:
    return {
        "file": filename,
        "scenario": to_dict(scen),
        "runs": [attrs.asdict(r) | {"failures": r.failures} for r in runs],
    }
