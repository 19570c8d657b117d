"""Scenario ops for today's kernel: gup with pin/longterm, unpin and put, leaks at the end of a
run, the vmf_insert_* family and vm_insert_pages; and their load-time errors (file:line)."""

from __future__ import annotations

import pytest

from mixedmap.scenario.load import ScenarioError, loads
from mixedmap.scenario.run import RunResult, run_one

HEAD = """\
[scenario]
name = "t"
kernels = ["2.6.27", "6.18"]
processes = ["a"]

[[devices]]
name = "bar"
start = "1G"
size = "1M"

[[steps]]
op = "mmap"
process = "a"
name = "buf"
pages = 4
prot = "rw"

[[steps]]
op = "touch"
process = "a"
map = "buf"
pages = 4
write = true
"""


def _run(body: str, kernel: str = "6.18", arch: str = "x86_64") -> RunResult:
    return run_one(loads(HEAD + body, "t.toml"), arch, kernel)


def _outs(r: RunResult) -> list[dict[str, object]]:
    return [s.outcome for s in r.steps]


PIN_KEEP = """
[[steps]]
op = "gup"
pin = true
keep = true
process = "a"
map = "buf"
pages = 2
write = true
"""
INSPECT = """
[[steps]]
op = "inspect"
process = "a"
map = "buf"
"""


def test_pin_adds_the_bias_and_unpin_balances_it() -> None:
    body = PIN_KEEP + INSPECT + '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n' + INSPECT
    r = _run(body)
    pin, before, unpin, after = _outs(r)[2:]
    assert pin["outcome"] == "ok" and pin["pinned"] == 2
    assert before["refcount"] == 1025 and before["pins"] == 1 and before["maybe_dma_pinned"] is True
    assert unpin == {"outcome": "ok", "unpinned": 2, "refcount_dropped": 2048}
    assert after["refcount"] == 1 and after["pins"] == 0 and after["maybe_dma_pinned"] is False
    assert r.leaks == () and r.failures == 0


def test_unpin_dirty_marks_the_pages_dirty() -> None:
    body = PIN_KEEP + '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\ndirty = true\n' + INSPECT
    out = _outs(_run(body))[-1]
    assert "dirty" in str(out["page_flags"]).lower()


def test_get_user_pages_reference_is_released_by_put() -> None:
    body = (
        '\n[[steps]]\nop = "gup"\nkeep = true\nprocess = "a"\nmap = "buf"\n'
        + INSPECT
        + '\n[[steps]]\nop = "put"\nprocess = "a"\nmap = "buf"\n'
        + INSPECT
    )
    for kernel in ("2.6.27", "6.18"):
        _, held, put, after = _outs(_run(body, kernel))[2:]
        assert held["refcount"] == 2
        assert put == {"outcome": "ok", "released": 1, "freed": 0}
        assert after["refcount"] == 1


def test_pin_on_2_6_is_unsupported_before_anything_changes() -> None:
    r = _run(PIN_KEEP + INSPECT, "2.6.27")
    pin, view = _outs(r)[2:]
    assert pin["outcome"] == "Unsupported"
    assert "introduced in 5.6" in str(pin["detail"])
    assert view["refcount"] == 1 and "pins" not in view
    assert r.leaks == ()


def test_fast_pin_reports_the_split() -> None:
    body = PIN_KEEP.replace("pin = true", "pin = true\nfast = true")
    body += '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n'
    pin = _outs(_run(body))[2]
    assert pin["fast_pages"] == 2 and pin["slow_pages"] == 0 and pin["fallbacks"] == 0


DAX = """\
[scenario]
name = "dax"
kernels = ["6.18"]
processes = ["a"]

[[devices]]
name = "pmem"
start = "1G"
size = "1M"

[devices.kernel."6.18"]
memmap = true

[[files]]
device = "pmem"
name = "f"
pages = 2

[[steps]]
op = "mmap"
process = "a"
name = "m"
file = "pmem/f"
shared = true
pages = 2
prot = "rw"

[[steps]]
op = "touch"
process = "a"
map = "m"
pages = 2
"""


@pytest.mark.parametrize("fast", [False, True])
def test_longterm_pin_of_fs_dax_is_eopnotsupp(fast: bool) -> None:
    step = '\n[[steps]]\nop = "gup"\npin = true\nlongterm = true\nprocess = "a"\nmap = "m"\npages = 2\n'
    if fast:
        step += "fast = true\n"
    short = '\n[[steps]]\nop = "gup"\npin = true\nprocess = "a"\nmap = "m"\npages = 2\n'
    r = run_one(loads(DAX + step + short, "dax.toml"), "x86_64", "6.18")
    refused, ok = _outs(r)[2:]
    assert refused["outcome"] == "EOPNOTSUPP" and refused["pinned"] == 0
    if fast:
        assert refused["reason"] == "fs-dax folio (FOLL_LONGTERM)"
    assert ok["outcome"] == "ok" and ok["pinned"] == 2
    assert r.failures == 0 and r.leaks == ()


def test_a_pin_never_released_is_a_leak_and_a_failure() -> None:
    r = _run(PIN_KEEP)
    assert [(lk.count, lk.kind, lk.step, lk.expected) for lk in r.leaks] == [(1, "pin", 2, False)] * 2
    assert r.failures == 1
    [fail] = r.steps[2].failures
    assert fail.startswith("leak: 2 pin(s)") and "unpin" in fail


def test_a_leak_the_file_states_is_not_a_failure() -> None:
    r = _run(PIN_KEEP.replace("keep = true", "keep = true\nleak = true"))
    assert len(r.leaks) == 2 and all(lk.expected for lk in r.leaks)
    assert r.failures == 0


def test_exit_keeps_the_pin_and_a_later_unpin_frees_the_page() -> None:
    body = (
        PIN_KEEP
        + '\n[[steps]]\nop = "exit"\nprocess = "a"\n'
        + '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n'
    )
    r = _run(body)
    assert _outs(r)[-1] == {"outcome": "ok", "unpinned": 2, "refcount_dropped": 2048}
    assert r.leaks == ()


def test_exit_without_unpin_leaks_what_the_pinning_step_took() -> None:
    r = _run(PIN_KEEP + '\n[[steps]]\nop = "exit"\nprocess = "a"\n')
    assert {lk.step for lk in r.leaks} == {2} and r.failures == 1


def test_unpin_with_nothing_held_names_the_culprit() -> None:
    body = PIN_KEEP.replace("pages = 2", 'pages = 2\nwhen = { kernels = ["2.6.27"] }')
    body += '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n'
    out = _outs(_run(body))[-1]
    assert out["outcome"] == "error"
    assert "'a' holds no pins on 'buf'" in str(out["detail"])


def test_unpin_of_get_references_points_to_put() -> None:
    body = '\n[[steps]]\nop = "gup"\nkeep = true\nprocess = "a"\nmap = "buf"\n'
    body += PIN_KEEP.replace("pages = 2", 'pages = 2\nwhen = { kernels = ["2.6.27"] }')
    body += '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n'
    body += '\n[[steps]]\nop = "put"\nprocess = "a"\nmap = "buf"\n'
    outs = _outs(_run(body))
    assert outs[-2]["outcome"] == "error" and "release them with put" in str(outs[-2]["detail"])
    assert outs[-1]["outcome"] == "ok"


PFNMAP = """
[[steps]]
op = "mmap"
process = "a"
name = "regs"
device = "bar"
vm_flags = ["PFNMAP"]
shared = true
pages = 2
prot = "rw"
"""


def _insert(op: str, pfn: str = "device:bar+0", extra: str = "") -> str:
    return f'\n[[steps]]\nop = "{op}"\nprocess = "a"\nmap = "regs"\npfn = "{pfn}"\n{extra}'


def test_vmf_insert_pfn_answers_nopage_even_over_a_populated_pte() -> None:
    r = _run(PFNMAP + _insert("vmf_insert_pfn") + _insert("vmf_insert_pfn", "device:bar+1"))
    first, second = _outs(r)[3:]
    assert first["vm_fault"] == "NOPAGE" and first["special"] is True and first["struct_page"] is False
    assert second["vm_fault"] == "NOPAGE" and second["pte"] == first["pte"]


def test_vmf_insert_mixed_without_mixedmap_is_sigbus_and_mkwrite_is_young_dirty() -> None:
    r = _run(PFNMAP.replace('vm_flags = ["PFNMAP"]', "") + _insert("vmf_insert_mixed"))
    assert _outs(r)[-1]["vm_fault"] == "SIGBUS" and _outs(r)[-1]["present"] is False
    mixed = PFNMAP.replace('"PFNMAP"', '"MIXEDMAP"')
    out = _outs(_run(mixed + _insert("vmf_insert_mixed_mkwrite")))[-1]
    assert out["vm_fault"] == "NOPAGE" and out["writable"] is True


def test_vmf_insert_pfn_prot_uses_the_callers_protection() -> None:
    out = _outs(_run(PFNMAP + _insert("vmf_insert_pfn_prot", extra='prot = "r"\n')))[-1]
    assert out["vm_fault"] == "NOPAGE" and out["writable"] is False


def test_vmf_ops_are_unsupported_on_2_6_naming_the_release() -> None:
    for op, release in (
        ("vmf_insert_pfn", "4.17"),
        ("vmf_insert_mixed", "4.17"),
        ("vmf_insert_mixed_mkwrite", "4.18"),
        ("vmf_insert_pfn_prot", "4.20"),
        ("vm_insert_pages", "5.8"),
    ):
        out = _outs(_run(PFNMAP.replace('vm_flags = ["PFNMAP"]', "") + _insert(op, "ram+0x800"), "2.6.27"))[
            -1
        ]
        assert out["outcome"] == "Unsupported", op
        assert f"introduced in {release}" in str(out["detail"]), (op, out)


def test_vm_insert_pages_validates_each_page_and_names_the_errno() -> None:
    dev = PFNMAP.replace('vm_flags = ["PFNMAP"]', "")
    # validate_page_before_insert: an anonymous page is -EINVAL, nothing is inserted, but the
    # VMA became VM_MIXEDMAP first (3.7: as vm_insert_page does)
    out = _outs(_run(dev + _insert("vm_insert_pages", "pte:buf+0", "pages = 2\n")))[-1]
    assert out["outcome"] == "EINVAL" and out["inserted"] == 0 and out["not_inserted"] == 2
    assert "mm" in str(out["vm_flags"]).split() and out["present"] is False
    # a VM_PFNMAP VMA is a BUG
    assert _outs(_run(PFNMAP + _insert("vm_insert_pages", "pte:buf+0")))[-1]["outcome"] == "BUG"


@pytest.mark.parametrize(
    ("body", "key", "words"),
    [
        (PIN_KEEP.replace("pin = true", "longterm = true"), "steps[2].longterm", "add pin = true"),
        (PIN_KEEP.replace("keep = true", "leak = true"), "steps[2].leak", "add keep"),
        ('\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\n', "steps[2].map", "no earlier gup step"),
        ('\n[[steps]]\nop = "put"\nprocess = "a"\nmap = "buf"\n', "steps[2].map", "keep = true (no pin)"),
        (
            PIN_KEEP + '\n[[steps]]\nop = "put"\nprocess = "a"\nmap = "buf"\n',
            "steps[3].map",
            'op = \\"unpin\\"',
        ),
        (
            PIN_KEEP + '\n[[steps]]\nop = "unpin"\nprocess = "a"\nmap = "buf"\npage = 1\n',
            "steps[3].page",
            "not used",
        ),
        (PFNMAP + _insert("vmf_insert_pfn_prot", extra='prot = "q"\n'), "steps[3].prot", "'q'"),
        (PFNMAP + _insert("vm_insert_pages", extra="pages = 3\n"), "steps[3].page", "beyond 'regs'"),
        (PFNMAP + _insert("vmf_insert_mixed", "device:nope+0"), "steps[3].pfn", "no device 'nope'"),
        (PIN_KEEP.replace("pin = true", 'pin = "yes"'), "steps[2].pin", "expected bool"),
    ],
)
def test_bad_input_is_refused_at_load_with_file_line_and_key(body: str, key: str, words: str) -> None:
    with pytest.raises(ScenarioError) as err:
        loads(HEAD + body, "t.toml")
    e = err.value
    assert e.key == key and e.line is not None and words.replace('\\"', '"') in e.message, str(e)
    assert str(e).startswith(f"t.toml:{e.line}: {key}: ")
