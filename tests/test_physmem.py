"""Sparse physical memory, the frame allocator and the page-table allocator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mixedmap import AddressError, OutOfMemory, VMBug
from mixedmap.arch import Level, MemoryModel
from mixedmap.pgtable_alloc import TableAllocator
from mixedmap.phys.alloc import FrameAllocator
from mixedmap.phys.mem import PhysMem
from mixedmap.phys.memmap import MemMap
from mixedmap.phys.page_alloc import PageAllocator

addresses = st.integers(0, (1 << 52) - 1)


@given(writes=st.lists(st.tuples(addresses, st.binary(min_size=1, max_size=9000)), max_size=8))
def test_bytes_read_back_like_a_dict_of_bytes(writes: list[tuple[int, bytes]]) -> None:
    mem, model = PhysMem(), {}
    for pa, data in writes:
        mem.write(pa, data)
        for k, b in enumerate(data):
            model[pa + k] = b
    for pa, data in writes:
        got = mem.read(pa, len(data))
        assert got == bytes(model.get(pa + k, 0) for k in range(len(data)))
    assert mem.read(1 << 60, 16) == bytes(16)


@given(
    pas=st.lists(st.integers(0, (1 << 49) - 1).map(lambda x: x & ~7), min_size=1, max_size=50, unique=True),
    order=st.sampled_from(["little", "big"]),
    data=st.data(),
)
def test_u64_scalar_and_batch_agree(pas: list[int], order: str, data: st.DataObject) -> None:
    vals = data.draw(st.lists(st.integers(0, (1 << 64) - 1), min_size=len(pas), max_size=len(pas)))
    mem = PhysMem()
    mem.scatter_u64(np.array(pas, dtype=np.uint64), np.array(vals, dtype=np.uint64), order)
    got = mem.gather_u64(np.array(pas, dtype=np.uint64), order)
    assert got.tolist() == vals
    for pa, v in zip(pas, vals, strict=True):
        assert mem.read_u64(pa, order) == v
        assert mem.read(pa, 8) == v.to_bytes(8, order)  # type: ignore[arg-type]


def test_unwritten_memory_is_zero_and_costs_nothing() -> None:
    mem = PhysMem()
    got = mem.gather_u64(np.array([0, 8, 1 << 40, (1 << 52) - 8], dtype=np.uint64), "big")
    assert got.tolist() == [0, 0, 0, 0]
    assert mem.stored_bytes == 0
    mem.fill_u64(0x10000, 512, 0, "little")
    assert mem.stored_bytes == 0
    mem.write_u64(1 << 45, 0xDEADBEEF, "little")
    assert mem.stored_bytes == 4096


def test_dump_and_load_roundtrip(tmp_path: Path) -> None:
    mem = PhysMem()
    mem.write(0x3000, b"page three")
    mem.write_u64(0x7FF8, 0x1122334455667788, "big")
    path = tmp_path / "img.raw"
    assert mem.dump(path, size=1 << 20) == 1 << 20
    assert path.stat().st_size == 1 << 20
    again = PhysMem()
    again.load(path)
    assert again.read(0x3000, 10) == b"page three"
    assert again.read_u64(0x7FF8, "big") == 0x1122334455667788
    assert again.stored_bytes == 2 * 4096


class AllocatorMachine(RuleBasedStateMachine):
    """Random alloc/free sequences: never a frame twice, counts always balance."""

    def __init__(self) -> None:
        super().__init__()
        self.alloc = FrameAllocator(100, 400)
        self.held: set[int] = set()

    @rule(n=st.integers(1, 40))
    def allocate(self, n: int) -> None:
        if n > self.alloc.nr_free:
            with pytest.raises(OutOfMemory):
                self.alloc.alloc(n)
            return
        got = self.alloc.alloc(n).tolist()
        assert len(set(got)) == n and not set(got) & self.held
        assert all(100 <= p < 400 for p in got)
        self.held |= set(got)

    @rule(n=st.integers(1, 8), align=st.sampled_from([1, 2, 4, 16]))
    def allocate_contig(self, n: int, align: int) -> None:
        try:
            first = self.alloc.alloc_contig(n, align)
        except OutOfMemory:
            return
        got = set(range(first, first + n))
        assert first % align == 0 and not got & self.held
        self.held |= got

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def free_some(self, data: st.DataObject) -> None:
        pick = data.draw(st.lists(st.sampled_from(sorted(self.held)), min_size=1, max_size=10, unique=True))
        self.alloc.free(np.array(pick, dtype=np.uint64))
        self.held -= set(pick)

    @precondition(lambda self: len(self.held) < 300)
    @rule(data=st.data())
    def double_free_is_a_bug(self, data: st.DataObject) -> None:
        free = sorted(set(range(100, 400)) - self.held)
        pfn = data.draw(st.sampled_from(free))
        with pytest.raises(VMBug, match="double free"):
            self.alloc.free(pfn)

    @invariant()
    def counts_balance(self) -> None:
        assert self.alloc.nr_free == 300 - len(self.held)


TestAllocator = AllocatorMachine.TestCase


def test_allocator_bad_input() -> None:
    a = FrameAllocator(0, 8)
    with pytest.raises(AddressError, match="outside RAM"):
        a.free(9)
    with pytest.raises(OutOfMemory, match="need 9 frames"):
        a.alloc(9)
    with pytest.raises(VMBug, match="twice"):
        a.free(np.array([1, 1], dtype=np.uint64))
    assert a.nr_free == 8


def test_fragments_share_pages_like_the_kernel() -> None:
    frames, mem = FrameAllocator(0, 64), PhysMem()
    memmap = MemMap(MemoryModel(section_size_bits=27, max_physmem_bits=40), 12)
    memmap.add_sections(0, 64)
    pages = PageAllocator(frames, memmap, mem, 12)
    ta = TableAllocator(pages, mem, 12)
    small = Level(
        name="pte",
        hw_name="page table",
        shift=12,
        index_bits=8,
        table_bytes=2048,
        alloc_bytes=2048,
        align=2048,
    )
    big = Level(
        name="pmd",
        hw_name="segment table",
        shift=20,
        index_bits=11,
        table_bytes=16384,
        alloc_bytes=16384,
        align=16384,
    )
    a = ta.alloc(small, 0x400, 8, "big")
    b = ta.alloc(small, 0x400, 8, "big")
    assert a >> 12 == b >> 12 and a != b and ta.bytes_held == 4096
    assert mem.read_u64(a + 2040, "big") == 0x400 and mem.read_u64(b, "big") == 0x400
    c = ta.alloc(big, 0x20, 8, "big")
    assert c % 16384 == 0 and ta.bytes_held == 4096 + 16384
    assert pages.page_count(np.array([a >> 12, c >> 12], dtype=np.uint64)).tolist() == [1, 1]
    assert pages.leaks() == {"pagetable": 5}
    ta.free(small, a)
    assert ta.bytes_held == 4096 + 16384
    ta.free(small, b)
    ta.free(big, c)
    assert ta.bytes_held == 0 and frames.nr_free == 64


def test_ram_base_puts_every_frame_high_and_is_checked() -> None:
    """``Machine(ram_base=...)``: RAM, frames and page tables above the base; a base that is
    not page aligned, or RAM past what MAX_PHYSMEM_BITS and the PTE's address bits reach, is
    an AddressError naming it."""
    from mixedmap import Machine
    from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE

    base = 5 << 30
    m = Machine("x86_64", "2.6.27", ram="16M", ram_base=base)
    assert (m.ram_base, m.ram_end) == (base, base + (16 << 20))
    mm = m.new_mm()
    a = mm.mmap(m.page_size, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    mm.write(a, b"high")
    leaf = mm.pt.lookup(a)
    assert leaf is not None and base <= leaf.pa < m.ram_end and base <= leaf.entry_pa < m.ram_end
    assert m.pfn_valid(base >> 12)[0] and not m.pfn_valid(0)[0]
    with pytest.raises(AddressError, match="ram_base=0x1001"):
        Machine("x86_64", "2.6.27", ram="16M", ram_base=0x1001)
    with pytest.raises(AddressError, match="MAX_PHYSMEM_BITS"):
        Machine("x86_64", "2.6.27", ram="16M", ram_base=(1 << 46) - (8 << 20))


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=70_000),
    taken=st.lists(st.integers(min_value=0, max_value=69_999), max_size=300),
    runs=st.lists(st.tuples(st.integers(0, 69_999), st.integers(1, 5000)), max_size=4),
    cursor=st.integers(min_value=0, max_value=69_999),
    steps=st.integers(min_value=1, max_value=30),
)
def test_one_frame_alloc_is_the_lowest_free_from_the_cursor(
    n: int, taken: list[int], runs: list[tuple[int, int]], cursor: int, steps: int
) -> None:
    """FrameAllocator.alloc(1) has its own path (the cursor frame, then growing windows): it
    hands out what the batch scan does, the lowest free frame at or after the cursor, else
    the lowest from the start, and moves the cursor past it."""
    from mixedmap.phys.alloc import FrameAllocator

    a = FrameAllocator(100, 100 + n)
    used = np.zeros(n, dtype=bool)
    for t in taken:
        used[t % n] = True
    for lo, size in runs:  # long used runs, so the windows must grow
        used[lo % n : lo % n + size] = True
    if used.all():
        used[n // 2] = False
    a._used[:] = used
    a._nr_used = int(used.sum())
    a._cursor = cursor % n
    for _ in range(min(steps, a.nr_free)):
        free = np.flatnonzero(~a._used)
        after = free[free >= a._cursor]
        want = int(after[0] if after.size else free[0])
        assert a.alloc(1).tolist() == [want + 100]
        assert a._used[want] and a._cursor == (want + 1) % n
    assert a.nr_free == n - int(a._used.sum())
