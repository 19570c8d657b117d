"""Hypothesis stateful test of the mm layer under the 2.6.26, 2.6.27 and 6.18 rules.

One :class:`RuleBasedStateMachine` run per representative arch case (the default mode of every
arch for 2.6.26, 2.6.27 and 6.18, plus toyarch (scheme B) and toyspecial (scheme A)). The rules mmap
anonymous memory and three kinds of device (``remap_pfn_range`` at mmap time, a VM_MIXEDMAP
fault handler calling ``vm_insert_mixed`` over pfns with and without struct pages and RAM
pages, a VM_PFNMAP fault handler calling ``vm_insert_pfn``), touch, read and write pages,
fork, munmap and mprotect random ranges, pin pages with get_user_pages (slow and fast) and
release them, and exit.

A shadow model written from the kernel rules (``kernel-mm-semantics.md`` sections 4-6) keeps
what every (mm, page) must contain and how it must be mapped; after *every* step the
invariants of section 11 that hold in 2.6.26/2.6.27 are checked against a walk of every
page table of every live mm (numbers refer to section 11); where a kernel differs the model
asks :mod:`mixedmap.rules` (6.18: the zero page for untouched anonymous reads, fork copying
every PFNMAP/MIXEDMAP VMA, remap_pfn_range's VM_DONTEXPAND|VM_DONTDUMP, GUP's -EEXIST for a
special PTE and the zero page for a zero-page PTE, smaps Rss of normal pages only):

1 COW definition; 3 special PTEs only in PFNMAP/MIXEDMAP VMAs (or the zero page), no bad page
map ever reported; 4 normal => pfn_valid;
5 mapcount conservation (every struct page, through ``vm_normal_page``); 6 reference
conservation (refcount == mapcount + pins + page tables + the driver's hold (+1 for the zero
page's own), for every RAM frame and every device struct page, and a frame is free iff its
refcount is 0); 7 RSS
conservation; 8 special PTEs inert (follows from 5-7 with exact counts); 11-13 the
classification a PTE must have for its origin; 15 a writable PTE in a COW VMA maps an
exclusive anonymous page; 18/19 after fork; 21 zap (no PTE left, dirty propagated);
22 GUP-fast never pins a special PTE; 29 smaps Rss/Pss/Shared/Private; plus data integrity
(every present PTE maps exactly the bytes the model expects; device memory holds exactly
what shared mappings wrote to it).

Each rule also predicts its own outcome from the model: SIGSEGV or not, the bytes read,
ENOMEM of mprotect at a hole (earlier VMAs changed), how many pages get_user_pages pins and
how get_user_pages_fast splits them (22-24). At teardown (all mms exited, pins released)
every refcount and mapcount is back to its start (the zero page released), no page table is
left, no RAM page leaks and free RAM is back.

About 70 s for the 16 cases by default; ``HYPOTHESIS_PROFILE=thorough`` runs 200 examples
of 60 steps per case (about 6 minutes). Two example tests at the end pin the core fixes
this machine found (mprotect VMA by VMA; no lockless pin of a PROT_NONE PTE).
"""

from __future__ import annotations

import os

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from numpy.typing import NDArray

from mixedmap import EFAULT, EINVAL, ENOMEM, PG, Machine
from mixedmap.arch import ENTRY_LEAF, ENTRY_NONE, ENTRY_TABLE
from mixedmap.errors import EACCES, EEXIST, SIGSEGV
from mixedmap.mm import memory, zero
from mixedmap.mm.file import DeviceFile
from mixedmap.mm.gup import get_user_pages, get_user_pages_fast
from mixedmap.mm.mm import MM
from mixedmap.mm.vma import MAP_ANONYMOUS, MAP_PRIVATE, MAP_SHARED, VM, VMA, FaultResult, VMFault
from mixedmap.profiles import Profile
from mixedmap.rules import (
    FORK_COPIES_MIXEDMAP,
    GUP_EEXIST,
    REMAP_DONTEXPAND_DONTDUMP,
    SMAPS_RSS_NORMAL_ONLY,
    ZERO_PAGE,
)
from tests.conftest import Case

PROFILES = ("2.6.26", "2.6.27", "6.18")
NPOOL = 8  # pages per device memory pool
NOMEM_BASE = 1 << 30  # device memory without struct pages (its own memory section)
WITHMEM_BASE = 2 << 30  # device memory with struct pages
PROTS = ("rw", "rw", "rwx", "r", "rx", "none")  # weighted towards writable
MAX_MMS = 4

THOROUGH = os.environ.get("HYPOTHESIS_PROFILE") == "thorough"
STATEFUL_SETTINGS = settings(
    max_examples=200 if THOROUGH else 50,
    stateful_step_count=60 if THOROUGH else 35,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)


def _representative(case: Case) -> bool:
    return case.mode.default and case.mode.profile in PROFILES


# -- the shadow model -------------------------------------------------------------------------
@attrs.define
class Device:
    """A device file and the pfn behind each of its pages."""

    name: str
    kind: str  # "remap" (remap_pfn_range at mmap), "mixed" (vm_insert_mixed), "pfnmap" (vm_insert_pfn)
    pfns: list[int]
    file: DeviceFile = attrs.field(default=None)


@attrs.define
class SPage:
    """What one virtual page of one mm must be: its origin, protection and private bytes."""

    dev: Device | None  # None: anonymous memory
    dev_pfn: int  # the device pfn behind the page (-1 for anonymous memory)
    shared: bool
    prot: str
    #: The page's own bytes once it is private (COWed device page, or written anon page);
    #: None: an anonymous page reads as zeroes, a device page reads the device.
    data: bytes | None = None


def _vm_kind_flags(kind: str | None, profile: Profile) -> int:
    """The VMA flags a mapping of ``kind`` must carry (27: remap shape, per release)."""
    remap = VM.IO | VM.RESERVED | VM.PFNMAP
    if REMAP_DONTEXPAND_DONTDUMP.applies(profile):
        remap = VM.IO | VM.PFNMAP | VM.DONTEXPAND | VM.DONTDUMP
    return {
        None: 0,
        "remap": remap,
        "mixed": VM.MIXEDMAP,
        "pfnmap": VM.IO | VM.PFNMAP,
    }[kind]


class MMStateMachine(RuleBasedStateMachine):
    """mmap/access/read/write/fork/munmap/mprotect/gup/exit against a shadow model."""

    def __init__(self, case: Case) -> None:
        super().__init__()
        self.case = case
        m = case.machine(ram="64M")
        self.m: Machine = m
        self.ps = ps = m.page_size
        self.shift = m.fmt.page_shift
        self.scheme_a = m.mode.has_special
        self.free_at_start = m.pages.nr_free
        p = self.profile = m.profile
        self.zero_rule = ZERO_PAGE.applies(p)  # untouched anonymous reads map the zero page
        self.fork_flags = (
            VM.PFNMAP | VM.MIXEDMAP if FORK_COPIES_MIXEDMAP.applies(p) else VM.PFNMAP | VM.INSERTPAGE
        )
        self.gup_eexist = GUP_EEXIST.applies(p)
        self.smaps_normal_only = SMAPS_RSS_NORMAL_ONLY.applies(p)

        # Device memory: three pools of NPOOL pages, filled with distinct bytes so that a copy
        # from the wrong page (or a lost copy) shows.
        m.add_region("nomem", NOMEM_BASE, NPOOL * ps, memmap=False)
        m.add_region("withmem", WITHMEM_BASE, NPOOL * ps, memmap=True)
        nomem = [(NOMEM_BASE >> self.shift) + i for i in range(NPOOL)]
        withmem = [(WITHMEM_BASE >> self.shift) + i for i in range(NPOOL)]
        first = m.pages.alloc_contig(NPOOL, 1)
        ram = [first + i for i in range(NPOOL)]  # the driver's RAM pages (refcount 1 each)
        # Device struct pages start as memmap_init_zone leaves them: reserved, one reference.
        for pfn in withmem:
            info = m.page(pfn)
            assert info is not None and info.refcount == 1 and info.flags & PG.reserved
        self.nomem, self.withmem, self.ram = set(nomem), set(withmem), set(ram)
        self.driver_held = set(withmem) | set(ram)  # pages the drivers hold one reference on
        self.dev_content: dict[int, bytes] = {}
        for k, pfn in enumerate(nomem + withmem + ram):
            data = bytes([(k * 37 + 11) & 0xFF, k & 0xFF]) * (ps // 2)
            m.mem.write(pfn * ps, data)
            self.dev_content[pfn] = data
        mixed_pfns = [(nomem, withmem, ram)[i % 3][(5 * i + 3) % NPOOL] for i in range(NPOOL)]
        pfnmap_pfns = [(ram, nomem, withmem)[i % 3][(3 * i + 1) % NPOOL] for i in range(NPOOL)]
        self.devices = [
            self._remap_device("mem-nomem", nomem),
            self._remap_device("mem-withmem", withmem),
            self._remap_device("mem-ram", ram),
            self._mixed_device("mixed", mixed_pfns),
            self._pfnmap_device("pfnmap", pfnmap_pfns),
        ]

        # Every struct page the test watches: all of RAM and the device pages with a memmap.
        ram_pages = m.ram_size >> self.shift
        self.ram_pfns = np.arange(ram_pages, dtype=np.uint64)
        self.watched = np.concatenate([self.ram_pfns, np.array(sorted(withmem), dtype=np.uint64)])
        self.index = {p: k for k, p in enumerate(self.watched.tolist())}
        self.w_row, self.w_col = m.memmap.rows(self.watched)
        self.start_refcount = m.memmap.refcount[self.w_row, self.w_col].copy()
        self.start_mapcount = m.memmap.mapcount[self.w_row, self.w_col].copy()

        self.mms: list[MM] = []
        self.shadow: dict[int, dict[int, SPage]] = {}  # mm.id -> page va -> SPage
        self.pins: list[np.ndarray] = []
        self.new_mm()

    # -- drivers ----------------------------------------------------------------------------
    def _remap_device(self, name: str, pfns: list[int]) -> Device:
        dev = Device(name, "remap", pfns)

        def on_mmap(vma: VMA) -> None:
            # /dev/mem style: remap the whole VMA at mmap time.
            memory.remap_pfn_range(vma, vma.start, pfns[vma.pgoff], vma.end - vma.start)

        dev.file = DeviceFile(name, on_mmap=on_mmap)
        return dev

    def _mixed_device(self, name: str, pfns: list[int]) -> Device:
        dev = Device(name, "mixed", pfns)

        def on_mmap(vma: VMA) -> None:
            vma.flags |= VM.MIXEDMAP

        def on_fault(vma: VMA, vmf: VMFault) -> FaultResult:
            memory.vm_insert_mixed(vma, vmf.address, pfns[vmf.pgoff])
            return FaultResult.NOPAGE

        dev.file = DeviceFile(name, on_mmap=on_mmap, on_fault=on_fault)
        return dev

    def _pfnmap_device(self, name: str, pfns: list[int]) -> Device:
        dev = Device(name, "pfnmap", pfns)

        def on_mmap(vma: VMA) -> None:
            if vma.is_cow:  # vm_insert_pfn would BUG on a COW PFNMAP VMA: refuse it
                raise EINVAL(f"{name}: private mappings are not supported")
            vma.flags |= VM.IO | VM.PFNMAP

        def on_fault(vma: VMA, vmf: VMFault) -> FaultResult:
            memory.vm_insert_pfn(vma, vmf.address, pfns[vmf.pgoff])
            return FaultResult.NOPAGE

        dev.file = DeviceFile(name, on_mmap=on_mmap, on_fault=on_fault)
        return dev

    # -- shadow helpers -------------------------------------------------------------------------
    def _pick_mm(self, i: int, mapped: bool = False) -> MM:
        """The i-th live mm; with ``mapped``, among those that map something (if any do)."""
        mms = [mm for mm in self.mms if self.shadow[mm.id]] if mapped else []
        mms = mms or self.mms
        return mms[i % len(mms)]

    def _pick_va(self, mm: MM, j: int) -> int:
        """A mapped page most of the time; else a hole (the page after a mapping, mmap_base)."""
        pages = self.shadow[mm.id]
        if pages and j % 6:
            mapped = sorted(pages)
            return mapped[(j // 6) % len(mapped)]
        holes = sorted({va + self.ps for va in pages if va + self.ps not in pages} | {mm.mmap_base})
        return holes[j % len(holes)]

    def expected_bytes(self, sp: SPage) -> bytes:
        if sp.data is not None:
            return sp.data
        if sp.dev is None:
            return bytes(self.ps)
        return self.dev_content[sp.dev_pfn]

    def expect_special(self, sp: SPage) -> bool:
        """Section 4.5: how a PTE still mapping the device's own pfn is classified."""
        assert sp.dev is not None and sp.data is None
        if self.scheme_a or sp.dev.kind in ("remap", "pfnmap"):
            return True
        return sp.dev_pfn in self.nomem  # scheme B MIXEDMAP: special iff !pfn_valid

    def _cow(self, sp: SPage) -> None:
        """A write fault on a private page: it now holds a private copy of what it showed."""
        if not sp.shared:
            sp.data = self.expected_bytes(sp)

    def _readable(self, sp: SPage | None) -> bool:
        return sp is not None and sp.prot != "none"

    def _writable(self, sp: SPage | None) -> bool:
        return sp is not None and "w" in sp.prot

    # -- rules: address-space lifecycle -----------------------------------------------------
    @precondition(lambda self: len(self.mms) < 2)
    @rule()
    def new_mm(self) -> None:
        mm = self.m.new_mm()
        self.mms.append(mm)
        self.shadow[mm.id] = {}

    @precondition(lambda self: 0 < len(self.mms) < MAX_MMS)
    @rule(i=st.integers(0, 7))
    def fork(self, i: int) -> None:
        parent = self._pick_mm(i)
        before = {v.start: self._present(parent, v) for v in parent.vmas}
        child = parent.fork()
        self.mms.append(child)
        self.shadow[child.id] = {va: attrs.evolve(sp) for va, sp in self.shadow[parent.id].items()}
        # 18: no copied PTE of a COW VMA is writable in parent or child.
        # 19: 2.6.27 copies a VMA iff PFNMAP|INSERTPAGE|HUGETLB|NONLINEAR or anon_vma; from 3.7
        # (6.18 vma_needs_copy) iff PFNMAP|MIXEDMAP or anon_vma. A 6.18 zero-page read makes no
        # anon_vma, so an anonymous VMA only ever read is not copied.
        assert [(v.start, v.end) for v in child.vmas] == [(v.start, v.end) for v in parent.vmas]
        for pv, cv in zip(parent.vmas, child.vmas, strict=True):
            pptes, cptes = self._present(parent, pv), self._present(child, cv)
            copied = bool(pv.flags & self.fork_flags) or pv.anon_vma
            if cptes:
                event(f"fork: copied PTEs of a {'COW ' if pv.is_cow else ''}VMA {vma_kind(pv)}")
            if copied:
                assert set(cptes) == set(pptes) == set(before[pv.start]), f"fork lost PTEs of {pv.describe()}"
                for va, pte in cptes.items():
                    assert int(parent.ops.pte_pfn(pte)) == int(parent.ops.pte_pfn(pptes[va]))
            else:
                assert not cptes, f"{self.profile} fork copied PTEs of {pv.describe()} (no anon_vma)"
            if pv.is_cow and pv.flags & (VM.READ | VM.WRITE | VM.EXEC):  # (s390 PAGE_NONE: see _check_pte)
                for ptes in (pptes, cptes):
                    writable = [va for va, pte in ptes.items() if parent.ops.pte_write(pte)]
                    assert not writable, f"writable PTE after fork in COW VMA at {writable[0]:#x}"

    @precondition(lambda self: 0 < len(self.mms) < MAX_MMS)
    @rule(i=st.integers(0, 7), j=st.integers(0, 1000))
    def write_then_fork(self, i: int, j: int) -> None:
        """S5/S6: a private page COWed (a device page gets an anon_vma), then fork."""
        mm = self._pick_mm(i, mapped=True)
        pages = self.shadow[mm.id]
        private = sorted(va for va, sp in pages.items() if not sp.shared and self._writable(sp))
        if private:
            self._access(mm, private[j % len(private)], True)
        self.fork(self.mms.index(mm))

    @precondition(lambda self: len(self.mms) > 0)
    @rule(i=st.integers(0, 7))
    def exit(self, i: int) -> None:
        mm = self._pick_mm(i)
        mm.exit()
        self.mms.remove(mm)
        del self.shadow[mm.id]
        assert mm.pt.bytes_used == 0

    # -- rules: mappings ---------------------------------------------------------------------------
    @initialize(npages=st.integers(1, 4))
    def init_anon(self, npages: int) -> None:
        self.mmap_anon(0, npages, "rw")

    @initialize(d=st.integers(0, 4), npages=st.integers(1, 4), pgoff=st.integers(0, NPOOL - 1))
    def init_shared_device(self, d: int, npages: int, pgoff: int) -> None:
        self.mmap_device(0, d, True, npages, pgoff, "rw")

    @initialize(d=st.integers(0, 3), npages=st.integers(1, 4), pgoff=st.integers(0, NPOOL - 1))
    def init_private_device(self, d: int, npages: int, pgoff: int) -> None:
        self.mmap_device(0, d, False, npages, pgoff, "rw")  # remap or mixed: pfnmap refuses MAP_PRIVATE

    @precondition(lambda self: len(self.mms) > 0)
    @rule(i=st.integers(0, 7), npages=st.integers(1, 4), prot=st.sampled_from(PROTS))
    def mmap_anon(self, i: int, npages: int, prot: str) -> None:
        mm = self._pick_mm(i)
        addr = mm.mmap(npages * self.ps, prot, MAP_PRIVATE | MAP_ANONYMOUS)
        self._add_pages(mm, addr, npages, None, 0, False, prot)

    @precondition(lambda self: len(self.mms) > 0)
    @rule(
        i=st.integers(0, 7),
        d=st.integers(0, 4),
        shared=st.booleans(),
        npages=st.integers(1, 4),
        pgoff=st.integers(0, NPOOL - 1),
        prot=st.sampled_from(PROTS),
    )
    def mmap_device(self, i: int, d: int, shared: bool, npages: int, pgoff: int, prot: str) -> None:
        mm = self._pick_mm(i)
        dev = self.devices[d]
        pgoff = min(pgoff, NPOOL - npages)
        nvmas = len(mm.vmas)
        if dev.kind == "pfnmap" and not shared:
            with pytest.raises(EINVAL):
                mm.mmap(npages * self.ps, prot, MAP_PRIVATE, file=dev.file, pgoff=pgoff)
            assert len(mm.vmas) == nvmas
            return
        addr = mm.mmap(
            npages * self.ps, prot, MAP_SHARED if shared else MAP_PRIVATE, file=dev.file, pgoff=pgoff
        )
        self._add_pages(mm, addr, npages, dev, pgoff, shared, prot)
        if dev.kind == "remap":  # 27: remap shape (+RESERVED in 2008; +DONTEXPAND|DONTDUMP from 3.7)
            vma = mm.find_vma(addr)
            remap_bits = VM.IO | VM.RESERVED | VM.PFNMAP | VM.DONTEXPAND | VM.DONTDUMP
            want = _vm_kind_flags("remap", self.profile)
            assert vma is not None and vma.flags & remap_bits == want, (
                f"{vma and vma.describe()}: not {want:#x}"
            )
            present = self._present(mm, vma)
            assert len(present) == npages
            for k in range(npages):
                assert int(mm.ops.pte_pfn(present[addr + k * self.ps])) == dev.pfns[pgoff + k]

    def _add_pages(
        self, mm: MM, addr: int, npages: int, dev: Device | None, pgoff: int, shared: bool, prot: str
    ) -> None:
        pages = self.shadow[mm.id]
        for k in range(npages):
            va = addr + k * self.ps
            assert va not in pages, f"mmap returned {addr:#x} overlapping a live mapping"
            pfn = -1 if dev is None else dev.pfns[pgoff + k]
            pages[va] = SPage(dev=dev, dev_pfn=pfn, shared=shared, prot=prot)

    @precondition(lambda self: len(self.mms) > 0)
    @rule(i=st.integers(0, 7), j=st.integers(0, 1000), npages=st.integers(1, 4))
    def munmap(self, i: int, j: int, npages: int) -> None:
        mm = self._pick_mm(i, mapped=True)
        start = self._pick_va(mm, j)
        end = start + npages * self.ps
        # Dirty file pages in the range must end up PG_dirty (21).
        dirty: list[int] = []
        for v in mm.vmas:
            for va, pte in self._present(mm, v).items():
                if start <= va < end and mm.ops.pte_dirty(pte):
                    pfn = memory.vm_normal_page(v, va, pte)
                    if pfn is not None and not self._is_anon(pfn):
                        dirty.append(pfn)
        mm.munmap(start, npages * self.ps)
        pages = self.shadow[mm.id]
        for va in range(start, end, self.ps):
            pages.pop(va, None)
        _vas, ptes, reach = mm.pt.range_ptes(start, npages)
        assert not (reach & ~np.asarray(mm.ops.pte_none(ptes), dtype=np.bool_)).any(), "munmap left a PTE"
        for pfn in dirty:
            page = self.m.page(pfn)
            assert page is not None and page.flags & PG.dirty, f"zap lost the dirty bit of {pfn:#x}"

    @precondition(lambda self: len(self.mms) > 0)
    @rule(i=st.integers(0, 7), j=st.integers(0, 1000), npages=st.integers(1, 3), prot=st.sampled_from(PROTS))
    def mprotect(self, i: int, j: int, npages: int, prot: str) -> None:
        mm = self._pick_mm(i, mapped=True)
        start = self._pick_va(mm, j)
        pages = self.shadow[mm.id]
        # sys_mprotect (2.6.27 mm/mprotect.c) walks the VMAs in order and changes each one;
        # it stops with -ENOMEM at the first hole (earlier VMAs keep their new protection).
        # EACCES cannot happen here: every device file is open read-write.
        expect_ok = True
        for va in range(start, start + npages * self.ps, self.ps):
            if va not in pages:
                expect_ok = False
                break
            pages[va].prot = prot
        event(f"mprotect: {'ok' if expect_ok else 'ENOMEM'}")
        if expect_ok:
            mm.mprotect(start, npages * self.ps, prot)
        else:
            with pytest.raises(ENOMEM):
                mm.mprotect(start, npages * self.ps, prot)
        for va, sp in pages.items():
            vma = mm.find_vma(va)
            assert vma is not None
            want = 0
            for c, bit in (("r", VM.READ), ("w", VM.WRITE), ("x", VM.EXEC)):
                if c in sp.prot:
                    want |= bit
            assert vma.flags & (VM.READ | VM.WRITE | VM.EXEC) == want, (
                f"{va:#x}: {vma.describe()} not {sp.prot}"
            )

    # -- rules: accesses ---------------------------------------------------------------------------
    @precondition(lambda self: len(self.mms) > 0)
    @rule(i=st.integers(0, 7), j=st.integers(0, 1000), write=st.booleans())
    def access(self, i: int, j: int, write: bool) -> None:
        mm = self._pick_mm(i, mapped=True)
        self._access(mm, self._pick_va(mm, j), write)

    def _access(self, mm: MM, va: int, write: bool) -> None:
        sp = self.shadow[mm.id].get(va)
        ok = self._writable(sp) if write else self._readable(sp)
        if not ok:
            with pytest.raises(SIGSEGV):
                mm.access(va, write=write)
            event("access: SIGSEGV")
            return
        assert sp is not None
        acc = mm.access(va, write=write)
        kind = "anon" if sp.dev is None else sp.dev.kind
        event(
            f"access: {'write' if write else 'read'} {kind} {'shared' if sp.shared else 'private'} {acc.fault}"
        )
        if write:
            self._cow(sp)
        leaf = mm.pt.lookup(va)
        assert leaf is not None and leaf.pfn == acc.pfn
        if sp.data is None and sp.dev is not None:
            assert acc.pfn == sp.dev_pfn, f"{va:#x} maps {acc.pfn:#x}, not the device's {sp.dev_pfn:#x}"

    @precondition(lambda self: len(self.mms) > 0)
    @rule(i=st.integers(0, 7), j=st.integers(0, 1000), off=st.integers(0, 1 << 16), n=st.integers(1, 24))
    def read_bytes(self, i: int, j: int, off: int, n: int) -> None:
        mm = self._pick_mm(i, mapped=True)
        va = self._pick_va(mm, j) + off % self.ps
        pages = self.shadow[mm.id]
        expect = b""
        for page_va, o, chunk in self._chunks(va, n):
            sp = pages.get(page_va)
            if not self._readable(sp):
                with pytest.raises(SIGSEGV):
                    mm.read(va, n)
                return
            assert sp is not None
            expect += self.expected_bytes(sp)[o : o + chunk]
        assert mm.read(va, n) == expect, f"read at {va:#x} returned other bytes than were written"

    @precondition(lambda self: len(self.mms) > 0)
    @rule(
        i=st.integers(0, 7),
        j=st.integers(0, 1000),
        off=st.integers(0, 1 << 16),
        data=st.binary(min_size=1, max_size=24),
    )
    def write_bytes(self, i: int, j: int, off: int, data: bytes) -> None:
        mm = self._pick_mm(i, mapped=True)
        va = self._pick_va(mm, j) + off % self.ps
        pages = self.shadow[mm.id]
        fails = False
        pos = 0
        for page_va, o, chunk in self._chunks(va, len(data)):
            sp = pages.get(page_va)
            if not self._writable(sp):
                fails = True  # mm.write stops here with SIGSEGV; earlier chunks are written
                break
            assert sp is not None
            event(
                f"write_bytes: {'anon' if sp.dev is None else sp.dev.kind} {'shared' if sp.shared else 'private'}"
            )
            new = bytearray(self.expected_bytes(sp))
            new[o : o + chunk] = data[pos : pos + chunk]
            if sp.shared:
                self.dev_content[sp.dev_pfn] = bytes(new)
            else:
                sp.data = bytes(new)
            pos += chunk
        event(f"write_bytes: {len(self._chunks(va, len(data)))} page(s){' then SIGSEGV' if fails else ''}")
        if fails:
            with pytest.raises(SIGSEGV):
                mm.write(va, data)
        else:
            mm.write(va, data)

    def _chunks(self, va: int, n: int) -> list[tuple[int, int, int]]:
        out = []
        while n > 0:
            o = va % self.ps
            chunk = min(n, self.ps - o)
            out.append((va - o, o, chunk))
            va, n = va + chunk, n - chunk
        return out

    # -- rules: get_user_pages --------------------------------------------------------------------
    @precondition(lambda self: len(self.mms) > 0 and len(self.pins) < 8)
    @rule(
        i=st.integers(0, 7),
        j=st.integers(0, 1000),
        nr=st.integers(1, 4),
        write=st.booleans(),
        fast=st.booleans(),
    )
    def gup(self, i: int, j: int, nr: int, write: bool, fast: bool) -> None:
        mm = self._pick_mm(i, mapped=True)
        start = self._pick_va(mm, j)
        pages = self.shadow[mm.id]
        vas = [start + k * self.ps for k in range(nr)]
        # The lockless walk (2.6.27 arch/x86/mm/gup.c, only with pte_special): present, user,
        # writable when writing, not special; it stops at the first page that fails.
        # It needs _PAGE_PRESENT|_PAGE_USER, so a PROT_NONE PTE stops it too. It ignores the
        # VMA otherwise (it pins a COWed page of a PFNMAP VMA, S6.5). Where the arch had no
        # lockless walk yet (before 2.6.27, s390 in 2.6.x) or no special bit,
        # get_user_pages_fast is plain get_user_pages (mm/util.c). A zero-page PTE is special
        # too (6.18): the walk stops there and the slow path hands out the zero page.
        n_fast = 0
        zpfn = zero.current_zero_pfn(self.m) if self.zero_rule else None
        if fast and self.m.fmt.has_lockless_gup:
            assert self.scheme_a  # the walk cannot tell special PTEs without the bit
            for va in vas:
                leaf = self._pte(mm, va)
                sp = pages.get(va)
                if leaf is None or sp is None or sp.prot == "none":
                    break
                if (write and not mm.ops.pte_write(leaf)) or self._model_special(sp):
                    break
                if zpfn is not None and int(mm.ops.pte_pfn(leaf)) == zpfn:
                    break
                n_fast += 1
        # The slow path (2.6.27 mm/memory.c get_user_pages; 6.18 mm/gup.c __get_user_pages) from
        # there on. An untouched anonymous page faults in (6.18 read: the zero page, which
        # follow_page_pte hands out with a reference); a special PTE stops it: 2.6.27
        # follow_page -EFAULT, 6.18 follow_pfn_pte -EEXIST (GUP_EEXIST).
        n_slow = 0
        error: type[Exception] = EFAULT
        for va in vas[n_fast:]:
            sp = pages.get(va)
            if sp is None or (sp.dev is not None and sp.dev.kind in ("remap", "pfnmap")):
                break  # no VMA, or VM_IO/VM_PFNMAP: -EFAULT
            if not (self._writable(sp) if write else "r" in sp.prot):
                break
            if not (write and not sp.shared) and self._model_special(sp):
                error = EEXIST if self.gup_eexist else EFAULT
                break  # follow_page: vm_normal_page NULL, not the zero page
            n_slow += 1
        event(f"gup: {'fast' if fast else 'slow'} write={write} fast={n_fast} slow={n_slow}")
        if n_fast + n_slow == 0:
            with pytest.raises(error):
                self._gup(mm, start, nr, write, fast)
            return
        pfns, split = self._gup(mm, start, nr, write, fast)
        if fast:
            assert split == (n_fast, n_slow), f"gup_fast split {split}, expected {(n_fast, n_slow)}"
        assert len(pfns) == n_fast + n_slow
        for k, va in enumerate(vas[: n_fast + n_slow]):
            if k >= n_fast and write:
                self._cow(pages[va])
            leaf = self._pte(mm, va)
            assert leaf is not None and int(mm.ops.pte_pfn(leaf)) == int(pfns[k]), (
                f"gup pinned the wrong page at {va:#x}"
            )
            # 22: never a special PTE (fast or slow); 6.18 hands out the zero page for its PTE
            vma = mm.find_vma(va)
            assert vma is not None
            normal = memory.vm_normal_page(vma, va, leaf)
            if normal is None and self.zero_rule and int(pfns[k]) == zero.current_zero_pfn(self.m):
                assert k >= n_fast and not write, (
                    f"the zero page at {va:#x} came from the fast path or a write"
                )
            else:
                assert normal == int(pfns[k])
        self.pins.append(np.asarray(pfns, dtype=np.uint64))

    @staticmethod
    def _gup(
        mm: MM, start: int, nr: int, write: bool, fast: bool
    ) -> tuple[NDArray[np.uint64], tuple[int, int]]:
        if fast:
            res = get_user_pages_fast(mm, start, nr, write)
            return res.pfns, (res.fast, res.slow)
        pfns = get_user_pages(mm, start, nr, write)
        return pfns, (0, len(pfns))

    @precondition(lambda self: len(self.pins) > 0)
    @rule(k=st.integers(0, 7))
    def release(self, k: int) -> None:
        self.m.pages.put_page(self.pins.pop(k % len(self.pins)))

    # -- page-table walk ------------------------------------------------------------------------
    def _pte(self, mm: MM, va: int) -> int | None:
        slot = mm.pt.pte_slot(va, allocate=False)
        if slot is None:
            return None
        pte = mm.pt.read_pte(slot)
        return pte if mm.ops.pte_present(pte) else None

    def _model_special(self, sp: SPage) -> bool:
        """Whether the model says the page's PTE (when present) is special."""
        return sp.dev is not None and sp.data is None and self.expect_special(sp)

    def _present(self, mm: MM, vma: VMA) -> dict[int, int]:
        vas, ptes, reach = mm.pt.range_ptes(vma.start, vma.npages)
        live = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
        return {int(v): int(p) for v, p in zip(vas[live], ptes[live], strict=True)}

    def _walk(self, mm: MM, tables: set[int]) -> dict[int, int]:
        """Every present PTE of ``mm`` (va -> pte), from the root down; table pages into ``tables``.

        Asserts there are no upper-level leaves and no non-present, non-none PTEs (swap
        entries are not modelled).
        """
        fmt, ops, mem = mm.fmt, mm.ops, self.m.mem
        levels, last, esz, bo = fmt.levels, len(fmt.levels) - 1, fmt.entry_size, fmt.byteorder
        out: dict[int, int] = {}

        def table_pages(i: int, pa: int) -> None:
            size = levels[i].alloc_bytes
            first = pa >> self.shift
            tables.update(range(first, first + max(1, -(-size // self.ps))))

        def visit(i: int, pa: int, base: int) -> None:
            table_pages(i, pa)
            lv = levels[i]
            n = lv.entries
            ents = mem.gather_u64(np.uint64(pa) + np.arange(n, dtype=np.uint64) * np.uint64(esz), bo)
            if i == last:
                present = np.asarray(ops.pte_present(ents), dtype=np.bool_)
                none = np.asarray(ops.pte_none(ents), dtype=np.bool_)
                assert (present | none).all(), (
                    f"mm {mm.id}: a non-present, non-none PTE (swap is not modelled)"
                )
                for k in np.flatnonzero(present).tolist():
                    out[base + (k << lv.shift)] = int(ents[k])
                return
            kinds = np.asarray(ops.entry_kind(i, ents), dtype=np.uint64)
            assert not (kinds == ENTRY_LEAF).any(), f"mm {mm.id}: a large leaf at {lv.name}"
            assert ((kinds == ENTRY_NONE) | (kinds == ENTRY_TABLE)).all(), f"mm {mm.id}: bad {lv.name} entry"
            for k in np.flatnonzero(kinds == ENTRY_TABLE).tolist():
                visit(i + 1, int(ops.table_pa(i, int(ents[k]))), base + (k << lv.shift))

        visit(0, mm.pt.root_pa, 0)
        return out

    def _is_anon(self, pfn: int) -> bool:
        page = self.m.page(pfn)
        return page is not None and bool(page.flags & PG.anon)

    # -- the invariants ----------------------------------------------------------------------------
    @invariant()
    def mm_invariants(self) -> None:
        m, ps = self.m, self.ps
        tables: set[int] = set()
        mapcount: dict[int, int] = {}
        for mm in self.mms:
            ptes = self._walk(mm, tables)
            pages = self.shadow[mm.id]
            # The VMAs cover exactly the shadow's pages.
            covered = {va for v in mm.vmas for va in range(v.start, v.end, ps)}
            assert covered == set(pages), f"mm {mm.id}: VMAs {sorted(covered)} != model {sorted(pages)}"
            rss = {"file": 0, "anon": 0}
            smaps = {r["start"]: r for r in mm.smaps()}
            for vma in mm.vmas:
                self._check_vma(mm, vma, pages)
                mine = {va: ptes.pop(va) for va in [va for va in ptes if vma.contains(va)]}
                normal_count = 0
                for va, pte in mine.items():
                    pfn = self._check_pte(mm, vma, va, pte, pages[va])
                    if pfn is not None:
                        normal_count += 1
                        mapcount[pfn] = mapcount.get(pfn, 0) + 1
                        rss["anon" if self._is_anon(pfn) else "file"] += 1
                if mine:  # the batched classifier (zap, fork, smaps) agrees with the scalar one
                    vas = np.array(list(mine), dtype=np.uint64)
                    got = memory.vm_normal_pages(vma, vas, np.array(list(mine.values()), dtype=np.uint64))
                    want = [memory.vm_normal_page(vma, va, pte) for va, pte in mine.items()]
                    assert got.tolist() == [-1 if w is None else w for w in want]
                # 29: smaps (2.6.27 counts special PTEs in Rss, only normal pages elsewhere; from
                # SMAPS_RSS_NORMAL_ONLY Rss too counts normal pages only: no special, no zero page)
                rec = smaps[vma.start]
                assert rec["Rss"] == (normal_count if self.smaps_normal_only else len(mine)) * ps
                split = (
                    rec["Shared_Clean"] + rec["Shared_Dirty"] + rec["Private_Clean"] + rec["Private_Dirty"]
                )
                assert split == normal_count * ps
                assert rec["Pss"] <= rec["Rss"]
            assert not ptes, f"mm {mm.id}: present PTEs outside every VMA at {[hex(v) for v in ptes]}"
            assert mm.rss == rss, f"mm {mm.id}: rss {mm.rss} but PTEs say {rss}"  # 7
            assert mm.bad_page_maps == [], f"mm {mm.id}: bad page maps {mm.bad_page_maps[:2]}"  # 3, 4

        # 5 and 6 over every RAM frame and every device struct page.
        exp_map = np.zeros(self.watched.shape, dtype=np.int64)
        exp_ref = np.zeros(self.watched.shape, dtype=np.int64)
        index = self.index
        for pfn, n in mapcount.items():
            exp_map[index[pfn]] += n
        for pfn in tables:
            exp_ref[index[pfn]] += 1
        for pfn in self.driver_held:
            exp_ref[index[pfn]] += 1
        for r in m.reserved:  # memblock-reserved at boot: refcount 1 for good, never free
            exp_ref[index[r.start // ps] : index[r.start // ps] + r.size // ps] += 1
        zpfn = zero.current_zero_pfn(m)
        if zpfn is not None:  # the zero page's own reference (PTEs mapping it take none)
            assert self.zero_rule, f"{self.profile} allocated a zero page"
            exp_ref[index[zpfn]] += 1
        for pins in self.pins:
            for pfn in pins.tolist():
                exp_ref[index[int(pfn)]] += 1
        exp_ref += exp_map
        got_map = m.memmap.mapcount[self.w_row, self.w_col]
        got_ref = m.memmap.refcount[self.w_row, self.w_col]
        bad = np.flatnonzero(got_map != exp_map)
        assert not bad.size, (
            f"mapcount of pfn {int(self.watched[bad[0]]):#x} is {int(got_map[bad[0]])}, "
            f"but {int(exp_map[bad[0]])} PTEs map it"
        )
        bad = np.flatnonzero(got_ref != exp_ref)
        assert not bad.size, (
            f"refcount of pfn {int(self.watched[bad[0]]):#x} is {int(got_ref[bad[0]])}, "
            f"expected {int(exp_ref[bad[0]])} (mapcount + pins + tables + driver)"
        )
        nram = self.ram_pfns.size
        free = m.pages.free_mask()
        assert (free == (exp_ref[:nram] == 0)).all(), "a RAM frame is free iff nothing holds it"
        assert m.pagetable_bytes() == len(tables) * ps, "page-table bytes != tables reachable from the roots"
        # Device memory holds exactly what shared mappings wrote into it.
        for pfn, data in self.dev_content.items():
            assert m.mem.read(pfn * ps, ps) == data, f"device page {pfn:#x} was changed behind the model"

    def _check_vma(self, mm: MM, vma: VMA, pages: dict[int, SPage]) -> None:
        sp = pages[vma.start]
        kind = None if sp.dev is None else sp.dev.kind
        # 1: COW definition, and a private mapping is exactly a COW one here.
        assert vma.is_cow == ((vma.flags & VM.MAYWRITE) != 0 and not vma.flags & VM.SHARED)
        assert vma.is_cow == (not sp.shared), vma.describe()
        assert bool(vma.flags & VM.SHARED) == sp.shared
        want = _vm_kind_flags(kind, self.profile)
        assert vma.flags & want == want, f"{vma.describe()} lacks {want!r}"
        for va in range(vma.start, vma.end, self.ps):
            other = pages[va]
            assert (other.dev, other.shared) == (sp.dev, sp.shared), (
                f"VMA {vma.describe()} spans two mappings"
            )

    def _check_pte(self, mm: MM, vma: VMA, va: int, pte: int, sp: SPage) -> int | None:
        """One present PTE against the model; returns the pfn vm_normal_page gives."""
        ops = mm.ops
        pfn = int(ops.pte_pfn(pte))
        is_zero = self.zero_rule and pfn == zero.current_zero_pfn(self.m)
        special = mm.pte_special_one(pte) if self.scheme_a else False
        if special:  # 3 (from 2.6.32 the zero page may be special in any VMA)
            assert vma.flags & (VM.PFNMAP | VM.MIXEDMAP) or is_zero, (
                f"special PTE at {va:#x} in {vma.describe()}"
            )
        page = memory.vm_normal_page(vma, va, pte)
        if self.scheme_a:
            assert (page is None) == special
        if page is not None:  # 4
            assert page == pfn and bool(self.m.pfn_valid(pfn)[0]), (
                f"normal PTE at {va:#x} maps {pfn:#x} without a struct page"
            )
        # s390's pte_write is "not _PAGE_RO", true for a PAGE_NONE PTE: only look at PTEs of
        # accessible VMAs.
        writable = bool(ops.pte_write(pte)) and bool(vma.flags & (VM.READ | VM.WRITE | VM.EXEC))
        if writable:
            assert vma.flags & VM.WRITE, f"writable PTE at {va:#x} in {vma.describe()}"
        private = sp.dev is None or sp.data is not None
        if self.zero_rule and sp.dev is None and sp.data is None:
            # 6.18 do_anonymous_page: an anonymous page only ever read maps the zero page,
            # read-only, special where the arch has the bit, never a page of its own.
            assert is_zero, f"{va:#x}: an untouched anonymous page maps {pfn:#x}, not the zero page"
            assert page is None and not writable, f"{va:#x}: the zero-page PTE must be NULL and read-only"
        elif private:
            # An anonymous page (fresh or a COW copy): normal, PageAnon, not device memory.
            assert page is not None and self._is_anon(page), f"{va:#x} should map an anonymous page"
            assert page not in self.driver_held
        else:
            assert pfn == sp.dev_pfn, f"{va:#x} maps {pfn:#x}, the device page is {sp.dev_pfn:#x}"
            assert (page is None) == self.expect_special(sp), (
                f"{va:#x}: {sp.dev.kind if sp.dev else 'anon'} pfn {pfn:#x} classified "
                f"{'special' if page is None else 'normal'}"
            )
        if vma.is_cow and writable:  # 15: only an exclusive anonymous page is writable
            assert page is not None and self._is_anon(page), f"writable non-anon PTE in COW VMA at {va:#x}"
            info = self.m.page(page)
            assert info is not None and info.mapcount == 1, f"writable PTE at {va:#x} maps a shared anon page"
        # Data integrity: the page mapped holds exactly the model's bytes.
        assert self.m.mem.read(pfn * self.ps, self.ps) == self.expected_bytes(sp), (
            f"mm {mm.id} page {va:#x} (pfn {pfn:#x}) holds other bytes than the model"
        )
        return page

    # -- teardown -------------------------------------------------------------------------------
    def teardown(self) -> None:
        m = self.m
        for pins in self.pins:
            m.pages.put_page(pins)
        self.pins.clear()
        for mm in list(self.mms):
            mm.exit()
        self.mms.clear()
        assert m.pagetable_bytes() == 0
        if zero.zero_allocated(m):
            assert zero.release_zero_page(m), "the zero page is still referenced or mapped after exit"
        got_ref = m.memmap.refcount[self.w_row, self.w_col]
        got_map = m.memmap.mapcount[self.w_row, self.w_col]
        assert (got_map == self.start_mapcount).all(), "a mapcount did not return to its start"
        bad = np.flatnonzero(got_ref != self.start_refcount)
        assert not bad.size, f"refcount of pfn {int(self.watched[bad[0]]):#x} did not return to its start"
        m.pages.free_pages(np.array(sorted(self.ram), dtype=np.uint64))  # the driver lets go
        assert m.pages.leaks() == {}
        assert m.pages.nr_free == self.free_at_start


def vma_kind(vma: VMA) -> str:
    return "mixedmap" if vma.flags & VM.MIXEDMAP else "pfnmap" if vma.flags & VM.PFNMAP else "anon"


def test_mm_stateful(case: Case) -> None:
    if not _representative(case):
        pytest.skip("stateful mm test runs on the default mode of each arch for 2.6.26/2.6.27/6.18 only")
    run_state_machine_as_test(lambda: MMStateMachine(case), settings=STATEFUL_SETTINGS)  # type: ignore[arg-type]


# -- regression tests for the core fixes this machine found ---------------------------------------
def test_mprotect_applies_vma_by_vma_up_to_a_hole(case: Case) -> None:
    """2.6.27 sys_mprotect: VMAs before a hole (ENOMEM) or a VMA lacking VM_MAYWRITE (EACCES)
    keep their new protection; a start in a hole changes nothing."""
    if not _representative(case):
        pytest.skip("runs on the default mode of each arch for 2.6.26/2.6.27/6.18 only")
    m = case.machine(ram="16M")
    mm = m.new_mm()
    ps = m.page_size
    a = mm.mmap(ps, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    with pytest.raises(ENOMEM):
        mm.mprotect(a, 2 * ps, "r")  # [a, a+ps) is a VMA, a+ps is a hole
    vma = mm.find_vma(a)
    assert vma is not None and vma.flags & (VM.READ | VM.WRITE) == VM.READ
    with pytest.raises(ENOMEM):
        mm.mprotect(a + ps, ps, "none")  # starts in the hole
    assert vma.flags & (VM.READ | VM.WRITE) == VM.READ
    ro = DeviceFile("ro", writable=False)  # MAP_SHARED of a read-only file: no VM_MAYWRITE
    b = mm.mmap(ps, "r", MAP_SHARED, file=ro)
    assert b == a + ps
    with pytest.raises(EACCES):
        mm.mprotect(a, 2 * ps, "rw")
    assert vma.flags & VM.WRITE and not mm.find_vma(b).flags & VM.WRITE  # type: ignore[union-attr]
    mm.exit()


def test_gup_fast_does_not_pin_a_prot_none_page(case: Case) -> None:
    """2.6.27 gup_pte_range needs _PAGE_PRESENT|_PAGE_USER: a PROT_NONE PTE (present to Linux)
    stops the lockless walk, and the slow path refuses a VMA without VM_READ."""
    if not _representative(case) or not case.mode.fmt.has_lockless_gup:
        pytest.skip("this arch and profile had no lockless get_user_pages_fast")
    m = case.machine(ram="16M")
    mm = m.new_mm()
    a = mm.mmap(m.page_size, "rw", MAP_PRIVATE | MAP_ANONYMOUS)
    mm.write(a, b"x")
    res = get_user_pages_fast(mm, a, 1, False)
    assert (res.fast, res.slow) == (1, 0)
    m.pages.put_page(res.pfns)
    mm.mprotect(a, m.page_size, "none")
    assert mm.pt.lookup(a) is not None  # still present to Linux
    with pytest.raises(EFAULT):
        get_user_pages_fast(mm, a, 1, False)
    mm.exit()
    assert m.pages.leaks() == {}
