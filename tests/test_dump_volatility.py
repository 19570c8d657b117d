"""A dumped x86_64 machine read by Volatility 3, built programmatically (no CLI).

FileLayer on ``<name>.lime`` -> LimeLayer -> ``Intel32e`` with ``page_map_offset`` = the CR3 of
each mm in the manifest. Every mapped VA must translate to mixedmap's PA and read the bytes
the model holds there, except where volatility's own code applies a different rule; each
such rule is cited (volatility3 2.28, ``framework/layers/intel.py``), predicted here
independently from the PTE values and table contents, and the prediction is checked:

* ``Intel._page_is_valid`` (intel.py:128-131, applied in ``_translate`` at intel.py:165):
  only P (bit 0) makes a page valid. Linux's ``pte_present`` also counts PROT_NONE entries
  (P=0 with the PROT_NONE alias: PSE in 2.6.2x, G in 6.18), so mixedmap lists them as
  mapped and ``Intel32e`` faults on them. ``LinuxIntel32e`` (``LinuxMixin``,
  intel.py:566-622) accepts P or bit 8 and undoes the L1TF PFN inversion, which matches 6.18
  but not 2.6.27, where PROT_NONE is bit 7.
* ``Intel._get_valid_table`` (intel.py:269-306, the test at intel.py:304): a 4 KiB table
  whose entries are all identical is treated as invalid ("Windows 10 maps unused pages as
  present"). A PTE table full of the XIP sparse page is exactly that, although every entry
  is a valid present PTE.
* Bits volatility ignores: ``Intel._pte_pfn`` keeps bits 51:12 (intel.py:180-182,
  ``_maxphyaddr`` 52 at intel.py:482), so NX (63), 6.18's SAVED_DIRTY (58) and the special
  bit (9) do not move the PA: those PTEs must agree, and the test asserts the scenario has
  them. (PS is only looked at in the PDPT and PD, ``_structure`` at intel.py:484-489, so
  bit 7 of a PTE is never a large page; the only PTEs here with bit 7 are 2.6.27's PROT_NONE
  ones, which fault on P first.)

Volatility 3 has no 5-level (LA57) Intel layer: ``Intel32e._maxvirtaddr`` is 48 and the Linux
symbol code raises "5-level paging is not yet supported"
(framework/symbols/linux/extensions/__init__.py:2736-2741); the LA57 case is skipped for that.
"""

from __future__ import annotations

import logging
import sys
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from mixedmap.dump import DumpFiles, dump_machine, load_manifest, page_arrays
from tests.conftest import CASES, Case
from tests.test_dump import TABLE_VA, Scenario, build, hx


def logging_state() -> tuple[object, ...]:
    """What a library could change about logging in the process (pytest's capture aside)."""
    root = [h for h in logging.root.handlers if not type(h).__module__.startswith("_pytest")]
    mixedmap = logging.getLogger("mixedmap")
    return (tuple(root), logging.root.level, logging.Logger.manager.disable, tuple(mixedmap.handlers),
            mixedmap.level, tuple(warnings.filters))  # fmt: skip


# Taken before volatility is imported.
_BEFORE = logging_state()

volatility3 = pytest.importorskip(
    "volatility3", reason="volatility3 is not installed (pip install 'mixedmap[test]')"
)
from volatility3.framework import contexts, exceptions, interfaces  # noqa: E402
from volatility3.framework.layers import intel, lime, linear, physical  # noqa: E402

P, PROTNONE_618, PSE = 1 << 0, 1 << 8, 1 << 7
NX, SAVED_DIRTY, SPECIAL = 1 << 63, 1 << 58, 1 << 9

X86 = {c.id: c for c in CASES if c.arch == "x86_64" and c.mode.profile in ("2.6.27", "6.18")}
FOUR_LEVEL = [c for c in X86.values() if c.mode.name == "4level"]
LA57 = [c for c in X86.values() if c.mode.name == "la57"]


def five_level_layers() -> list[type]:
    """Intel layers of this volatility that translate 57-bit addresses (none in 2.28)."""
    return [
        c
        for c in vars(intel).values()
        if isinstance(c, type) and issubclass(c, intel.Intel) and getattr(c, "_maxvirtaddr", 0) >= 57
    ]


@attrs.define
class Vol:
    """A volatility context over one dump's LiME file."""

    ctx: Any
    counter: int = 0

    def space(self, cls: type, cr3: int) -> Any:
        """A new translation layer of ``cls`` over the LiME layer for one address space."""
        self.counter += 1
        name = f"{cls.__name__}{self.counter}"
        self.ctx.config[interfaces.configuration.path_join(name, "memory_layer")] = "lime"
        self.ctx.config[interfaces.configuration.path_join(name, "page_map_offset")] = cr3
        layer = cls(self.ctx, name, name)
        self.ctx.add_layer(layer)
        return layer


@pytest.fixture
def open_lime() -> Iterator[Any]:
    """Opens LiME files in volatility and undoes what it leaves behind in the process."""
    opener = urllib.request._opener  # type: ignore[attr-defined]
    made: list[Vol] = []

    def open_(lime_path: Path) -> Vol:
        ctx = contexts.Context()
        ctx.config["base.location"] = lime_path.resolve().as_uri()
        ctx.add_layer(physical.FileLayer(ctx, "base", "base"))
        ctx.config["lime.base_layer"] = "base"
        ctx.add_layer(lime.LimeLayer(ctx, "lime", "lime"))
        made.append(Vol(ctx))
        return made[-1]

    yield open_
    for vol in made:
        vol.ctx.layers["base"].destroy()  # closes the image file
    # lru_cache on methods (intel.py:184, :269; linear.py:39; interfaces/layers.py:469)
    # holds every layer, and with it the context, for the rest of the process
    for cached in (
        intel.Intel._translate_entry,
        intel.Intel._get_valid_table,
        linear.LinearlyMappedLayer.read,
        interfaces.layers.TranslationLayerInterface.read,
    ):
        cached.cache_clear()
    # FileLayer -> ResourceAccessor.open installs a process-wide urllib opener (resources.py:109)
    urllib.request.install_opener(opener)


@attrs.frozen
class Outcome:
    agree: int
    not_present: int
    identical_table: int
    bits_seen: frozenset[str]


def table_all_identical(raw: Any, table_pa: int) -> bool:
    """intel.py:304, computed from the raw image: 512 copies of the first entry."""
    raw.seek(table_pa)
    table = raw.read(4096)
    return table == table[:8] * 512


def compare(sc: Scenario, files: DumpFiles, vol: Vol, cls: type, present_bits: int) -> Outcome:
    """Translate every manifest page through ``cls``; predict volatility's outcome per page."""
    man = load_manifest(files.manifest)
    ps = sc.m.page_size
    agree = not_present = identical = 0
    bits: set[str] = set()
    with open(files.raw, "rb") as raw:
        for rec in man["mms"]:
            mm = next(x for x in sc.m.mms if x.id == rec["id"])
            layer = vol.space(cls, int(rec["root"], 16))
            for v in rec["vmas"]:
                vas, pas, ptes = page_arrays(v)
                for va, pa, pte in zip(vas.tolist(), pas.tolist(), ptes.tolist(), strict=True):
                    where = f"{sc.case.id} {cls.__name__} mm {mm.id} VA {va:#x} PTE {pte:#018x} PA {pa:#x}"
                    tables = [s.table_pa for s in mm.pt.walk(va)]
                    if not pte & present_bits:
                        with pytest.raises(exceptions.PagedInvalidAddressException):
                            layer.translate(va)
                        not_present += 1
                        continue
                    if any(table_all_identical(raw, t) for t in tables):
                        with pytest.raises(exceptions.PagedInvalidAddressException):
                            layer.translate(va)
                        identical += 1
                        continue
                    got, under = layer.translate(va + 0x123)
                    assert (got, under) == (pa + 0x123, "lime"), where
                    raw.seek(pa)
                    data = raw.read(ps)
                    assert layer.read(va, ps) == data == sc.m.mem.read(pa, ps), where
                    agree += 1
                    bits |= {
                        n
                        for n, b in (("NX", NX), ("SAVED_DIRTY", SAVED_DIRTY), ("SPECIAL", SPECIAL))
                        if pte & b
                    }
    return Outcome(agree, not_present, identical, frozenset(bits))


def dump(case: Case, tmp_path: Path) -> tuple[Scenario, DumpFiles]:
    sc = build(case, full_tables=True)
    return sc, dump_machine(sc.m, tmp_path, "x86")


@pytest.mark.parametrize("case", FOUR_LEVEL, ids=[c.id for c in FOUR_LEVEL])
def test_intel32e_reads_what_mixedmap_wrote(case: Case, tmp_path: Path, open_lime: Any) -> None:
    sc, files = dump(case, tmp_path)
    assert files.lime is not None
    out = compare(sc, files, open_lime(files.lime), intel.Intel32e, P)
    # PROT_NONE: 2 pages in the parent and 2 inherited by the child
    assert out.not_present == 4, out
    # one PTE table of 512 sparse-page PTEs per mm that maps it (fork copies it: 2.6.27 maps the
    # sparse page with vm_insert_page, VM_INSERTPAGE); the neighbour with one empty entry is read
    man = load_manifest(files.manifest)
    full = [
        mm["id"] for mm in man["mms"] for v in mm["vmas"] if v["pages"] and v["pages"][0][0] == hx(TABLE_VA)
    ]
    assert full and out.identical_table == len(full) * sc.m.fmt.levels[-1].entries, out
    assert out.agree == files.nr_pages - out.not_present - out.identical_table > 500, out
    want = {"NX"} | ({"SAVED_DIRTY"} if case.mode.profile == "6.18" else {"SPECIAL"})
    assert want <= out.bits_seen, out


@pytest.mark.parametrize("case", FOUR_LEVEL, ids=[c.id for c in FOUR_LEVEL])
def test_linux_intel32e_on_prot_none(case: Case, tmp_path: Path, open_lime: Any) -> None:
    """LinuxIntel32e reads 6.18's PROT_NONE pages (G, inverted PFN) but not 2.6.27's (PSE)."""
    sc, files = dump(case, tmp_path)
    assert files.lime is not None
    out = compare(sc, files, open_lime(files.lime), intel.LinuxIntel32e, P | PROTNONE_618)
    if case.mode.profile == "6.18":
        assert out.not_present == 0, out
    else:
        man = load_manifest(files.manifest)
        protnone = [int(p[2], 16) for mm in man["mms"] for v in mm["vmas"] for p in v["pages"]]
        assert sum(1 for pte in protnone if not pte & P and pte & PSE) == out.not_present == 4, out


@pytest.mark.parametrize("case", LA57, ids=[c.id for c in LA57])
def test_la57(case: Case, tmp_path: Path, open_lime: Any) -> None:
    sc, files = dump(case, tmp_path)
    assert files.lime is not None and load_manifest(files.manifest)["mode"]["name"] == "la57"
    layers = five_level_layers()
    if not layers:
        pytest.skip(
            f"volatility3 {volatility3.framework.constants.PACKAGE_VERSION} has no 5-level Intel layer "
            "(Intel32e._maxvirtaddr = 48; symbols/linux/extensions/__init__.py: "
            '"5-level paging is not yet supported")'
        )
    out = compare(sc, files, open_lime(files.lime), layers[0], P)
    assert out.agree > 500, out


def test_lime_layer_sees_every_region(tmp_path: Path, open_lime: Any) -> None:
    sc, files = dump(FOUR_LEVEL[0], tmp_path)
    assert files.lime is not None
    vol = open_lime(files.lime)
    segments = vol.ctx.layers["lime"]._segments  # (start, file offset, length, mapped length)
    assert [(s[0], s[2]) for s in segments] == [(r.start, r.size) for r in sc.m.regions]
    for r in sc.m.regions:
        page = next(a for a, b in sc.m.mem.blocks() if r.start <= a < r.end and b.any())
        assert vol.ctx.layers.read("lime", page, 4096) == sc.m.mem.read(page, 4096)


def test_volatility_leaves_logging_alone(tmp_path: Path, open_lime: Any) -> None:
    """Importing and running volatility configures no logging (only its CLI does); its one
    process-wide hook is an import finder for volatility3.framework.plugins names."""
    sc, files = dump(FOUR_LEVEL[0], tmp_path)
    assert files.lime is not None
    vol = open_lime(files.lime)
    vol.space(intel.Intel32e, sc.parent.root).read(sc.parent.vmas[0].start, 16)
    assert logging_state() == _BEFORE
    vlog = logging.getLogger("volatility3")
    assert (vlog.handlers, vlog.level, vlog.propagate) == ([], logging.NOTSET, True)
    hooks = [type(f).__name__ for f in sys.meta_path if type(f).__module__.startswith("volatility3")]
    assert hooks == ["WarningFindSpec"]
