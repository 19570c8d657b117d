"""mm semantics on the arch: the 2008 rules must come out the same whatever the PTE format.

Each test drives public APIs (mmap, access, driver calls, fork, munmap) on one arch/profile
and checks the kernel's answer for that profile's scheme: with a special bit (scheme A) the
bit decides; without one (scheme B) pfn_valid and the linearity rule decide.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmap import EBUSY, EFAULT, DeviceFile, VMBug
from mixedmap.conformance.cases import ArchCase
from mixedmap.mm import memory
from mixedmap.mm.gup import get_user_pages_fast
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, VM

GiB = 1 << 30


def _device(arch_case: ArchCase, memmap: bool):  # type: ignore[no-untyped-def]
    m = arch_case.machine(ram="256M")
    start = 4 * GiB if m.mode.mode.memory.max_physmem_bits > 33 else GiB
    m.add_region("dev", start, 16 << 20, memmap=memmap)
    m.mem.write(start, b"device page zero")
    return m, start >> m.fmt.page_shift


class TestMmSemantics:
    """vm_normal_page, insert results, COW from special PTEs, fork, zap, gup-fast."""

    @pytest.mark.parametrize("memmap", [False, True], ids=["no-struct-page", "struct-page"])
    def test_vm_insert_mixed_agrees_with_vm_normal_page(self, arch_profile: ArchCase, memmap: bool) -> None:
        m, base = _device(arch_profile, memmap)
        mm = m.new_mm()
        dev = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        a = mm.mmap(4 * m.page_size, "r", MAP_SHARED, file=dev)
        vma = mm.find_vma(a)
        assert vma is not None
        memory.vm_insert_mixed(vma, a, base)
        leaf = mm.pt.lookup(a)
        assert leaf is not None and leaf.pfn == base
        normal = memory.vm_normal_page(vma, a, leaf.value)
        refcounted = memmap and not mm.has_special  # scheme B with a struct page
        assert (normal is not None) == refcounted, f"{arch_profile.id}: pte {leaf.value:#x}"
        page = m.page(base)
        assert (page is None) == (not memmap)
        if page is not None:
            assert page.mapcount == (1 if refcounted else 0) and page.refcount == (2 if refcounted else 1)
        assert mm.rss == {"file": 1 if refcounted else 0, "anon": 0}
        assert mm.read(a, 16) == b"device page zero"
        before = leaf.value
        with pytest.raises(EBUSY):
            memory.vm_insert_mixed(vma, a, base + 1)
        assert mm.pt.lookup(a).value == before
        mm.exit()
        if page is not None:
            assert m.page(base).refcount == 1 and m.page(base).mapcount == 0

    def test_vm_insert_pfn_bugs(self, arch_profile: ArchCase) -> None:
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        cow = DeviceFile("cow", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.PFNMAP))
        a = mm.mmap(m.page_size, "r", MAP_PRIVATE, file=cow)
        with pytest.raises(VMBug, match="is_cow_mapping"):
            memory.vm_insert_pfn(mm.find_vma(a), a, base)
        ram_pfn = int(m.pages.alloc_pages(1)[0])
        mixed = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        b = mm.mmap(m.page_size, "r", MAP_SHARED, file=mixed)
        with pytest.raises(VMBug, match="pfn_valid"):
            memory.vm_insert_pfn(mm.find_vma(b), b, ram_pfn)
        assert mm.pt.lookup(a) is None and mm.pt.lookup(b) is None
        mm.exit()
        m.pages.free_pages(ram_pfn)
        assert m.pages.leaks() == {}

    def test_private_remap_cow_through_user_address(self, arch_profile: ArchCase) -> None:
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        dev = DeviceFile("mem", on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, v.end - v.start))
        a = mm.mmap(4 * ps, "rw", MAP_PRIVATE, file=dev)
        vma = mm.find_vma(a)
        assert vma is not None and vma.pgoff == base and vma.flags & VM.PFNMAP and vma.flags & VM.IO
        assert mm.read(a, 16) == b"device page zero"
        assert mm.rss == {"file": 0, "anon": 0}
        mm.write(a + 3, b"!")
        assert mm.read(a, 16) == b"dev!ce page zero"
        assert m.mem.read(base * ps, 16) == b"device page zero", "a private write reached the device"
        assert mm.rss == {"file": 0, "anon": 1}
        leaf = mm.pt.lookup(a)
        assert leaf is not None and leaf.pfn != base
        assert memory.vm_normal_page(vma, a, leaf.value) == leaf.pfn
        child = mm.fork()
        assert child.rss == {"file": 0, "anon": 1} and m.page(leaf.pfn).mapcount == 2
        assert child.read(a, 16) == b"dev!ce page zero"
        for x in (child, mm):
            x.exit()
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0

    def test_gup_fast_falls_back_on_special(self, arch_profile: ArchCase) -> None:
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        anon = mm.mmap(2 * ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        mm.write(anon, b"a")
        mm.write(anon + ps, b"b")
        got = get_user_pages_fast(mm, anon, 2, write=True)
        if m.fmt.has_lockless_gup:  # x86/powerpc from 2.6.27, s390 later, as declared
            assert (got.fast, got.slow) == (2, 0), arch_profile.id
        else:
            assert (got.fast, got.slow) == (0, 2) and "no lockless walk" in got.fallback_reason
        m.pages.put_page(got.pfns)
        dev = DeviceFile("io", on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, v.end - v.start))
        d = mm.mmap(ps, "r", MAP_SHARED, file=dev)
        with pytest.raises(EFAULT, match=r"VM_IO|special"):
            get_user_pages_fast(mm, d, 1, write=False)
        mm.exit()
        assert m.pages.leaks() == {}

    def test_fork_write_protects_and_zap_is_inert_for_special(self, arch_profile: ArchCase) -> None:
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        a = mm.mmap(ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        mm.write(a, b"x")
        child = mm.fork()
        for x in (mm, child):
            leaf = x.pt.lookup(a)
            assert leaf is not None and not x.ops.pte_write(leaf.value), f"{arch_profile.id}: {leaf.value:#x}"
        pfn = mm.pt.lookup(a).pfn
        assert m.page(pfn).mapcount == 2 and m.page(pfn).refcount == 2
        child.write(a, b"y")
        assert mm.read(a, 1) == b"x" and child.read(a, 1) == b"y"
        assert m.page(pfn).mapcount == 1
        child.exit()
        dev = DeviceFile("io", on_mmap=lambda v: memory.remap_pfn_range(v, v.start, base, v.end - v.start))
        d = mm.mmap(8 * ps, "r", MAP_SHARED, file=dev)
        rss = dict(mm.rss)
        mm.munmap(d + 2 * ps, 2 * ps)
        assert mm.rss == rss and mm.find_vma(d + 2 * ps) is None and mm.find_vma(d + 5 * ps) is not None
        mm.exit()
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0
        assert np.all(~m.pfn_valid(np.arange(base, base + 8, dtype=np.uint64)))
