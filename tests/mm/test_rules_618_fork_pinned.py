"""FORK_COPIES_PINNED (5.9, 6.18 mm/memory.c ``copy_present_page``): fork copies an anonymous
page that may be DMA-pinned for the child at once and leaves the parent's PTE writable, so the
pinner keeps seeing the page the parent writes; 2.6.27 shares it write-protected and the
parent's next write COWs it away from the pinned page (the "GUP after fork" bug the rule
fixed).

Runs on the default mode of each arch under 6.18 and, for the contrast, under 2.6.27 (where
``get_user_pages`` stands in for the pin), third-party arches included.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmap.errors import ENOMEM, OutOfMemory
from mixedmap.mm import gup
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE
from mixedmap.rules import FORK_COPIES_PINNED

from ..conftest import CASES
from .helpers import Env

ANON = MAP_PRIVATE | MAP_ANONYMOUS
C618 = [c for c in CASES if c.mode.default and c.mode.profile == "6.18"]
C2627 = [c for c in CASES if c.mode.default and c.mode.profile == "2.6.27"]


@pytest.fixture(params=C618, ids=[c.id for c in C618])
def env(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


@pytest.fixture(params=C2627, ids=[c.id for c in C2627])
def env2627(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


def _three_pages(env: Env) -> tuple[MM, int, list[int]]:
    """Three written private anonymous pages: (mm, address, their pfns)."""
    mm = env.m.new_mm()
    addr = mm.mmap(3 * env.ps, "rw", ANON)
    for i in range(3):
        mm.write(addr + i * env.ps, bytes([0x40 + i]) * 8)
    return mm, addr, [env.pfn_of(env.pte(mm, addr + i * env.ps)) for i in range(3)]


def test_the_rule_is_dated() -> None:
    assert FORK_COPIES_PINNED.since == "5.9" and "70e806e4e645" in FORK_COPIES_PINNED.note


def test_fork_copies_a_pinned_anonymous_page_for_the_child(env: Env) -> None:
    mm, addr, pfns = _three_pages(env)
    pinned = gup.pin_user_pages(mm, addr + env.ps, 1, write=True)  # page 1 is under DMA
    assert pinned.tolist() == [pfns[1]]
    before = env.m.pages.page_count(pfns[1])[0]
    child = mm.fork()
    parent_pte, child_pte = env.pte(mm, addr + env.ps), env.pte(child, addr + env.ps)
    assert env.pfn_of(child_pte) != pfns[1], env.say("the child has its own copy", child=child_pte)
    copy = env.pfn_of(child_pte)
    assert env.frame(copy)[:8] == bytes([0x41]) * 8, env.say("copied at fork, not zeroed")
    assert env.writable(parent_pte) and env.pfn_of(parent_pte) == pfns[1], env.say(
        "the parent's PTE is left writable on the pinned page", parent=parent_pte
    )
    assert env.writable(child_pte) and env.dirty(child_pte), env.say(
        "maybe_mkwrite(pte_mkdirty())", child=child_pte
    )
    assert env.m.pages.page_count(pfns[1])[0] == before, env.say("the pinned page gains no reference")
    assert env.counts(copy) == (1, 1), env.say(f"the copy: refcount/mapcount {env.counts(copy)}")
    # the unpinned pages are shared write-protected as always
    for i in (0, 2):
        p, c = env.pte(mm, addr + i * env.ps), env.pte(child, addr + i * env.ps)
        assert env.pfn_of(p) == env.pfn_of(c) == pfns[i] and not env.writable(p) and not env.writable(c)
        assert env.counts(pfns[i]) == (2, 2), env.say(f"page {i} shared: {env.counts(pfns[i])}")
    assert child.rss["anon"] == 3 and mm.rss["anon"] == 3
    # the parent writes the page the device reads: no fault, the pinned page sees it
    assert mm.access(addr + env.ps, write=True).fault == "none"
    mm.write(addr + env.ps, b"DMA")
    assert env.frame(pfns[1])[:3] == b"DMA" and env.frame(copy)[:3] == bytes([0x41]) * 3
    gup.unpin_user_pages(env.m, pinned)
    child.exit()
    mm.exit()
    assert [env.m.pages.page_count(p)[0] for p in [*pfns, copy]] == [0] * 4
    env.assert_clean()


def test_a_plain_reference_is_not_a_pin(env: Env) -> None:
    """get_user_pages (FOLL_GET) does not raise the refcount to the pin bias: shared as usual."""
    mm, addr, pfns = _three_pages(env)
    got = gup.get_user_pages(mm, addr, 1, write=True)
    child = mm.fork()
    assert env.pfn_of(env.pte(child, addr)) == pfns[0] and not env.writable(env.pte(mm, addr))
    env.m.pages.put_page(got)
    child.exit()
    mm.exit()
    env.assert_clean()


def test_no_memory_for_the_copy_changes_nothing(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    mm, addr, pfns = _three_pages(env)
    pinned = gup.pin_user_pages(mm, addr, 3, write=True)
    ptes = [env.pte(mm, addr + i * env.ps) for i in range(3)]
    counts = [env.counts(p) for p in pfns]
    alloc = env.m.pages.alloc_pages

    def no_pages_for_copies(n: int, *args: object, **kwargs: object) -> object:
        if n == 3:  # the three copies; the child's page tables still get their frames
            raise OutOfMemory("test: no free page for the copies")
        return alloc(n, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(env.m.pages, "alloc_pages", no_pages_for_copies)
    with pytest.raises(ENOMEM, match="pinned page"):
        mm.fork()
    monkeypatch.undo()
    assert [env.pte(mm, addr + i * env.ps) for i in range(3)] == ptes, env.say("parent PTEs unchanged")
    assert [env.counts(p) for p in pfns] == counts
    gup.unpin_user_pages(env.m, pinned)
    mm.exit()
    env.assert_clean()


def test_2627_shares_the_referenced_page_and_cows_it_away(env2627: Env) -> None:
    """2.6.27: fork write-protects the page GUP holds; the parent's next write COWs, so the
    holder of the reference keeps the old page (the bug 5.9 fixed)."""
    env = env2627
    mm, addr, pfns = _three_pages(env)
    got = gup.get_user_pages(mm, addr + env.ps, 1, write=True)
    child = mm.fork()
    assert env.pfn_of(env.pte(child, addr + env.ps)) == pfns[1]
    assert not env.writable(env.pte(mm, addr + env.ps))
    assert mm.access(addr + env.ps, write=True).fault in ("wp", "fault+wp")
    assert env.pfn_of(env.pte(mm, addr + env.ps)) != pfns[1], env.say("the parent COWed away")
    env.m.pages.put_page(np.asarray(got, dtype=np.uint64))
    child.exit()
    mm.exit()
    env.assert_clean()
