"""``mixedmap quiz``: the answers are checked against the model on every arch mode and profile,
by a different road than the one that produced them: translate against the batched walk and
the independent walkers of ``tests/walkers``, decode against what was put into the PTE, and
refcount / COW against the kernel's rules written out here."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from click.testing import CliRunner

from mixedmap.machine import Machine
from mixedmap.pgtable import PageTable
from mixedmap.quiz import KINDS, Question, make_quiz
from mixedmap.rules import VM_INSERT_PAGE_SETS_MIXEDMAP, ZERO_PAGE

from .conftest import REGISTRY, Case
from .test_walkers import WALKERS, kwargs_for


def _quiz(case: Case, kinds: tuple[str, ...], count: int, seed: int = 5) -> list[Question]:
    return make_quiz(
        case.arch,
        case.mode.profile,
        kinds,
        seed,
        count,
        registry=REGISTRY,
        mode=case.mode.name,
        **dict(case.mode.options),
    )


def test_translate_answers_agree_with_the_walks(case: Case) -> None:
    import importlib

    walker = None
    if case.arch in WALKERS:
        walker = importlib.import_module(f"tests.walkers.{WALKERS[case.arch]}").walk
    fates = set()
    for q in _quiz(case, ("translate",), 6):
        m = q.machine
        assert m is not None
        va, root = int(q.params["va"], 16), int(q.params["root"], 16)
        fates.add(q.params["fate"])
        got = int(PageTable.attach(m.mem, m.mode, root).translate([va])[0])  # the batched walk
        if q.answer["mapped"]:
            assert got == int(q.answer["pa"], 16), f"{case.id} Q{q.number}: {q.answer} vs translate {got:#x}"
        else:
            assert got == -1, f"{case.id} Q{q.number}: says unmapped, translate gives {got:#x}"
        if walker is not None:
            ref = walker(
                m.mem.read8 if hasattr(m.mem, "read8") else _reader(m), root, va, **kwargs_for(walker, case)
            )
            assert (-1 if ref is None else ref[0]) == got, f"{case.id} Q{q.number}: independent walker {ref}"
        assert any(f"{va:#x}" in line for line in q.prompt) and any(f"{root:#x}" in line for line in q.prompt)
        assert q.working[-1].startswith("PA =") == q.answer["mapped"]
    assert fates - {"mapped"}, f"{case.id}: six questions and never an unmapped VA"


def _reader(m: Machine) -> Callable[[int], bytes]:
    """Raw 8-byte reads of the question's physical memory, all an independent walker gets."""
    mem = m.mem
    return lambda pa: mem.read(pa, 8)


def test_decode_answers_are_what_went_into_the_pte(case: Case) -> None:
    fmt = case.mode.fmt
    for q in _quiz(case, ("decode",), 6):
        a, p = q.answer, q.params
        assert a["pfn"] == p["pfn"] and a["present"], f"{case.id}: {q.prompt[0]} -> {a}"
        applied = set(p["applied"])
        if fmt.tracks_young_dirty:
            assert a["dirty"] or "pte_mkdirty" not in applied, f"{case.id}: mkdirty applied, answer {a}"
            assert a["young"] or "pte_mkyoung" not in applied, f"{case.id}: mkyoung applied, answer {a}"
        else:
            assert not a["dirty"] and not a["young"], f"{case.id}: the storage key keeps them: {a}"
        assert a["special"] == ("pte_mkspecial" in applied), f"{case.id}: {a} after {applied}"
        pte = int(q.prompt[0].split("PTE ")[1].split(":")[0], 16)
        writable = bool(
            case.mode.ops.pte_write(int(case.mode.ops.pfn_pte(p["pfn"], fmt.protection_map[p["prot_index"]])))
        )
        assert a["write"] == writable, f"{case.id}: {pte:#x} write {a['write']}, pfn_pte's {writable}"


def test_refcount_answers_follow_the_kernel_rules(case: Case) -> None:
    profile = REGISTRY.bind(case.arch).mode(case.mode.profile, mode=case.mode.name, **dict(case.mode.options))
    from mixedmap.profiles import get_profile

    prof = get_profile(profile.mode.profile)
    seen = set()
    for q in _quiz(case, ("refcount",), 9):
        a, t = q.answer, q.params["template"]
        seen.add(t)
        if t == "fork":
            want = (1, 1) if q.params["child_writes"] else (2, 2)
            assert (a["refcount"], a["mapcount"]) == want and a["rss_anon_P"] == a["rss_anon_C"] == 1, (
                f"{case.id}: {q.prompt[0]} -> {a}"
            )
        elif t == "read":
            if ZERO_PAGE.applies(prof):
                has_bit = case.mode.fmt.special_mask is not None
                assert a["rss_anon"] == 0 and a["zero_page"] and a["special"] == has_bit, f"{case.id}: {a}"
            else:
                assert (a["rss_anon"], a["refcount"], a["mapcount"], a["special"]) == (1, 1, 1, False), a
        else:
            maps = q.params["users"] - int(q.params["unmap_one"])
            assert (a["refcount"], a["mapcount"]) == (1 + maps, maps), f"{case.id}: {q.prompt[0]} -> {a}"
            assert a["vm_mixedmap"] == VM_INSERT_PAGE_SETS_MIXEDMAP.applies(prof), f"{case.id}: {a}"
    assert len(seen) >= 2, f"{case.id}: nine questions of one template {seen}"


def test_cow_answers_follow_the_kernel_rules(case: Case) -> None:
    for q in _quiz(case, ("cow",), 9):
        a, t = q.answer, q.params["template"]
        if t == "readonly":
            assert a == {"fault": "SIGSEGV", "copied": False, "other_sees_write": False}, f"{case.id}: {a}"
        elif t == "fork":
            assert a == {"fault": "wp", "copied": True, "other_sees_write": False}, f"{case.id}: {a}"
        else:
            assert a == {
                "fault": "wp",
                "copied": True,
                "device_changed": False,
                "new_page_struct_page": True,
            }, f"{case.id}: {a}"


def test_same_seed_same_questions_and_json() -> None:
    one = [q.to_json() for q in make_quiz("x86_64", "2.6.27", KINDS, 7, 8, registry=REGISTRY)]
    two = [q.to_json() for q in make_quiz("x86_64", "2.6.27", KINDS, 7, 8, registry=REGISTRY)]
    other = [q.to_json() for q in make_quiz("x86_64", "2.6.27", KINDS, 8, 8, registry=REGISTRY)]
    assert one == two and one != other
    assert [q["kind"] for q in one] == [*KINDS, *KINDS]
    json.dumps(one)


def test_cli_quiz_prints_questions_and_with_c_the_answers() -> None:
    from mixedmap.cli.main import main

    runner = CliRunner()
    plain = runner.invoke(main, ["quiz", "-a", "s390x", "-k", "6.18", "--seed", "3", "-n", "4"])
    assert plain.exit_code == 0, plain.output
    assert plain.output.count("Q") >= 4 and "answer:" not in plain.output
    full = runner.invoke(main, ["quiz", "-a", "s390x", "-k", "6.18", "--seed", "3", "-n", "4", "-c"])
    assert full.exit_code == 0 and full.output.count("answer:") == 4 and "working:" in full.output
    data = json.loads(
        runner.invoke(main, ["quiz", "-a", "ppc64", "--kind", "decode", "-n", "2", "--json"]).output
    )
    assert [q["kind"] for q in data] == ["decode", "decode"] and "pfn" in data[0]["answer"]


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["quiz", "-a", "vax"], "vax"),
        (["quiz", "-a", "x86_64", "-k", "1.0"], "1.0"),
        (["quiz", "-a", "x86_64", "--kind", "bogus"], "bogus"),
        (["quiz", "-a", "x86_64", "-n", "0"], "0"),
    ],
)
def test_cli_quiz_bad_input_names_the_culprit(args: list[str], culprit: str) -> None:
    from mixedmap.cli.main import main

    res = CliRunner().invoke(main, args)
    assert res.exit_code != 0 and culprit in (res.output + str(res.exception or "")), res.output
