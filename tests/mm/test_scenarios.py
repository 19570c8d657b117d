"""Scenarios S6, S7, S8, S10, S11 and S16 of kernel-mm-semantics.md section 12 on every
representative arch (runners in :mod:`tests.mm.scenarios`).

Per arch, the observable results (refcounts, mapcounts, RSS, bytes read, errnos,
classifications) must be the kernel's answer; and across arches they must be IDENTICAL --
one test per scenario runs it everywhere and compares. S16 is the exception the rules
predict: its outcome depends on the scheme, so it is compared within each scheme, and the two
schemes must differ exactly where the reference says.
"""

from __future__ import annotations

import pytest

from .helpers import REPS, Env
from .scenarios import SCENARIOS, expected


def _diff(a: dict[str, object], b: dict[str, object]) -> dict[str, tuple[object, object]]:
    return {k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_matches_the_kernel(env: Env, name: str) -> None:
    out = SCENARIOS[name](env)
    want = expected(name, env.scheme)
    got = {k: out.obs[k] for k in want}
    assert got == want, env.say(f"{name}: differs from section 12: {_diff(got, want)}; detail {out.detail}")


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_is_identical_across_arches(name: str) -> None:
    runs = {}
    for c in REPS:
        e = Env(c)
        runs[c.id] = (e.scheme, SCENARIOS[name](e))
    groups: dict[str, list[str]] = {}
    for cid, (scheme, _out) in runs.items():
        groups.setdefault(scheme if name == "S16" else "all", []).append(cid)
    for group, ids in groups.items():
        ref = ids[0]
        for cid in ids[1:]:
            a, b = runs[ref][1].obs, runs[cid][1].obs
            assert a == b, (
                f"{name} ({group}): {cid} differs from {ref}: {_diff(a, b)}; "
                f"details {ref}: {runs[ref][1].detail} / {cid}: {runs[cid][1].detail}"
            )
    if name == "S16":
        assert set(groups) == {"A", "B"}, f"S16 needs both schemes installed, got {groups}"
        a, b = runs[groups["A"][0]][1].obs, runs[groups["B"][0]][1].obs
        differ = set(_diff(a, b))
        assert differ == {"classified", "rss_after_munmap", "cow_page_after_munmap", "leaks_after_exit"}, (
            f"S16: the schemes must differ exactly in the classification and its consequences: {_diff(a, b)}"
        )
