"""``when = { rules = {...} }``: a step for the kernels that have (or lack) a kernel rule."""

from __future__ import annotations

import pytest

from mixedmap.plugin.registry import default_registry
from mixedmap.scenario.load import ScenarioError, loads
from mixedmap.scenario.run import run_one

ARCH = default_registry().names[0]

TEXT = """
[scenario]
name = "gated"
processes = ["p"]

[[steps]]
op = "mmap"
process = "p"
name = "a"
pages = 1
prot = "rw"

[[steps]]
op = "inspect"
process = "p"
when = { rules = { RULE = WANT } }
"""


@pytest.mark.parametrize(("want", "runs_on"), [("true", "2.6.27"), ("false", "2.6.26")])
def test_step_runs_only_where_the_rule_says(want: str, runs_on: str) -> None:
    scen = loads(TEXT.replace("RULE", "xip_sparse_vm_insert_page").replace("WANT", want))
    for kernel in ("2.6.26", "2.6.27"):
        r = run_one(scen, ARCH, kernel)
        assert r.steps[1].skipped == (kernel != runs_on), (kernel, r.steps[1])


def test_an_unknown_rule_is_named_with_its_line() -> None:
    with pytest.raises(ScenarioError) as exc:
        loads(TEXT.replace("RULE", "no_such_rule").replace("WANT", "true"), "g.toml")
    msg = str(exc.value)
    assert "g.toml:16" in msg and "no_such_rule" in msg and "zero_page" in msg
