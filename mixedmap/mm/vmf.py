"""The modern insert family of ``mm/memory.c``: ``vmf_insert_*`` answer ``VM_FAULT_*`` codes.

4.17 made the driver inserts fault-handler helpers (:data:`~mixedmap.rules.VMF_INSERT`): an
already populated PTE is no longer ``-EBUSY`` but ``VM_FAULT_NOPAGE`` with the PTE left as it
was (a mkwrite insert over the same pfn upgrades it: young, dirty, writable if the VMA is), a
refusal is ``VM_FAULT_SIGBUS``, a page-table allocation failure ``VM_FAULT_OOM``; the four
BUG_ONs of ``vmf_insert_pfn_prot`` stay BUGs (:class:`VMBug`). ``vm_insert_page`` keeps its
errno but sets VM_MIXEDMAP (3.7) and maps the shared zero page special and uncounted where
``vm_mixed_zeropage_allowed`` (6.11). Every public insert requires its rule, so asking a
2.6.26/2.6.27 machine is :class:`~mixedmap.rules.UnsupportedRule` before anything changes.

Text followed: 6.18-era mm/memory.c after the pfn_t removal (``insert_pfn``,
``vmf_insert_pfn_prot``, ``vm_mixed_ok``, ``__vm_insert_mixed``, ``vm_mixed_zeropage_allowed``,
``validate_page_before_insert``, ``insert_page_into_pte_locked``, ``insert_pages``,
``vm_insert_pages``, ``vm_insert_page``). Not modelled: PAT cache modes
(``pfnmap_setup_cachemode_pfn``), x86's L1TF ``pfn_modify_allowed`` (always allowed here), the
mmap-lock ``BUG_ON(mmap_read_trylock())`` of ``vm_insert_page`` (the model has no lock), FS-DAX
VMAs and ``mm_forbids_zeropage`` (false), slab pages. Model choices: an unaligned address is
treated as outside the VMA (the 2.6.27 inserts of :mod:`mixedmap.mm.memory` refuse it too), and a
pfn beyond the arch's physical address bits is an :class:`AddressError` before any change.
"""

from __future__ import annotations

import errno as _errno
import itertools
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import EBUSY, EFAULT, EINVAL, ENOMEM, AddressError, KernelErrno, OutOfMemory, VMBug
from mixedmap.mm import rmap, zero
from mixedmap.mm.vma import VM, VMA, FaultResult
from mixedmap.phys.memmap import PG
from mixedmap.rules import (
    MIXED_ZEROPAGE,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    VM_INSERT_PAGES,
    VM_MIXED_OK,
    VMF_INSERT,
    VMF_INSERT_MIXED_MKWRITE,
    VMF_INSERT_PFN_PROT,
    require,
)

#: PageAnon, or a typed page (page tables): validate_page_before_insert's -EINVAL.
_NOT_INSERTABLE = np.uint32(PG.anon | PG.pagetable)


class InsertPages(NamedTuple):
    """What ``vm_insert_pages`` returns: its value and what it leaves in ``*num``."""

    #: 0, or the negative errno that stopped the batch.
    err: int
    #: Pages not mapped (0: all were); those before them are mapped.
    not_inserted: int


# -- helpers --------------------------------------------------------------------------------------
def _inside(vma: VMA, addr: int) -> bool:
    return vma.start <= addr < vma.end and addr % vma.mm.page_size == 0


def _check_pfn(vma: VMA, pfn: int, who: str) -> None:
    if not 0 <= pfn < vma.mm.fmt.max_pfn:
        raise AddressError(f"{who}: pfn {pfn:#x} is beyond {vma.mm.fmt.pa_bits} physical address bits")


def _maybe_mkwrite(vma: VMA, pte: int) -> int:
    """``maybe_mkwrite``: writable only if the VMA is."""
    return int(vma.mm.ops.pte_mkwrite(pte)) if vma.flags & VM.WRITE else pte


def _mkwrite_entry(vma: VMA, pte: int) -> int:
    """insert_pfn's mkwrite: ``maybe_mkwrite(pte_mkdirty(pte_mkyoung(pte)), vma)``."""
    ops = vma.mm.ops
    return _maybe_mkwrite(vma, int(ops.pte_mkdirty(ops.pte_mkyoung(pte))))


def _is_zero(vma: VMA, pfn: int) -> bool:
    return bool(zero.is_zero_pfn(vma.mm.machine, pfn)[0])


def _zeropage_allowed(vma: VMA) -> bool:
    """6.11 ``vm_mixed_zeropage_allowed``: COW VMAs, VMAs that can never be writable, or a
    ``pfn_mkwrite`` VMA that is VM_IO (FS-DAX is not modelled; mm_forbids_zeropage is false)."""
    if vma.is_cow:
        return True
    if not vma.flags & (VM.WRITE | VM.MAYWRITE):
        return True
    return getattr(vma.vm_ops, "pfn_mkwrite", None) is not None and bool(vma.flags & VM.IO)


def _page_flags(vma: VMA, pfns: NDArray[np.uint64]) -> NDArray[np.uint32]:
    memmap = vma.mm.machine.memmap
    row, col = memmap.rows(pfns)
    out: NDArray[np.uint32] = memmap.flags[row, col]
    return out


def fault_errno(ret: FaultResult, what: str, addr: int) -> None:
    """What a 2008 caller of ``vm_insert_pfn``/``vm_insert_mixed`` gets on a kernel that only has
    their ``vmf_`` successors: NOPAGE (a populated PTE included) is success, OOM is -ENOMEM,
    SIGBUS is -EFAULT."""
    if ret & FaultResult.OOM:
        raise ENOMEM(f"{what}: VM_FAULT_OOM at {addr:#x} (no memory for a page table)")
    if ret & FaultResult.SIGBUS:
        raise EFAULT(f"{what}: VM_FAULT_SIGBUS at {addr:#x}")


# -- insert_pfn / insert_page ----------------------------------------------------------------------
def _insert_pfn(vma: VMA, addr: int, pfn: int, prot: int, mkwrite: bool) -> FaultResult:
    """``insert_pfn``: a special PTE, no refcount, rmap or RSS; a populated PTE is left alone
    (NOPAGE) unless ``mkwrite`` finds the same pfn there, which it upgrades."""
    mm = vma.mm
    ops = mm.ops
    try:
        slot = mm.pt.pte_slot(addr, allocate=True)
    except OutOfMemory:
        return FaultResult.OOM
    assert slot is not None
    old = mm.pt.read_pte(slot)
    if not ops.pte_none(old):
        # A different pfn (a racing COW, block allocation) is skipped: WARN unless the zero pfn.
        if mkwrite and int(ops.pte_pfn(old)) == pfn:
            entry = _mkwrite_entry(vma, old)
            if entry != old:  # ptep_set_access_flags
                mm.pt.write_pte(slot, entry)
            mm.trace("insert_pfn_mkwrite", "mm/memory.c:insert_pfn", vma, addr, pfn, old)
        return FaultResult.NOPAGE
    entry = mm.mkspecial_one(int(ops.pfn_pte(pfn, prot)))
    if mkwrite:
        entry = _mkwrite_entry(vma, entry)
    mm.pt.write_pte(slot, entry)
    mm.trace("insert_pfn", "mm/memory.c:insert_pfn", vma, addr, pfn, old)
    return FaultResult.NOPAGE


def _validate_page_before_insert(vma: VMA, pfn: int) -> bool:
    """``validate_page_before_insert`` (-EINVAL); True for the (allowed) shared zero page.

    A pfn without a struct page is not a page a driver could hand over: -EINVAL as well.
    """
    m = vma.mm.machine
    if not m.pfn_valid(pfn)[0]:
        raise EINVAL(f"insert_page: pfn {pfn:#x} has no struct page")
    if int(m.pages.page_count(pfn)[0]) == 0:
        raise EINVAL(f"insert_page: pfn {pfn:#x} is not an allocated page (page_count 0)")
    if _is_zero(vma, pfn) and MIXED_ZEROPAGE.applies(m.profile):
        if not _zeropage_allowed(vma):
            raise EINVAL(f"insert_page: the shared zero page in {vma.describe()} (vm_mixed_zeropage_allowed)")
        return True
    if _page_flags(vma, np.array([pfn], dtype=np.uint64))[0] & _NOT_INSERTABLE:
        raise EINVAL(f"insert_page: pfn {pfn:#x} is an anonymous or typed page")
    return False


def _insert_page(vma: VMA, addr: int, pfn: int, prot: int, mkwrite: bool) -> None:
    """``insert_page`` -> ``insert_page_into_pte_locked`` (6.18): the zero page gets a special,
    uncounted PTE; any other page a refcount, file RSS and rmap. Raises the kernel's errno."""
    zero_page = _validate_page_before_insert(vma, pfn)
    mm = vma.mm
    ops = mm.ops
    try:
        slot = mm.pt.pte_slot(addr, allocate=True)
    except OutOfMemory as exc:
        raise ENOMEM(f"insert_page: no memory for a page table at {addr:#x}: {exc}") from exc
    assert slot is not None
    old = mm.pt.read_pte(slot)
    if not ops.pte_none(old):
        if not mkwrite:
            raise EBUSY(f"insert_page: PTE at {addr:#x} is already populated ({old:#x})")
        if int(ops.pte_pfn(old)) != pfn:
            raise EFAULT(f"insert_page: PTE at {addr:#x} maps pfn {int(ops.pte_pfn(old)):#x}, not {pfn:#x}")
        entry = int(ops.pte_mkyoung(_maybe_mkwrite(vma, old)))
        if entry != old:
            mm.pt.write_pte(slot, entry)
        mm.trace("insert_page_mkwrite", "mm/memory.c:insert_page", vma, addr, pfn, old)
        return
    if zero_page:
        entry = mm.mkspecial_one(int(ops.pfn_pte(pfn, prot)))
    else:
        mm.machine.pages.get_page(pfn)
        entry = int(ops.pfn_pte(pfn, prot))
        if mkwrite:
            entry = _mkwrite_entry(vma, entry)
        mm.rss_file += 1
        rmap.page_add_file_rmap(mm.machine.memmap, pfn)
    mm.pt.write_pte(slot, entry)
    mm.trace("insert_page", "mm/memory.c:insert_page", vma, addr, pfn, old)


# -- vmf_insert_pfn ------------------------------------------------------------------------------
def _vmf_insert_pfn_prot(vma: VMA, addr: int, pfn: int, prot: int, who: str) -> FaultResult:
    _check_pfn(vma, pfn, who)
    both = VM.PFNMAP | VM.MIXEDMAP
    if not vma.flags & both:
        raise VMBug(f"{who}: BUG_ON(!(vma->vm_flags & (VM_PFNMAP|VM_MIXEDMAP)))")
    if vma.flags & both == both:
        raise VMBug(f"{who}: BUG_ON(VM_PFNMAP and VM_MIXEDMAP both set)")
    if vma.flags & VM.PFNMAP and vma.is_cow:
        raise VMBug(f"{who}: BUG_ON(VM_PFNMAP && is_cow_mapping) - a COW PFNMAP VMA must be linear")
    if vma.flags & VM.MIXEDMAP and vma.mm.machine.pfn_valid(pfn)[0]:
        raise VMBug(f"{who}: BUG_ON(VM_MIXEDMAP && pfn_valid({pfn:#x})) - use vmf_insert_mixed")
    if not _inside(vma, addr):
        return FaultResult.SIGBUS
    return _insert_pfn(vma, addr, pfn, prot, mkwrite=False)


def vmf_insert_pfn_prot(vma: VMA, addr: int, pfn: int, prot: int) -> FaultResult:
    """mm/memory.c ``vmf_insert_pfn_prot`` (4.20): :func:`vmf_insert_pfn` with a caller's pgprot."""
    require(VMF_INSERT_PFN_PROT, vma.mm.machine.profile, "vmf_insert_pfn_prot")
    return _vmf_insert_pfn_prot(vma, addr, pfn, prot, "vmf_insert_pfn_prot")


def vmf_insert_pfn(vma: VMA, addr: int, pfn: int) -> FaultResult:
    """mm/memory.c ``vmf_insert_pfn`` (4.17): the four BUG_ONs of 2.6.27 ``vm_insert_pfn``,
    then SIGBUS outside the VMA, then ``insert_pfn``: NOPAGE, even over a populated PTE."""
    require(VMF_INSERT, vma.mm.machine.profile, "vmf_insert_pfn")
    return _vmf_insert_pfn_prot(vma, addr, pfn, vma.page_prot, "vmf_insert_pfn")


# -- vmf_insert_mixed -----------------------------------------------------------------------------
def _vm_mixed_ok(vma: VMA, pfn: int, mkwrite: bool) -> bool:
    profile = vma.mm.machine.profile
    is_zero = _is_zero(vma, pfn)
    if is_zero and MIXED_ZEROPAGE.applies(profile) and (mkwrite or not _zeropage_allowed(vma)):
        return False
    if vma.flags & VM.MIXEDMAP:
        return True
    return is_zero


def vm_mixed_ok(vma: VMA, pfn: int, mkwrite: bool = False) -> bool:
    """mm/memory.c ``vm_mixed_ok`` (6.18 text): may ``vmf_insert_mixed`` map ``pfn`` here?

    The zero pfn never with mkwrite and only where ``vm_mixed_zeropage_allowed``; then any pfn in
    a VM_MIXEDMAP VMA, and the zero pfn elsewhere (the checks mirror vm_normal_page's).
    """
    require(VM_MIXED_OK, vma.mm.machine.profile, "vm_mixed_ok")
    return _vm_mixed_ok(vma, pfn, mkwrite)


def vm_mixed_zeropage_allowed(vma: VMA) -> bool:
    """mm/memory.c ``vm_mixed_zeropage_allowed`` (6.11): may the shared zero page be mapped here?"""
    require(MIXED_ZEROPAGE, vma.mm.machine.profile, "vm_mixed_zeropage_allowed")
    return _zeropage_allowed(vma)


def _vm_insert_mixed(vma: VMA, addr: int, pfn: int, mkwrite: bool, who: str) -> FaultResult:
    """``__vm_insert_mixed``: without a special bit a pfn_valid pfn must be refcounted
    (``insert_page``), so the PTE agrees with what vm_normal_page later says."""
    _check_pfn(vma, pfn, who)
    if not _vm_mixed_ok(vma, pfn, mkwrite):
        return FaultResult.SIGBUS
    if not _inside(vma, addr):
        return FaultResult.SIGBUS
    mm = vma.mm
    if not mm.has_special and mm.machine.pfn_valid(pfn)[0]:
        try:
            _insert_page(vma, addr, pfn, vma.page_prot, mkwrite)
        except ENOMEM:
            return FaultResult.OOM
        except EBUSY:
            return FaultResult.NOPAGE
        except KernelErrno:
            return FaultResult.SIGBUS
        return FaultResult.NOPAGE
    return _insert_pfn(vma, addr, pfn, vma.page_prot, mkwrite)


def vmf_insert_mixed(vma: VMA, addr: int, pfn: int) -> FaultResult:
    """mm/memory.c ``vmf_insert_mixed`` (4.17): SIGBUS where :func:`vm_mixed_ok` refuses or
    outside the VMA (2.6.27 ``vm_insert_mixed`` BUG_ONs without MIXEDMAP), else NOPAGE."""
    require(VMF_INSERT, vma.mm.machine.profile, "vmf_insert_mixed")
    return _vm_insert_mixed(vma, addr, pfn, False, "vmf_insert_mixed")


def vmf_insert_mixed_mkwrite(vma: VMA, addr: int, pfn: int) -> FaultResult:
    """mm/memory.c ``vmf_insert_mixed_mkwrite`` (4.18): the new PTE is young, dirty and (VMA
    permitting) writable, and the same pfn already there is upgraded so; never the zero pfn."""
    require(VMF_INSERT_MIXED_MKWRITE, vma.mm.machine.profile, "vmf_insert_mixed_mkwrite")
    return _vm_insert_mixed(vma, addr, pfn, True, "vmf_insert_mixed_mkwrite")


# -- vm_insert_page(s) ----------------------------------------------------------------------------
def _make_mixedmap(vma: VMA, who: str) -> None:
    """The 3.7 test both insert-page entry points make before inserting."""
    if not vma.flags & VM.MIXEDMAP:
        if vma.flags & VM.PFNMAP:
            raise VMBug(f"{who}: BUG_ON(vma->vm_flags & VM_PFNMAP) on {vma.describe()}")
        vma.flags |= VM.MIXEDMAP


def vm_insert_page(vma: VMA, addr: int, pfn: int) -> None:
    """mm/memory.c ``vm_insert_page`` (3.7 on): -EFAULT outside the VMA; a VMA without MIXEDMAP
    gets it (a PFNMAP one is a BUG); then ``insert_page``: -EINVAL from
    ``validate_page_before_insert`` (refcount 0, anonymous, typed, a disallowed zero page),
    -ENOMEM, -EBUSY. As in the kernel MIXEDMAP is set before the page is validated; only a pfn
    without any struct page (which no driver could hand over) is -EINVAL before that."""
    require(VM_INSERT_PAGE_SETS_MIXEDMAP, vma.mm.machine.profile, "vm_insert_page (VM_MIXEDMAP form)")
    if not _inside(vma, addr):
        raise EFAULT(f"vm_insert_page: {addr:#x} is outside (or not a page of) {vma.describe()}")
    if not vma.mm.machine.pfn_valid(pfn)[0]:
        raise EINVAL(f"vm_insert_page: pfn {pfn:#x} has no struct page")
    _make_mixedmap(vma, "vm_insert_page")
    _insert_page(vma, addr, pfn, vma.page_prot, mkwrite=False)


def vm_insert_pages(vma: VMA, addr: int, pfns: NDArray[np.integer] | list[int]) -> InsertPages:
    """mm/memory.c ``vm_insert_pages`` (5.8): ``vm_insert_page`` for consecutive addresses in one
    batch. Pages are mapped in order up to the first that fails (validation -EINVAL, a
    populated PTE -EBUSY, a PTE table it cannot allocate -ENOMEM); the result carries that
    errno and the count not inserted (``*num``), the pages before it stay mapped.
    """
    require(VM_INSERT_PAGES, vma.mm.machine.profile, "vm_insert_pages")
    arr = np.asarray(pfns)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise AddressError(
            f"vm_insert_pages: pfns must be a 1-D array of integers, got {arr.dtype} {arr.shape}"
        )
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= vma.mm.fmt.max_pfn):
        raise AddressError(f"vm_insert_pages: pfns outside [0, {vma.mm.fmt.max_pfn:#x})")
    pages = arr.astype(np.uint64)
    num = int(pages.size)
    mm = vma.mm
    m = mm.machine
    ps = mm.page_size
    if addr % ps or addr < vma.start or addr + num * ps - 1 >= vma.end:
        return InsertPages(-_errno.EFAULT, num)
    _make_mixedmap(vma, "vm_insert_pages")
    if num == 0:
        return InsertPages(0, 0)
    # validate_page_before_insert for every page, then the busy PTEs: the first failure stops it.
    valid = m.pfn_valid(pages)
    bad = ~valid
    is_zero = zero.is_zero_pfn(m, pages) & MIXED_ZEROPAGE.applies(m.profile)
    if valid.any():
        vp = pages[valid]
        counts = m.pages.page_count(vp)
        typed = (_page_flags(vma, vp) & _NOT_INSERTABLE) != 0
        zero_ok = _zeropage_allowed(vma)
        vz = is_zero[valid]
        bad[valid] = (counts == 0) | np.where(vz, not zero_ok, typed)
    vas, ptes, reach = mm.pt.range_ptes(addr, num)
    busy = reach & ~np.asarray(mm.ops.pte_none(ptes), dtype=np.bool_)
    fails = np.flatnonzero(bad | busy)
    stop = int(fails[0]) if fails.size else num
    err = 0 if stop == num else (-_errno.EINVAL if bad[stop] else -_errno.EBUSY)
    # insert_pages allocates the PTE table of each pmd before trying its pages.
    leaf = mm.fmt.levels[-1]
    tables = vas >> np.uint64(leaf.shift + leaf.index_bits)
    last = min(stop, num - 1)
    starts = [0, *(np.flatnonzero(np.diff(tables[: last + 1])) + 1).tolist(), last + 1]
    epas: list[NDArray[np.uint64]] = []
    for s, e in itertools.pairwise(starts):
        try:
            epa, _ = mm.pt.pte_slots(vas[s:e], allocate=True)
        except OutOfMemory:
            stop, err = s, -_errno.ENOMEM
            break
        epas.append(epa)
    if stop:
        ins = pages[:stop]
        values = np.asarray(mm.ops.pfn_pte(ins, vma.page_prot), dtype=np.uint64)
        z = is_zero[:stop]
        if z.any() and mm.has_special:
            values[z] = mm.mode.pte_mkspecial(values[z])
        normal = ins[~z]
        if normal.size:
            m.pages.get_page(normal)
            mm.rss_file += int(normal.size)
            rmap.page_add_file_rmap(m.memmap, normal)
        mm.pt.write_ptes(np.concatenate(epas)[:stop], values)
        mm.trace_range("insert_pages", "mm/memory.c:insert_pages", vma, addr, stop)
    return InsertPages(err, num - stop)
