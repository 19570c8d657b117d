"""The special-mapping core of 2.6.27 ``mm/memory.c``: classify, insert, remap, zap, copy.

``vm_normal_page`` is the single classifier every path asks before touching a struct page.
Scheme A (the profile has a special bit): the bit decides. Scheme B (no bit: x86 and ppc64
under 2.6.26, the toy arch): VM_MIXEDMAP decides by ``pfn_valid``, VM_PFNMAP by the
``vm_pgoff`` linearity rule and ``is_cow_mapping``. Range operations (zap, fork-copy, remap)
classify a whole range with numpy and call the arch's special hook once per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.errors import EBUSY, EFAULT, EINVAL, ENOMEM, EPERM, OutOfMemory, VMBug
from mixedmap.mm import rmap, vmf
from mixedmap.mm.vma import VM, VMA
from mixedmap.mm.zero import current_zero_pfn
from mixedmap.phys.page_alloc import GUP_PIN_COUNTING_BIAS
from mixedmap.rules import (
    BAD_PAGE_MAP_REPORT,
    FIND_NORMAL_PAGE,
    FORK_COPIES_MIXEDMAP,
    FORK_COPIES_PINNED,
    FORK_WRPROTECT_WRITABLE,
    REMAP_DONTEXPAND_DONTDUMP,
    REMAP_ZAP_ON_ERROR,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    VM_INSERT_PFN_ERRNO,
    ZAP_VMA_PTES_VOID,
    ZERO_PAGE,
)

if TYPE_CHECKING:
    from mixedmap.machine import Machine
    from mixedmap.mm.mm import MM


# -- classification ---------------------------------------------------------------------------
#: Why a PTE is a "bad page map": the two print_bad_page_map calls of 6.18 ``__vm_normal_page``.
BAD_SPECIAL = "special PTE in a VMA without VM_PFNMAP/VM_MIXEDMAP, not mapping the zero page"
BAD_PFN = "pfn above highest_memmap_pfn (a corrupted page table entry)"

_log = get_logger("mixedmap.mm")


@attrs.frozen
class BadPageMap:
    """One "BUG: Bad page map" report (:data:`~mixedmap.rules.BAD_PAGE_MAP_REPORT`, 2.6.29).

    mm/memory.c ``print_bad_page_map`` (``print_bad_pte`` before 6.18) prints the entry, the
    VMA and a stack, taints the kernel (TAINT_BAD_PAGE) and returns: ``vm_normal_page`` then
    answers NULL, so every caller carries on as for a special PTE. The model appends one of
    these to ``mm.bad_page_maps``, logs it and traces it; it keeps every report where the
    kernel prints at most 60 a minute (``is_bad_page_map_ratelimited``).
    """

    address: int
    pte: int
    pfn: int
    #: The kernel function that found the entry (print_bad_page_map's caller).
    function: str
    reason: str


@runtime_checkable
class FindNormalPage(Protocol):
    """``vm_ops->find_normal_page`` (:data:`~mixedmap.rules.FIND_NORMAL_PAGE`): the page behind
    a special PTE whose pfn does not name it (Xen gntdev's grant mappings). 6.18
    ``__vm_normal_page`` asks it first for every special PTE of the VMA and returns its answer
    as is: a pfn with a struct page, or None (NULL)."""

    def find_normal_page(self, vma: VMA, addr: int) -> int | None: ...


def highest_memmap_pfn(machine: Machine) -> int:
    """``highest_memmap_pfn``: the last pfn a struct page was initialised for, -1 with none.

    mm/mm_init.c ``memmap_init_range`` raises it to ``end_pfn - 1`` for the boot memmap of RAM
    and for every hotplugged or ZONE_DEVICE memmap, so it is the end of the highest region with
    a memmap, not of its memory section (a section's tail beyond it is initialised by
    ``init_unavailable_range``, which leaves it alone). vm_normal_page compares pfns with it
    since 2.6.29 (commit 22b31eec63e5), a cheap stand-in for pfn_valid. One comparison per
    region, no per-pfn work; the kernel never lowers it when memory goes away, the model
    follows the regions present now.
    """
    shift = machine.memmap.page_shift
    return max((r.end >> shift for r in machine.regions if r.memmap), default=0) - 1


def _report_bad_page_map(vma: VMA, addr: int, pte: int, pfn: int, reason: str) -> None:
    """``print_bad_page_map``: record, log and trace; the caller returns NULL."""
    mm = vma.mm
    rec = BadPageMap(address=addr, pte=pte, pfn=pfn, function="vm_normal_page", reason=reason)
    mm.bad_page_maps.append(rec)
    _log.warning("bad_page_map", mm=mm.id, addr=f"{addr:#x}", pte=f"{pte:#x}", pfn=f"{pfn:#x}", reason=reason)
    mm.trace("bad_page_map", "mm/memory.c:print_bad_page_map", vma, addr, pfn, pte)


def _hook(vma: VMA) -> FindNormalPage | None:
    """The VMA's find_normal_page hook, where the profile consults one."""
    ops = vma.vm_ops
    if ops is None or not FIND_NORMAL_PAGE.applies(vma.mm.machine.profile):
        return None
    return ops if isinstance(ops, FindNormalPage) else None


def _found(vma: VMA, addr: int, pfn: int | None) -> int | None:
    """The hook's answer, which must be a page the model can account (or None)."""
    if pfn is not None and not vma.mm.machine.pfn_valid(pfn)[0]:
        raise VMBug(f"find_normal_page at {addr:#x} returned pfn {pfn:#x}, which has no struct page")
    return pfn


def vm_normal_page(vma: VMA, addr: int, pte: int) -> int | None:
    """The pfn whose struct page the PTE maps and refcounts, or None for a special PTE.

    mm/memory.c ``vm_normal_page``, both schemes, rule by rule:

    * 2.6.26/2.6.27: scheme A, a special PTE outside PFNMAP/MIXEDMAP is a VM_BUG_ON; scheme B
      as the linearity rule says; a normal PTE without a struct page is a VM_BUG_ON (VMBug).
    * 6.18 ``__vm_normal_page``: scheme A, a special PTE is first offered to
      ``vm_ops->find_normal_page`` (:class:`FindNormalPage`, 6.18), then is NULL in a
      PFNMAP|MIXEDMAP VMA or for the zero pfn (2.6.32), else a :class:`BadPageMap` and NULL
      (2.6.29); scheme B, the zero pfn is NULL after the MIXEDMAP/PFNMAP tests; the tail
      reports a pfn above :func:`highest_memmap_pfn` and answers NULL. A pfn at or below it
      without a struct page has no model (the kernel's pfn_to_page points into a memmap hole)
      and stays a VMBug.
    """
    mm = vma.mm
    machine = mm.machine
    profile = machine.profile
    pfn = int(mm.ops.pte_pfn(pte))
    report = BAD_PAGE_MAP_REPORT.applies(profile)
    zero = current_zero_pfn(machine) if ZERO_PAGE.applies(profile) else None
    if mm.has_special:
        if mm.pte_special_one(pte):
            hook = _hook(vma)
            if hook is not None:
                return _found(vma, addr, hook.find_normal_page(vma, addr))
            if vma.flags & (VM.PFNMAP | VM.MIXEDMAP) or pfn == zero:
                return None
            if report:
                _report_bad_page_map(vma, addr, pte, pfn, BAD_SPECIAL)
                return None
            raise VMBug(f"bad pte {pte:#x} at {addr:#x}: special PTE in a VMA without PFNMAP/MIXEDMAP")
    else:
        if vma.flags & VM.MIXEDMAP:
            if not mm.pfn_valid_one(pfn):
                return None
        elif vma.flags & VM.PFNMAP:
            if pfn == vma.linear_pgoff(addr):
                return None
            if not vma.is_cow:
                return None
        if pfn == zero:
            return None
    if report and pfn > highest_memmap_pfn(machine):
        _report_bad_page_map(vma, addr, pte, pfn, BAD_PFN)
        return None
    if not mm.pfn_valid_one(pfn):
        if report:
            raise VMBug(
                f"vm_normal_page: pte {pte:#x} at {addr:#x} maps pfn {pfn:#x}, not above highest_memmap_pfn "
                f"but in a memmap hole (pfn_to_page would point at no struct page)"
            )
        raise VMBug(
            f"vm_normal_page: pte {pte:#x} at {addr:#x} is normal but pfn {pfn:#x} has no struct page"
        )
    return pfn


def vm_normal_pages(vma: VMA, vas: NDArray[np.uint64], ptes: NDArray[np.uint64]) -> NDArray[np.int64]:
    """Batched :func:`vm_normal_page` over present PTEs in address order: pfn, or -1 where special.

    The same answers, reports (in address order) and errors as the scalar function PTE by PTE:
    a VMBug is raised after the reports of the PTEs before it. The find_normal_page hook is a
    per-address kernel callback, asked once per special PTE of a VMA that has one.
    """
    mm = vma.mm
    machine = mm.machine
    profile = machine.profile
    report = BAD_PAGE_MAP_REPORT.applies(profile)
    zero = current_zero_pfn(machine) if ZERO_PAGE.applies(profile) else None
    pfns = np.asarray(mm.ops.pte_pfn(ptes), dtype=np.uint64)
    n = int(ptes.shape[0])
    normal = np.ones(ptes.shape, dtype=np.bool_)
    bad: NDArray[np.bool_] | None = None  # to report as bad page maps (both reasons)
    bad_special: NDArray[np.bool_] | None = None
    hooked: NDArray[np.bool_] | None = None
    hook: FindNormalPage | None = None
    if mm.has_special:
        special = np.asarray(mm.mode.pte_special(ptes), dtype=np.bool_)
        if special.any():
            hook = _hook(vma)
            if hook is not None:
                hooked = special
            elif not vma.flags & (VM.PFNMAP | VM.MIXEDMAP):
                stray = special if zero is None else special & (pfns != np.uint64(zero))
                if stray.any():
                    if not report:
                        first = int(np.flatnonzero(stray)[0])
                        raise VMBug(
                            f"bad pte {int(ptes[first]):#x} at {int(vas[first]):#x}: special PTE in a VMA "
                            "without PFNMAP/MIXEDMAP"
                        )
                    bad = bad_special = stray
        normal = ~special
    elif vma.flags & VM.MIXEDMAP:
        normal = machine.pfn_valid(pfns)
    elif vma.flags & VM.PFNMAP:
        idx = (vas - np.uint64(vma.start)) >> np.uint64(mm.page_shift)
        linear = pfns == idx + np.uint64(vma.pgoff)
        normal = ~linear if vma.is_cow else np.zeros(ptes.shape, dtype=np.bool_)
    if zero is not None and not mm.has_special:
        normal &= pfns != np.uint64(zero)
    if report:
        top = highest_memmap_pfn(machine)
        above = normal & (pfns > np.uint64(top)) if top >= 0 else normal.copy()
        if above.any():
            normal &= ~above
            bad = above if bad is None else bad | above
    first_bug, message = n, ""
    if normal.any():
        valid = machine.pfn_valid(pfns[normal])
        if not valid.all():
            first_bug = int(np.flatnonzero(normal)[~valid][0])
            bad_pfn = int(pfns[first_bug])
            message = (
                f"vm_normal_page: normal PTE maps pfn {bad_pfn:#x} which has no struct page"
                if not report
                else f"vm_normal_page: pte {int(ptes[first_bug]):#x} at {int(vas[first_bug]):#x} maps pfn "
                f"{bad_pfn:#x}, not above highest_memmap_pfn but in a memmap hole"
            )
    if bad is not None:
        for i in np.flatnonzero(bad[:first_bug]).tolist():
            reason = BAD_SPECIAL if bad_special is not None and bad_special[i] else BAD_PFN
            _report_bad_page_map(vma, int(vas[i]), int(ptes[i]), int(pfns[i]), reason)
    out = np.where(normal, pfns.astype(np.int64), np.int64(-1))
    if hooked is not None and hook is not None:
        for i in np.flatnonzero(hooked[:first_bug]).tolist():
            found = _found(vma, int(vas[i]), hook.find_normal_page(vma, int(vas[i])))
            out[i] = -1 if found is None else found
    if first_bug < n:
        raise VMBug(message)
    return out


# -- insertion ----------------------------------------------------------------------------------
def _slot(vma: VMA, addr: int) -> int:
    try:
        return vma.mm.fault_pte_slot(addr)
    except OutOfMemory as exc:
        raise ENOMEM(f"no memory for a page table at {addr:#x}: {exc}") from exc


def _check_range(vma: VMA, addr: int, who: str) -> None:
    if addr < vma.start or addr >= vma.end:
        raise EFAULT(f"{who}: address {addr:#x} is outside the VMA [{vma.start:#x}, {vma.end:#x})")
    if addr % vma.mm.page_size:
        raise EFAULT(f"{who}: address {addr:#x} is not page aligned")


def _pte_none(mm: MM, pte: int) -> bool:
    """``pte_none``, the empty value recognised without asking the arch (see MM.empty_is_none)."""
    return (pte == mm.empty_pte and mm.empty_is_none) or bool(mm.ops.pte_none(pte))


def insert_page(vma: VMA, addr: int, pfn: int, prot: int) -> None:
    """mm/memory.c ``insert_page``: a refcounted, rmapped, normal PTE (file_rss +1)."""
    mm = vma.mm
    if not mm.machine.pfn_valid(pfn)[0]:
        raise EINVAL(f"insert_page: pfn {pfn:#x} has no struct page")
    if rmap.is_anon(mm.machine.memmap, pfn)[0]:
        raise EINVAL(f"insert_page: pfn {pfn:#x} is an anonymous page")
    slot = _slot(vma, addr)
    old = mm.mem.read_u64(slot, mm.byteorder)
    if not mm.ops.pte_none(old):
        raise EBUSY(f"insert_page: PTE at {addr:#x} is already populated ({old:#x})")
    mm.machine.pages.get_page(pfn)
    mm.rss_file += 1
    rmap.page_add_file_rmap(mm.machine.memmap, pfn)
    mm.pt.write_pte(slot, int(mm.ops.pfn_pte(pfn, prot)))
    mm.trace("insert_page", "mm/memory.c:insert_page", vma, addr, pfn, old)


def vm_insert_page(vma: VMA, addr: int, pfn: int) -> None:
    """mm/memory.c ``vm_insert_page``: 2.6.27 marks the VMA VM_INSERTPAGE; from 3.7
    (:data:`~mixedmap.rules.VM_INSERT_PAGE_SETS_MIXEDMAP`) it sets VM_MIXEDMAP, BUGs on a PFNMAP
    VMA and validates the page as :func:`mixedmap.mm.vmf.vm_insert_page` does."""
    if VM_INSERT_PAGE_SETS_MIXEDMAP.applies(vma.mm.machine.profile):
        vmf.vm_insert_page(vma, addr, pfn)
        return
    _check_range(vma, addr, "vm_insert_page")
    mm = vma.mm
    if not mm.machine.pfn_valid(pfn)[0] or mm.machine.pages.page_count(pfn)[0] == 0:
        raise EINVAL(f"vm_insert_page: pfn {pfn:#x} is not an allocated page (page_count 0)")
    vma.flags |= VM.INSERTPAGE
    insert_page(vma, addr, pfn, vma.page_prot)


def insert_pfn(vma: VMA, addr: int, pfn: int, prot: int) -> None:
    """mm/memory.c ``insert_pfn``: a special PTE; no refcount, rmap or RSS."""
    mm = vma.mm
    if pfn >= mm.max_pfn:
        raise EINVAL(f"insert_pfn: pfn {pfn:#x} is beyond {mm.fmt.pa_bits} physical address bits")
    slot = _slot(vma, addr)
    old = mm.mem.read_u64(slot, mm.byteorder)
    if not _pte_none(mm, old):
        raise EBUSY(f"insert_pfn: PTE at {addr:#x} is already populated ({old:#x})")
    mm.pt.write_pte(slot, mm.mkspecial_one(int(mm.ops.pfn_pte(pfn, prot))))
    mm.trace("insert_pfn", "mm/memory.c:insert_pfn", vma, addr, pfn, old)


def vm_insert_pfn(vma: VMA, addr: int, pfn: int) -> None:
    """mm/memory.c ``vm_insert_pfn``: the four BUG_ONs, then -EFAULT, then insert_pfn.

    Gone in 4.20 (:data:`~mixedmap.rules.VM_INSERT_PFN_ERRNO`); a 6.18 machine answers with what
    6.18 has, :func:`mixedmap.mm.vmf.vmf_insert_pfn`, read back as an errno: NOPAGE is success
    (an already populated PTE too, left as it was), SIGBUS -EFAULT, OOM -ENOMEM.
    """
    if not VM_INSERT_PFN_ERRNO.applies(vma.mm.machine.profile):
        if not 0 <= pfn < vma.mm.fmt.max_pfn:
            raise EINVAL(f"vm_insert_pfn: pfn {pfn:#x} is beyond {vma.mm.fmt.pa_bits} physical address bits")
        vmf.fault_errno(vmf.vmf_insert_pfn(vma, addr, pfn), "vm_insert_pfn (as vmf_insert_pfn)", addr)
        return
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
    will later say. Without a special bit a pfn_valid pfn becomes a refcounted page.

    Gone in 4.20 like ``vm_insert_pfn``: a 6.18 machine answers with
    :func:`mixedmap.mm.vmf.vmf_insert_mixed` read back as an errno (no MIXEDMAP is then SIGBUS,
    i.e. -EFAULT, not a BUG; a populated PTE is success and left as it was).
    """
    if not VM_INSERT_PFN_ERRNO.applies(vma.mm.machine.profile):
        if not 0 <= pfn < vma.mm.fmt.max_pfn:
            raise EINVAL(
                f"vm_insert_mixed: pfn {pfn:#x} is beyond {vma.mm.fmt.pa_bits} physical address bits"
            )
        vmf.fault_errno(vmf.vmf_insert_mixed(vma, addr, pfn), "vm_insert_mixed (as vmf_insert_mixed)", addr)
        return
    mm = vma.mm
    if not vma.flags & VM.MIXEDMAP:
        raise VMBug("vm_insert_mixed: BUG_ON(!(vma->vm_flags & VM_MIXEDMAP))")
    _check_range(vma, addr, "vm_insert_mixed")
    if not mm.has_special and (mm.pfn_valid_one(pfn) if pfn >= 0 else mm.machine.pfn_valid(pfn)[0]):
        insert_page(vma, addr, pfn, vma.page_prot)
    else:
        insert_pfn(vma, addr, pfn, vma.page_prot)


def remap_pfn_range(vma: VMA, addr: int, pfn: int, size: int, prot: int | None = None) -> None:
    """mm/memory.c ``remap_pfn_range`` (2.6.27): special PTEs for consecutive pfns.

    A COW VMA must be remapped whole (-EINVAL) and gets vm_pgoff := pfn (the linearity
    rule); flags gain VM_IO | VM_RESERVED | VM_PFNMAP. The kernel BUGs on a populated PTE
    half-way; the model checks every PTE first, so a BUG leaves nothing changed. From 3.7
    (:data:`~mixedmap.rules.REMAP_DONTEXPAND_DONTDUMP`) see :func:`_remap_pfn_range_modern`.
    """
    mm = vma.mm
    prot = vma.page_prot if prot is None else prot
    if REMAP_DONTEXPAND_DONTDUMP.applies(mm.machine.profile):
        _remap_pfn_range_modern(vma, addr, pfn, size, prot)
        return
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


def _remap_pfn_range_modern(vma: VMA, addr: int, pfn: int, size: int, prot: int) -> None:
    """6.18 ``remap_pfn_range`` -> ``remap_pfn_range_notrack`` -> ``remap_pfn_range_internal``.

    An unaligned address is -EINVAL (WARN_ON_ONCE); a COW VMA must still be remapped whole and
    gets vm_pgoff := pfn; flags gain VM_IO | VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP (no
    VM_RESERVED). From 6.11 (:data:`~mixedmap.rules.REMAP_ZAP_ON_ERROR`) a failure after the
    alignment check zaps [addr, addr + size) first, so the partial COW -EINVAL unmaps what was
    there and -ENOMEM leaves the new flags with nothing mapped. As in 2.6.27 the model checks
    the range and every PTE before writing, so a BUG changes nothing. Not modelled: PAT
    tracking (-EINVAL) and ``pfn_modify_allowed`` (-EACCES).
    """
    mm = vma.mm
    zap_on_error = REMAP_ZAP_ON_ERROR.applies(mm.machine.profile)
    if addr % mm.page_size:
        raise EINVAL(f"remap_pfn_range: address {addr:#x} is not page aligned (WARN_ON_ONCE)")
    size = -(-size // mm.page_size) * mm.page_size  # end = addr + PAGE_ALIGN(size)
    end = addr + size
    if addr < vma.start or end > vma.end:
        raise EINVAL(f"remap_pfn_range: [{addr:#x}, {end:#x}) is outside the VMA {vma.describe()}")
    npages = size >> mm.page_shift
    if pfn < 0 or pfn + npages > mm.fmt.max_pfn:
        raise EINVAL(f"remap_pfn_range: pfns [{pfn:#x}, +{npages:#x}) exceed {mm.fmt.pa_bits} physical bits")
    if vma.is_cow and (addr != vma.start or end != vma.end):
        if zap_on_error:
            zap_pte_range(vma, addr, end)
        raise EINVAL("remap_pfn_range: a COW mapping must be remapped whole (vm_pgoff becomes the pfn)")
    if size <= 0:
        raise VMBug(f"remap_pfn_range: BUG_ON(addr >= end) for [{addr:#x}, {end:#x})")
    vas, ptes, _reach = mm.pt.range_ptes(addr, npages)
    used = ~np.asarray(mm.ops.pte_none(ptes), dtype=np.bool_)
    if used.any():
        va = int(vas[used][0])
        raise VMBug(
            f"remap_pte_range: BUG_ON(!pte_none(ptep_get(pte))) at {va:#x} (pte {int(ptes[used][0]):#x})"
        )
    if vma.is_cow:
        vma.pgoff = pfn
    vma.flags |= VM.IO | VM.PFNMAP | VM.DONTEXPAND | VM.DONTDUMP
    try:
        epa, _ = mm.pt.pte_slots(vas, allocate=True)
    except OutOfMemory as exc:
        if zap_on_error:
            zap_pte_range(vma, addr, end)
        raise ENOMEM(f"remap_pfn_range: no memory for page tables: {exc}") from exc
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


def zap_vma_ptes(vma: VMA, addr: int, size: int) -> int | None:
    """mm/memory.c ``zap_vma_ptes``: PFNMAP VMAs only; 2.6.27 returns -1 otherwise (EPERM
    here) and 0. From 4.18 (:data:`~mixedmap.rules.ZAP_VMA_PTES_VOID`) it returns nothing and
    does nothing unless ``range_in_vma`` and VM_PFNMAP."""
    inside = vma.start <= addr and addr + size <= vma.end
    if ZAP_VMA_PTES_VOID.applies(vma.mm.machine.profile):
        if inside and vma.flags & VM.PFNMAP:
            zap_pte_range(vma, addr, addr + size)
        return None
    if not vma.flags & VM.PFNMAP or not inside:
        raise EPERM(f"zap_vma_ptes: [{addr:#x}, +{size:#x}) is not inside a VM_PFNMAP VMA (returns -1)")
    zap_pte_range(vma, addr, addr + size)
    return 0


# -- fork -----------------------------------------------------------------------------------------
def needs_cow_for_dma(vma: VMA, pfns: NDArray[np.int64]) -> NDArray[np.bool_]:
    """include/linux/mm.h ``folio_needs_cow_for_dma`` per PTE (``pfns`` from
    :func:`vm_normal_pages`, -1 for no page): an anonymous page in a COW VMA of an mm that ever
    pinned (MMF_HAS_PINNED: the pin ledger) whose refcount reads as pinned
    (``folio_maybe_dma_pinned``: refcount >= GUP_PIN_COUNTING_BIAS)."""
    machine = vma.mm.machine
    out = np.zeros(pfns.shape, dtype=np.bool_)
    if not vma.is_cow or not machine.pages.has_pins:
        return out
    idx = np.flatnonzero(pfns >= 0)
    if idx.size == 0:
        return out
    arr = pfns[idx].astype(np.uint64)
    anon = np.asarray(rmap.is_anon(machine.memmap, arr), dtype=np.bool_)
    pinned = (machine.pages.pin_count(arr) > 0) & (machine.pages.page_count(arr) >= GUP_PIN_COUNTING_BIAS)
    out[idx[anon & pinned]] = True
    return out


def _copy_present_pages(
    dst: MM, dst_vma: VMA, vas: NDArray[np.uint64], src_pfns: NDArray[np.int64], new: NDArray[np.uint64]
) -> NDArray[np.uint64]:
    """6.18 mm/memory.c ``copy_present_page`` for each pinned page: the child's own copy,
    ``maybe_mkwrite(pte_mkdirty(mk_pte(new, vm_page_prot)))``, a new exclusive anon rmap and
    anon RSS. Returns the child's PTEs."""
    out = np.empty(vas.shape, dtype=np.uint64)
    for i, (va, src_pfn, pfn) in enumerate(zip(vas.tolist(), src_pfns.tolist(), new.tolist(), strict=True)):
        dst.copy_page(src_pfn, pfn)
        entry = int(dst.ops.pte_mkdirty(dst.ops.pfn_pte(pfn, dst_vma.page_prot)))
        if dst_vma.flags & VM.WRITE:
            entry = int(dst.ops.pte_mkwrite(entry))
        out[i] = entry
        rmap.page_add_new_anon_rmap(dst.machine.memmap, pfn, dst.id, dst_vma.linear_pgoff(va))
    dst_vma.anon_vma = True
    dst.rss_anon += int(vas.size)
    return out


def copy_page_range(dst: MM, src_vma: VMA, dst_vma: VMA) -> int:
    """mm/memory.c ``copy_page_range``/``copy_one_pte`` (2.6.27); returns PTEs copied.

    A VMA without HUGETLB|NONLINEAR|PFNMAP|INSERTPAGE and without an anon_vma is not
    copied at all: the child refaults (XIP MIXEDMAP mappings that never COWed). From 3.7
    (:data:`~mixedmap.rules.FORK_COPIES_MIXEDMAP`) the test is 6.18 ``vma_needs_copy``:
    PFNMAP|MIXEDMAP or an anon_vma (a uffd-wp child is not modelled), so every MIXEDMAP VMA
    is copied. Per PTE 6.18 ``__copy_present_ptes`` write-protects a COW PTE only if it is
    writable (:data:`~mixedmap.rules.FORK_WRPROTECT_WRITABLE`, 2.6.27 did every one), cleans
    a shared one and ages all; special PTEs are copied so, touching no page. From 5.9
    (:data:`~mixedmap.rules.FORK_COPIES_PINNED`) an anonymous page that may be DMA-pinned is
    copied for the child at once (``copy_present_page``) and the parent's PTE is left as it is.
    """
    src = src_vma.mm
    profile = src.machine.profile
    if FORK_COPIES_MIXEDMAP.applies(profile):
        copy_flags = VM.PFNMAP | VM.MIXEDMAP
    else:
        copy_flags = VM.HUGETLB | VM.NONLINEAR | VM.PFNMAP | VM.INSERTPAGE
    if not src_vma.flags & copy_flags and not src_vma.anon_vma:
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
    early = needs_cow_for_dma(src_vma, pfns) if FORK_COPIES_PINNED.applies(profile) else None
    copies = None
    if early is not None and early.any():
        try:  # before anything changes: an OOM here leaves parent and child as they were
            copies = src.machine.pages.alloc_pages(int(early.sum()))
        except OutOfMemory as exc:
            raise ENOMEM(f"fork: no memory to copy a pinned page for the child: {exc}") from exc
    child = ptes
    if src_vma.is_cow:
        child = np.asarray(src.ops.pte_wrprotect(ptes), dtype=np.uint64)
        if FORK_WRPROTECT_WRITABLE.applies(profile):
            child = np.where(np.asarray(src.ops.pte_write(ptes), dtype=np.bool_), child, ptes)
        if copies is not None and early is not None:
            child = np.where(early, ptes, child)  # the pinned page stays writable in the parent
        changed = child != ptes
        if changed.any():
            src.pt.write_ptes(src.pt.epas_for(vas[changed]), child[changed])
    if src_vma.flags & VM.SHARED:
        child = np.asarray(src.ops.pte_mkclean(child), dtype=np.uint64)
    child = np.asarray(src.ops.pte_mkold(child), dtype=np.uint64)
    normal = pfns >= 0
    if copies is not None:
        assert early is not None
        child = child.copy()
        child[early] = _copy_present_pages(dst, dst_vma, vas[early], pfns[early], copies)
        normal &= ~early
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
