"""What the mm-layer tests share: the representative arch cases, an :class:`Env` per machine
whose probes format PTEs in hex for assertion messages, and small device drivers.

The mm rules under test are those of 2.6.26/2.6.27, so each test runs on the default mode of
every installed arch under those two profiles (plus the fictional toyarch, scheme B, and
toyspecial, scheme A). The other modes of an arch differ in page-table geometry only, which
the page-table tests already cover.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from mixedmap import PG, Machine
from mixedmap.mm import memory
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_FIXED, MAP_PRIVATE, MAP_SHARED, VM, VMA, FaultResult, VMFault, mnemonics

from ..conftest import CASES, Case

PROFILES_2008 = ("2.6.26", "2.6.27")
#: One mode per (arch, 2008 profile): the arch's default mode.
REPS: list[Case] = [c for c in CASES if c.mode.default and c.mode.profile in PROFILES_2008]
REP_IDS = [c.id for c in REPS]

GiB = 1 << 30
InsertFn = Callable[[VMA, int, int], None]


def hx(v: int) -> str:
    """A PTE in hex, 16 digits (the width of a 64-bit entry)."""
    return f"{v:#018x}"


class Env:
    """One machine of a case, with probes that speak the arch's PTE format."""

    def __init__(self, case: Case, ram: str = "64M") -> None:
        self.case = case
        self.m: Machine = case.machine(ram=ram)
        self.ps = self.m.page_size
        self.ops = self.m.mode.mode.ops
        self._regions = 0

    # -- naming -----------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        """ "A" when the profile has a special bit (the bit decides), else "B"."""
        return "A" if self.m.mode.has_special else "B"

    @property
    def tag(self) -> str:
        return f"[{self.case.id}, scheme {self.scheme}]"

    def say(self, what: str, **ptes: int) -> str:
        """An assertion message: the arch, the claim, and the PTEs involved in hex."""
        shown = " ".join(f"{k}={hx(v)}" for k, v in ptes.items())
        return f"{self.tag} {what}" + (f" ({shown})" if shown else "")

    # -- PTE probes -------------------------------------------------------------------------
    def pte(self, mm: MM, va: int) -> int:
        """The raw PTE for ``va`` (the empty value when no table holds it)."""
        slot = mm.pt.pte_slot(va - va % self.ps, allocate=False)
        return mm.pt.read_pte(slot) if slot is not None else mm.empty_pte

    def special(self, pte: int) -> bool:
        return bool(self.m.mode.pte_special(np.array([pte], dtype=np.uint64))[0])

    def mkspecial(self, pte: int) -> int:
        """pte_mkspecial, the identity without the bit (the kernel's stub)."""
        if not self.m.mode.has_special:
            return pte
        return int(self.m.mode.pte_mkspecial(np.array([pte], dtype=np.uint64))[0])

    def pfn_of(self, pte: int) -> int:
        return int(self.ops.pte_pfn(pte))

    def present(self, pte: int) -> bool:
        return bool(self.ops.pte_present(pte))

    def none(self, pte: int) -> bool:
        return bool(self.ops.pte_none(pte))

    def writable(self, pte: int) -> bool:
        return bool(self.ops.pte_write(pte))

    def dirty(self, pte: int) -> bool:
        return bool(self.ops.pte_dirty(pte))

    def young(self, pte: int) -> bool:
        return bool(self.ops.pte_young(pte))

    def made_dirty(self, pte: int) -> bool:
        """pte_mkdirty was applied: it changes nothing more (s390 keeps dirty and young in
        storage keys, so there its pte_mkdirty/pte_mkyoung change no bit at all)."""
        return int(self.ops.pte_mkdirty(pte)) == pte

    def made_young(self, pte: int) -> bool:
        return int(self.ops.pte_mkyoung(pte)) == pte

    def normal_page(self, mm: MM, va: int) -> int | None:
        """vm_normal_page of the PTE at ``va`` in its VMA."""
        vma = mm.find_vma(va)
        assert vma is not None, self.say(f"no VMA at {va:#x}")
        return memory.vm_normal_page(vma, va - va % self.ps, self.pte(mm, va))

    # -- memory -----------------------------------------------------------------------------
    def pattern(self, pfn: int, salt: int = 0) -> bytes:
        """Distinct page-sized contents for ``pfn`` (the same on every arch)."""
        seed = (pfn * 2654435761 + salt * 40503) & 0xFFFFFFFF
        rng = np.random.default_rng(seed)
        return rng.integers(0, 256, size=self.ps, dtype=np.uint8).tobytes()

    def fill(self, pfn: int, data: bytes) -> None:
        self.m.mem.write(pfn * self.ps, data)

    def frame(self, pfn: int) -> bytes:
        return self.m.mem.read(pfn * self.ps, self.ps)

    def devmem(self, npages: int, *, memmap: bool = False, fill: bool = True) -> int:
        """Device memory in its own GiB (so no memory section is shared): first pfn.

        Each page holds :meth:`pattern` of its *index* in the region, so the bytes a user
        reads are the same on every arch whatever the pfns are.
        """
        self._regions += 1
        start = self._regions * GiB
        self.m.add_region(f"dev{self._regions}", start, npages * self.ps, memmap=memmap)
        first = start // self.ps
        if fill:
            for i in range(npages):
                self.fill(first + i, self.pattern(i, salt=self._regions))
        return first

    def driver_pages(self, n: int) -> list[int]:
        """``n`` consecutive RAM pages a driver allocated (refcount 1, not anonymous), each
        filled with a pattern (consecutive, so remap_pfn_range can map them as one range)."""
        first = self.m.pages.alloc_contig(n, 1, PG.driver)
        pfns = list(range(first, first + n))
        for i, pfn in enumerate(pfns):
            self.fill(pfn, self.pattern(i, salt=99))
        return pfns

    def page_flags(self, pfn: int) -> PG:
        info = self.m.page(pfn)
        assert info is not None, self.say(f"pfn {pfn:#x} has no struct page")
        return info.flags

    def counts(self, pfn: int) -> tuple[int, int]:
        """(refcount, mapcount) of a page with a struct page."""
        info = self.m.page(pfn)
        assert info is not None, self.say(f"pfn {pfn:#x} has no struct page")
        return info.refcount, info.mapcount

    @contextmanager
    def no_free_ram(self) -> Iterator[None]:
        """Every free RAM frame held for the duration (to provoke -ENOMEM / OOM)."""
        hog = self.m.pages.alloc_pages(self.m.pages.nr_free)
        try:
            yield
        finally:
            self.m.pages.free_pages(hog)

    def assert_clean(self) -> None:
        """After every mm exited: no page table left, no page held (driver pages excepted)."""
        assert self.m.pagetable_bytes() == 0, self.say(
            f"{self.m.pagetable_bytes()} bytes of page tables left"
        )
        leaks = {k: v for k, v in self.m.pages.leaks().items() if k != "driver"}
        assert leaks == {}, self.say(f"pages still held after exit: {leaks}")


# -- device drivers ---------------------------------------------------------------------------
def set_flags(flags: int, prot: Callable[[VMA], int] | None = None) -> Callable[[VMA], None]:
    """An f_op->mmap that ORs ``flags`` into the VMA (and optionally sets vm_page_prot)."""

    def on_mmap(vma: VMA) -> None:
        vma.flags |= flags
        if prot is not None:
            vma.page_prot = prot(vma)

    return on_mmap


def inserting(insert: InsertFn, pfn_for: Callable[[int], int]) -> Callable[[VMA, VMFault], FaultResult]:
    """A ->fault that installs ``pfn_for(pgoff)`` itself and returns NOPAGE."""

    def fault(vma: VMA, vmf: VMFault) -> FaultResult:
        insert(vma, vmf.address, pfn_for(vmf.pgoff))
        return FaultResult.NOPAGE

    return fault


def device(
    name: str = "dev",
    *,
    flags: int = 0,
    fault: Callable[[VMA, VMFault], FaultResult] | None = None,
    on_mmap: Callable[[VMA], None] | None = None,
    writable: bool = True,
) -> DeviceFile:
    """A character device whose mmap sets ``flags`` (then runs ``on_mmap``)."""

    def mmap(vma: VMA) -> None:
        vma.flags |= flags
        if on_mmap is not None:
            on_mmap(vma)

    return DeviceFile(name, readable=True, writable=writable, on_mmap=mmap, on_fault=fault)


def map_device(
    env: Env,
    mm: MM,
    npages: int,
    *,
    shared: bool,
    prot: str = "rw",
    pgoff: int = 0,
    addr: int | None = None,
    flags: int = 0,
    fault: Callable[[VMA, VMFault], FaultResult] | None = None,
    on_mmap: Callable[[VMA], None] | None = None,
    writable: bool = True,
) -> tuple[int, VMA]:
    """mmap ``npages`` of a :func:`device` (MAP_FIXED at ``addr`` if given): (address, VMA)."""
    dev = device(flags=flags, fault=fault, on_mmap=on_mmap, writable=writable)
    mflags = (MAP_SHARED if shared else MAP_PRIVATE) | (MAP_FIXED if addr is not None else 0)
    start = mm.mmap(npages * env.ps, prot, mflags, file=dev, pgoff=pgoff, addr=addr)
    vma = mm.find_vma(start)
    assert vma is not None
    return start, vma


def snapshot(env: Env, mm: MM, vma: VMA, pfns: Sequence[int] = ()) -> dict[str, object]:
    """What an operation that "changes nothing" must leave as it was (PTEs in hex)."""
    return {
        "rss": dict(mm.rss),
        "flags": f"{vma.flags:#x} ({flags_str(vma)})",
        "pgoff": vma.pgoff,
        "ptes": [hx(env.pte(mm, va)) for va in range(vma.start, vma.end, env.ps)],
        "pages": {hex(p): env.m.page(p) for p in pfns},
    }


def flags_str(vma: VMA) -> str:
    return mnemonics(vma.flags)


__all__ = [
    "REPS",
    "REP_IDS",
    "VM",
    "Env",
    "device",
    "flags_str",
    "hx",
    "inserting",
    "map_device",
    "set_flags",
    "snapshot",
]
