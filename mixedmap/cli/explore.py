"""``mixedmap explore``: the page-table explorer as a local web app (loopback by default)."""

from __future__ import annotations

import contextlib
import socket

import click

from mixedmap.cli.common import Ctx


@click.command()
@click.option("--port", "-p", default=8765, show_default=True, help="TCP port (0: any free one).")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on; anything but loopback exposes the explorer to the network.",
)
@click.option("--arch", "-a", default="x86_64", show_default=True, help="Initial arch.")
@click.option("--kernel", "-k", default=None, help="Initial kernel profile (default 2.6.27).")
@click.pass_obj
def explore(obj: Ctx, port: int, host: str, arch: str, kernel: str | None) -> None:
    """Serve the page-table explorer: map pages, walk VAs, step scenarios, diff kernels."""
    try:
        import uvicorn

        from mixedmap.explore.app import create_app
    except ImportError as exc:
        raise click.ClickException(
            f"the explorer needs its extra: pip install 'mixedmap[explore]' ({exc.name} is missing)"
        ) from None
    from mixedmap.explore.api import ApiError

    try:
        app = create_app(arch, kernel, registry=obj.registry)
    except ApiError as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{exc.field}") from None
    # Bind first, so the URL printed is the one listening (also with --port 0), then hand the
    # socket to uvicorn's public ``Server.run(sockets=...)``.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)  # connections made once the URL is printed wait for uvicorn
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"mixedmap explorer: http://{shown}:{bound}/  (Ctrl-C stops it)")
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
