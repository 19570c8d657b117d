"""mm semantics on the arch: the kernel's rules must come out the same whatever the PTE format.

Each test drives public APIs (mmap, access, driver calls, fork, munmap) on one arch/profile
and checks the kernel's answer for that profile's scheme: with a special bit (scheme A) the
bit decides; without one (scheme B) pfn_valid and the linearity rule decide. Where the 6.18
kernel answers differently (:mod:`mixedmap.rules`: fork copying MIXEDMAP, vm_insert_page's
VM_MIXEDMAP, remap_pfn_range's flags, the ``vmf_insert_*`` family and the zero page) the
expectation follows the rule, so an arch with a 6.18 profile is checked against 6.18.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmap import EBUSY, EFAULT, DeviceFile, VMBug
from mixedmap.conformance.cases import ArchCase
from mixedmap.mm import memory, vmf, zero
from mixedmap.mm.gup import get_user_pages_fast
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, VM, VMA, FaultResult, VMFault
from mixedmap.rules import (
    FORK_COPIES_MIXEDMAP,
    REMAP_DONTEXPAND_DONTDUMP,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    VM_INSERT_PAGES,
    VM_INSERT_PFN_ERRNO,
    VMF_INSERT,
    VMF_INSERT_MIXED_MKWRITE,
    ZERO_PAGE,
    UnsupportedRule,
)

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
        if VM_INSERT_PFN_ERRNO.applies(m.profile):
            with pytest.raises(EBUSY):
                memory.vm_insert_mixed(vma, a, base + 1)
        else:  # 6.18 has vmf_insert_mixed only: a populated PTE is NOPAGE and left alone
            assert vmf.vmf_insert_mixed(vma, a, base + 1) == FaultResult.NOPAGE
        assert mm.pt.lookup(a).value == before
        mm.exit()
        if page is not None:
            assert m.page(base).refcount == 1 and m.page(base).mapcount == 0

    def test_vm_insert_pfn_bugs(self, arch_profile: ArchCase) -> None:
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        cow = DeviceFile("cow", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.PFNMAP))
        a = mm.mmap(m.page_size, "r", MAP_PRIVATE, file=cow)
        insert_pfn = memory.vm_insert_pfn if VM_INSERT_PFN_ERRNO.applies(m.profile) else vmf.vmf_insert_pfn
        with pytest.raises(VMBug, match="is_cow_mapping"):
            insert_pfn(mm.find_vma(a), a, base)
        ram_pfn = int(m.pages.alloc_pages(1)[0])
        mixed = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        b = mm.mmap(m.page_size, "r", MAP_SHARED, file=mixed)
        with pytest.raises(VMBug, match="pfn_valid"):
            insert_pfn(mm.find_vma(b), b, ram_pfn)
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

    # -- the rules 6.18 answers differently (each expectation follows mixedmap.rules) ----------
    def test_fork_copy_decision_for_a_mixedmap_vma(self, arch_profile: ArchCase) -> None:
        """S5: a private MIXEDMAP VMA that never COWed is copied from 3.7 (fork_copies_mixedmap),
        each special PTE only aged; 2.6.27 copies nothing and the child refaults."""
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        insert = memory.vm_insert_mixed if VM_INSERT_PFN_ERRNO.applies(m.profile) else vmf.vmf_insert_mixed

        def fault(vma: VMA, f: VMFault) -> FaultResult:
            insert(vma, f.address, base + f.pgoff)
            return FaultResult.NOPAGE

        dev = DeviceFile(
            "mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP), on_fault=fault
        )
        a = mm.mmap(2 * ps, "r", MAP_PRIVATE, file=dev)
        assert mm.read(a, 16) == b"device page zero"
        parent, vma = mm.pt.lookup(a), mm.find_vma(a)
        assert parent is not None and vma is not None and not vma.anon_vma
        child = mm.fork()
        got, now = child.pt.lookup(a), mm.pt.lookup(a)
        if FORK_COPIES_MIXEDMAP.applies(m.profile):
            assert got is not None and got.value == int(mm.ops.pte_mkold(parent.value)), arch_profile.id
            assert now is not None and now.value == parent.value, f"{arch_profile.id}: PTE rewritten"
        else:
            assert got is None, f"{arch_profile.id}: 2.6.27 copies no PTE of this VMA"
        assert child.rss == {"file": 0, "anon": 0}
        assert child.read(a, 16) == b"device page zero"
        for x in (child, mm):
            x.exit()
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0

    def test_vm_insert_page_and_remap_flags(self, arch_profile: ArchCase) -> None:
        """vm_insert_page sets VM_MIXEDMAP from 3.7 (VM_INSERTPAGE before) and then BUGs on a
        PFNMAP VMA; remap_pfn_range sets IO|PFNMAP|DONTEXPAND|DONTDUMP (IO|RESERVED|PFNMAP)."""
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        (ram,) = m.pages.alloc_pages(1).tolist()
        plain = DeviceFile("plain")
        a = mm.mmap(ps, "rw", MAP_SHARED, file=plain)
        vma = mm.find_vma(a)
        assert vma is not None
        memory.vm_insert_page(vma, a, ram)
        leaf = mm.pt.lookup(a)
        assert leaf is not None and not mm.pte_special_one(leaf.value) and m.page(ram).mapcount == 1
        modern = VM_INSERT_PAGE_SETS_MIXEDMAP.applies(m.profile)
        assert bool(vma.flags & VM.MIXEDMAP) == modern and bool(vma.flags & VM.INSERTPAGE) == (not modern)
        pfnmap = DeviceFile("pfn", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.PFNMAP))
        b = mm.mmap(ps, "rw", MAP_SHARED, file=pfnmap)
        bvma = mm.find_vma(b)
        assert bvma is not None
        if modern:
            with pytest.raises(VMBug, match="VM_PFNMAP"):
                memory.vm_insert_page(bvma, b, ram)
            assert mm.pt.lookup(b) is None and m.page(ram).mapcount == 1
        d = mm.mmap(2 * ps, "r", MAP_SHARED, file=plain)
        dvma = mm.find_vma(d)
        assert dvma is not None
        memory.remap_pfn_range(dvma, d, base, 2 * ps)
        if REMAP_DONTEXPAND_DONTDUMP.applies(m.profile):
            want, gone = VM.IO | VM.PFNMAP | VM.DONTEXPAND | VM.DONTDUMP, VM.RESERVED
        else:
            want, gone = VM.IO | VM.RESERVED | VM.PFNMAP, VM.DONTEXPAND | VM.DONTDUMP
        assert dvma.flags & want == want and not dvma.flags & gone, f"{arch_profile.id}: {dvma.describe()}"
        mm.exit()
        m.pages.free_pages(ram)
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0

    def test_vmf_insert_family(self, arch_profile: ArchCase) -> None:
        """The 4.17+ vmf_insert_* answers (S7, S13): NOPAGE over a populated PTE with nothing
        changed; mkwrite over the same pfn makes it young, dirty and writable; the zero pfn in a
        COW MIXEDMAP VMA is special and uncounted, and SIGBUS in a writable shared one. A 2008
        profile has none of them: UnsupportedRule before anything changes."""
        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        ops = mm.ops
        mixed = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        a = mm.mmap(2 * ps, "rw", MAP_SHARED, file=mixed)
        vma = mm.find_vma(a)
        assert vma is not None
        if not VMF_INSERT.applies(m.profile):
            for call in (vmf.vmf_insert_pfn, vmf.vmf_insert_mixed, vmf.vmf_insert_mixed_mkwrite):
                with pytest.raises(UnsupportedRule, match=str(m.profile)):
                    call(vma, a, base)
            with pytest.raises(UnsupportedRule, match=r"introduced in 5\.8"):
                vmf.vm_insert_pages(vma, a, [base])
            assert mm.pt.lookup(a) is None and vma.flags & VM.MIXEDMAP and not vma.flags & VM.INSERTPAGE
            mm.exit()
            return
        NOPAGE, SIGBUS = FaultResult.NOPAGE, FaultResult.SIGBUS
        ro = mm.vm_get_page_prot(VM.READ | VM.SHARED)
        assert vmf.vmf_insert_pfn_prot(vma, a, base, ro) == NOPAGE
        old = mm.pt.lookup(a)
        assert old is not None and old.pfn == base and not ops.pte_write(old.value)
        assert vmf.vmf_insert_mixed(vma, a, base + 1) == NOPAGE
        assert mm.pt.read_pte(old.entry_pa) == old.value, f"{arch_profile.id}: a populated PTE changed"
        if VMF_INSERT_MIXED_MKWRITE.applies(m.profile):
            assert vmf.vmf_insert_mixed_mkwrite(vma, a, base) == NOPAGE
            want = int(ops.pte_mkwrite(ops.pte_mkdirty(ops.pte_mkyoung(old.value))))
            got = mm.pt.read_pte(old.entry_pa)
            assert got == want, f"{arch_profile.id}: mkwrite upgrade {got:#x} != {want:#x}"
            assert mm.pte_special_one(got) == mm.has_special
        zpfn = zero.zero_pfn(m)
        assert vmf.vmf_insert_mixed(vma, a + ps, zpfn) == SIGBUS  # writable shared: refused
        assert mm.pt.lookup(a + ps) is None
        cow = mm.mmap(ps, "r", MAP_PRIVATE, file=mixed)
        cvma = mm.find_vma(cow)
        assert cvma is not None
        assert vmf.vmf_insert_mixed(cvma, cow, zpfn) == NOPAGE
        zleaf = mm.pt.lookup(cow)
        assert zleaf is not None and zleaf.pfn == zpfn
        assert mm.pte_special_one(zleaf.value) == mm.has_special, f"{arch_profile.id}: {zleaf.value:#x}"
        assert m.page(zpfn).refcount == 1 and m.page(zpfn).mapcount == 0 and mm.rss == {"file": 0, "anon": 0}
        assert mm.read(cow, 8) == bytes(8)
        if VM_INSERT_PAGES.applies(m.profile):
            pages = m.pages.alloc_pages(2)
            b = mm.mmap(2 * ps, "rw", MAP_SHARED, file=DeviceFile("plain"))
            bvma = mm.find_vma(b)
            assert bvma is not None
            assert vmf.vm_insert_pages(bvma, b, pages) == (0, 0) and bvma.flags & VM.MIXEDMAP
            assert all(m.page(int(p)).mapcount == 1 for p in pages) and mm.rss["file"] == 2
        else:
            pages = np.zeros(0, dtype=np.uint64)
        mm.exit()
        if pages.size:
            m.pages.free_pages(pages)
        zero.release_zero_page(m)
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0

    def test_anonymous_read_fault_and_the_zero_page(self, arch_profile: ArchCase) -> None:
        """mm/memory.c ``do_anonymous_page``: from 2.6.32 (:data:`~mixedmap.rules.ZERO_PAGE`) a read
        fault of private anonymous memory maps the shared zero pfn, special where the arch has the
        bit, not refcounted, not in RSS, and ``vm_normal_page`` NULL for it; the write fault on it
        (``wp_page_copy``) gives a fresh zeroed, refcounted anonymous page. Before, the read fault
        allocated that page at once. Either way nothing leaks at exit."""
        m = arch_profile.machine(ram="64M")
        mm = m.new_mm()
        ps = m.page_size
        a = mm.mmap(2 * ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        vma = mm.find_vma(a)
        assert vma is not None
        assert mm.read(a, 8) == bytes(8)
        slot = mm.pt.pte_slot(a, allocate=False)
        assert slot is not None, arch_profile.id
        pte = mm.pt.read_pte(slot)
        pfn = int(mm.ops.pte_pfn(pte))
        if ZERO_PAGE.applies(m.profile):
            assert pfn == zero.zero_pfn(m), f"{arch_profile.id}: read fault mapped {pfn:#x}, not the zero pfn"
            assert memory.vm_normal_page(vma, a, pte) is None, arch_profile.id
            assert bool(mm.pte_special_one(pte)) == (m.fmt.special_mask is not None), arch_profile.id
            assert not mm.ops.pte_write(pte), f"{arch_profile.id}: the zero page is mapped writable"
            zinfo = m.page(pfn)
            assert mm.rss["anon"] == 0 and zinfo is not None and zinfo.mapcount == 0, arch_profile.id
        else:
            first = m.page(pfn)
            assert memory.vm_normal_page(vma, a, pte) == pfn, arch_profile.id
            assert mm.rss["anon"] == 1 and first is not None and first.refcount == 1, arch_profile.id
        mm.write(a + 3, b"w")
        pte2 = mm.pt.read_pte(slot)
        new = int(mm.ops.pte_pfn(pte2))
        assert mm.ops.pte_write(pte2) and memory.vm_normal_page(vma, a, pte2) == new, arch_profile.id
        assert (new != pfn) == ZERO_PAGE.applies(m.profile), arch_profile.id
        assert mm.read(a, 5) == b"\0\0\0w\0" and mm.rss["anon"] == 1, arch_profile.id
        info = m.page(new)
        assert info is not None and (info.refcount, info.mapcount) == (1, 1), arch_profile.id
        mm.exit()
        zero.release_zero_page(m)
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0, arch_profile.id

    def test_gup_pins_and_ptes_without_pages_618(self, arch_profile: ArchCase) -> None:
        """mm/gup.c as a profile with FOLL_PIN (5.6 on, the 6.18 profile) runs it on the arch: a pin
        adds GUP_PIN_COUNTING_BIAS to a small page and unpin_user_pages restores it; a GUP with a
        pages array stops at a PTE without a struct page with -EEXIST (5.18), the lockless walk
        refusing it first where the arch has one; pins held at exit are named by pfn. On an older
        profile pin_user_pages is an UnsupportedRule that changes nothing."""
        from mixedmap.errors import EEXIST
        from mixedmap.mm import gup
        from mixedmap.rules import GUP_PAGES_EEXIST, PIN_USER_PAGES, UnsupportedRule

        m, base = _device(arch_profile, memmap=False)
        mm = m.new_mm()
        ps = m.page_size
        anon = mm.mmap(2 * ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        mm.write(anon, b"a")
        pfn = mm.pt.lookup(anon).pfn
        if not PIN_USER_PAGES.applies(m.profile):
            with pytest.raises(UnsupportedRule, match=str(m.profile)):
                gup.pin_user_pages(mm, anon, 1, write=True)
            assert m.page(pfn).refcount == 1, arch_profile.id
            mm.exit()
            assert m.pages.leaks() == {}
            return
        pinned = gup.pin_user_pages(mm, anon, 1, write=True)
        assert pinned.tolist() == [pfn] and m.page(pfn).refcount == 1 + gup.GUP_PIN_COUNTING_BIAS, (
            arch_profile.id
        )
        gup.unpin_user_pages(m, pinned)
        assert m.page(pfn).refcount == 1, arch_profile.id
        dev = DeviceFile("mixed", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        d = mm.mmap(ps, "r", MAP_SHARED, file=dev)
        vma = mm.find_vma(d)
        assert vma is not None
        memory.insert_pfn(vma, d, base, vma.page_prot)
        if GUP_PAGES_EEXIST.applies(m.profile):
            with pytest.raises(EEXIST) as info:
                gup.pin_user_pages_fast(mm, d, 1, write=False)
            if m.fmt.has_lockless_gup:
                assert info.value.fallback_reason == "special pte", f"{arch_profile.id}: {info.value}"
        kept = gup.pin_user_pages_fast(mm, anon, 2, write=True)
        mm.exit()
        at_exit = {p.pfn for p in mm.pins_at_exit}
        assert at_exit == set(kept.pfns.tolist()), f"{arch_profile.id}: {mm.pins_at_exit}"
        assert m.pages.leaks().get("pinned") == 2
        gup.unpin_user_pages(m, kept.pfns)
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0

    def test_fork_of_a_pinned_anonymous_page(self, arch_profile: ArchCase) -> None:
        """mm/memory.c ``copy_present_page`` from 5.9 (:data:`~mixedmap.rules.FORK_COPIES_PINNED`):
        fork gives the child its own copy of a pinned anonymous page and leaves the parent's PTE
        writable on the pinned page, whose refcount fork does not touch. Before the rule (and
        before FOLL_PIN) a page GUP holds is shared write-protected like any other."""
        from mixedmap.mm import gup
        from mixedmap.rules import FORK_COPIES_PINNED, PIN_USER_PAGES

        m = arch_profile.machine(ram="64M")
        mm = m.new_mm()
        ps = m.page_size
        a = mm.mmap(ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        mm.write(a, b"pinned")
        leaf = mm.pt.lookup(a)
        assert leaf is not None, arch_profile.id
        pfn = leaf.pfn

        def refcount(p: int) -> int:
            info = m.page(p)
            assert info is not None, f"{arch_profile.id}: pfn {p:#x} has no struct page"
            return info.refcount

        pin = PIN_USER_PAGES.applies(m.profile)
        held = gup.pin_user_pages(mm, a, 1, write=True) if pin else gup.get_user_pages(mm, a, 1, write=True)
        count = refcount(pfn)
        child = mm.fork()
        slot = mm.pt.pte_slot(a, allocate=False)
        assert slot is not None, arch_profile.id
        parent_pte, child_leaf = mm.pt.read_pte(slot), child.pt.lookup(a)
        assert child_leaf is not None and child.read(a, 6) == b"pinned", arch_profile.id
        if FORK_COPIES_PINNED.applies(m.profile):
            assert child_leaf.pfn != pfn and refcount(child_leaf.pfn) == 1, arch_profile.id
            assert mm.ops.pte_write(parent_pte) and refcount(pfn) == count, arch_profile.id
        else:
            assert child_leaf.pfn == pfn and not mm.ops.pte_write(parent_pte), arch_profile.id
            assert refcount(pfn) == count + 1, arch_profile.id
        if pin:
            gup.unpin_user_pages(m, held)
        else:
            m.pages.put_page(held)
        child.exit()
        mm.exit()
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0, arch_profile.id

    def test_fault_in_a_driver_mapping_without_fault(self, arch_profile: ArchCase) -> None:
        """A driver that fills its mapping at mmap time has no ``->fault``: 2.6.2x's
        ``handle_pte_fault`` puts an anonymous page there, from 4.2
        (:data:`~mixedmap.rules.FILE_FAULT_SIGBUS`) the fault is SIGBUS and nothing changes."""
        from mixedmap.errors import SIGBUS
        from mixedmap.rules import FILE_FAULT_SIGBUS

        m = arch_profile.machine(ram="64M")
        mm = m.new_mm()
        dev = DeviceFile("drv", on_mmap=lambda v: setattr(v, "flags", v.flags | VM.MIXEDMAP))
        d = mm.mmap(m.page_size, "rw", MAP_SHARED, file=dev)
        if FILE_FAULT_SIGBUS.applies(m.profile):
            with pytest.raises(SIGBUS):
                mm.read(d, 1)
            assert mm.rss == {"file": 0, "anon": 0} and mm.pt.lookup(d) is None, arch_profile.id
        else:
            assert mm.read(d, 4) == bytes(4) and mm.rss["anon"] == 1, arch_profile.id
        mm.exit()
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0, arch_profile.id

    def test_cow_and_fork_with_tables_high(self, arch_profile: ArchCase) -> None:
        """mm/memory.c ``do_wp_page`` and ``copy_page_range`` on a machine whose RAM, and so
        every page table and page, lies at the top of the physical address bits: fork shares
        and write-protects, each side's write COWs into its own page, and exit frees it all."""
        from mixedmap.conformance.test_pgtable import HIGH_RAM, high_bases

        bases = high_bases(arch_profile)
        if not bases:
            pytest.skip(f"{arch_profile.id}: physical addresses end at or below 4 GiB")
        where, base = bases[-1]
        m = arch_profile.machine(ram=HIGH_RAM, ram_base=base)
        ps = m.page_size
        parent = m.new_mm()
        a = parent.mmap(4 * ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
        for i in range(4):
            parent.write(a + i * ps, f"parent {i}".encode())
        child = parent.fork()
        shared = parent.pt.lookup(a)
        assert shared is not None and shared.pa >= base, f"{arch_profile.id}, RAM {where}: {shared}"
        info = m.page(shared.pfn)
        assert info is not None and (info.refcount, info.mapcount) == (2, 2), f"{arch_profile.id}: {info}"
        child.write(a, b"child!")
        parent.write(a + ps, b"PARENT")
        assert parent.read(a, 8) == b"parent 0" and child.read(a, 6) == b"child!", arch_profile.id
        assert child.read(a + ps, 8) == b"parent 1" and parent.read(a + ps, 6) == b"PARENT", arch_profile.id
        for mm_ in (parent, child):
            for i in range(4):
                leaf = mm_.pt.lookup(a + i * ps)
                assert leaf is not None and base <= leaf.pa < base + HIGH_RAM, f"{arch_profile.id}: {leaf}"
        c0, p0 = child.pt.lookup(a), parent.pt.lookup(a)
        assert c0 is not None and p0 is not None and c0.pfn != p0.pfn, arch_profile.id
        child.exit()
        parent.exit()
        zero.release_zero_page(m)
        assert m.pages.leaks() == {} and m.pagetable_bytes() == 0, arch_profile.id

    def test_pfn_valid_at_every_section_boundary(self, arch_profile: ArchCase) -> None:
        """``pfn_valid`` (include/linux/mmzone.h, SPARSEMEM: the pfn's section has a memmap)
        against the memory model the arch declares, on a machine with RAM ending mid-section,
        a device with a memmap sharing that section, holes, a device without a memmap, a
        device with a memmap in part of a section, and memory in the last section below
        MAX_PHYSMEM_BITS: at the first and last pfn of every section around each, on both
        sides of every boundary, and just past the end. An override right for RAM and wrong
        beside it shows here."""
        model = arch_profile.mode.memory
        if model.kind != "sparsemem":
            pytest.skip(f"{arch_profile.id}: the core models SPARSEMEM's pfn_valid only ({model.kind})")
        sec_bits, top_bits = model.section_size_bits, model.max_physmem_bits
        sec = 1 << sec_bits
        m = arch_profile.machine(ram=3 * sec + sec // 2)
        shift = m.fmt.page_shift
        last = (1 << (top_bits - sec_bits)) - 1
        regions = [
            ("shared", 3 * sec + sec // 2, sec // 4, True),
            ("nomap", 6 * sec, 2 * sec, False),
            ("partial", 9 * sec + sec // 2, sec // 2, True),
            ("top", last * sec, sec, True),
        ]
        for name, start, size, memmap in regions:
            m.add_region(name, start, size, memmap=memmap)
        with_memmap = {0, 1, 2, 3, 9, last}  # RAM (0-3, shared with 'shared'), 'partial', 'top'
        secs = sorted({*range(12), last - 1, last})
        probes = []
        for s in secs:
            first = (s << sec_bits) >> shift
            probes += [first, first + 1, ((s + 1) << sec_bits >> shift) - 1]
        probes.append((1 << top_bits) >> shift)  # the first pfn past MAX_PHYSMEM_BITS
        for _name, start, size, _memmap in regions:
            for b in (start, start + size):
                probes += [(b >> shift) - 1, b >> shift]
        pfns = np.array(sorted(set(probes)), dtype=np.uint64)
        want = np.array([(int(p) << shift >> sec_bits) in with_memmap for p in pfns], dtype=np.bool_)
        got = np.asarray(m.pfn_valid(pfns), dtype=np.bool_)
        bad = np.flatnonzero(got != want)
        if bad.size:
            p = int(pfns[bad[0]])
            where = next((n for n, st, sz, _ in regions if st <= p << shift < st + sz), "RAM or a hole")
            raise AssertionError(
                f"{arch_profile.id}: pfn_valid({p:#x}) = {bool(got[bad[0]])} in section {p << shift >> sec_bits} "
                f"({where}); the memory model says {bool(want[bad[0]])} "
                f"({bad.size} of {pfns.size} boundary pfns wrong)"
            )
