"""The shared zero page (``ZERO_PAGE``, ``my_zero_pfn``, ``is_zero_pfn``; mm/memory.c).

From 2.6.32 (:data:`mixedmap.rules.ZERO_PAGE`) an anonymous read fault maps one shared,
zeroed, reserved page instead of allocating; on an arch with the special bit the PTE is
special, so no path refcounts it and ``vm_normal_page`` returns NULL for it. The kernel's
page lives in the kernel image; the model takes one reserved RAM frame the first time a
machine needs it, so machines that never read untouched memory allocate exactly as before.

One zero page per machine, as the generic ``my_zero_pfn``. Not modelled: s390's coloured
zero pages (arch/s390/mm/init.c ``setup_zero_pages``: up to 2**7 of them, ``my_zero_pfn``
picks one by address bits under ``zero_page_mask``), which an arch plugin would have to
declare; mips and loongarch do the same.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from mixedmap.phys.memmap import PG

if TYPE_CHECKING:
    from mixedmap.machine import Machine

# The pfn lives on the machine's page allocator (PageAllocator.zero_pfn): one per machine,
# gone with it, and one attribute read for the per-fault is_zero_pfn.


def zero_pfn(machine: Machine) -> int:
    """``my_zero_pfn``: the machine's zero page, allocated (PG_reserved) on first use."""
    pfn = machine.pages.zero_pfn
    if pfn is None:
        (pfn,) = machine.pages.alloc_pages(1, flags=int(PG.reserved)).tolist()
        machine.pages.zero_pfn = pfn
    return pfn


def zero_allocated(machine: Machine) -> bool:
    """Whether the machine's zero page exists yet."""
    return machine.pages.zero_pfn is not None


def current_zero_pfn(machine: Machine) -> int | None:
    """The zero pfn if the machine has allocated it, else None (no allocation: a scalar
    ``is_zero_pfn`` for paths that must not create the page just to compare with it)."""
    return machine.pages.zero_pfn


def is_zero_pfn(machine: Machine, pfns: int | NDArray[np.uint64]) -> NDArray[np.bool_]:
    """``is_zero_pfn`` over a batch (False everywhere while no zero page exists)."""
    arr = np.atleast_1d(np.asarray(pfns, dtype=np.uint64))
    pfn = machine.pages.zero_pfn
    if pfn is None:
        return np.zeros(arr.shape, dtype=np.bool_)
    same: NDArray[np.bool_] = arr == np.uint64(pfn)
    return same


def release_zero_page(machine: Machine) -> bool:
    """Free the zero page if nothing holds a reference to it and no PTE maps it any more (the
    kernel never does; a model that checks for leaks at teardown must). Zero-page PTEs take
    no reference, so every live address space is looked at too, one batch per VMA. Returns
    whether it was freed."""
    pfn = machine.pages.zero_pfn
    if pfn is None or int(machine.pages.page_count(pfn)[0]) != 1:
        return False
    for mm in machine.mms:
        for vma in mm.vmas:
            _vas, ptes, reach = mm.pt.range_ptes(vma.start, vma.npages)
            present = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
            if (np.asarray(mm.ops.pte_pfn(ptes[present]), dtype=np.uint64) == np.uint64(pfn)).any():
                return False
    machine.pages.free_pages(pfn)
    machine.pages.zero_pfn = None
    return True
