"""Shared helpers for the XIP filesystem / filemap_xip tests.

Arch cases: one representative (the default) mode per arch and kernel profile, 2.6.26 and
2.6.27 only (the profiles ``mm/filemap_xip.c`` rules are written for). Devices: a generic
:class:`RangeDevice` over a physical region without struct pages ("nopage") or with them
("page"), and each arch's own XIP driver model where it is installed (x86 ``brd``, ppc64
``axonram``, s390 ``dcssblk``). Every rig is torn down the same way: exit every mm, release
the sparse page, remove the device, and check that no RAM page and no page-table byte is left.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import numpy as np

from mixedmap import VM, Machine, RangeDevice, XipDevice, XipFS
from mixedmap.mm import rmap
from mixedmap.mm.memory import vm_normal_page, vm_normal_pages
from mixedmap.mm.mm import MM
from mixedmap.xip import filemap
from mixedmap.xip.fs import Inode
from tests.conftest import CASES, Case

PROFILES_2008 = ("2.6.26", "2.6.27")

#: One representative mode per (arch, profile): the default one.
XIP_CASES: list[Case] = [c for c in CASES if c.mode.default and c.mode.profile in PROFILES_2008]

RAM = "64M"
#: Physical start of a generic device: section aligned on every arch (s390 sections are 256 MiB),
#: so a region without struct pages never shares a section with one that has them.
DEV_START = 1 << 30
DEV_SIZE = 1 << 20
GENERIC = ("nopage", "page")

#: How each arch driver model is created here (drivers not listed are not exercised).
DRIVER_PARAMS: dict[str, Callable[[bool, int], dict[str, Any]]] = {
    "brd": lambda ro, size: {"size": size},
    "axonram": lambda ro, size: {"size": size},
    # SW: shared-writable segment (writable disk); SR: read-only while shared.
    "dcssblk": lambda ro, size: {
        "segment": "XIPIMG",
        "start": "256M",
        "size": size,
        "type": "SR" if ro else "SW",
    },
}


#: Whether a driver's frames have struct pages (2.6.26/2.6.27): brd yes (RAM), the others no.
DRIVER_STRUCT_PAGE = {"nopage": False, "page": True, "brd": True, "axonram": False, "dcssblk": False}


def cases_of(profile: str) -> list[Case]:
    return [c for c in XIP_CASES if c.mode.profile == profile]


def case_ids(cases: Iterable[Case]) -> list[str]:
    return [c.id for c in cases]


@functools.cache
def arch_drivers(case: Case) -> list[str]:
    """The arch's XIP drivers that this suite knows how to create, under the case's profile."""
    m = case.machine(ram=RAM)
    return [d for d in m.xip_drivers() if d in DRIVER_PARAMS]


def kinds_of(case: Case, struct_page: bool | None = None) -> list[str]:
    """Device kinds to run on ``case``: the generic ones plus the arch's drivers.

    ``struct_page`` filters on whether the device's frames have struct pages.
    """
    kinds = [*GENERIC, *arch_drivers(case)]
    if struct_page is None:
        return kinds
    return [k for k in kinds if DRIVER_STRUCT_PAGE[k] == struct_page]


def pattern(nbytes: int, seed: int) -> bytes:
    """Deterministic bytes, never zero (so a hole or a zeroed tail is always visible)."""
    rng = np.random.default_rng(seed)
    return bytes(rng.integers(1, 256, size=nbytes, dtype=np.uint8).tobytes())


@attrs.define
class Rig:
    """One machine with one XIP device and a filesystem on it."""

    case: Case
    kind: str
    m: Machine
    dev: XipDevice
    fs: XipFS
    generic: bool

    @property
    def ps(self) -> int:
        return self.m.page_size

    @property
    def has_special(self) -> bool:
        return bool(self.m.mode.has_special)

    @property
    def data_normal(self) -> bool:
        """Whether vm_insert_mixed maps the device's frames as refcounted normal pages."""
        return not self.has_special and self.dev.has_struct_page

    def label(self) -> str:
        return f"{self.case.id}/{self.kind}"


def make_rig(case: Case, kind: str, *, read_only: bool = False, size: int = DEV_SIZE) -> Rig:
    """A machine of ``case`` with a ``kind`` device and an XIP filesystem on it.

    ``read_only`` makes the device read-only where the driver can (generic devices, DCSS
    type SR); brd and axonram disks are always writable, so their filesystem is mounted
    read-only instead.
    """
    m = case.machine(ram=RAM)
    generic = kind in GENERIC
    if generic:
        m.add_region("xipdev", DEV_START, size, memmap=kind == "page")
        dev: XipDevice = RangeDevice(m, "xipdev", DEV_START, size, read_only=read_only, kaddr_base=DEV_START)
    else:
        dev = m.create_xip_device(kind, **DRIVER_PARAMS[kind](read_only, size))
    assert dev.has_struct_page == DRIVER_STRUCT_PAGE[kind]
    fs = XipFS(dev, read_only=True if read_only else None)
    assert fs.read_only == read_only
    return Rig(case=case, kind=kind, m=m, dev=dev, fs=fs, generic=generic)


def teardown(rig: Rig) -> None:
    """Exit every mm, release the sparse page and the device; nothing may be left over."""
    m = rig.m
    for mm in list(m.mms):
        mm.exit()
    assert m.mms == []
    assert m.pagetable_bytes() == 0
    filemap.release_sparse_page(m)
    if rig.generic:
        m.remove_region(rig.dev.name)  # EBUSY if a device struct page is still mapped/referenced
    else:
        m.remove_xip_device(rig.dev.name)  # brd: EBUSY if a page still has another reference
    assert m.pages.leaks() == {}, rig.label()


# -- inspection ----------------------------------------------------------------------------------
@attrs.frozen
class PteView:
    """What one user address maps: pfn, writable/dirty, special bit, vm_normal_page."""

    pfn: int
    write: bool
    dirty: bool
    special: bool
    normal: int | None


def pte(mm: MM, va: int) -> PteView | None:
    """The PTE at ``va`` (None when not present), classified like the kernel does."""
    leaf = mm.pt.lookup(va)
    if leaf is None:
        return None
    vma = mm.find_vma(va)
    assert vma is not None
    value = leaf.value
    return PteView(
        pfn=leaf.pfn,
        write=bool(mm.ops.pte_write(value)),
        dirty=bool(mm.ops.pte_dirty(value)),
        special=mm.pte_special_one(value),
        normal=vm_normal_page(vma, va - va % mm.page_size, value),
    )


def counts(m: Machine, pfn: int) -> tuple[int, int]:
    """(refcount, mapcount) of a page with a struct page."""
    info = m.page(pfn)
    assert info is not None, f"pfn {pfn:#x} has no struct page"
    return info.refcount, info.mapcount


def block_pfn(inode: Inode, pgoff: int) -> int:
    """The frame holding file page ``pgoff`` (get_xip_mem without create)."""
    return filemap.get_xip_mem(inode, pgoff, create=False)[1]


def check_invariants(m: Machine) -> None:
    """Invariants 3, 4, 5, 6, 7 of the reference over every mm of the machine.

    Special PTEs only in MIXEDMAP/PFNMAP VMAs; RSS = normal present PTEs by type; the
    mapcount of every struct page = normal PTEs mapping it; refcount >= mapcount.
    """
    mapped: Counter[int] = Counter()
    for mm in m.mms:
        rss = {"file": 0, "anon": 0}
        for vma in mm.vmas:
            vas, ptes, reach = mm.pt.range_ptes(vma.start, vma.npages)
            present = reach & np.asarray(mm.ops.pte_present(ptes), dtype=np.bool_)
            if not present.any():
                continue
            if mm.has_special and mm.mode.pte_special(ptes[present]).any():
                assert vma.flags & (VM.MIXEDMAP | VM.PFNMAP), "special PTE outside a special VMA"
            pfns = vm_normal_pages(vma, vas[present], ptes[present])
            normal = pfns[pfns >= 0].astype(np.uint64)
            if normal.size:
                anon = rmap.is_anon(m.memmap, normal)
                rss["anon"] += int(anon.sum())
                rss["file"] += int((~anon).sum())
                mapped.update(int(p) for p in normal.tolist())
        assert mm.rss == rss, f"mm {mm.id}: rss {mm.rss} but PTEs say {rss}"
    for region in m.regions:
        if not region.memmap:
            continue
        first = region.start // m.page_size
        rpfns = np.arange(first, first + region.size // m.page_size).astype(np.uint64)
        row, col = m.memmap.rows(rpfns)
        mc = m.memmap.mapcount[row, col]
        rc = m.memmap.refcount[row, col]
        want = np.zeros(rpfns.size, dtype=mc.dtype)
        for p, n in mapped.items():
            if first <= p < first + rpfns.size:
                want[p - first] = n
        bad = np.flatnonzero(mc != want)
        assert bad.size == 0, (
            f"{region.name}: pfn {int(rpfns[bad[0]]):#x} mapcount {int(mc[bad[0]])}, PTEs {int(want[bad[0]])}"
        )
        assert (rc >= mc).all(), f"{region.name}: refcount below mapcount"


def no_pte_maps(m: Machine, inode: Inode, pgoff: int, pfn: int) -> bool:
    """Invariant 30: no PTE of any VMA of ``inode`` at ``pgoff`` maps ``pfn``."""
    for mm in m.mms:
        for vma in mm.vmas:
            if getattr(vma.file, "inode", None) is not inode:
                continue
            va = vma.start + (pgoff - vma.pgoff) * m.page_size
            if not vma.contains(va) or pgoff < vma.pgoff:
                continue
            leaf = mm.pt.lookup(va)
            if leaf is not None and leaf.pfn == pfn:
                return False
    return True


def run_labelled(label: str, fn: Callable[[], Any]) -> Any:
    """Run one arch case of a cross-arch test; a failure names the case."""
    try:
        return fn()
    except BaseException as exc:
        exc.add_note(f"in XIP case {label}")
        raise


def across(
    profile: str,
    run: Callable[[Rig], dict[str, Any]],
    *,
    struct_page: bool | None = None,
    read_only: bool = False,
) -> dict[str, dict[str, Any]]:
    """Run a scenario on every arch case of ``profile`` and every matching device kind.

    Each run tears its rig down (no leak, no page-table byte). The observables of runs in
    the same scheme group (special bit, and whether device frames become normal pages) must
    be identical; the groups are returned for the caller's own expectations.
    """
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for case in cases_of(profile):
        for kind in kinds_of(case, struct_page):
            rig = make_rig(case, kind, read_only=read_only)
            group = f"special={rig.has_special},data_normal={rig.data_normal}"

            def one(rig: Rig = rig) -> dict[str, Any]:
                obs = run(rig)
                check_invariants(rig.m)
                teardown(rig)
                return obs

            obs = run_labelled(rig.label(), one)
            groups.setdefault(group, {})[rig.label()] = obs
    assert groups, f"no XIP case for {profile}"
    for group, runs in groups.items():
        labels = list(runs)
        for other in labels[1:]:
            assert runs[other] == runs[labels[0]], (
                f"{group}: {other} differs from {labels[0]}:\n{runs[other]}\nvs\n{runs[labels[0]]}"
            )
    return {group: next(iter(runs.values())) for group, runs in groups.items()}
