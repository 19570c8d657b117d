"""Memory sections, struct page arrays, the page allocator and device regions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mixedmap import EBUSY, PG, AddressError, Machine, VMBug

from .conftest import REGISTRY, Case

GiB = 1 << 30
MiB = 1 << 20


def toy(ram: int | str = "256M") -> Machine:
    return Machine("toyarch", ram=ram, registry=REGISTRY)


@given(
    ram_mib=st.integers(1, 2048),
    devices=st.lists(st.tuples(st.integers(0, 64), st.integers(1, 600), st.booleans()), max_size=4),
    probes=st.lists(st.integers(0, (1 << 28) - 1), min_size=1, max_size=40),
)
def test_pfn_valid_is_section_has_memmap(
    ram_mib: int, devices: list[tuple[int, int, bool]], probes: list[int]
) -> None:
    """Over random layouts: pfn_valid(pfn) <=> the pfn's section belongs to memory with a memmap."""
    m = toy(ram_mib * MiB)
    sec_bits = m.mode.mode.memory.section_size_bits
    have: set[int] = set(range(0, ((ram_mib * MiB - 1) >> sec_bits) + 1))
    base = (ram_mib * MiB + (4 << sec_bits)) & ~((1 << sec_bits) - 1)
    for k, (gap, size_mib, memmap) in enumerate(devices):
        start = base + (gap << sec_bits)
        try:
            m.add_region(f"dev{k}", start, size_mib * MiB, memmap=memmap)
        except AddressError:
            continue  # overlap with an earlier device: refused, nothing changed
        if memmap:
            have |= set(range(start >> sec_bits, ((start + size_mib * MiB - 1) >> sec_bits) + 1))
        base = start + size_mib * MiB + (1 << sec_bits)
        base &= ~((1 << sec_bits) - 1)
    pfns = np.array(probes, dtype=np.uint64)
    want = [(p << 12) >> sec_bits in have for p in probes]
    assert m.pfn_valid(pfns).tolist() == want
    assert m.memmap_bytes() == len(have) * (1 << (sec_bits - 12)) * 64


def test_memmap_bytes_of_a_1gib_device_follows_the_formula() -> None:
    m = toy("512M")
    with_pages = m.add_region("dcss", 4 * GiB, GiB, memmap=True)
    without = m.add_region("axon", 8 * GiB, GiB, memmap=False)
    assert m.memmap_bytes(with_pages.name) == 16 * MiB == GiB // 4096 * 64
    assert m.memmap_bytes(without.name) == 0
    assert m.memmap_bytes() == (512 * MiB + GiB) // 4096 * 64
    assert m.page(4 * GiB >> 12) is not None and m.page(8 * GiB >> 12) is None


def test_region_errors_change_nothing() -> None:
    m = toy("200M")
    m.add_region("a", GiB, 64 * MiB, memmap=False)
    before = (list(m.regions), m.memmap_bytes(), m.memmap.sections.tolist())
    bad = [
        (lambda: m.add_region("b", GiB + 32 * MiB, 64 * MiB, memmap=False), "overlaps 'a'"),
        (lambda: m.add_region("c", 2 * GiB + 100, 4096, memmap=False), "not aligned"),
        (lambda: m.add_region("d", 232 * MiB, 4096, memmap=False), "shares"),
        (lambda: m.add_region("e", GiB + 64 * MiB, 4096, memmap=True), "would give struct pages"),
        (lambda: m.add_region("a", 3 * GiB, 4096, memmap=False), "already used"),
        (lambda: m.add_region("f", 1 << 40, 4096, memmap=True), "MAX_PHYSMEM_BITS"),
        (lambda: m.remove_region("System RAM"), "cannot be removed"),
    ]
    for call, text in bad:
        with pytest.raises(AddressError, match=text):
            call()
        assert (list(m.regions), m.memmap_bytes(), m.memmap.sections.tolist()) == before, text


def test_remove_region_refuses_busy_pages() -> None:
    m = toy("256M")
    r = m.add_region("dev", GiB, 4 * MiB, memmap=True)
    pfn = r.start >> 12
    row, col = m.memmap.rows(np.array([pfn], dtype=np.uint64))
    m.memmap.mapcount[row, col] = 1
    with pytest.raises(EBUSY, match="still in use"):
        m.remove_region("dev")
    m.memmap.mapcount[row, col] = 0
    m.remove_region("dev")
    assert m.page(pfn) is None and "dev" not in m.regions


class PageAllocMachine(RuleBasedStateMachine):
    """get/put/alloc/free sequences: the model's refcounts match a dict, nothing leaks."""

    def __init__(self) -> None:
        super().__init__()
        self.m = toy("8M")
        self.refs: dict[int, int] = {}

    @rule(n=st.integers(1, 50))
    def alloc(self, n: int) -> None:
        if n > self.m.pages.nr_free:
            return
        for pfn in self.m.pages.alloc_pages(n, PG.anon).tolist():
            assert pfn not in self.refs
            self.refs[pfn] = 1
            assert self.m.mem.read(pfn << 12, 16) == bytes(16), "allocated pages are zeroed"

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def get(self, data: st.DataObject) -> None:
        pfns = data.draw(st.lists(st.sampled_from(sorted(self.refs)), min_size=1, max_size=6))
        self.m.pages.get_page(np.array(pfns, dtype=np.uint64))
        for p in pfns:
            self.refs[p] += 1

    @precondition(lambda self: self.refs)
    @rule(data=st.data())
    def put(self, data: st.DataObject) -> None:
        pfns = data.draw(st.lists(st.sampled_from(sorted(self.refs)), min_size=1, max_size=6))
        counts = {p: pfns.count(p) for p in pfns}
        if any(self.refs[p] < c for p, c in counts.items()):
            before = self.m.pages.page_count(np.array(sorted(counts), dtype=np.uint64)).tolist()
            with pytest.raises(VMBug, match="below zero"):
                self.m.pages.put_page(np.array(pfns, dtype=np.uint64))
            assert self.m.pages.page_count(np.array(sorted(counts), dtype=np.uint64)).tolist() == before
            return
        self.m.pages.put_page(np.array(pfns, dtype=np.uint64))
        for p, c in counts.items():
            self.refs[p] -= c
            if self.refs[p] == 0:
                del self.refs[p]

    @precondition(lambda self: any(v > 1 for v in self.refs.values()))
    @rule(data=st.data())
    def free_with_references_is_a_bug(self, data: st.DataObject) -> None:
        pfn = data.draw(st.sampled_from(sorted(p for p, v in self.refs.items() if v > 1)))
        with pytest.raises(VMBug, match="other reference"):
            self.m.pages.free_pages(pfn)

    @invariant()
    def counts_agree(self) -> None:
        used = [p for p in range(self.m.frames.nr_frames) if p in self.refs]
        if used:
            got = self.m.pages.page_count(np.array(used, dtype=np.uint64)).tolist()
            assert got == [self.refs[p] for p in used]
        assert self.m.pages.nr_free == self.m.frames.nr_frames - len(self.refs)
        assert sum(self.m.pages.leaks().values()) == len(self.refs)


TestPageAlloc = PageAllocMachine.TestCase


def test_freeing_a_mapped_page_is_a_bug() -> None:
    m = toy("8M")
    (pfn,) = m.pages.alloc_pages(1).tolist()
    row, col = m.memmap.rows(np.array([pfn], dtype=np.uint64))
    m.memmap.mapcount[row, col] = 1
    with pytest.raises(VMBug, match="still mapped"):
        m.pages.free_pages(pfn)
    info = m.page(pfn)
    assert info is not None and info.refcount == 1 and info.mapcount == 1


def test_64gib_machine_is_sparse(case: Case) -> None:
    bits = case.mode.memory.max_physmem_bits
    m = case.machine(ram=min(64 * GiB, 1 << bits))
    pt = m.new_pagetable()
    pt.map(0x40 * m.page_size, 5)
    pages = m.pages.alloc_pages(1000)
    m.pages.free_pages(pages)
    acct = m.accounting()
    assert acct["memmap_bytes"] == (min(64 * GiB, 1 << bits) >> m.fmt.page_shift) * 64
    assert acct["host_stored_bytes"] < 64 * MiB, case.id
    assert acct["host_memmap_bytes"] < 64 * MiB, case.id
    assert set(m.pages.leaks()) == {"pagetable"}, f"{case.id}: only page tables are still held"
    pt.free()
    assert m.pages.leaks() == {}, case.id


def test_removing_a_region_keeps_shared_sections() -> None:
    """A device sharing a memory section with RAM must not take RAM's struct pages along."""
    m = toy("200M")
    m.add_region("small", 202 * MiB, 2 * MiB, memmap=True)
    (pfn,) = m.pages.alloc_pages(1).tolist()  # some RAM page, state must survive
    ram_pfn = (150 * MiB) >> 12
    assert m.page(ram_pfn) is not None
    m.remove_region("small")
    assert m.page(ram_pfn) is not None and m.page(pfn) is not None and m.page(pfn).refcount == 1  # type: ignore[union-attr]
    assert m.memmap_bytes() == 2 * (128 * MiB >> 12) * 64
