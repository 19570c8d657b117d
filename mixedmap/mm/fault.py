"""Page faults as 2.6.27 ``mm/memory.c`` handles them: anonymous, ->fault, and COW.

``do_wp_page`` is where special mappings meet copy-on-write: a special source has no struct
page, so the copy is taken through the faulting *user address* (``cow_user_page``), and a
shared-writable special PTE is simply made writable (the dirty-accounting rule of
"mm: dirty page accounting vs VM_MIXEDMAP", in 2.6.26).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mixedmap.errors import OutOfMemory
from mixedmap.mm import rmap
from mixedmap.mm.memory import vm_normal_page
from mixedmap.mm.vma import VM, VMA, FaultResult, VMFault

if TYPE_CHECKING:
    from mixedmap.mm.mm import MM


def maybe_mkwrite(mm: MM, pte: int, vma: VMA) -> int:
    """``maybe_mkwrite``: writable only if the VMA is."""
    return int(mm.ops.pte_mkwrite(pte)) if vma.flags & VM.WRITE else pte


def handle_mm_fault(mm: MM, vma: VMA, addr: int, write: bool) -> FaultResult:
    """mm/memory.c ``handle_mm_fault`` -> ``handle_pte_fault`` for one base page."""
    addr -= addr % mm.page_size
    try:
        slot = mm.pt.pte_slot(addr, allocate=True)
    except OutOfMemory:
        return FaultResult.OOM
    assert slot is not None
    pte = mm.pt.read_pte(slot)
    ops = mm.ops
    if not ops.pte_present(pte):
        if not ops.pte_none(pte):
            return FaultResult.SIGBUS  # swap / nonlinear-file entries are not modelled
        if vma.vm_ops is not None:
            return do_linear_fault(mm, vma, addr, slot, write)
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
    """2.6.27 ``do_anonymous_page``: always a fresh zeroed page (no zero page then)."""
    try:
        (pfn,) = mm.machine.pages.alloc_pages(1).tolist()
    except OutOfMemory:
        return FaultResult.OOM
    vma.anon_vma = True
    entry = maybe_mkwrite(mm, int(mm.ops.pte_mkdirty(mm.ops.pfn_pte(pfn, vma.page_prot))), vma)
    mm.rss_anon += 1
    rmap.page_add_new_anon_rmap(mm.machine.memmap, pfn, mm.id, vma.linear_pgoff(addr))
    mm.pt.write_pte(slot, entry)
    mm.trace("fault_anon", "mm/memory.c:do_anonymous_page", vma, addr, pfn, 0)
    return FaultResult.MINOR


def do_linear_fault(mm: MM, vma: VMA, addr: int, slot: int, write: bool) -> FaultResult:
    """2.6.27 ``__do_fault``: call ->fault; map the page it returns (or early-COW it).

    A handler that installs the PTE itself (``vm_insert_mixed``) returns NOPAGE and the
    fault ends here, so a write to a private XIP mapping takes a second fault (COW).
    """
    assert vma.vm_ops is not None
    vmf = VMFault(address=addr, pgoff=vma.linear_pgoff(addr), write=write)
    ret = vma.vm_ops.fault(vma, vmf)
    if ret & (FaultResult.OOM | FaultResult.SIGBUS | FaultResult.NOPAGE):
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
    """2.6.27 ``do_wp_page``: reuse or copy on a write to a present read-only PTE."""
    ops, memmap, pages = mm.ops, mm.machine.memmap, mm.machine.pages
    old = vm_normal_page(vma, addr, orig)
    shared_writable = vma.flags & (VM.WRITE | VM.SHARED) == VM.WRITE | VM.SHARED
    reuse = False
    if old is None:
        reuse = bool(shared_writable)
    elif rmap.is_anon(memmap, old)[0]:
        reuse = int(rmap.mapcount(memmap, old)[0]) == 1  # can_share_swap_page
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
        pages.get_page(old)  # the temporary reference across the copy
    vma.anon_vma = True
    try:
        (new,) = pages.alloc_pages(1).tolist()
    except OutOfMemory:
        if old is not None:
            rmap.put_pages(pages, old)
        return FaultResult.OOM
    src_pfn = int(ops.pte_pfn(orig))
    mm.cow_user_page(new, old, src_pfn)
    if old is None:
        mm.rss_anon += 1
    elif not rmap.is_anon(memmap, old)[0]:
        mm.rss_file -= 1
        mm.rss_anon += 1
    entry = maybe_mkwrite(mm, int(ops.pte_mkdirty(ops.pfn_pte(new, vma.page_prot))), vma)
    mm.pt.write_pte(slot, entry)
    rmap.page_add_new_anon_rmap(memmap, new, mm.id, vma.linear_pgoff(addr))
    if old is not None:
        rmap.page_remove_rmap(memmap, old)
        rmap.put_pages(pages, np.array([old, old], dtype=np.uint64))  # the PTE's and the temporary reference
    mm.trace("cow", "mm/memory.c:do_wp_page", vma, addr, new, orig)
    return FaultResult.WRITE
