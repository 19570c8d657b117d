"""Memory images of a Machine for tools outside mixedmap (issue 6, ``--dump DIR``).

A dump is three files in one directory: ``<name>.raw``, the physical address space as a flat
image (file offset == physical address, sparse on disk); ``<name>.json``, a manifest that
says how to read it (arch, profile, mode, regions, and per address space the root register,
the VMAs and every mapped page with its PA and PTE); and, for x86_64, ``<name>.lime``, the
same memory in LiME format so that forensic tools (Volatility 3's LimeLayer) open it.

Page tables are already bytes in the arch's own layout, so the image needs no conversion;
the manifest is what lets a test (or a user) check that another walker reads the same thing.
Mapped pages are enumerated table by table with numpy, so the cost follows the populated
tables, not the size of the VMAs; the manifest rows are formatted by numpy as well.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import struct
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import attrs
import numpy as np
from numpy.typing import NDArray

from mixedmap._log import get_logger
from mixedmap.arch import ENTRY_LEAF, ENTRY_TABLE
from mixedmap.errors import MixedmapError
from mixedmap.machine import Machine
from mixedmap.mm.vma import mnemonics
from mixedmap.pgtable import PageTable
from mixedmap.phys.mem import BLOCK_SIZE, PhysMem
from mixedmap.plugin.registry import ArchRegistry, BoundMode, default_registry
from mixedmap.vmcore import ELF_MACHINE, ELF_MAGIC, read_vmcore, write_vmcore

log = get_logger("mixedmap.dump")

FORMAT = "mixedmap-dump"
FORMAT_VERSION = 1

#: LiME range header (LiME doc/README.md "Memory Range Header Version 1"; volatility3
#: layers/lime.py reads it as "<IIQQQ"): magic, version, s_addr, e_addr (inclusive, as
#: LiME writes ``struct resource``'s end), 8 reserved zero bytes.
LIME_MAGIC = 0x4C694D45
LIME_VERSION = 1
LIME_HEADER = struct.Struct("<IIQQQ")

#: Entries read per batch while enumerating tables (bounds the host memory of one step).
_BATCH_ENTRIES = 1 << 18
#: Manifest rows formatted per numpy batch.
_ROWS_PER_WRITE = 1 << 16


class DumpError(MixedmapError):
    """A dump could not be written or read (bad directory, name, or file)."""


class DumpMismatch(DumpError):
    """A reloaded image disagrees with its manifest."""


@attrs.frozen(kw_only=True)
class DumpFiles:
    """What :func:`dump_machine` wrote."""

    directory: Path
    manifest: Path
    raw: Path
    #: None unless the machine is x86_64.
    lime: Path | None
    #: ``<name>.vmcore``, the ELF core with VMCOREINFO (mixedmap.vmcore); None for an arch
    #: without an ELF machine number.
    vmcore: Path | None = None
    #: Length of the raw image (end of the highest region or stored block).
    raw_size: int
    #: Mapped pages listed in the manifest, over all address spaces.
    nr_pages: int


@attrs.frozen(kw_only=True)
class RoundTrip:
    """What :func:`check_roundtrip` compared."""

    mms: int
    pages: int


# -- enumerating mapped pages ---------------------------------------------------------------
def mapped_pages(
    pt: PageTable, mem: PhysMem, start: int, end: int
) -> tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.uint64]]:
    """(vas, entries, pas) of every base page in [start, end) that ``pt`` maps, ascending.

    "Mapped" is the kernel's view, as :meth:`PageTable.translate` has it: a present PTE
    (``pte_present``, so PROT_NONE counts) or a large leaf, whose pages each get a row with
    the leaf's entry. Tables are read level by level, only where the level above points, so
    a huge sparse VMA costs what is populated in it.
    """
    fmt, ops = pt.fmt, pt.mode.mode.ops
    bo, esz = fmt.byteorder, _entry_size(pt)
    levels, last, ps = fmt.levels, len(fmt.levels) - 1, fmt.page_size
    empty = np.zeros(0, dtype=np.uint64)
    if end <= start:
        return empty, empty, empty
    reach = 1 << (levels[0].shift + levels[0].index_bits)
    tables = np.array([pt.root_pa], dtype=np.uint64)
    prefixes = np.array([start - start % reach], dtype=np.uint64)
    lo, hi = np.uint64(start), np.uint64(end - 1)
    out: list[tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.uint64]]] = []
    leaves = False
    for i, lv in enumerate(levels):
        if tables.size == 0:
            break
        idx = np.arange(lv.entries, dtype=np.uint64)
        span, step = np.uint64(lv.page_size), max(1, _BATCH_ENTRIES // lv.entries)
        down_t: list[NDArray[np.uint64]] = []
        down_p: list[NDArray[np.uint64]] = []
        for c in range(0, tables.size, step):
            cva = (prefixes[c : c + step, None] + idx[None, :] * span).ravel()
            epa = (tables[c : c + step, None] + idx[None, :] * np.uint64(esz)).ravel()
            keep = (cva <= hi) & (cva + (span - np.uint64(1)) >= lo)
            cva, ent = cva[keep], mem.gather_u64(epa[keep], bo)
            if i == last:
                present = np.asarray(ops.pte_present(ent), dtype=np.bool_)
                ent, cva = ent[present], cva[present]
                pfn = np.asarray(ops.pte_pfn(ent), dtype=np.uint64)
                out.append((cva, ent, pfn << np.uint64(fmt.page_shift)))
                continue
            kind = np.asarray(ops.entry_kind(i, ent))
            down = kind == ENTRY_TABLE
            if down.any():
                down_t.append(np.asarray(ops.table_pa(i, ent[down]), dtype=np.uint64))
                down_p.append(cva[down])
            for va0, e in zip(
                cva[kind == ENTRY_LEAF].tolist(), ent[kind == ENTRY_LEAF].tolist(), strict=True
            ):
                leaves = True  # one Python step per large leaf, not per page
                first, stop = max(va0, start), min(va0 + lv.page_size, end)
                vas = np.arange(first, stop, ps, dtype=np.uint64)
                base = int(ops.leaf_pfn(i, e)) << fmt.page_shift
                out.append(
                    (vas, np.full(vas.size, e, dtype=np.uint64), vas - np.uint64(va0) + np.uint64(base))
                )
        tables = np.concatenate(down_t) if down_t else empty
        prefixes = np.concatenate(down_p) if down_p else empty
    if not out:
        return empty, empty, empty
    vas, ents, pas = (np.concatenate([o[k] for o in out]) for k in range(3))
    if leaves:  # large leaves were emitted before the deeper tables next to them
        order = np.argsort(vas, kind="stable")
        vas, ents, pas = vas[order], ents[order], pas[order]
    return vas, ents, pas


def _entry_size(pt: PageTable) -> int:
    """Entry size of the format (every entry is read as one 64-bit word)."""
    if pt.fmt.entry_size != 8:
        raise DumpError(f"{pt.fmt.arch}/{pt.fmt.mode}: {pt.fmt.entry_size}-byte entries are not supported")
    return 8


# -- manifest rows ---------------------------------------------------------------------------
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_NIBBLES = np.arange(60, -4, -4, dtype=np.uint64)
_ROW_INDENT = b"        "


def _row_template() -> tuple[NDArray[np.uint8], tuple[int, int, int]]:
    """One manifest row ``,\\n  ["0x<16>", "0x<16>", "0x<16>"]`` and where its digits go."""
    parts = [b",\n" + _ROW_INDENT + b'["0x', b'", "0x', b'", "0x', b'"]']
    row, offsets = b"", []
    for k, p in enumerate(parts):
        row += p
        if k < 3:
            offsets.append(len(row))
            row += b"0" * 16
    return np.frombuffer(row, dtype=np.uint8), (offsets[0], offsets[1], offsets[2])


_ROW, _ROW_OFFSETS = _row_template()


def _hex16(values: NDArray[np.uint64]) -> NDArray[np.uint8]:
    """16 lower-case hex digits per value, as an (n, 16) byte matrix."""
    nibbles = (values[:, None] >> _NIBBLES[None, :]) & np.uint64(0xF)
    digits: NDArray[np.uint8] = _HEX[nibbles.astype(np.intp)]
    return digits


def _write_rows(fh: IO[bytes], cols: tuple[NDArray[np.uint64], ...]) -> None:
    """Rows of [va, pa, pte] as fixed-width hex strings, formatted in numpy batches."""
    n = cols[0].size
    for c in range(0, n, _ROWS_PER_WRITE):
        k = min(_ROWS_PER_WRITE, n - c)
        buf = np.empty((k, _ROW.size), dtype=np.uint8)
        buf[:] = _ROW
        for off, col in zip(_ROW_OFFSETS, cols, strict=True):
            buf[:, off : off + 16] = _hex16(col[c : c + k])
        data = buf.tobytes()
        fh.write(data[1:] if c == 0 else data)  # the first row has no leading comma


def _hx(v: int) -> str:
    return f"{v:#x}"


def _file_name(file: Any) -> str | None:
    """A VMA's file as a name: the file's own, its inode's, or its repr."""
    if file is None:
        return None
    for obj in (file, getattr(file, "inode", None), getattr(file, "mapping", None)):
        name = getattr(obj, "name", None)
        if isinstance(name, str):
            return name
    return repr(file)


def _jsonable(v: object) -> object:
    return v if isinstance(v, (bool, int, float, str)) or v is None else str(v)


def _header(machine: Machine, name: str, files: Mapping[str, str | None], raw_size: int) -> dict[str, Any]:
    fmt, mode = machine.fmt, machine.mode.mode
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "name": name,
        "arch": machine.arch,
        "kernel": machine.profile.name,
        "mode": {"name": mode.name, "options": {k: _jsonable(v) for k, v in mode.options}},
        "page_size": fmt.page_size,
        "page_shift": fmt.page_shift,
        "byteorder": fmt.byteorder,
        "entry_size": fmt.entry_size,
        "va_bits": fmt.va_bits,
        "va_rule": fmt.va_rule,
        "pa_bits": fmt.pa_bits,
        "root_name": fmt.root_name,
        "levels": [
            {"name": lv.name, "hw_name": lv.hw_name, "shift": lv.shift, "index_bits": lv.index_bits}
            for lv in fmt.levels
        ],
        "ram_base": _hx(machine.ram_base),
        "ram_size": _hx(machine.ram_size),
        "raw_size": _hx(raw_size),
        "files": dict(files),
        "regions": [
            {
                "name": r.name,
                "kind": r.kind,
                "start": _hx(r.start),
                "size": _hx(r.size),
                "memmap": r.memmap,
                "owner": r.owner,
            }
            for r in machine.regions
        ],
        "reserved": [
            {"name": r.name, "start": _hx(r.start), "size": _hx(r.size), "kernel_ref": r.kernel_ref}
            for r in machine.reserved
        ],
    }


def _write_manifest(fh: IO[bytes], header: Mapping[str, Any], machine: Machine) -> int:
    """Stream the manifest: small fields through json, page rows through numpy."""
    w = fh.write
    w(b"{\n")
    for key, value in header.items():
        w(f"  {json.dumps(key)}: {json.dumps(value)},\n".encode())
    w(b'  "mms": [')
    total = 0
    for m, mm in enumerate(sorted(machine.mms, key=lambda x: x.id)):
        pages = [mapped_pages(mm.pt, machine.mem, v.start, v.end) for v in mm.vmas]
        count = sum(p[0].size for p in pages)
        total += count
        head = {"id": mm.id, "root": _hx(mm.pt.root), "root_pa": _hx(mm.pt.root_pa), "nr_pages": count}
        w(f'{"," if m else ""}\n    {json.dumps(head)[:-1]}, "vmas": ['.encode())
        for k, (vma, (vas, ents, pas)) in enumerate(zip(mm.vmas, pages, strict=True)):
            rec = {
                "start": _hx(vma.start),
                "end": _hx(vma.end),
                "flags": _hx(vma.flags),
                "mnemonics": mnemonics(vma.flags),
                "page_prot": _hx(vma.page_prot),
                "pgoff": vma.pgoff,
                "file": _file_name(vma.file),
                "nr_pages": int(vas.size),
            }
            w(f'{"," if k else ""}\n      {json.dumps(rec)[:-1]}, "pages": ['.encode())
            if vas.size:
                _write_rows(fh, (vas, pas, ents))
                w(b"\n      ")
            w(b"]}")
        w(b"\n    ]}" if mm.vmas else b"]}")
    w(b"\n  ]\n}\n" if machine.mms else b"]\n}\n")
    return total


# -- images -----------------------------------------------------------------------------------
def _write_images(machine: Machine, raw: IO[bytes], lime: IO[bytes] | None) -> int:
    """One pass over the stored blocks: the raw image and, if asked, the LiME ranges.

    Unwritten and all-zero blocks are skipped (holes in both files); both files are then
    truncated to their full length. Returns the raw image's length.
    """
    regions = list(machine.regions)
    data_at: list[int] = []  # LiME file offset of each region's first byte
    pos = 0
    for r in regions:
        if lime is not None:
            lime.seek(pos)
            lime.write(LIME_HEADER.pack(LIME_MAGIC, LIME_VERSION, r.start, r.end - 1, 0))
        data_at.append(pos + LIME_HEADER.size)
        pos += LIME_HEADER.size + r.size
    lime_size = pos
    end = max((r.end for r in regions), default=0)
    k, outside = 0, 0
    for addr, content in machine.mem.blocks():
        end = max(end, addr + BLOCK_SIZE)
        if not content.any():
            continue
        raw.seek(addr)
        raw.write(content.data)
        if lime is None:
            continue
        while k < len(regions) and regions[k].end <= addr:
            k += 1
        if k < len(regions) and regions[k].start <= addr:
            lime.seek(data_at[k] + addr - regions[k].start)
            lime.write(content.data)
        else:
            outside += 1
    raw.truncate(end)
    if lime is not None:
        lime.truncate(lime_size)
        if outside:
            log.warning("lime_blocks_outside_regions", blocks=outside)
    return end


# -- the public entry points ---------------------------------------------------------------
def _check_target(directory: Path, name: str, suffixes: tuple[str, ...]) -> None:
    """Refuse a bad name or directory before any file is created."""
    if not name or name in (".", "..") or "/" in name or os.sep in name or "\0" in name:
        raise DumpError(f"dump name {name!r} must be a plain file name (no directory part)")
    if directory.exists() and not directory.is_dir():
        raise DumpError(f"dump directory {str(directory)!r} exists and is not a directory")
    for suffix in suffixes:
        target = directory / f"{name}{suffix}"
        if target.exists() and not target.is_file():
            raise DumpError(f"{str(target)!r} exists and is not a regular file")


def dump_machine(machine: Machine, directory: str | Path, name: str) -> DumpFiles:
    """Write ``<name>.raw``, ``<name>.json`` and (x86_64) ``<name>.lime`` into ``directory``.

    The directory is created if missing. Every file is written under a temporary name and
    renamed into place only when all of them are complete (the manifest last), so an error
    leaves no half dump behind; a bad directory or name fails before anything is written.
    """
    directory = Path(directory)
    with_lime = machine.arch == "x86_64"
    with_vmcore = machine.arch in ELF_MACHINE
    suffixes = (".raw", ".json") + ((".lime",) if with_lime else ()) + ((".vmcore",) if with_vmcore else ())
    _check_target(directory, name, suffixes)
    created = not directory.exists()
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DumpError(f"cannot create dump directory {str(directory)!r}: {exc.strerror}") from exc
    t0 = time.perf_counter()
    temps: dict[str, Path] = {}
    tag = f"{os.getpid()}-{secrets.token_hex(4)}"
    try:
        for suffix in suffixes:
            # open(..., "xb"): a new file, with the permissions the umask gives (mkstemp: 0600)
            temps[suffix] = directory / f".{name}{suffix}.{tag}.part"
            open(temps[suffix], "xb").close()
    except OSError as exc:
        _remove(temps.values())
        if created:
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise DumpError(f"dump directory {str(directory)!r} is not writable: {exc.strerror}") from exc
    final = {s: directory / f"{name}{s}" for s in suffixes}
    try:
        with contextlib.ExitStack() as stack:
            raw = stack.enter_context(open(temps[".raw"], "wb"))
            lime = stack.enter_context(open(temps[".lime"], "wb")) if with_lime else None
            raw_size = _write_images(machine, raw, lime)
        if with_vmcore:
            with open(temps[".vmcore"], "wb") as core:
                write_vmcore(machine, core)
        t1 = time.perf_counter()
        files = {"raw": final[".raw"].name, "lime": final[".lime"].name if with_lime else None}
        if with_vmcore:
            files["vmcore"] = final[".vmcore"].name
        with open(temps[".json"], "wb") as fh:
            nr_pages = _write_manifest(fh, _header(machine, name, files, raw_size), machine)
        for suffix in sorted(suffixes, key=lambda s: s == ".json"):
            os.replace(temps[suffix], final[suffix])
    except OSError as exc:
        _remove(temps.values())
        raise DumpError(f"writing the dump {name!r} into {str(directory)!r} failed: {exc}") from exc
    except BaseException:
        _remove(temps.values())
        raise
    log.info(
        "dump_written", directory=str(directory), name=name, arch=machine.arch, raw_size=raw_size,
        pages=nr_pages, images_s=round(t1 - t0, 3), manifest_s=round(time.perf_counter() - t1, 3),
    )  # fmt: skip
    return DumpFiles(
        directory=directory,
        manifest=final[".json"],
        raw=final[".raw"],
        lime=final.get(".lime"),
        vmcore=final.get(".vmcore"),
        raw_size=raw_size,
        nr_pages=nr_pages,
    )


def _remove(paths: Any) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            os.unlink(p)


def load_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest as a dict, after checking that it is one this version can read."""
    try:
        with open(path, "rb") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DumpError(f"cannot read dump manifest {str(path)!r}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DumpError(f"{str(path)!r} is not a {FORMAT} manifest")
    if data.get("version") != FORMAT_VERSION:
        raise DumpError(
            f"{str(path)!r} has manifest version {data.get('version')!r}; this reads {FORMAT_VERSION}"
        )
    return data


def page_arrays(vma: Mapping[str, Any]) -> tuple[NDArray[np.uint64], NDArray[np.uint64], NDArray[np.uint64]]:
    """(vas, pas, ptes) of one manifest VMA as uint64 arrays."""
    rows = vma["pages"]
    n = len(rows)
    cols = tuple(np.fromiter((int(r[k], 16) for r in rows), dtype=np.uint64, count=n) for k in range(3))
    return cols[0], cols[1], cols[2]


def load_raw(path: str | Path) -> PhysMem:
    """A raw image back into sparse memory, reading only the file's data extents.

    Uses SEEK_DATA/SEEK_HOLE where the filesystem has them (a 1 GiB image with a few
    MiB written loads in milliseconds); elsewhere reads the whole file. A vmcore (an ELF
    file) is read through :func:`mixedmap.vmcore.read_vmcore`, by physical address.
    """
    with open(path, "rb") as probe:
        if probe.read(4) == ELF_MAGIC:
            return read_vmcore(path).mem
    mem = PhysMem()
    chunk = 256 * BLOCK_SIZE
    with open(path, "rb") as fh:
        fd, size = fh.fileno(), os.fstat(fh.fileno()).st_size
        for lo, hi in _extents(fd, size):
            pos = lo - lo % BLOCK_SIZE
            while pos < hi:
                fh.seek(pos)
                data = fh.read(min(chunk, hi - pos + -(hi - pos) % BLOCK_SIZE))
                if not data:
                    break
                blocks = np.frombuffer(data + bytes(-len(data) % BLOCK_SIZE), dtype=np.uint8)
                blocks = blocks.reshape(-1, BLOCK_SIZE)
                for b in np.flatnonzero(blocks.any(axis=1)).tolist():
                    mem.write(pos + b * BLOCK_SIZE, blocks[b].tobytes())
                pos += len(data)
    return mem


def _extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    seek_data, seek_hole = getattr(os, "SEEK_DATA", None), getattr(os, "SEEK_HOLE", None)
    if seek_data is None or seek_hole is None:
        yield 0, size
        return
    pos = 0
    while pos < size:
        try:
            lo = os.lseek(fd, pos, seek_data)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # the filesystem cannot tell: read everything left
                yield pos, size
            return  # ENXIO: only holes after pos
        hi = min(os.lseek(fd, lo, seek_hole), size)
        yield lo, hi
        pos = hi


def bind_manifest(manifest: Mapping[str, Any], registry: ArchRegistry | None = None) -> BoundMode:
    """The arch mode a manifest was written under (arch, kernel profile, mode options)."""
    mode = manifest["mode"]
    reg = registry or default_registry()
    return reg.bind(manifest["arch"]).mode(manifest["kernel"], mode=mode["name"], **mode["options"])


def check_roundtrip(manifest_path: str | Path, registry: ArchRegistry | None = None) -> RoundTrip:
    """Reload the raw image and check it against the manifest; raise DumpMismatch if not.

    For each address space, ``PageTable.attach`` from the manifest's root register must
    find the manifest's root table, ``translate`` must give each listed VA its listed PA,
    each listed PTE must be in the image, and no page may be mapped that is not listed.
    """
    path = Path(manifest_path)
    manifest = load_manifest(path)
    mem = load_raw(path.parent / manifest["files"]["raw"])
    bm = bind_manifest(manifest, registry)
    problems: list[str] = []
    pages = 0
    for mm in manifest["mms"]:
        pt = PageTable.attach(mem, bm, int(mm["root"], 16))
        if pt.root_pa != int(mm["root_pa"], 16):
            problems.append(
                f"mm {mm['id']}: root {mm['root']} gives table {pt.root_pa:#x}, not {mm['root_pa']}"
            )
            continue
        for vma in mm["vmas"]:
            vas, pas, ptes = page_arrays(vma)
            pages += vas.size
            got = pt.translate(vas)
            bad = got.astype(np.uint64) != pas
            bad |= got < 0
            for j in np.flatnonzero(bad)[:5].tolist():
                problems.append(
                    f"mm {mm['id']}: VA {int(vas[j]):#x} translates to {int(got[j]):#x}, not {int(pas[j]):#x}"
                )
            va2, pte2, pa2 = mapped_pages(pt, mem, int(vma["start"], 16), int(vma["end"], 16))
            if not (np.array_equal(va2, vas) and np.array_equal(pte2, ptes) and np.array_equal(pa2, pas)):
                problems.append(
                    f"mm {mm['id']}: VMA [{vma['start']}, {vma['end']}) maps {va2.size} pages in the image, "
                    f"the manifest lists {vas.size} (or their entries differ)"
                )
    if problems:
        raise DumpMismatch(f"{str(path)!r}: " + "; ".join(problems[:10]))
    return RoundTrip(mms=len(manifest["mms"]), pages=pages)
