"""Page tables in simulated physical memory: every arch must store and walk them right."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mixedmap import AddressError, Machine, PageTableError, UnsupportedOperation
from mixedmap.arch import PageTableFormat
from mixedmap.conformance.cases import SUITE_SETTINGS, ArchCase


def user_va_limit(fmt: PageTableFormat) -> int:
    """Exclusive upper bound of low (user-half) VAs the format translates."""
    return 1 << (fmt.va_bits - 1) if fmt.va_rule == "canonical" else 1 << fmt.va_bits


def snapshot(machine: Machine) -> tuple[tuple[tuple[int, bytes], ...], int, int]:
    blocks = tuple((addr, bytes(content)) for addr, content in machine.mem.blocks() if content.any())
    return blocks, machine.pagetable_bytes(), machine.frames.nr_free


def page_vas(fmt: PageTableFormat, data: st.DataObject, n: int) -> list[int]:
    limit = user_va_limit(fmt) >> fmt.page_shift
    return data.draw(st.lists(st.integers(0, limit - 1), min_size=1, max_size=n, unique=True), label="vpns")


def m_bits(case: ArchCase) -> int:
    return case.mode.memory.max_physmem_bits


HIGH_RAM = 64 << 20


def high_bases(case: ArchCase) -> list[tuple[str, int]]:
    """Where to put a small RAM so every table lies high: just above 4 GiB, and at the top of
    what both MAX_PHYSMEM_BITS and the PTE's address bits reach (sparse: costs nothing)."""
    top = 1 << min(m_bits(case), case.mode.fmt.pa_bits)
    out = []
    if top >= (4 << 30) + HIGH_RAM:
        out.append(("above 4 GiB", 4 << 30))
    if top - HIGH_RAM > 4 << 30:
        out.append((f"top of {top.bit_length() - 1} physical bits", top - HIGH_RAM))
    return out


class TestPageTables:
    """Page tables as bytes: round trips, batches, bad input, large leaves, images."""

    @SUITE_SETTINGS
    @given(data=st.data())
    def test_map_lookup_translate_roundtrip(self, arch_case: ArchCase, data: st.DataObject) -> None:
        m = arch_case.machine()
        pt = m.new_pagetable()
        fmt = m.fmt
        vpns = page_vas(fmt, data, 12)
        pfn_limit = min(fmt.max_pfn, 1 << 30)
        pfns = data.draw(
            st.lists(st.integers(0, pfn_limit - 1), min_size=len(vpns), max_size=len(vpns)), label="pfns"
        )
        for vpn, pfn in zip(vpns, pfns, strict=True):
            pt.map(vpn << fmt.page_shift, pfn, "rw")
        vas = np.array([(v << fmt.page_shift) + 0x18 for v in vpns], dtype=np.uint64)
        pas = pt.translate(vas)
        for va, pfn, pa in zip(vas.tolist(), pfns, pas.tolist(), strict=True):
            leaf = pt.lookup(va)
            assert leaf is not None, f"{arch_case.id}: {va:#x} not mapped"
            assert leaf.pfn == pfn, (
                f"{arch_case.id}: {va:#x} pte {leaf.value:#x} pfn {leaf.pfn:#x} != {pfn:#x}"
            )
            assert leaf.pa == (pfn << fmt.page_shift) + 0x18 == pa
            assert leaf.page_size == fmt.page_size
            raw = m.mem.read(leaf.entry_pa, fmt.entry_size)
            assert raw == leaf.value.to_bytes(fmt.entry_size, fmt.byteorder), (
                f"{arch_case.id}: bytes {raw.hex()}"
            )
        other = data.draw(st.integers(0, (user_va_limit(fmt) >> fmt.page_shift) - 1), label="other")
        if other not in vpns:
            assert pt.lookup(other << fmt.page_shift) is None
            assert pt.translate([other << fmt.page_shift])[0] == -1

    def test_map_range_equals_single_maps(self, arch_case: ArchCase) -> None:
        a, b = arch_case.machine(), arch_case.machine()
        pa, pb = a.new_pagetable(), b.new_pagetable()
        fmt = a.fmt
        n = 700
        va = (user_va_limit(fmt) >> 3) & ~((1 << fmt.levels[-2].shift) - 1)
        va -= 5 * fmt.page_size  # straddle a table boundary
        pfns = np.arange(1000, 1000 + n, dtype=np.uint64)
        vals = pa.map_range(va, pfns, "r")
        for k in range(n):
            assert pb.map(va + k * fmt.page_size, 1000 + k, "r") == int(vals[k])
        # Tables may sit in other frames (batch allocates level by level), but the same
        # tables exist and every leaf holds the same value.
        assert pa.nr_tables == pb.nr_tables and pa.bytes_used == pb.bytes_used
        for k in (0, 4, 5, n - 1):
            la, lb = pa.lookup(va + k * fmt.page_size), pb.lookup(va + k * fmt.page_size)
            assert la is not None and lb is not None and la.value == lb.value, arch_case.id
        got = pa.translate(np.uint64(va) + np.arange(n, dtype=np.uint64) * np.uint64(fmt.page_size))
        assert (got == (pfns.astype(np.int64) << fmt.page_shift)).all()

    def test_unmap_frees_tables_and_rejects_unmapped(self, arch_case: ArchCase) -> None:
        m = arch_case.machine()
        pt = m.new_pagetable()
        fmt = m.fmt
        before = snapshot(m)
        va = user_va_limit(fmt) >> 2
        pt.map_range(va, np.arange(40, dtype=np.uint64) + 7, "rw")
        assert m.pagetable_bytes() > before[1]
        pt.unmap(va, 40)
        assert pt.translate([va])[0] == -1
        assert snapshot(m) == before, f"{arch_case.id}: tables not freed back to the initial state"
        pt.map(va, 3)
        state = snapshot(m)
        with pytest.raises(PageTableError, match=f"{va + fmt.page_size:#x}"):
            pt.unmap(va, 2)
        assert snapshot(m) == state
        pt.free()
        assert m.pagetable_bytes() == 0

    def test_bad_input_changes_nothing(self, arch_case: ArchCase) -> None:
        m = arch_case.machine()
        pt = m.new_pagetable()
        fmt = m.fmt
        va = 0x40 * fmt.page_size
        pt.map(va, 5)
        state = snapshot(m)
        cases: list[tuple[type[Exception], Callable[[], object], str]] = [
            (AddressError, lambda: pt.map(va + 8, 6), "not aligned"),
            (AddressError, lambda: pt.map(va + fmt.page_size, fmt.max_pfn), "beyond"),
            (PageTableError, lambda: pt.map(va, 6), "already mapped"),
            (ValueError, lambda: pt.map(va + fmt.page_size, 6, "rwz"), "unknown prot"),
            (AddressError, lambda: pt.map(va + fmt.page_size, 6, page_size=3 * fmt.page_size), "page_size"),
            (AddressError, lambda: pt.map_range(va + fmt.page_size, [1, -2]), "non-negative"),
            (PageTableError, lambda: pt.map_range(va - 3 * fmt.page_size, [1, 2, 3, 4, 5]), "already mapped"),
        ]
        if fmt.va_rule == "canonical":
            cases.append((AddressError, lambda: pt.map(1 << (fmt.va_bits - 1), 6), "outside"))
        elif fmt.va_bits < 64:
            cases.append((AddressError, lambda: pt.map(1 << fmt.va_bits, 6), "outside"))
        cases.append((AddressError, lambda: pt.map(1 << 64, 6), "does not fit 64 bits"))
        for exc, call, text in cases:
            with pytest.raises(exc, match=text):
                call()
            assert snapshot(m) == state, f"{arch_case.id}: a rejected call ({text}) changed memory"

    def test_special_bit(self, arch_case: ArchCase) -> None:
        m = arch_case.machine()
        pt = m.new_pagetable()
        bm = m.mode
        if m.fmt.special_mask is None:
            with pytest.raises(UnsupportedOperation, match=m.fmt.profile):
                pt.map(0x10 * m.page_size, 9, "r", special=True)
            assert pt.lookup(0x10 * m.page_size) is None
            return
        v = pt.map(0x10 * m.page_size, 9, "r", special=True)
        plain = pt.map(0x11 * m.page_size, 9, "r")
        assert v == plain | m.fmt.special_mask, f"{arch_case.id}: special {v:#x} vs plain {plain:#x}"
        got = bm.pte_special(np.array([v, plain], dtype=np.uint64))
        assert got.tolist() == [True, False]
        leaf = pt.lookup(0x10 * m.page_size)
        assert leaf is not None and leaf.pfn == 9

    def test_large_leaves(self, arch_case: ArchCase) -> None:
        m = arch_case.machine(ram="4G")
        pt = m.new_pagetable()
        fmt = m.fmt
        for i, lv in enumerate(fmt.levels[:-1]):
            if not lv.leaf_ok:
                continue
            size = lv.page_size
            if size > 1 << 31:
                continue
            va = size * 3
            pfn = (size >> fmt.page_shift) * 2
            pt.map(va, pfn, "rw", page_size=size)
            leaf = pt.lookup(va + size - 8)
            assert leaf is not None and leaf.level == lv.name and leaf.page_size == size, arch_case.id
            assert leaf.pa == (pfn << fmt.page_shift) + size - 8
            assert pt.translate([va + 0x1238])[0] == (pfn << fmt.page_shift) + 0x1238
            with pytest.raises(PageTableError, match="large-page leaf"):
                pt.map(va + fmt.page_size, 1)
            with pytest.raises(AddressError, match="aligned"):
                pt.map(size * 5, pfn + 1, page_size=size)
            pt.unmap(va, page_size=size)
            assert pt.lookup(va) is None
            _ = i

    def test_translate_many_matches_lookup(self, arch_case: ArchCase) -> None:
        m = arch_case.machine()
        pt = m.new_pagetable()
        fmt = m.fmt
        rng = np.random.default_rng(7)
        limit = user_va_limit(fmt) >> fmt.page_shift
        vpns = np.unique(rng.integers(0, min(limit, 1 << 40), size=300, dtype=np.uint64))
        pfns = rng.integers(0, min(fmt.max_pfn, 1 << 32), size=vpns.size, dtype=np.uint64)
        for vpn, pfn in zip(vpns.tolist(), pfns.tolist(), strict=True):
            pt.map(vpn << fmt.page_shift, pfn)
        probe = np.concatenate([vpns, vpns + np.uint64(1)]) << np.uint64(fmt.page_shift)
        got = pt.translate(probe)
        for va, pa in zip(probe.tolist(), got.tolist(), strict=True):
            leaf = pt.lookup(va)
            assert (leaf.pa if leaf else -1) == pa, f"{arch_case.id}: {va:#x}"

    def test_tables_high_in_physical_memory(self, arch_case: ArchCase) -> None:
        """Every table and page above 4 GiB, then at the top of the physical address bits: an
        upper-level entry that keeps only 32 (or too few) address bits of the next table
        walks into nothing. Single maps across the VA space, a batch straddling a table
        boundary and large leaves; lookup, translate and the walk's table addresses agree."""
        bases = high_bases(arch_case)
        if not bases:
            pytest.skip(f"{arch_case.id}: physical addresses end at or below 4 GiB")
        for where, base in bases:
            m = arch_case.machine(ram=HIGH_RAM, ram_base=base)
            pt = m.new_pagetable()
            fmt = m.fmt
            rng = np.random.default_rng(11)
            limit = user_va_limit(fmt) >> fmt.page_shift
            vpns = np.unique(rng.integers(0, limit, size=40, dtype=np.uint64))
            top_pfn = (1 << min(m_bits(arch_case), fmt.pa_bits)) >> fmt.page_shift
            pfns = rng.integers(top_pfn // 2, top_pfn, size=vpns.size, dtype=np.uint64)
            for vpn, pfn in zip(vpns.tolist(), pfns.tolist(), strict=True):
                pt.map(vpn << fmt.page_shift, pfn, "rw")
            va0 = (user_va_limit(fmt) >> 2) & ~((1 << fmt.levels[-2].shift) - 1)
            va0 -= 3 * fmt.page_size
            run = np.arange(top_pfn - 600, top_pfn - 300, dtype=np.uint64)
            pt.map_range(va0, run, "r")
            vas = np.concatenate(
                [
                    vpns << np.uint64(fmt.page_shift),
                    np.uint64(va0) + np.arange(run.size, dtype=np.uint64) * np.uint64(fmt.page_size),
                ]
            )
            want = np.concatenate([pfns, run]) << np.uint64(fmt.page_shift)
            got = pt.translate(vas + np.uint64(0x28))
            bad = np.flatnonzero(got != (want + np.uint64(0x28)).astype(got.dtype))
            assert not bad.size, (
                f"{arch_case.id}, RAM {where} at {base:#x}: {vas[bad[0]]:#x} translated to "
                f"{int(got[bad[0]]):#x}, not {int(want[bad[0]]) + 0x28:#x}; walk: {pt.walk(int(vas[bad[0]]))}"
            )
            for va in vas[:: max(1, vas.size // 50)].tolist():
                leaf = pt.lookup(va)
                assert leaf is not None, f"{arch_case.id}, RAM {where}: {va:#x} not mapped"
                for step in pt.walk(va):
                    assert base <= step.table_pa < base + HIGH_RAM, (
                        f"{arch_case.id}, RAM {where}: {va:#x} walks through {step.level} table at "
                        f"{step.table_pa:#x}, outside RAM [{base:#x}, {base + HIGH_RAM:#x})"
                    )
                raw = m.mem.read(leaf.entry_pa, fmt.entry_size)
                assert raw == leaf.value.to_bytes(fmt.entry_size, fmt.byteorder), arch_case.id
            for lv in fmt.levels[:-1]:
                if lv.leaf_ok and lv.page_size <= 1 << 31:
                    va = lv.page_size * 5
                    pfn = (top_pfn - 2 * (lv.page_size >> fmt.page_shift)) & ~(
                        (lv.page_size >> fmt.page_shift) - 1
                    )
                    pt.map(va, pfn, "rw", page_size=lv.page_size)
                    assert pt.translate([va + 0x1238])[0] == (pfn << fmt.page_shift) + 0x1238, (
                        f"{arch_case.id}, RAM {where}: {lv.name} leaf"
                    )
            for vpn in vpns.tolist():
                pt.unmap(vpn << fmt.page_shift)
            pt.unmap(va0, run.size)

    def test_sparse_physical_memory(self, arch_case: ArchCase) -> None:
        m = arch_case.machine(ram=1 << min(36, m_bits(arch_case)))
        pt = m.new_pagetable()
        pt.map(0x1000 * m.page_size, 12)
        assert m.mem.stored_bytes < 1 << 20, f"{arch_case.id}: stored {m.mem.stored_bytes} bytes"

    def test_dump_physmem_is_flat(self, arch_case: ArchCase, tmp_path) -> None:  # type: ignore[no-untyped-def]
        m = arch_case.machine(ram="64M")
        pt = m.new_pagetable()
        pt.map(0x20 * m.page_size, 0x33, "rw")
        leaf = pt.lookup(0x20 * m.page_size)
        assert leaf is not None
        path = tmp_path / "phys.raw"
        size = m.dump_physmem(path)
        assert size == 64 << 20 == path.stat().st_size
        with open(path, "rb") as fh:
            fh.seek(leaf.entry_pa)
            assert fh.read(m.fmt.entry_size) == leaf.value.to_bytes(m.fmt.entry_size, m.fmt.byteorder)

    def test_nothing_lands_in_boot_reservations(self, arch_case: ArchCase) -> None:
        """No page table and no allocated page ever lies in memory the kernel reserved at boot
        (the lowcore, the BIOS pages, the vectors, the firmware): tables spread over the whole
        address space of several mms, then every free frame, and the reserved bytes stay zero."""
        m = arch_case.machine(ram="64M")
        fmt, shift = m.fmt, m.fmt.page_shift
        reserved = [(r.start, r.end, str(r)) for r in m.reserved]

        def clear(lo: int, size: int, what: str) -> None:
            for start, end, name in reserved:
                assert lo + size <= start or lo >= end, (
                    f"{arch_case.id}: {what} [{lo:#x}, +{size:#x}) lies in {name}"
                )

        limit = user_va_limit(fmt)
        step = max(fmt.page_size, (limit // 61) & ~(fmt.page_size - 1))
        tables: set[tuple[int, int]] = set()
        for n in range(4):
            pt = m.new_pagetable()
            clear(pt.root_pa, fmt.levels[0].alloc_bytes, f"root table of pagetable {n} (root {pt.root:#x})")
            for k in range(48):
                va = (k * step + n * fmt.page_size) % limit & ~(fmt.page_size - 1)
                pt.map(va, 0x100 + k, "rw")
                for i, st_ in enumerate(pt.walk(va)):
                    tables.add((st_.table_pa, fmt.levels[i].alloc_bytes))
        assert len(tables) > 48, f"{arch_case.id}: only {len(tables)} tables"
        for pa, size in sorted(tables):
            clear(pa, size, "page table")
        first = m.pages.alloc_contig(4, 4)
        clear(first << shift, 4 << shift, "alloc_contig(4, 4)")
        pfns = m.pages.alloc_pages(m.pages.nr_free)  # every frame left
        hit = np.zeros(pfns.size, dtype=np.bool_)
        for start, end, _ in reserved:
            hit |= (pfns >= start >> shift) & (pfns < end >> shift)
        assert not hit.any(), f"{arch_case.id}: page {int(pfns[hit][0]):#x} allocated from a boot reservation"
        assert m.pages.nr_free == 0
        for start, end, name in reserved:
            assert not any(m.mem.read(start, end - start)), f"{arch_case.id}: bytes written into {name}"
