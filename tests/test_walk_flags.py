"""``PageTable.walk``'s flags: a table pointer's entry names no flag that lies inside its
next-table address (``mixedmap walk`` and the explorer print them)."""

from __future__ import annotations

import pytest

from mixedmap.pgtable import table_fields

from .conftest import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_table_entries_name_no_flag_inside_the_address(case: Case) -> None:
    m = case.machine(ram="64M")
    pt = m.new_pagetable()
    for va in (0x400000, 0x7F0000000000 & ((1 << (m.fmt.va_bits - 1)) - 1) or 0x800000):
        va -= va % m.page_size
        pt.map(va, pfn=0x1234, prot="rw")
        for step in pt.walk(va):
            lv = next(lv for lv in m.fmt.levels if lv.name == step.level)
            if step.kind == "table":
                addr = 0
                for f in lv.bits:
                    addr |= f.mask if f.kind == "field" else 0
                inside = {f.name for f in lv.bits if f.kind != "field" and f.mask & addr}
                assert not inside & set(step.flags), (case.id, step)
                assert set(step.flags) <= {f.name for f in table_fields(lv.bits)}


def test_x86_pmd_pointing_at_an_odd_table_is_not_pat() -> None:
    """x86: PAT_LARGE is bit 12 of a 2 MiB leaf; in a PMD pointing to a table whose address
    has bit 12 set it is part of the address."""
    x86 = [c for c in CASES if c.arch == "x86_64" and c.mode.default]
    if not x86:
        pytest.skip("needs the x86 plugin: pip install ./plugins/x86")
    m = x86[0].machine(ram="64M")
    pt = m.new_pagetable()
    va = 0
    for i in range(8):  # the PTE tables land on consecutive frames: some have bit 12 set
        va = 0x400000 + (i << 21)
        pt.map(va, pfn=0x1234 + i, prot="rw")
        pmd = next(s for s in pt.walk(va) if s.level == "pmd")
        if pmd.value & 0x1000:
            assert pmd.kind == "table" and "PAT_LARGE" not in pmd.flags, pmd
            return
    pytest.fail(f"no PTE table at an odd frame among 8 (last walk {pt.walk(va)})")
