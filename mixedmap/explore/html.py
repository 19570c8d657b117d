"""One scenario run as a single self-contained HTML file: no server, no network, opens from disk.

The file holds the same records the live explorer's API returns (each step's state, its trace
events, the walk of every present PTE, the kernel diff) as JSON, with the page's own CSS and
JavaScript inlined, so it renders exactly as the live page does.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from mixedmap._log import get_logger
from mixedmap.explore import api
from mixedmap.plugin.registry import ArchRegistry, default_registry

log = get_logger("mixedmap.explore.html")

_CSS_TAG = '<link rel="stylesheet" href="/static/style.css">'
_JS_TAG = '<script src="/static/app.js"></script>'


def _asset(name: str) -> str:
    return (resources.files("mixedmap.explore") / "static" / name).read_text()


def _script_json(data: Any) -> str:
    """JSON safe inside <script>: no ``</`` may end the element early."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


def render_run_html(run: dict[str, Any], diff: dict[str, Any] | None) -> str:
    """The page with ``run`` (from :func:`api.step_through`) and ``diff`` built in."""
    page = _asset("index.html")
    css, js = _asset("style.css"), _asset("app.js")
    data = _script_json({"run": run, "diff": diff})
    page = page.replace(_CSS_TAG, f"<style>\n{css}</style>")
    safe_js = js.replace("</", "<\\/")
    inline = f"<script>window.MIXEDMAP_OFFLINE = {data};</script>\n<script>\n{safe_js}</script>"
    return page.replace(_JS_TAG, inline)


def write_run_html(
    scenario: str,
    arch: str,
    kernel: str,
    path: str | Path,
    *,
    registry: ArchRegistry | None = None,
    with_diff: bool = True,
) -> Path:
    """Run ``scenario`` (a bundled name or a file path) on ``arch``/``kernel`` and write the
    explorer's views of it to ``path``; returns the path. Bad input raises :class:`api.ApiError`."""
    reg = registry or default_registry()
    _, scen = api.load_scenario(scenario)
    run = api.step_through(scen, arch, kernel, reg)
    diff = api.kernel_diff(scen, arch, reg) if with_diff else None
    out = Path(path)
    out.write_text(render_run_html(run, diff), encoding="utf-8")
    log.info("explore.html_written", path=str(out), scenario=run["scenario"], arch=arch, kernel=kernel)
    return out
