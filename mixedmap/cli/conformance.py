"""``mixedmap conformance``: the cross-arch suite under pytest, as an arch x area matrix."""

from __future__ import annotations

import os

import click

from mixedmap.cli.common import Ctx, out_console
from mixedmap.profiles import get_profile


@click.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--arch", "-a", "arches", multiple=True, help="Arch to test (repeatable; default: all installed)."
)
@click.option("--kernel", "-k", "kernels", multiple=True, help="Kernel profile (repeatable; default: all).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON here.")
@click.option("--junitxml", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("-n", "workers", default=None, help="pytest-xdist workers (a number or 'auto').")
@click.option("--max-examples", type=int, default=None, help="Hypothesis examples per property.")
@click.option("--thorough", is_flag=True, help="Many more examples (500 per property).")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def conformance(
    obj: Ctx,
    arches: tuple[str, ...],
    kernels: tuple[str, ...],
    json_path: str | None,
    junitxml: str | None,
    workers: str | None,
    max_examples: int | None,
    thorough: bool,
    pytest_args: tuple[str, ...],
) -> None:
    """Run the cross-arch conformance suite and print an arch x area matrix.

    Extra arguments after ``--`` go to pytest. Exit status is non-zero on any failure.
    To spread a run over hosts, give pytest-xdist's options after ``--``, e.g.
    ``-- --dist loadscope --tx ssh=user@host//python=python3`` (every host needs the same
    mixedmap and plugins installed).
    """
    import pytest as _pytest

    from mixedmap.conformance.report import MatrixReporter

    for a in arches:
        obj.registry.bind(a)  # an unknown arch fails here, listing the installed ones
    for k in kernels:
        get_profile(k)

    args = ["--pyargs", "mixedmap.conformance", "-q", "-p", "no:cacheprovider"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):  # else the pytest11 entry point loads it
        args += ["-p", "mixedmap.testing.pytest_plugin"]
    args += ["-o", "addopts=", "-o", "testpaths="]
    # This process imported mixedmap before pytest started: that is expected, not a problem.
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for a in arches:
        args += ["--mixedmap-arch", a]
    for k in kernels:
        args += ["--mixedmap-kernel", get_profile(k).name]
    examples = 500 if thorough else max_examples if max_examples is not None else 25
    args += ["--mixedmap-max-examples", str(examples)]
    if workers:
        args += ["-n", str(workers)]
    if junitxml:
        args += ["--junitxml", junitxml]
    args += list(pytest_args)
    reporter = MatrixReporter()
    from mixedmap.plugin.manager import DISABLE_ENV
    from mixedmap.plugin.registry import reset_default_registry

    saved = os.environ.get(DISABLE_ENV)
    if obj.disable:  # the suite builds its own registry: tell it what this run disabled
        os.environ[DISABLE_ENV] = ",".join(obj.disable)
    reset_default_registry()
    try:
        code = _pytest.main(args, plugins=[reporter])
    finally:
        if saved is None:
            os.environ.pop(DISABLE_ENV, None)
        else:
            os.environ[DISABLE_ENV] = saved
        reset_default_registry()
    reporter.render(out_console())
    if json_path:
        reporter.write_json(
            json_path,
            {
                "arches": list(arches) or list(obj.registry.names),
                "kernels": list(kernels),
                "max_examples": examples,
            },
        )
    failed = int(code) not in (0,)
    if failed:
        raise click.exceptions.Exit(int(code) or 1)
