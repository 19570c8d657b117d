"""Prints which conformance test caught each mutant (from the reports, so xdist works too).

Hooked from tests/conftest.py: under pytest-xdist the controller never loads this folder's
conftest, and the table must print there."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    rows: list[dict[str, object]] = []
    for outcome in ("passed", "failed"):
        for rep in terminalreporter.stats.get(outcome, []):
            props = dict(getattr(rep, "user_properties", ()))
            if getattr(rep, "when", "") == "call" and "meta_mutant" in props:
                rows.append({**props, "outcome": outcome})
    if not rows:
        return
    tr = terminalreporter
    tr.write_sep("=", "mutant -> first conformance test that caught it")
    width = max(len(str(r["meta_mutant"])) for r in rows)
    for r in sorted(rows, key=lambda r: str(r["meta_mutant"])):
        n = int(str(r["meta_failures"]))
        extra = f" (+{n - 1} more; areas {r['meta_areas']})" if n else ""
        mark = "" if r["outcome"] == "passed" else "  [NOT CAUGHT AS EXPECTED]"
        tr.write_line(f"{r['meta_mutant']!s:{width}}  {r['meta_caught_by']}{extra}{mark}")
        tr.write_line(f"{'':{width}}    bug: {r['meta_what']}  [exit {r['meta_exit']}, {r['meta_seconds']}s]")
