"""Each external walker of ``mixedmap verify`` on every format it can walk (issue 12).

A walker that is not installed skips with its install hint; a format a walker cannot walk
must say why (never a silent skip).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mixedmap.verify.driver import CaseSpec, all_walkers, build, case_specs, compare
from tests.conftest import REGISTRY

SPECS = case_specs(registry=REGISTRY, arches=[a for a in REGISTRY.names if not a.startswith("toy")])
WALKERS = {w.name: w for w in all_walkers()}


@pytest.mark.parametrize("walker", list(WALKERS))
@pytest.mark.parametrize("spec", SPECS, ids=[s.label for s in SPECS])
def test_walker_agrees(spec: CaseSpec, walker: str, tmp_path: Path) -> None:
    w = WALKERS[walker]
    hint = w.missing()
    if hint:
        pytest.skip(hint)
    built = build(spec, 200, 1, tmp_path, REGISTRY)
    why = w.cannot_walk(built.machine)
    if why:
        assert "no" in why or "only" in why, why  # a reason, cited
        pytest.skip(f"{walker} on {spec.label}: {why}")
    cell = compare(built, w)
    assert not cell.disagreements, [d.describe() for d in cell.disagreements[:5]]
    assert cell.agreed == cell.total
    mapped = built.n_mapped - sum(n for _, n in cell.rules)
    assert cell.total - (len(built.vas) - built.n_mapped) == mapped > 100
    # holes really were asked for, and every walker said "not mapped" to them
    assert len(built.vas) - built.n_mapped >= 16


def test_every_walked_format_has_large_leaves_and_every_prot(tmp_path: Path) -> None:
    spec = next(s for s in SPECS if s.arch == "x86_64" and s.mode == "4level" and s.profile == "6.18")
    built = build(spec, 2000, 0, tmp_path, REGISTRY)
    sizes = set(built.size[: built.n_mapped].tolist())
    assert sizes == {4096, 2 << 20, 1 << 30}
    prots = set(built.prot[: built.n_mapped])
    assert {"none", "r", "rw", "rx", "rwx"} <= {p.split("/")[0] for p in prots}
    assert built.special[: built.n_mapped].any() and not built.special[: built.n_mapped].all()
