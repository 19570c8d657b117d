"""The conformance suite must fail every deliberately broken first-party arch.

Each mutant (``tests/meta/mutants.py``) is installed as its own throw-away distribution with
an entry point, and ``mixedmap conformance --arch <mutant> --kernel <profile> --json ...`` runs
in a subprocess whose PYTHONPATH holds that distribution: the route a user takes. A mutant is
caught when the command exits non-zero and its JSON lists failures of that arch from one of
the expected areas (or, for a plugin the host refuses, when the command exits 2 naming the
load error). An unmutated twin of every (base arch, profile) must pass, so a catch is the
bug's doing, not the renaming's. Runs start in parallel when the session fixture is first
used; ``conftest.py`` prints the mutant -> first catching test table at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pytest

from mixedmap.testing.distributions import make_distribution
from tests.meta.mutants import MUTANTS, NEW_CHECKS, Mutant, base_installed, controls, distribution_files

MAX_EXAMPLES = "20"
#: Dropped from the child's environment: they would change the child pytest run.
CHILD_ENV_DROP = ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_TESTRUNUID")


@attrs.frozen
class Run:
    """One ``mixedmap conformance`` run on one mutant."""

    mutant: Mutant
    command: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None
    seconds: float

    @property
    def failures(self) -> list[dict[str, str]]:
        return list(self.report["failures"]) if self.report else []

    @property
    def error_line(self) -> str:
        """stderr with rich's line wrapping undone."""
        return " ".join(self.stderr.split())

    def explain(self) -> str:
        return (
            f"$ {' '.join(self.command)}\nexit {self.code} after {self.seconds:.1f}s\n"
            f"--- stdout (tail) ---\n{self.stdout[-4000:]}\n--- stderr (tail) ---\n{self.stderr[-2000:]}"
        )


def run_conformance(m: Mutant, root: Path, old_suite: bool = False) -> Run:
    """Install ``m`` as a distribution under ``root`` and run the suite on it in a subprocess
    (``old_suite``: with the checks added for issue 15 deselected)."""
    work = root / (m.name + ("-old" if old_suite else ""))
    dist, modules, eps = distribution_files(m)
    site = make_distribution(work / "site", dist, modules, eps)
    out = work / "conformance.json"
    env = {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env["COLUMNS"] = "200"
    command = (
        sys.executable,
        "-c",
        "from mixedmap.cli import entry; entry()",
        "conformance",
        "--arch",
        m.name,
        "--kernel",
        m.kernel,
        "--json",
        str(out),
        "--max-examples",
        MAX_EXAMPLES,
        "--",
        "--hypothesis-seed=0",
        *(("-k", " and ".join(f"not {name}" for name in NEW_CHECKS)) if old_suite else ()),
    )
    start = time.monotonic()
    proc = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    report = json.loads(out.read_text()) if out.exists() else None
    return Run(m, command, proc.returncode, proc.stdout, proc.stderr, report, time.monotonic() - start)


class MetaRunner:
    """Runs mutants in a small thread pool of subprocesses, each at most once."""

    def __init__(self, root: Path, workers: int) -> None:
        self.root = root
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mutant")
        self._futures: dict[str, Future[Run]] = {}
        self._lock = threading.Lock()

    def submit(self, m: Mutant, old_suite: bool = False) -> Future[Run]:
        key = m.name + ("-old" if old_suite else "")
        with self._lock:
            if key not in self._futures:
                self._futures[key] = self._pool.submit(run_conformance, m, self.root, old_suite)
            return self._futures[key]

    def result(self, m: Mutant, old_suite: bool = False) -> Run:
        return self.submit(m, old_suite).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="session")
def meta_runner(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MetaRunner]:
    runner = MetaRunner(tmp_path_factory.mktemp("mutants"), workers=max(1, min(4, os.cpu_count() or 1)))
    if "PYTEST_XDIST_WORKER" not in os.environ:  # a worker runs only some items: no prefetch
        for item in request.session.items:
            spec = getattr(item, "callspec", None)
            m = spec.params.get("mutant") if spec is not None else None
            if isinstance(m, Mutant) and base_installed(m.base):
                runner.submit(m, old_suite=item.name.startswith("test_new_kind_passed_the_old_suite"))
    yield runner
    runner.close()


def _need_base(m: Mutant) -> None:
    if not base_installed(m.base):
        pytest.skip(f"base arch {m.base} of {m.name} is not installed")


def test_catalogue_is_distinct() -> None:
    assert len(MUTANTS) >= 12
    assert len({m.name for m in MUTANTS}) == len(MUTANTS)
    kinds = {(m.base, m.kernel, m.ops, m.plugin, m.fmt_change) for m in MUTANTS}
    assert len(kinds) == len(MUTANTS), "two mutants carry the same bug"
    assert all(m.catch for m in MUTANTS)


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.name for m in MUTANTS])
def test_suite_catches_mutant(
    mutant: Mutant, meta_runner: MetaRunner, request: pytest.FixtureRequest
) -> None:
    """The JSON lists failures of the mutant from an expected area (or the host refused it)."""
    _need_base(mutant)
    run = meta_runner.result(mutant)
    failures = run.failures
    if mutant.catch == ("load",):
        line = run.error_line
        head, _, why = line.rpartition(f"{mutant.name}_plugin:PLUGIN': ")
        caught_by = (
            f"plugin host refused it at load: {why or head}" if "failed to load" in line else "NOT CAUGHT"
        )
    else:
        caught_by = failures[0]["test"] if failures else "NOT CAUGHT"
    request.node.user_properties.extend(
        [
            ("meta_mutant", mutant.name),
            ("meta_what", mutant.what),
            ("meta_caught_by", caught_by),
            ("meta_failures", len(failures)),
            ("meta_areas", ",".join(sorted({f["area"] for f in failures}))),
            ("meta_exit", run.code),
            ("meta_seconds", round(run.seconds, 1)),
        ]
    )
    if mutant.catch == ("load",):
        assert run.code == 2 and run.report is None, run.explain()
        assert f"arch {mutant.name!r} failed to load" in run.error_line, run.explain()
        assert mutant.load_error in run.error_line, run.explain()
        return
    assert run.report is not None, f"no JSON written\n{run.explain()}"
    assert failures, f"{mutant.name} ({mutant.what}) PASSED the conformance suite\n{run.explain()}"
    assert {f["arch"] for f in failures} == {mutant.name}
    areas = {f["area"] for f in failures}
    assert areas & set(mutant.catch), (
        f"{mutant.name} caught only by areas {sorted(areas)}, expected one of {mutant.catch}: "
        + ", ".join(f["test"] for f in failures)
    )


def test_exit_status_is_nonzero_when_the_suite_fails(meta_runner: MetaRunner) -> None:
    """What CI sees: ``mixedmap conformance`` must exit non-zero for every mutant."""
    runs = [meta_runner.result(m) for m in MUTANTS if base_installed(m.base)]
    if not runs:
        pytest.skip("no first-party arch installed")
    zero = [f"{r.mutant.name} ({len(r.failures)} failures)" for r in runs if r.code == 0]
    assert not zero, "mixedmap conformance exited 0 although the suite failed on: " + ", ".join(zero)


@pytest.mark.parametrize("mutant", controls(), ids=[m.name for m in controls()])
def test_unmutated_twin_passes(mutant: Mutant, meta_runner: MetaRunner) -> None:
    """The renamed, delegating copy of the base arch passes: catches are the bugs' doing."""
    _need_base(mutant)
    run = meta_runner.result(mutant)
    assert run.code == 0 and run.report is not None, run.explain()
    assert run.failures == []
    assert run.report["matrix"].get(mutant.name), f"no test ran on {mutant.name}\n{run.explain()}"


OLD_KINDS = [m for m in MUTANTS if m.passed_old_suite]


@pytest.mark.parametrize("mutant", OLD_KINDS, ids=[m.name for m in OLD_KINDS])
def test_new_kind_passed_the_old_suite(mutant: Mutant, meta_runner: MetaRunner) -> None:
    """The four kinds of porting bug of issue 15 got through the suite before its checks: with
    those checks deselected the suite passes each mutant, so the new checks are the catch."""
    _need_base(mutant)
    run = meta_runner.result(mutant, old_suite=True)
    assert run.report is not None, f"no JSON written\n{run.explain()}"
    assert run.code == 0 and run.failures == [], (
        f"{mutant.name} is caught without the new checks: {[f['test'] for f in run.failures]}\n{run.explain()}"
    )
