"""The shared zero page (``ZERO_PAGE``, ``my_zero_pfn``, ``is_zero_pfn``; mm/memory.c).

From 2.6.32 (:data:`mixedmap.rules.ZERO_PAGE`) an anonymous read fault maps one shared,
zeroed, reserved page instead of allocating; on an arch with the special bit the PTE is
special, so no path refcounts it and ``vm_normal_page`` returns NULL for it. The kernel's
page lives in the kernel image; the model takes one reserved RAM frame the first time a
machine needs it, so machines that never read untouched memory allocate exactly as before.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from mixedmap.phys.memmap import PG

if TYPE_CHECKING:
    from mixedmap.machine import Machine

_zero: weakref.WeakKeyDictionary[Machine, int] = weakref.WeakKeyDictionary()


def zero_pfn(machine: Machine) -> int:
    """``my_zero_pfn``: the machine's zero page, allocated (PG_reserved) on first use."""
    pfn = _zero.get(machine)
    if pfn is None:
        (pfn,) = machine.pages.alloc_pages(1, flags=int(PG.reserved)).tolist()
        _zero[machine] = pfn
    return pfn


def zero_allocated(machine: Machine) -> bool:
    """Whether the machine's zero page exists yet."""
    return machine in _zero


def is_zero_pfn(machine: Machine, pfns: int | NDArray[np.uint64]) -> NDArray[np.bool_]:
    """``is_zero_pfn`` over a batch (False everywhere while no zero page exists)."""
    arr = np.atleast_1d(np.asarray(pfns, dtype=np.uint64))
    pfn = _zero.get(machine)
    if pfn is None:
        return np.zeros(arr.shape, dtype=np.bool_)
    same: NDArray[np.bool_] = arr == np.uint64(pfn)
    return same


def release_zero_page(machine: Machine) -> bool:
    """Free the zero page if nothing holds a reference to it any more (the kernel never
    does; a model that checks for leaks at teardown must). Returns whether it was freed."""
    pfn = _zero.get(machine)
    if pfn is None or int(machine.pages.page_count(pfn)[0]) != 1:
        return False
    machine.pages.free_pages(pfn)
    del _zero[machine]
    return True
