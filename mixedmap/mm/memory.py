"""The special-mapping core of 2.6.27 ``mm/memory.c``: classify, insert, remap, zap, copy.

``vm_normal_page`` is the single classifier every path asks before touching a struct page.
Scheme A (the profile has a special bit): the bit decides. Scheme B (no bit: x86 and ppc64
under 2.6.26, the toy arch): VM_MIXEDMAP decides by ``pfn_valid``, VM_PFNMAP by the
``vm_pgoff`` linearity rule and ``is_cow_mapping``. Range operations (zap, fork-copy, remap)
classify a whole range with numpy and call the arch's special hook once per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import EBUSY, EFAULT, EINVAL, ENOMEM, EPERM, OutOfMemory, VMBug
from mixedmap.mm import rmap
from mixedmap.mm.vma import VM, VMA

if TYPE_CHECKING:
    from mixedmap.mm.mm import MM


# -- classification ---------------------------------------------------------------------------
def vm_normal_page(vma: VMA, addr: int, pte: int) -> int | None:
    """The pfn whose struct page the PTE maps and refcounts, or None for a special PTE.

    mm/memory.c ``vm_normal_page`` (2.6.27), both schemes.
    """
    mm = vma.mm
    pfn = int(mm.ops.pte_pfn(pte))
    if mm.has_special:
        if mm.pte_special_one(pte):
            if not vma.flags & (VM.PFNMAP | VM.MIXEDMAP):
                raise VMBug(f"bad pte {pte:#x} at {addr:#x}: special PTE in a VMA without PFNMAP/MIXEDMAP")
            return None
    elif vma.flags & VM.MIXEDMAP:
        if not mm.machine.pfn_valid(pfn)[0]:
            return None
    elif vma.flags & VM.PFNMAP:
        if pfn == vma.linear_pgoff(addr):
            return None
        if not vma.is_cow:
            return None
    if not mm.machine.pfn_valid(pfn)[0]:
        raise VMBug(
            f"vm_normal_page: pte {pte:#x} at {addr:#x} is normal but pfn {pfn:#x} has no struct page"
        )
    return pfn


def vm_normal_pages(vma: VMA, vas: NDArray[np.uint64], ptes: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Batched ``vm_normal_page`` over present PTEs: pfn, or -1 where special."""
    mm = vma.mm
    pfns = np.asarray(mm.ops.pte_pfn(ptes), dtype=np.uint64)
    normal = np.ones(ptes.shape, dtype=np.bool_)
    if mm.has_special:
        special = mm.mode.pte_special(ptes)
        if special.any() and not vma.flags & (VM.PFNMAP | VM.MIXEDMAP):
            bad = int(np.flatnonzero(special)[0])
            raise VMBug(
                f"bad pte {int(ptes[bad]):#x} at {int(vas[bad]):#x}: special PTE in a VMA without PFNMAP/MIXEDMAP"
            )
        normal = ~special
    elif vma.flags & VM.MIXEDMAP:
        normal = mm.machine.pfn_valid(pfns)
    elif vma.flags & VM.PFNMAP:
        idx = (vas - np.uint64(vma.start)) >> np.uint64(mm.page_shift)
        linear = pfns == idx + np.uint64(vma.pgoff)
        normal = ~linear if vma.is_cow else np.zeros(ptes.shape, dtype=np.bool_)
    if normal.any():
        valid = mm.machine.pfn_valid(pfns[normal])
        if not valid.all():
            bad = int(pfns[normal][~valid][0])
            raise VMBug(f"vm_normal_page: normal PTE maps pfn {bad:#x} which has no struct page")
    return np.where(normal, pfns.astype(np.int64), -1)


# -- insertion ----------------------------------------------------------------------------------
def _slot(vma: VMA, addr: int) -> int:
    try:
        slot = vma.mm.pt.pte_slot(addr, allocate=True)
    except OutOfMemory as exc:
        raise ENOMEM(f"no memory for a page table at {addr:#x}: {exc}") from exc
    assert slot is not None
    return slot


def _check_range(vma: VMA, addr: int, who: str) -> None:
    if addr < vma.start or addr >= vma.end:
        raise EFAULT(f"{who}: address {addr:#x} is outside the VMA [{vma.start:#x}, {vma.end:#x})")
    if addr % vma.mm.page_size:
        raise EFAULT(f"{who}: address {addr:#x} is not page aligned")


def insert_page(vma: VMA, addr: int, pfn: int, prot: int) -> None:
    """mm/memory.c ``insert_page``: a refcounted, rmapped, normal PTE (file_rss +1)."""
    mm = vma.mm
    if not mm.machine.pfn_valid(pfn)[0]:
        raise EINVAL(f"insert_page: pfn {pfn:#x} has no struct page")
    if rmap.is_anon(mm.machine.memmap, pfn)[0]:
        raise EINVAL(f"insert_page: pfn {pfn:#x} is an anonymous page")
    slot = _slot(vma, addr)
    old = mm.pt.read_pte(slot)
    if not mm.ops.pte_none(old):
        raise EBUSY(f"insert_page: PTE at {addr:#x} is already populated ({old:#x})")
    mm.machine.pages.get_page(pfn)
    mm.rss_file += 1
    rmap.page_add_file_rmap(mm.machine.memmap, pfn)
    mm.pt.write_pte(slot, int(mm.ops.pfn_pte(pfn, prot)))
    mm.trace("insert_page", "mm/memory.c:insert_page", vma, addr, pfn, old)


def vm_insert_page(vma: VMA, addr: int, pfn: int) -> None:
    """mm/memory.c ``vm_insert_page`` (2.6.27): marks the VMA VM_INSERTPAGE."""
    _check_range(vma, addr, "vm_insert_page")
    mm = vma.mm
    if not mm.machine.pfn_valid(pfn)[0] or mm.machine.pages.page_count(pfn)[0] == 0:
        raise EINVAL(f"vm_insert_page: pfn {pfn:#x} is not an allocated page (page_count 0)")
    vma.flags |= VM.INSERTPAGE
    insert_page(vma, addr, pfn, vma.page_prot)


def insert_pfn(vma: VMA, addr: int, pfn: int, prot: int) -> None:
    """mm/memory.c ``insert_pfn``: a special PTE; no refcount, rmap or RSS."""
    mm = vma.mm
    if pfn >= mm.fmt.max_pfn:
        raise EINVAL(f"insert_pfn: pfn {pfn:#x} is beyond {mm.fmt.pa_bits} physical address bits")
    slot = _slot(vma, addr)
    old = mm.pt.read_pte(slot)
    if not mm.ops.pte_none(old):
        raise EBUSY(f"insert_pfn: PTE at {addr:#x} is already populated ({old:#x})")
    mm.pt.write_pte(slot, mm.mkspecial_one(int(mm.ops.pfn_pte(pfn, prot))))
    mm.trace("insert_pfn", "mm/memory.c:insert_pfn", vma, addr, pfn, old)


def vm_insert_pfn(vma: VMA, addr: int, pfn: int) -> None:
    """mm/memory.c ``vm_insert_pfn``: the four BUG_ONs, then -EFAULT, then insert_pfn."""
    mm = vma.mm
    both = VM.PFNMAP | VM.MIXEDMAP
    if not vma.flags & both:
        raise VMBug("vm_insert_pfn: BUG_ON(!(vma->vm_flags & (VM_PFNMAP|VM_MIXEDMAP)))")
    if vma.flags & both == both:
        raise VMBug("vm_insert_pfn: BUG_ON(VM_PFNMAP and VM_MIXEDMAP both set)")
    if vma.flags & VM.PFNMAP and vma.is_cow:
        raise VMBug("vm_insert_pfn: BUG_ON(VM_PFNMAP && is_cow_mapping) - a COW PFNMAP VMA must be linear")
    if vma.flags & VM.MIXEDMAP and mm.machine.pfn_valid(pfn)[0]:
        raise VMBug(f"vm_insert_pfn: BUG_ON(VM_MIXEDMAP && pfn_valid({pfn:#x})) - use vm_insert_mixed")
    _check_range(vma, addr, "vm_insert_pfn")
    insert_pfn(vma, addr, pfn, vma.page_prot)


def vm_insert_mixed(vma: VMA, addr: int, pfn: int) -> None:
    """mm/memory.c ``vm_insert_mixed`` (2.6.27): the PTE agrees with what vm_normal_page
    will later say. Without a special bit a pfn_valid pfn becomes a refcounted page."""
    mm = vma.mm
    if not vma.flags & VM.MIXEDMAP:
        raise VMBug("vm_insert_mixed: BUG_ON(!(vma->vm_flags & VM_MIXEDMAP))")
    _check_range(vma, addr, "vm_insert_mixed")
    if not mm.has_special and mm.machine.pfn_valid(pfn)[0]:
        insert_page(vma, addr, pfn, vma.page_prot)
    else:
        insert_pfn(vma, addr, pfn, vma.page_prot)


def remap_pfn_range(vma: VMA, addr: int, pfn: int, size: int, prot: int | None = None) -> None:
    """mm/memory.c ``remap_pfn_range`` (2.6.27): special PTEs for consecutive pfns.

    A COW VMA must be remapped whole (-EINVAL) and gets vm_pgoff := pfn (the linearity
    rule); flags gain VM_IO | VM_RESERVED | VM_PFNMAP. The kernel BUGs on a populated PTE
    half-way; the model checks every PTE first, so a BUG leaves nothing changed.
    """
    mm = vma.mm
    prot = vma.page_prot if prot is None else prot
    if addr % mm.page_size:
        raise EINVAL(f"remap_pfn_range: address {addr:#x} is not page aligned")
    size = -(-size // mm.page_size) * mm.page_size  # end = addr + PAGE_ALIGN(size)
    end = addr + size
    if vma.is_cow and (addr != vma.start or end != vma.end):
        raise EINVAL("remap_pfn_range: a COW mapping must be remapped whole (vm_pgoff becomes the pfn)")
    if size <= 0:
        raise VMBug(f"remap_pfn_range: BUG_ON(addr >= end) for [{addr:#x}, {end:#x})")
    if addr < vma.start or end > vma.end:
        raise EINVAL(f"remap_pfn_range: [{addr:#x}, {end:#x}) is outside the VMA {vma.describe()}")
    npages = size >> mm.page_shift
    if pfn + npages > mm.fmt.max_pfn:
        raise EINVAL(
            f"remap_pfn_range: pfns up to {pfn + npages - 1:#x} exceed {mm.fmt.pa_bits} physical bits"
        )
    vas, ptes, _reach = mm.pt.range_ptes(addr, npages)
    used = ~np.asarray(mm.ops.pte_none(ptes), dtype=np.bool_)
    if used.any():
        va = int(vas[used][0])
        raise VMBug(f"remap_pfn_range: BUG_ON(!pte_none(*pte)) at {va:#x} (pte {int(ptes[used][0]):#x})")
    try:
        epa, _ = mm.pt.pte_slots(vas, allocate=True)
    except OutOfMemory as exc:
        raise ENOMEM(f"remap_pfn_range: no memory for page tables: {exc}") from exc
    if vma.is_cow:
        vma.pgoff = pfn
    vma.flags |= VM.IO | VM.RESERVED | VM.PFNMAP
    values = np.asarray(
        mm.ops.pfn_pte(np.uint64(pfn) + np.arange(npages, dtype=np.uint64), prot), dtype=np.uint64
    )
    if mm.has_special:
        values = mm.mode.pte_mkspecial(values)
    mm.pt.write_ptes(epa, values)
    mm.trace_range("remap_pfn_range", "mm/memory.c:remap_pfn_range", vma, addr, npages)


# -- unmap ----------------------------------------------------------------------------------------
def zap_pte_range(vma: VMA, start: int, end: int) -> int:
    """mm/memory.c ``zap_pte_range`` over [start, end) of ``vma``: returns PTEs cleared.

    Only normal pages lose mapcount, refcount and RSS; a file page inherits the PTE's
    dirty bit. Special PTEs just disappear.
    """
    mm = vma.mm
    npages = (end - start) >> mm.page_shift
    if npages <= 0:
        return 0
    vas, ptes, reach = mm.pt.range_ptes(start, npages)
    live = reach & ~np.asarray(mm.ops.pte_none(ptes), dtype=np.bool_)
    if not live.any():
        return 0
    vas, ptes = vas[live], ptes[live]
    present = np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
    pfns = vm_normal_pages(vma, vas[present], ptes[present])  # classify before clearing
    epa = mm.pt.epas_for(vas)
    mm.pt.write_ptes(epa, np.full(vas.shape, mm.empty_pte, dtype=np.uint64))
    if present.any():
        normal = pfns >= 0
        if normal.any():
            npfns = pfns[normal].astype(np.uint64)
            anon = rmap.is_anon(mm.machine.memmap, npfns)
            mm.rss_anon -= int(anon.sum())
            mm.rss_file -= int((~anon).sum())
            dirty = np.asarray(mm.ops.pte_dirty(ptes[present][normal]), dtype=np.bool_) & ~anon
            if dirty.any():
                rmap.set_page_dirty(mm.machine.memmap, npfns[dirty])
            rmap.page_remove_rmap(mm.machine.memmap, npfns)
            rmap.put_pages(mm.machine.pages, npfns)
    mm.trace_range("zap", "mm/memory.c:zap_pte_range", vma, start, npages)
    return int(live.sum())


def zap_vma_ptes(vma: VMA, addr: int, size: int) -> int:
    """mm/memory.c ``zap_vma_ptes`` (2.6.27): PFNMAP VMAs only; the kernel returns -1."""
    if not vma.flags & VM.PFNMAP or addr < vma.start or addr + size > vma.end:
        raise EPERM(f"zap_vma_ptes: [{addr:#x}, +{size:#x}) is not inside a VM_PFNMAP VMA (returns -1)")
    zap_pte_range(vma, addr, addr + size)
    return 0


# -- fork -----------------------------------------------------------------------------------------
def copy_page_range(dst: MM, src_vma: VMA, dst_vma: VMA) -> int:
    """mm/memory.c ``copy_page_range``/``copy_one_pte`` (2.6.27); returns PTEs copied.

    A VMA without HUGETLB|NONLINEAR|PFNMAP|INSERTPAGE and without an anon_vma is not
    copied at all: the child refaults (XIP MIXEDMAP mappings that never COWed).
    """
    src = src_vma.mm
    if not src_vma.flags & (VM.HUGETLB | VM.NONLINEAR | VM.PFNMAP | VM.INSERTPAGE) and not src_vma.anon_vma:
        return 0
    vas, ptes, reach = src.pt.range_ptes(src_vma.start, src_vma.npages)
    live = reach & ~np.asarray(src.ops.pte_none(ptes), dtype=np.bool_)
    if not live.any():
        return 0
    vas, ptes = vas[live], ptes[live]
    present = np.asarray(src.ops.pte_present(ptes), dtype=np.bool_)
    if not present.all():
        raise VMBug("copy_one_pte: non-present (swap/file) PTEs are not modelled")
    try:
        dst_epa, _ = dst.pt.pte_slots(vas, allocate=True)
    except OutOfMemory as exc:
        raise ENOMEM(f"fork: no memory for the child's page tables: {exc}") from exc
    pfns = vm_normal_pages(src_vma, vas, ptes)
    child = ptes
    if src_vma.is_cow:
        child = np.asarray(src.ops.pte_wrprotect(ptes), dtype=np.uint64)
        changed = child != ptes
        if changed.any():
            src.pt.write_ptes(src.pt.epas_for(vas[changed]), child[changed])
    if src_vma.flags & VM.SHARED:
        child = np.asarray(src.ops.pte_mkclean(child), dtype=np.uint64)
    child = np.asarray(src.ops.pte_mkold(child), dtype=np.uint64)
    normal = pfns >= 0
    if normal.any():
        npfns = pfns[normal].astype(np.uint64)
        src.machine.pages.get_page(npfns)
        rmap.page_dup_rmap(src.machine.memmap, npfns)
        anon = rmap.is_anon(src.machine.memmap, npfns)
        dst.rss_anon += int(anon.sum())
        dst.rss_file += int((~anon).sum())
    dst.pt.write_ptes(dst_epa, child)
    src.trace_range("fork_copy", "mm/memory.c:copy_pte_range", src_vma, src_vma.start, src_vma.npages)
    return int(live.sum())
