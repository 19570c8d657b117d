"""An ELF core of a Machine's physical memory with a VMCOREINFO note (issue 12).

``drgn -c NAME.vmcore`` opens such a file as a Linux kernel core without a vmlinux: drgn
recognises a kernel core by its VMCOREINFO note (``libdrgn/program.c``,
``drgn_program_set_core_dump``, parsed by ``drgn_program_parse_vmcoreinfo`` in
``libdrgn/linux_kernel.c``) and walks page tables with the arch's
``linux_kernel_pgtable_iterator_next`` (``libdrgn/arch_x86_64.c``, ``arch_s390x.c``,
``arch_ppc64.c``).

The file is laid out as the kernel's own ``/proc/vmcore`` is (``fs/proc/vmcore.c``,
``kernel/crash_core.c``): one ``PT_NOTE`` holding the ``VMCOREINFO`` note (name
"VMCOREINFO", type 0, ``KEY=VALUE`` lines as ``vmcoreinfo_append_str`` writes them), then
one ``PT_LOAD`` per physical region (RAM and XIP devices, plus any stored block outside
them), with ``p_paddr`` the physical address and ``p_vaddr`` its address in the kernel's
direct map. Regions, not just written pages, are covered because drgn reads whole tables
(16 KiB from an s390 page-table origin, ``arch_s390x.c`` ``entries[2048]``), as a real
vmcore has all of RAM; the file stays sparse: only non-zero 4 KiB blocks are written.

Keys written (``kernel/vmcore_info.c``, ``arch/*/kernel/vmcore_info.c``): ``OSRELEASE``,
``PAGESIZE``, ``KERNELOFFSET``, ``SYMBOL(swapper_pg_dir)`` (drgn refuses a VMCOREINFO
without it; here it names the first address space's root table), x86_64's
``NUMBER(pgtable_l5_enabled)`` (drgn's 4- or 5-level choice), and mixedmap's own
``MIXEDMAP_ARCH``, ``MIXEDMAP_MODE`` and ``MIXEDMAP_ROOTS`` (every root register value),
which other tools ignore.

No registry package writes ELF cores (pyelftools and lief's Python wheels were checked:
pyelftools only reads; lief builds executables, not sparse cores with notes), so the
writer is ``struct`` over the ELF64 gABI structures (``Elf64_Ehdr``, ``Elf64_Phdr``,
``Elf64_Nhdr``).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import attrs

from mixedmap._log import get_logger
from mixedmap.errors import MixedmapError
from mixedmap.phys.mem import BLOCK_SIZE, PhysMem

if TYPE_CHECKING:  # annotations only: vmcore sits beside machine in the layers contract
    from mixedmap.machine import Machine

log = get_logger("mixedmap.vmcore")

ELF_MAGIC = b"\x7fELF"
ET_CORE, EV_CURRENT, ELFCLASS64 = 4, 1, 2
PT_LOAD, PT_NOTE = 1, 4
PF_R, PF_W, PF_X = 4, 2, 1

#: e_machine per arch (ELF gABI / ``include/uapi/linux/elf-em.h``).
ELF_MACHINE: Mapping[str, int] = {"x86_64": 62, "s390x": 22, "ppc64": 21, "riscv64": 243}
ARCH_OF_MACHINE: Mapping[int, str] = {v: k for k, v in ELF_MACHINE.items()}

#: Start of the direct map (PAGE_OFFSET) per arch and mode, as the kernels lay it out:
#: x86_64 ``__PAGE_OFFSET_BASE_L4``/``_L5`` (``arch/x86/include/asm/page_64_types.h``),
#: s390x identity (before 6.10), ppc64 ``PAGE_OFFSET`` 0xc000... (``asm/book3s/64/pgtable.h``),
#: riscv64 ``PAGE_OFFSET_L4`` (``arch/riscv/include/asm/page.h``).
_DIRECT_MAP: Mapping[tuple[str, str], int] = {
    ("x86_64", "la57"): 0xFF11_0000_0000_0000,
    ("x86_64", ""): 0xFFFF_8880_0000_0000,
    ("s390x", ""): 0,
    ("ppc64", ""): 0xC000_0000_0000_0000,
    ("riscv64", ""): 0xFF60_0000_0000_0000,
}
NOTE_NAME = b"VMCOREINFO"
_EHDR = "16sHHIQQQIHHHHHH"
_PHDR = "IIQQQQQQ"
_NHDR = "III"


class VmcoreError(MixedmapError):
    """A vmcore could not be written, or a file is not a vmcore this module can read."""


@attrs.frozen(kw_only=True)
class Vmcore:
    """What :func:`read_vmcore` found: the arch, the VMCOREINFO keys, the memory."""

    path: Path
    arch: str
    byteorder: str
    vmcoreinfo: Mapping[str, str]
    #: (paddr, vaddr, size) of every PT_LOAD.
    segments: tuple[tuple[int, int, int], ...]
    mem: PhysMem


def direct_map_base(arch: str, mode: str) -> int:
    """PAGE_OFFSET of ``arch`` in ``mode`` (0 for an arch this module does not know)."""
    return _DIRECT_MAP.get((arch, mode), _DIRECT_MAP.get((arch, ""), 0))


def vmcoreinfo_for(machine: Machine, roots: Sequence[int], page_offset: int | None = None) -> dict[str, str]:
    """The VMCOREINFO keys for ``machine`` whose address spaces have root registers ``roots``
    (``page_offset``: the direct map's start, default :func:`direct_map_base`)."""
    mode = machine.fmt.mode
    base = direct_map_base(machine.arch, mode) if page_offset is None else page_offset
    # The first mm's root table (never at PA 0: the arches' boot reservations hold it, see
    # Machine.reserved); a machine without an mm names the page above RAM (drgn refuses 0).
    swapper = base + (machine.mms[0].pt.root_pa if machine.mms else machine.ram_end)
    info = {
        "OSRELEASE": f"{machine.profile.name}-mixedmap",
        "PAGESIZE": str(machine.page_size),
        "KERNELOFFSET": "0",
        "SYMBOL(swapper_pg_dir)": f"{swapper:x}",
        "MIXEDMAP_ARCH": machine.arch,
        "MIXEDMAP_MODE": mode,
        "MIXEDMAP_ROOTS": ",".join(f"{r:x}" for r in roots),
    }
    if machine.arch == "x86_64":
        info["NUMBER(pgtable_l5_enabled)"] = "1" if mode == "la57" else "0"
    return info


def _note(info: Mapping[str, str], bo: str) -> bytes:
    desc = "".join(f"{k}={v}\n" for k, v in info.items()).encode()
    name = NOTE_NAME + b"\0"
    e = ">" if bo == "big" else "<"
    out = struct.pack(e + _NHDR, len(name), len(desc), 0)
    out += name + bytes(-len(name) % 4) + desc + bytes(-len(desc) % 4)
    return out


def _ranges(machine: Machine) -> list[tuple[int, int]]:
    """(start, end) of every region, plus stored blocks outside all regions, merged."""
    spans = [(r.start, r.end) for r in machine.regions]
    inside = sorted(spans)
    for addr, content in machine.mem.blocks():
        if not any(lo <= addr < hi for lo, hi in inside) and content.any():
            spans.append((addr, addr + BLOCK_SIZE))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for lo, hi in spans:
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def write_vmcore(
    machine: Machine,
    fh: IO[bytes],
    roots: Iterable[int] | None = None,
    *,
    elf_machine: int | None = None,
    page_offset: int | None = None,
    extra_info: Mapping[str, str] | None = None,
) -> int:
    """Write ``machine``'s memory as an ELF core to ``fh``; returns the file's length.

    ``roots`` are the root register values listed in ``MIXEDMAP_ROOTS`` (default: every
    address space of the machine). An arch this module does not know (a third-party
    plugin's) needs ``elf_machine`` and, unless its direct map starts at 0, ``page_offset``;
    ``extra_info`` adds VMCOREINFO keys (what a walker such as drgn reads for that arch).
    ``mixedmap verify`` takes all three from a :class:`mixedmap.verify.targets.VerifyTarget`.
    """
    arch, bo = machine.arch, machine.fmt.byteorder
    if elf_machine is None and arch not in ELF_MACHINE:
        raise VmcoreError(f"{arch}: no ELF machine number known for a vmcore")
    e_machine = ELF_MACHINE[arch] if elf_machine is None else elf_machine
    root_list = list(roots) if roots is not None else [mm.pt.root for mm in machine.mms]
    e = ">" if bo == "big" else "<"
    base = direct_map_base(arch, machine.fmt.mode) if page_offset is None else page_offset
    note = _note({**vmcoreinfo_for(machine, root_list, base), **(extra_info or {})}, bo)
    ranges = _ranges(machine)
    phnum = 1 + len(ranges)
    ehsize, phentsize = struct.calcsize(_EHDR), struct.calcsize(_PHDR)
    note_off = ehsize + phnum * phentsize
    pos = note_off + len(note)
    pos += -pos % max(BLOCK_SIZE, machine.page_size)
    ident = ELF_MAGIC + bytes([ELFCLASS64, 2 if bo == "big" else 1, EV_CURRENT]) + bytes(9)
    fh.write(
        struct.pack(e + _EHDR, ident, ET_CORE, e_machine, EV_CURRENT, 0, ehsize, 0, 0,
                    ehsize, phentsize, phnum, 0, 0, 0)
    )  # fmt: skip
    fh.write(struct.pack(e + _PHDR, PT_NOTE, 0, note_off, 0, 0, len(note), len(note), 0))
    offsets: list[int] = []
    for lo, hi in ranges:
        offsets.append(pos)
        fh.write(struct.pack(e + _PHDR, PT_LOAD, PF_R | PF_W | PF_X, pos, base + lo, lo, hi - lo, hi - lo, 0))
        pos += hi - lo
    fh.write(note)
    k = 0
    for addr, content in machine.mem.blocks():
        if not content.any():
            continue
        while k < len(ranges) and ranges[k][1] <= addr:
            k += 1
        if k < len(ranges) and ranges[k][0] <= addr:  # always: _ranges covers every stored block
            fh.seek(offsets[k] + addr - ranges[k][0])
            fh.write(content.data)
    fh.truncate(pos)
    return pos


def read_vmcore(path: str | Path, arch: str | None = None) -> Vmcore:
    """Read a vmcore written by :func:`write_vmcore` (or any ELF64 core with VMCOREINFO).

    Raises :class:`VmcoreError` naming the file when it is not ELF, not a 64-bit core, of
    another arch than ``arch``, truncated, or lacks the VMCOREINFO note.
    """
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            return _read(p, fh, arch)
    except OSError as exc:
        raise VmcoreError(f"cannot read vmcore {str(p)!r}: {exc.strerror or exc}") from exc


def _read(p: Path, fh: IO[bytes], arch: str | None) -> Vmcore:
    size = os.fstat(fh.fileno()).st_size
    head = fh.read(64)
    if head[:4] != ELF_MAGIC:
        raise VmcoreError(f"{str(p)!r} is not an ELF file (no \\x7fELF magic)")
    if len(head) < 64 or head[4] != ELFCLASS64:
        raise VmcoreError(f"{str(p)!r} is not an ELF64 file or its header is truncated")
    bo = {1: "little", 2: "big"}.get(head[5])
    if bo is None:
        raise VmcoreError(f"{str(p)!r}: unknown ELF byte order {head[5]}")
    e = ">" if bo == "big" else "<"
    fields = struct.unpack(e + _EHDR, head)
    etype, machine, phoff, phentsize, phnum = fields[1], fields[2], fields[5], fields[9], fields[10]
    if etype != ET_CORE:
        raise VmcoreError(f"{str(p)!r} is an ELF file of type {etype}, not a core (ET_CORE)")
    got = ARCH_OF_MACHINE.get(machine, f"ELF machine {machine}")
    if arch is not None and got != arch:
        raise VmcoreError(f"{str(p)!r} is a vmcore of {got}, not of {arch}")
    if got not in ELF_MACHINE:
        raise VmcoreError(f"{str(p)!r}: {got} is not an arch mixedmap models")
    if phoff + phnum * phentsize > size:
        raise VmcoreError(f"{str(p)!r} is truncated: program headers end past the file's {size} bytes")
    fh.seek(phoff)
    phdrs = [struct.unpack(e + _PHDR, fh.read(phentsize)[: struct.calcsize(_PHDR)]) for _ in range(phnum)]
    info: dict[str, str] = {}
    segments: list[tuple[int, int, int]] = []
    mem = PhysMem()
    for ptype, _flags, off, vaddr, paddr, filesz, _memsz, _align in phdrs:
        if off + filesz > size:
            raise VmcoreError(
                f"{str(p)!r} is truncated: segment at file offset {off:#x} + {filesz:#x} "
                f"ends past the file's {size:#x} bytes"
            )
        if ptype == PT_NOTE:
            fh.seek(off)
            info.update(_parse_notes(fh.read(filesz), e))
        elif ptype == PT_LOAD:
            segments.append((paddr, vaddr, filesz))
            _load_segment(fh, mem, off, paddr, filesz)
    if "OSRELEASE" not in info and "PAGESIZE" not in info:
        raise VmcoreError(f"{str(p)!r} has no VMCOREINFO note")
    return Vmcore(path=p, arch=got, byteorder=bo, vmcoreinfo=info, segments=tuple(segments), mem=mem)


def _parse_notes(data: bytes, e: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos + 12 <= len(data):
        namesz, descsz, _type = struct.unpack_from(e + _NHDR, data, pos)
        pos += 12
        name = data[pos : pos + namesz].rstrip(b"\0")
        pos += namesz + (-namesz % 4)
        desc = data[pos : pos + descsz]
        pos += descsz + (-descsz % 4)
        if name == NOTE_NAME:
            for line in desc.decode(errors="replace").splitlines():
                key, sep, value = line.partition("=")
                if sep:
                    out[key] = value
    return out


def _load_segment(fh: IO[bytes], mem: PhysMem, off: int, paddr: int, size: int) -> None:
    """Copy a segment's non-zero blocks into ``mem``, skipping file holes where the OS tells."""
    seek_data = getattr(os, "SEEK_DATA", None)
    pos = 0
    while pos < size:
        if seek_data is not None:
            try:
                nxt = os.lseek(fh.fileno(), off + pos, seek_data) - off
            except OSError:
                return  # only a hole is left
            if nxt >= size:
                return
            pos = max(pos, nxt - nxt % BLOCK_SIZE)
        fh.seek(off + pos)
        chunk = fh.read(min(256 * BLOCK_SIZE, size - pos))
        if not chunk:
            return
        for b in range(0, len(chunk), BLOCK_SIZE):
            block = chunk[b : b + BLOCK_SIZE]
            if block.count(0) != len(block):
                mem.write(paddr + pos + b, block)
        pos += len(chunk)
