"""The scalar hot paths (issues 11 and 13) answer exactly as the batch paths they shortcut.

``pfn_valid`` is resolved once when an arch is bound (no pluggy dispatch per fault, the core's
SPARSEMEM test called directly when the arch keeps it, wrappers still honoured); the access
path's decoded-PTE table, VMA hint and fault-slot hint; physical memory's one-block reads and
writes; the page allocator's one-page get/put/free.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pluggy
import pytest

from mixedmap import ArchRegistry, Machine, RangeDevice, XipFS
from mixedmap.errors import VMBug
from mixedmap.mm import mm as mm_module
from mixedmap.mm.vma import MAP_PRIVATE
from mixedmap.phys.mem import BLOCK_SIZE, PhysMem
from mixedmap.plugin import hookimpl
from mixedmap.plugin.manager import load_arch_plugins, new_plugin_manager
from mixedmap.rules import FILEMAP_XIP
from mixedmap.testing.synthetic_arch import ToyPlugin

GiB = 1 << 30


class _EvenOnly(ToyPlugin):
    @hookimpl
    def mixedmap_pfn_valid(self, memmap: object, pfns: np.ndarray) -> np.ndarray:
        return (pfns % 2) == 0  # type: ignore[no-any-return]


class _Declines(ToyPlugin):
    @hookimpl
    def mixedmap_pfn_valid(self, pfns: np.ndarray) -> None:  # a subset of the arguments, too
        return None


class _Spy:
    """A hook wrapper around every ``mixedmap_pfn_valid`` call (a tracing plugin)."""

    def __init__(self) -> None:
        self.calls = 0

    @hookimpl(wrapper=True)
    def mixedmap_pfn_valid(self, memmap: object, pfns: np.ndarray) -> Any:
        self.calls += 1
        return (yield)


def _registry(*extra: tuple[str, object], spy: _Spy | None = None) -> ArchRegistry:
    pm = new_plugin_manager()
    loaded, reports = load_arch_plugins(pm, extra=list(extra), entry_points=[])
    if spy is not None:
        pm.register(spy, name="spy")
    return ArchRegistry(pm, loaded, reports)


def test_core_pfn_valid_is_called_directly() -> None:
    reg = _registry(("toyarch", ToyPlugin()))
    b = reg.bind("toyarch")
    assert b.pfn_valid_is_core
    m = Machine("toyarch", ram="16M", registry=reg)
    pfns = np.arange(0, 1 << 16, 977, dtype=np.uint64)
    want = m.memmap.pfn_valid(pfns)
    assert m.pfn_valid(pfns).tolist() == want.tolist()
    one = b.pfn_valid_scalar(m.memmap)
    assert [one(int(p)) for p in pfns] == want.tolist()
    assert [bool(m.pfn_valid(int(p))[0]) for p in pfns] == want.tolist()


def test_arch_pfn_valid_resolved_at_bind_time() -> None:
    reg = _registry(("even", _EvenOnly("even")), ("toyarch", ToyPlugin()))
    b = reg.bind("even")
    assert not b.pfn_valid_is_core
    m = Machine("even", ram="16M", registry=reg)
    assert m.pfn_valid(np.arange(4)).tolist() == [True, False, True, False]
    assert [m.pfn_valid(p)[0] for p in range(4)] == [True, False, True, False]
    assert [b.pfn_valid_scalar(m.memmap)(p) for p in range(4)] == [True, False, True, False]


def test_declining_arch_falls_back_to_the_core() -> None:
    """firstresult: an arch answering None leaves the question to the core's SPARSEMEM test."""
    reg = _registry(("decl", _Declines("decl")))
    m = Machine("decl", ram="16M", registry=reg)
    assert not reg.bind("decl").pfn_valid_is_core
    assert m.pfn_valid(np.array([0, 1 << 30], dtype=np.uint64)).tolist() == [True, False]


def test_hook_wrapper_still_sees_every_call() -> None:
    spy = _Spy()
    reg = _registry(("toyarch", ToyPlugin()), spy=spy)
    m = Machine("toyarch", ram="16M", registry=reg)
    assert m.pfn_valid(np.arange(3)).tolist() == [True] * 3
    assert m.pfn_valid(5)[0]
    assert spy.calls == 2


@pytest.mark.parametrize("kernel", ["2.6.27", "6.18"])
def test_no_pluggy_dispatch_per_fault(monkeypatch: pytest.MonkeyPatch, kernel: str) -> None:
    """Faulting an XIP/DAX file page by page makes no pluggy hook call at all."""
    m = Machine("x86_64", kernel, ram="64M")
    start = 4 * GiB
    m.add_region("xip", start, 64 << 20, memmap=not FILEMAP_XIP.applies(m.profile))
    fs = XipFS(RangeDevice(m, "xip", start, 64 << 20, read_only=True, kaddr_base=start))
    fs.create("f", size=1 << 20, allocate=True)
    mm = m.new_mm()
    base = mm.mmap(1 << 20, "r", MAP_PRIVATE, file=fs.open("f"))
    calls: list[str] = []
    real = pluggy.HookCaller.__call__

    def counting(self: pluggy.HookCaller, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.name)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(pluggy.HookCaller, "__call__", counting)
    for k in range(256):
        assert mm.access(base + k * m.page_size).fault == "fault"
    assert calls == []
    monkeypatch.undo()
    mm.exit()


def test_decoded_ptes_restart_when_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """The decoded-PTE table is bounded; answers do not depend on what it still holds."""
    monkeypatch.setattr(mm_module, "_DECODED_MAX", 3)
    m = Machine("x86_64", "6.18", ram="64M")
    mm = m.new_mm()
    base = mm.mmap(16 * m.page_size, "rw", 0x22)
    pfns = [mm.access(base + k * m.page_size, write=True).pfn for k in range(16)]
    for _ in range(2):
        for k in range(16):
            acc = mm.access(base + k * m.page_size)
            assert acc.fault == "none" and acc.pfn == pfns[k]
            assert mm.read(base + k * m.page_size, 1) == b"\0"
    assert len(mm._decoded) <= 3
    mm.exit()


def test_vma_hint_follows_munmap_and_mprotect() -> None:
    m = Machine("x86_64", "2.6.27", ram="64M")
    mm = m.new_mm()
    ps = m.page_size
    a = mm.mmap(4 * ps, "rw", 0x22)
    mm.write(a + ps, b"x")
    mm.mprotect(a + ps, ps, "r")  # splits the VMA the hint holds
    with pytest.raises(Exception, match="SIGSEGV"):
        mm.write(a + ps, b"y")
    mm.write(a, b"z")
    mm.munmap(a, 4 * ps)
    with pytest.raises(Exception, match="no mapping"):
        mm.read(a, 1)
    assert mm._fault_slot is None and mm._pte_tables == {}
    # the tables were freed: a new mapping there walks (and allocates) afresh
    other = m.new_mm()
    other.write(other.mmap(64 * ps, "rw", 0x22), b"t" * 8)  # takes the freed frames
    b = mm.mmap(4 * ps, "rw", 0x22 | 0x10, addr=a)  # MAP_FIXED at the old address
    mm.write(b + 3, b"new")
    assert mm.read(b, 8) == b"\0\0\0new\0\0"
    assert mm.pt.lookup(b) is not None and mm.pt.lookup(b).pa == mm.access(b).pfn * ps
    other.exit()
    mm.exit()
    assert m.pages.leaks() == {}


def test_one_block_reads_and_writes_match_the_general_path() -> None:
    mem = PhysMem()
    blob = bytes(range(256)) * 40
    mem.write(3 * BLOCK_SIZE - 100, blob)  # across blocks: the general path
    for pa, n in [
        (3 * BLOCK_SIZE - 100, 100),
        (3 * BLOCK_SIZE, 17),
        (7 * BLOCK_SIZE + 5, 1),
        (0, BLOCK_SIZE),
    ]:
        want = bytes(mem.read(pa + k, 1)[0] for k in range(n)) if n < 200 else None
        got = mem.read(pa, n)
        assert len(got) == n and (want is None or got == want)
    mem.write(9 * BLOCK_SIZE + 8, b"abc")
    assert mem.read(9 * BLOCK_SIZE + 8, 3) == b"abc" and mem.read(9 * BLOCK_SIZE, 8) == bytes(8)
    for k in range(40):  # grow the store past its first capacity: the flat view follows it
        mem.write_u64((100 + k) * BLOCK_SIZE + 8, 0x1122334455667788 + k, "big")
    assert [mem.read_u64((100 + k) * BLOCK_SIZE + 8, "big") for k in range(40)] == [
        0x1122334455667788 + k for k in range(40)
    ]
    assert mem.read((100 + 3) * BLOCK_SIZE + 8, 8) == (0x1122334455667788 + 3).to_bytes(8, "big")
    assert mem.read(3 * BLOCK_SIZE, 4) == blob[100:104]


def test_one_page_allocator_paths() -> None:
    m = Machine("x86_64", "2.6.27", ram="64M")
    pages = m.pages
    (pfn,) = pages.alloc_pages(1).tolist()
    k = m.memmap.flat_of(pfn)
    pages.get_page_at(pfn, k)
    assert int(pages.page_count(pfn)[0]) == 2
    with pytest.raises(VMBug, match="other reference"):
        pages.free_pages(pfn)
    assert pages.put_page_n(pfn, 2).tolist() == [pfn]
    with pytest.raises(VMBug, match="already free"):
        pages.free_pages(pfn)
    with pytest.raises(VMBug, match="refcount 0"):
        pages.get_page_at(pfn, k)
    (pfn,) = pages.alloc_pages(1).tolist()
    pages.free_pages(pfn)
    assert pages.leaks() == {}
