"""What every command shares: its options, parsing, per-invocation state, and output.

Output goes through here so every command gets the same behaviour: rich consoles built per
call (a width from ``$COLUMNS`` or the terminal at the time, not at import), tables whose key
columns stay whole at 80 columns (:mod:`mixedmap._table`), JSON for scripts with ``--json``,
one red line for a mixedmap error. Logging is configured here and only here (to stderr;
stdout belongs to reports).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click
from rich.console import Console

from mixedmap._log import render_json
from mixedmap._table import keyed_table, side_by_side
from mixedmap.plugin.registry import ArchRegistry, BoundMode

__all__ = [
    "Ctx",
    "arch_mode_options",
    "arch_option",
    "arch_options",
    "configure_logging",
    "emit_json",
    "err_console",
    "json_option",
    "kernel_option",
    "keyed_table",
    "mode_option",
    "opt_option",
    "out_console",
    "parse_int",
    "parse_opt",
    "show_error",
    "side_by_side",
]


def out_console() -> Console:
    """The console for reports (stdout)."""
    return Console(highlight=False)


def err_console() -> Console:
    """The console for warnings and errors (stderr)."""
    return Console(stderr=True, highlight=False)


def emit_json(obj: Any) -> None:
    """``obj`` as indented JSON on stdout; ints that JSON cannot hold as such become hex."""
    click.echo(json.dumps(obj, indent=2, default=lambda o: hex(o) if isinstance(o, int) else str(o)))


def show_error(message: object) -> None:
    err_console().print(f"[red]error:[/red] {message}")


def parse_int(text: str) -> int:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer (decimal or 0x-hex)") from None


def parse_opt(pairs: Sequence[str]) -> dict[str, object]:
    """KEY=VALUE pairs to a dict; booleans and ints (0x-hex too) are converted."""
    opts: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"--opt takes KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        val: object
        if raw.lower() in ("true", "false", "yes", "no"):
            val = raw.lower() in ("true", "yes")
        else:
            try:
                val = int(raw, 0)
            except ValueError:
                val = raw
        opts[key] = val
    return opts


def arch_options(opts: Sequence[str], mode: str | None) -> dict[str, Any]:
    """The ``--opt`` pairs with ``--mode`` folded in: the options an arch mode is bound with
    (``Any``: they go to ``Machine(**options)``, whose own keywords they must not shadow)."""
    options: dict[str, Any] = parse_opt(opts)
    if mode:
        options["mode"] = mode
    return options


class Ctx:
    """Per-invocation state: the registry, built only when a command needs arches."""

    def __init__(self, disable: tuple[str, ...]) -> None:
        self.disable = disable
        self._registry: ArchRegistry | None = None

    @property
    def registry(self) -> ArchRegistry:
        if self._registry is None:
            self._registry = ArchRegistry.load(disable=self.disable or None)
        return self._registry

    def mode(self, arch: str, kernel: str | None, mode: str | None, opts: Sequence[str]) -> BoundMode:
        return self.registry.bind(arch).mode(kernel, **arch_options(opts, mode))


class _StderrHandler(logging.Handler):
    """The CLI's one handler: writes to whatever sys.stderr is at the time (in-process
    callers and tests swap it), and is a class of its own so repeated runs do not stack."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def configure_logging(verbose: int, log_json: bool) -> None:
    logger = logging.getLogger("mixedmap")
    logger.setLevel(max(logging.DEBUG, logging.WARNING - 10 * verbose))
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    render_json(log_json)


arch_option = click.option("--arch", "-a", required=True, help="Arch name as `uname -m` prints it.")
kernel_option = click.option("--kernel", "-k", default=None, help="Kernel profile (default 2.6.27).")
mode_option = click.option("--mode", "-m", default=None, help="Arch mode (e.g. la57, region2, radix-4k).")
opt_option = click.option(
    "--opt", "-o", multiple=True, metavar="KEY=VALUE", help="Arch option, e.g. mmu=radix."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")

F = TypeVar("F", bound=Callable[..., Any])


def arch_mode_options(f: F) -> F:
    """``--arch --kernel --mode --opt``: the options that pick an arch mode, in that order."""
    for option in (opt_option, mode_option, kernel_option, arch_option):
        f = option(f)
    return f
