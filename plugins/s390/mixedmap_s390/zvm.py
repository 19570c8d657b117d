"""The z/VM side of DCSS: the saved-segment catalogue a guest's DIAGNOSE X'64' queries.

A discontiguous saved segment is defined by the z/VM administrator with CP ``DEFSEG name
hexpage1-hexpage2 type`` and written with ``SAVESEG name``; a Linux guest then attaches it
by name (``arch/s390/mm/extmem.c``). This module is that catalogue: :meth:`ZVM.define` is
DEFSEG, :meth:`ZVM.store` puts bytes into the saved image (what SAVESEG wrote), and
:meth:`ZVM.query` is what ``query_segment_type`` gets back: start, end (inclusive, the last
byte, as z/VM and extmem.c use it) and the page-descriptor type.

Facts kept here:

* names are 1 to 8 characters and compared upper-cased (``dcss_mkname`` upper-cases,
  blank-pads to 8 and converts to EBCDIC; a longer name is cut to its first 8 characters);
* type codes ``SEG_TYPE_SW``..``SEG_TYPE_SC`` = 0..6 (``asm/extmem.h``); first letter
  **S**\\ hared / **E**\\ xclusive (each guest gets its own copy), second letter **R**\\ ead-only,
  **W**\\ rite, **N** write with no data saved; ``SC`` is shared, read-only to the guest (CP
  may write). Multi-part segments (``SEG_TYPE_EWEN``) are not modelled: one range each;
* DEFSEG page numbers are at most ``0x7FFFFFF`` (CP Commands and Utilities Reference, quoted
  by 6.x ``asm/extmem.h`` as ``MAX_DCSS_ADDR = 512 GiB``).

Contents: the saved image is kept sparse (page index -> 4 KiB). A guest that loads the
segment gets the saved image in its memory; its writes stay in its memory until it saves
(``segment_save`` = DEFSEG + SAVESEG) -- N-type pages are never saved. One :class:`ZVM` may
serve several machines (:func:`mixedmap_s390.extmem.attach_zvm`); what is shared is the
catalogue and the saved images, not live pages: each guest's loaded copy is its own memory.
"""

from __future__ import annotations

import enum
import re
import weakref
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from mixedmap import EBUSY, EEXIST, EINVAL, ENOENT, AddressError, parse_size

if TYPE_CHECKING:
    from mixedmap_s390.extmem import Extmem

#: DCSS pages are 4 KiB whatever the guest does (DEFSEG counts 4 KiB pages).
PAGE_SHIFT: Final = 12
PAGE_SIZE: Final = 1 << PAGE_SHIFT
#: Highest page number CP DEFSEG accepts.
DEFSEG_MAX_PAGE: Final = 0x7FFFFFF
#: ``MAX_DCSS_ADDR`` (6.x ``asm/extmem.h``): one past the highest DCSS byte.
MAX_DCSS_ADDR: Final = (DEFSEG_MAX_PAGE + 1) << PAGE_SHIFT
#: Name length of a z/VM segment (``dcss_mkname`` handles 8 characters).
NAME_LEN: Final = 8

_NAME_RE = re.compile(r"[A-Z0-9@#$_.+-]{1,8}")


class SegType(enum.IntEnum):
    """``SEG_TYPE_*``: the value ``segment_load`` returns on success."""

    SW = 0
    EW = 1
    SR = 2
    ER = 3
    SN = 4
    EN = 5
    SC = 6

    @property
    def shared(self) -> bool:
        """First letter S: one copy for every guest (E: a private copy per guest)."""
        return self.name[0] == "S"

    @property
    def read_only(self) -> bool:
        """R (page-protected) and SC (written by CP only): dcssblk sets the disk read-only."""
        return self in (SegType.SR, SegType.ER, SegType.SC)

    @property
    def saves_data(self) -> bool:
        """N types are read/write with no data saved: SAVESEG keeps none of their pages."""
        return self not in (SegType.SN, SegType.EN)

    @classmethod
    def parse(cls, value: str | int | SegType) -> SegType:
        if isinstance(value, SegType):
            return value
        try:
            return cls(value) if isinstance(value, int) else cls[str(value).strip().upper()]
        except (KeyError, ValueError):
            kinds = ", ".join(t.name for t in cls)
            raise EINVAL(f"unknown DCSS type {value!r}; DEFSEG types are {kinds}") from None


def dcss_name(name: str) -> str:
    """The name as ``dcss_mkname`` compares it: upper-cased, cut to 8 characters."""
    return str(name).upper()[:NAME_LEN]


@attrs.frozen
class SegmentDef:
    """One DEFSEG: a named range of guest-absolute storage, ``end`` inclusive."""

    name: str
    start: int
    end: int
    type: SegType

    @property
    def size(self) -> int:
        return self.end - self.start + 1

    @property
    def pages(self) -> range:
        """DEFSEG page numbers (``start >> 12`` .. ``end >> 12``)."""
        return range(self.start >> PAGE_SHIFT, (self.end >> PAGE_SHIFT) + 1)

    @property
    def defseg(self) -> str:
        """The CP command ``segment_save`` issues: ``DEFSEG NAME 10000-4FFFF SR``."""
        return f"DEFSEG {self.name} {self.start >> PAGE_SHIFT:X}-{self.end >> PAGE_SHIFT:X} {self.type.name}"

    def overlaps(self, start: int, end: int) -> bool:
        """Whether [start, end] (inclusive) shares a byte with the segment."""
        return start <= self.end and self.start <= end


class ZVM:
    """A z/VM system's saved segments (definitions and saved images)."""

    def __init__(self) -> None:
        self._defs: dict[str, SegmentDef] = {}
        self._saved: dict[str, dict[int, bytes]] = {}
        self._guests: weakref.WeakSet[Extmem] = weakref.WeakSet()

    # -- DEFSEG / PURGE ------------------------------------------------------------------
    def define(
        self,
        name: str,
        start: int | str,
        end: int | str | None = None,
        type: str | int | SegType = SegType.SW,
        *,
        size: int | str | None = None,
    ) -> SegmentDef:
        """CP DEFSEG: ``name`` from ``start`` to ``end`` (the last byte) or of ``size`` bytes.

        Checked before anything changes: a 1..8 character name not yet defined, a known
        type, a page-aligned start and an end on the last byte of a page, at most DEFSEG's
        page ``0x7FFFFFF``.
        """
        key = str(name).upper()
        if not _NAME_RE.fullmatch(key):
            raise EINVAL(f"DCSS name {name!r}: 1 to 8 characters of A-Z 0-9 @#$_.+- (no blanks, no ':')")
        if key in self._defs:
            raise EEXIST(f"DCSS {key} is already defined ({self._defs[key].defseg})")
        kind = SegType.parse(type)
        first = parse_size(start)
        if (end is None) == (size is None):
            raise EINVAL(f"DCSS {key}: give exactly one of end (the last byte) and size")
        last = parse_size(end) if end is not None else first + parse_size(size or 0) - 1
        if first < 0 or first % PAGE_SIZE:
            raise AddressError(f"DCSS {key}: start {first:#x} is not 4 KiB aligned")
        if last < first or (last + 1) % PAGE_SIZE:
            raise AddressError(
                f"DCSS {key}: end {last:#x} must be the last byte of a 4 KiB page at or after {first:#x}"
            )
        if last >> PAGE_SHIFT > DEFSEG_MAX_PAGE:
            raise AddressError(
                f"DCSS {key}: page {last >> PAGE_SHIFT:#x} is beyond DEFSEG's limit {DEFSEG_MAX_PAGE:#x} "
                f"({MAX_DCSS_ADDR >> 30} GiB)"
            )
        seg = SegmentDef(name=key, start=first, end=last, type=kind)
        self._defs[key] = seg
        self._saved[key] = {}
        return seg

    def purge(self, name: str) -> None:
        """CP PURGE NSS: drop a definition and its saved image (no guest may have it loaded)."""
        seg = self.query(name)
        users = [g for g in self._guests if g.is_loaded(seg.name)]
        if users:
            raise EBUSY(f"DCSS {seg.name} is loaded by a guest; unload it first")
        del self._defs[seg.name]
        del self._saved[seg.name]

    # -- queries -------------------------------------------------------------------------
    def query(self, name: str) -> SegmentDef:
        """DIAGNOSE X'64' query: the definition, or ``-ENOENT`` (z/VM rc 44)."""
        key = dcss_name(name)
        try:
            return self._defs[key]
        except KeyError:
            known = ", ".join(self._defs) or "none"
            raise ENOENT(f"no DCSS named {key} is defined on this z/VM (defined: {known})") from None

    def get(self, name: str) -> SegmentDef | None:
        return self._defs.get(dcss_name(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and dcss_name(name) in self._defs

    def __iter__(self) -> Iterator[SegmentDef]:
        return iter(sorted(self._defs.values(), key=lambda s: s.start))

    # -- saved images --------------------------------------------------------------------
    def store(self, name: str, data: bytes | str | Path, offset: int = 0) -> int:
        """Put bytes into a segment's saved image (as a SAVESEG of a prepared image did).

        Guests that have the segment loaded keep the copy they got; the next load sees
        the new image. N-type segments keep no data: refused with ``-EINVAL``.
        """
        seg = self.query(name)
        if not seg.type.saves_data:
            raise EINVAL(f"DCSS {seg.name} is of type {seg.type.name}: no data is saved for it")
        blob = Path(data).read_bytes() if isinstance(data, (str, Path)) else bytes(data)
        if offset < 0 or offset + len(blob) > seg.size:
            raise AddressError(
                f"DCSS {seg.name}: [{offset:#x}, {offset + len(blob):#x}) is outside the segment "
                f"({seg.size:#x} bytes)"
            )
        image = self._saved[seg.name]
        pos = 0
        while pos < len(blob):
            index, off = divmod(offset + pos, PAGE_SIZE)
            n = min(len(blob) - pos, PAGE_SIZE - off)
            page = bytearray(image.get(index, bytes(PAGE_SIZE)))
            page[off : off + n] = blob[pos : pos + n]
            _put(image, index, bytes(page))
            pos += n
        return len(blob)

    def saved(self, name: str) -> Mapping[int, bytes]:
        """The saved image: page index -> 4 KiB, pages of zeros left out."""
        return dict(self._saved[self.query(name).name])

    def read_saved(self, name: str, offset: int, length: int) -> bytes:
        """Bytes of the saved image (zeros where nothing was saved)."""
        seg = self.query(name)
        if offset < 0 or length < 0 or offset + length > seg.size:
            raise AddressError(f"DCSS {seg.name}: [{offset:#x}, {offset + length:#x}) is outside the segment")
        image = self._saved[seg.name]
        out = bytearray()
        while length > 0:
            index, off = divmod(offset, PAGE_SIZE)
            n = min(length, PAGE_SIZE - off)
            out += image.get(index, bytes(PAGE_SIZE))[off : off + n]
            offset, length = offset + n, length - n
        return bytes(out)

    def _saveseg(self, name: str, pages: Mapping[int, bytes]) -> None:
        """SAVESEG: the guest's current copy becomes the saved image (N types: nothing)."""
        seg = self.query(name)
        image: dict[int, bytes] = {}
        if seg.type.saves_data:
            for index, page in pages.items():
                _put(image, index, page)
        self._saved[seg.name] = image

    def _attach(self, guest: Extmem) -> None:
        self._guests.add(guest)


def _put(image: dict[int, bytes], index: int, page: bytes) -> None:
    if any(page):
        image[index] = page
    else:
        image.pop(index, None)
