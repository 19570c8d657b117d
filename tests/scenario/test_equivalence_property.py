"""Property: any sequence of scenario steps gives the same observable outcomes on every arch
of one scheme (the classification, counters, bytes and signals are the kernel's, not the
arch's). Only what is arch-specific by nature is left out: PTE values, pfns, addresses, and
which GUP path pinned a page."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mixedmap.plugin.registry import default_registry
from mixedmap.scenario import schema as S
from mixedmap.scenario.run import run_one

ARCH_SPECIFIC = {"pte", "pfn", "addr", "detail", "fast_pages", "slow_pages", "fallbacks", "reasons", "reason"}
INSTALLED = default_registry().names
SCHEMES = {
    "2.6.27": [a for a in ("x86_64", "s390x", "ppc64") if a in INSTALLED],  # special bit everywhere
    "2.6.26": [a for a in ("x86_64", "ppc64") if a in INSTALLED],  # scheme B
}
MAPS = {"anon": 4, "priv": 4, "shared": 4}

page = st.integers(0, 3)
mapname = st.sampled_from(sorted(MAPS))


def _steps(proc: str) -> st.SearchStrategy[S.Step]:
    return st.one_of(
        st.builds(S.Read, process=st.just(proc), map=mapname, page=page),
        st.builds(
            S.Write,
            process=st.just(proc),
            map=st.sampled_from(["anon", "priv"]),
            page=page,
            data=st.just("w"),
        ),
        st.builds(
            S.Touch,
            process=st.just(proc),
            map=mapname,
            page=st.just(0),
            pages=st.just(4),
            write=st.booleans(),
        ),
        st.builds(
            S.Gup, process=st.just(proc), map=mapname, page=page, write=st.booleans(), fast=st.booleans()
        ),
        st.builds(
            S.Mprotect,
            process=st.just(proc),
            map=mapname,
            page=page,
            pages=st.just(1),
            prot=st.sampled_from(["r", "rw", "none"]),
        ),
        st.builds(S.Inspect, process=st.just(proc), map=mapname, page=page),
    )


def _scenario(body: list[S.Step], tail: list[S.Step]) -> S.Scenario:
    maps: list[S.Step] = [
        S.Mmap(process="a", name="anon", pages=4, prot="rw"),
        S.Mmap(process="a", name="priv", pages=4, prot="rw", file="xip0/f"),
        S.Mmap(process="a", name="shared", pages=4, prot="r", shared=True, file="xip0/f"),
    ]
    return S.Scenario(
        scenario=S.Header(name="prop", processes=["a"]),
        devices=[S.Device(name="xip0", start="1G", size="1M")],
        files=[S.File(device="xip0", name="f", pages=4, holes=[3])],
        steps=[*maps, *body, S.Fork(process="a", child="b"), *tail, S.Exit(process="a")],
    )


def _observable(out: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in out.items() if k not in ARCH_SPECIFIC}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kernel=st.sampled_from(sorted(SCHEMES)),
    body=st.lists(_steps("a"), max_size=8),
    tail=st.lists(_steps("b"), max_size=5),
)
def test_outcomes_agree_across_arches_of_a_scheme(
    kernel: str, body: list[S.Step], tail: list[S.Step]
) -> None:
    arches = SCHEMES[kernel]
    if len(arches) < 2:
        return
    scen = _scenario(body, tail)
    runs = [run_one(scen, a, kernel) for a in arches]
    for r in runs:
        assert r.error is None, r.error
        assert not [s for s in r.steps if s.outcome.get("outcome") == "error"], r.steps
    first = runs[0]
    for r in runs[1:]:
        for s0, s1 in zip(first.steps, r.steps, strict=True):
            assert _observable(s0.outcome) == _observable(s1.outcome), (
                f"step {s0.index} {s0.label}: {first.key} {s0.outcome} vs {r.key} {s1.outcome}"
            )
        assert {p: (v["rss_file"], v["rss_anon"]) for p, v in first.processes.items()} == {
            p: (v["rss_file"], v["rss_anon"]) for p, v in r.processes.items()
        }
