"""The core's batched translate agrees with independent walkers written from the manuals.

Each walker in ``tests/walkers`` reads raw bytes of physical memory and knows nothing of
mixedmap or the plugin, so an error in a plugin's bit layout, byte order or level geometry
shows up as a disagreement here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from mixedmap.conformance.test_pgtable import user_va_limit

from .conftest import Case

WALKERS = {"x86_64": "x86", "s390x": "s390", "ppc64": "powerpc", "riscv64": "riscv64"}


def walker_for(case: Case) -> Callable[..., Any]:
    name = WALKERS.get(case.arch)
    if name is None:
        pytest.skip(f"no independent walker for {case.arch}")
    try:
        mod = importlib.import_module(f"tests.walkers.{name}")
    except ImportError:
        pytest.skip(f"walker tests.walkers.{name} not present")
    return mod.walk  # type: ignore[no-any-return]


def kwargs_for(walk: Callable[..., Any], case: Case) -> dict[str, Any]:
    fmt = case.mode.fmt
    offer = {
        "levels": len(fmt.levels),
        "mode": fmt.mode,
        "maxphyaddr": fmt.pa_bits,
        "page_size": fmt.page_size,
        "profile": fmt.profile,
        "edat1": bool(dict(case.mode.options).get("edat1", False)),
    }
    params = inspect.signature(walk).parameters
    return {k: v for k, v in offer.items() if k in params}


@pytest.mark.parametrize("seed", [1, 2])
def test_translate_agrees_with_independent_walker(case: Case, seed: int) -> None:
    walk = walker_for(case)
    m = case.machine(ram="2G")
    pt = m.new_pagetable()
    fmt = m.fmt
    rng = np.random.default_rng(seed)
    limit = user_va_limit(fmt) >> fmt.page_shift
    vpns = np.unique(rng.integers(0, min(limit, 1 << 36), size=200, dtype=np.uint64))
    pfn_limit = min(fmt.max_pfn, 1 << (fmt.pa_bits - fmt.page_shift), 1 << 36)
    mapped: list[int] = []
    for k, vpn in enumerate(vpns.tolist()):
        pfn = int(rng.integers(0, pfn_limit))
        pt.map(vpn << fmt.page_shift, pfn, "rwx" if k % 3 else "r")
        mapped.append(vpn << fmt.page_shift)
    for i, lv in enumerate(fmt.levels[:-1]):  # one large leaf per level that allows it
        if lv.leaf_ok and lv.page_size <= 1 << 30:
            va = (limit << fmt.page_shift) - (i + 2) * lv.page_size
            va -= va % lv.page_size
            if pt.lookup(va) is None and all(abs(va - x) >= lv.page_size for x in mapped):
                try:
                    pt.map(va, (lv.page_size >> fmt.page_shift) * (i + 3), "rw", page_size=lv.page_size)
                    mapped.append(va + 0x2345)
                except Exception as exc:  # a conflicting path: skip this level
                    if "already mapped" not in str(exc) and "large-page" not in str(exc):
                        raise

    def read8(pa: int) -> bytes:
        return m.mem.read(pa, 8)

    kw = kwargs_for(walk, case)
    probes = np.array(
        mapped + [(v + 1) << fmt.page_shift for v in vpns.tolist()[:50]], dtype=np.uint64
    ) + np.uint64(0x18)
    got = pt.translate(probes)
    for va, pa in zip(probes.tolist(), got.tolist(), strict=True):
        ref = walk(read8, pt.root, va, **kw)
        want = -1 if ref is None else ref[0]
        assert pa == want, f"{case.id}: va {va:#x}: translate {pa:#x}, walker {want:#x} (root {pt.root:#x})"
