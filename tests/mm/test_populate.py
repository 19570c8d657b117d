"""MAP_POPULATE of anonymous memory: ``MM.populate`` batches what ``make_pages_present``
does page by page through ``get_user_pages``; the end state must be the per-page one."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mixedmap import Machine
from mixedmap.mm import gup
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE
from tests.conftest import CASES, Case

DEFAULTS = [c for c in CASES if c.mode.default]
ANON = MAP_PRIVATE | MAP_ANONYMOUS


def per_page_populate(mm: MM, start: int, length: int, write: bool) -> None:
    """What 2.6.27 make_pages_present does: get_user_pages page by page, then drop the pins."""
    try:
        pinned = gup.get_user_pages(mm, start, length // mm.page_size, write)
    except Exception:
        return
    mm.machine.pages.put_page(pinned)


def state(m: Machine, mm: MM) -> dict[str, Any]:
    mem = {pa: bytes(block) for pa, block in m.mem.blocks()}
    mmap = m.memmap
    return {
        "mem": mem,
        "refcount": mmap.refcount.copy(),
        "mapcount": mmap.mapcount.copy(),
        "flags": mmap.flags.copy(),
        "anon_mapped": mmap.mapping != 0,  # the anon_vma id itself differs between twins
        "used": m.frames._used.copy(),
        "rss": dict(mm.rss),
        "pt": mm.pt.bytes_used,
    }


def assert_same(a: dict[str, Any], b: dict[str, Any], label: str) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], np.ndarray):
            assert np.array_equal(a[k], b[k]), f"{label}: {k} differs"
        else:
            assert a[k] == b[k], f"{label}: {k} differs"


@pytest.mark.parametrize("case", DEFAULTS, ids=[c.id for c in DEFAULTS])
def test_populate_anon_equals_get_user_pages(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = gup.get_user_pages

    def counting(*args: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*args, **kw)

    a, b = case.machine(ram="64M"), case.machine(ram="64M")
    mma, mmb = a.new_mm(), b.new_mm()
    length = 300 * a.page_size  # crosses PTE tables on every arch
    monkeypatch.setattr("mixedmap.mm.mm.get_user_pages", counting)
    va = mma.mmap(length, "rw", ANON | MAP_POPULATE)
    assert not calls, "anonymous MAP_POPULATE went page by page"
    vb = mmb.mmap(length, "rw", ANON)
    per_page_populate(mmb, vb, length, write=True)
    assert va == vb and mma.rss["anon"] == 300
    assert_same(state(a, mma), state(b, mmb), case.id)


@pytest.mark.parametrize("case", DEFAULTS[:3], ids=[c.id for c in DEFAULTS[:3]])
def test_read_only_anon_populate_maps_nothing(case: Case) -> None:
    """2.6.27 follow_page with FOLL_ANON answers ZERO_PAGE for untouched anonymous memory
    and installs no PTE (use_zero_page: not VM_LOCKED, not VM_SHARED). 6.18
    populate_vma_page_range read-faults each page instead (rule zero_page): every PTE maps the
    shared zero pfn, uncounted, and no page but page tables is allocated."""
    from mixedmap.mm.zero import zero_pfn
    from mixedmap.rules import ZERO_PAGE

    m = case.machine(ram="64M")
    mm = m.new_mm()
    free = m.pages.nr_free
    va = mm.mmap(8 * m.page_size, "r", ANON | MAP_POPULATE)
    if ZERO_PAGE.applies(m.profile):
        zpfn = zero_pfn(m)
        leaves = [mm.pt.lookup(va + i * m.page_size) for i in range(8)]
        assert mm.rss == {"file": 0, "anon": 0}, case.id
        assert [leaf is not None and leaf.pfn for leaf in leaves] == [zpfn] * 8, case.id
        assert m.pages.leaks().get("anon", 0) == 0, case.id
        assert mm.access(va).fault == "none" and mm.rss["anon"] == 0, case.id  # already mapped
        return
    assert mm.rss == {"file": 0, "anon": 0} and mm.pt.lookup(va) is None
    assert m.pages.nr_free == free  # not even a page table
    mm.access(va)  # a real read fault still maps a page
    assert mm.rss["anon"] == 1


@pytest.mark.parametrize("case", DEFAULTS[:3], ids=[c.id for c in DEFAULTS[:3]])
def test_populate_beyond_ram_stops_like_gup(case: Case) -> None:
    """OOM part-way: get_user_pages returns what it got and mmap ignores the count."""
    a, b = case.machine(ram="16M"), case.machine(ram="16M")
    mma, mmb = a.new_mm(), b.new_mm()
    length = 32 << 20
    va = mma.mmap(length, "rw", ANON | MAP_POPULATE)
    vb = mmb.mmap(length, "rw", ANON)
    per_page_populate(mmb, vb, length, write=True)
    assert 0 < mma.rss["anon"] < length // a.page_size
    assert_same(state(a, mma), state(b, mmb), case.id)
    assert va == vb
