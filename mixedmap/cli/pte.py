"""``mixedmap pte decode|encode``: an entry value, bit by bit, both ways."""

from __future__ import annotations

from typing import Any

import click
import numpy as np
from rich.text import Text

from mixedmap.arch import BitField, PageTableFormat
from mixedmap.cli.common import (
    Ctx,
    arch_mode_options,
    emit_json,
    json_option,
    keyed_table,
    out_console,
    parse_int,
)
from mixedmap.pgtable import decode_bits, pte_helpers
from mixedmap.plugin.registry import BoundMode


def fields_for(fmt: PageTableFormat, level: str | None) -> tuple[BitField, ...]:
    """The bits of a ``level`` entry (None or the last level: the PTE's)."""
    if level is None or level == fmt.levels[-1].name:
        return fmt.pte_bits
    try:
        return fmt.level(level).bits
    except KeyError:
        raise click.BadParameter(
            f"level {level!r}; {fmt.arch} has {', '.join(lv.name for lv in fmt.levels)}"
        ) from None


def bits_of(f: BitField) -> str:
    """``hi:lo`` of a field, or the one bit."""
    return f"{f.shift + f.width - 1}:{f.shift}" if f.width > 1 else str(f.shift)


def _decode(bm: BoundMode, value: int, level: str | None) -> dict[str, Any]:
    fmt = bm.fmt
    fields = fields_for(fmt, level)
    rec: dict[str, Any] = {
        "arch": fmt.arch,
        "mode": fmt.mode,
        "kernel": fmt.profile,
        "value": f"{value:#018x}",
        "bytes": value.to_bytes(fmt.entry_size, fmt.byteorder).hex(" "),
        "byteorder": fmt.byteorder,
        "fields": [
            {
                "name": f.name,
                "mask": f"{f.mask:#x}",
                "bits": bits_of(f),
                "value": hex((value & f.mask) >> f.shift) if f.kind == "field" else bool(value & f.mask),
                "kind": f.kind,
                "doc": f.doc,
            }
            for f in fields
        ],
        "set": list(decode_bits(value, fields)),
    }
    if level is None or level == fmt.levels[-1].name:
        rec["helpers"] = pte_helpers(bm, value)
    return rec


@click.group()
def pte() -> None:
    """Decode or encode entry values."""


@pte.command("decode")
@arch_mode_options
@click.option("--level", "-l", default=None, help="Upper level whose entry this is (default: the PTE).")
@json_option
@click.argument("value")
@click.pass_obj
def pte_decode(
    obj: Ctx,
    arch: str,
    kernel: str | None,
    mode: str | None,
    opt: tuple[str, ...],
    level: str | None,
    as_json: bool,
    value: str,
) -> None:
    """Name every bit and field of VALUE."""
    bm = obj.mode(arch, kernel, mode, opt)
    rec = _decode(bm, parse_int(value), level)
    if as_json:
        emit_json(rec)
        return
    out = out_console()
    out.print(
        f"[bold]{rec['value']}[/bold]  {rec['arch']}/{rec['mode']} kernel {rec['kernel']}  bytes in memory ({rec['byteorder']}): {rec['bytes']}"
    )
    table = keyed_table(["field"], ["bits", "mask", "value", "kind", "meaning"])
    for f in rec["fields"]:
        v = f["value"]
        shown = Text(str(v), style="bold green" if v not in (False, "0x0") else "dim")
        table.add_row(f["name"], f["bits"], f["mask"], shown, f["kind"], f["doc"])
    out.print(table)
    if "helpers" in rec:
        out.print("  ".join(f"{k}={v}" for k, v in rec["helpers"].items()))


@pte.command("encode")
@arch_mode_options
@click.option("--pfn", required=True, help="Page frame number.")
@click.option("--prot", default="rw", show_default=True, help="r/rw/rx/rwx/none, a PAGE_* name, or a number.")
@click.option("--private", is_flag=True, help="Use the private (COW) protection for r/rw/rx/rwx.")
@click.option("--set", "set_bits", multiple=True, metavar="BIT", help="Also set this named bit; repeatable.")
@click.option("--special", is_flag=True, help="pte_mkspecial the result.")
@click.option("--dirty", is_flag=True, help="pte_mkdirty the result.")
@json_option
@click.pass_obj
def pte_encode(
    obj: Ctx,
    arch: str,
    kernel: str | None,
    mode: str | None,
    opt: tuple[str, ...],
    pfn: str,
    prot: str,
    private: bool,
    set_bits: tuple[str, ...],
    special: bool,
    dirty: bool,
    as_json: bool,
) -> None:
    """Build a PTE with pfn_pte(PFN, PROT) and the arch's helpers."""
    bm = obj.mode(arch, kernel, mode, opt)
    fmt, ops = bm.fmt, bm.mode.ops
    named = fmt.protections_map
    if prot in named:
        pgprot = named[prot]
    elif prot[:1].isdigit():
        pgprot = parse_int(prot)
    else:
        try:
            pgprot = fmt.prot(prot, shared=not private)
        except ValueError as exc:
            raise click.BadParameter(f"{exc}; or one of {', '.join(named)}") from None
    frame = parse_int(pfn)
    if not 0 <= frame < fmt.max_pfn:
        raise click.BadParameter(f"pfn {frame:#x} is beyond {fmt.pa_bits} physical address bits")
    value = int(ops.pfn_pte(frame, pgprot))
    by_name = {f.name: f for f in fmt.pte_bits}
    for name in set_bits:
        if name not in by_name:
            raise click.BadParameter(f"unknown bit {name!r}; bits: {', '.join(by_name)}")
        value |= by_name[name].mask
    if dirty:
        value = int(ops.pte_mkdirty(value))
    if special:
        value = int(bm.pte_mkspecial(np.array([value], dtype=np.uint64))[0])
    rec = _decode(bm, value, None)
    if as_json:
        emit_json(rec)
        return
    out_console().print(
        f"[bold]{rec['value']}[/bold]  bytes in memory ({rec['byteorder']}): {rec['bytes']}  set: {', '.join(rec['set'])}"
    )
