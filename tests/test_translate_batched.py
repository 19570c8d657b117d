"""The table-by-table batched walk answers exactly as the VA-by-VA walk and the manuals do.

``translate`` and the range walks decode each visited table once for a big batch (issue 13)
and walk VA by VA for a small one or one spread over very many tables. Batches of every
shape -- one dense run, scattered pages, large leaves, holes, VAs outside the address space
-- must get the same answers from a big batch, from the same VAs in small batches, and from
the independent walkers of ``tests/walkers`` written from each arch's manual.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest

from mixedmap.conformance.test_pgtable import user_va_limit
from mixedmap.errors import PageTableError

from .conftest import Case
from .test_walkers import kwargs_for, walker_for

SMALL = 32  # below the batched walk's threshold: the VA-by-VA path


def _build(case: Case, seed: int) -> tuple[Any, Any, dict[str, np.ndarray]]:
    m = case.machine(ram="2G")
    pt = m.new_pagetable()
    fmt = m.fmt
    rng = np.random.default_rng(seed)
    limit = user_va_limit(fmt) >> fmt.page_shift
    start = (min(limit, 1 << 36) // 3) & ~0x3FFFF
    dense = 3000
    pt.map_range(start << fmt.page_shift, np.arange(dense, dtype=np.uint64) + np.uint64(0x100), "rw")
    vpns = np.unique(rng.integers(0, min(limit, 1 << 36), size=300, dtype=np.uint64))
    scattered = []
    for k, vpn in enumerate(vpns.tolist()):
        try:
            pt.map(vpn << fmt.page_shift, int(rng.integers(0, 1 << 20)), "rwx" if k % 3 else "r")
        except PageTableError:  # inside the dense run or under a leaf
            continue
        scattered.append(vpn << fmt.page_shift)
    leaves = []
    for i, lv in enumerate(fmt.levels[:-1]):
        if lv.leaf_ok and lv.page_size <= 1 << 30:
            va = (limit << fmt.page_shift) - (i + 2) * lv.page_size
            va -= va % lv.page_size
            try:
                pt.map(va, (lv.page_size >> fmt.page_shift) * (i + 3), "rw", page_size=lv.page_size)
            except PageTableError:
                continue
            leaves.append(va + 0x2345)
    ps = fmt.page_size
    probes = {
        "dense": np.uint64(start * ps) + rng.integers(0, (dense + 50) * ps, size=4000, dtype=np.uint64),
        "scattered": np.array(scattered, dtype=np.uint64) + np.uint64(0x18),
        "leaves": np.array(leaves * 40 + scattered[:100], dtype=np.uint64),
        "leaf": np.array(leaves, dtype=np.uint64),
        "anywhere": rng.integers(0, 1 << 63, size=2000, dtype=np.uint64) * np.uint64(2),
    }
    return m, pt, probes


@pytest.mark.parametrize("seed", [3])
def test_big_batch_equals_small_batches_and_the_manual(case: Case, seed: int) -> None:
    m, pt, probes = _build(case, seed)
    walk = None
    with contextlib.suppress(pytest.skip.Exception):  # no walker: batch against small batches only
        walk = walker_for(case)
    kw = kwargs_for(walk, case) if walk is not None else {}
    leaf_only = probes.pop("leaf")
    mixed = np.concatenate([*probes.values(), leaf_only])
    for name, vas in [*probes.items(), ("mixed", mixed)]:
        if vas.size == 0:
            continue
        got = pt.translate(vas)
        small = np.concatenate([pt.translate(vas[k : k + SMALL]) for k in range(0, vas.size, SMALL)])
        bad = np.flatnonzero(got != small)
        assert bad.size == 0, (
            f"{case.id} {name}: va {int(vas[bad[0]]):#x}: batch {int(got[bad[0]]):#x}, "
            f"one by one {int(small[bad[0]]):#x}"
        )
        if walk is not None and name != "mixed":
            for va, pa in zip(vas.tolist()[:600], got.tolist()[:600], strict=False):
                ref = walk(lambda pa_: m.mem.read(pa_, 8), pt.root, va, **kw)
                want = -1 if ref is None else ref[0]
                assert pa == want, f"{case.id} {name}: va {va:#x}: translate {pa:#x}, walker {want:#x}"


def test_range_walk_batches_agree(case: Case) -> None:
    """``range_ptes`` (the mm layer's batched walk) reads the PTEs single lookups read."""
    m, pt, _ = _build(case, 4)
    fmt = m.fmt
    limit = user_va_limit(fmt) >> fmt.page_shift
    start = ((min(limit, 1 << 36) // 3) & ~0x3FFFF) << fmt.page_shift
    for first, count in ((max(0, start - 100 * fmt.page_size), 3200), (start + 17 * fmt.page_size, 40)):
        vas, ptes, reach = pt.range_ptes(first, count)
        for va, pte, ok in zip(vas.tolist(), ptes.tolist(), reach.tolist(), strict=True):
            leaf = pt.lookup(va)
            if leaf is not None:
                assert ok and pte == leaf.value, (
                    f"{case.id}: va {va:#x}: range {pte:#x}, lookup {leaf.value:#x}"
                )


def test_range_walk_through_a_large_leaf_raises_naming_it(case: Case) -> None:
    _m, pt, probes = _build(case, 5)
    if not probes["leaf"].size:
        pytest.skip(f"{case.id}: no large leaf to walk through")
    vas = np.concatenate([probes["dense"][:200], np.repeat(probes["leaf"], 40)])
    with pytest.raises(PageTableError, match="large-page leaf on the path"):
        pt.pte_slots(vas, allocate=False)
