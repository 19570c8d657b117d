"""Open files and devices that can be mmapped: what ``struct file`` and ``f_op->mmap`` are
to the model. A driver is written as two callables, the way a kernel driver fills
``file_operations.mmap`` and ``vm_operations_struct.fault``."""

from __future__ import annotations

from collections.abc import Callable

import attrs

from mixedmap.mm.vma import VMA, FaultResult, VMFault

FaultHandler = Callable[[VMA, VMFault], FaultResult]


@attrs.define(eq=False)
class _HandlerOps:
    handler: FaultHandler

    def fault(self, vma: VMA, vmf: VMFault) -> FaultResult:
        return self.handler(vma, vmf)


@attrs.define(eq=False)
class DeviceFile:
    """A character device (or any file) with a driver's mmap and fault handlers.

    ``on_mmap(vma)`` runs at mmap time (set VM_PFNMAP/VM_MIXEDMAP, call remap_pfn_range,
    ...); ``on_fault(vma, vmf)`` serves faults (``vm_insert_pfn``/``vm_insert_mixed`` and
    return NOPAGE, or put a pfn with a reference in ``vmf.page`` and return 0).
    """

    name: str
    readable: bool = True
    writable: bool = True
    on_mmap: Callable[[VMA], None] | None = None
    on_fault: FaultHandler | None = None

    def mmap(self, vma: VMA) -> None:
        if self.on_mmap is not None:
            self.on_mmap(vma)
        if self.on_fault is not None:
            vma.vm_ops = _HandlerOps(self.on_fault)

    def __repr__(self) -> str:
        mode = ("r" if self.readable else "") + ("w" if self.writable else "")
        return f"<DeviceFile {self.name} {mode}>"
