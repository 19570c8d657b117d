"""Cross-arch equivalence: one scenario, the same observable results on every arch.

The scenario is written once against public APIs; what a user can observe (bytes read,
RSS, refcount and mapcount of struct pages, which PTEs are special) depends only on the
kernel's rules and the profile's scheme, never on the PTE format. The expected values are
the kernel's answer, so a format bug in any arch shows up as a difference here.
"""

from __future__ import annotations

from typing import Any

import pytest

from mixedmap import EINVAL, DeviceFile, RangeDevice, XipFS
from mixedmap.conformance.cases import ArchCase
from mixedmap.mm import memory, zero
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED
from mixedmap.rules import FILEMAP_XIP, SMAPS_RSS_NORMAL_ONLY
from mixedmap.xip import filemap

GiB = 1 << 30


def run_scenario(case: ArchCase, memmap: bool) -> dict[str, Any]:
    """S1/S2 + S5 + S6 in one run: XIP private mapping, COW, fork, PFNMAP COW, teardown."""
    m = case.machine(ram="256M")
    ps = m.page_size
    start = 4 * GiB if m.mode.mode.memory.max_physmem_bits > 33 else GiB
    size = 64 << 20
    m.add_region("xip", start, size, memmap=memmap)
    fs = XipFS(RangeDevice(m, "xip", start, size, read_only=False, kaddr_base=start))
    image = bytes((i * 7) & 0xFF for i in range(4 * ps))
    fs.create("image", image, size=6 * ps)  # 4 pages of data, 2 of hole
    obs: dict[str, Any] = {}
    mm = m.new_mm()
    a = mm.mmap(6 * ps, "rw", MAP_PRIVATE, file=fs.open("image"))
    obs["read"] = mm.read(a + 3, 5) == image[3:8]
    first = mm.pt.lookup(a)
    assert first is not None
    obs["pte_special"] = bool(mm.pte_special_one(first.value))
    page = m.page(first.pfn)
    obs["xip_page"] = None if page is None else (page.refcount, page.mapcount)
    obs["rss_after_read"] = dict(mm.rss)
    mm.write(a + ps, b"cow")
    obs["rss_after_cow"] = dict(mm.rss)
    obs["hole"] = mm.read(a + 5 * ps, 3)
    child = mm.fork()
    obs["child_rss"] = dict(child.rss)
    obs["child_read"] = child.read(a + ps, 3)
    cow = mm.pt.lookup(a + ps)
    assert cow is not None
    cp = m.page(cow.pfn)
    obs["cow_page"] = None if cp is None else (cp.refcount, cp.mapcount)
    base = (start + size // 2) >> m.fmt.page_shift
    dev = DeviceFile("mem", on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, v.end - v.start))
    d = mm.mmap(4 * ps, "rw", MAP_PRIVATE, file=dev)
    mm.write(d + 2 * ps, b"x")
    obs["pfnmap_rss"] = dict(mm.rss)
    anon = mm.mmap(ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    mm.write(anon, b"a")
    obs["smaps_rss"] = [s["Rss"] // ps for s in mm.smaps()]
    obs["smaps_pss"] = [s["Pss"] * 2 // ps for s in mm.smaps()]
    shared = m.new_mm()
    s = shared.mmap(6 * ps, "rw", MAP_SHARED, file=fs.open("image", "rw"))
    shared.write(s + 5 * ps, b"now")
    obs["shared_write"] = fs.open("image").read(5 * ps, 3)
    obs["hole_after"] = mm.read(a + 5 * ps, 3)
    for x in (child, mm, shared):
        x.exit()
    filemap.release_sparse_page(m)
    zero.release_zero_page(m)  # 6.18: the hole was the zero page (dax_load_hole)
    obs["leaks"] = m.pages.leaks()
    obs["pagetable_bytes"] = m.pagetable_bytes()
    return obs


def expected_dax(case: ArchCase) -> dict[str, Any]:
    """6.18: the file is ext4 -o dax (mixedmap.xip.dax), whatever the scheme. A block is a
    refcounted ZONE_DEVICE folio (vmf_insert_page_mkwrite: normal PTE, file rmap, RSS), the
    hole the zero page (dax_load_hole: special, in no counter), a private write one
    do_cow_fault; the shared write allocates the hole and unmaps the zero page from every
    mapping, so the private one reads the new bytes. (The old 6.18 answers here were 2.6.27's
    filemap_xip rules on 6.18 encodings.)"""
    normal_only = SMAPS_RSS_NORMAL_ONLY.applies(case.machine(ram="64M").profile)
    return {
        "read": True,
        "pte_special": False,
        "xip_page": (2, 1),
        "rss_after_read": {"file": 1, "anon": 0},
        "rss_after_cow": {"file": 1, "anon": 1},
        "hole": bytes(3),
        "child_rss": {"file": 1, "anon": 1},
        "child_read": b"cow",
        "cow_page": (2, 2),
        "pfnmap_rss": {"file": 1, "anon": 2},
        # The zero page and the PFNMAP's special PTEs count in Rss only before smaps counted
        # normal pages alone; Pss (x2) is the DAX page and the COW copy, both shared with the child.
        "smaps_rss": [2, 1, 1] if normal_only else [3, 4, 1],
        "smaps_pss": [2, 2, 2],
        "shared_write": b"now",
        "hole_after": b"now",
        "leaks": {},
        "pagetable_bytes": 0,
    }


def expected(case: ArchCase, memmap: bool) -> dict[str, Any]:
    if not FILEMAP_XIP.applies(case.machine(ram="64M").profile):
        return expected_dax(case)
    scheme_a = case.mode.fmt.special_mask is not None
    refcounted = memmap and not scheme_a  # vm_insert_mixed -> insert_page only in scheme B
    # A refcounted XIP page (scheme B over struct pages) is a file page in RSS and smaps;
    # the sparse page of the hole is a normal file page in every scheme (2.6.26 maps it
    # from vmf->page, 2.6.27 with vm_insert_page), shared with the child after fork.
    file_rss = 1 if refcounted else 0
    return {
        "read": True,
        "pte_special": scheme_a,
        "xip_page": None if not memmap else ((2, 1) if refcounted else (1, 0)),
        "rss_after_read": {"file": file_rss, "anon": 0},
        "rss_after_cow": {"file": file_rss, "anon": 1},
        "hole": bytes(3),
        "child_rss": {"file": 1 + file_rss, "anon": 1},
        "child_read": b"cow",
        "cow_page": (2, 2),
        "pfnmap_rss": {"file": 1 + file_rss, "anon": 2},
        # Rss counts special PTEs too (2.6.27); Pss (x2, in pages) only normal pages,
        # each shared with the child here.
        "smaps_rss": [3, 4, 1],
        "smaps_pss": [2 + file_rss, 2, 2],
        "shared_write": b"now",
        "hole_after": b"now",
        "leaks": {},
        "pagetable_bytes": 0,
    }


class TestEquivalence:
    """The same scenario, the kernel's answer, on every arch and profile."""

    def test_scenario_without_struct_pages(self, arch_profile: ArchCase) -> None:
        if not FILEMAP_XIP.applies(arch_profile.machine(ram="64M").profile):
            # 6.18: fs-dax needs struct pages; ext4 -o dax on the device is -EINVAL.
            with pytest.raises(EINVAL, match="DAX unsupported by block device"):
                run_scenario(arch_profile, memmap=False)
            return
        got, want = run_scenario(arch_profile, memmap=False), expected(arch_profile, memmap=False)
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not diff, f"{arch_profile.id}: observed != kernel: {diff}"

    def test_scenario_with_struct_pages(self, arch_profile: ArchCase) -> None:
        got, want = run_scenario(arch_profile, memmap=True), expected(arch_profile, memmap=True)
        diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
        assert not diff, f"{arch_profile.id}: observed != kernel: {diff}"
