"""mm/filemap_xip.c through mappings: xip_file_mmap, xip_file_fault, __xip_unmap.

Rules: kernel-mm-semantics.md 8.3 (VM_MIXEDMAP | VM_CAN_NONLINEAR; SIGBUS beyond EOF;
data -> vm_insert_mixed; a hole in a (WRITE|MAYWRITE) and (SHARED|MAYSHARE) VMA of a
writable filesystem is allocated even on a read fault, then ``__xip_unmap``; otherwise the
sparse page: 2.6.26 in ``vmf->page``, 2.6.27 with ``vm_insert_page`` and NOPAGE), 8.4
(``__xip_unmap`` leaves private COW copies alone), 8.5 (COW of private XIP mappings) and
invariant 30. Data integrity is checked with real bytes: what a mapping reads is what the
device holds, private writes never reach the device, shared writes always do.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mixedmap import EIO, VM, VMBug
from mixedmap.errors import SIGBUS, OOMError
from mixedmap.mm.vma import MAP_POPULATE, MAP_PRIVATE, MAP_SHARED, FaultResult, VMFault
from mixedmap.xip import filemap
from mixedmap.xip.fs import XipFile
from tests.conftest import Case
from tests.xip import (
    XIP_CASES,
    Rig,
    block_pfn,
    case_ids,
    check_invariants,
    counts,
    kinds_of,
    make_rig,
    no_pte_maps,
    pattern,
    pte,
    run_labelled,
    teardown,
)

CASES = pytest.mark.parametrize("case", XIP_CASES, ids=case_ids(XIP_CASES))
xip_unmap = getattr(filemap, "__xip_unmap")


def each_device(case: Case, body: Callable[[Rig], None], read_only: bool = False) -> None:
    for kind in kinds_of(case):
        rig = make_rig(case, kind, read_only=read_only)

        def run(rig: Rig = rig) -> None:
            body(rig)
            check_invariants(rig.m)
            teardown(rig)

        run_labelled(rig.label(), run)


def holey(rig: Rig, npages: int = 4, holes: tuple[int, ...] = (1, 3), seed: int = 1) -> bytes:
    """Create file "f" of ``npages`` pages with ``holes``; returns its contents."""
    ps = rig.ps
    data = bytearray(pattern(npages * ps, seed))
    for h in holes:
        data[h * ps : (h + 1) * ps] = bytes(ps)
    rig.fs.create("f", data=bytes(data), holes=list(holes))
    return bytes(data)


def has_sparse(rig: Rig) -> bool:
    """Whether some RAM page that is neither a page table nor a device page is allocated:
    on these rigs only the sparse page (or an anonymous page, flagged anon) can be."""
    return "other" in rig.m.pages.leaks()


# -- xip_file_mmap ----------------------------------------------------------------------------------
@CASES
def test_mmap_flags(case: Case) -> None:
    rig = make_rig(case, "nopage")
    ps = rig.ps
    holey(rig)
    mm = rig.m.new_mm()
    fr, frw = rig.fs.open("f", "r"), rig.fs.open("f", "rw")
    pmap = rig.m.fmt.protection_map
    base = VM.MIXEDMAP | VM.CAN_NONLINEAR | VM.MAYREAD | VM.MAYEXEC
    expect = {
        ("rw", MAP_PRIVATE, fr): base | VM.READ | VM.WRITE | VM.MAYWRITE,
        ("rx", MAP_PRIVATE, fr): base | VM.READ | VM.EXEC | VM.MAYWRITE,
        ("rw", MAP_SHARED, frw): base | VM.READ | VM.WRITE | VM.MAYWRITE | VM.SHARED | VM.MAYSHARE,
        ("r", MAP_SHARED, frw): base | VM.READ | VM.MAYWRITE | VM.SHARED | VM.MAYSHARE,
        ("r", MAP_SHARED, fr): base | VM.READ | VM.MAYSHARE,  # read-only file: no SHARED/MAYWRITE
    }
    for (prot, flags, f), want in expect.items():
        va = mm.mmap(4 * ps, prot, flags, file=f)
        vma = mm.find_vma(va)
        assert vma is not None
        assert vma.flags == want, (prot, flags, f, vma.describe())
        assert not vma.flags & (VM.PFNMAP | VM.IO | VM.RESERVED | VM.INSERTPAGE)
        assert vma.vm_ops is not None and vma.file is f
        assert vma.page_prot == pmap[int(want) & 0xF]
        assert vma.is_cow == (flags == MAP_PRIVATE)
        assert "mm" in mm.smaps()[-1]["VmFlags"].split()
        assert mm.rss == {"file": 0, "anon": 0} and pte(mm, va) is None  # nothing faulted yet
    teardown(rig)


# -- faults ---------------------------------------------------------------------------------------
@CASES
def test_fault_beyond_eof_sigbus(case: Case) -> None:
    rig = make_rig(case, "nopage")
    ps = rig.ps
    data = pattern(2 * ps + 10, 2)
    inode = rig.fs.create("f", data=data)  # 3 pages, the last one partial
    mm = rig.m.new_mm()
    for flags, mode in ((MAP_PRIVATE, "r"), (MAP_SHARED, "rw")):
        va = mm.mmap(5 * ps, "rw", flags, file=rig.fs.open("f", mode))
        # the partial page maps the whole block: the bytes beyond EOF are the device's zeroes
        assert mm.read(va, 3 * ps) == data + bytes(ps - 10)
        for p in (3, 4):
            with pytest.raises(SIGBUS):
                mm.access(va + p * ps)
            with pytest.raises(SIGBUS):
                mm.access(va + p * ps, write=True)
            assert pte(mm, va + p * ps) is None
        # an offset mapping: page 0 of the VMA is file page 2, page 1 is beyond EOF
        vb = mm.mmap(2 * ps, "r", flags, file=rig.fs.open("f", mode), pgoff=2)
        assert mm.read(vb, 10) == data[2 * ps :]
        with pytest.raises(SIGBUS):
            mm.access(vb + ps)
    assert inode.size == 2 * ps + 10 and rig.fs.free_bytes == rig.dev.size - 3 * ps  # nothing allocated
    check_invariants(rig.m)
    teardown(rig)


@CASES
def test_private_read_of_data(case: Case) -> None:
    """vm_insert_mixed: special (no counters) with the bit or without struct pages; a
    refcounted page (file_rss, mapcount, refcount +1) in scheme B with struct pages. brd
    under 2.6.27 has struct pages and still gets special PTEs."""

    def body(rig: Rig) -> None:
        ps, m = rig.ps, rig.m
        content = holey(rig, holes=(1,))
        inode = rig.fs.files["f"]
        mm = m.new_mm()
        va = mm.mmap(4 * ps, "rx", MAP_PRIVATE, file=rig.fs.open("f"))
        pfn = block_pfn(inode, 2)
        before = counts(m, pfn) if rig.dev.has_struct_page else None
        acc = mm.access(va + 2 * ps, exec=True)
        assert (acc.fault, acc.pfn) == ("fault", pfn)
        v = pte(mm, va + 2 * ps)
        assert v is not None and v.pfn == pfn and not v.write
        assert v.special == rig.has_special
        if rig.data_normal:
            assert v.normal == pfn and mm.rss == {"file": 1, "anon": 0}
            assert before is not None and counts(m, pfn) == (before[0] + 1, before[1] + 1)
        else:
            assert v.normal is None and mm.rss == {"file": 0, "anon": 0}
            if before is not None:
                assert counts(m, pfn) == before
        assert mm.read(va, 4 * ps) == content
        assert mm.read(va + 2 * ps, ps) == rig.dev.read(inode.block(2) * ps, ps)
        assert mm.access(va + 2 * ps).fault == "none"  # mapped now: no second fault
        if rig.kind == "brd" and case.mode.profile == "2.6.27":
            assert rig.dev.has_struct_page and v.special and v.normal is None

    each_device(case, body)


@CASES
def test_sparse_page_for_private_and_readonly_shared(case: Case) -> None:
    """A hole read through a private mapping, or a shared one of a read-only open file,
    maps the one zeroed sparse page: 2.6.26 through vmf->page, 2.6.27 with vm_insert_page
    (VM_INSERTPAGE). Either way a normal page: file_rss +1, mapcount +1, one reference."""
    rig = make_rig(case, "nopage")
    ps, m = rig.ps, rig.m
    content = holey(rig, holes=(1, 3))
    free0 = rig.fs.free_bytes
    mm1, mm2 = m.new_mm(), m.new_mm()
    va1 = mm1.mmap(4 * ps, "rw", MAP_PRIVATE, file=rig.fs.open("f"))
    va2 = mm2.mmap(4 * ps, "r", MAP_SHARED, file=rig.fs.open("f", "r"))
    assert not has_sparse(rig)  # allocated on first use
    z = mm1.access(va1 + ps).pfn
    assert has_sparse(rig) and m.mem.read(z * ps, ps) == bytes(ps)
    assert counts(m, z) == (2, 1)
    assert mm2.access(va2 + ps).pfn == z  # the same page for every hole of every file
    assert mm1.access(va1 + 3 * ps).pfn == z
    assert mm2.access(va2 + 3 * ps).pfn == z
    assert counts(m, z) == (5, 4)
    for mm, va in ((mm1, va1), (mm2, va2)):
        assert mm.rss == {"file": 2, "anon": 0}
        for p in (1, 3):
            v = pte(mm, va + p * ps)
            assert v is not None and v.normal == z and not v.special and not v.write
        vma = mm.find_vma(va)
        assert vma is not None
        assert bool(vma.flags & VM.INSERTPAGE) == (case.mode.profile == "2.6.27")
        assert mm.read(va, 4 * ps) == content
    assert rig.fs.free_bytes == free0  # nothing allocated: not writable-shared
    check_invariants(m)
    mm2.exit()
    assert counts(m, z) == (3, 2)
    mm1.munmap(va1, 4 * ps)
    assert counts(m, z) == (1, 0)
    assert filemap.release_sparse_page(m)
    teardown(rig)


@CASES
def test_private_write_to_hole(case: Case) -> None:
    """8.5 hole: a private write copies zeroes. 2.6.26: the first access being a write COWs
    early in __do_fault (one fault, the sparse page never mapped); 2.6.27: two faults, the
    sparse page is mapped read-only in between (VM_INSERTPAGE), then do_wp_page copies."""
    rig = make_rig(case, "nopage")
    ps, m = rig.ps, rig.m
    holey(rig, holes=(1,))
    inode = rig.fs.files["f"]
    mm = m.new_mm()
    va = mm.mmap(4 * ps, "rw", MAP_PRIVATE, file=rig.fs.open("f"))
    acc = mm.access(va + ps, write=True)
    vma = mm.find_vma(va)
    assert vma is not None and vma.anon_vma
    z = filemap.xip_sparse_page(m)  # exists in both: 2.6.26 allocated it for vmf->page
    if case.mode.profile == "2.6.26":
        assert acc.fault == "fault" and not vma.flags & VM.INSERTPAGE
    else:
        assert acc.fault == "fault+wp" and vma.flags & VM.INSERTPAGE
    assert counts(m, z) == (1, 0)  # not mapped (any more), no reference left behind
    v = pte(mm, va + ps)
    assert v is not None and v.pfn != z and v.write and v.normal == v.pfn
    assert mm.rss == {"file": 0, "anon": 1} and counts(m, v.pfn) == (1, 1)
    mm.write(va + ps + 7, b"private")
    assert mm.read(va + ps, 16) == bytes(7) + b"private" + bytes(2)
    assert inode.block(1) == -1  # the hole stays a hole
    assert rig.fs.open("f").read(ps, ps) == bytes(ps)
    check_invariants(m)
    teardown(rig)


@CASES
def test_shared_writable_fault_allocates(case: Case) -> None:
    """A hole in a VMA with (WRITE|MAYWRITE) and (SHARED|MAYSHARE) is allocated on any
    fault, a read fault too, and even with PROT_READ (VM_MAYWRITE from the rw open)."""

    def body(rig: Rig) -> None:
        ps, m = rig.ps, rig.m
        content = holey(rig, npages=4, holes=(0, 1, 2))
        inode = rig.fs.files["f"]
        free0 = rig.fs.free_bytes
        mm = m.new_mm()
        f = rig.fs.open("f", "rw")
        va = mm.mmap(4 * ps, "rw", MAP_SHARED, file=f)
        vr = mm.mmap(4 * ps, "r", MAP_SHARED, file=f)
        # read fault, PROT_READ|PROT_WRITE
        assert mm.read(va, ps) == bytes(ps)
        assert inode.block(0) >= 0 and rig.fs.free_bytes == free0 - ps
        # read fault, PROT_READ only
        assert mm.read(vr + ps, ps) == bytes(ps)
        assert inode.block(1) >= 0 and rig.fs.free_bytes == free0 - 2 * ps
        # write fault
        mm.write(va + 2 * ps + 5, b"shared")
        assert inode.block(2) >= 0 and rig.fs.free_bytes == free0 - 3 * ps
        for p, vbase in ((0, va), (1, vr), (2, va)):
            v = pte(mm, vbase + p * ps)
            assert v is not None and v.pfn == block_pfn(inode, p)
            assert v.special == rig.has_special and (v.normal is not None) == rig.data_normal
        assert not has_sparse(rig)  # the sparse page was never needed
        # the write went to the device, and every mapping and read() sees it
        assert rig.dev.read(inode.block(2) * ps + 5, 6) == b"shared"
        assert f.read(2 * ps, 11) == bytes(5) + b"shared"
        assert mm.read(vr + 2 * ps, 11) == bytes(5) + b"shared"
        assert mm.read(va + 3 * ps, ps) == content[3 * ps :]
        normal = sum(
            1 for vb in (va, vr) for p in range(4) if (x := pte(mm, vb + p * ps)) and x.normal is not None
        )
        assert mm.rss == {"file": normal, "anon": 0}
        assert (normal > 0) == rig.data_normal

    each_device(case, body)


@CASES
@pytest.mark.parametrize("trigger", ["shared_fault", "file_write"])
def test_xip_unmap_sparse_page(case: Case, trigger: str) -> None:
    """__xip_unmap: when a hole gets a block (shared-writable fault or write()), every PTE
    of every mm mapping the sparse page at that offset goes (file_rss -1, mapcount -1,
    refcount -1; invariant 30); private COW copies stay with their bytes; the next read
    maps the new block."""
    rig = make_rig(case, "nopage")
    ps, m = rig.ps, rig.m
    holey(rig, npages=4, holes=(1, 2))
    inode = rig.fs.files["f"]
    fr = rig.fs.open("f", "r")
    reader, cow, shro = m.new_mm(), m.new_mm(), m.new_mm()
    va_r = reader.mmap(4 * ps, "r", MAP_PRIVATE, file=fr)
    vb_r = reader.mmap(2 * ps, "r", MAP_PRIVATE, file=fr, pgoff=1)  # page 1 again, at vb_r
    va_c = cow.mmap(4 * ps, "rw", MAP_PRIVATE, file=fr)
    va_s = shro.mmap(4 * ps, "r", MAP_SHARED, file=fr)
    z = reader.access(va_r + ps).pfn
    assert reader.access(vb_r).pfn == z and reader.access(va_r + 2 * ps).pfn == z
    cow.write(va_c + ps, b"C" * 8)
    cow_pfn = cow.access(va_c + ps).pfn
    assert shro.access(va_s + ps).pfn == z
    assert counts(m, z) == (5, 4)
    assert reader.rss == {"file": 3, "anon": 0} and shro.rss == {"file": 1, "anon": 0}
    assert cow.rss == {"file": 0, "anon": 1}

    writer = m.new_mm()
    frw = rig.fs.open("f", "rw")
    va_w = writer.mmap(4 * ps, "rw", MAP_SHARED, file=frw)
    if trigger == "shared_fault":
        assert writer.read(va_w + ps, ps) == bytes(ps)  # a read fault allocates
        writer.write(va_w + ps, b"W" * 4)
    else:
        assert frw.write(ps, b"W" * 4) == 4
    new = block_pfn(inode, 1)
    assert no_pte_maps(m, inode, 1, z)  # invariant 30
    assert pte(reader, va_r + ps) is None and pte(reader, vb_r) is None and pte(shro, va_s + ps) is None
    assert pte(reader, va_r + 2 * ps) is not None  # another offset keeps the sparse page
    assert reader.rss == {"file": 1, "anon": 0} and shro.rss == {"file": 0, "anon": 0}
    assert counts(m, z) == (2, 1)
    # the COW copy survives with its bytes
    c = pte(cow, va_c + ps)
    assert c is not None and c.pfn == cow_pfn and cow.read(va_c + ps, 10) == b"C" * 8 + bytes(2)
    assert cow.rss == {"file": 0, "anon": 1}
    # the next reads map the real block and see the written bytes
    assert reader.read(va_r + ps, 6) == b"W" * 4 + bytes(2)
    assert reader.access(vb_r).pfn == new and shro.access(va_s + ps).pfn == new
    assert shro.read(va_s + ps, 4) == b"W" * 4
    assert rig.dev.read(inode.block(1) * ps, 4) == b"W" * 4
    check_invariants(m)
    # nothing maps the sparse page at offset 1 any more: a second unmap finds nothing
    assert xip_unmap(inode, 1) == 0
    teardown(rig)


@CASES
def test_xip_unmap_bugs_on_a_dirty_sparse_pte(case: Case) -> None:
    """Invariant 30, second half: the PTEs __xip_unmap removes were never dirty; a dirty
    one is BUG_ON(pte_dirty(pteval)). (s390 PTEs have no dirty bit: pte_dirty is always 0.)"""
    rig = make_rig(case, "nopage")
    ps, m = rig.ps, rig.m
    holey(rig, holes=(1,))
    inode = rig.fs.files["f"]
    mm = m.new_mm()
    va = mm.mmap(4 * ps, "r", MAP_PRIVATE, file=rig.fs.open("f"))
    z = mm.access(va + ps).pfn
    slot = mm.pt.pte_slot(va + ps, allocate=False)
    assert slot is not None
    clean = mm.pt.read_pte(slot)
    assert not mm.ops.pte_dirty(clean)
    dirty = int(mm.ops.pte_mkdirty(clean))
    if mm.ops.pte_dirty(dirty):
        mm.pt.write_pte(slot, dirty)
        with pytest.raises(VMBug, match="pte_dirty"):
            xip_unmap(inode, 1)
        mm.pt.write_pte(slot, clean)
    else:
        assert case.arch == "s390x"
    assert counts(m, z) == (2, 1)
    assert xip_unmap(inode, 1) == 1 and no_pte_maps(m, inode, 1, z)
    assert counts(m, z) == (1, 0) and mm.rss == {"file": 0, "anon": 0}
    teardown(rig)


def test_xip_unmap_without_sparse_page() -> None:
    rig = make_rig(XIP_CASES[0], "nopage")
    holey(rig)
    inode = rig.fs.files["f"]
    assert xip_unmap(inode, 1) == 0  # no sparse page yet: nothing to do
    teardown(rig)


@CASES
def test_read_only_fs_never_allocates_on_faults(case: Case) -> None:
    """MS_RDONLY: even a VMA with VM_SHARED|VM_WRITE (a file opened before a read-only
    remount) gets the sparse page for a hole; nothing is allocated, the device unchanged."""

    def body(rig: Rig) -> None:
        ps, m = rig.ps, rig.m
        content = holey(rig, npages=4, holes=(1, 3))
        inode = rig.fs.files["f"]
        snap, free0 = rig.dev.read(0, rig.dev.size), rig.fs.free_bytes
        mm = m.new_mm()
        rw = XipFile(inode, readable=True, writable=True)
        va = mm.mmap(4 * ps, "rw", MAP_SHARED, file=rw)
        vma = mm.find_vma(va)
        assert vma is not None and vma.flags & VM.SHARED and vma.flags & VM.WRITE
        assert mm.read(va, 4 * ps) == content
        z = mm.access(va + ps).pfn
        assert z not in (block_pfn(inode, 0), block_pfn(inode, 2)) and inode.block(1) == -1
        vr = mm.mmap(4 * ps, "r", MAP_SHARED, file=rig.fs.open("f", "r"))
        assert mm.access(vr + 3 * ps).pfn == z
        vp = mm.mmap(4 * ps, "rw", MAP_PRIVATE, file=rig.fs.open("f", "r"))
        mm.write(vp, b"private")  # a COW copy, never the device
        mm.write(vp + ps, b"private")
        assert mm.read(vp, 7) == b"private"
        assert rig.fs.free_bytes == free0 and inode.block(1) == inode.block(3) == -1
        assert rig.dev.read(0, rig.dev.size) == snap
        assert rig.fs.open("f").read(0, 4 * ps) == content

    each_device(case, body, read_only=True)


@CASES
def test_private_writes_stay_private_shared_writes_reach_device(case: Case) -> None:
    def body(rig: Rig) -> None:
        ps, m = rig.ps, rig.m
        content = holey(rig, npages=4, holes=(1,))
        inode = rig.fs.files["f"]
        mm = m.new_mm()
        vp = mm.mmap(4 * ps, "rw", MAP_PRIVATE, file=rig.fs.open("f"))
        vq = mm.mmap(4 * ps, "r", MAP_PRIVATE, file=rig.fs.open("f"))  # never written
        blob = pattern(4 * ps, 99)
        mm.write(vp, blob)  # every page COWs, the hole too
        assert mm.read(vp, 4 * ps) == blob
        assert mm.rss["anon"] == 4
        assert rig.fs.open("f").read(0, 4 * ps) == content and inode.block(1) == -1
        assert mm.read(vq, 4 * ps) == content
        for p in (0, 2, 3):
            assert rig.dev.read(inode.block(p) * ps, ps) == content[p * ps : (p + 1) * ps]

        vs = mm.mmap(4 * ps, "rw", MAP_SHARED, file=rig.fs.open("f", "rw"))
        blob2 = pattern(4 * ps, 100)
        mm.write(vs, blob2)
        assert inode.block(1) >= 0  # the hole got a block
        for p in range(4):
            assert rig.dev.read(inode.block(p) * ps, ps) == blob2[p * ps : (p + 1) * ps]
            assert pte(mm, vs + p * ps).pfn == block_pfn(inode, p)  # type: ignore[union-attr]
        assert rig.fs.open("f").read(0, 4 * ps) == blob2
        assert mm.read(vq, 4 * ps) == blob2  # an un-COWed private mapping sees the file
        assert mm.read(vp, 4 * ps) == blob  # the COW copies do not

    each_device(case, body)


# -- corner cases of the fault handler ------------------------------------------------------------
@CASES
def test_refault_of_a_mapped_page(case: Case) -> None:
    """A second ->fault for a populated PTE (what a racing thread does): 2.6.27 ignores
    vm_insert_page's -EBUSY on the sparse path (NOPAGE, nothing changes); the data path
    BUG_ONs on vm_insert_mixed's -EBUSY (accepted only from 2.6.28)."""
    rig = make_rig(case, "nopage")
    ps, m = rig.ps, rig.m
    holey(rig, holes=(1,))
    mm = m.new_mm()
    va = mm.mmap(4 * ps, "r", MAP_PRIVATE, file=rig.fs.open("f"))
    vma = mm.find_vma(va)
    assert vma is not None
    mm.access(va)
    with pytest.raises(VMBug):
        filemap.xip_file_fault(vma, VMFault(address=va, pgoff=0, write=False))
    z = mm.access(va + ps).pfn
    if case.mode.profile == "2.6.27":
        before = (counts(m, z), mm.rss, pte(mm, va + ps))
        ret = filemap.xip_file_fault(vma, VMFault(address=va + ps, pgoff=1, write=False))
        assert ret == FaultResult.NOPAGE
        assert (counts(m, z), mm.rss, pte(mm, va + ps)) == before
    check_invariants(m)
    teardown(rig)


@CASES
def test_fault_errors(case: Case) -> None:
    """get_xip_mem failing with anything but -ENODATA is VM_FAULT_OOM (sic); a failed
    allocation for a shared-writable hole is VM_FAULT_SIGBUS."""
    rig = make_rig(case, "nopage", size=4 * case.mode.fmt.page_size)
    ps, m = rig.ps, rig.m
    nblocks = rig.dev.size // ps
    rig.fs.create("f", data=pattern(nblocks * ps, 3), size=(nblocks + 1) * ps)  # full, one hole
    mm = m.new_mm()
    vs = mm.mmap((nblocks + 1) * ps, "rw", MAP_SHARED, file=rig.fs.open("f", "rw"))
    with pytest.raises(SIGBUS):  # ENOSPC
        mm.access(vs + nblocks * ps)
    assert pte(mm, vs + nblocks * ps) is None
    # a private read of the same hole still gets the sparse page
    vp = mm.mmap((nblocks + 1) * ps, "r", MAP_PRIVATE, file=rig.fs.open("f"))
    assert mm.read(vp + nblocks * ps, 8) == bytes(8)

    def broken(block: int) -> tuple[int, int]:
        raise EIO("direct_access failed")

    rig.fs.direct_access = broken  # type: ignore[method-assign]
    with pytest.raises(OOMError):
        mm.access(vp)
    del rig.fs.direct_access
    assert mm.read(vp, 4) == rig.fs.open("f").read(0, 4)
    check_invariants(m)
    teardown(rig)


@CASES
def test_populate(case: Case) -> None:
    """MAP_POPULATE is 2.6.27 make_pages_present: get_user_pages with write = VM_WRITE, its
    error ignored. GUP stops at the first special PTE (-EFAULT, after faulting it in); a
    private writable mapping is COWed page by page; a shared writable one allocates holes."""

    def body(rig: Rig) -> None:
        ps, m = rig.ps, rig.m
        content = holey(rig, npages=4, holes=(0,))
        inode = rig.fs.files["f"]
        snap = rig.dev.read(0, rig.dev.size)
        mm = m.new_mm()
        full = rig.data_normal  # every data PTE normal: GUP never meets a special one
        vr = mm.mmap(4 * ps, "r", MAP_PRIVATE | MAP_POPULATE, file=rig.fs.open("f"))
        present = [pte(mm, vr + p * ps) is not None for p in range(4)]
        assert present == ([True] * 4 if full else [True, True, False, False])  # hole, then data
        assert mm.rss == {"file": 4 if full else 1, "anon": 0}
        assert inode.block(0) == -1

        vw = mm.mmap(4 * ps, "rw", MAP_PRIVATE | MAP_POPULATE, file=rig.fs.open("f"))
        for p in range(4):  # a write GUP COWs every page, the hole too
            v = pte(mm, vw + p * ps)
            assert v is not None and v.write and v.normal == v.pfn
        assert mm.rss["anon"] == 4
        assert mm.read(vw, 4 * ps) == content and rig.dev.read(0, rig.dev.size) == snap

        vs = mm.mmap(4 * ps, "rw", MAP_SHARED | MAP_POPULATE, file=rig.fs.open("f", "rw"))
        assert inode.block(0) >= 0 and pte(mm, vr) is None  # allocated, sparse page unmapped
        present = [pte(mm, vs + p * ps) is not None for p in range(4)]
        assert present == ([True] * 4 if full else [True, False, False, False])
        assert mm.read(vs, 4 * ps) == content

    each_device(case, body)
