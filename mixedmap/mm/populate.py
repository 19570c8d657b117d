"""Batched fault-in: the end state of touching every page of a range, in numpy batches.

2.6.27 has no batched fault path. ``make_pages_present`` runs ``get_user_pages``, which
calls ``handle_mm_fault`` once per page (and stops at the first special PTE, which is why
:meth:`MM.populate` keeps that behaviour). A model that maps a GiB per guest cannot afford
262144 Python faults, so :func:`fault_in` computes what ``mm.access(va, write)`` for every
page in address order would leave behind -- PTE bytes, page-table frames, struct pages,
RSS, VMA flags -- and applies the common cases in batches:

* ``do_anonymous_page`` (2.6.27 mm/memory.c): a fresh zeroed page per PTE, dirty, writable
  if the VMA is, new anon rmap, anon_rss; with the zero page (2.6.32+, the 6.18 profile) a
  *read* maps the shared zero pfn instead, read-only and special, and nothing else changes
  (the zero page itself is allocated at the first such fault, after that PTE's table);
* the read ``xip_file_fault`` (mm/filemap_xip.c): ``get_xip_mem`` -> ``vm_insert_mixed``,
  i.e. ``insert_pfn`` (a special PTE, no counters) or, without the special bit for a frame
  with a struct page, ``insert_page`` (refcount, mapcount, file_rss); a hole gets the
  sparse page (``vm_insert_page`` and VM_INSERTPAGE from 2.6.27 to 4.0, rule
  :data:`~mixedmap.rules.XIP_SPARSE_VM_INSERT_PAGE`; ``vmf->page`` otherwise);
* a present PTE the access is allowed through: what the MMU sets (young; dirty on write).

Everything else -- a write fault that COWs, a driver ``->fault``, SIGBUS beyond EOF, a hole
the fault allocates, OOM, a swap entry -- runs through :meth:`MM.access` for that page, so
an error is the very one the per-page path raises, after exactly what it applied before.

Why this is exact: the only order-dependent state is the allocators'. Faults allocate in
one order per PTE table -- the table (``pte_alloc``, levels top down) at the first faulting
page, then the pages the faults need -- and ``alloc_pages(n)`` hands out the same frames as
n calls of ``alloc_pages(1)`` (lowest free after a cursor). The batch keeps that order run
by run; everything else it does touches one PTE or one struct page per page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.errors import EINVAL, OutOfMemory
from mixedmap.mm import rmap
from mixedmap.mm.vma import FAULT_PER_PAGE, FAULT_SPARSE, VM, VMA, BatchFault
from mixedmap.mm.zero import zero_allocated, zero_pfn
from mixedmap.phys.memmap import PG
from mixedmap.rules import (
    FILE_FAULT_SIGBUS,
    VM_INSERT_PAGE_SETS_MIXEDMAP,
    XIP_SPARSE_VM_INSERT_PAGE,
    ZERO_PAGE,
)

if TYPE_CHECKING:
    from mixedmap.mm.mm import MM

log = get_logger("mixedmap.mm")

#: Pages planned in one batch at most (bounds the temporaries: 2**20 pages is 4 GiB).
_MAX_WINDOW = 1 << 20
#: Pages planned right after a page went through the per-page path; grows again on success.
_MIN_WINDOW = 16

# What a page of a batch becomes (also the trace event it stands for).
_TOUCH, _SPECIAL, _NORMAL, _SPARSE, _ANON, _ZERO = 0, 1, 2, 3, 4, 5

_KIND_ANON, _KIND_XIP, _KIND_OTHER = "anon", "xip", "other"


def fault_in(mm: MM, start: int, length: int, write: bool = False) -> int:
    """Fault in [start, start + length) as ``mm.access(va, write)`` page by page would.

    Returns the number of pages newly mapped (PTEs that were not present). ``start`` must
    be page aligned and ``length`` positive (rounded up to whole pages), checked before
    anything changes. SIGSEGV, SIGBUS and OOM come as the per-page path raises them, with
    every page before the faulting one applied.
    """
    mm._alive()
    ps = mm.page_size
    if isinstance(start, bool) or not isinstance(start, int) or start < 0 or start % ps:
        raise EINVAL(f"fault_in: start {start!r} is not a page-aligned ({ps:#x}) user address")
    if isinstance(length, bool) or not isinstance(length, int) or length <= 0:
        raise EINVAL(f"fault_in: length {length!r} must be a positive number of bytes")
    end = start + -(-length // ps) * ps
    log.debug("fault_in", mm=mm.id, start=start, length=end - start, write=write)
    newly = 0
    pos = start
    while pos < end:
        vma = mm.find_vma(pos)
        if vma is None or not _permitted(vma, write):
            newly += _one(mm, pos, write)  # SIGSEGV, exactly as the access raises it
            pos += ps
            continue
        stop = min(vma.end, end)
        newly += _fault_in_vma(mm, vma, pos, stop, write)
        pos = stop
    return newly


def _permitted(vma: VMA, write: bool) -> bool:
    """The VMA checks of ``do_page_fault`` (bad_area otherwise)."""
    if write and not vma.flags & VM.WRITE:
        return False
    return bool(vma.flags & (VM.READ | VM.WRITE | VM.EXEC))


def _one(mm: MM, va: int, write: bool) -> int:
    """One page through the per-page path; 1 if it mapped a page that was not present."""
    return int(mm.access(va, write=write).fault in ("fault", "fault+wp"))


def _kind(vma: VMA) -> str:
    if vma.vm_ops is None and (vma.file is None or not FILE_FAULT_SIGBUS.applies(vma.mm.machine.profile)):
        return _KIND_ANON  # handle_pte_fault: no ->fault means do_anonymous_page (2.6.2x)
    if isinstance(vma.vm_ops, BatchFault):
        return _KIND_XIP  # xip_file_vm_ops, asked through the mm's batch-fault protocol
    return _KIND_OTHER


def _fault_in_vma(mm: MM, vma: VMA, start: int, end: int, write: bool) -> int:
    """[start, end) inside one VMA: batches, with per-page steps where a batch stops."""
    ps, shift = mm.page_size, mm.page_shift
    kind = _kind(vma)
    window = min(_MAX_WINDOW, (end - start) >> shift)
    newly = 0
    pos = start
    while pos < end:
        n = min(window, (end - pos) >> shift)
        done, mapped = _batch(mm, vma, kind, pos, n, write)
        newly += mapped
        pos += done * ps
        if done < n:
            newly += _one(mm, pos, write)
            pos += ps
            window = _MIN_WINDOW
        else:
            window = min(_MAX_WINDOW, window * 4)
    return newly


def _batch(mm: MM, vma: VMA, kind: str, start: int, n: int, write: bool) -> tuple[int, int]:
    """Plan ``n`` pages from ``start``, apply the longest prefix that needs no per-page step.

    Returns (pages applied, pages newly mapped among them).
    """
    ops, pt, shift = mm.ops, mm.pt, mm.page_shift
    vas = np.uint64(start) + (np.arange(n, dtype=np.uint64) << np.uint64(shift))
    epa, reach = pt.pte_slots(vas, allocate=False)
    ptes = np.full(n, mm.empty_pte, dtype=np.uint64)
    if reach.any():
        ptes[reach] = pt.read_ptes(epa[reach])
    present = np.asarray(ops.pte_present(ptes), dtype=np.bool_)
    none = np.asarray(ops.pte_none(ptes), dtype=np.bool_)
    stop = ~present & ~none  # a swap/file entry: handle_pte_fault's business
    if write:
        stop |= present & ~np.asarray(ops.pte_write(ptes), dtype=np.bool_)  # do_wp_page
    what = np.full(n, _TOUCH, dtype=np.int8)
    pfns = np.zeros(n, dtype=np.int64)
    if kind == _KIND_ANON:
        # do_anonymous_page: "Use the zero-page for reads" from 2.6.32, a new page otherwise
        what[none] = _ZERO if not write and ZERO_PAGE.applies(mm.machine.profile) else _ANON
    elif kind == _KIND_XIP and not write:
        _plan_xip(mm, vma, vas, none, stop, what, pfns)
    else:
        stop |= none  # a driver's ->fault, or a write fault on an XIP mapping
    first_stop = np.flatnonzero(stop)
    k = int(first_stop[0]) if first_stop.size else n
    k = _allocate(mm, vma, vas, reach, epa, what, pfns, k)
    if k == 0:
        return 0, 0
    _apply(mm, vma, vas[:k], epa[:k], ptes[:k], what[:k], pfns[:k], write)
    return k, int((what[:k] != _TOUCH).sum())


def _plan_xip(
    mm: MM,
    vma: VMA,
    vas: NDArray[np.uint64],
    none: NDArray[np.bool_],
    stop: NDArray[np.bool_],
    what: NDArray[np.int8],
    pfns: NDArray[np.int64],
) -> None:
    """Classify the empty PTEs of an XIP VMA as a read ``xip_file_fault`` would map them."""
    idx = np.flatnonzero(none)
    if idx.size == 0:
        return
    pgoffs = ((vas[idx] - np.uint64(vma.start)) >> np.uint64(mm.page_shift)).astype(np.int64) + vma.pgoff
    assert isinstance(vma.vm_ops, BatchFault)
    got = vma.vm_ops.fault_pfns(vma, pgoffs)
    stop[idx[got == FAULT_PER_PAGE]] = True
    what[idx[got == FAULT_SPARSE]] = _SPARSE
    data = got >= 0
    if not data.any():
        return
    didx, dpfn = idx[data], got[data]
    pfns[didx] = dpfn
    machine = mm.machine
    # vm_insert_mixed: a struct page without the special bit means insert_page.
    normal = np.zeros(dpfn.shape, dtype=np.bool_)
    if vma.vm_ops.insert_pages(vma):
        normal = machine.pfn_valid(dpfn.astype(np.uint64))
    what[didx[~normal]] = _SPECIAL
    what[didx[normal]] = _NORMAL
    bad = ~normal & (dpfn >= mm.fmt.max_pfn)  # insert_pfn: -EINVAL, the fault BUGs
    if normal.any():
        npfn = dpfn[normal].astype(np.uint64)
        row, col = machine.memmap.rows(npfn)
        refused = ((machine.memmap.flags[row, col] & np.uint32(PG.anon)) != 0) | (
            machine.memmap.refcount[row, col] <= 0
        )  # insert_page: -EINVAL for an anon page (the fault BUGs); get_page on a free page BUGs
        bad[np.flatnonzero(normal)[refused]] = True
    stop[didx[bad]] = True


def _allocate(
    mm: MM,
    vma: VMA,
    vas: NDArray[np.uint64],
    reach: NDArray[np.bool_],
    epa: NDArray[np.uint64],
    what: NDArray[np.int8],
    pfns: NDArray[np.int64],
    k: int,
) -> int:
    """Allocate for the first ``k`` pages in the order the faults would; returns the pages
    covered (fewer than ``k`` when an allocation fails: that page goes per page).

    Per PTE table, in address order: the table at its first faulting page (``pte_slot``
    allocates missing levels top down, like ``__pte_alloc``), the sparse page at the first
    hole or the zero page at the first zero-page read, then the anonymous pages. Fills
    ``epa`` for the new tables and ``pfns`` for the anonymous pages.
    """
    faulting = np.flatnonzero(what[:k] != _TOUCH)
    if faulting.size == 0:
        return k
    pt, machine = mm.pt, mm.machine
    leaf = mm.fmt.levels[-1]
    esz = np.uint64(mm.fmt.entry_size)
    run_shift = np.uint64(leaf.shift + leaf.index_bits)
    run_of = vas[:k] >> run_shift  # which PTE table each page's entry lives in
    runs = run_of[faulting]
    heads = np.flatnonzero(np.concatenate([[True], runs[1:] != runs[:-1]]))
    bounds = [*heads.tolist(), faulting.size]
    lo_hi = np.searchsorted(run_of, runs[heads]), np.searchsorted(run_of, runs[heads], side="right")
    batch = vma.vm_ops if isinstance(vma.vm_ops, BatchFault) else None
    sparse_needed = batch is not None and not batch.sparse_allocated(machine)
    zero_needed = not zero_allocated(machine)
    for r in range(heads.size):
        members = faulting[bounds[r] : bounds[r + 1]]
        first = int(members[0])
        if not reach[first]:
            try:
                slot = pt.pte_slot(int(vas[first]), allocate=True)
            except OutOfMemory:
                return first
            assert slot is not None
            lo, hi = int(lo_hi[0][r]), int(lo_hi[1][r])
            lanes = lo + np.flatnonzero(~reach[lo:hi])
            epa[lanes] = np.uint64(slot) + ((vas[lanes] - vas[first]) >> np.uint64(mm.page_shift)) * esz
            reach[lanes] = True
        kinds = what[members]
        if sparse_needed and (kinds == _SPARSE).any():
            if machine.pages.nr_free < 1:
                return int(members[kinds == _SPARSE][0])
            assert batch is not None
            batch.sparse_page(machine)
            sparse_needed = False
        if zero_needed and (kinds == _ZERO).any():
            if machine.pages.nr_free < 1:
                return int(members[kinds == _ZERO][0])
            zero_pfn(machine)
            zero_needed = False
        anon = members[kinds == _ANON]
        if anon.size:
            avail = machine.pages.nr_free
            if avail < anon.size:
                if avail:
                    pfns[anon[:avail]] = machine.pages.alloc_pages(avail).astype(np.int64)
                return int(anon[avail])
            pfns[anon] = machine.pages.alloc_pages(int(anon.size)).astype(np.int64)
    return k


def _apply(
    mm: MM,
    vma: VMA,
    vas: NDArray[np.uint64],
    epa: NDArray[np.uint64],
    ptes: NDArray[np.uint64],
    what: NDArray[np.int8],
    pfns: NDArray[np.int64],
    write: bool,
) -> None:
    """Write the PTEs and the struct-page, RSS and VMA bookkeeping of a planned batch."""
    ops, machine, prot = mm.ops, mm.machine, vma.page_prot
    new = ptes.copy()
    touch = what == _TOUCH
    if touch.any():  # the access goes through: the MMU marks the PTE young (and dirty)
        t = np.asarray(ops.pte_mkyoung(ptes[touch]), dtype=np.uint64)
        if write:
            t = np.asarray(ops.pte_mkdirty(t), dtype=np.uint64)
        new[touch] = t
    special = what == _SPECIAL
    if special.any():  # insert_pfn
        vals = np.asarray(ops.pfn_pte(pfns[special].astype(np.uint64), prot), dtype=np.uint64)
        new[special] = mm.mode.pte_mkspecial(vals) if mm.has_special else vals
    normal = what == _NORMAL
    if normal.any():  # insert_page of the device's struct page
        npfn = pfns[normal].astype(np.uint64)
        new[normal] = np.asarray(ops.pfn_pte(npfn, prot), dtype=np.uint64)
        machine.pages.get_page(npfn)
        rmap.page_add_file_rmap(machine.memmap, npfn)
        mm.rss_file += int(npfn.size)
    sparse = what == _SPARSE
    if sparse.any():  # 2.6.27 vm_insert_page; 2.6.26 vmf->page mapped by __do_fault
        assert isinstance(vma.vm_ops, BatchFault)
        pfn = vma.vm_ops.sparse_page(machine)
        count = int(sparse.sum())
        new[sparse] = np.uint64(int(ops.pfn_pte(pfn, prot)))
        spfn = np.full(count, pfn, dtype=np.uint64)
        machine.pages.get_page(spfn)
        rmap.page_add_file_rmap(machine.memmap, spfn)
        mm.rss_file += count
        if XIP_SPARSE_VM_INSERT_PAGE.applies(machine.profile):  # vm_insert_page marks the VMA
            mixed = VM_INSERT_PAGE_SETS_MIXEDMAP.applies(machine.profile)  # 3.7-3.19
            vma.flags |= VM.MIXEDMAP if mixed else VM.INSERTPAGE
    zero = what == _ZERO
    if zero.any():  # do_anonymous_page, the zero-page branch: no anon_vma, rmap or RSS
        entry_zero = np.uint64(int(ops.pfn_pte(zero_pfn(machine), prot)))
        vals = np.full(int(zero.sum()), entry_zero, dtype=np.uint64)
        new[zero] = mm.mode.pte_mkspecial(vals) if mm.has_special else vals
    anon = what == _ANON
    if anon.any():  # do_anonymous_page
        apfn = pfns[anon].astype(np.uint64)
        entry = np.asarray(ops.pte_mkdirty(ops.pfn_pte(apfn, prot)), dtype=np.uint64)
        if vma.flags & VM.WRITE:
            entry = np.asarray(ops.pte_mkwrite(entry), dtype=np.uint64)
        new[anon] = entry
        vma.anon_vma = True
        pgoffs = ((vas[anon] - np.uint64(vma.start)) >> np.uint64(mm.page_shift)) + np.uint64(vma.pgoff)
        _add_new_anon_rmaps(mm, apfn, pgoffs)
        mm.rss_anon += int(apfn.size)
    changed = new != ptes
    if changed.any():
        mm.pt.write_ptes(epa[changed], new[changed])
    if mm._tracer is not None:
        _trace(mm, vma, vas, what)


def _add_new_anon_rmaps(mm: MM, pfns: NDArray[np.uint64], pgoffs: NDArray[np.uint64]) -> None:
    """``page_add_new_anon_rmap`` for many fresh pages (see :func:`rmap.page_add_new_anon_rmap`)."""
    memmap = mm.machine.memmap
    row, col = memmap.rows(pfns)
    memmap.mapcount[row, col] = 1
    memmap.flags[row, col] |= np.uint32(PG.anon | PG.uptodate)
    memmap.mapping[row, col] = mm.id
    memmap.index[row, col] = pgoffs


_EVENTS = {
    _SPECIAL: ("insert_pfn", "mm/memory.c:insert_pfn"),
    _NORMAL: ("insert_page", "mm/memory.c:insert_page"),
    _ANON: ("fault_anon", "mm/memory.c:do_anonymous_page"),
    _ZERO: ("fault_zero", "mm/memory.c:do_anonymous_page"),
}


def _trace(mm: MM, vma: VMA, vas: NDArray[np.uint64], what: NDArray[np.int8]) -> None:
    """One range event per run of pages that the per-page path traces alike.

    The event and function are those the per-page path records for each page of the run
    (the sparse page: ``insert_page`` from 2.6.27, ``__do_fault``'s ``fault_file`` before).
    """
    if what.size == 0:
        return
    sparse_event = (
        _EVENTS[_NORMAL]
        if XIP_SPARSE_VM_INSERT_PAGE.applies(mm.machine.profile)
        else ("fault_file", "mm/memory.c:__do_fault")
    )
    breaks = np.flatnonzero(what[1:] != what[:-1]) + 1
    starts = np.concatenate([[0], breaks]).tolist()
    ends = [*breaks.tolist(), what.size]
    for a, b in zip(starts, ends, strict=True):
        code = int(what[a])
        if code == _TOUCH:
            continue
        event, func = sparse_event if code == _SPARSE else _EVENTS[code]
        mm.trace_range(event, func, vma, int(vas[a]), b - a)
