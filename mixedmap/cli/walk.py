"""``mixedmap walk``: one virtual address through every page-table level."""

from __future__ import annotations

from typing import Any

import click

from mixedmap.cli.common import (
    Ctx,
    arch_mode_options,
    arch_options,
    emit_json,
    json_option,
    keyed_table,
    out_console,
    parse_int,
)
from mixedmap.dump import load_raw
from mixedmap.machine import Machine
from mixedmap.pgtable import PageTable
from mixedmap.phys.mem import PhysMem
from mixedmap.vmcore import ELF_MAGIC, read_vmcore


def _load_image(path: str, arch: str) -> tuple[PhysMem, list[int]]:
    """The physical memory of a raw image or a vmcore (ELF), and the vmcore's root registers.

    A vmcore must be one of ``arch`` (:func:`mixedmap.vmcore.read_vmcore` raises a
    VmcoreError naming the file when it is of another arch, truncated or not a core).
    """
    with open(path, "rb") as fh:
        is_elf = fh.read(4) == ELF_MAGIC
    if not is_elf:
        return load_raw(path), []
    core = read_vmcore(path, arch)
    roots = [int(r, 16) for r in core.vmcoreinfo.get("MIXEDMAP_ROOTS", "").split(",") if r]
    return core.mem, roots


@click.command()
@arch_mode_options
@click.option(
    "--map", "maps", multiple=True, metavar="VA=PFN[:PROT]", help="Map VA to PFN first; repeatable."
)
@click.option(
    "--image",
    type=click.Path(exists=True, dir_okay=False),
    help="Walk a physical image instead: a raw image or a NAME.vmcore (mixedmap dump).",
)
@click.option(
    "--root",
    default=None,
    help="Root register value (CR3/ASCE/PGD) for --image; a vmcore's default: its first MIXEDMAP_ROOTS.",
)
@json_option
@click.argument("va")
@click.pass_obj
def walk(
    obj: Ctx,
    arch: str,
    kernel: str | None,
    mode: str | None,
    opt: tuple[str, ...],
    maps: tuple[str, ...],
    image: str | None,
    root: str | None,
    as_json: bool,
    va: str,
) -> None:
    """Walk VA level by level: indices, entry addresses and the entries read."""
    options = arch_options(opt, mode)
    address = parse_int(va)
    if image:
        bm = obj.registry.bind(arch).mode(kernel, **options)
        mem, roots = _load_image(image, bm.fmt.arch)
        if root is None and not roots:
            raise click.BadParameter("--image needs --root (a raw image does not say its root register)")
        pt = PageTable.attach(mem, bm, parse_int(root) if root is not None else roots[0])
    else:
        machine = Machine(arch, kernel, ram="1G", registry=obj.registry, **options)
        pt = machine.new_pagetable()
        for spec in maps or (f"{address & ~(machine.page_size - 1):#x}=0x1234",):
            target, _, rest = spec.partition("=")
            pfn_s, _, prot = rest.partition(":")
            pt.map(parse_int(target) & ~(machine.page_size - 1), parse_int(pfn_s), prot or "rw")
    steps = pt.walk(address)
    leaf = pt.lookup(address)
    rec: dict[str, Any] = {
        "arch": pt.fmt.arch,
        "mode": pt.fmt.mode,
        "kernel": pt.fmt.profile,
        "root": f"{pt.root:#x}",
        "root_name": pt.fmt.root_name,
        "va": f"{address:#x}",
        "steps": [
            {
                "level": s.level,
                "hw_name": s.hw_name,
                "table_pa": f"{s.table_pa:#x}",
                "index": s.index,
                "entry_pa": f"{s.entry_pa:#x}",
                "value": f"{s.value:#018x}",
                "kind": s.kind,
                "flags": list(s.flags),
            }
            for s in steps
        ],
        "pa": None if leaf is None else f"{leaf.pa:#x}",
        "page_size": None if leaf is None else leaf.page_size,
    }
    if as_json:
        emit_json(rec)
        return
    out = out_console()
    out.print(
        f"{rec['arch']}/{rec['mode']} kernel {rec['kernel']}  {rec['root_name']}={rec['root']}  VA {rec['va']}"
    )
    table = keyed_table(["level"], ["hw", "table", "index", "entry @", "value", "kind", "flags"])
    for s in rec["steps"]:
        table.add_row(
            s["level"],
            s["hw_name"],
            s["table_pa"],
            str(s["index"]),
            s["entry_pa"],
            s["value"],
            s["kind"],
            " ".join(s["flags"]),
        )
    out.print(table)
    out.print(f"-> PA {rec['pa']} (page size {rec['page_size']:#x})" if leaf else "-> not mapped")
