"""get_user_pages: the slow path (mm/memory.c, 2.6.27) and the lockless fast path
(arch/x86/mm/gup.c, 2.6.27) that only works because special PTEs are marked.

Every pinned page gets one reference (FOLL_GET); callers release them with ``put_page``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import EFAULT, ENOMEM
from mixedmap.mm.fault import handle_mm_fault
from mixedmap.mm.memory import vm_normal_page
from mixedmap.mm.vma import VM, FaultResult
from mixedmap.profiles import V2_6_27

if TYPE_CHECKING:
    from mixedmap.mm.mm import MM


def follow_page(mm: MM, vma_addr: tuple[object, int], write: bool) -> int | EFAULT | None:
    """``follow_page`` (2.6.27): pfn, None (fault it in first) or EFAULT (special PTE)."""
    vma, addr = vma_addr
    slot = mm.pt.pte_slot(addr, allocate=False)
    if slot is None:
        return None
    pte = mm.pt.read_pte(slot)
    if not mm.ops.pte_present(pte):
        return None
    if write and not mm.ops.pte_write(pte):
        return None
    page = vm_normal_page(vma, addr, pte)  # type: ignore[arg-type]
    if page is None:
        return EFAULT(f"follow_page: {addr:#x} is mapped by a special PTE (no struct page)")
    return page


def get_user_pages(mm: MM, start: int, nr_pages: int, write: bool, force: bool = False) -> NDArray[np.uint64]:
    """mm/memory.c ``get_user_pages`` with FOLL_GET: pinned pfns (refcount +1 each).

    Stops at the first page it cannot get and returns what it pinned, or raises EFAULT
    (ENOMEM on OOM) when it pinned nothing, as the kernel returns count or -errno.
    """
    pinned: list[int] = []
    addr = start - start % mm.page_size

    def fail(exc: Exception) -> NDArray[np.uint64]:
        if pinned:
            return np.array(pinned, dtype=np.uint64)
        raise exc

    for i in range(nr_pages):
        va = addr + i * mm.page_size
        vma = mm.find_vma(va)
        if vma is None or vma.flags & (VM.IO | VM.PFNMAP):
            why = "no VMA" if vma is None else f"VMA {vma.describe()} has VM_IO/VM_PFNMAP"
            return fail(EFAULT(f"get_user_pages: {va:#x}: {why}"))
        need = (VM.WRITE if write else VM.READ) | ((VM.MAYWRITE if write else VM.MAYREAD) if force else 0)
        if not vma.flags & need:
            return fail(
                EFAULT(f"get_user_pages: {va:#x}: VMA lacks {'write' if write else 'read'} permission")
            )
        foll_write = write
        while True:
            page = follow_page(mm, (vma, va), foll_write)
            if isinstance(page, EFAULT):
                return fail(page)
            if page is not None:
                break
            ret = handle_mm_fault(mm, vma, va, foll_write)
            if ret & FaultResult.OOM:
                return fail(ENOMEM(f"get_user_pages: out of memory faulting {va:#x}"))
            if ret & FaultResult.SIGBUS:
                return fail(EFAULT(f"get_user_pages: SIGBUS faulting {va:#x}"))
            if ret & FaultResult.WRITE:
                foll_write = False  # COW is broken; the new page is ours
        mm.machine.pages.get_page(page)
        pinned.append(page)
        mm.trace("gup", "mm/memory.c:get_user_pages", vma, va, page, 0)
    return np.array(pinned, dtype=np.uint64)


@attrs.frozen
class GupFastResult:
    """What get_user_pages_fast did: pfns pinned, and how many came from each path."""

    pfns: NDArray[np.uint64] = attrs.field(eq=False)
    fast: int
    slow: int
    #: Why the fast walk stopped ("" when it pinned everything).
    fallback_reason: str


def get_user_pages_fast(mm: MM, start: int, nr_pages: int, write: bool) -> GupFastResult:
    """arch/x86/mm/gup.c ``get_user_pages_fast`` (2.6.27), generic over the arch.

    The walk takes no lock and looks only at PTEs: present and user-accessible (not
    PROT_NONE), writable when writing, and not special; it stops at the first page that
    fails and hands the rest to the slow path. A profile without the special bit has no fast path (the generic fallback
    takes mmap_sem and calls get_user_pages for everything).
    """
    addr = start - start % mm.page_size
    if not mm.fmt.has_lockless_gup:
        # Before the arch had one (x86/powerpc: 2.6.27; s390: later), get_user_pages_fast was
        # mm/util.c's fallback: plain get_user_pages under mmap_sem.
        if not mm.has_special:
            why = "no pte_special"
        elif mm.machine.profile < V2_6_27:
            why = "no get_user_pages_fast before 2.6.27"
        else:
            why = f"no lockless get_user_pages_fast for {mm.fmt.arch} yet"
        why = f"{why} under {mm.fmt.profile}: no lockless walk"
        try:
            pfns = get_user_pages(mm, addr, nr_pages, write)
        except EFAULT as exc:
            exc.fallback_reason = why
            raise
        return GupFastResult(pfns, 0, int(pfns.size), why)
    _vas, ptes, reach = mm.pt.range_ptes(addr, nr_pages)
    ok = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
    reason = ""
    # gup_pte_range wants _PAGE_PRESENT|_PAGE_USER (x86, powerpc 2.6.27): a PROT_NONE PTE is
    # present to Linux but not to the user, and stops the walk. Generically: a PTE that
    # pte_modify to PAGE_NONE (protection_map[0]) leaves unchanged carries PAGE_NONE.
    protnone = np.zeros(nr_pages, dtype=np.bool_)
    if ok.any():
        none_prot = mm.fmt.protection_map[0]
        protnone[ok] = np.asarray(mm.ops.pte_modify(ptes[ok], none_prot), dtype=np.uint64) == ptes[ok]
        ok &= ~protnone
    if write:
        ok &= np.asarray(mm.ops.pte_write(ptes), dtype=np.bool_)
    special = np.zeros(nr_pages, dtype=np.bool_)
    if ok.any():
        special[ok] = mm.mode.pte_special(ptes[ok])
        ok &= ~special
    bad = np.flatnonzero(~ok)
    n_fast = int(bad[0]) if bad.size else nr_pages
    if bad.size:
        b = int(bad[0])
        if not reach[b] or not mm.ops.pte_present(int(ptes[b])):
            reason = "pte not present"
        elif protnone[b]:
            reason = "pte not user-accessible (PROT_NONE)"
        elif special[b]:
            reason = "special pte"
        else:
            reason = "pte not writable"
    fast = np.asarray(mm.ops.pte_pfn(ptes[:n_fast]), dtype=np.uint64)
    if n_fast:
        mm.machine.pages.get_page(fast)
        mm.trace_range("gup_fast", "arch/x86/mm/gup.c:gup_pte_range", None, addr, n_fast)
    if n_fast == nr_pages:
        return GupFastResult(fast, n_fast, 0, "")
    try:
        slow = get_user_pages(mm, addr + n_fast * mm.page_size, nr_pages - n_fast, write)
    except EFAULT as exc:
        if n_fast:
            return GupFastResult(fast, n_fast, 0, reason)
        exc.fallback_reason = reason
        raise
    return GupFastResult(np.concatenate([fast, slow]), n_fast, int(slow.size), reason)
