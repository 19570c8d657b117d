"""``fs/dax.c`` as Linux 6.18 runs it for a file on ext4 mounted ``-o dax`` (fsdax).

Where 2.6.26/2.6.27 ran filemap_xip (:mod:`mixedmap.xip.filemap`, VM_MIXEDMAP and
``vm_insert_mixed``), a 6.18 machine follows these kernel functions, rule by rule:

* mmap: ``ext4_file_mmap_prepare`` (fs/ext4/file.c, 6.17 on; ``ext4_file_mmap`` before):
  ``daxdev_mapping_supported`` refuses VM_SYNC on a non-DAX inode or a dax_device that is not
  synchronous (-EOPNOTSUPP, :data:`~mixedmap.rules.MAP_SYNC`); a DAX inode gets
  ``ext4_dax_vm_ops`` and VM_HUGEPAGE and, since 4.19, no VM_MIXEDMAP
  (:data:`~mixedmap.rules.DAX_NO_MIXEDMAP`). ``mmap_region`` then calls ``vma_set_page_prot``:
  the ops have ``page_mkwrite``/``pfn_mkwrite``, so a shared writable VMA gets a write-protected
  vm_page_prot (``vma_wants_writenotify``) and its first write to a page takes a fault.
* faults: ``ext4_dax_fault`` -> ``dax_iomap_fault`` -> ``dax_iomap_pte_fault`` ->
  ``dax_fault_iter`` (fs/dax.c), the same handler for ``.fault``, ``.page_mkwrite`` and
  ``.pfn_mkwrite``. With :data:`~mixedmap.rules.DAX_REFCOUNTED_FOLIOS` (about 6.15) a block
  is mapped by ``vmf_insert_page_mkwrite``: a *normal* PTE, folio reference, file rmap,
  MM_FILEPAGES. A read of a hole is ``dax_load_hole``: the shared zero page, special and
  uncounted. A private write is ``do_cow_fault`` with ``vmf->cow_page``
  (``dax_fault_cow_page``: the block is copied, a hole cleared, into an anonymous page; no
  block is allocated, one fault). A shared write allocates a zeroed block for a hole
  (``ext4_iomap_begin`` with IOMAP_WRITE, IOMAP_F_NEW), ``dax_insert_entry`` unmaps the zero
  page at that index from every mapping (``unmap_mapping_pages``, COWs kept) and the page is
  inserted young, dirty and writable; on a present read-only PTE only the write bit and young
  are added (``insert_page_into_pte_locked`` mkwrite).
* a device without struct pages: 6.18 fs-dax cannot run on it (no dax_device: the mount is
  -EINVAL, see :class:`~mixedmap.xip.fs.XipFS`), so there are no special raw-pfn DAX PTEs.
* read/write/truncate: ``dax_iomap_rw`` (a write that allocates unmaps the zero page there,
  ``invalidate_inode_pages2_range``) and ``truncate_pagecache``/``dax_truncate_page``.

Kernel text read: fs/dax.c (dax_iomap_pte_fault, dax_fault_iter, dax_load_hole,
dax_fault_cow_page, copy_cow_page_dax, dax_insert_entry, dax_fault_is_synchronous,
dax_insert_pfn_mkwrite; the copy read still carries pfn_t, so about 6.15), mm/memory.c (6.18
insert_page_into_pte_locked, validate_page_before_insert, vm_mixed_zeropage_allowed,
vmf_insert_page_mkwrite, __vm_normal_page), fs/ext4/file.c (ext4_dax_huge_fault,
ext4_dax_vm_ops, ext4_file_mmap_prepare), include/linux/dax.h (daxdev_mapping_supported),
mm/mmap.c (do_mmap), fs/ext4/super.c (ext4_check_feature_compatibility).

Model choices, each noted where it applies: base pages only (``.huge_fault``, PMD faults and
``dax_iomap_pmd_fault`` are not modelled); the DAX xarray entries are not kept (their only
effect on PTEs, unmapping the zero page when a hole gets a block, is applied directly); a
ZONE_DEVICE page keeps the machine's one idle reference (6.18 fsdax idles at 0, see
:func:`vmf_insert_page_mkwrite`); ``folio->mapping``/``index`` (``dax_associate_entry``) are not
set; the MAP_SYNC fsync (``dax_finish_sync_fault``) has nothing to flush in the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import (
    EINVAL,
    ENOMEM,
    EOPNOTSUPP,
    EROFS,
    AddressError,
    KernelErrno,
    OutOfMemory,
    UnsupportedOperation,
    VMBug,
)
from mixedmap.mm import rmap
from mixedmap.mm.memory import vm_normal_pages, zap_pte_range
from mixedmap.mm.vma import (
    FAULT_PER_PAGE,
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    MAP_SHARED_VALIDATE,
    MAP_SYNC,
    VM,
    VMA,
    FaultResult,
    VMFault,
    is_cow_mapping,
)
from mixedmap.mm.zero import zero_pfn
from mixedmap.phys.memmap import PG
from mixedmap.rules import DAX, DAX_NO_MIXEDMAP, DAX_REFCOUNTED_FOLIOS, require
from mixedmap.rules import MAP_SYNC as MAP_SYNC_RULE

if TYPE_CHECKING:
    from mixedmap.machine import Machine
    from mixedmap.mm.mm import MM
    from mixedmap.xip.fs import Inode, XipFile

_PG_ANON = int(PG.anon)

#: ``MAP_TYPE`` (include/uapi/linux/mman.h): the mapping type bits of the flag word.
MAP_TYPE = 0x0F
#: The part of ``LEGACY_MAP_MASK`` the model knows (include/linux/mman.h): MAP_SHARED_VALIDATE
#: refuses anything else the file does not support.
LEGACY_MAP_MASK = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_POPULATE


# -- the VMA's operations -------------------------------------------------------------------------
class DaxVmOps:
    """``ext4_dax_vm_ops``: ``.fault``, ``.page_mkwrite`` and ``.pfn_mkwrite`` are all
    ``ext4_dax_fault`` (``.huge_fault`` is not modelled: base pages only). A
    :class:`~mixedmap.mm.vma.BatchFault`, so the batched fault-in plans a DAX VMA whole."""

    #: ``vma_is_fsdax()``: what GUP's FOLL_LONGTERM refusal and the zero-page check ask.
    fsdax = True

    def fault(self, vma: VMA, vmf: VMFault) -> FaultResult:
        # ext4_dax_fault, dispatched here: one call less on every fault
        if vmf.write and not vma.flags & VM.SHARED:
            return do_cow_fault(vma, vmf)
        return dax_iomap_pte_fault(vma, vmf)

    def page_mkwrite(self, vma: VMA, vmf: VMFault) -> FaultResult:
        """``do_page_mkwrite`` on a shared VMA's read-only DAX page."""
        return ext4_dax_fault(vma, vmf)

    def pfn_mkwrite(self, vma: VMA, vmf: VMFault) -> FaultResult:
        """``wp_pfn_shared`` on a shared VMA's read-only zero-page PTE (a hole read first)."""
        return ext4_dax_fault(vma, vmf)

    def fault_pfns(self, vma: VMA, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        return dax_fault_pfns(vma, pgoffs)

    def sparse_page(self, machine: Machine) -> int:
        raise VMBug("fs-dax has no sparse page: a hole maps the zero page (dax_load_hole), per page")

    def sparse_allocated(self, machine: Machine) -> bool:
        return True  # nothing for the batch to allocate: dax_fault_pfns never answers FAULT_SPARSE

    def insert_pages(self, vma: VMA) -> bool:
        """``vmf_insert_page_mkwrite``: DAX folios are refcounted pages since about 6.15
        (devmap special PTEs from 4.5 to 6.14)."""
        return DAX_REFCOUNTED_FOLIOS.applies(vma.mm.machine.profile)


_DAX_VM_OPS = DaxVmOps()


def is_dax_vma(vma: VMA) -> bool:
    """``vma_is_dax()`` for the model's filesystem: the VMA faults through fs/dax.c."""
    return isinstance(vma.vm_ops, DaxVmOps)


def _mapping_of(vma: VMA) -> Inode:
    return vma.file.inode  # type: ignore[no-any-return]


# -- mmap -------------------------------------------------------------------------------------------
def ext4_file_mmap(file: XipFile, vma: VMA) -> None:
    """``ext4_file_mmap_prepare`` (6.18 fs/ext4/file.c) and ``mmap_region``'s ``vma_set_page_prot``.

    -EOPNOTSUPP for VM_SYNC unless the inode is DAX on a synchronous dax_device
    (``daxdev_mapping_supported``). A DAX inode gets ``ext4_dax_vm_ops`` and VM_HUGEPAGE, no
    VM_MIXEDMAP (4.19); a shared writable VMA gets the private (write-protected) vm_page_prot,
    since the ops have ``page_mkwrite`` (``vma_wants_writenotify``). Without DAX ext4 would give
    ``ext4_file_vm_ops`` (the page cache), which the model does not have: UnsupportedOperation.
    Every check runs before the VMA changes.
    """
    fs = file.inode.fs
    profile = vma.mm.machine.profile
    require(DAX, profile, "ext4_file_mmap with fs-dax")
    if vma.flags & VM.SYNC and not (fs.dax and fs.device.dax_synchronous):
        why = "the inode is not DAX" if not fs.dax else f"{fs.device.name}'s dax_device is not synchronous"
        raise EOPNOTSUPP(
            f"mmap {file.inode.name}: MAP_SYNC refused, {why} (daxdev_mapping_supported in "
            "ext4_file_mmap_prepare, 6.18)"
        )
    if not fs.dax:
        raise UnsupportedOperation(
            f"mmap {file.inode.name}: {fs.device.name} is mounted without DAX, so 6.18 ext4 maps it "
            "through the page cache (ext4_file_vm_ops, filemap_fault), which the model does not have; "
            "mount a DAX-capable device (-o dax) to map the file directly"
        )
    vma.vm_ops = _DAX_VM_OPS
    vma.flags |= VM.HUGEPAGE
    if not DAX_NO_MIXEDMAP.applies(profile):
        vma.flags |= VM.MIXEDMAP  # 4.0-4.18: dax_mmap set it (not a profile the model has)
    if vma.flags & (VM.WRITE | VM.SHARED) == VM.WRITE | VM.SHARED:  # vma_wants_writenotify
        vma.page_prot = vma.mm.vm_get_page_prot(vma.flags & ~VM.SHARED)


class _SyncMapping:
    """The file as ``->mmap`` sees it under MAP_SYNC: VM_SYNC is on the VMA first.

    do_mmap computes VM_SYNC in ``calc_vm_flag_bits`` before it calls the file's mmap; the
    model's :meth:`MM.mmap` predates MAP_SYNC, so :func:`mmap` hands the flag in this way and
    puts the real file back on the VMA afterwards."""

    def __init__(self, file: Any) -> None:
        self._file = file

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def mmap(self, vma: VMA) -> None:
        vma.flags |= VM.SYNC
        vma.file = self._file
        self._file.mmap(vma)


def mmap(
    mm: MM,
    length: int,
    prot: int | str,
    flags: int,
    file: Any,
    pgoff: int = 0,
    addr: int | None = None,
) -> int:
    """``do_mmap`` (6.18 mm/mmap.c) for the flag words :meth:`MM.mmap` does not know:
    MAP_SHARED_VALIDATE and MAP_SYNC (4.15, :data:`~mixedmap.rules.MAP_SYNC`).

    ``calc_vm_flag_bits`` turns MAP_SYNC into VM_SYNC whatever the type; then MAP_SHARED drops
    every non-legacy flag before the check, MAP_SHARED_VALIDATE refuses any flag the file does
    not support (MAP_SYNC needs ``FOP_MMAP_SYNC``: ext4 yes, a driver no) with -EOPNOTSUPP, and
    MAP_PRIVATE checks nothing. The file's ->mmap (:func:`ext4_file_mmap`) then decides VM_SYNC
    itself. Everything else is :meth:`MM.mmap`. Refused before anything changes.
    """
    require(MAP_SYNC_RULE, mm.machine.profile, "MAP_SHARED_VALIDATE / MAP_SYNC")
    if file is None or flags & MAP_ANONYMOUS:
        raise EINVAL("mmap: MAP_SHARED_VALIDATE and MAP_SYNC are modelled for file mappings only")
    kind = flags & MAP_TYPE
    if kind not in (MAP_SHARED, MAP_SHARED_VALIDATE, MAP_PRIVATE):
        raise EINVAL(f"mmap: mapping type {kind:#x} is none of MAP_SHARED, MAP_SHARED_VALIDATE, MAP_PRIVATE")
    vm_sync = bool(flags & MAP_SYNC)
    mask = LEGACY_MAP_MASK | (MAP_SYNC if getattr(file, "mmap_sync", False) else 0)
    checked = flags & LEGACY_MAP_MASK if kind == MAP_SHARED else flags
    if kind != MAP_PRIVATE and checked & ~(mask | MAP_TYPE):
        raise EOPNOTSUPP(
            f"mmap: MAP_SHARED_VALIDATE with flags {checked & ~(mask | MAP_TYPE):#x} that {file!r} does not "
            "support (do_mmap: MAP_SYNC needs FOP_MMAP_SYNC)"
        )
    unknown = flags & ~(LEGACY_MAP_MASK | MAP_SYNC | MAP_TYPE)
    if unknown:
        raise EINVAL(f"mmap: flags {unknown:#x} are not modelled")
    base = (MAP_PRIVATE if kind == MAP_PRIVATE else MAP_SHARED) | (flags & (MAP_FIXED | MAP_POPULATE))
    target = _SyncMapping(file) if vm_sync else file
    return mm.mmap(length, prot, base, file=target, pgoff=pgoff, addr=addr)


# -- faults -----------------------------------------------------------------------------------------
def ext4_dax_fault(vma: VMA, vmf: VMFault) -> FaultResult:
    """``ext4_dax_fault`` -> ``ext4_dax_huge_fault(vmf, 0)``, entered the way 6.18 ``do_fault``
    would: a private write is ``do_cow_fault`` (``vmf->cow_page``), everything else goes to
    ``dax_iomap_pte_fault`` (write = FAULT_FLAG_WRITE on a VM_SHARED VMA)."""
    if vmf.write and not vma.flags & VM.SHARED:
        return do_cow_fault(vma, vmf)
    return dax_iomap_pte_fault(vma, vmf)


def _vmf_error(exc: KernelErrno) -> FaultResult:
    """``dax_fault_return`` -> ``vmf_error``: -ENOMEM is OOM, any other errno SIGBUS."""
    return FaultResult.OOM if isinstance(exc, ENOMEM) else FaultResult.SIGBUS


def dax_iomap_pte_fault(vma: VMA, vmf: VMFault) -> FaultResult:
    """``dax_iomap_pte_fault`` + ``dax_fault_iter`` (fs/dax.c) for a fault without a cow page.

    SIGBUS at or beyond EOF. A read of a hole is :func:`dax_load_hole`. A write to a hole
    allocates a zeroed block (``ext4_iomap_alloc``; ENOSPC is SIGBUS once ext4 gave up
    retrying) and unmaps the zero page there from every mapping (``dax_insert_entry``). The
    block's pfn is ``dax_iomap_direct_access``'s (an errno is ``dax_fault_return``'s), then
    ``folio_ref_inc``, :func:`vmf_insert_page_mkwrite` and ``folio_put``. A MAP_SYNC write that
    allocated (IOMAP_F_DIRTY) returns VM_FAULT_NEEDDSYNC; ``dax_finish_sync_fault`` then fsyncs
    and ``dax_insert_pfn_mkwrite`` makes the same insert (the model has nothing to fsync).
    """
    mapping: Inode = vma.file.inode
    fs = mapping.fs
    if vmf.pgoff >= mapping.npages:
        return FaultResult.SIGBUS
    block = mapping.block(vmf.pgoff)
    new = False
    if block < 0:
        if not vmf.write:
            return dax_load_hole(vma, vmf)
        try:
            block = fs.alloc_block()
        except KernelErrno as exc:  # ENOSPC after ext4_should_retry_alloc, or the device's errno
            return _vmf_error(exc)
        mapping._grow_blocks(vmf.pgoff + 1)
        mapping.blocks[vmf.pgoff] = block
        new = True
    try:
        _, pfn = fs.direct_access(block)
    except KernelErrno as exc:
        return _vmf_error(exc)
    if new:  # dax_insert_entry: "we are replacing a zero page with block mapping"
        unmap_mapping_pages(mapping, vmf.pgoff, 1, even_cows=False)
    # folio_ref_inc(folio) / folio_put(folio) around the insert cancel out: not modelled.
    ret = vmf_insert_page_mkwrite(vma, vmf.address, pfn, vmf.write)
    if new and vmf.write and vma.flags & VM.SYNC:
        vma.mm.trace("dax_finish_sync_fault", "fs/dax.c:dax_finish_sync_fault", vma, vmf.address, pfn, 0)
    if new and not ret & FaultResult.SIGBUS:
        ret |= FaultResult.MAJOR  # IOMAP_F_NEW: counted as a major fault
    return ret


def dax_load_hole(vma: VMA, vmf: VMFault) -> FaultResult:
    """``dax_load_hole``: the zero page (``my_zero_pfn``), inserted read-only by
    ``vmf_insert_page_mkwrite(vmf, page, false)``: special, no refcount, rmap or RSS. The
    model's zero page is allocated on first use, so only that use can be VM_FAULT_OOM."""
    try:
        pfn = zero_pfn(vma.mm.machine)
    except OutOfMemory:
        return FaultResult.OOM
    return vmf_insert_page_mkwrite(vma, vmf.address, pfn, False)


def do_cow_fault(vma: VMA, vmf: VMFault) -> FaultResult:
    """6.18 ``do_cow_fault`` with DAX's ``dax_fault_cow_page``: a private write in one fault.

    ``vmf_anon_prepare`` (anon_vma) and ``folio_prealloc`` (OOM) come first; then
    ``dax_iomap_pte_fault`` with the cow page: SIGBUS beyond EOF (the page is put back), a
    hole is ``clear_user_highpage`` (the model's pages come zeroed), a block is copied into
    it (``copy_cow_page_dax``); ``finish_fault`` maps it: ``maybe_mkwrite(pte_mkdirty())``,
    new anon rmap, MM_ANONPAGES +1 (VM_FAULT_DONE_COW; NOPAGE to the model's ``__do_fault``).
    No block is allocated and no DAX folio or zero page is touched. The kernel allocates the
    PTE table after the cow page (``__do_fault``'s prealloc_pte); the model's
    ``handle_mm_fault`` allocated it before calling ->fault.
    """
    mm = vma.mm
    machine = mm.machine
    if not vma.anon_vma:  # anon_vma_prepare: once; an attrs setattr costs microseconds
        vma.anon_vma = True
    try:
        (cow,) = machine.pages.alloc_pages(1).tolist()
    except OutOfMemory:
        return FaultResult.OOM
    mapping = _mapping_of(vma)
    if vmf.pgoff >= mapping.npages:
        rmap.put_pages(machine.pages, cow)
        return FaultResult.SIGBUS
    block = mapping.block(vmf.pgoff)
    if block >= 0:
        try:
            _, src = mapping.fs.direct_access(block)
        except KernelErrno as exc:
            rmap.put_pages(machine.pages, cow)
            return _vmf_error(exc)
        mm.copy_page(src, cow)  # copy_user_page(vto, kaddr, vmf->address, vmf->cow_page)
    slot = mm.pt.pte_slot(vmf.address, allocate=False)
    if slot is None or not mm.ops.pte_none(mm.pt.read_pte(slot)):
        rmap.put_pages(machine.pages, cow)  # finish_fault found the PTE populated: NOPAGE
        return FaultResult.NOPAGE
    entry = int(mm.ops.pfn_pte(cow, vma.page_prot))
    entry = _maybe_mkwrite(vma, int(mm.ops.pte_mkdirty(entry)))
    rmap.page_add_new_anon_rmap(machine.memmap, cow, mm.id, vmf.pgoff)
    mm.rss_anon += 1
    mm.pt.write_pte(slot, entry)
    mm.trace("cow_fault", "mm/memory.c:do_cow_fault", vma, vmf.address, cow, 0)
    return FaultResult.NOPAGE


def _maybe_mkwrite(vma: VMA, pte: int) -> int:
    """``maybe_mkwrite``: writable only if the VMA is."""
    return int(vma.mm.ops.pte_mkwrite(pte)) if vma.flags & VM.WRITE else pte


def _zeropage_allowed(vma: VMA) -> bool:
    """``vm_mixed_zeropage_allowed`` (6.18 mm/memory.c): a COW VMA, one that can never be
    writable, or one with ``pfn_mkwrite`` that is fsdax (or VM_IO); mm_forbids_zeropage is false."""
    if is_cow_mapping(vma.flags) or not vma.flags & (VM.WRITE | VM.MAYWRITE):
        return True
    ops = vma.vm_ops
    return getattr(ops, "pfn_mkwrite", None) is not None and (
        bool(getattr(ops, "fsdax", False)) or bool(vma.flags & VM.IO)
    )


def vmf_insert_page_mkwrite(vma: VMA, addr: int, pfn: int, write: bool) -> FaultResult:
    """``vmf_insert_page_mkwrite`` -> ``insert_page`` -> ``insert_page_into_pte_locked`` (6.18).

    ``validate_page_before_insert`` refuses a page with no reference, the zero page where
    ``vm_mixed_zeropage_allowed`` says no, and anonymous or typed pages (SIGBUS). On an empty
    PTE the zero page goes in special and uncounted; any other page takes a reference, file
    rmap and MM_FILEPAGES, and a write insert is young, dirty and (VMA permitting) writable. On
    a populated PTE only a write insert of the same pfn acts: writable (``maybe_mkwrite``) and
    young, not dirty; a different pfn is -EFAULT (SIGBUS), a read insert -EBUSY (NOPAGE).
    -ENOMEM for the page table is OOM. fs/dax.c wraps the call in ``folio_ref_inc``/``folio_put``
    because a 6.18 fsdax folio idles at refcount 0 (``__init_zone_device_page``); the model's
    ZONE_DEVICE pages keep the one reference the machine gave them, so every count here is the
    kernel's plus that one. (Written against :mod:`mixedmap.mm.memory` internals:
    :mod:`mixedmap.mm.vmf` has no public ``vmf_insert_page_mkwrite`` and no fsdax case in its
    ``vm_mixed_zeropage_allowed``.)
    """
    mm = vma.mm
    machine = mm.machine
    ops = mm.ops
    if not vma.start <= addr < vma.end or addr % mm.page_size:
        return FaultResult.SIGBUS
    # One fault, one page: plain ints and one struct-page lookup, no one-element arrays.
    memmap = machine.memmap
    if pfn >= 0 and mm.pfn_valid_is_core:  # SPARSEMEM pfn_valid is flat_of's own test
        try:
            k = memmap.flat_of(pfn)
        except AddressError:
            return FaultResult.SIGBUS  # -EINVAL: no struct page
    else:
        if not (mm.pfn_valid_one(pfn) if pfn >= 0 else machine.pfn_valid(pfn)[0]):
            return FaultResult.SIGBUS  # -EINVAL: no struct page
        k = memmap.flat_of(pfn)
    if memmap.refcount1d.item(k) <= 0:
        return FaultResult.SIGBUS  # -EINVAL: folio_ref_count() == 0
    pages = machine.pages
    zero = pfn == pages.zero_pfn  # is_zero_pfn (mixedmap.mm.zero keeps it there)
    if zero:
        if not _zeropage_allowed(vma):
            return FaultResult.SIGBUS
    elif memmap.flags1d.item(k) & _PG_ANON:
        return FaultResult.SIGBUS
    try:
        slot = mm.fault_pte_slot(addr)
    except OutOfMemory:
        return FaultResult.OOM
    old = mm.mem.read_u64(slot, mm.byteorder)
    if not (old == mm.empty_pte and mm.empty_is_none) and not ops.pte_none(old):
        if not write:
            return FaultResult.NOPAGE  # -EBUSY: someone mapped it first
        if int(ops.pte_pfn(old)) != pfn:
            return FaultResult.SIGBUS  # -EFAULT (WARN unless the zero pfn)
        entry = int(ops.pte_mkyoung(_maybe_mkwrite(vma, old)))
        if entry != old:
            mm.pt.write_pte(slot, entry)
        mm.trace("insert_page_mkwrite", "mm/memory.c:insert_page", vma, addr, pfn, old)
        return FaultResult.NOPAGE
    if zero:
        entry = mm.mkspecial_one(int(ops.pfn_pte(pfn, vma.page_prot)))
    else:
        if pages.tracer is None:  # folio_get; its refcount was found above zero
            refcount = memmap.refcount1d  # read after the table walk: it may have grown them
            refcount[k] = refcount.item(k) + 1
        else:
            pages.get_page(pfn)  # traced
        entry = int(ops.pfn_pte(pfn, vma.page_prot))
        if write:
            entry = _maybe_mkwrite(vma, int(ops.pte_mkdirty(ops.pte_mkyoung(entry))))
        mm.rss_file += 1
        mapcount = memmap.mapcount1d
        mapcount[k] = mapcount.item(k) + 1  # page_add_file_rmap (folio_add_file_rmap_pte)
    mm.pt.write_pte(slot, entry)
    mm.trace("insert_page", "mm/memory.c:insert_page", vma, addr, pfn, old)
    return FaultResult.NOPAGE


def dax_fault_pfns(vma: VMA, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
    """What a *read* ``dax_iomap_pte_fault`` inserts at each file page, for many at once.

    No side effect: the pfn of each block (``dax_iomap_direct_access``, checked by
    :meth:`XipDevice.dax_frames`), inserted by :func:`vmf_insert_page_mkwrite` as a normal page
    (the batch does what ``insert_page`` does), and :data:`FAULT_PER_PAGE` for what only the
    fault can tell: a hole (the zero page, ``dax_load_hole``), beyond EOF (SIGBUS), a device
    that refuses ``direct_access``.
    """
    mapping = _mapping_of(vma)
    arr = np.asarray(pgoffs, dtype=np.int64)
    out = np.full(arr.shape, FAULT_PER_PAGE, dtype=np.int64)
    inside = (arr >= 0) & (arr < mapping.npages) & (arr < mapping.blocks.size)
    blocks = np.full(arr.shape, -1, dtype=np.int64)
    blocks[inside] = mapping.blocks[arr[inside]]
    data = inside & (blocks >= 0)
    if data.any():
        frames = mapping.fs.device.dax_frames(blocks[data])
        out[data] = np.where(frames >= 0, frames, FAULT_PER_PAGE)
    return out


# -- unmapping ------------------------------------------------------------------------------------
def unmap_mapping_pages(mapping: Inode, first: int, count: int, even_cows: bool) -> int:
    """``unmap_mapping_pages`` (mm/memory.c): zap file pages [first, first + count) in every
    VMA of the mapping (the i_mmap tree: every mm of the machine); without ``even_cows`` a PTE
    mapping an anonymous (COWed) page stays (``should_zap_folio``). Returns the PTEs cleared."""
    machine = mapping.fs.machine
    ps, cleared = mapping.fs.page_size, 0
    for mm in list(machine.mms):
        for vma in list(mm.vmas):
            if getattr(vma.file, "inode", None) is not mapping:
                continue
            lo, hi = max(first, vma.pgoff), min(first + count, vma.pgoff + vma.npages)
            if lo >= hi:
                continue
            start = vma.start + (lo - vma.pgoff) * ps
            if even_cows:
                cleared += zap_pte_range(vma, start, start + (hi - lo) * ps)
                continue
            cleared += _zap_non_anon(vma, start, hi - lo)
    return cleared


def _zap_non_anon(vma: VMA, start: int, npages: int) -> int:
    """Zap the present PTEs of [start, +npages) that do not map an anonymous page, run by run."""
    mm = vma.mm
    vas, ptes, reach = mm.pt.range_ptes(start, npages)
    present = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
    if not present.any():
        return 0
    idx = np.flatnonzero(present)
    pfns = vm_normal_pages(vma, vas[idx], ptes[idx])
    keep = np.zeros(idx.shape, dtype=np.bool_)
    normal = pfns >= 0
    if normal.any():
        keep[normal] = rmap.is_anon(mm.machine.memmap, pfns[normal].astype(np.uint64))
    zap = np.zeros(npages, dtype=np.bool_)
    zap[idx[~keep]] = True
    cleared = 0
    for a, n in _runs(np.flatnonzero(zap)):
        cleared += zap_pte_range(vma, int(vas[a]), int(vas[a]) + n * mm.page_size)
    return cleared


def _runs(idx: NDArray[np.int64]) -> list[tuple[int, int]]:
    """(first, length) of each run of consecutive indices."""
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks]).tolist()
    ends = [*breaks.tolist(), idx.size]
    return [(int(idx[a]), b - a) for a, b in zip(starts, ends, strict=True)]


# -- read, write, truncate --------------------------------------------------------------------------
def _each_page(offset: int, length: int, ps: int) -> list[tuple[int, int, int]]:
    out, pos, end = [], offset, offset + length
    while pos < end:
        pgoff, off = divmod(pos, ps)
        n = min(end - pos, ps - off)
        out.append((pgoff, off, n))
        pos += n
    return out


def file_read(file: XipFile, offset: int, length: int) -> bytes:
    """``ext4_file_read_iter``: ``dax_iomap_rw`` (DAX) or a buffered read (the same bytes; the
    model has no page cache): up to EOF, holes read as zeroes."""
    require(DAX, file.inode.fs.machine.profile, "ext4_file_read_iter")
    if not file.readable:
        raise EINVAL(f"{file!r} is not open for reading")
    if offset < 0 or length < 0:
        raise EINVAL(f"bad read range {offset}+{length}")
    mapping = file.inode
    fs, mem = mapping.fs, mapping.fs.machine.mem
    ps = fs.page_size
    out = bytearray()
    for pgoff, off, n in _each_page(offset, max(0, min(offset + length, mapping.size) - offset), ps):
        block = mapping.block(pgoff)
        if block < 0:
            out += bytes(n)
        elif fs.dax:  # dax_copy_to_iter from dax_direct_access's kaddr
            out += mem.read(fs.direct_access(block)[1] * ps + off, n)
        else:  # the block device (a bio), as the page cache would fill itself
            out += fs.device.read(block * ps + off, n)
    return bytes(out)


def file_write(file: XipFile, offset: int, data: bytes) -> int:
    """``ext4_file_write_iter`` -> ``ext4_dax_write_iter`` -> ``dax_iomap_rw`` (6.18).

    A page of a hole gets a zeroed block (``ext4_iomap_begin`` with IOMAP_WRITE, IOMAP_F_NEW),
    and ``dax_iomap_iter`` then invalidates the new range (``invalidate_inode_pages2_range``:
    ``unmap_mapping_pages`` without COWs), which takes the zero page out of every mapping so
    the data is visible through mmap; bytes are copied to the block (``dax_copy_from_iter``);
    i_size grows. A mount without DAX writes the same bytes (buffered; nothing maps it).
    -EINVAL for a file not open for writing or a negative offset, -EROFS on a read-only mount.
    """
    require(DAX, file.inode.fs.machine.profile, "ext4_file_write_iter")
    if not file.writable:
        raise EINVAL(f"{file!r} is not open for writing")
    mapping = file.inode
    fs = mapping.fs
    if fs.read_only:
        raise EROFS(f"{fs.device.name} is read-only")
    if offset < 0:
        raise EINVAL(f"negative offset {offset}")
    ps, mem = fs.page_size, fs.machine.mem
    pos = 0
    for pgoff, off, n in _each_page(offset, len(data), ps):
        block = mapping.block(pgoff)
        if block < 0:
            block = fs.alloc_block()
            mapping._grow_blocks(pgoff + 1)
            mapping.blocks[pgoff] = block
            if fs.dax:
                unmap_mapping_pages(mapping, pgoff, 1, even_cows=False)
        if fs.dax:  # dax_copy_from_iter to dax_direct_access's kaddr
            mem.write(fs.direct_access(block)[1] * ps + off, data[pos : pos + n])
        else:
            fs.device.write(block * ps + off, data[pos : pos + n])
        pos += n
    mapping.size = max(mapping.size, offset + len(data))
    return len(data)


def dax_truncate(mapping: Inode, size: int) -> None:
    """Shrinking truncate of an ext4 DAX file (6.18 ``ext4_setattr``).

    ``truncate_pagecache`` unmaps every page past the new EOF from every mapping, COWs
    included (``unmap_mapping_range(..., even_cows=1)``), and deletes their DAX entries
    (``dax_delete_mapping_entry``); ``ext4_truncate`` frees the blocks, and the tail of a last
    partial block is zeroed (``ext4_block_truncate_page`` -> ``dax_truncate_page``). Growing
    only moves i_size. -EINVAL for a negative size, -EROFS on a read-only mount, first.
    """
    fs = mapping.fs
    require(DAX, fs.machine.profile, "ext4_setattr (DAX truncate)")
    if size < 0:
        raise EINVAL(f"negative size {size}")
    if fs.read_only:
        raise EROFS(f"{fs.device.name} is read-only")
    ps = fs.page_size
    first_gone = -(-size // ps)
    if size < mapping.size:
        unmap_mapping_pages(mapping, first_gone, max(mapping.npages, mapping.blocks.size) - first_gone, True)
        fs.free_blocks(mapping.blocks[first_gone:])
        mapping.blocks[first_gone:] = -1
        if size % ps:
            block = mapping.block(size // ps)
            if block >= 0 and fs.dax:
                fs.machine.mem.write(fs.direct_access(block)[1] * ps + size % ps, bytes(ps - size % ps))
            elif block >= 0:
                fs.device.write(block * ps + size % ps, bytes(ps - size % ps))
    mapping.size = size
