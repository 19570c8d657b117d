"""Page faults as ``mm/memory.c`` handles them: anonymous, ->fault, and COW.

``do_wp_page`` is where special mappings meet copy-on-write: a special source has no struct
page, so the copy is taken through the faulting *user address* (``cow_user_page``), and a
shared-writable special PTE is simply made writable (the dirty-accounting rule of
"mm: dirty page accounting vs VM_MIXEDMAP", in 2.6.26).

From 2.6.32 (:data:`~mixedmap.rules.ZERO_PAGE`, the 6.18 profile) a read fault on untouched
anonymous memory maps the shared zero page and a write to it COWs into a fresh zeroed page;
2.6.26/2.6.27 allocate a zeroed page on the first fault of either kind.

A driver mapping (a VMA with a file) without ``->fault`` takes that anonymous path too in
2.6.2x; from 4.2 (:data:`~mixedmap.rules.FILE_FAULT_SIGBUS`) the fault is SIGBUS instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mixedmap.errors import OutOfMemory
from mixedmap.mm import rmap
from mixedmap.mm.memory import vm_normal_page
from mixedmap.mm.vma import VM, VMA, FaultResult, VMFault
from mixedmap.mm.zero import current_zero_pfn, zero_pfn
from mixedmap.phys.memmap import PG
from mixedmap.rules import FILE_FAULT_SIGBUS, ZERO_PAGE

if TYPE_CHECKING:
    from mixedmap.mm.mm import MM


def maybe_mkwrite(mm: MM, pte: int, vma: VMA) -> int:
    """``maybe_mkwrite``: writable only if the VMA is."""
    return int(mm.ops.pte_mkwrite(pte)) if vma.flags & VM.WRITE else pte


_PG_ANON = int(PG.anon)
#: ``__do_fault``'s "the handler is done" codes, as a plain int (IntFlag arithmetic costs
#: more per fault than the test).
_HANDLED = int(FaultResult.OOM | FaultResult.SIGBUS | FaultResult.NOPAGE)


def handle_mm_fault(mm: MM, vma: VMA, addr: int, write: bool) -> FaultResult:
    """mm/memory.c ``handle_mm_fault`` -> ``handle_pte_fault`` for one base page.

    The empty PTE (``pte_none``, not present: the usual first fault) is recognised by value,
    its meaning asked of the arch once per mm (:attr:`MM.empty_is_none`)."""
    addr -= addr % mm.page_size
    try:
        slot = mm.fault_pte_slot(addr)
    except OutOfMemory:
        return FaultResult.OOM
    mm._fault_slot = (addr, slot)
    pte = mm.mem.read_u64(slot, mm.byteorder)
    ops = mm.ops
    empty = pte == mm.empty_pte and mm.empty_is_none
    if empty or not ops.pte_present(pte):
        if not empty and not ops.pte_none(pte):
            return FaultResult.SIGBUS  # swap / nonlinear-file entries are not modelled
        if vma.vm_ops is not None:
            return do_linear_fault(mm, vma, addr, slot, write)
        if vma.file is not None and FILE_FAULT_SIGBUS.applies(mm.machine.profile):
            return FaultResult.SIGBUS  # do_fault: no ->fault (dummy_vm_ops), the PTE is none
        return do_anonymous_page(mm, vma, addr, slot, write)
    if write:
        if not ops.pte_write(pte):
            return do_wp_page(mm, vma, addr, slot, pte)
        entry = int(ops.pte_mkdirty(pte))
    else:
        entry = pte
    entry = int(ops.pte_mkyoung(entry))
    if entry != pte:
        mm.pt.write_pte(slot, entry)
    return FaultResult.MINOR


def do_anonymous_page(mm: MM, vma: VMA, addr: int, slot: int, write: bool) -> FaultResult:
    """``do_anonymous_page``: the zero page for a read (2.6.32+), else a fresh zeroed page.

    2.6.27 has no zero page and allocates on every first fault. With
    :data:`~mixedmap.rules.ZERO_PAGE` a read fault takes the "Use the zero-page for reads"
    branch (6.18 mm/memory.c): ``pte_mkspecial(pfn_pte(my_zero_pfn(addr), vm_page_prot))``
    and ``goto setpte`` -- no anon_vma_prepare, no folio, no rmap, no MM_ANONPAGES -- so
    the PTE is read-only (a private vm_page_prot is), special where the arch has the bit,
    and neither refcount, mapcount nor RSS moves. A write fault allocates as before.
    """
    if not write and ZERO_PAGE.applies(mm.machine.profile):
        return _map_zero_page(mm, vma, addr, slot)
    try:
        (pfn,) = mm.machine.pages.alloc_pages(1).tolist()
    except OutOfMemory:
        return FaultResult.OOM
    if not vma.anon_vma:  # anon_vma_prepare: once; an attrs setattr costs microseconds
        vma.anon_vma = True
    entry = maybe_mkwrite(mm, int(mm.ops.pte_mkdirty(mm.ops.pfn_pte(pfn, vma.page_prot))), vma)
    mm.rss_anon += 1
    rmap.page_add_new_anon_rmap(mm.machine.memmap, pfn, mm.id, vma.linear_pgoff(addr))
    mm.pt.write_pte(slot, entry)
    mm.trace("fault_anon", "mm/memory.c:do_anonymous_page", vma, addr, pfn, 0)
    return FaultResult.MINOR


def _map_zero_page(mm: MM, vma: VMA, addr: int, slot: int) -> FaultResult:
    """The zero-page branch of 6.18 ``do_anonymous_page`` (the kernel's page exists from boot;
    the model's is allocated on first use, so only that first use can be VM_FAULT_OOM)."""
    try:
        pfn = zero_pfn(mm.machine)
    except OutOfMemory:
        return FaultResult.OOM
    mm.pt.write_pte(slot, mm.mkspecial_one(int(mm.ops.pfn_pte(pfn, vma.page_prot))))
    mm.trace("fault_zero", "mm/memory.c:do_anonymous_page", vma, addr, pfn, 0)
    return FaultResult.MINOR


def do_linear_fault(mm: MM, vma: VMA, addr: int, slot: int, write: bool) -> FaultResult:
    """2.6.27 ``__do_fault``: call ->fault; map the page it returns (or early-COW it).

    A handler that installs the PTE itself (``vm_insert_mixed``) returns NOPAGE and the
    fault ends here, so a write to a private XIP mapping takes a second fault (COW).
    """
    assert vma.vm_ops is not None
    vmf = VMFault(addr, ((addr - vma.start) >> mm.page_shift) + vma.pgoff, write)  # linear_page_index
    ret = vma.vm_ops.fault(vma, vmf)
    if int(ret) & _HANDLED:
        return ret
    if vmf.page is None:
        return FaultResult.SIGBUS
    page = vmf.page
    ops, memmap = mm.ops, mm.machine.memmap
    anon = write and not vma.flags & VM.SHARED
    mapped = page
    if anon:  # early COW of a private write fault
        try:
            (mapped,) = mm.machine.pages.alloc_pages(1).tolist()
        except OutOfMemory:
            rmap.put_pages(mm.machine.pages, page)
            return FaultResult.OOM
        if not vma.anon_vma:  # anon_vma_prepare: once; an attrs setattr costs microseconds
            vma.anon_vma = True
        mm.copy_page(page, mapped)
    entry = int(ops.pfn_pte(mapped, vma.page_prot))
    if write:
        entry = maybe_mkwrite(mm, int(ops.pte_mkdirty(entry)), vma)
    if anon:
        mm.rss_anon += 1
        rmap.page_add_new_anon_rmap(memmap, mapped, mm.id, vmf.pgoff)
    else:
        mm.rss_file += 1
        rmap.page_add_file_rmap(memmap, mapped)
        if write:
            rmap.set_page_dirty(memmap, mapped)
    mm.pt.write_pte(slot, entry)
    if anon:
        rmap.put_pages(mm.machine.pages, page)  # the handler's reference on the source
    mm.trace("fault_file" if not anon else "cow_early", "mm/memory.c:__do_fault", vma, addr, mapped, 0)
    return FaultResult.MINOR


def do_wp_page(mm: MM, vma: VMA, addr: int, slot: int, orig: int) -> FaultResult:
    """``do_wp_page``: reuse or copy on a write to a present read-only PTE (2.6.27 rules).

    A zero-page PTE (:data:`~mixedmap.rules.ZERO_PAGE`) has no page (vm_normal_page NULL) and
    takes the copy path: 6.18 ``wp_page_copy`` sees ``is_zero_pfn(pte_pfn(orig_pte))``,
    allocates a zeroed folio (``folio_prealloc(..., need_zero)``) and skips the copy; with no
    old folio it only does MM_ANONPAGES +1.
    """
    ops, memmap, pages = mm.ops, mm.machine.memmap, mm.machine.pages
    old = vm_normal_page(vma, addr, orig)
    if vma.flags & (VM.SHARED | VM.MAYSHARE):  # wp_pfn_shared / wp_page_shared -> do_page_mkwrite
        mkwrite = getattr(vma.vm_ops, "pfn_mkwrite" if old is None else "page_mkwrite", None)
        if mkwrite is not None:  # e.g. fs-dax (mixedmap.xip.dax); no 2.6.2x vm_ops has one
            ret: FaultResult = mkwrite(vma, VMFault(address=addr, pgoff=vma.linear_pgoff(addr), write=True))
            if ret & (FaultResult.OOM | FaultResult.SIGBUS | FaultResult.NOPAGE):
                return ret
    shared_writable = vma.flags & (VM.WRITE | VM.SHARED) == VM.WRITE | VM.SHARED
    reuse = False
    ok = 0
    old_anon = False
    if old is not None:  # one struct-page lookup for every question about the old page
        ok = memmap.flat_of(old)
        old_anon = bool(memmap.flags1d.item(ok) & _PG_ANON)
    if old is None:
        reuse = bool(shared_writable)
    elif old_anon:
        reuse = memmap.mapcount1d.item(ok) == 1  # can_share_swap_page
    elif shared_writable:
        reuse = True
        rmap.set_page_dirty(memmap, old)
    if reuse:
        entry = maybe_mkwrite(mm, int(ops.pte_mkdirty(ops.pte_mkyoung(orig))), vma)
        mm.pt.write_pte(slot, entry)
        mm.trace("wp_reuse", "mm/memory.c:do_wp_page", vma, addr, old, orig)
        return FaultResult.WRITE
    # COW ("gotten:"): the new page is anonymous.
    if old is not None:
        pages.get_page_at(old, ok)  # the temporary reference across the copy
    if not vma.anon_vma:  # anon_vma_prepare: once; an attrs setattr costs microseconds
        vma.anon_vma = True
    try:
        (new,) = pages.alloc_pages(1).tolist()
    except OutOfMemory:
        if old is not None:
            rmap.put_pages(pages, old)
        return FaultResult.OOM
    src_pfn = int(ops.pte_pfn(orig))
    zero = current_zero_pfn(mm.machine) if ZERO_PAGE.applies(mm.machine.profile) else None
    if src_pfn != zero:  # alloc_pages hands out zeroed frames: the zero page needs no copy
        mm.cow_user_page(new, old, src_pfn)
    if old is None:
        mm.rss_anon += 1
    elif not old_anon:  # the copy changed nothing about the old page
        mm.rss_file -= 1
        mm.rss_anon += 1
    entry = maybe_mkwrite(mm, int(ops.pte_mkdirty(ops.pfn_pte(new, vma.page_prot))), vma)
    mm.pt.write_pte(slot, entry)
    rmap.page_add_new_anon_rmap(memmap, new, mm.id, vma.linear_pgoff(addr))
    if old is not None:
        mapcount = memmap.mapcount1d  # read after the allocation: it may have grown them
        mapcount[ok] = mapcount.item(ok) - 1  # page_remove_rmap
        pages.put_page_n(old, 2)  # the PTE's and the temporary reference, as one put_page
    mm.trace("cow", "mm/memory.c:do_wp_page", vma, addr, new, orig)
    return FaultResult.WRITE
