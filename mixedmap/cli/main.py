"""The ``mixedmap`` click group, its commands, and the entry point that turns errors into
exit statuses."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from mixedmap.cli.arches import arches
from mixedmap.cli.common import Ctx, configure_logging, err_console, show_error
from mixedmap.cli.conformance import conformance
from mixedmap.cli.diff import diff_cmd
from mixedmap.cli.explore import explore
from mixedmap.cli.layout import layout
from mixedmap.cli.profiles import profiles
from mixedmap.cli.pte import pte
from mixedmap.cli.quiz import quiz
from mixedmap.cli.scenarios import run_cmd, trace
from mixedmap.cli.verify import verify
from mixedmap.cli.walk import walk
from mixedmap.cli.xip import xip
from mixedmap.errors import MixedmapError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--disable-plugin",
    "disable",
    multiple=True,
    metavar="NAME",
    help="Do not load this arch plugin (entry point or distribution name); repeatable. "
    "Overrides $MIXEDMAP_DISABLE_PLUGINS.",
)
@click.option("-v", "--verbose", count=True, help="Log more to stderr.")
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
@click.version_option(package_name="mixedmap")
@click.pass_context
def main(ctx: click.Context, disable: tuple[str, ...], verbose: int, log_json: bool) -> None:
    """mixedmap: Linux's special-mapping machinery as an executable, bit-exact model."""
    configure_logging(verbose, log_json)
    ctx.obj = Ctx(disable)


for _command in (arches, pte, walk, layout, xip, trace, conformance, profiles, run_cmd, diff_cmd, explore):
    main.add_command(_command)
main.add_command(quiz)
main.add_command(verify)


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point that turns mixedmap errors into one clear line and exit status 2."""
    try:
        # Without standalone mode click *returns* the code of an Exit instead of raising it.
        rv = main.main(
            args=list(argv) if argv is not None else None, prog_name="mixedmap", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err_console().print("aborted")
        return 1
    except MixedmapError as exc:
        show_error(exc)
        return 2
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    sys.exit(run())
