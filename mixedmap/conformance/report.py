"""Collects conformance results per (arch, area) and renders the matrix.

Registered as a plugin object in the pytest run that ``mixedmap conformance`` starts; with
pytest-xdist the controller receives every worker's reports, user_properties included.
"""

from __future__ import annotations

import json
import platform
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from mixedmap._table import Row, key_column, side_by_side
from mixedmap.conformance import AREAS, SUITE_VERSION

OUTCOMES = ("passed", "skipped", "xfailed", "failed")


class MatrixReporter:
    """pytest plugin object: counts outcomes per arch x area, keeps failures and skips."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
        self.failures: list[dict[str, str]] = []
        self.skip_reasons: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        arch, area = props.get("mixedmap_arch"), props.get("mixedmap_area")
        if arch is None or area is None:
            return
        key = (str(arch), str(area))
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            if hasattr(report, "wasxfail"):
                outcome = "xfailed" if report.skipped else "failed"
            else:
                outcome = report.outcome
            self.counts[key][outcome] += 1
            if outcome == "failed":
                self.failures.append(
                    {
                        "test": report.nodeid,
                        "arch": key[0],
                        "area": key[1],
                        "error": report.longreprtext[-2000:],
                    }
                )
            if outcome == "skipped" and isinstance(report.longrepr, tuple):
                self.skip_reasons[key][str(report.longrepr[2])] += 1

    @property
    def arches(self) -> list[str]:
        return sorted({a for a, _ in self.counts})

    def cell(self, arch: str, area: str) -> Counter[str]:
        return self.counts.get((arch, area), Counter())

    def _cell_text(self, arch: str, area: str) -> str:
        c = self.cell(arch, area)
        if not c:
            return "[dim]-[/dim]"
        parts = [f"[green]{c['passed']} pass[/green]"] if c["passed"] else []
        if c["skipped"]:
            parts.append(f"[yellow]{c['skipped']} skip[/yellow]")
        if c["xfailed"]:
            parts.append(f"[blue]{c['xfailed']} xfail[/blue]")
        if c["failed"]:
            parts.append(f"[bold red]{c['failed']} FAIL[/bold red]")
        return "\n".join(parts)

    def render(self, console: Console) -> None:
        rows: list[Row] = [((arch,), [self._cell_text(arch, area) for area in AREAS]) for arch in self.arches]
        matrix = side_by_side(
            [key_column("arch")],
            AREAS,
            rows,
            title=f"mixedmap conformance (suite {SUITE_VERSION})",
            justify="center",
            group=str,
            show_lines=True,
        )
        console.print(matrix)
        for f in self.failures[:20]:
            console.print(f"[red]FAIL[/red] {f['test']}")
        if len(self.failures) > 20:
            console.print(f"... and {len(self.failures) - 20} more failures")

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        return {
            "suite_version": SUITE_VERSION,
            "python": platform.python_version(),
            **meta,
            "matrix": {
                arch: {area: dict(self.cell(arch, area)) for area in AREAS if self.cell(arch, area)}
                for arch in self.arches
            },
            "skip_reasons": {f"{a}/{r}": dict(c) for (a, r), c in self.skip_reasons.items()},
            "failures": self.failures,
        }

    def write_json(self, path: str | Path, meta: dict[str, Any]) -> None:
        Path(path).write_text(json.dumps(self.to_json(meta), indent=2))
