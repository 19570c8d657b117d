"""``mm/filemap_xip.c`` (2.6.26/2.6.27): XIP mmap, faults, read, write, truncate.

XIP mappings are VM_MIXEDMAP: a present block is mapped with ``vm_insert_mixed`` (special on
an arch with the bit, a refcounted page without it when the memory has struct pages); a hole
read through a private or read-only mapping gets the shared zeroed "sparse page"; a hole in a
writable shared mapping is allocated and every mapping of the sparse page at that offset is
torn down (``__xip_unmap``). 2.6.27 inserts the sparse page with ``vm_insert_page`` and
returns NOPAGE (commit 538f8ea6); 2.6.26 hands it back in ``vmf->page``.

Every entry point requires :data:`~mixedmap.rules.FILEMAP_XIP` (2.6.26 up to 4.0): asked of a
6.18 machine it is an :class:`~mixedmap.rules.UnsupportedRule` naming DAX, its successor
(:mod:`mixedmap.xip.dax`), before anything changes.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from mixedmap.errors import EFAULT, EINVAL, ENODATA, ENOMEM, EROFS, KernelErrno, OutOfMemory, VMBug
from mixedmap.mm import rmap
from mixedmap.mm.memory import vm_insert_mixed, vm_insert_page, zap_pte_range
from mixedmap.mm.vma import FAULT_PER_PAGE, FAULT_SPARSE, VM, VMA, FaultResult, VMFault
from mixedmap.rules import FILEMAP_XIP, XIP_SPARSE_VM_INSERT_PAGE, require

if TYPE_CHECKING:
    from mixedmap.machine import Machine
    from mixedmap.xip.fs import Inode, XipFile, XipFS

_sparse: weakref.WeakKeyDictionary[Machine, int] = weakref.WeakKeyDictionary()


def xip_sparse_page(machine: Machine) -> int:
    """The global zeroed sparse page (allocated once, on first use, as 2.6.2x does)."""
    pfn = _sparse.get(machine)
    if pfn is None:
        (pfn,) = machine.pages.alloc_pages(1).tolist()
        _sparse[machine] = pfn
    return pfn


def xip_sparse_allocated(machine: Machine) -> bool:
    """Whether the sparse page exists yet (the first hole fault allocates it)."""
    return machine in _sparse


def release_sparse_page(machine: Machine) -> bool:
    """Free the sparse page if nothing maps it any more (the kernel never does; a model
    that checks for leaks at teardown must). Returns whether it was freed."""
    pfn = _sparse.get(machine)
    if pfn is None:
        return False
    if int(machine.pages.page_count(pfn)[0]) != 1:
        return False
    machine.pages.free_pages(pfn)
    del _sparse[machine]
    return True


def get_xip_mem(mapping: Inode, pgoff: int, create: bool) -> tuple[int, int]:
    """``ext2_get_xip_mem`` (fs/ext2/xip.c): (kaddr, pfn) of file page ``pgoff``.

    A hole raises ENODATA unless ``create``, which allocates a zeroed block.
    """
    require(FILEMAP_XIP, mapping.fs.machine.profile, "get_xip_mem (ext2_get_xip_mem)")
    block = mapping.block(pgoff)
    if block < 0:
        if not create:
            raise ENODATA(f"{mapping.name}: page {pgoff} is a hole")
        if mapping.fs.read_only:
            raise EROFS(f"{mapping.fs.device.name} is read-only")
        mapping._grow_blocks(pgoff + 1)
        block = mapping.fs.alloc_block()
        mapping.blocks[pgoff] = block
    return mapping.fs.direct_access(block)


#: :func:`xip_fault_pfns` answers besides a pfn (the mm layer's batch-fault codes).
XIP_SPARSE = FAULT_SPARSE
XIP_PER_PAGE = FAULT_PER_PAGE


def xip_fault_pfns(vma: VMA, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
    """What a *read* ``xip_file_fault`` would map at each file page, for many pages at once.

    Decides only what has no side effect, so a batched fault-in (``mixedmap.mm.populate``)
    can ask for a whole VMA before touching anything: the pfn ``get_xip_mem`` finds for a
    block (mapped with ``vm_insert_mixed``), :data:`XIP_SPARSE` where the global sparse
    page goes (a hole in a private or read-only mapping), or :data:`XIP_PER_PAGE` where
    only the fault itself can tell: beyond EOF (SIGBUS), a hole the fault allocates (a
    writable shared mapping on a writable filesystem, then ``__xip_unmap``), a block the
    driver has not backed yet (brd allocates it inside ``direct_access``), or a device
    whose ``direct_access`` refuses (the fault reports VM_FAULT_OOM).
    """
    require(FILEMAP_XIP, vma.mm.machine.profile, "xip_file_fault")
    mapping = _mapping_of(vma)
    pgoffs = np.asarray(pgoffs, dtype=np.int64)
    out = np.full(pgoffs.shape, XIP_PER_PAGE, dtype=np.int64)
    inside = (pgoffs >= 0) & (pgoffs < mapping.npages)
    known = inside & (pgoffs < mapping.blocks.size)
    blocks = np.full(pgoffs.shape, -1, dtype=np.int64)
    blocks[known] = mapping.blocks[pgoffs[known]]
    hole = inside & (blocks < 0)
    writable_shared = vma.flags & (VM.WRITE | VM.MAYWRITE) and vma.flags & (VM.SHARED | VM.MAYSHARE)
    if not (writable_shared and not mapping.fs.read_only):
        out[hole] = XIP_SPARSE
    data = inside & (blocks >= 0)
    if data.any():
        out[data] = _block_pfns(mapping.fs, blocks[data])
    return out


def _block_pfns(fs: XipFS, blocks: NDArray[np.int64]) -> NDArray[np.int64]:
    """``direct_access`` for many blocks: the device's frames, XIP_PER_PAGE where unsure
    (:meth:`XipDevice.dax_frames`: checked against direct_access at the first and last)."""
    frames = fs.device.dax_frames(blocks)
    return np.where(frames >= 0, frames, XIP_PER_PAGE)


def is_xip_vma(vma: VMA) -> bool:
    """Whether the VMA faults through ``xip_file_fault`` (xip_file_vm_ops)."""
    return isinstance(vma.vm_ops, XipVmOps)


class XipVmOps:
    """xip_file_vm_ops; a :class:`~mixedmap.mm.vma.BatchFault`, so fault-in can batch it."""

    def fault(self, vma: VMA, vmf: VMFault) -> FaultResult:
        return xip_file_fault(vma, vmf)

    def fault_pfns(self, vma: VMA, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        return xip_fault_pfns(vma, pgoffs)

    def sparse_page(self, machine: Machine) -> int:
        return xip_sparse_page(machine)

    def sparse_allocated(self, machine: Machine) -> bool:
        return xip_sparse_allocated(machine)

    def insert_pages(self, vma: VMA) -> bool:
        """``vm_insert_mixed``: a pfn with a struct page is ``insert_page``d only without the
        special bit (scheme B, e.g. x86 under 2.6.26)."""
        return not vma.mm.has_special


_XIP_VM_OPS = XipVmOps()


def xip_file_mmap(file: XipFile, vma: VMA) -> None:
    """``xip_file_mmap``: VM_MIXEDMAP (and VM_CAN_NONLINEAR) with the XIP fault handler."""
    require(FILEMAP_XIP, vma.mm.machine.profile, "xip_file_mmap")
    vma.flags |= VM.CAN_NONLINEAR | VM.MIXEDMAP
    vma.vm_ops = _XIP_VM_OPS


def _mapping_of(vma: VMA) -> Inode:
    return vma.file.inode  # type: ignore[no-any-return]


def xip_file_fault(vma: VMA, vmf: VMFault) -> FaultResult:
    """``xip_file_fault`` (2.6.26/2.6.27 mm/filemap_xip.c)."""
    mapping = _mapping_of(vma)
    machine = vma.mm.machine
    require(FILEMAP_XIP, machine.profile, "xip_file_fault")
    if vmf.pgoff >= mapping.npages:
        return FaultResult.SIGBUS
    try:
        _, pfn = get_xip_mem(mapping, vmf.pgoff, create=False)
    except ENODATA:
        pfn = None
    except KernelErrno:
        return FaultResult.OOM  # sic: any other error is reported as OOM
    if pfn is None:
        writable_shared = vma.flags & (VM.WRITE | VM.MAYWRITE) and vma.flags & (VM.SHARED | VM.MAYSHARE)
        if writable_shared and not mapping.fs.read_only:
            try:
                _, pfn = get_xip_mem(mapping, vmf.pgoff, create=True)
            except KernelErrno:
                return FaultResult.SIGBUS
            __xip_unmap(mapping, vmf.pgoff)
        else:
            try:
                sparse = xip_sparse_page(machine)
            except OutOfMemory:
                return FaultResult.OOM
            if XIP_SPARSE_VM_INSERT_PAGE.applies(machine.profile):
                try:
                    vm_insert_page(vma, vmf.address, sparse)
                except ENOMEM:
                    return FaultResult.OOM
                except KernelErrno:
                    pass  # 2.6.27: only -ENOMEM is checked; -EBUSY (a racing fault) is NOPAGE
                return FaultResult.NOPAGE
            machine.pages.get_page(sparse)
            vmf.page = sparse
            return FaultResult.MINOR
    try:
        vm_insert_mixed(vma, vmf.address, pfn)
    except ENOMEM:
        return FaultResult.OOM
    except KernelErrno as exc:
        raise VMBug(f"xip_file_fault: BUG_ON(err) after vm_insert_mixed: {exc}") from exc
    return FaultResult.NOPAGE


def __xip_unmap(mapping: Inode, pgoff: int) -> int:
    """``__xip_unmap``: remove the sparse page from every mapping of ``pgoff``.

    PTEs that map private COW copies are left alone. Returns the PTEs removed.
    """
    machine = mapping.fs.machine
    require(FILEMAP_XIP, machine.profile, "__xip_unmap")
    sparse = _sparse.get(machine)
    if sparse is None:
        return 0
    removed = 0
    for mm in list(machine.mms):
        for vma in mm.vmas:
            if vma.file is None or getattr(vma.file, "inode", None) is not mapping:
                continue
            addr = vma.start + ((pgoff - vma.pgoff) << mm.page_shift)
            if not vma.contains(addr) or pgoff < vma.pgoff:
                continue
            slot = mm.pt.pte_slot(addr, allocate=False)
            if slot is None:
                continue
            pte = mm.pt.read_pte(slot)
            if not mm.ops.pte_present(pte) or int(mm.ops.pte_pfn(pte)) != sparse:
                continue
            if mm.ops.pte_dirty(pte):
                raise VMBug(f"__xip_unmap: BUG_ON(pte_dirty) for the sparse page at {addr:#x}")
            mm.pt.write_pte(slot, mm.empty_pte)
            rmap.page_remove_rmap(machine.memmap, sparse)
            mm.rss_file -= 1
            machine.pages.put_page(np.array([sparse], dtype=np.uint64))
            mm.trace("xip_unmap", "mm/filemap_xip.c:__xip_unmap", vma, addr, sparse, pte)
            removed += 1
    return removed


def xip_file_read(file: XipFile, offset: int, length: int) -> bytes:
    """``xip_file_read``: bytes up to EOF; holes read as zeroes."""
    require(FILEMAP_XIP, file.inode.fs.machine.profile, "xip_file_read")
    if not file.readable:
        raise EINVAL(f"{file!r} is not open for reading")
    if offset < 0 or length < 0:
        raise EFAULT(f"bad read range {offset}+{length}")
    mapping = file.inode
    machine = mapping.fs.machine
    ps = mapping.fs.page_size
    end = min(offset + length, mapping.size)
    out = bytearray()
    pos = offset
    while pos < end:
        pgoff, off = divmod(pos, ps)
        n = min(end - pos, ps - off)
        try:
            _, pfn = get_xip_mem(mapping, pgoff, create=False)
            out += machine.mem.read(pfn * ps + off, n)
        except ENODATA:
            out += bytes(n)
        pos += n
    return bytes(out)


def xip_file_write(file: XipFile, offset: int, data: bytes) -> int:
    """``xip_file_write``: allocate holes (unmapping the sparse page), copy, extend i_size."""
    require(FILEMAP_XIP, file.inode.fs.machine.profile, "xip_file_write")
    if not file.writable:
        raise EINVAL(f"{file!r} is not open for writing")
    mapping = file.inode
    if mapping.fs.read_only:
        raise EROFS(f"{mapping.fs.device.name} is read-only")
    if offset < 0:
        raise EINVAL(f"negative offset {offset}")
    machine = mapping.fs.machine
    ps = mapping.fs.page_size
    pos = 0
    while pos < len(data):
        pgoff, off = divmod(offset + pos, ps)
        n = min(len(data) - pos, ps - off)
        try:
            _, pfn = get_xip_mem(mapping, pgoff, create=False)
        except ENODATA:
            _, pfn = get_xip_mem(mapping, pgoff, create=True)
            __xip_unmap(mapping, pgoff)
        machine.mem.write(pfn * ps + off, data[pos : pos + n])
        pos += n
    mapping.size = max(mapping.size, offset + len(data))
    return len(data)


def xip_truncate(mapping: Inode, size: int) -> None:
    """truncate: unmap_mapping_range(even_cows) beyond the new size, free its blocks, and
    zero the tail of the last partial block (``xip_truncate_page``)."""
    require(FILEMAP_XIP, mapping.fs.machine.profile, "xip_truncate_page")
    if size < 0:
        raise EINVAL(f"negative size {size}")
    if mapping.fs.read_only:
        raise EROFS(f"{mapping.fs.device.name} is read-only")
    ps = mapping.fs.page_size
    machine = mapping.fs.machine
    first_gone = -(-size // ps)
    if size < mapping.size:
        for mm in list(machine.mms):
            for vma in mm.vmas:
                if getattr(vma.file, "inode", None) is not mapping:
                    continue
                lo = vma.start + max(0, (first_gone - vma.pgoff)) * ps
                if lo < vma.end:
                    zap_pte_range(vma, lo, vma.end)
        mapping.fs.free_blocks(mapping.blocks[first_gone:])
        mapping.blocks[first_gone:] = -1
        if size % ps:
            block = mapping.block(size // ps)
            if block >= 0:
                _, pfn = mapping.fs.direct_access(block)
                machine.mem.write(pfn * ps + size % ps, bytes(ps - size % ps))
    mapping.size = size
