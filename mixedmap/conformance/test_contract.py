"""Contract: what every arch plugin must declare correctly before anything else is tested.

These run first; when one fails for an arch, the rest of that arch's tests are skipped with
a pointer here (array-api-tests #51: no cascade of noise from one broken declaration).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mixedmap import API_VERSION, ENTRY_NONE, PG, Support
from mixedmap.conformance.cases import ArchCase
from mixedmap.profiles import PROFILES


class TestContract:
    """ArchSpec validity, capabilities against hooks, geometry, byte order, PFN round trips."""

    def test_spec_identity(self, arch_case: ArchCase) -> None:
        b = arch_case.registry.bind(arch_case.arch)
        spec = b.spec
        assert spec.api_version == API_VERSION, f"{arch_case.id}: api_version {spec.api_version}"
        assert spec.name == arch_case.arch and set(spec.profiles) <= set(PROFILES)
        for p in spec.profiles:
            defaults = [m for m in spec.modes if m.profile == p and m.default]
            assert len(defaults) == 1, f"{arch_case.id}: profile {p} has {len(defaults)} default modes"

    def test_capabilities_match_hooks(self, arch_case: ArchCase) -> None:
        b = arch_case.registry.bind(arch_case.arch)
        hooks = set(b.implemented)
        has = {"mixedmap_pte_special", "mixedmap_pte_mkspecial"} <= hooks
        claims = b.spec.caps.pte_special is Support.YES
        assert has == claims, (
            f"{arch_case.id}: caps.pte_special={b.spec.caps.pte_special.value}, hooks {sorted(hooks)}"
        )
        if arch_case.mode.fmt.special_mask is not None:
            assert has, f"{arch_case.id}: special_mask set but the hooks are missing"

    def test_level_geometry(self, arch_case: ArchCase) -> None:
        fmt = arch_case.mode.fmt
        shift = fmt.page_shift
        for lv in reversed(fmt.levels):
            assert lv.shift == shift, f"{arch_case.id}: level {lv.name} shift {lv.shift}, expected {shift}"
            assert lv.entries * fmt.entry_size <= lv.table_bytes <= lv.alloc_bytes
            shift += lv.index_bits
        assert shift == fmt.va_bits, f"{arch_case.id}: levels cover {shift} bits, va_bits {fmt.va_bits}"
        assert fmt.entry_size in (4, 8) and fmt.byteorder in ("little", "big")

    def test_pfn_roundtrip_and_field(self, arch_case: ArchCase) -> None:
        ops, fmt = arch_case.mode.ops, arch_case.mode.fmt
        top = min(fmt.max_pfn, 1 << 50)
        pfns = np.array([0, 1, 0x12345, top // 3, top - 1], dtype=np.uint64)
        for idx, prot in enumerate(fmt.protection_map):
            ptes = np.asarray(ops.pfn_pte(pfns, prot), dtype=np.uint64)
            got = np.asarray(ops.pte_pfn(ptes), dtype=np.uint64)
            assert (got == pfns).all(), f"{arch_case.id}: prot[{idx}]={prot:#x}: pte_pfn(pfn_pte(p)) != p"
        fields = [f for f in fmt.pte_bits if f.kind == "field" and f.mask == fmt.pfn_mask]
        assert fields, f"{arch_case.id}: pte_bits has no field with the pfn mask {fmt.pfn_mask:#x}"

    def test_special_bit_outside_pfn_and_declared(self, arch_case: ArchCase) -> None:
        fmt = arch_case.mode.fmt
        if fmt.special_mask is None:
            pytest.skip(f"{arch_case.id}: no special bit under {fmt.profile}")
        assert fmt.special_mask & fmt.pfn_mask == 0
        assert bin(fmt.special_mask).count("1") == 1, f"{arch_case.id}: special mask {fmt.special_mask:#x}"
        named = {f.mask for f in fmt.pte_bits}
        assert fmt.special_mask in named, f"{arch_case.id}: special bit {fmt.special_mask:#x} not in pte_bits"

    def test_entries_stored_in_declared_byte_order(self, arch_case: ArchCase) -> None:
        m = arch_case.machine(ram="64M")
        pt = m.new_pagetable()
        pt.map(0x40 * m.page_size, 0x1234, "rw")
        leaf = pt.lookup(0x40 * m.page_size)
        assert leaf is not None and leaf.pfn == 0x1234, arch_case.id
        raw = m.mem.read(leaf.entry_pa, m.fmt.entry_size)
        assert raw == leaf.value.to_bytes(m.fmt.entry_size, m.fmt.byteorder), (
            f"{arch_case.id}: stored {raw.hex()} for {leaf.value:#x} ({m.fmt.byteorder})"
        )

    def test_one_byte_order_across_modes(self, arch_case: ArchCase) -> None:
        """The CPU walks an arch's tables in one byte order, whatever the mode or profile.

        The model stores and reads entries in the declared order, so a wrong declaration is
        self-consistent and only shows against the arch's other modes. An arch whose modes
        really differ says so with a ``byteorder`` option equal to the format's.
        """
        spec = arch_case.registry.bind(arch_case.arch).spec
        mine = arch_case.mode.fmt.byteorder
        chosen = dict(arch_case.mode.options).get("byteorder")
        if chosen is not None:
            assert chosen == mine, f"{arch_case.id}: option byteorder={chosen!r}, format {mine!r}"
            return
        others = {
            f"{m.name}/{m.profile}": m.fmt.byteorder
            for m in spec.modes
            if "byteorder" not in dict(m.options) and m.fmt.byteorder != mine
        }
        assert not others, f"{arch_case.id}: entries {mine}-endian, other modes of the arch: {others}"

    def test_empty_entries(self, arch_case: ArchCase) -> None:
        ops, fmt = arch_case.mode.ops, arch_case.mode.fmt
        last = len(fmt.levels) - 1
        assert ops.pte_none(ops.empty_entry(last)) and not ops.pte_present(ops.empty_entry(last)), (
            arch_case.id
        )
        for i in range(last):
            assert ops.entry_kind(i, ops.empty_entry(i)) == ENTRY_NONE, f"{arch_case.id}: level {i}"

    def test_root_register_roundtrip(self, arch_case: ArchCase) -> None:
        m = arch_case.machine(ram="64M")
        pt = m.new_pagetable()
        assert m.mode.mode.ops.root_table_pa(pt.root) == pt.root_pa, f"{arch_case.id}: root {pt.root:#x}"

    def test_boot_reservations(self, arch_case: ArchCase) -> None:
        """Declared boot reservations are page-aligned, disjoint, inside the physical address
        bits and inside a default machine's RAM, where they are taken before anything else:
        never free, each frame's struct page refcount 1 and PG_reserved, as ``memblock_reserve``
        leaves it (mm/mm_init.c ``reserve_bootmem_region``; 2.6.27 ``free_all_bootmem``)."""
        fmt, model = arch_case.mode.fmt, arch_case.mode.memory
        limit = 1 << min(fmt.pa_bits, model.max_physmem_bits)
        spans = sorted((r.anchor, r.start, r.end, str(r)) for r in model.reserved)
        for _anchor, start, end, what in spans:
            assert start % fmt.page_size == 0 == end % fmt.page_size, (
                f"{arch_case.id}: {what} not page-aligned"
            )
            assert 0 <= start < end <= limit, f"{arch_case.id}: {what} beyond {limit:#x}"
        for a, b in itertools.pairwise(spans):
            assert a[0] != b[0] or a[2] <= b[1], f"{arch_case.id}: {a[3]} overlaps {b[3]}"
        m = arch_case.machine(ram="64M")
        assert len(m.reserved) == len(model.reserved), (
            f"{arch_case.id}: declared {[str(r) for r in model.reserved]}, "
            f"a 64 MiB machine at 0 holds {[str(r) for r in m.reserved]}"
        )
        shift = fmt.page_shift
        for r in m.reserved:
            assert m.ram_base <= r.start < r.end <= m.ram_end, f"{arch_case.id}: {r} outside RAM"
            pfns = np.arange(r.start >> shift, r.end >> shift, dtype=np.uint64)
            assert m.frames.is_used(pfns).all() and m.frames.is_reserved(pfns).all(), f"{arch_case.id}: {r}"
            for pfn in (int(pfns[0]), int(pfns[-1])):
                info = m.page(pfn)
                assert info is not None and (info.refcount, info.flags) == (1, PG.reserved), (
                    f"{arch_case.id}: {r}: pfn {pfn:#x} struct page {info}"
                )
        held = sum(r.size >> shift for r in m.reserved)
        assert m.frames.nr_free == m.frames.nr_frames - held, f"{arch_case.id}: {held} frames reserved"
        assert m.pages.leaks() == {}, f"{arch_case.id}: boot reservations count as leaks"
