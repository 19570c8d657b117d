"""One scenario under several kernels, reduced to what differs and the rule that makes it differ.

Each (arch, kernel) runs the scenario as ``mixedmap run`` would; steps are compared key by key
per arch (the outcome, fault, PTE present/special/writable/normal, refcount, mapcount, RSS,
GUP results, VMA flags). Encodings are left out (the raw PTE and pfn differ between kernels'
formats and allocation orders without meaning anything), and so is an error's wording.

A difference is explained by the rules that step consulted (:func:`mixedmap.rules.consulted`)
whose answer differs between the kernels compared, so the cause is what the code asked, not a
guess from the step's name; the arch's own format facts (a special bit, a lockless GUP walk)
are the other causes. A difference with neither is marked as following from an earlier one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs

from mixedmap.plugin.registry import ArchRegistry
from mixedmap.profiles import get_profile
from mixedmap.rules import BY_NAME
from mixedmap.scenario import schema as S
from mixedmap.scenario.run import RunResult, StepResult, run_one

DEFAULT_KERNELS = ("2.6.26", "2.6.27", "6.18")
#: Outcome keys that are encodings or prose, not behaviour.
IGNORED = frozenset({"detail", "pte", "pfn", "addr"})


@attrs.frozen
class Cause:
    """Why kernels answer differently: a rule (or an arch format fact) and where it holds."""

    name: str
    function: str
    file: str
    since: str
    holds_in: tuple[str, ...]

    def text(self) -> str:
        where = ", ".join(self.holds_in) or "none of them"
        return f"{self.name}: {self.function} ({self.file}, since {self.since}) holds in {where}"


@attrs.frozen
class Difference:
    arch: str
    step: int
    label: str
    key: str
    #: kernel -> value (None: the step did not report the key under that kernel)
    values: dict[str, Any]
    causes: tuple[Cause, ...]
    #: no cause of its own: an earlier step already differed
    follows: bool = False


@attrs.frozen
class ArchDiff:
    arch: str
    kernels: tuple[str, ...]
    differences: tuple[Difference, ...]
    #: kernel -> why it was not run on this arch (the arch lacks the profile, setup failed)
    not_run: dict[str, str]


@attrs.frozen
class DiffResult:
    scenario: str
    kernels: tuple[str, ...]
    arches: tuple[ArchDiff, ...]

    @property
    def identical(self) -> bool:
        return not any(a.differences for a in self.arches)


def _candidates(runs: dict[str, RunResult], steps: range, every: bool) -> list[Cause]:
    """Rules asked in ``steps`` whose answer differs between the kernels, then format facts.

    ``every``: only rules every kernel's run asked (a rule one kernel never reached, because
    an earlier difference sent it elsewhere, decided nothing for that kernel).
    """
    kernels = list(runs)
    asked: dict[str, None] = {}
    sets = []
    for r in runs.values():
        names = [n for i in steps for n in r.steps[i].rules]
        asked.update(dict.fromkeys(names))
        if not all(r.steps[i].skipped for i in steps):
            sets.append(set(names))
    if every and sets:
        common = set.intersection(*sets)
        asked = {n: None for n in asked if n in common}
    causes = []
    for name in asked:
        rule = BY_NAME[name]
        holds = tuple(k for k in kernels if rule.applies(get_profile(k)))
        if 0 < len(holds) < len(kernels):
            causes.append(Cause(rule.name, rule.function, rule.file, rule.since, holds))
    facts = []  # most specific first: the least specific is the first one dropped
    if any(r.steps[i].op == "gup" for r in runs.values() for i in steps):
        facts.append(("lockless_gup", "lockless GUP", "get_user_pages_fast", "arch mm/gup.c"))
    facts.append(("special", "pte_special", "pte_special / pte_mkspecial", "arch asm/pgtable.h"))
    for attr, name, function, file in facts:
        holds = tuple(k for k, r in runs.items() if getattr(r, attr))
        if 0 < len(holds) < len(kernels):
            causes.append(Cause(name, function, file, "the arch's own release", holds))
    return causes


def _explains(causes: Sequence[Cause], values: dict[str, Any]) -> bool:
    """Kernels on the same side of every cause report the same value."""
    seen: dict[tuple[bool, ...], str] = {}
    for k, v in values.items():
        side = tuple(k in c.holds_in for c in causes)
        if seen.setdefault(side, repr(v)) != repr(v):
            return False
    return True


def _minimal(causes: list[Cause], values: dict[str, Any]) -> tuple[Cause, ...]:
    """``causes`` less every one the rest already accounts for (format facts dropped first)."""
    for c in reversed(list(causes)):
        rest = [x for x in causes if x is not c]
        if _explains(rest, values):
            causes = rest
    return tuple(causes)


def _explain(
    runs: dict[str, RunResult], i: int, values: dict[str, Any], prior: Sequence[Cause]
) -> tuple[Cause, ...]:
    """The fewest causes that account for ``values``: what this step asked in every kernel,
    else what explained an earlier difference (a later inspection shows what a fork decided)."""
    for causes in (_candidates(runs, range(i, i + 1), every=True), list(prior)):
        if causes and _explains(causes, values):
            return _minimal(causes, values)
    return ()


def _step_differences(
    arch: str, runs: dict[str, RunResult], i: int, index: int, prior: Sequence[Cause]
) -> list[Difference]:
    steps: dict[str, StepResult] = {k: r.steps[i] for k, r in runs.items()}
    label = next(iter(steps.values())).label
    ran = {k: s for k, s in steps.items() if not s.skipped}
    earlier = bool(prior)
    if not ran:
        return []
    if len(ran) < len(steps):  # its `when` names the kernels: the file states each answer
        values: dict[str, Any] = {k: ("runs" if k in ran else "not run") for k in steps}
        causes = _explain(runs, i, values, prior)
        return [Difference(arch, index, label, "step", values, causes, follows=not causes and earlier)]
    keys: dict[str, None] = {}
    for s in ran.values():
        keys.update(dict.fromkeys(s.outcome))
    rows: list[tuple[str, dict[str, Any]]] = []
    for key in keys:
        if key in IGNORED:
            continue
        values = {k: s.outcome.get(key) for k, s in steps.items()}
        reported = [v for v in values.values() if v is not None or key not in PROFILE_KEYS]
        if len({repr(v) for v in reported}) > 1:
            rows.append((key, values))
    # A key some kernels do not report at all (the PTE's bits where there is no PTE, a page's
    # counts where the insert was refused) is said by a row every kernel reports ("present",
    # "outcome"): keep it only if the kernels that report it disagree among themselves.
    if any(None not in v.values() for _, v in rows):
        rows = [
            (key, v)
            for key, v in rows
            if None not in v.values() or len({repr(x) for x in v.values() if x is not None}) > 1
        ]
    out = []
    for key, values in rows:
        causes = _explain(runs, i, values, prior)
        out.append(Difference(arch, index, label, key, values, causes, follows=not causes and earlier))
    return out


def _end_cause(prior: Sequence[Cause], values: dict[str, Any]) -> tuple[Cause, ...]:
    """What an end-of-run difference follows from: the one earlier cause that splits the
    kernels as the values do. Several with that split (three 6.18-only rules, say) cannot
    be told apart from the totals alone: then none is named, only that it follows."""
    single = [c for c in prior if _explains([c], values)]
    if single:
        return (single[0],) if len(single) == 1 else ()
    return _minimal(list(prior), values) if _explains(prior, values) else ()


def _summary_differences(arch: str, runs: dict[str, RunResult], prior: Sequence[Cause]) -> list[Difference]:
    """End-of-run RSS and liveness per process (what a process holds after every step)."""
    out = []
    procs: dict[str, None] = {}
    for r in runs.values():
        procs.update(dict.fromkeys(r.processes))
    for p in procs:
        for key in ("alive", "rss_file", "rss_anon"):
            values = {k: r.processes.get(p, {}).get(key) for k, r in runs.items()}
            if len({repr(v) for v in values.values()}) > 1:
                out.append(
                    Difference(
                        arch, -1, f"end of run: {p}", key, values, _end_cause(prior, values), follows=True
                    )
                )
    return out


#: keys only some profiles report (FOLL_PIN counts, VM_FAULT codes): absent is not different
PROFILE_KEYS = frozenset({"pins", "maybe_dma_pinned", "vm_fault"})


def _same_call(op: str) -> str:
    """An op and its successor API are one call: ``vmf_insert_pfn`` (4.17) is what a driver's
    ``->fault`` calls where 2.6.27's called ``vm_insert_pfn``."""
    return "vm_" + op.removeprefix("vmf_") if op.startswith("vmf_") else op


@attrs.frozen
class _Logical:
    """One logical step: per kernel, the index of the step it ran for it (None: none ran)."""

    index: int
    members: dict[str, int | None]


def _lcs(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Index pairs of a longest common subsequence of ``a`` and ``b`` (ties: earliest)."""
    n, m = len(a), len(b)
    best = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            best[i][j] = best[i + 1][j + 1] + 1 if a[i] == b[j] else max(best[i + 1][j], best[i][j + 1])
    pairs, i, j = [], 0, 0
    while i < n and j < m:
        if a[i] == b[j]:
            pairs.append((i, j))
            i, j = i + 1, j + 1
        elif best[i + 1][j] >= best[i][j + 1]:
            i += 1
        else:
            j += 1
    return pairs


def _alternatives(runs: dict[str, RunResult]) -> list[_Logical]:
    """Align steps written once per answer into logical steps.

    A scenario states different answers as consecutive steps whose ``when`` names the
    kernels (6.18's inspect and read, then 2.6.x's). In a block of consecutive steps each
    skipped by some kernel, the kernels fall into groups that ran the same steps (2.6.26 and
    2.6.27, say, against 6.18). With two groups their steps are aligned by a longest common
    subsequence of ops (``vmf_insert_*`` standing for ``vm_insert_*``): a matched pair is one
    logical step, compared by what each kernel answered instead of which copy ran; a step
    with no partner is one only its group runs ("runs"/"not run"). With more groups every
    step of the block stands alone.
    """
    n = min(len(r.steps) for r in runs.values())
    out: list[_Logical] = []
    i = 0
    while i < n:
        if all(not r.steps[i].skipped for r in runs.values()):
            out.append(_Logical(i, {k: i for k in runs}))
            i += 1
            continue
        j = i
        while j < n and any(r.steps[j].skipped for r in runs.values()):
            j += 1
        ran = {k: [x for x in range(i, j) if not r.steps[x].skipped] for k, r in runs.items()}
        groups: dict[tuple[int, ...], list[str]] = {}
        for k, xs in ran.items():
            groups.setdefault(tuple(xs), []).append(k)
        block: list[_Logical] = []
        if len(groups) == 2:
            (xa, ka), (xb, kb) = groups.items()
            ops = [[_same_call(runs[ks[0]].steps[x].op) for x in xs] for xs, ks in ((xa, ka), (xb, kb))]
            pairs = _lcs(ops[0], ops[1])
            matched_a, matched_b = {p for p, _ in pairs}, {q for _, q in pairs}
            for p, q in pairs:
                members: dict[str, int | None] = {k: xa[p] for k in ka}
                members.update({k: xb[q] for k in kb})
                block.append(_Logical(min(xa[p], xb[q]), members))
            for ys, mine, other, matched in ((xa, ka, kb, matched_a), (xb, kb, ka, matched_b)):
                for pos, x in enumerate(ys):
                    if pos not in matched:
                        alone: dict[str, int | None] = {k: x for k in mine}
                        alone.update({k: None for k in other})
                        block.append(_Logical(x, alone))
        else:
            for x in range(i, j):
                block.append(_Logical(x, {k: (x if not runs[k].steps[x].skipped else None) for k in runs}))
        out += sorted(block, key=lambda lg: lg.index)
        i = j
    return out


def _merge(kernel: str, run: RunResult, logical: list[_Logical]) -> RunResult:
    """``run`` with one step per logical step: the member this kernel ran (or a skipped one)."""
    steps = []
    for lg in logical:
        x = lg.members[kernel]
        chosen = run.steps[lg.index if x is None else x]
        if x is None and not chosen.skipped:
            chosen = attrs.evolve(chosen, outcome={}, skipped=True)
        # what decided between the forms (their `when` rules) was asked by every member
        members = sorted({m for m in lg.members.values() if m is not None} | {lg.index})
        rules = tuple(dict.fromkeys([*chosen.rules, *(n for m in members for n in run.steps[m].rules)]))
        steps.append(attrs.evolve(chosen, index=lg.index, rules=rules))
    return attrs.evolve(run, steps=tuple(steps))


def diff_runs(arch: str, runs: dict[str, RunResult]) -> list[Difference]:
    """The differences between runs of one scenario on one arch under several kernels."""
    usable = {k: r for k, r in runs.items() if r.skipped is None and r.error is None}
    if len(usable) < 2:
        return []
    logical = _alternatives(usable)
    usable = {k: _merge(k, r, logical) for k, r in usable.items()}
    nsteps = min(len(r.steps) for r in usable.values())
    found: list[Difference] = []
    prior: dict[Cause, None] = {}
    for i in range(nsteps):
        step = _step_differences(arch, usable, i, logical[i].index, list(prior))
        for d in step:
            prior.update(dict.fromkeys(d.causes))
        found += step
    return found + _summary_differences(arch, usable, list(prior))


def diff(
    scen: S.Scenario,
    kernels: Sequence[str] = DEFAULT_KERNELS,
    arches: Sequence[str] | None = None,
    *,
    registry: ArchRegistry,
) -> DiffResult:
    """Run ``scen`` on every arch under every kernel and keep only what differs."""
    kernels = tuple(get_profile(k).name for k in kernels)
    names = tuple(arches) if arches else tuple(registry.names)
    per_arch = []
    for arch in names:
        registry.bind(arch)  # an unknown arch is an error naming the installed ones
        runs = {k: run_one(scen, arch, k, registry=registry) for k in kernels}
        not_run = {k: (r.skipped or r.error or "") for k, r in runs.items() if r.skipped or r.error}
        per_arch.append(ArchDiff(arch, kernels, tuple(diff_runs(arch, runs)), not_run))
    return DiffResult(scen.scenario.name, kernels, tuple(per_arch))


def to_json(res: DiffResult) -> dict[str, Any]:
    return attrs.asdict(res) | {"identical": res.identical}
