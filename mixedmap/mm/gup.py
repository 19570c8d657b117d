"""get_user_pages and pin_user_pages: the slow path and the lockless fast path, per profile.

2.6.26/2.6.27 (mm/memory.c ``get_user_pages``/``follow_page``, arch/x86/mm/gup.c
``get_user_pages_fast``): every page handed out carries one reference (FOLL_GET), released
with ``put_page``; a PTE without a struct page is -EFAULT. 6.18 mm/gup.c keeps that for
``get_user_pages`` but follows the rules of :mod:`mixedmap.rules` one by one:

* ``check_vma_flags``: VM_IO|VM_PFNMAP -EFAULT, FOLL_LONGTERM on fs-dax -EOPNOTSUPP
  (:data:`~mixedmap.rules.FOLL_LONGTERM`), a forced write only in a COW mapping
  (:data:`~mixedmap.rules.GUP_FORCE_COW_ONLY`), a long-term writable pin of a file mapping
  that needs dirty tracking -EFAULT (:data:`~mixedmap.rules.GUP_LONGTERM_FILE_WRITE`);
* ``follow_page_pte``: the zero pfn is the zero page; another PTE without a page is
  ``follow_pfn_pte``'s -EEXIST (:data:`~mixedmap.rules.GUP_EEXIST`), which stops a GUP
  that fills a pages array (:data:`~mixedmap.rules.GUP_PAGES_EEXIST`) and is stepped over
  by one that fills none (populate);
* ``try_grab_folio``/``gup_put_folio``: FOLL_GET adds one reference, FOLL_PIN adds
  ``GUP_PIN_COUNTING_BIAS`` (1024) to a small folio (:data:`~mixedmap.rules.GUP_PIN_COUNTING_BIAS`)
  but nothing to the shared zero page (:data:`~mixedmap.rules.GUP_ZERO_PAGE_UNPINNED`); pins are
  dropped with :func:`unpin_user_pages`, and the page allocator keeps an exact ledger of them
  so that an unpin without a pin, a ``put_page`` eating a pin's references, and pins still
  held when an mm exits are caught and named by pfn.

The lockless walk is the same in both eras (present, user-accessible, writable when writing,
not special); in 6.18 it is mm/gup.c ``gup_fast_pte_range`` on every arch with
CONFIG_HAVE_GUP_FAST and the special bit (s390 included), and hands the rest to the 6.18 slow
path. Functions that exist only from a release on (``pin_user_pages``...) ``require`` their
rule, so asking 2.6.27 for one is an :class:`~mixedmap.rules.UnsupportedRule` before
anything changes.

Not modelled (6.18 text read, mm/gup.c): ``gup_must_unshare`` (-EMLINK and a
FAULT_FLAG_UNSHARE fault for a read-only pin of a possibly shared anonymous page: the model has
no PageAnonExclusive and no unshare fault), fork's ``write_protect_seq`` (the model's fork never
overlaps a walk), fork's early copy of a pinned anonymous page (:func:`page_needs_cow_for_dma`
answers the question, but ``copy_page_range`` does not ask it yet), large folios (``_pincount``), ``check_and_migrate_movable_pages`` (no
ZONE_MOVABLE/CMA), secretmem, hugetlb, FOLL_DUMP, and FOLL_TOUCH's ``folio_mark_accessed``/
``folio_mark_dirty`` on a page that is grabbed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.errors import EEXIST, EFAULT, EINVAL, ENOMEM, EOPNOTSUPP, KernelErrno, VMBug
from mixedmap.mm import rmap
from mixedmap.mm.fault import handle_mm_fault
from mixedmap.mm.memory import vm_normal_page, vm_normal_pages
from mixedmap.mm.vma import VM, VMA, FaultResult, is_cow_mapping
from mixedmap.mm.zero import is_zero_pfn
from mixedmap.phys.page_alloc import GUP_PIN_COUNTING_BIAS, PinnedPage
from mixedmap.profiles import V2_6_27
from mixedmap.rules import (
    FOLL_LONGTERM,
    GUP_EEXIST,
    GUP_FORCE_COW_ONLY,
    GUP_LONGTERM_FILE_WRITE,
    GUP_PAGES_EEXIST,
    GUP_ZERO_PAGE_UNPINNED,
    PIN_USER_PAGES,
    POPULATE_WRITE_PRIVATE,
    require,
)
from mixedmap.rules import (
    GUP_PIN_COUNTING_BIAS as PIN_BIAS_RULE,
)

if TYPE_CHECKING:
    from mixedmap.machine import Machine
    from mixedmap.mm.mm import MM

__all__ = [
    "FOLL",
    "GUP_PIN_COUNTING_BIAS",
    "GupFastResult",
    "PinnedPage",
    "folio_maybe_dma_pinned",
    "follow_page",
    "get_user_pages",
    "get_user_pages_fast",
    "mm_populate",
    "page_maybe_dma_pinned",
    "page_needs_cow_for_dma",
    "pin_user_pages",
    "pin_user_pages_fast",
    "populate_vma_page_range",
    "unpin_user_page",
    "unpin_user_pages",
    "unpin_user_pages_dirty_lock",
    "vma_is_fsdax",
    "vma_needs_dirty_tracking",
]

log = get_logger("mixedmap.mm")

#: A fault that leaves the PTE unfollowable this many times in a row is a model bug (the
#: kernel would loop in __get_user_pages' retry for ever).
_MAX_FAULTS = 8


class FOLL:
    """The FOLL_* flags the model follows (names of include/linux/mm_types.h and
    mm/internal.h in 6.x; the values are the model's own, plain ints as :class:`VM`)."""

    WRITE = 1 << 0
    GET = 1 << 1
    FORCE = 1 << 3
    LONGTERM = 1 << 8
    TOUCH = 1 << 16
    PIN = 1 << 19


# -- 2.6.26 / 2.6.27 -----------------------------------------------------------------------------
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


def _get_user_pages_2008(mm: MM, start: int, nr_pages: int, write: bool, force: bool) -> NDArray[np.uint64]:
    """mm/memory.c ``get_user_pages`` (2.6.27) with FOLL_GET."""
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


# -- 6.x mm/gup.c: the VMA checks --------------------------------------------------------------------
def vma_is_fsdax(vma: VMA) -> bool:
    """include/linux/fs.h ``vma_is_fsdax``: the VMA maps a file of a DAX filesystem (an inode
    with S_DAX that is not device-dax). The hook: a mapped file says so with a true ``fsdax``
    attribute; without one, ``IS_DAX(file_inode(file))`` is read as the inode's filesystem
    being mounted ``-o dax`` (``file.inode.fs.dax``, :class:`~mixedmap.xip.fs.XipFS`)."""
    file = vma.file
    if file is None:
        return False
    flag = getattr(file, "fsdax", None)
    if flag is not None:
        return bool(flag)
    fs = getattr(getattr(file, "inode", None), "fs", None)
    return bool(getattr(fs, "dax", False))


def vma_needs_dirty_tracking(vma: VMA) -> bool:
    """mm/mmap.c ``vma_needs_dirty_tracking``: a shared writable file mapping whose filesystem
    must hear of writes (page_mkwrite, or a mapping that writes back); a VM_PFNMAP one never.
    The model's files declare it with a true ``needs_dirty_tracking`` attribute (a character
    device, :class:`~mixedmap.mm.file.DeviceFile`, does not); an fs-dax file needs it
    (``ext4_dax_vm_ops`` has ``page_mkwrite``)."""
    if vma.flags & (VM.SHARED | VM.WRITE) != VM.SHARED | VM.WRITE or vma.flags & VM.PFNMAP:
        return False
    if vma.file is None:
        return False
    return bool(getattr(vma.file, "needs_dirty_tracking", False)) or vma_is_fsdax(vma)


def _check_vma_flags(vma: VMA, foll: int, va: int) -> KernelErrno | None:
    """mm/gup.c ``check_vma_flags`` (6.18): the error a GUP of ``vma`` stops with, or None.

    Secretmem, shadow stacks, FOLL_ANON and hugetlb are not modelled.
    """
    profile = vma.mm.machine.profile
    flags = vma.flags
    write = bool(foll & FOLL.WRITE)
    where = f"{va:#x} in {vma.describe()}"
    if flags & (VM.IO | VM.PFNMAP):
        return EFAULT(f"check_vma_flags: {where}: VM_IO/VM_PFNMAP")
    if foll & FOLL.LONGTERM and vma_is_fsdax(vma):
        return EOPNOTSUPP(f"check_vma_flags: {where}: FOLL_LONGTERM on fs-dax ({FOLL_LONGTERM.cite()})")
    anon = vma.file is None and vma.vm_ops is None
    if write:
        if (
            not anon
            and foll & FOLL.PIN
            and foll & FOLL.LONGTERM
            and GUP_LONGTERM_FILE_WRITE.applies(profile)
            and vma_needs_dirty_tracking(vma)
        ):
            return EFAULT(
                f"check_vma_flags: {where}: long-term writable pin of a file mapping that needs "
                f"dirty tracking ({GUP_LONGTERM_FILE_WRITE.cite()})"
            )
        if not flags & VM.WRITE:
            if not foll & FOLL.FORCE:
                return EFAULT(f"check_vma_flags: {where}: write without VM_WRITE")
            if GUP_FORCE_COW_ONLY.applies(profile):
                if not is_cow_mapping(flags):
                    return EFAULT(f"check_vma_flags: {where}: FOLL_FORCE write outside a COW mapping")
            elif not flags & VM.MAYWRITE:
                return EFAULT(f"check_vma_flags: {where}: FOLL_FORCE write without VM_MAYWRITE")
    elif not flags & VM.READ and not (foll & FOLL.FORCE and flags & VM.MAYREAD):
        return EFAULT(f"check_vma_flags: {where}: read without VM_READ")
    return None


def _can_follow_write_pte(mm: MM, vma: VMA, pte: int, page: int | None, foll: int) -> bool:
    """mm/gup.c ``can_follow_write_pte`` (6.x): a writable PTE, or a FOLL_FORCE write to a
    private read-only VMA whose PTE maps an exclusive anonymous page (the COW copy).

    PageAnonExclusive is not kept by the model: an anonymous page mapped once stands for it.
    """
    if mm.ops.pte_write(pte):
        return True
    flags = vma.flags
    if not foll & FOLL.FORCE or flags & (VM.MAYSHARE | VM.SHARED) or not flags & VM.MAYWRITE:
        return False
    if flags & VM.WRITE or page is None:
        return False
    memmap = mm.machine.memmap
    return bool(rmap.is_anon(memmap, page)[0]) and int(rmap.mapcount(memmap, page)[0]) == 1


def _follow_page_pte(mm: MM, vma: VMA, va: int, foll: int) -> int | KernelErrno | None:
    """mm/gup.c ``follow_page_pte`` (6.18): the pfn to grab, None (fault first) or the error.

    The zero pfn is the zero page (``is_zero_pfn`` before ``vm_normal_page``: the same answer,
    whichever way the zero PTE is classified). Any other PTE without a page goes to
    ``follow_pfn_pte``, which with FOLL_TOUCH marks the PTE young (and dirty for a write),
    then answers -EEXIST; before 5.18 FOLL_GET/FOLL_PIN made that -EFAULT.
    """
    slot = mm.pt.pte_slot(va, allocate=False)
    if slot is None:
        return None
    pte = mm.pt.read_pte(slot)
    ops = mm.ops
    if not ops.pte_present(pte):
        return None
    pfn = int(ops.pte_pfn(pte))
    machine = mm.machine
    zero = bool(is_zero_pfn(machine, pfn)[0])
    page = pfn if zero else vm_normal_page(vma, va, pte)
    if foll & FOLL.WRITE and not _can_follow_write_pte(mm, vma, pte, page, foll):
        return None
    if page is not None:
        return page
    if foll & (FOLL.GET | FOLL.PIN) and not GUP_PAGES_EEXIST.applies(machine.profile):
        return EFAULT(f"follow_pfn_pte: {va:#x} is mapped by a PTE without a struct page")
    if foll & FOLL.TOUCH:
        entry = int(ops.pte_mkyoung(int(ops.pte_mkdirty(pte)) if foll & FOLL.WRITE else pte))
        if entry != pte:
            mm.pt.write_pte(slot, entry)
    return EEXIST(f"follow_pfn_pte: {va:#x} is mapped by a PTE without a struct page ({pte:#x})")


def _pin_bias(machine: Machine) -> int:
    """What one pin adds to a small folio: the bias from 5.7, a plain reference in 5.6."""
    return GUP_PIN_COUNTING_BIAS if PIN_BIAS_RULE.applies(machine.profile) else 1


def _grab(machine: Machine, pfns: NDArray[np.uint64], foll: int) -> None:
    """mm/gup.c ``try_grab_folio`` over a batch (small folios): FOLL_GET or FOLL_PIN."""
    if not pfns.size or not foll & (FOLL.GET | FOLL.PIN):
        return
    if foll & FOLL.GET:
        machine.pages.get_page(pfns)
        return
    if GUP_ZERO_PAGE_UNPINNED.applies(machine.profile):
        pfns = pfns[~is_zero_pfn(machine, pfns)]
    machine.pages.pin_pages(pfns, _pin_bias(machine))


def _gup(
    mm: MM, start: int, nr_pages: int, foll: int, pages: bool, who: str
) -> tuple[NDArray[np.uint64], int]:
    """mm/gup.c ``__get_user_pages`` (6.18): (pfns grabbed, pages done), or raises the error
    of the first page when it did none (the kernel's ``i ? i : ret``).

    With ``pages`` (FOLL_GET or FOLL_PIN) a PTE without a struct page stops it with -EEXIST;
    without (populate) it counts as done and the walk carries on.
    """
    ps = mm.page_size
    addr = start - start % ps
    got: list[int] = []
    done = 0
    vma: VMA | None = None

    def stop(exc: KernelErrno) -> tuple[NDArray[np.uint64], int]:
        if done:
            return np.array(got, dtype=np.uint64), done
        raise exc

    for i in range(nr_pages):
        va = addr + i * ps
        if vma is None or va >= vma.end:
            vma = mm.find_vma(va)
            if vma is None:
                return stop(EFAULT(f"{who}: no VMA at {va:#x}"))
            err = _check_vma_flags(vma, foll, va)
            if err is not None:
                return stop(err)
        for _ in range(_MAX_FAULTS):
            page = _follow_page_pte(mm, vma, va, foll)
            if page is not None:
                break
            ret = handle_mm_fault(mm, vma, va, bool(foll & FOLL.WRITE))
            if ret & FaultResult.OOM:
                return stop(ENOMEM(f"{who}: out of memory faulting {va:#x}"))
            if ret & FaultResult.SIGBUS:
                return stop(EFAULT(f"{who}: SIGBUS faulting {va:#x}"))
        else:
            raise VMBug(f"{who}: {va:#x} is still not followable after {_MAX_FAULTS} faults")
        if isinstance(page, EEXIST) and not pages:
            done += 1
            continue
        if isinstance(page, KernelErrno):
            return stop(page)
        one = np.array([page], dtype=np.uint64)
        _grab(mm.machine, one, foll)
        got.append(page)
        done += 1
        mm.trace("pin" if foll & FOLL.PIN else "gup", f"mm/gup.c:{who}", vma, va, page, 0)
    return np.array(got, dtype=np.uint64), done


def _modern(mm: MM) -> bool:
    """Whether ``mm`` follows mm/gup.c of 4.3 on (the 6.18 profile) rather than 2.6.27."""
    return GUP_EEXIST.applies(mm.machine.profile)


def _foll(write: bool, force: bool, longterm: bool = False) -> int:
    return (FOLL.WRITE if write else 0) | (FOLL.FORCE if force else 0) | (FOLL.LONGTERM if longterm else 0)


def _check_count(nr_pages: int, who: str) -> None:
    if nr_pages < 0:
        raise EINVAL(f"{who}: negative nr_pages {nr_pages}")


# -- the API -----------------------------------------------------------------------------------------
def get_user_pages(mm: MM, start: int, nr_pages: int, write: bool, force: bool = False) -> NDArray[np.uint64]:
    """``get_user_pages`` with FOLL_GET (and FOLL_TOUCH): pfns, one reference each.

    Stops at the first page it cannot get and returns what it got, or raises the error
    (EFAULT; ENOMEM on OOM; EEXIST from 5.18 for a PTE without a struct page) when it got
    nothing, as the kernel returns count or -errno. 2.6.27: mm/memory.c ``get_user_pages``;
    6.18: mm/gup.c ``get_user_pages`` -> ``__get_user_pages``. Release with ``put_page``.
    """
    if not _modern(mm):
        return _get_user_pages_2008(mm, start, nr_pages, write, force)
    _check_count(nr_pages, "get_user_pages")
    foll = FOLL.GET | FOLL.TOUCH | _foll(write, force)
    return _gup(mm, start, nr_pages, foll, True, "get_user_pages")[0]


def pin_user_pages(
    mm: MM, start: int, nr_pages: int, write: bool, *, longterm: bool = False, force: bool = False
) -> NDArray[np.uint64]:
    """mm/gup.c ``pin_user_pages`` (5.6): as :func:`get_user_pages` but FOLL_PIN (without
    FOLL_TOUCH): each small page gains GUP_PIN_COUNTING_BIAS references, the zero page none
    (6.5). ``longterm`` is FOLL_LONGTERM (5.2; refused on fs-dax with EOPNOTSUPP; the
    migration out of ZONE_MOVABLE/CMA, check_and_migrate_movable_pages, has nothing to move in
    the model). Release with :func:`unpin_user_pages`.
    """
    profile = mm.machine.profile
    require(PIN_USER_PAGES, profile, "pin_user_pages")
    if longterm:
        require(FOLL_LONGTERM, profile, "pin_user_pages(FOLL_LONGTERM)")
    _check_count(nr_pages, "pin_user_pages")
    foll = FOLL.PIN | _foll(write, force, longterm)
    return _gup(mm, start, nr_pages, foll, True, "pin_user_pages")[0]


def _unpin_targets(machine: Machine, pfns: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """``gup_put_folio`` skips the zero page (6.5); the others must each hold a pin per
    occurrence, checked here so that nothing changes when one does not."""
    if pfns.size and GUP_ZERO_PAGE_UNPINNED.applies(machine.profile):
        pfns = pfns[~is_zero_pfn(machine, pfns)]
    uniq, n = np.unique(pfns, return_counts=True)
    short = machine.pages.pin_count(uniq) < n
    if short.any():
        bad = int(uniq[short][0])
        raise VMBug(
            f"unpin_user_page: page {bad:#x} holds {int(machine.pages.pin_count(bad)[0])} pin(s), "
            f"{int(n[short][0])} unpin(s) asked (a page from get_user_pages is released with put_page)"
        )
    return pfns


def _pfn_array(pfns: int | NDArray[np.uint64] | list[int]) -> NDArray[np.uint64]:
    arr = np.atleast_1d(np.asarray(pfns))
    if not arr.size:
        return np.zeros(0, dtype=np.uint64)
    if arr.dtype.kind not in "ui" or (arr.dtype.kind == "i" and arr.size and int(arr.min()) < 0):
        raise EINVAL(f"not a list of pfns: {pfns!r}")
    return arr.astype(np.uint64)


def unpin_user_pages(machine: Machine, pfns: int | NDArray[np.uint64] | list[int]) -> None:
    """mm/gup.c ``unpin_user_pages`` (5.6): drop one pin per pfn (``gup_put_folio``).

    A pfn of the zero page is skipped (6.5: it was never pinned); a pfn that holds no pin is
    a :class:`VMBug` before anything changes (the kernel would underflow the refcount).
    """
    require(PIN_USER_PAGES, machine.profile, "unpin_user_pages")
    machine.pages.unpin_pages(_unpin_targets(machine, _pfn_array(pfns)), _pin_bias(machine))


def unpin_user_page(machine: Machine, pfn: int) -> None:
    """mm/gup.c ``unpin_user_page`` (5.6): :func:`unpin_user_pages` of one page."""
    require(PIN_USER_PAGES, machine.profile, "unpin_user_page")
    machine.pages.unpin_pages(_unpin_targets(machine, _pfn_array(pfn)), _pin_bias(machine))


def unpin_user_pages_dirty_lock(
    machine: Machine, pfns: int | NDArray[np.uint64] | list[int], make_dirty: bool
) -> None:
    """mm/gup.c ``unpin_user_pages_dirty_lock`` (5.6): after DMA into the pages, mark each
    dirty (``folio_mark_dirty``, PG_dirty) if ``make_dirty``, then unpin it. The zero page is
    neither dirtied nor unpinned (6.5: ``is_zero_folio`` is skipped)."""
    require(PIN_USER_PAGES, machine.profile, "unpin_user_pages_dirty_lock")
    targets = _unpin_targets(machine, _pfn_array(pfns))
    if make_dirty and targets.size:
        rmap.set_page_dirty(machine.memmap, targets)
    machine.pages.unpin_pages(targets, _pin_bias(machine))


def folio_maybe_dma_pinned(machine: Machine, pfns: int | NDArray[np.uint64] | list[int]) -> NDArray[np.bool_]:
    """include/linux/mm.h ``folio_maybe_dma_pinned`` (5.7) for small folios: refcount >=
    GUP_PIN_COUNTING_BIAS. Fuzzy as the kernel's: false means not pinned, true may be 1024
    plain references; the exact count is ``machine.pages.pin_count``."""
    require(PIN_BIAS_RULE, machine.profile, "folio_maybe_dma_pinned")
    counts = machine.pages.page_count(_pfn_array(pfns))
    maybe: NDArray[np.bool_] = counts >= GUP_PIN_COUNTING_BIAS
    return maybe


def page_needs_cow_for_dma(vma: VMA, pfns: int | NDArray[np.uint64] | list[int]) -> NDArray[np.bool_]:
    """include/linux/mm.h ``page_needs_cow_for_dma`` (6.18 ``folio_needs_cow_for_dma``): must
    fork give the child its own copy of these anonymous pages at once (``copy_present_page``)
    instead of sharing them write-protected? True for a page that may be DMA-pinned in a COW
    VMA of an mm that ever pinned (MMF_HAS_PINNED), so a later COW cannot leave the pinner
    looking at the child's page.

    Since 70e806e4e645 'mm: Do early cow for pinned pages during fork() for ptes' (P. Xu, 5.9;
    renamed page_needs_cow_for_dma in 5.12, release from memory, not re-read). The model has
    no MMF_HAS_PINNED bit: the pin ledger (``machine.pages.pin_count``) stands for it, which
    is exact where the kernel's test is fuzzy (``folio_maybe_dma_pinned`` can say yes for 1024
    plain references). It needs the pin bias (5.7): on earlier profiles it is an
    :class:`~mixedmap.rules.UnsupportedRule`. Fork asks the same question per PTE
    (:func:`mixedmap.mm.memory.needs_cow_for_dma`, rule ``fork_copies_pinned``)."""
    machine = vma.mm.machine
    require(PIN_BIAS_RULE, machine.profile, "page_needs_cow_for_dma")
    arr = _pfn_array(pfns)
    if not is_cow_mapping(vma.flags) or not machine.pages.has_pins:
        return np.zeros(arr.shape, dtype=np.bool_)
    anon = np.asarray(rmap.is_anon(machine.memmap, arr), dtype=np.bool_)
    needs: NDArray[np.bool_] = (
        anon & (machine.pages.pin_count(arr) > 0) & folio_maybe_dma_pinned(machine, arr)
    )
    return needs


def page_maybe_dma_pinned(machine: Machine, pfns: int | NDArray[np.uint64] | list[int]) -> NDArray[np.bool_]:
    """include/linux/mm.h ``page_maybe_dma_pinned``: :func:`folio_maybe_dma_pinned` of the page."""
    return folio_maybe_dma_pinned(machine, pfns)


# -- populate (make_pages_present / __mm_populate) --------------------------------------------------
def populate_vma_page_range(vma: VMA, start: int, end: int) -> int:
    """mm/gup.c ``populate_vma_page_range`` (6.18): fault in [start, end) of ``vma`` with no
    pages array, so nothing is referenced and a PTE without a struct page is stepped over
    (4.3). FOLL_WRITE only for a private writable VMA and FOLL_FORCE for any accessible one
    (2.6.38). Returns the pages done; raises the first page's error when it did none.
    """
    mm = vma.mm
    require(GUP_EEXIST, mm.machine.profile, "populate_vma_page_range")
    require(POPULATE_WRITE_PRIVATE, mm.machine.profile, "populate_vma_page_range")
    ps = mm.page_size
    if start % ps or end % ps or start < vma.start or end > vma.end or end < start:
        raise EINVAL(
            f"populate_vma_page_range: [{start:#x}, {end:#x}) is not page-aligned inside {vma.describe()}"
        )
    foll = FOLL.TOUCH
    if vma.flags & (VM.WRITE | VM.SHARED) == VM.WRITE:
        foll |= FOLL.WRITE
    if vma.flags & (VM.READ | VM.WRITE | VM.EXEC):
        foll |= FOLL.FORCE
    return _gup(mm, start, (end - start) // ps, foll, False, "populate_vma_page_range")[1]


def mm_populate(mm: MM, start: int, length: int) -> None:
    """mm/gup.c ``__mm_populate(start, len, ignore_errors=1)`` (MAP_POPULATE, 6.18): every
    VMA in the range but VM_IO/VM_PFNMAP ones, each through :func:`populate_vma_page_range`;
    an error ends that VMA's part and the walk goes on with the next VMA."""
    ps = mm.page_size
    end = start + -(-length // ps) * ps
    pos = start - start % ps
    for vma in list(mm.vmas):
        if vma.end <= pos or vma.start >= end or vma.flags & (VM.IO | VM.PFNMAP):
            continue
        try:
            populate_vma_page_range(vma, max(pos, vma.start), min(end, vma.end))
        except KernelErrno:
            continue


# -- get_user_pages_fast ------------------------------------------------------------------------------
@attrs.frozen
class GupFastResult:
    """What get_user_pages_fast did: pfns pinned, and how many came from each path."""

    pfns: NDArray[np.uint64] = attrs.field(eq=False)
    fast: int
    slow: int
    #: Why the fast walk stopped ("" when it pinned everything).
    fallback_reason: str


def get_user_pages_fast(mm: MM, start: int, nr_pages: int, write: bool) -> GupFastResult:
    """arch/x86/mm/gup.c ``get_user_pages_fast`` (2.6.27), generic over the arch; in 6.18
    mm/gup.c ``get_user_pages_fast`` -> ``gup_fast_fallback`` (FOLL_GET).

    The walk takes no lock and looks only at PTEs: present and user-accessible (not
    PROT_NONE), writable when writing, and not special; it stops at the first page that
    fails and hands the rest to the slow path. A profile without the special bit has no fast
    path (2.6.27: mm/util.c's fallback takes mmap_sem and calls get_user_pages for everything;
    6.18: ``gup_fast_pte_range`` is the empty stub without CONFIG_ARCH_HAS_PTE_SPECIAL).
    """
    return _gup_fast(mm, start, nr_pages, FOLL.GET | (FOLL.WRITE if write else 0))


def pin_user_pages_fast(
    mm: MM, start: int, nr_pages: int, write: bool, *, longterm: bool = False
) -> GupFastResult:
    """mm/gup.c ``pin_user_pages_fast`` (5.6): :func:`get_user_pages_fast` with FOLL_PIN.

    With ``longterm`` and ``write`` the lockless walk leaves every page that is not anonymous
    to the slow path (``gup_fast_folio_allowed``, 6.5), which decides by the VMA. fork's
    ``write_protect_seq`` check cannot fire: the model's fork never runs during a walk.
    """
    profile = mm.machine.profile
    require(PIN_USER_PAGES, profile, "pin_user_pages_fast")
    if longterm:
        require(FOLL_LONGTERM, profile, "pin_user_pages_fast(FOLL_LONGTERM)")
    foll = FOLL.PIN | (FOLL.WRITE if write else 0) | (FOLL.LONGTERM if longterm else 0)
    return _gup_fast(mm, start, nr_pages, foll)


def _slow(mm: MM, start: int, nr_pages: int, foll: int) -> NDArray[np.uint64]:
    """The fast path's fallback: 2.6.27 get_user_pages, or 6.18 ``__gup_longterm_locked``
    with FOLL_TOUCH added (``gup_fast_fallback``)."""
    if not _modern(mm):
        return get_user_pages(mm, start, nr_pages, bool(foll & FOLL.WRITE))
    who = "pin_user_pages_fast" if foll & FOLL.PIN else "get_user_pages_fast"
    return _gup(mm, start, nr_pages, foll | FOLL.TOUCH, True, who)[0]


def _fsdax_mask(mm: MM, vas: NDArray[np.uint64]) -> NDArray[np.bool_]:
    """Which of ``vas`` lie in an fs-dax VMA (their folios are ZONE_DEVICE fsdax folios)."""
    out = np.zeros(vas.shape, dtype=np.bool_)
    for vma in mm.vmas:
        if vma_is_fsdax(vma):
            out |= (vas >= np.uint64(vma.start)) & (vas < np.uint64(vma.end))
    return out


def _gup_fast(mm: MM, start: int, nr_pages: int, foll: int) -> GupFastResult:
    """The lockless walk over ``nr_pages`` PTEs from ``start``, then the slow path for the rest."""
    write = bool(foll & FOLL.WRITE)
    modern = _modern(mm)
    if modern:
        _check_count(nr_pages, "pin_user_pages_fast" if foll & FOLL.PIN else "get_user_pages_fast")
    addr = start - start % mm.page_size
    # 2.6.27 names the errors the slow path raises with the walk's reason only for EFAULT.
    caught: type[KernelErrno] = KernelErrno if modern else EFAULT
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
            pfns = _slow(mm, addr, nr_pages, foll)
        except caught as exc:
            exc.fallback_reason = why
            raise
        return GupFastResult(pfns, 0, int(pfns.size), why)
    vas, ptes, reach = mm.pt.range_ptes(addr, nr_pages)
    ok = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
    reason = ""
    # gup_pte_range wants _PAGE_PRESENT|_PAGE_USER (x86, powerpc 2.6.27; 6.18 gup_fast_pte_range:
    # pte_protnone, pte_access_permitted): a PROT_NONE PTE is present to Linux but not to the
    # user, and stops the walk. Generically: a PTE that pte_modify to PAGE_NONE
    # (protection_map[0]) leaves unchanged, young and dirty aside (fork's child PTE is old, and
    # PAGE_NONE may carry _PAGE_ACCESSED), carries PAGE_NONE.
    protnone = np.zeros(nr_pages, dtype=np.bool_)
    if ok.any():
        ops = mm.ops

        def aged(v: NDArray[np.uint64]) -> NDArray[np.uint64]:
            return np.asarray(
                ops.pte_mkyoung(np.asarray(ops.pte_mkdirty(v), dtype=np.uint64)), dtype=np.uint64
            )

        cur = ptes[ok]
        protnone[ok] = aged(
            np.asarray(ops.pte_modify(cur, mm.fmt.protection_map[0]), dtype=np.uint64)
        ) == aged(cur)
        ok &= ~protnone
    if write:
        ok &= np.asarray(mm.ops.pte_write(ptes), dtype=np.bool_)
    special = np.zeros(nr_pages, dtype=np.bool_)
    if ok.any():
        special[ok] = mm.mode.pte_special(ptes[ok])
        ok &= ~special
    # try_grab_folio_fast: folio_is_longterm_pinnable is false for an fs-dax folio (the model
    # knows it by its VMA); gup_fast_folio_allowed (6.5): a long-term writable pin takes only
    # anonymous folios here.
    fsdax = np.zeros(nr_pages, dtype=np.bool_)
    if modern and foll & FOLL.LONGTERM and ok.any():
        fsdax[ok] = _fsdax_mask(mm, vas[ok])
        ok &= ~fsdax
    filebacked = np.zeros(nr_pages, dtype=np.bool_)
    longterm_write = FOLL.PIN | FOLL.LONGTERM | FOLL.WRITE
    if (
        modern
        and foll & longterm_write == longterm_write
        and GUP_LONGTERM_FILE_WRITE.applies(mm.machine.profile)
        and ok.any()
    ):
        pf = np.asarray(mm.ops.pte_pfn(ptes[ok]), dtype=np.uint64)
        filebacked[ok] = ~rmap.is_anon(mm.machine.memmap, pf)
        ok &= ~filebacked
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
        elif fsdax[b]:
            reason = "fs-dax folio (FOLL_LONGTERM)"
        elif filebacked[b]:
            reason = "file-backed folio (long-term writable pin)"
        else:
            reason = "pte not writable"
    fast = np.asarray(mm.ops.pte_pfn(ptes[:n_fast]), dtype=np.uint64)
    if n_fast:
        if modern:
            _grab(mm.machine, fast, foll)
            mm.trace_range("gup_fast", "mm/gup.c:gup_fast_pte_range", None, addr, n_fast)
        else:
            mm.machine.pages.get_page(fast)
            mm.trace_range("gup_fast", "arch/x86/mm/gup.c:gup_pte_range", None, addr, n_fast)
    if n_fast == nr_pages:
        return GupFastResult(fast, n_fast, 0, "")
    try:
        slow = _slow(mm, addr + n_fast * mm.page_size, nr_pages - n_fast, foll)
    except caught as exc:
        if n_fast:
            return GupFastResult(fast, n_fast, 0, reason)
        exc.fallback_reason = reason
        raise
    return GupFastResult(np.concatenate([fast, slow]), n_fast, int(slow.size), reason)


# -- pins at exit ----------------------------------------------------------------------------------------
def pinned_pages_of(mm: MM) -> NDArray[np.uint64]:
    """The pinned pages ``mm`` maps (before exit_mmap zaps them): FOLL_PIN pins outlive the
    mm in the kernel (the pinner holds them), so an exit with pins held is not an error but
    worth naming; nothing is computed while no page anywhere is pinned."""
    pages = mm.machine.pages
    if not pages.has_pins:
        return np.zeros(0, dtype=np.uint64)
    found: list[NDArray[np.uint64]] = []
    for vma in mm.vmas:
        vas, ptes, reach = mm.pt.range_ptes(vma.start, vma.npages)
        present = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
        if not present.any():
            continue
        pfns = vm_normal_pages(vma, vas[present], ptes[present])
        normal = pfns[pfns >= 0].astype(np.uint64)
        if normal.size:
            found.append(normal[pages.pin_count(normal) > 0])
    return np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.uint64)


def report_exit_pins(mm: MM, pfns: NDArray[np.uint64]) -> None:
    """After exit_mmap: record the pages of ``pfns`` still pinned on ``mm.pins_at_exit`` (by
    pfn, with pins and refcount), log a warning and trace a ``pins_at_exit`` event."""
    held = {int(p) for p in pfns.tolist()}
    recs = tuple(p for p in mm.machine.pages.pinned() if p.pfn in held)
    mm.pins_at_exit = recs
    if not recs:
        return
    shown = [f"{p.pfn:#x}" for p in recs[:64]]
    log.warning("pins_outstanding_at_exit", mm=mm.id, count=len(recs), pfns=shown)
    mm.trace_range("pins_at_exit", "mm/mmap.c:exit_mmap", None, 0, len(recs))
