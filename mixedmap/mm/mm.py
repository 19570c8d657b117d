"""An address space (the kernel's mm_struct): VMAs over page tables, with the syscalls that
shape it (mmap, munmap, mprotect, fork, exit) and user accesses that fault like a CPU would.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from mixedmap._log import get_logger
from mixedmap.arch import VM_EXEC, VM_READ, VM_SHARED, VM_WRITE
from mixedmap.errors import EACCES, EFAULT, EINVAL, ENOMEM, SIGBUS, SIGSEGV, OOMError
from mixedmap.mm import memory, rmap
from mixedmap.mm.fault import handle_mm_fault
from mixedmap.mm.gup import get_user_pages, mm_populate, pinned_pages_of, report_exit_pins
from mixedmap.mm.vma import (
    MAP_ANONYMOUS,
    MAP_FIXED,
    MAP_POPULATE,
    MAP_PRIVATE,
    MAP_SHARED,
    PROT_EXEC,
    PROT_READ,
    PROT_WRITE,
    VM,
    VMA,
    FaultResult,
    mnemonics,
)
from mixedmap.phys.page_alloc import PinnedPage
from mixedmap.rules import GUP_EEXIST

if TYPE_CHECKING:
    from mixedmap.machine import Machine

log = get_logger("mixedmap.mm")
_ids = itertools.count(1)
_OOM, _SIGBUS = int(FaultResult.OOM), int(FaultResult.SIGBUS)
#: Distinct PTE values :meth:`MM._access` keeps decoded before it starts over.
_DECODED_MAX = 1 << 16


def _vma_start(vma: VMA) -> int:
    return vma.start


def parse_prot(prot: int | str) -> int:
    """PROT_* bits from an int or a string such as "r", "rw", "rwx", "none"."""
    if isinstance(prot, int):
        if prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC):
            raise EINVAL(f"unknown prot bits {prot:#x}")
        return prot
    if prot == "none":
        return 0
    bits = {"r": PROT_READ, "w": PROT_WRITE, "x": PROT_EXEC}
    if not prot or any(c not in bits for c in prot):
        raise EINVAL(f"unknown prot {prot!r}; use r, rw, rx, rwx or none")
    return sum(bits[c] for c in set(prot))


@attrs.frozen
class Access:
    """The outcome of one user access: which fault (if any) the kernel took."""

    va: int
    fault: str
    pfn: int


# The frozen class's __init__ goes through object.__setattr__ per field, which costs more
# than a whole present-PTE access: MM.access fills the slots directly instead (the same
# object, equal and hashing as one built by Access(...)).
_new_access = object.__new__
_set_va, _set_fault, _set_pfn = (Access.__dict__[name].__set__ for name in ("va", "fault", "pfn"))


class MM:
    """mm_struct: page tables, VMAs and RSS counters of one process."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine
        self.id = next(_ids)
        self.mode = machine.mode
        self.fmt = machine.fmt
        self.ops = machine.mode.mode.ops
        self.has_special = machine.mode.has_special
        self.page_size = machine.page_size
        self.page_shift = machine.fmt.page_shift
        self.empty_pte = int(self.ops.empty_entry(len(self.fmt.levels) - 1))
        #: First pfn beyond the arch's physical address bits (PageTableFormat.max_pfn, read once).
        self.max_pfn = self.fmt.max_pfn
        self.pt = machine.new_pagetable()
        self.vmas: list[VMA] = []
        self.rss_file = 0
        self.rss_anon = 0
        #: Pages still FOLL_PIN-pinned when this mm exited (pins outlive the mm), by pfn.
        self.pins_at_exit: tuple[PinnedPage, ...] = ()
        #: "BUG: Bad page map" reports vm_normal_page made about this mm (6.18; 2.6.27 BUGs).
        self.bad_page_maps: list[memory.BadPageMap] = []
        self.dead = False
        fmt = self.fmt
        top = 1 << (fmt.va_bits - 1) if fmt.va_rule == "canonical" else 1 << fmt.va_bits
        self.task_size = top - self.page_size
        self.mmap_base = min(0x1000_0000, self.task_size // 4)
        self._tracer: Any = machine.tracer
        # Verified once per binding to equal the arch's hooks (see BoundMode).
        self._special_mask = machine.mode.special_scalar_mask()
        # -- the scalar access path's constants and caches (see _access) --
        #: The machine's physical memory (where this mm's page tables live) and its byte order.
        self.mem = machine.mem
        self.byteorder = self.fmt.byteorder
        self._page_mask = self.page_size - 1
        #: The VMA the last access found: a TLB-like hint, dropped whenever the list changes.
        self._vma_hint: VMA | None = None
        #: What the access path needs of a PTE value, decoded once per value: () when not
        #: present, else (writable, pte_mkyoung(pte), pte_mkdirty(pte_mkyoung(pte)), pfn).
        #: The arch's helpers are pure functions of the value, so a value never decodes
        #: differently; the table is bounded and simply restarts when full.
        self._decoded: dict[int, tuple[()] | tuple[bool, int, int, int]] = {}
        #: (page address, PTE slot) of the walk ``handle_mm_fault`` made for the fault in
        #: progress: the handler's insert (``get_locked_pte`` in insert_page/insert_pfn) and
        #: the retried access find the same PTE without walking again. Only munmap and exit
        #: free this mm's tables, and both drop it.
        self._fault_slot: tuple[int, int] | None = None
        #: PTE tables the access path has walked to, by the VA bits above a table's reach (a
        #: TLB of the upper levels, as PageTable.pte_slot's own one-entry cache but for many
        #: tables). Dropped with _fault_slot: only munmap and exit free this mm's tables.
        leaf = self.fmt.levels[-1]
        self._reach_shift = leaf.shift + leaf.index_bits
        self._leaf_shift = leaf.shift
        self._leaf_mask = leaf.entries - 1
        self._entry_size = self.fmt.entry_size
        self._pte_tables: dict[int, int] = {}
        #: ``pfn_valid`` of one pfn, the arch's implementation resolved at bind time.
        self.pfn_valid_one = machine.binding.pfn_valid_scalar(machine.memmap)
        #: That is the core's SPARSEMEM test (MemMap.pfn_valid_one): "the section has a memmap".
        self.pfn_valid_is_core = machine.binding.pfn_valid_is_core
        #: The empty PTE is none and not present (handle_pte_fault's common case), asked once.
        self.empty_is_none = not self.ops.pte_present(self.empty_pte) and bool(
            self.ops.pte_none(self.empty_pte)
        )

    # -- helpers for the mm paths -----------------------------------------------------------
    @property
    def root(self) -> int:
        """The root register value of this address space (CR3, ASCE, PGD)."""
        return self.pt.root

    @property
    def rss(self) -> dict[str, int]:
        return {"file": self.rss_file, "anon": self.rss_anon}

    def fault_pte_slot(self, addr: int) -> int:
        """``pte_slot(addr, allocate=True)``, from the current fault's walk when it is for
        ``addr`` (see ``_fault_slot``); may raise OutOfMemory as the walk does."""
        hint = self._fault_slot
        if hint is not None and hint[0] == addr:
            return hint[1]
        slot = self.pt.pte_slot(addr, allocate=True)
        assert slot is not None
        return slot

    def pte_special_one(self, pte: int) -> bool:
        if self._special_mask is not None:
            return bool(pte & self._special_mask)
        return bool(self.mode.pte_special(np.array([pte], dtype=np.uint64))[0])

    def mkspecial_one(self, pte: int) -> int:
        """``pte_mkspecial``; the identity on a profile without the bit (the kernel's stub)."""
        if not self.has_special:
            return pte
        if self._special_mask is not None:
            return pte | self._special_mask
        return int(self.mode.pte_mkspecial(np.array([pte], dtype=np.uint64))[0])

    def copy_page(self, src_pfn: int, dst_pfn: int) -> None:
        """``copy_user_highpage``: the frame's bytes, block by block in physical memory."""
        ps = self.page_size
        self.mem.copy(src_pfn * ps, dst_pfn * ps, ps)

    def cow_user_page(self, dst_pfn: int, src_page: int | None, src_pfn: int) -> None:
        """``cow_user_page``: copy from the page, or without one through the user address.

        The old PTE still maps ``src_pfn`` read-only, so a copy "from the user address" reads
        exactly the bytes at that pfn; the model reads them from physical memory.
        """
        self.copy_page(src_pfn if src_page is None else src_page, dst_pfn)

    def trace(self, event: str, func: str, vma: VMA | None, addr: int, pfn: int | None, before: int) -> None:
        """One mm event (free when no tracer is attached); the PTE after is read back."""
        if self._tracer is not None:
            slot = self.pt.pte_slot(addr - addr % self.page_size, allocate=False)
            after = self.pt.read_pte(slot) if slot is not None else self.empty_pte
            self._tracer(
                event=event, func=func, mm=self.id, addr=addr, pfn=pfn, pte_before=before, pte_after=after,
                vma=None if vma is None else f"{vma.start:#x}-{vma.end:#x}",
            )  # fmt: skip

    def trace_range(self, event: str, func: str, vma: VMA | None, addr: int, npages: int) -> None:
        """A batched event over ``npages`` PTEs from ``addr``."""
        if self._tracer is not None:
            self._tracer(
                event=event, func=func, mm=self.id, addr=addr, npages=npages,
                vma=None if vma is None else f"{vma.start:#x}-{vma.end:#x}",
            )  # fmt: skip

    # -- VMAs -----------------------------------------------------------------------------------
    def find_vma(self, addr: int) -> VMA | None:
        """The VMA containing ``addr`` (None if none does): a bisect of the sorted list."""
        vmas = self.vmas
        i = bisect.bisect_right(vmas, addr, key=_vma_start) - 1
        if i >= 0 and addr < vmas[i].end:
            return vmas[i]
        return None

    def _insert_vma(self, vma: VMA) -> None:
        self._vma_hint = None
        bisect.insort(self.vmas, vma, key=_vma_start)

    def _get_unmapped_area(self, length: int) -> int:
        addr = self.mmap_base
        for v in self.vmas:
            if v.end <= addr:
                continue
            if v.start >= addr + length:
                break
            addr = v.end
        if addr + length > self.task_size:
            raise ENOMEM(f"no free {length:#x}-byte gap below TASK_SIZE {self.task_size:#x}")
        return addr

    def _split(self, addr: int) -> None:
        """Split the VMA containing ``addr`` so that a VMA starts there (split_vma)."""
        vma = self.find_vma(addr)
        if vma is None or vma.start == addr:
            return
        tail = attrs.evolve(vma, start=addr, pgoff=vma.linear_pgoff(addr))
        vma.end = addr
        self._insert_vma(tail)

    def _vmas_in(self, start: int, end: int) -> list[VMA]:
        return [v for v in self.vmas if v.start < end and start < v.end]

    def vm_get_page_prot(self, flags: int) -> int:
        """``vm_get_page_prot``: protection_map[flags & (READ|WRITE|EXEC|SHARED)]."""
        return self.fmt.protection_map[flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)]

    # -- syscalls --------------------------------------------------------------------------------
    def mmap(
        self,
        length: int,
        prot: int | str,
        flags: int,
        file: Any = None,
        pgoff: int = 0,
        addr: int | None = None,
    ) -> int:
        """``do_mmap_pgoff`` (2.6.27 mm/mmap.c): returns the address of the new VMA.

        VM_SHARED/VM_MAYSHARE/VM_MAYWRITE follow the file's open mode; the file's
        ``mmap`` (f_op->mmap) may then set flags and vm_ops (xip_file_mmap sets MIXEDMAP).
        """
        self._alive()
        p = parse_prot(prot)
        if length <= 0:
            raise EINVAL(f"mmap: length {length} must be positive")
        length = -(-length // self.page_size) * self.page_size
        if bool(flags & MAP_SHARED) == bool(flags & MAP_PRIVATE):
            raise EINVAL("mmap: exactly one of MAP_SHARED and MAP_PRIVATE")
        anonymous = file is None
        if anonymous != bool(flags & MAP_ANONYMOUS) and flags & MAP_ANONYMOUS:
            raise EINVAL("mmap: MAP_ANONYMOUS with a file")
        if pgoff < 0:
            raise EINVAL(f"mmap: negative pgoff {pgoff}")
        vm = p | VM.MAYREAD | VM.MAYWRITE | VM.MAYEXEC
        if anonymous:
            if flags & MAP_SHARED:
                raise EINVAL("mmap: shared anonymous memory (shmem) is not modelled")
        else:
            readable, writable = bool(getattr(file, "readable", True)), bool(getattr(file, "writable", False))
            if not readable:
                raise EACCES(f"mmap: {file!r} is not open for reading")
            if flags & MAP_SHARED:
                if p & PROT_WRITE and not writable:
                    raise EACCES(f"mmap: PROT_WRITE on a MAP_SHARED mapping of read-only {file!r}")
                vm |= VM.SHARED | VM.MAYSHARE
                if not writable:
                    vm &= ~(VM.MAYWRITE | VM.SHARED)
        if addr is not None and flags & MAP_FIXED:
            if addr % self.page_size or addr + length > self.task_size:
                raise EINVAL(f"mmap: MAP_FIXED address {addr:#x} is unaligned or beyond TASK_SIZE")
            start = addr
        else:
            start = self._get_unmapped_area(length)
        vma = VMA(
            mm=self,
            start=start,
            end=start + length,
            flags=vm,
            page_prot=self.vm_get_page_prot(vm),
            pgoff=pgoff,
            file=file,
        )
        if file is not None and hasattr(file, "mmap"):
            # may raise; nothing is installed yet. vm_page_prot was set before ->mmap and a
            # driver may change it there (pgprot_noncached...): mmap_region keeps it.
            file.mmap(vma)
        if addr is not None and flags & MAP_FIXED:
            self.munmap(start, length)
        self._insert_vma(vma)
        log.debug("mmap", mm=self.id, start=start, length=length, flags=mnemonics(vma.flags))
        if flags & MAP_POPULATE:
            self.populate(start, length)
        return start

    def populate(self, start: int, length: int) -> None:
        """``make_pages_present`` (2.6.27, MAP_POPULATE): ``get_user_pages`` over the range,
        write = VM_WRITE (so a private writable mapping is COWed page by page), no pages.

        mmap ignores the result: population stops at the first page GUP cannot get (a
        special PTE is -EFAULT in 2008, SIGBUS beyond EOF, an IO/PFNMAP VMA) or on OOM.

        With the zero page (:data:`~mixedmap.rules.ZERO_PAGE`, 6.18 mm/gup.c
        ``populate_vma_page_range``): FOLL_WRITE only where ``(vm_flags & (VM_WRITE |
        VM_SHARED)) == VM_WRITE``, else a read fault (FOLL_FORCE on any accessible VMA, exec-only
        too), which maps the zero page on untouched anonymous memory; GUP without a pages array
        takes no reference on it, so the end state is that of read faults.
        """
        from mixedmap.rules import ZERO_PAGE

        vma = self.find_vma(start)
        if vma is None:
            return
        npages = -(-length // self.page_size)
        write = bool(vma.flags & VM.WRITE)
        end = start + npages * self.page_size
        zero_page = ZERO_PAGE.applies(self.machine.profile)
        accessible = VM.READ | VM.WRITE | (VM.EXEC if zero_page else 0)
        if vma.file is None and vma.vm_ops is None and vma.end >= end and vma.flags & accessible:
            # Anonymous memory: every page GUP faults in gets a struct page (do_anonymous_page),
            # so the loop never stops early and its get_page/put_page pairs cancel: the end
            # state is that of faulting each page in, which fault_in applies in batches.
            self.trace_range("gup", "mm/memory.c:get_user_pages", vma, start, npages)
            if not write and not zero_page and not vma.flags & (VM.LOCKED | VM.SHARED):
                # 2.6.27 use_zero_page: a read of untouched anonymous memory is FOLL_ANON, and
                # follow_page answers ZERO_PAGE without installing a PTE: nothing is mapped.
                return
            with contextlib.suppress(OOMError):  # GUP returns the pages it got; mmap ignores it
                self.fault_in(start, npages * self.page_size, write=write)
            return
        if GUP_EEXIST.applies(self.machine.profile):
            # 4.3 on (6.18): __mm_populate passes no pages array (nothing is referenced, a
            # PTE without a struct page is stepped over) and skips VM_IO/VM_PFNMAP VMAs.
            mm_populate(self, start, npages * self.page_size)
            return
        try:
            pinned = get_user_pages(self, start, npages, write)
        except (EFAULT, ENOMEM):
            return
        self.machine.pages.put_page(pinned)  # the model's GUP always takes FOLL_GET refs

    def fault_in(self, start: int, length: int, write: bool = False) -> int:
        """Fault in [start, start + length): the end state of ``access(va, write)`` on every
        page in address order, applied in numpy batches (see :mod:`mixedmap.mm.populate`).

        Returns the pages newly mapped. Unlike :meth:`populate` (``make_pages_present``,
        which stops at the first page ``get_user_pages`` cannot get, e.g. a special PTE in
        2.6.27) this touches every page; errors are those the per-page access raises.
        """
        from mixedmap.mm.populate import fault_in

        return fault_in(self, start, length, write)

    def munmap(self, addr: int, length: int) -> None:
        """``do_munmap``: split VMAs at the edges, zap, drop VMAs, free empty page tables."""
        self._alive()
        if addr % self.page_size or length <= 0:
            raise EINVAL(f"munmap: bad range {addr:#x}+{length:#x}")
        end = addr + -(-length // self.page_size) * self.page_size
        self._split(addr)
        self._split(end)
        for vma in self._vmas_in(addr, end):
            memory.zap_pte_range(vma, vma.start, vma.end)
            self._vma_hint = None
            self.vmas.remove(vma)
        self._fault_slot = None
        self._pte_tables.clear()
        self.pt.free_pgtables(addr, end)

    def mprotect(self, addr: int, length: int, prot: int | str) -> None:
        """``sys_mprotect``: new flags and page_prot; present PTEs get ``pte_modify``.

        As 2.6.27 mm/mprotect.c, VMA by VMA in address order: a VMA whose VM_MAY* bits
        forbid the new protection stops it with EACCES, a hole with ENOMEM; the VMAs
        before either keep their new protection.
        """
        self._alive()
        p = parse_prot(prot)
        if addr % self.page_size or length <= 0:
            raise EINVAL(f"mprotect: bad range {addr:#x}+{length:#x}")
        end = addr + -(-length // self.page_size) * self.page_size
        vma = self.find_vma(addr)
        if vma is None:
            raise ENOMEM(f"mprotect: {addr:#x} is not mapped")
        pos = addr
        while True:
            newflags = (vma.flags & ~(VM.READ | VM.WRITE | VM.EXEC)) | p
            if newflags & ~(newflags >> 4) & (VM.READ | VM.WRITE | VM.EXEC):
                raise EACCES(f"mprotect: {prot!r} on {vma.describe()} exceeds its VM_MAY* bits")
            tmp = min(vma.end, end)
            self._split(pos)  # mprotect_fixup
            self._split(tmp)
            vma = self.find_vma(pos)
            assert vma is not None
            vma.flags = newflags
            vma.page_prot = self.vm_get_page_prot(vma.flags)
            vas, ptes, reach = self.pt.range_ptes(vma.start, vma.npages)
            live = reach & np.asarray(self.ops.pte_present(ptes), dtype=np.bool_)
            if live.any():
                new = np.asarray(self.ops.pte_modify(ptes[live], vma.page_prot), dtype=np.uint64)
                self.pt.write_ptes(self.pt.epas_for(vas[live]), new)
            self.trace_range("mprotect", "mm/mprotect.c:change_pte_range", vma, vma.start, vma.npages)
            pos = tmp
            if pos >= end:
                return
            nxt = self.find_vma(pos)
            if nxt is None or nxt.start != pos:
                raise ENOMEM(f"mprotect: [{addr:#x}, {end:#x}) has a hole at {pos:#x}")
            vma = nxt

    def fork(self) -> MM:
        """``dup_mm``/``dup_mmap``: a child with copies of the VMAs (not VM_DONTCOPY) and,
        where 2.6.27 copies them, of the PTEs."""
        self._alive()
        child = MM(self.machine)
        self.machine.mms.append(child)
        try:
            for vma in self.vmas:
                if vma.flags & VM.DONTCOPY:
                    continue
                new = attrs.evolve(vma, mm=child)
                child._insert_vma(new)
                memory.copy_page_range(child, vma, new)
        except BaseException:
            child.exit()
            raise
        return child

    def exit(self) -> None:
        """``exit_mmap``: zap everything and free every page table (the root too)."""
        if self.dead:
            return
        pinned = pinned_pages_of(self)  # FOLL_PIN pins outlive the mm: named after the zap
        for vma in list(self.vmas):
            memory.zap_pte_range(vma, vma.start, vma.end)
        self._vma_hint = None
        self._fault_slot = None
        self._pte_tables.clear()
        self.vmas.clear()
        self.pt.free()
        self.dead = True
        if pinned.size:
            report_exit_pins(self, pinned)
        if self in self.machine.mms:
            self.machine.mms.remove(self)

    def _alive(self) -> None:
        if self.dead:
            raise EINVAL(f"mm {self.id} has exited")

    # -- user accesses --------------------------------------------------------------------------
    def access(self, va: int, write: bool = False, exec: bool = False) -> Access:
        """One user access, as the CPU and ``do_page_fault`` would handle it.

        Returns which fault the kernel took ("none" when the PTE allowed it); SIGSEGV,
        SIGBUS and OOM come as typed errors.
        """
        pfn, fault = self._access(va, write, exec)
        acc: Access = _new_access(Access)
        _set_va(acc, va)
        _set_fault(acc, fault)
        _set_pfn(acc, pfn)
        return acc

    def _access(self, va: int, write: bool, exec: bool) -> tuple[int, str]:
        """:meth:`access` as (pfn, fault): the CPU's side, then ``do_page_fault``.

        The hot path (the PTE is present and permits the access, as the TLB or a hardware
        walk would find it) is one cached VMA check, one cached walk to the PTE slot
        (:meth:`PageTable.pte_slot`), one read and a dictionary lookup of what the value
        means; only a fault goes through ``handle_mm_fault`` (2.6.27 arch/x86/mm/fault.c
        ``do_page_fault`` -> mm/memory.c ``handle_mm_fault``).
        """
        if self.dead:
            raise EINVAL(f"mm {self.id} has exited")
        vma = self._vma_hint
        if vma is None or not vma.start <= va < vma.end:
            vma = self.find_vma(va)
            if vma is None:
                raise SIGSEGV(f"SIGSEGV: no mapping at {va:#x}", va)
            self._vma_hint = vma
        flags = vma.flags
        if write and not flags & VM_WRITE:
            raise SIGSEGV(f"SIGSEGV: write to {va:#x} in {vma.describe()}", va)
        if exec and not flags & VM_EXEC:
            raise SIGSEGV(f"SIGSEGV: exec at {va:#x} in {vma.describe()}", va)
        if not flags & (VM_READ | VM_WRITE | VM_EXEC):
            raise SIGSEGV(f"SIGSEGV: access to PROT_NONE {va:#x}", va)
        page_va = va - (va & self._page_mask)
        pt = self.pt
        key = page_va >> self._reach_shift
        table = self._pte_tables.get(key)
        if table is not None:
            slot: int | None = table + ((page_va >> self._leaf_shift) & self._leaf_mask) * self._entry_size
        else:
            slot = pt.pte_slot(page_va, allocate=False)
            if slot is not None:
                self._remember_table(key, page_va, slot)
        pte = self.mem.read_u64(slot, self.byteorder) if slot is not None else self.empty_pte
        dec = self._decoded.get(pte)
        if dec is None:
            dec = self._decode(pte)
        if dec:  # present: what the MMU (or the arch's fault path) sets, A and for a write D
            if not write:
                if dec[1] != pte and slot is not None:
                    pt.write_pte(slot, dec[1])
                return dec[3], "none"
            if dec[0]:
                if dec[2] != pte and slot is not None:
                    pt.write_pte(slot, dec[2])
                return dec[3], "none"
        if slot is not None:  # handle_mm_fault walks to the same PTE: hand it the slot
            self._fault_slot = (page_va, slot)
        ret = int(handle_mm_fault(self, vma, page_va, write))
        if ret & _OOM:
            raise OOMError(f"VM_FAULT_OOM at {va:#x}", va)
        if ret & _SIGBUS:
            raise SIGBUS(f"SIGBUS at {va:#x} in {vma.describe()}", va)
        fault = "wp" if dec else "fault"
        hint, self._fault_slot = self._fault_slot, None
        slot = hint[1] if hint is not None and hint[0] == page_va else pt.pte_slot(page_va, allocate=False)
        assert slot is not None
        if table is None:  # the fault may have allocated the table
            self._remember_table(key, page_va, slot)
        pte = self.mem.read_u64(slot, self.byteorder)
        ops = self.ops
        if not ops.pte_present(pte) or (write and not ops.pte_write(pte)):
            # NOPAGE for a private write: the PTE is read-only now; the retried access
            # takes the write-protect fault (two faults, as the kernel takes them).
            ret = int(handle_mm_fault(self, vma, page_va, write))
            if ret & _OOM:
                raise OOMError(f"VM_FAULT_OOM at {va:#x}", va)
            if ret & _SIGBUS:
                raise SIGBUS(f"SIGBUS at {va:#x} in {vma.describe()}", va)
            fault = "fault+wp"
            pte = self.mem.read_u64(slot, self.byteorder)
        return int(ops.pte_pfn(pte)), fault

    def _remember_table(self, key: int, page_va: int, slot: int) -> None:
        """Record the PTE table of a walk for :meth:`_access` (bounded: starts over when full)."""
        tables = self._pte_tables
        if len(tables) >= _DECODED_MAX:
            tables.clear()
        tables[key] = slot - ((page_va >> self._leaf_shift) & self._leaf_mask) * self._entry_size

    def _decode(self, pte: int) -> tuple[()] | tuple[bool, int, int, int]:
        """Decode a PTE value for :meth:`_access` (the arch's helpers, once per value)."""
        ops = self.ops
        dec: tuple[()] | tuple[bool, int, int, int]
        if not ops.pte_present(pte):
            dec = ()
        else:
            young = int(ops.pte_mkyoung(pte))
            dec = (bool(ops.pte_write(pte)), young, int(ops.pte_mkdirty(young)), int(ops.pte_pfn(pte)))
        decoded = self._decoded
        if len(decoded) >= _DECODED_MAX:
            decoded.clear()
        decoded[pte] = dec
        return dec

    def _pages(self, va: int, n: int) -> Iterator[tuple[int, int, int]]:
        while n > 0:
            off = va % self.page_size
            chunk = min(n, self.page_size - off)
            yield va, off, chunk
            va, n = va + chunk, n - chunk

    def read(self, va: int, n: int) -> bytes:
        """Read ``n`` user bytes at ``va``, faulting pages in as needed."""
        off = va & self._page_mask
        if 0 < n <= self.page_size - off:  # within one page: one access, no Access object
            pfn = self._access(va, False, False)[0]
            return self.mem.read((pfn << self.page_shift) + off, n)
        out = bytearray()
        for page_va, off, chunk in self._pages(va, n):
            pfn = self._access(page_va, False, False)[0]
            out += self.mem.read(pfn * self.page_size + off, chunk)
        return bytes(out)

    def write(self, va: int, data: bytes) -> None:
        """Write user bytes at ``va`` (write faults, COW, as needed)."""
        off = va & self._page_mask
        n = len(data)
        if 0 < n <= self.page_size - off:  # within one page
            pfn = self._access(va, True, False)[0]
            self.mem.write((pfn << self.page_shift) + off, data)
            return
        pos = 0
        for page_va, off, chunk in self._pages(va, n):
            pfn = self._access(page_va, True, False)[0]
            self.mem.write(pfn * self.page_size + off, data[pos : pos + chunk])
            pos += chunk

    # -- accounting -----------------------------------------------------------------------------
    def smaps(self) -> list[dict[str, Any]]:
        """A /proc/PID/smaps view as fs/proc/task_mmu.c counts it.

        2.6.27 ``smaps_pte_range`` adds every present PTE to Rss, special ones included, before
        asking ``vm_normal_page``; from :data:`~mixedmap.rules.SMAPS_RSS_NORMAL_ONLY` (6.18
        ``smaps_pte_entry``: ``if (!page) return;`` before ``smaps_account``) Rss counts only
        normal pages, so neither special PTEs nor the zero page show. Shared, Private and Pss
        count normal pages in both (a page mapped more than once is shared).
        """
        from mixedmap.rules import SMAPS_RSS_NORMAL_ONLY

        rss_normal_only = SMAPS_RSS_NORMAL_ONLY.applies(self.machine.profile)
        out = []
        ps = self.page_size
        for vma in self.vmas:
            vas, ptes, reach = self.pt.range_ptes(vma.start, vma.npages)
            present = reach & np.asarray(self.ops.pte_present(ptes), dtype=np.bool_)
            rec: dict[str, Any] = {
                "start": vma.start,
                "end": vma.end,
                "Size": vma.end - vma.start,
                "Rss": int(present.sum()) * ps,
                "Pss": 0,
                "Shared_Clean": 0,
                "Shared_Dirty": 0,
                "Private_Clean": 0,
                "Private_Dirty": 0,
                "Referenced": 0,
                "VmFlags": mnemonics(vma.flags),
            }
            if present.any():
                pfns = memory.vm_normal_pages(vma, vas[present], ptes[present])
                normal = pfns >= 0
                if rss_normal_only:
                    rec["Rss"] = int(normal.sum()) * ps
                if normal.any():
                    npfns = pfns[normal].astype(np.uint64)
                    pt = ptes[present][normal]
                    mc = rmap.mapcount(self.machine.memmap, npfns)
                    row, col = self.machine.memmap.rows(npfns)
                    from mixedmap.phys.memmap import PG

                    dirty = np.asarray(self.ops.pte_dirty(pt), dtype=np.bool_) | (
                        (self.machine.memmap.flags[row, col] & np.uint32(PG.dirty)) != 0
                    )
                    young = np.asarray(self.ops.pte_young(pt), dtype=np.bool_)
                    shared = mc >= 2
                    rec["Shared_Clean"] = int((shared & ~dirty).sum()) * ps
                    rec["Shared_Dirty"] = int((shared & dirty).sum()) * ps
                    rec["Private_Clean"] = int((~shared & ~dirty).sum()) * ps
                    rec["Private_Dirty"] = int((~shared & dirty).sum()) * ps
                    rec["Referenced"] = int(young.sum()) * ps
                    rec["Pss"] = int(np.sum(ps // np.maximum(mc, 1)))
            out.append(rec)
        return out
