"""Guests built by worker processes give exactly the figures one process gives.

Each guest is an independent machine; a worker builds it, measures it and sends back its
:class:`~mixedmap.guests.GuestRecord`. The result must equal the in-process run (``==``
ignores only the timing and the worker bookkeeping), guest by guest and in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from mixedmap.cli import run
from mixedmap.errors import EINVAL
from mixedmap.guests import GuestPool, run_guests
from tests.conftest import REGISTRY

MiB = 1 << 20
CASES = [
    (a, k, pre)
    for a, k, pre in (("s390x", "2.6.27", False), ("s390x", "2.6.27", True), ("x86_64", "2.6.26", False),
                      ("ppc64", "2.6.27", False), ("s390x", "6.18", False))
    if a in REGISTRY.names
]  # fmt: skip


@pytest.mark.parametrize(("arch", "kernel", "pre_series"), CASES, ids=[f"{a}-{k}-{p}" for a, k, p in CASES])
def test_workers_2_equals_workers_1(arch: str, kernel: str, pre_series: bool) -> None:
    kw = dict(guests=5, image_size=8 * MiB, pre_series=pre_series, registry=REGISTRY)
    one = run_guests(arch, kernel, workers=1, **kw)  # type: ignore[arg-type]
    seen: list[int] = []
    two = run_guests(arch, kernel, workers=2, progress=lambda d, _t: seen.append(d), **kw)  # type: ignore[arg-type]
    assert two == one, f"{arch} {kernel}: workers=2 differs from workers=1"
    assert [g.index for g in two.per_guest] == list(range(5))
    assert attrs.asdict(two.per_guest[-1]) == attrs.asdict(one.per_guest[-1])
    assert two.workers == 2 and one.workers == 1 and len(two.peak_rss_bytes) == 3
    assert seen == sorted(seen) and seen[-1] == 5


def test_a_pool_serves_several_runs_and_keeps_guest_0_here() -> None:
    if "s390x" not in REGISTRY.names:
        pytest.skip("uses the s390x DCSS model")
    kw = dict(guests=4, image_size=4 * MiB, registry=REGISTRY)
    with GuestPool(2, REGISTRY) as pool:
        a = run_guests("s390x", "2.6.27", pre_series=False, pool=pool, keep_first=1, **kw)  # type: ignore[arg-type]
        b = run_guests("s390x", "2.6.27", pre_series=True, pool=pool, **kw)  # type: ignore[arg-type]
    assert a == run_guests("s390x", "2.6.27", pre_series=False, **kw)  # type: ignore[arg-type]
    assert b == run_guests("s390x", "2.6.27", pre_series=True, **kw)  # type: ignore[arg-type]
    assert len(a.machines) == 1 and a.machines[0].memmap_bytes() > 0
    with pytest.raises(EINVAL, match="workers"):
        GuestPool(0)


def test_unmodelled_behaviour_with_workers_carries_its_reason() -> None:
    if "ppc64" not in REGISTRY.names:
        pytest.skip("uses the ppc64 axonram model")
    r = run_guests(
        "ppc64", "2.6.27", guests=3, image_size=4 * MiB, pre_series=True, registry=REGISTRY, workers=2
    )
    assert r.reason is not None and r.per_guest == ()


@pytest.mark.skipif("s390x" not in REGISTRY.names, reason="uses the s390x DCSS model")
def test_cli_workers_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = []
    for workers in ("1", "2"):
        argv = ["run", "guests", "-a", "s390x", "-k", "2.6.27", "--guests", "3", "--image-size", "4M",
                "--out", str(tmp_path / workers), "--json", "--workers", workers]  # fmt: skip
        assert run(argv) == 0
        docs.append(json.loads(capsys.readouterr().out))
    assert [d["workers"] for d in docs] == [1, 2]
    strip = ("elapsed_s", "workers", "peak_rss_bytes")
    runs = [[{k: v for k, v in r.items() if k not in strip} for r in d["runs"]] for d in docs]
    assert runs[0] == runs[1]
    assert run(["run", "guests", "--workers", "0"]) == 2
    assert run(["run", "s8-illegal-inserts", "--workers", "2"]) == 2
