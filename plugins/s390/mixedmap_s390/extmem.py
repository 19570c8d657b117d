"""The guest kernel's segment layer: ``arch/s390/mm/extmem.c`` on one Machine.

``segment_load(name, do_nonshared)`` attaches a z/VM saved segment (:mod:`mixedmap_s390.zvm`)
to the guest: the range joins the kernel's identity mapping and ``/proc/iomem`` as ``"NAME
(DCSS)"`` -- here a device region of the Machine, owner ``"extmem"``. Loading an already
loaded segment in the same share mode takes a reference; ``segment_unload`` drops one and
detaches at zero. ``segment_modify_shared`` reloads a segment with one user in the other
mode; ``segment_save`` is CP DEFSEG + SAVESEG of the guest's current copy.

Struct pages. 2.6.26 ("s390: remove struct page entries for DCSS memory segments", the last
patch of the 2008 VM_MIXEDMAP series) made ``vmem_add_mapping`` map the range only: a loaded
DCSS has **no struct page** and, not being a memory section, ``pfn_valid`` is false. Before
(2.6.20-2.6.25, ``add_shared_memory``) the vmemmap was populated for the segment and every
struct page initialised -- zeroed, refcount 1, mapcount reset, ``PG_reserved``. The
``pre_series`` switch of :class:`Extmem` models that: the region is added with a memmap and
its pages initialised so. ``pfn_valid`` then answers the SPARSEMEM way the rest of the model
uses (section has a memmap: true); the real <=2.6.25 ``pfn_valid`` (``pfn < max_pfn`` and
LRA succeeds, reference fact U10) may have said false above ``max_pfn`` -- the point modelled
is the memmap, 64 bytes per 4 KiB page. 6.18's dcssblk asks for ZONE_DEVICE pages instead
(``struct_pages=True`` from :mod:`mixedmap_s390.dcssblk`).

Error order per profile (each checked before anything changes):

* 2.6.26/2.6.27 (``__segment_load`` -> ``vmem_add_mapping`` -> ``insert_memory_segment``):
  ``-ENOENT`` unknown name; ``-EIO`` a segment reaching above 2 GiB (2.6.27 only has the
  31-bit DIAGNOSE X'64' subcodes, ``int`` segstart/segend; >2G DCSS support came with
  b2300b9efe1b in 2.6.28 -- the errno z/VM's old subcodes give is an inference);
  ``-ERANGE`` end beyond ``VMEM_MAX_PHYS``; ``-ENOSPC`` overlap with any memory segment
  (guest storage and every loaded DCSS, byte-exact); ``-EBUSY`` overlap with another
  iomem resource (``request_resource``).
* 6.18: ``-ENOENT``; ``-EBUSY`` overlap with a loaded DCSS at 1 MiB granularity
  (``segment_overlaps_others`` compares ``addr >> 20``); ``-EBUSY`` overlap with any
  resource, System RAM included (``request_resource``; ENOSPC is gone); ``-ERANGE`` end
  beyond ``max_mappable`` (``vmem_add_mapping``).
* both: ``-EPERM`` when the segment is loaded in the other share mode.

Model limitations (core): ``pfn_valid`` is per memory section (256 MiB in 2.6.2x, 128 MiB in
6.18; 6.18's sub-sections are not modelled), and ``Machine.remove_region`` drops the memmap
of every section the region touches. So a DCSS with struct pages may share sections only
with other DCSSs with struct pages (whose memmap this module puts back when a neighbour
goes); next to RAM or other memory such a load is refused with :class:`AddressError`, and a
DCSS without struct pages cannot share a section with memory that has them (the core's
check), all before anything changes.
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter
from collections.abc import Mapping
from typing import Final

import attrs
import numpy as np

from mixedmap import (
    EBUSY,
    EINVAL,
    EIO,
    ENOSPC,
    EPERM,
    ERANGE,
    PG,
    AddressError,
    Machine,
    MixedmapError,
)
from mixedmap_s390.kerrno import EAGAIN
from mixedmap_s390.zvm import MAX_DCSS_ADDR, PAGE_SHIFT, PAGE_SIZE, ZVM, SegmentDef, SegType, dcss_name

log = logging.getLogger("mixedmap.s390x")

#: ``Region.owner`` of every DCSS region.
OWNER: Final = "extmem"
#: Holder name of references taken through the module functions (not a device).
USER: Final = "segment_load"
#: 2.6.26/2.6.27 64-bit ``VMEM_MAX_PHYS``: ``VMEM_MAX_PFN << 12`` rounded down to 16 MiB with
#: ``VMEM_MAX_PFN = min(VMALLOC_START >> 12, VMEM_MAX_PAGES)`` and ``VMALLOC_START =
#: VMALLOC_END - VMALLOC_SIZE = 0x3e000000000 - 128 GiB`` (``asm-s390/pgtable.h``,
#: ``arch/s390/mm/pgtable.c``; the ``vmalloc=`` boot option moves it).
VMEM_MAX_PHYS_26: Final = 0x3C000000000
#: 2.6.27's DIAGNOSE X'64' subcodes (``DCSS_LOADNOLY``, ``DCSS_SEGEXT``...) are 31-bit.
DIAG64_LIMIT_26: Final = 1 << 31
#: The release that rewrote extmem's checks (b2300b9efe1b: >2G DCSSs, overlap check).
_NEW_EXTMEM: Final = (2, 6, 28)
_MIB_SHIFT: Final = 20


def _new_extmem(machine: Machine) -> bool:
    return machine.profile.version >= _NEW_EXTMEM


@attrs.define(eq=False)
class LoadedSegment:
    """An entry of ``dcss_list``: a segment this guest has loaded."""

    defn: SegmentDef
    do_nonshared: bool
    region: str
    memmap: bool
    holders: Counter[str] = attrs.field(factory=Counter)
    #: Holders that asked for struct pages (6.18 dcssblk with DAX).
    page_holders: set[str] = attrs.field(factory=set)

    @property
    def ref_count(self) -> int:
        return sum(self.holders.values())

    @property
    def type(self) -> SegType:
        return self.defn.type


class Extmem:
    """One guest's ``dcss_list`` and the z/VM it talks to."""

    def __init__(self, machine: Machine) -> None:
        self._machine = weakref.ref(machine)
        self.zvm = ZVM()
        self.zvm._attach(self)
        self._pre_series = False
        self._loaded: dict[str, LoadedSegment] = {}
        #: Highest address + 1 the kernel mapping can reach (``-ERANGE`` beyond). 2.6.2x:
        #: ``VMEM_MAX_PHYS``. 6.18: ``max_mappable = min(max(ident_map_size, MAX_DCSS_ADDR),
        #: vmemmap_start)`` (``arch/s390/boot/startup.c``), taken as max(RAM, 512 GiB) capped
        #: at ``1 << MAX_PHYSMEM_BITS``. Settable, as the boot options that move it.
        self.max_mappable = (
            min(max(machine.ram_end, MAX_DCSS_ADDR), 1 << machine.mode.mode.memory.max_physmem_bits)
            if _new_extmem(machine)
            else VMEM_MAX_PHYS_26
        )

    @property
    def machine(self) -> Machine:
        m = self._machine()
        if m is None:  # pragma: no cover - the registry drops us with the machine
            raise ReferenceError("the machine of this extmem state is gone")
        return m

    # -- configuration ---------------------------------------------------------------------
    @property
    def pre_series(self) -> bool:
        """Whether loads create struct pages as <=2.6.25's ``add_shared_memory`` did."""
        return self._pre_series

    @pre_series.setter
    def pre_series(self, value: bool) -> None:
        value = bool(value)
        if value == self._pre_series:
            return
        m = self.machine
        if value and _new_extmem(m):
            raise EINVAL(
                f"pre_series models the <=2.6.25 DCSS struct pages on a 2.6.26/2.6.27 kernel; "
                f"this machine runs {m.profile}"
            )
        if self._loaded:
            raise EINVAL(
                f"cannot switch pre_series while DCSSs are loaded ({', '.join(self._loaded)}): "
                "a kernel has one segment layer"
            )
        self._pre_series = value

    def use_zvm(self, hv: ZVM) -> None:
        """Talk to another z/VM (to share its catalogue between machines)."""
        if self._loaded:
            raise EBUSY(f"DCSSs are loaded ({', '.join(self._loaded)}); unload them first")
        self.zvm = hv
        hv._attach(self)

    # -- state -----------------------------------------------------------------------------
    @property
    def loaded(self) -> Mapping[str, LoadedSegment]:
        return dict(self._loaded)

    def is_loaded(self, name: str) -> bool:
        return dcss_name(name) in self._loaded

    def get(self, name: str) -> LoadedSegment:
        """The loaded segment, or ``-EINVAL`` ("no segment with the given name is loaded")."""
        key = dcss_name(name)
        try:
            return self._loaded[key]
        except KeyError:
            raise EINVAL(f"DCSS {key} is not loaded (loaded: {', '.join(self._loaded) or 'none'})") from None

    # -- segment_type / segment_load -------------------------------------------------------
    def segment_type(self, name: str) -> SegType:
        """``segment_type``: the query alone (``-ENOENT``; 2.6.2x ``-EIO`` above 2 GiB)."""
        defn = self.zvm.query(name)
        self._check_diag(defn)
        return defn.type

    def load(
        self, name: str, do_nonshared: bool = False, *, holder: str = USER, struct_pages: bool = False
    ) -> tuple[SegType, int, int]:
        """``segment_load``: (type, start, end) with ``end`` the last byte.

        ``holder`` names who takes the reference (a device, or :data:`USER`);
        ``struct_pages`` asks for struct pages over the range (6.18 dcssblk's DAX pagemap).
        """
        key = dcss_name(name)
        seg = self._loaded.get(key)
        if seg is not None:
            if seg.do_nonshared != bool(do_nonshared):
                mode = "exclusive" if seg.do_nonshared else "shared"
                raise EPERM(f"DCSS {key} is already loaded in {mode} mode")
            if struct_pages and not seg.memmap:
                self._set_memmap(seg, True)
            seg.holders[holder] += 1
            if struct_pages:
                seg.page_holders.add(holder)
            return seg.type, seg.defn.start, seg.defn.end
        defn = self.zvm.query(key)
        self._check_diag(defn)
        if _new_extmem(self.machine):
            self._check_618(defn)
        else:
            self._check_26(defn)
        memmap = self._pre_series or struct_pages
        region = f"{defn.name} (DCSS)"
        if memmap:
            self._check_sections(defn, region)
        m = self.machine
        m.add_region(region, defn.start, defn.size, memmap=memmap, owner=OWNER)
        if memmap:
            self._init_reserved(defn)
        self._restore_image(defn)
        seg = LoadedSegment(defn=defn, do_nonshared=bool(do_nonshared), region=region, memmap=memmap)
        seg.holders[holder] = 1
        if struct_pages:
            seg.page_holders.add(holder)
        self._loaded[key] = seg
        log.info(
            "DCSS %s of range %#x to %#x and type %s loaded %s",
            key,
            defn.start,
            defn.end,
            defn.type.name,
            "as exclusive-writable" if do_nonshared else "in shared access mode",
        )
        return defn.type, defn.start, defn.end

    def _check_diag(self, defn: SegmentDef) -> None:
        if not _new_extmem(self.machine) and defn.end >= DIAG64_LIMIT_26:
            raise EIO(
                f"DCSS {defn.name} ends at {defn.end:#x}, above 2 GiB: {self.machine.profile} queries and "
                "loads with the 31-bit DIAGNOSE X'64' subcodes (>2G DCSSs arrived in 2.6.28)"
            )

    def _check_26(self, defn: SegmentDef) -> None:
        """``insert_memory_segment`` (ERANGE, then ENOSPC), then ``request_resource`` (EBUSY)."""
        if defn.end + 1 > self.max_mappable:
            raise ERANGE(
                f"DCSS {defn.name} ends at {defn.end:#x}, beyond the kernel mapping range "
                f"(VMEM_MAX_PHYS {self.max_mappable:#x})"
            )
        regions = list(self.machine.regions)
        for r in regions:
            if (r.kind == "ram" or r.owner == OWNER) and r.overlaps(defn.start, defn.size):
                what = "guest storage" if r.kind == "ram" else f"DCSS {r.name}"
                raise ENOSPC(
                    f"DCSS {defn.name} [{defn.start:#x}, {defn.end:#x}] overlaps {what} "
                    f"[{r.start:#x}, {r.end - 1:#x}]"
                )
        for r in regions:
            if r.overlaps(defn.start, defn.size):
                raise EBUSY(f"DCSS {defn.name} overlaps the memory resource {r.name!r}")

    def _check_618(self, defn: SegmentDef) -> None:
        """``segment_overlaps_others``, ``request_resource`` (both EBUSY), ERANGE."""
        for other in self._loaded.values():
            o = other.defn
            if (
                o.start >> _MIB_SHIFT > defn.end >> _MIB_SHIFT
                or o.end >> _MIB_SHIFT < defn.start >> _MIB_SHIFT
            ):
                continue
            raise EBUSY(
                f"DCSS {defn.name} [{defn.start:#x}, {defn.end:#x}] shares a megabyte with loaded "
                f"DCSS {o.name} [{o.start:#x}, {o.end:#x}]"
            )
        for r in self.machine.regions:
            if r.overlaps(defn.start, defn.size):
                raise EBUSY(
                    f"DCSS {defn.name} [{defn.start:#x}, {defn.end:#x}] needs memory of {r.name!r} "
                    f"[{r.start:#x}, {r.end - 1:#x}]"
                )
        if defn.end + 1 > self.max_mappable:
            raise ERANGE(
                f"DCSS {defn.name} ends at {defn.end:#x}, beyond the kernel mapping range "
                f"(max_mappable {self.max_mappable:#x})"
            )

    # -- segment_unload ----------------------------------------------------------------------
    def unload(self, name: str, *, holder: str = USER) -> None:
        """``segment_unload``: drop ``holder``'s reference; detach at zero.

        ``-EINVAL`` if not loaded, ``-EBUSY`` if ``holder`` holds no reference but others
        (a dcssblk device) do, or if struct pages of the segment are still in use.
        """
        self.check_unload(name, holder=holder)
        seg = self.get(name)
        key = seg.defn.name
        if seg.ref_count == 1:
            self._remove_region(seg.region)  # EBUSY if its pages are in use
            del self._loaded[key]
            log.info("DCSS %s unloaded", key)
            return
        if holder in seg.page_holders and seg.holders[holder] == 1:
            if self._drops_pages(seg, holder):
                try:
                    self._set_memmap(seg, False)
                except AddressError as exc:  # per-section memmap: keep the pages
                    log.warning("DCSS %s keeps its struct pages: %s", key, exc)
            seg.page_holders.discard(holder)
        seg.holders[holder] -= 1
        if not seg.holders[holder]:
            del seg.holders[holder]

    def check_unload(self, name: str, *, holder: str = USER) -> None:
        """Raise what :meth:`unload` would refuse with; changes nothing."""
        seg = self.get(name)
        key = seg.defn.name
        if seg.holders[holder] <= 0:
            users = ", ".join(f"{h} ({n})" for h, n in seg.holders.items())
            raise EBUSY(f"DCSS {key} is in use by {users}; {holder} holds no reference to drop")
        if seg.memmap and (seg.ref_count == 1 or self._drops_pages(seg, holder)):
            m = self.machine
            shift = m.fmt.page_shift
            pfns = np.arange(seg.defn.start >> shift, (seg.defn.end + 1) >> shift, dtype=np.uint64)
            row, col = m.memmap.rows(pfns)
            busy = (m.memmap.mapcount[row, col] > 0) | (m.memmap.refcount[row, col] > 1)
            if busy.any():
                raise EBUSY(f"DCSS {key}: page {int(pfns[busy][0]):#x} is still in use")

    def _drops_pages(self, seg: LoadedSegment, holder: str) -> bool:
        """Whether ``holder``'s last reference is the last claim on the segment's pages."""
        return (
            seg.memmap
            and not self._pre_series
            and seg.page_holders == {holder}
            and seg.holders[holder] == 1
            and seg.ref_count > 1
        )

    def holders(self, name: str) -> Mapping[str, int]:
        return dict(self.get(name).holders)

    # -- segment_modify_shared / segment_save ------------------------------------------------
    def modify_shared(self, name: str, do_nonshared: bool) -> bool:
        """``segment_modify_shared``: reload in the other mode; True if it was reloaded.

        Same mode: nothing to do. ``-EAGAIN`` while another user holds the segment. The
        reload purges the guest's copy: it reads as the saved image again.
        """
        seg = self.get(name)
        if seg.do_nonshared == bool(do_nonshared):
            return False
        if seg.ref_count != 1:
            raise EAGAIN(f"DCSS {seg.defn.name} is in use ({seg.ref_count} users) and cannot be reloaded")
        self.machine.mem.discard(seg.defn.start, seg.defn.size)
        self._restore_image(seg.defn)
        seg.do_nonshared = bool(do_nonshared)
        return True

    def save(self, name: str) -> str:
        """``segment_save``: DEFSEG + SAVESEG of this guest's copy; returns the DEFSEG command."""
        seg = self.get(name)
        defn = seg.defn
        pages = {
            (pa - defn.start) >> PAGE_SHIFT: bytes(block)
            for pa, block in self.machine.mem.blocks()
            if defn.start <= pa <= defn.end
        }
        self.zvm._saveseg(defn.name, pages)
        return defn.defseg

    # -- memory helpers ----------------------------------------------------------------------
    def _restore_image(self, defn: SegmentDef) -> None:
        mem = self.machine.mem
        for index, page in self.zvm.saved(defn.name).items():
            mem.write(defn.start + index * PAGE_SIZE, page)

    def _sections(self, start: int, end: int) -> tuple[int, int]:
        """[lo, hi) of the memory sections holding bytes start..end."""
        bits = self.machine.mode.mode.memory.section_size_bits
        return (start >> bits) << bits, ((end >> bits) + 1) << bits

    def _check_sections(self, defn: SegmentDef, own: str) -> None:
        """A DCSS with struct pages may share memory sections only with other such DCSSs."""
        m = self.machine
        lo, hi = self._sections(defn.start, defn.end)
        for r in m.regions:
            if r.name == own or (r.owner == OWNER and r.memmap) or not r.overlaps(lo, hi - lo):
                continue
            raise AddressError(
                f"DCSS {defn.name} with struct pages would share a {hi - lo:#x}-byte span of memory "
                f"sections with {r.name!r}; the model keeps a memmap per section and removing the "
                "segment would drop it for both: place the segment on its own sections"
            )

    def _remove_region(self, name: str) -> None:
        """``Machine.remove_region``, keeping the memmap of DCSSs that share its sections.

        The core drops the memmap of every section the region touches; other DCSS regions
        with struct pages in those sections get theirs back, page state included.
        """
        m = self.machine
        r = m.regions[name]
        shift = m.fmt.page_shift
        kept = []
        if r.memmap:
            lo, hi = self._sections(r.start, r.end - 1)
            for o in m.regions:
                if o.name != name and o.owner == OWNER and o.memmap and o.overlaps(lo, hi - lo):
                    pfns = np.arange(o.start >> shift, o.end >> shift, dtype=np.uint64)
                    row, col = m.memmap.rows(pfns)
                    arrays = ("refcount", "mapcount", "flags", "mapping", "index")
                    kept.append((pfns, {a: getattr(m.memmap, a)[row, col].copy() for a in arrays}))
        m.remove_region(name)  # EBUSY (pages in use) before anything changed
        for pfns, state in kept:
            m.memmap.add_sections(int(pfns[0]), int(pfns.size))
            row, col = m.memmap.rows(pfns)
            for a, values in state.items():
                getattr(m.memmap, a)[row, col] = values

    def _init_reserved(self, defn: SegmentDef) -> None:
        """Struct pages as ``add_shared_memory`` / ``memmap_init_zone_device`` leave them."""
        m = self.machine
        shift = m.fmt.page_shift
        pfns = np.arange(defn.start >> shift, (defn.end + 1) >> shift, dtype=np.uint64)
        mm = m.memmap
        row, col = mm.rows(pfns)
        mm.refcount[row, col] = 1
        mm.mapcount[row, col] = 0
        mm.flags[row, col] = int(PG.reserved)
        mm.mapping[row, col] = 0
        mm.index[row, col] = 0

    def _set_memmap(self, seg: LoadedSegment, memmap: bool) -> None:
        """Re-add the segment's region with or without struct pages, keeping its bytes."""
        m = self.machine
        defn = seg.defn
        if memmap:
            self._check_sections(defn, seg.region)
        blocks = [(pa, bytes(b)) for pa, b in m.mem.blocks() if defn.start <= pa <= defn.end]
        self._remove_region(seg.region)
        try:
            m.add_region(seg.region, defn.start, defn.size, memmap=memmap, owner=OWNER)
        except MixedmapError:
            m.add_region(seg.region, defn.start, defn.size, memmap=seg.memmap, owner=OWNER)
            if seg.memmap:
                self._init_reserved(defn)
            for pa, data in blocks:
                m.mem.write(pa, data)
            raise
        if memmap:
            self._init_reserved(defn)
        for pa, data in blocks:
            m.mem.write(pa, data)
        seg.memmap = memmap


_STATE: weakref.WeakKeyDictionary[Machine, Extmem] = weakref.WeakKeyDictionary()


def extmem(machine: Machine) -> Extmem:
    """The machine's segment layer (created on first use)."""
    if machine.arch != "s390x":
        raise EINVAL(f"DCSS segments exist on s390x only; this machine is {machine.arch}")
    state = _STATE.get(machine)
    if state is None:
        state = _STATE[machine] = Extmem(machine)
    return state


def zvm(machine: Machine) -> ZVM:
    """The z/VM the machine runs under: its saved-segment catalogue (CP DEFSEG)."""
    return extmem(machine).zvm


def attach_zvm(machine: Machine, hv: ZVM) -> None:
    """Run ``machine`` under ``hv`` (several machines can share one catalogue)."""
    extmem(machine).use_zvm(hv)


def segment_type(machine: Machine, name: str) -> SegType:
    return extmem(machine).segment_type(name)


def segment_load(machine: Machine, name: str, do_nonshared: bool = False) -> tuple[SegType, int, int]:
    """``segment_load(name, do_nonshared, &start, &end)``: (type, start, end), ``end`` inclusive."""
    return extmem(machine).load(name, do_nonshared)


def segment_unload(machine: Machine, name: str) -> None:
    """``segment_unload(name)``: drop a reference taken with :func:`segment_load`."""
    extmem(machine).unload(name)


def segment_modify_shared(machine: Machine, name: str, do_nonshared: bool) -> bool:
    return extmem(machine).modify_shared(name, do_nonshared)


def segment_save(machine: Machine, name: str) -> str:
    return extmem(machine).save(name)
