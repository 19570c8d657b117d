"""``dcssblk``: the s390 block driver over loaded DCSS segments (``drivers/s390/block/dcssblk.c``).

Writing a segment name to ``/sys/devices/dcssblk/add`` creates a disk ``dcssblk<minor>``
(first free minor, one minor per disk, 4 KiB hardware sectors) over the segment, which the
driver always loads **shared** (``segment_load(name, SEGMENT_SHARED, ...)``); here that is
``machine.create_xip_device("dcssblk", segment=NAME)``. The disk is read-only for SR, ER and
SC segments while shared. Per-device sysfs: ``shared`` (0/1 -> ``segment_modify_shared``,
refused with ``-EBUSY`` while the disk is open; SC cannot go exclusive, ``-EINVAL``), ``save``
(``segment_save`` now if idle, else pending until the last close; ``0`` cancels) and, in 6.18,
``seglist``. ``remove`` (:meth:`DcssBlkDevice.release`) is ``-EBUSY`` while open and unloads
the segments.

2.6.26/2.6.27: one segment per device (a name of 1..8 characters, else ``-ENAMETOOLONG``;
``-EEXIST`` if a device already has it). ``direct_access(bdev, secnum, &kaddr, &pfn)``:
``secnum`` not a multiple of 8 -> ``-EINVAL``; a page beyond the segment -> ``-ERANGE``;
``kaddr = start + pgoff * 4096`` -- the kernel identity mapping is 1:1 (``__pa(x) == x``), so
that is also the physical address -- and ``pfn = virt_to_phys(kaddr) >> 12``. The frames
have no struct page (2.6.26 on), so ``vm_insert_mixed`` makes special PTEs.

6.18: ``SEG1:SEG2:...`` spans physically contiguous segments of one type (EW and EN may be
mixed), ``-EINVAL`` otherwise; XIP is fs-dax: ``dax_direct_access(pgoff, nr_pages)`` gives
``kaddr = __va(start + off)`` (``__identity_base`` + phys; 0 unless
``CONFIG_RANDOMIZE_IDENTITY_BASE``), ``pfn`` and the pages left. With DAX (``dax``, default
on) and ``start``/``end + 1`` aligned to 2 MiB (``SUBSECTION_SIZE``) the driver registers a
``MEMORY_DEVICE_FS_DAX`` pagemap: struct pages exist (``PG_reserved``, refcount 1) and
``pfn_valid`` is true; otherwise the device has no DAX and ``direct_access`` is
``-EOPNOTSUPP`` (``dax_direct_access`` without a ``dax_dev``). [The 6.18 pagemap code is from
the project reference, section 6.2; the index only showed the 6.15-6.17 form, where
``DCSSBLK_DAX`` depended on BROKEN.] The disk declares DAX through the public contract
(:attr:`DcssBlkDevice.dax`; ``dax_synchronous``: ``set_dax_synchronous`` is called on its
dax_device), so a 6.18 mount on it is ext4 ``-o dax`` and its pages are mapped as refcounted
ZONE_DEVICE folios (``mixedmap.xip.dax``; the model keeps the machine's idle reference of 1
where 6.18 fsdax idles at 0); without the pagemap ``-o dax`` is -EINVAL.

Optional ``start``/``size`` (or ``end``)/``type`` define the segment on the machine's z/VM
first (CP DEFSEG, rolled back if the add fails); ``pre_series=True`` (2.6.26/2.6.27) runs the
machine's segment layer as <=2.6.25 did, with struct pages for every loaded DCSS (see
:mod:`mixedmap_s390.extmem`): 64 bytes of memmap per 4 KiB, 16 MiB for 1 GiB, against 0.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

import attrs

from mixedmap import (
    EBUSY,
    EEXIST,
    EINVAL,
    ENOSYS,
    ERANGE,
    EROFS,
    Machine,
    RangeDevice,
    VMBug,
    XipDriverModel,
    parse_size,
)
from mixedmap_s390.extmem import Extmem, extmem
from mixedmap_s390.kerrno import EAGAIN, ENAMETOOLONG, EOPNOTSUPP
from mixedmap_s390.zvm import NAME_LEN, SegmentDef, SegType

log = logging.getLogger("mixedmap.s390x")

DRIVER: Final = "dcssblk"
PROFILES: Final = ("2.6.26", "2.6.27", "6.18")
#: ``SUBSECTION_SIZE``: the alignment 6.18's pagemap needs.
SUBSECTION_SIZE: Final = 2 << 20
#: ``DCSSBLK_MINORS_PER_DISK``: no partitions.
MINORS_PER_DISK: Final = 1

PARAMS: Final = (
    ("segment", "DCSS name; 6.18 also SEG1:SEG2:... (contiguous)"),
    ("name", "device name (default dcssblk<first free minor>)"),
    ("start", "define the segment first (CP DEFSEG): start address, e.g. 256M"),
    ("size", "... its size, e.g. 1G (or end: the last byte)"),
    ("end", "... its last byte (inclusive, as z/VM counts)"),
    ("type", "... its type SW EW SR ER SN EN SC (default SR)"),
    ("pre_series", "2.6.26/2.6.27: struct pages for DCSS as <=2.6.25 had (default false)"),
    ("dax", "6.18: CONFIG_DCSSBLK_DAX (default true; pages only when 2 MiB aligned)"),
    ("identity_base", "6.18: __identity_base added to kaddr (default 0)"),
)


def _modern(machine: Machine) -> bool:
    return machine.profile.version >= (2, 6, 28)


@attrs.frozen
class SegmentInfo:
    """``struct segment_info``: one segment of a device, as ``segment_load`` returned it."""

    name: str
    start: int
    end: int
    type: SegType


class DcssBlkDevice(RangeDevice):
    """A dcssblk disk: one segment (2.6.2x) or contiguous segments (6.18)."""

    driver = DRIVER

    def __init__(
        self,
        machine: Machine,
        name: str,
        minor: int,
        segments: tuple[SegmentInfo, ...],
        *,
        dax: bool | None,
        dax_pages: bool,
        kaddr_base: int,
    ) -> None:
        start = min(s.start for s in segments)
        end = max(s.end for s in segments)
        first = segments[0]
        super().__init__(machine, name, start, end - start + 1, first.type.read_only, kaddr_base)
        self.minor = minor
        self.segments = segments
        #: ``dev_info->segment_name``: the first segment's name (the sysfs device name).
        self.segment_name = first.name
        #: ``dev_info->segment_type``: the first segment's type.
        self.segment_type = first.type
        self.is_shared = True
        self.save_pending = False
        self.use_count = 0
        #: 6.18 ``CONFIG_DCSSBLK_DAX`` (None under 2.6.2x: the 2008 direct_access is always there).
        self.dax_option = dax
        #: Whether the device has a DAX pagemap (6.18): struct pages and direct_access.
        self.dax_pages = dax_pages
        self._released = False

    # -- the contract ---------------------------------------------------------------------
    @property
    def dax(self) -> bool:
        """fs-dax can use the disk: 6.18 with the DAX pagemap (``MEMORY_DEVICE_FS_DAX`` struct
        pages). 2.6.2x has no dax_device at all (filemap_xip calls direct_access instead)."""
        return _modern(self.machine) and self.dax_pages and not self._released

    @property
    def dax_synchronous(self) -> bool:
        """``dcssblk_add_store`` calls ``set_dax_synchronous`` on its dax_device: MAP_SYNC is
        allowed wherever the disk has DAX."""
        return self.dax

    def direct_access(self, sector: int) -> tuple[int, int]:
        """(kaddr, pfn) of the page at ``sector``: ``-EINVAL`` unaligned, ``-ERANGE`` beyond."""
        self._alive()
        if _modern(self.machine) and not self.dax_pages:
            raise EOPNOTSUPP(self._no_dax())
        return super().direct_access(sector)

    def dax_direct_access(self, pgoff: int, nr_pages: int) -> tuple[int, int, int]:
        """6.18 ``dax_direct_access``: (kaddr, pfn, pages available from ``pgoff``).

        ``nr_pages < 0`` is ``-EINVAL``, a device without DAX ``-EOPNOTSUPP``, no page left
        ``-ERANGE``; the answer is clamped to ``nr_pages``. (dcssblk's own ``(dev_sz -
        offset) / PAGE_SIZE`` would wrap for a ``pgoff`` past the end; fs-dax never asks.)
        """
        self._alive()
        if not _modern(self.machine):
            raise ENOSYS(
                f"{self.name}: {self.machine.profile} has no dax_device; XIP uses the block "
                "device's direct_access(bdev, sector, &kaddr, &pfn)"
            )
        if not self.dax_pages:
            raise EOPNOTSUPP(self._no_dax())
        if nr_pages < 0:
            raise EINVAL(f"{self.name}: nr_pages {nr_pages} < 0")
        ps = self.machine.page_size
        pages = self.size // ps
        if pgoff < 0 or pgoff >= pages:
            raise ERANGE(f"{self.name}: page {pgoff} is beyond the device ({pages} pages)")
        offset = pgoff * ps
        avail = pages - pgoff
        return (
            self.kaddr_base + offset,
            (self.start + offset) >> self.machine.fmt.page_shift,
            min(avail, nr_pages),
        )

    def _no_dax(self) -> str:
        why = (
            "CONFIG_DCSSBLK_DAX is off"
            if not self.dax_option
            else f"[{self.start:#x}, {self.start + self.size:#x}) is not 2 MiB (SUBSECTION_SIZE) aligned"
        )
        return f"{self.name}: no DAX on this device ({why}), so no direct_access"

    # -- contents -------------------------------------------------------------------------
    def fill(self, data: bytes | str | Path, offset: int = 0) -> int:
        """Load an image: into the guest's copy and, as SAVESEG did, the saved segment.

        N-type segments save no data: their part stays in the guest's copy only.
        """
        self._alive()
        n = super().fill(data, offset)
        lo, hi = self.start + offset, self.start + offset + n
        ext = self._ext()
        for seg in self.segments:
            a, b = max(lo, seg.start), min(hi, seg.end + 1)
            if a < b and seg.type.saves_data:
                ext.zvm.store(seg.name, self.machine.mem.read(a, b - a), a - seg.start)
        return n

    def read(self, offset: int, length: int) -> bytes:
        self._alive()
        return super().read(offset, length)

    def write(self, offset: int, data: bytes) -> None:
        """A bio write: the guest's copy only (``-EROFS`` while read-only); :meth:`save` keeps it."""
        self._alive()
        if self.read_only:
            raise EROFS(
                f"{self.name}: DCSS {self.segment_name} ({self.segment_type.name}) is read-only while shared"
            )
        RangeDevice.fill(self, data, offset)

    # -- sysfs: open/close, shared, save, remove ------------------------------------------
    def open(self) -> None:
        """``dcssblk_open``: the disk is in use (mounted): shared/remove give ``-EBUSY``."""
        self._alive()
        self.use_count += 1

    def close(self) -> None:
        """``dcssblk_release``: the last close runs a pending save."""
        self._alive()
        if self.use_count <= 0:
            raise VMBug(f"{self.name}: close without open (use_count {self.use_count})")
        self.use_count -= 1
        if self.use_count == 0 and self.save_pending:
            log.info("Device %s has become idle and is being saved now", self.segment_name)
            self._save_now()
            self.save_pending = False

    @property
    def shared(self) -> bool:
        """sysfs ``shared``: 1 while the segments are loaded shared."""
        return self.is_shared

    def set_shared(self, shared: bool) -> bool:
        """sysfs ``shared`` store; True if the segments were reloaded.

        Reloading purges this guest's copy: it reads as the saved segment again. A
        segment with other users answers ``-EAGAIN``, which the driver ignores: 2.6.27 then
        leaves the device as it was, 6.18 flips ``is_shared`` and the read-only flag anyway.
        """
        self._alive()
        if self.use_count:
            raise EBUSY(f"{self.name}: segment {self.segment_name} is busy (open {self.use_count} times)")
        if not shared and self.segment_type == SegType.SC:
            raise EINVAL(f"DCSS {self.segment_name} is of type SC and cannot be loaded as exclusive-writable")
        ext = self._ext()
        reloaded = False
        for seg in self.segments:
            try:
                reloaded |= ext.modify_shared(seg.name, not shared)
            except EAGAIN as exc:
                log.warning("%s", exc)
                if not _modern(self.machine):
                    return False
            except EINVAL as exc:  # the driver's BUG_ON(rc == -EINVAL)
                raise VMBug(f"{self.name}: {exc}") from exc
        self.is_shared = bool(shared)
        self.read_only = self.is_shared and self.segment_type.read_only
        return reloaded

    def save(self) -> bool:
        """sysfs ``save`` "1": save now when idle (True), else when the last user closes."""
        self._alive()
        if self.use_count == 0:
            self._save_now()
            return True
        log.info("Device %s is in use, its DCSSs will be saved when it becomes idle", self.segment_name)
        self.save_pending = True
        return False

    def cancel_save(self) -> bool:
        """sysfs ``save`` "0": drop a pending save; True if one was pending."""
        self._alive()
        was = self.save_pending
        self.save_pending = False
        return was

    def _save_now(self) -> None:
        ext = self._ext()
        for seg in self.segments:
            if _modern(self.machine) and not seg.type.saves_data:
                log.warning("DCSS %s is of type SN or EN and cannot be saved", seg.name)
                continue
            ext.save(seg.name)

    def release(self) -> None:
        """sysfs ``remove``: ``-EBUSY`` while open; unloads every segment of the device."""
        if self._released:
            return
        if self.use_count:
            raise EBUSY(f"{self.name}: device {self.segment_name} cannot be removed while it is in use")
        ext = self._ext()
        for seg in self.segments:  # what unload would refuse, before anything changes
            ext.check_unload(seg.name, holder=self.name)
        for seg in self.segments:
            ext.unload(seg.name, holder=self.name)
        self._released = True

    # -- helpers --------------------------------------------------------------------------
    def _ext(self) -> Extmem:
        return extmem(self.machine)

    def _alive(self) -> None:
        if self._released:
            raise EINVAL(f"{self.name} has been removed")

    @property
    def access(self) -> str:
        return "shared" if self.is_shared else "exclusive"

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out.update(
            {
                "segment": ":".join(s.name for s in self.segments),
                "type": self.segment_type.name,
                "access": self.access,
                "shared": self.is_shared,
                "segments": [
                    {"name": s.name, "type": s.type.name, "start": s.start, "end": s.end}
                    for s in self.segments
                ],
                "minor": self.minor,
                "kaddr_base": self.kaddr_base,
                "open_count": self.use_count,
                "save_pending": self.save_pending,
                "pre_series": self._ext().pre_series,
                "dax": self.dax_option,
                "dax_pages": self.dax_pages,
            }
        )
        return out


def _aligned(start: int, size: int) -> bool:
    return start % SUBSECTION_SIZE == 0 and (start + size) % SUBSECTION_SIZE == 0


# -- sysfs add ------------------------------------------------------------------------------
def _names(machine: Machine, segment: object) -> list[str]:
    """Parse what was written to ``add`` (input ends at a newline)."""
    text = str(segment).split("\n", 1)[0]
    if not _modern(machine):
        if not 1 <= len(text) <= NAME_LEN:
            raise ENAMETOOLONG(f"segment name {text!r}: 1 to {NAME_LEN} characters")
        return [text.upper()]
    parts = text.split(":")
    for p in parts:
        if not 1 <= len(p) <= NAME_LEN:
            raise ENAMETOOLONG(
                f"segment list {text!r}: each name 1 to {NAME_LEN} characters, no empty or trailing ':'"
            )
    return [p.upper() for p in parts]


def _pages_fit(ext: Extmem, names: list[str]) -> bool:
    """Whether the device range will be 2 MiB aligned (known from the definitions)."""
    defs = [ext.zvm.get(n) for n in names]
    known = [d for d in defs if d is not None]
    if len(known) != len(defs):
        return False  # the load reports the unknown name
    start = min(d.start for d in known)
    return _aligned(start, max(d.end for d in known) + 1 - start)


def _continuous(segments: list[SegmentInfo]) -> None:
    """6.18 ``dcssblk_is_continuous``: adjacent, and one type (EW/EN may mix)."""
    order = sorted(segments, key=lambda s: s.start)
    for a, b in itertools.pairwise(order):
        if a.end + 1 != b.start:
            raise EINVAL(f"Adjacent DCSSs {a.name} and {b.name} are not contiguous")
        if a.type != b.type and not (
            a.type & 1 and a.type != SegType.ER and b.type & 1 and b.type != SegType.ER
        ):
            raise EINVAL(f"DCSS {a.name} and DCSS {b.name} have incompatible types")


def _define_inline(ext: Extmem, names: list[str], params: dict[str, Any]) -> SegmentDef | None:
    """DEFSEG from ``start``/``size``/``end``/``type``; returns the new definition (to undo)."""
    given = {k: params[k] for k in ("start", "size", "end", "type") if params.get(k) is not None}
    if not given:
        return None
    if len(names) != 1:
        raise EINVAL("start/size/end/type define one segment; define the parts of a list separately")
    name = names[0]
    have = ext.zvm.get(name)
    if have is None:
        if "start" not in given:
            raise EINVAL(f"DCSS {name} is not defined: give start and size (or end) to define it")
        return ext.zvm.define(
            name, given["start"], given.get("end"), given.get("type", "SR"), size=given.get("size")
        )
    want_type = SegType.parse(given["type"]) if "type" in given else have.type
    want_start = parse_size(given["start"]) if "start" in given else have.start
    if "end" in given:
        want_end = parse_size(given["end"])
    elif "size" in given:
        want_end = want_start + parse_size(given["size"]) - 1
    else:
        want_end = have.end
    if (want_start, want_end, want_type) != (have.start, have.end, have.type):
        raise EEXIST(f"DCSS {name} is already defined differently ({have.defseg})")
    return None


def image_params(machine: Machine, size: int) -> dict[str, Any]:
    """A shared read-only segment (type SR) holding an image of ``size`` bytes, defined inline
    (CP DEFSEG) at the first memory section above guest storage: a 1 GiB image starts at
    256 MiB on a 256 MiB guest and ends below 2 GiB, as 2.6.2x's 31-bit DIAGNOSE X'64' needs."""
    sec = 1 << machine.mode.mode.memory.section_size_bits
    start = -(-machine.ram_end // sec) * sec
    return {"segment": "GUESTIMG", "start": start, "size": size, "type": "SR"}


def create(machine: Machine, **params: Any) -> DcssBlkDevice:
    """sysfs ``add``: load the segment(s) shared and make the disk."""
    unknown = sorted(set(params) - {k for k, _ in PARAMS})
    if unknown:
        raise EINVAL(
            f"dcssblk: unknown parameter(s) {', '.join(unknown)}; known: {', '.join(k for k, _ in PARAMS)}"
        )
    if params.get("segment") is None:
        raise EINVAL("dcssblk: segment=NAME is required (the DCSS to add)")
    modern = _modern(machine)
    names = _names(machine, params["segment"])
    dax = params.get("dax")
    if not modern and dax is False:
        raise EINVAL(f"{machine.profile}: dcssblk always has direct_access; dax is a 6.18 option")
    identity_base = parse_size(params.get("identity_base") or 0)
    if identity_base and not modern:
        raise EINVAL(f"{machine.profile}: the kernel mapping is 1:1; identity_base is a 6.18 option")
    pre_series = params.get("pre_series")
    ext = extmem(machine)
    devices = [d for d in machine.devices.values() if isinstance(d, DcssBlkDevice)]
    minor = next(i for i in range(len(devices) + 1) if i not in {d.minor for d in devices})
    name = str(params.get("name") or f"dcssblk{minor}")
    if name in machine.devices:
        raise EEXIST(f"a device named {name!r} already exists")

    defined = _define_inline(ext, names, params)
    old_pre = ext.pre_series
    loaded: list[str] = []
    try:
        if pre_series is not None:
            ext.pre_series = bool(pre_series)
        want_pages = modern and dax is not False and _pages_fit(ext, names)
        infos: list[SegmentInfo] = []
        held = {s.name: d.name for d in devices for s in d.segments}
        for n in names:
            if n in held:
                raise EEXIST(f"DCSS {n} is already added (device {held[n]})")
            kind, start, end = ext.load(n, False, holder=name, struct_pages=want_pages)
            loaded.append(n)
            infos.append(SegmentInfo(name=n, start=start, end=end, type=kind))
        if modern:
            _continuous(infos)
        device = DcssBlkDevice(
            machine,
            name,
            minor,
            tuple(infos),
            dax=(dax is not False) if modern else None,
            dax_pages=want_pages,
            kaddr_base=min(i.start for i in infos) + identity_base,
        )
    except Exception:
        for n in reversed(loaded):
            ext.unload(n, holder=name)
        ext.pre_series = old_pre
        if defined is not None:
            ext.zvm.purge(defined.name)
        raise
    log.info(
        "Loaded %s with total size %d bytes and capacity %d sectors",
        device.segment_name,
        device.size,
        device.nr_sectors,
    )
    return device


def drivers() -> Iterable[XipDriverModel]:
    yield XipDriverModel(
        name=DRIVER,
        description=(
            "s390 DCSS block device: z/VM saved segments above guest storage, loaded shared; "
            "no struct pages from 2.6.26 on (pre_series=true for the <=2.6.25 memmap), "
            "6.18 fs-dax pages when 2 MiB aligned"
        ),
        profiles=PROFILES,
        params=PARAMS,
        example=(("segment", "CONFTEST"), ("start", "1G"), ("size", "64M"), ("type", "SW")),
        create=create,
        image_params=image_params,
        pre_series=(("pre_series", True),),
    )
