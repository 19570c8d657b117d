"""VMAs and their flags, as 2.6.27 ``include/linux/mm.h`` and ``mm/mmap.c`` define them.

The flag values are the kernel's generic ones (not arch constants). How MAP_SHARED and the
file's open mode turn into VM_SHARED / VM_MAYSHARE / VM_MAYWRITE follows ``do_mmap_pgoff``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs
import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from mixedmap.machine import Machine
    from mixedmap.mm.mm import MM


class VM:
    """vm_flags (2.6.27 values; the removed ones name the release that removed them).

    Plain ints, not an IntFlag: every fault tests several flags, and IntFlag arithmetic
    costs microseconds each time. ``mnemonics`` gives the readable form.
    """

    READ = 0x00000001
    WRITE = 0x00000002
    EXEC = 0x00000004
    SHARED = 0x00000008
    MAYREAD = 0x00000010
    MAYWRITE = 0x00000020
    MAYEXEC = 0x00000040
    MAYSHARE = 0x00000080
    GROWSDOWN = 0x00000100
    PFNMAP = 0x00000400
    LOCKED = 0x00002000
    IO = 0x00004000
    DONTCOPY = 0x00020000
    DONTEXPAND = 0x00040000
    RESERVED = 0x00080000  # removed in 3.7
    HUGETLB = 0x00400000
    NONLINEAR = 0x00800000  # removed in 4.0
    INSERTPAGE = 0x02000000  # removed in 3.7 (folded into MIXEDMAP)
    ALWAYSDUMP = 0x04000000
    DONTDUMP = 0x04000000  # 3.7: VM_ALWAYSDUMP's bit, set by remap_pfn_range
    CAN_NONLINEAR = 0x08000000
    MIXEDMAP = 0x10000000
    #: 4.15 MAP_SYNC (VM_NONLINEAR's bit, free since 4.0): DAX write faults sync metadata first.
    SYNC = 0x00800000
    #: 2.6.38 (VM_SAO's bit in 2.6.27, not modelled); ext4 sets it on every DAX VMA.
    HUGEPAGE = 0x20000000


#: /proc/PID/smaps VmFlags mnemonics (fs/proc/task_mmu.c; the line itself arrived in 3.8).
#: VM_RESERVED was gone by then (3.7) and has none: "rr" there means VM_RAND_READ.
MNEMONICS: tuple[tuple[int, str], ...] = (
    (VM.READ, "rd"),
    (VM.WRITE, "wr"),
    (VM.EXEC, "ex"),
    (VM.SHARED, "sh"),
    (VM.MAYREAD, "mr"),
    (VM.MAYWRITE, "mw"),
    (VM.MAYEXEC, "me"),
    (VM.MAYSHARE, "ms"),
    (VM.GROWSDOWN, "gd"),
    (VM.PFNMAP, "pf"),
    (VM.LOCKED, "lo"),
    (VM.IO, "io"),
    (VM.DONTCOPY, "dc"),
    (VM.DONTEXPAND, "de"),
    (VM.HUGETLB, "ht"),
    (VM.NONLINEAR, "nl"),
    (VM.DONTDUMP, "dd"),
    (VM.MIXEDMAP, "mm"),
    (VM.HUGEPAGE, "hg"),
)

PROT_NONE, PROT_READ, PROT_WRITE, PROT_EXEC = 0x0, 0x1, 0x2, 0x4
MAP_SHARED, MAP_PRIVATE, MAP_FIXED, MAP_ANONYMOUS, MAP_POPULATE = 0x01, 0x02, 0x10, 0x20, 0x8000
#: 4.15 (include/uapi/linux/mman.h, asm-generic/mman-common.h): see mixedmap.xip.dax.mmap.
MAP_SHARED_VALIDATE, MAP_SYNC = 0x03, 0x080000

#: VM_SPECIAL in 2.6.27: no merging, no mlock.
VM_SPECIAL = VM.IO | VM.DONTEXPAND | VM.RESERVED | VM.PFNMAP


def is_cow_mapping(flags: int) -> bool:
    """``(flags & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE`` (mm/memory.c)."""
    return (flags & (VM.SHARED | VM.MAYWRITE)) == VM.MAYWRITE


def mnemonics(flags: int) -> str:
    """The VmFlags line of smaps for these flags."""
    return " ".join(m for bit, m in MNEMONICS if flags & bit)


class FaultResult(enum.IntFlag):
    """VM_FAULT_* (2.6.27 include/linux/mm.h)."""

    MINOR = 0
    OOM = 0x0001
    SIGBUS = 0x0002
    MAJOR = 0x0004
    WRITE = 0x0008
    NOPAGE = 0x0100
    LOCKED = 0x0200


@attrs.define(eq=False)
class VMFault:
    """struct vm_fault: what a ->fault handler gets and fills (``page`` is a pfn here)."""

    address: int
    pgoff: int
    write: bool
    page: int | None = None


class VmOperations(Protocol):
    """vm_operations_struct: the one hook the model needs."""

    def fault(self, vma: VMA, vmf: VMFault) -> FaultResult: ...


#: :meth:`BatchFault.fault_pfns` answers besides a pfn (pfns are never negative): the
#: shared sparse page goes there, or only the fault itself can tell.
FAULT_SPARSE = -1
FAULT_PER_PAGE = -2


@runtime_checkable
class BatchFault(VmOperations, Protocol):
    """A ``->fault`` whose *read* answers can be asked for many pages before any is taken.

    The batched fault-in (:mod:`mixedmap.mm.populate`) plans a whole VMA from these, much as
    ``->map_pages`` (fault-around, 3.15) lets the kernel map many pages in one fault; the mm
    layer so never imports the filesystem that supplies the pages (``xip_file_vm_ops``).
    """

    def fault_pfns(self, vma: VMA, pgoffs: NDArray[np.int64]) -> NDArray[np.int64]:
        """The pfn a read fault maps with ``vm_insert_mixed`` at each file page, else
        :data:`FAULT_SPARSE` or :data:`FAULT_PER_PAGE`; no side effect."""
        ...

    def sparse_page(self, machine: Machine) -> int:
        """The shared zeroed page that holes are mapped to (allocated on first use)."""
        ...

    def sparse_allocated(self, machine: Machine) -> bool:
        """Whether :meth:`sparse_page` has allocated it yet."""
        ...

    def insert_pages(self, vma: VMA) -> bool:
        """Whether a pfn with a struct page is inserted as a refcounted page (else special):
        ``vm_insert_mixed`` without the special bit (2008), fs-dax's folios since 6.15."""
        ...


@attrs.define(eq=False)
class VMA:
    """vm_area_struct: [start, end), flags, page protection, file and offset."""

    mm: MM = attrs.field(repr=False)
    start: int
    end: int
    #: vm_flags, kept a plain int (IntFlag arithmetic costs microseconds per fault).
    flags: int = attrs.field(converter=int)
    page_prot: int
    pgoff: int = 0
    file: Any = None
    vm_ops: VmOperations | None = None
    #: anon_vma exists (set by the first anonymous page, e.g. a COW): fork copies then.
    anon_vma: bool = False
    #: Per-VMA driver data (vm_private_data).
    private: Any = None

    @property
    def npages(self) -> int:
        return (self.end - self.start) >> self.mm.page_shift

    @property
    def is_cow(self) -> bool:
        return is_cow_mapping(self.flags)

    def linear_pgoff(self, addr: int) -> int:
        """File offset (in pages) of ``addr`` (linear_page_index)."""
        return ((addr - self.start) >> self.mm.page_shift) + self.pgoff

    def contains(self, addr: int) -> bool:
        return self.start <= addr < self.end

    def describe(self) -> str:
        return f"[{self.start:#x}, {self.end:#x}) {mnemonics(self.flags)}"


#: A file's ->mmap (f_op->mmap): may change flags and set vm_ops; may raise a KernelErrno.
MmapHandler = Callable[[VMA], None]
