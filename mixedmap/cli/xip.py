"""``mixedmap xip drivers|create``: the arches' XIP block-device models."""

from __future__ import annotations

from typing import Any

import click

from mixedmap.cli.common import (
    Ctx,
    arch_mode_options,
    arch_option,
    arch_options,
    emit_json,
    json_option,
    kernel_option,
    keyed_table,
    out_console,
    parse_opt,
)
from mixedmap.errors import MixedmapError
from mixedmap.machine import Machine
from mixedmap.profiles import get_profile


@click.group()
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
        emit_json(rows)
        return
    table = keyed_table(
        ["driver"], ["profiles", "params", "description"], title=f"{binding.name} XIP driver models"
    )
    for r in rows:
        params = "\n".join(f"{k}: {v}" for k, v in r["params"].items())
        table.add_row(r["name"], ", ".join(r["profiles"]) or "all", params, r["description"])
    out_console().print(table)


@xip.command("create")
@arch_mode_options
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
    machine = Machine(arch, kernel, ram=ram, registry=obj.registry, **arch_options(opt, mode))
    device = machine.create_xip_device(driver, **parse_opt(params))
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
        emit_json(rec)
        return
    d = rec["device"]
    table = keyed_table(
        [""],
        [""],
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
    out_console().print(table)
