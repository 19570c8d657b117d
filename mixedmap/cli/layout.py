"""``mixedmap layout``: an entry's bits drawn 16 a row, with a legend of its fields."""

from __future__ import annotations

from collections.abc import Sequence

import click
from rich.table import Table
from rich.text import Text

from mixedmap.arch import BitField
from mixedmap.cli.common import Ctx, arch_mode_options, emit_json, json_option, keyed_table, out_console
from mixedmap.cli.pte import bits_of, fields_for

_PALETTE = (
    "cyan",
    "magenta",
    "green",
    "yellow",
    "blue",
    "red",
    "bright_cyan",
    "bright_magenta",
    "bright_green",
)


def _bit_owner(fields: Sequence[BitField], width: int) -> list[str]:
    owner = [""] * width
    for f in fields:
        for b in range(width):
            if f.mask >> b & 1:
                owner[b] = f.name if not owner[b] else owner[b] + "/" + f.name
    return owner


@click.command()
@arch_mode_options
@click.option("--level", "-l", default=None, help="Upper level to draw (default: the PTE).")
@json_option
@click.pass_obj
def layout(
    obj: Ctx,
    arch: str,
    kernel: str | None,
    mode: str | None,
    opt: tuple[str, ...],
    level: str | None,
    as_json: bool,
) -> None:
    """Draw the entry bit layout, 16 bits a row, most significant first."""
    bm = obj.mode(arch, kernel, mode, opt)
    fmt = bm.fmt
    fields = fields_for(fmt, level)
    width = fmt.entry_size * 8
    owner = _bit_owner(fields, width)
    if as_json:
        emit_json(
            {
                "arch": fmt.arch,
                "mode": fmt.mode,
                "kernel": fmt.profile,
                "level": level or fmt.levels[-1].name,
                "byteorder": fmt.byteorder,
                "bits": {str(b): owner[b] for b in range(width) if owner[b]},
                "fields": [
                    {"name": f.name, "mask": hex(f.mask), "kind": f.kind, "doc": f.doc} for f in fields
                ],
            }
        )
        return
    colour = {f.name: _PALETTE[k % len(_PALETTE)] for k, f in enumerate(fields)}
    out = out_console()
    out.print(
        f"[bold]{fmt.arch}/{fmt.mode}[/bold] kernel {fmt.profile}: {level or fmt.levels[-1].name} entry, "
        f"{width} bits, {fmt.byteorder}-endian in memory"
        + (f", special bit {fmt.special_mask:#x}" if fmt.special_mask is not None and not level else "")
    )
    for top in range(width - 1, -1, -16):
        # 16 fixed 5-wide cells without a box: 80 columns, bit names cut to 4 on purpose
        table = Table(show_header=True, show_lines=False, padding=(0, 0), box=None)
        cells = []
        for b in range(top, top - 16, -1):
            table.add_column(Text(f"{b:>2}", style="dim"), justify="center", width=5, no_wrap=True)
            name = owner[b].split("/")[0]
            # A field spanning several bits is named once, at its top bit in this row.
            continued = b < top and b + 1 < width and owner[b + 1].split("/")[0] == name
            label = ("────" if continued else name[:4]) if name else "·"
            cells.append(Text(label, style=colour.get(name, "dim")))
        table.add_row(*cells)
        out.print(table)
    legend = keyed_table(["name"], ["bits", "mask", "kind", "meaning"], title="fields")
    for f in fields:
        legend.add_row(Text(f.name, style=colour[f.name]), bits_of(f), f"{f.mask:#x}", f.kind, f.doc)
    out.print(legend)
