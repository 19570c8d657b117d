"""The ``mixedmap`` command line: the only application in the package.

It is the one place that configures logging (to stderr; stdout belongs to reports), and
every command that prints a table also prints JSON with ``--json`` for scripts.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import click
import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mixedmap._log import render_json
from mixedmap.arch import BitField, PageTableFormat
from mixedmap.errors import MixedmapError
from mixedmap.machine import Machine
from mixedmap.pgtable import PageTable, decode_bits
from mixedmap.plugin.registry import ArchBinding, ArchRegistry, BoundMode
from mixedmap.profiles import PROFILES, get_profile
from mixedmap.scenario.cli import run_cmd

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def _parse_int(text: str) -> int:
    try:
        return int(text.replace("_", ""), 0)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an integer (decimal or 0x-hex)") from None


def _parse_opt(pairs: Sequence[str]) -> dict[str, object]:
    opts: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise click.BadParameter(f"--opt takes KEY=VALUE, got {pair!r}")
        key, raw = pair.split("=", 1)
        val: object
        if raw.lower() in ("true", "false", "yes", "no"):
            val = raw.lower() in ("true", "yes")
        else:
            try:
                val = int(raw, 0)
            except ValueError:
                val = raw
        opts[key] = val
    return opts


def _emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=lambda o: hex(o) if isinstance(o, int) else str(o)))


class Ctx:
    """Per-invocation state: the registry, built only when a command needs arches."""

    def __init__(self, disable: tuple[str, ...]) -> None:
        self.disable = disable
        self._registry: ArchRegistry | None = None

    @property
    def registry(self) -> ArchRegistry:
        if self._registry is None:
            self._registry = ArchRegistry.load(disable=self.disable or None)
        return self._registry

    def mode(self, arch: str, kernel: str | None, mode: str | None, opts: Sequence[str]) -> BoundMode:
        options = _parse_opt(opts)
        if mode:
            options["mode"] = mode
        return self.registry.bind(arch).mode(kernel, **options)


class _StderrHandler(logging.Handler):
    """The CLI's one handler: writes to whatever sys.stderr is at the time (in-process
    callers and tests swap it), and is a class of its own so repeated runs do not stack."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _configure_logging(verbose: int, log_json: bool) -> None:
    logger = logging.getLogger("mixedmap")
    logger.setLevel(max(logging.DEBUG, logging.WARNING - 10 * verbose))
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        logger.addHandler(_StderrHandler())
    render_json(log_json)


arch_option = click.option("--arch", "-a", required=True, help="Arch name as `uname -m` prints it.")
kernel_option = click.option("--kernel", "-k", default=None, help="Kernel profile (default 2.6.27).")
mode_option = click.option("--mode", "-m", default=None, help="Arch mode (e.g. la57, region2, radix-4k).")
opt_option = click.option(
    "--opt", "-o", multiple=True, metavar="KEY=VALUE", help="Arch option, e.g. mmu=radix."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--disable-plugin",
    "disable",
    multiple=True,
    metavar="NAME",
    help="Do not load this arch plugin (entry point or distribution name); repeatable. "
    "Overrides $MIXEDMAP_DISABLE_PLUGINS.",
)
@click.option("-v", "--verbose", count=True, help="Log more to stderr.")
@click.option("--log-json", is_flag=True, help="Log as JSON lines.")
@click.version_option(package_name="mixedmap")
@click.pass_context
def main(ctx: click.Context, disable: tuple[str, ...], verbose: int, log_json: bool) -> None:
    """mixedmap: Linux's special-mapping machinery as an executable, bit-exact model."""
    _configure_logging(verbose, log_json)
    ctx.obj = Ctx(disable)


# -- arches ------------------------------------------------------------------------------
def _arch_record(b: ArchBinding) -> dict[str, Any]:
    spec = b.spec
    special = {}
    for p in spec.profiles:
        m = spec.select(p, {})
        special[p] = None if m.fmt.special_mask is None else hex(m.fmt.special_mask)
    return {
        "name": spec.name,
        "aliases": list(spec.aliases),
        "distribution": b.report.distribution,
        "version": b.report.version,
        "entry_point": b.report.entry_point,
        "description": spec.description,
        "profiles": list(spec.profiles),
        "special_bit": special,
        "pte_special": spec.caps.pte_special.value,
        "modes": [
            {
                "name": m.name,
                "profile": m.profile,
                "default": m.default,
                "options": dict(m.options),
                "levels": [lv.name for lv in m.fmt.levels],
                "page_size": m.fmt.page_size,
                "byteorder": m.fmt.byteorder,
                "special_bit": None if m.fmt.special_mask is None else hex(m.fmt.special_mask),
                "description": m.description,
            }
            for m in spec.modes
        ],
        "unsupported": [
            {"options": dict(u.options), "profiles": list(u.profiles), "reason": u.reason}
            for u in spec.unsupported
        ],
        "xip_drivers": [getattr(d, "name", str(d)) for d in b.xip_drivers],
        "hooks": list(b.implemented),
    }


@main.command()
@json_option
@click.pass_obj
def arches(obj: Ctx, as_json: bool) -> None:
    """List installed arches: distribution, modes, profiles, special bit, XIP drivers."""
    reg = obj.registry
    records = [_arch_record(b) for b in reg]
    failures = [{"entry_point": r.entry_point, "error": r.error} for r in reg.reports if r.error]
    disabled = [r.entry_point for r in reg.reports if r.disabled]
    if as_json:
        _emit_json({"arches": records, "failed": failures, "disabled": disabled})
        return
    table = Table(title="installed arches", show_lines=True)
    for col in ("arch", "distribution", "modes (profile: modes)", "special bit", "XIP drivers"):
        table.add_column(col)
    for rec in records:
        by_profile: dict[str, list[str]] = {}
        for m in rec["modes"]:
            names = by_profile.setdefault(m["profile"], [])
            label = m["name"] + ("*" if m["default"] else "")
            if m["default"] and m["name"] in names:
                names[names.index(m["name"])] = label
            elif label not in names and m["name"] + "*" not in names:
                names.append(label)
        modes = "\n".join(f"{p}: {', '.join(v)}" for p, v in by_profile.items())
        special = "\n".join(f"{p}: {v or 'none'}" for p, v in rec["special_bit"].items())
        table.add_row(
            rec["name"],
            f"{rec['distribution']} {rec['version']}",
            modes,
            special,
            ", ".join(rec["xip_drivers"]) or "-",
        )
    out.print(table)
    out.print("* = default mode for the profile")
    for f in failures:
        err.print(f"[red]failed:[/red] {f['error']}")
    if disabled:
        err.print(f"disabled: {', '.join(disabled)}")
    if not records:
        err.print("no arch plugin installed: pip install mixedmap-x86 mixedmap-s390 mixedmap-powerpc")


# -- pte decode / encode -------------------------------------------------------------------
def _fields_for(fmt: PageTableFormat, level: str | None) -> tuple[BitField, ...]:
    if level is None or level == fmt.levels[-1].name:
        return fmt.pte_bits
    try:
        return fmt.level(level).bits
    except KeyError:
        raise click.BadParameter(
            f"level {level!r}; {fmt.arch} has {', '.join(lv.name for lv in fmt.levels)}"
        ) from None


def _decode(bm: BoundMode, value: int, level: str | None) -> dict[str, Any]:
    fmt, ops = bm.fmt, bm.mode.ops
    fields = _fields_for(fmt, level)
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
                "bits": f"{f.shift + f.width - 1}:{f.shift}" if f.width > 1 else str(f.shift),
                "value": hex((value & f.mask) >> f.shift) if f.kind == "field" else bool(value & f.mask),
                "kind": f.kind,
                "doc": f.doc,
            }
            for f in fields
        ],
        "set": list(decode_bits(value, fields)),
    }
    if level is None or level == fmt.levels[-1].name:
        arr = np.array([value], dtype=np.uint64)
        rec["helpers"] = {
            "pte_none": bool(ops.pte_none(value)),
            "pte_present": bool(ops.pte_present(value)),
            "pte_pfn": hex(int(ops.pte_pfn(value))),
            "pte_write": bool(ops.pte_write(value)),
            "pte_dirty": bool(ops.pte_dirty(value)),
            "pte_young": bool(ops.pte_young(value)),
            "pte_special": bool(bm.pte_special(arr)[0]) if bm.has_special else None,
        }
    return rec


@main.group()
def pte() -> None:
    """Decode or encode entry values."""


@pte.command("decode")
@arch_option
@kernel_option
@mode_option
@opt_option
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
    rec = _decode(bm, _parse_int(value), level)
    if as_json:
        _emit_json(rec)
        return
    out.print(
        f"[bold]{rec['value']}[/bold]  {rec['arch']}/{rec['mode']} kernel {rec['kernel']}  bytes in memory ({rec['byteorder']}): {rec['bytes']}"
    )
    table = Table()
    for col in ("field", "bits", "mask", "value", "kind", "meaning"):
        table.add_column(col)
    for f in rec["fields"]:
        v = f["value"]
        shown = Text(str(v), style="bold green" if v not in (False, "0x0") else "dim")
        table.add_row(f["name"], f["bits"], f["mask"], shown, f["kind"], f["doc"])
    out.print(table)
    if "helpers" in rec:
        out.print("  ".join(f"{k}={v}" for k, v in rec["helpers"].items()))


@pte.command("encode")
@arch_option
@kernel_option
@mode_option
@opt_option
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
        pgprot = _parse_int(prot)
    else:
        try:
            pgprot = fmt.prot(prot, shared=not private)
        except ValueError as exc:
            raise click.BadParameter(f"{exc}; or one of {', '.join(named)}") from None
    frame = _parse_int(pfn)
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
        _emit_json(rec)
        return
    out.print(
        f"[bold]{rec['value']}[/bold]  bytes in memory ({rec['byteorder']}): {rec['bytes']}  set: {', '.join(rec['set'])}"
    )


# -- walk ----------------------------------------------------------------------------------
@main.command()
@arch_option
@kernel_option
@mode_option
@opt_option
@click.option(
    "--map", "maps", multiple=True, metavar="VA=PFN[:PROT]", help="Map VA to PFN first; repeatable."
)
@click.option(
    "--image", type=click.Path(exists=True, dir_okay=False), help="Walk a raw physical image instead."
)
@click.option("--root", default=None, help="Root register value (CR3/ASCE/PGD) for --image.")
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
    options = _parse_opt(opt)
    if mode:
        options["mode"] = mode
    address = _parse_int(va)
    if image:
        if root is None:
            raise click.BadParameter("--image needs --root")
        bm = obj.registry.bind(arch).mode(kernel, **options)
        from mixedmap.phys.mem import PhysMem

        mem = PhysMem()
        mem.load(image)
        pt = PageTable.attach(mem, bm, _parse_int(root))
    else:
        machine = Machine(arch, kernel, ram="1G", registry=obj.registry, **options)
        pt = machine.new_pagetable()
        for spec in maps or (f"{address & ~(machine.page_size - 1):#x}=0x1234",):
            target, _, rest = spec.partition("=")
            pfn_s, _, prot = rest.partition(":")
            pt.map(_parse_int(target) & ~(machine.page_size - 1), _parse_int(pfn_s), prot or "rw")
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
        _emit_json(rec)
        return
    out.print(
        f"{rec['arch']}/{rec['mode']} kernel {rec['kernel']}  {rec['root_name']}={rec['root']}  VA {rec['va']}"
    )
    table = Table()
    for col in ("level", "hw", "table", "index", "entry @", "value", "kind", "flags"):
        table.add_column(col)
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


# -- layout --------------------------------------------------------------------------------
def _bit_owner(fields: Sequence[BitField], width: int) -> list[str]:
    owner = [""] * width
    for f in fields:
        for b in range(width):
            if f.mask >> b & 1:
                owner[b] = f.name if not owner[b] else owner[b] + "/" + f.name
    return owner


@main.command()
@arch_option
@kernel_option
@mode_option
@opt_option
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
    fields = _fields_for(fmt, level)
    width = fmt.entry_size * 8
    owner = _bit_owner(fields, width)
    if as_json:
        _emit_json(
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
    palette = [
        "cyan",
        "magenta",
        "green",
        "yellow",
        "blue",
        "red",
        "bright_cyan",
        "bright_magenta",
        "bright_green",
    ]
    colour = {f.name: palette[k % len(palette)] for k, f in enumerate(fields)}
    out.print(
        f"[bold]{fmt.arch}/{fmt.mode}[/bold] kernel {fmt.profile}: {level or fmt.levels[-1].name} entry, "
        f"{width} bits, {fmt.byteorder}-endian in memory"
        + (f", special bit {fmt.special_mask:#x}" if fmt.special_mask is not None and not level else "")
    )
    for top in range(width - 1, -1, -16):
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
    legend = Table(title="fields")
    for col in ("name", "bits", "mask", "kind", "meaning"):
        legend.add_column(col)
    for f in fields:
        bits_s = f"{f.shift + f.width - 1}:{f.shift}" if f.width > 1 else str(f.shift)
        legend.add_row(Text(f.name, style=colour[f.name]), bits_s, f"{f.mask:#x}", f.kind, f.doc)
    out.print(legend)


# -- XIP devices ---------------------------------------------------------------------------
@main.group()
def xip() -> None:
    """XIP block devices: the arches' driver models (brd, pmem, dcssblk, axonram)."""


@xip.command("drivers")
@arch_option
@kernel_option
@json_option
@click.pass_obj
def xip_drivers(obj: Ctx, arch: str, kernel: str | None, as_json: bool) -> None:
    """List an arch's XIP driver models and the profiles they exist in."""
    binding = obj.registry.bind(arch)
    profile = get_profile(kernel).name if kernel else None
    rows = [
        {"name": d.name, "profiles": list(d.profiles), "params": dict(d.params), "description": d.description}
        for d in binding.xip_drivers
        if profile is None or not d.profiles or profile in d.profiles
    ]
    if as_json:
        _emit_json(rows)
        return
    table = Table(title=f"{binding.name} XIP driver models")
    for col in ("driver", "profiles", "params", "description"):
        table.add_column(col)
    for r in rows:
        params = "\n".join(f"{k}: {v}" for k, v in r["params"].items())
        table.add_row(r["name"], ", ".join(r["profiles"]) or "all", params, r["description"])
    out.print(table)


@xip.command("create")
@arch_option
@kernel_option
@mode_option
@opt_option
@click.option("--ram", default="1G", show_default=True, help="RAM of the machine.")
@click.option("--driver", "-d", required=True, help="Driver model (see `mixedmap xip drivers`).")
@click.option(
    "--param", "-p", "params", multiple=True, metavar="KEY=VALUE", help="Driver parameter; repeatable."
)
@click.option("--fill", type=click.Path(exists=True, dir_okay=False), help="Load this file into the device.")
@json_option
@click.pass_obj
def xip_create(
    obj: Ctx,
    arch: str,
    kernel: str | None,
    mode: str | None,
    opt: tuple[str, ...],
    ram: str,
    driver: str,
    params: tuple[str, ...],
    fill: str | None,
    as_json: bool,
) -> None:
    """Create a device on a fresh machine: physical range, struct pages, memmap cost."""
    options = _parse_opt(opt)
    if mode:
        options["mode"] = mode
    machine = Machine(arch, kernel, ram=ram, registry=obj.registry, **options)
    device = machine.create_xip_device(driver, **_parse_opt(params))
    if fill:
        device.fill(fill)
    rec: dict[str, Any] = {
        "arch": machine.arch,
        "kernel": machine.profile.name,
        "device": device.describe(),
        "direct_access(0)": None,
        "machine": machine.accounting(),
    }
    try:
        kaddr, pfn = device.direct_access(0)
        rec["direct_access(0)"] = {
            "kaddr": f"{kaddr:#x}",
            "pfn": f"{pfn:#x}",
            "pfn_valid": bool(machine.pfn_valid(pfn)[0]),
        }
    except MixedmapError as exc:
        rec["direct_access(0)"] = {"error": str(exc)}
    if as_json:
        _emit_json(rec)
        return
    d = rec["device"]
    table = Table(
        title=f"{machine.arch} kernel {machine.profile.name}: {d['driver']} device {d['name']}",
        show_header=False,
    )
    for key, value in d.items():
        is_addr = any(w in key for w in ("phys", "kaddr", "addr", "start", "end"))
        if isinstance(value, int) and not isinstance(value, bool):
            shown = f"{value:#x}" if is_addr else f"{value:,}"
        else:
            shown = str(value)
        table.add_row(key, shown)
    for key, value in (rec["direct_access(0)"] or {}).items():
        table.add_row(f"direct_access(0).{key}", str(value))
    table.add_row("machine memmap bytes", f"{machine.memmap_bytes():,}")
    out.print(table)


# -- traces ----------------------------------------------------------------------------------
@main.group()
def trace() -> None:
    """mm event traces (JSON lines)."""


@trace.command("summarize")
@json_option
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def trace_summarize(as_json: bool, path: str) -> None:
    """Counts per event and per kernel function of a trace file."""
    from mixedmap.trace import summarize

    try:
        rec = summarize(path)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if as_json:
        _emit_json(rec)
        return
    for title, counts in (("event", rec["events"]), ("kernel function", rec["functions"])):
        table = Table(title=f"per {title}")
        table.add_column(title)
        table.add_column("count", justify="right")
        for k, v in counts.items():
            table.add_row(k, f"{v:,}")
        out.print(table)


# -- conformance ---------------------------------------------------------------------------
@main.command(context_settings={"ignore_unknown_options": True})
@click.option(
    "--arch", "-a", "arches", multiple=True, help="Arch to test (repeatable; default: all installed)."
)
@click.option("--kernel", "-k", "kernels", multiple=True, help="Kernel profile (repeatable; default: all).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON here.")
@click.option("--junitxml", type=click.Path(dir_okay=False), help="Write JUnit XML here.")
@click.option("-n", "workers", default=None, help="pytest-xdist workers (a number or 'auto').")
@click.option("--max-examples", type=int, default=None, help="Hypothesis examples per property.")
@click.option("--thorough", is_flag=True, help="Many more examples (500 per property).")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def conformance(
    obj: Ctx,
    arches: tuple[str, ...],
    kernels: tuple[str, ...],
    json_path: str | None,
    junitxml: str | None,
    workers: str | None,
    max_examples: int | None,
    thorough: bool,
    pytest_args: tuple[str, ...],
) -> None:
    """Run the cross-arch conformance suite and print an arch x area matrix.

    Extra arguments after ``--`` go to pytest. Exit status is non-zero on any failure.
    To spread a run over hosts, give pytest-xdist's options after ``--``, e.g.
    ``-- --dist loadscope --tx ssh=user@host//python=python3`` (every host needs the same
    mixedmap and plugins installed).
    """
    import pytest as _pytest

    from mixedmap.conformance.report import MatrixReporter

    for a in arches:
        obj.registry.bind(a)  # an unknown arch fails here, listing the installed ones
    for k in kernels:
        get_profile(k)
    import os

    args = ["--pyargs", "mixedmap.conformance", "-q", "-p", "no:cacheprovider"]
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):  # else the pytest11 entry point loads it
        args += ["-p", "mixedmap.testing.pytest_plugin"]
    args += ["-o", "addopts=", "-o", "testpaths="]
    # This process imported mixedmap before pytest started: that is expected, not a problem.
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    for a in arches:
        args += ["--mixedmap-arch", a]
    for k in kernels:
        args += ["--mixedmap-kernel", get_profile(k).name]
    examples = 500 if thorough else max_examples if max_examples is not None else 25
    args += ["--mixedmap-max-examples", str(examples)]
    if workers:
        args += ["-n", str(workers)]
    if junitxml:
        args += ["--junitxml", junitxml]
    args += list(pytest_args)
    reporter = MatrixReporter()
    from mixedmap.plugin.manager import DISABLE_ENV
    from mixedmap.plugin.registry import reset_default_registry

    saved = os.environ.get(DISABLE_ENV)
    if obj.disable:  # the suite builds its own registry: tell it what this run disabled
        os.environ[DISABLE_ENV] = ",".join(obj.disable)
    reset_default_registry()
    try:
        code = _pytest.main(args, plugins=[reporter])
    finally:
        if saved is None:
            os.environ.pop(DISABLE_ENV, None)
        else:
            os.environ[DISABLE_ENV] = saved
        reset_default_registry()
    reporter.render(out)
    if json_path:
        reporter.write_json(
            json_path,
            {
                "arches": list(arches) or list(obj.registry.names),
                "kernels": list(kernels),
                "max_examples": examples,
            },
        )
    failed = int(code) not in (0,)
    if failed:
        raise click.exceptions.Exit(int(code) or 1)


@main.command()
@json_option
def profiles(as_json: bool) -> None:
    """List the kernel semantics profiles."""
    rows = [
        {"name": p.name, "summary": p.summary, "default": p == get_profile(None)} for p in PROFILES.values()
    ]
    if as_json:
        _emit_json(rows)
        return
    for r in rows:
        out.print(f"{r['name']:8} {'(default) ' if r['default'] else ''}{r['summary']}")


main.add_command(run_cmd)


def run(argv: Sequence[str] | None = None) -> int:
    """Entry point that turns mixedmap errors into one clear line and exit status 2."""
    try:
        # Without standalone mode click *returns* the code of an Exit instead of raising it.
        rv = main.main(
            args=list(argv) if argv is not None else None, prog_name="mixedmap", standalone_mode=False
        )
    except click.exceptions.Exit as exc:
        return int(exc.exit_code or 0)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err.print("aborted")
        return 1
    except MixedmapError as exc:
        err.print(f"[red]error:[/red] {exc}")
        return 2
    return rv if isinstance(rv, int) else 0


def entry() -> None:
    sys.exit(run())
