"""The explorer's Starlette app: the page, its static assets and the JSON API it calls.

Handlers only parse the request and hand it to :mod:`mixedmap.explore.api`; the library's work
runs in the thread pool so a long scenario does not stall the event loop. A refused request
is a 4xx JSON ``{"error": ..., "field": ...}`` and changes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mixedmap._log import get_logger
from mixedmap.explore import api
from mixedmap.plugin.registry import ArchRegistry, default_registry

log = get_logger("mixedmap.explore.app")

Handler = Callable[[Request], Awaitable[Response]]


def _page() -> str:
    return (resources.files("mixedmap.explore") / "static" / "index.html").read_text()


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise api.ApiError("body", f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise api.ApiError("body", "expected a JSON object")
    return data


def _guard(fn: Callable[[Request], Awaitable[Any]]) -> Handler:
    """A handler whose refusals are 4xx JSON naming the culprit."""

    async def handler(request: Request) -> Response:
        try:
            return JSONResponse(await fn(request))
        except api.ApiError as exc:
            log.info("explore.refused", path=request.url.path, field=exc.field, error=exc.message)
            return JSONResponse(exc.to_json(), status_code=exc.status)

    return handler


def create_app(
    arch: str = "x86_64",
    kernel: str | None = None,
    mode: str | None = None,
    *,
    registry: ArchRegistry | None = None,
) -> Starlette:
    """The app for one explorer machine (initially ``arch``/``kernel``/``mode``)."""
    reg = registry or default_registry()
    explorer = api.Explorer(reg, arch, kernel, mode)

    async def index(request: Request) -> Response:
        return HTMLResponse(_page())

    async def arches(request: Request) -> Any:
        return {"arches": api.arches(reg), "scenarios": api.scenarios()}

    async def state(request: Request) -> Any:
        return explorer.state()

    async def configure(request: Request) -> Any:
        b = await _body(request)
        return await run_in_threadpool(
            explorer.configure, str(b.get("arch") or ""), b.get("kernel") or None, b.get("mode") or None
        )

    async def map_page(request: Request) -> Any:
        b = await _body(request)
        for key in ("va", "pfn"):
            if key not in b:
                raise api.ApiError(key, "required")
        return await run_in_threadpool(
            explorer.map, b["va"], b["pfn"], b.get("prot", "rw"), b.get("special", False)
        )

    async def walk(request: Request) -> Any:
        va = request.query_params.get("va")
        if va is None:
            raise api.ApiError("va", "required")
        return await run_in_threadpool(explorer.walk, va)

    async def layout(request: Request) -> Any:
        return await run_in_threadpool(explorer.layout, request.query_params.get("level") or None)

    def _scenario(b: dict[str, Any]) -> Any:
        text = b.get("text")
        if isinstance(text, str) and text.strip():
            return api.load_scenario(None, text)
        name = b.get("name")
        # Bundled names only: a path would let a page (or, with --host, anyone) read the
        # server's files; a file of one's own is pasted as text instead.
        if not isinstance(name, str) or name not in api.scenarios():
            names = ", ".join(api.scenarios())
            raise api.ApiError(
                "scenario", f"no bundled scenario {name!r}; bundled: {names}; or send its TOML text"
            )
        return api.load_scenario(name)

    async def scenario_run(request: Request) -> Any:
        b = await _body(request)
        _, scen = _scenario(b)
        arch_ = str(b.get("arch") or explorer.state()["arch"])
        kernel_ = str(b.get("kernel") or explorer.state()["kernel"])
        return await run_in_threadpool(api.step_through, scen, arch_, kernel_, reg)

    async def scenario_diff(request: Request) -> Any:
        b = await _body(request)
        _, scen = _scenario(b)
        arch_ = str(b.get("arch") or explorer.state()["arch"])
        return await run_in_threadpool(api.kernel_diff, scen, arch_, reg)

    static = StaticFiles(packages=[("mixedmap.explore", "static")])
    routes = [
        Route("/", index),
        Route("/api/arches", _guard(arches)),
        Route("/api/state", _guard(state)),
        Route("/api/configure", _guard(configure), methods=["POST"]),
        Route("/api/map", _guard(map_page), methods=["POST"]),
        Route("/api/walk", _guard(walk)),
        Route("/api/layout", _guard(layout)),
        Route("/api/scenario/run", _guard(scenario_run), methods=["POST"]),
        Route("/api/scenario/diff", _guard(scenario_diff), methods=["POST"]),
        Mount("/static", app=static, name="static"),
    ]
    app = Starlette(routes=routes)
    app.state.explorer = explorer
    return app
