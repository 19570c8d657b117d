"""FILE_FAULT_SIGBUS (4.2, 6.18 mm/memory.c ``do_pte_missing`` / ``do_fault``): a fault on a
none PTE of a driver's mapping whose ``->mmap`` set no ``->fault`` is SIGBUS; 2.6.26/2.6.27's
``handle_pte_fault`` falls through to ``do_anonymous_page`` and puts an anonymous page into
the file mapping.

Every test runs on the default mode of each arch under 6.18 and, for the contrast, under
2.6.27 (third-party arches included): the fault, MAP_POPULATE, GUP, and the batched fault-in.
"""

from __future__ import annotations

import pytest

from mixedmap.errors import EFAULT, SIGBUS
from mixedmap.mm.gup import get_user_pages
from mixedmap.mm.vma import MAP_POPULATE, MAP_PRIVATE, VM
from mixedmap.rules import FILE_FAULT_SIGBUS

from ..conftest import CASES
from .helpers import Env, device, map_device, snapshot

C618 = [c for c in CASES if c.mode.default and c.mode.profile == "6.18"]
C2627 = [c for c in CASES if c.mode.default and c.mode.profile == "2.6.27"]


@pytest.fixture(params=C618 + C2627, ids=[c.id for c in C618 + C2627])
def env(request: pytest.FixtureRequest) -> Env:
    return Env(request.param)


def _sigbus(env: Env) -> bool:
    return FILE_FAULT_SIGBUS.applies(env.m.profile)


def test_the_rule_is_dated_and_in_618_only() -> None:
    assert FILE_FAULT_SIGBUS.since == "4.2" and "6b7339f4c31a" in FILE_FAULT_SIGBUS.note
    assert {c.mode.profile for c in C618 + C2627 if FILE_FAULT_SIGBUS.applies(c.machine().profile)} == {
        "6.18"
    }


@pytest.mark.parametrize("write", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_a_fault_in_a_driver_mapping_without_fault(env: Env, write: bool, shared: bool) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=shared, flags=VM.MIXEDMAP)
    assert vma.vm_ops is None and vma.file is not None
    if _sigbus(env):
        before = snapshot(env, mm, vma)
        with pytest.raises(SIGBUS) as exc:
            mm.access(addr + env.ps, write=write)
        assert f"{addr + env.ps:#x}" in str(exc.value), env.say(str(exc.value))
        assert snapshot(env, mm, vma) == before, env.say("a SIGBUS changes nothing")
        assert not vma.anon_vma
        return
    res = mm.access(addr + env.ps, write=write)
    assert res.fault == "fault", env.say(f"2.6.27 do_anonymous_page: {res}")
    assert mm.rss["anon"] == 1, env.say(f"an anonymous page in the file mapping: {mm.rss}")
    assert vma.anon_vma, env.say("the anonymous page gave the VMA an anon_vma")
    assert env.normal_page(mm, addr + env.ps) is not None, env.say("the page is normal (MIXEDMAP, pfn_valid)")


def test_map_populate_of_a_driver_mapping_without_fault(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 4, shared=False, prot="r", flags=VM.MIXEDMAP)
    mm.populate(addr, 4 * env.ps)  # mmap(MAP_POPULATE) ignores the result
    if _sigbus(env):
        assert mm.rss["anon"] == 0 and not vma.anon_vma, env.say(f"populate mapped nothing: {mm.rss}")
        assert all(not env.ops.pte_present(env.pte(mm, addr + i * env.ps)) for i in range(4))
    else:
        # 2.6.27: a read GUP of the mapping faults do_anonymous_page into every page
        assert mm.rss["anon"] == 4, env.say(f"2.6.27 make_pages_present: {mm.rss}")


def test_gup_of_a_driver_mapping_without_fault(env: Env) -> None:
    mm = env.m.new_mm()
    addr, vma = map_device(env, mm, 2, shared=True, flags=VM.MIXEDMAP)
    if _sigbus(env):
        before = snapshot(env, mm, vma)
        with pytest.raises(EFAULT):  # faultin_page: VM_FAULT_SIGBUS is -EFAULT to the caller
            get_user_pages(mm, addr, 1, False)
        assert snapshot(env, mm, vma) == before
        return
    pfns = get_user_pages(mm, addr, 1, False)
    assert len(pfns) == 1 and mm.rss["anon"] == 1
    env.m.pages.put_page(pfns)


def test_mmap_populate_flag_goes_the_same_way(env: Env) -> None:
    mm = env.m.new_mm()
    start = mm.mmap(3 * env.ps, "r", MAP_POPULATE | MAP_PRIVATE, file=device(flags=VM.MIXEDMAP))
    assert mm.rss["anon"] == (0 if _sigbus(env) else 3), env.say(f"{mm.rss} at {start:#x}")
