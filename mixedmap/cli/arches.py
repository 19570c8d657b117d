"""``mixedmap arches``: what is installed, from which distribution, with which modes."""

from __future__ import annotations

from typing import Any

import click

from mixedmap.arch import ReservedRange
from mixedmap.cli.common import Ctx, emit_json, err_console, json_option, keyed_table, out_console
from mixedmap.plugin.registry import ArchBinding


def _reserved(rs: tuple[ReservedRange, ...]) -> list[dict[str, Any]]:
    """Boot reservations as JSON (``anchor`` "ram": offsets from the start of RAM)."""
    return [
        {
            "name": r.name,
            "start": hex(r.start),
            "end": hex(r.end),
            "size": r.size,
            "anchor": r.anchor,
            "why": r.why,
            "kernel_ref": r.kernel_ref,
            "text": str(r),
        }
        for r in rs
    ]


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
        "reserved": {p: _reserved(spec.select(p, {}).memory.reserved) for p in spec.profiles},
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
                "reserved": _reserved(m.memory.reserved),
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


def _modes_by_profile(rec: dict[str, Any]) -> str:
    """``profile: mode*, mode`` lines, ``*`` marking the profile's default mode."""
    by_profile: dict[str, list[str]] = {}
    for m in rec["modes"]:
        names = by_profile.setdefault(m["profile"], [])
        label = m["name"] + ("*" if m["default"] else "")
        if m["default"] and m["name"] in names:
            names[names.index(m["name"])] = label
        elif label not in names and m["name"] + "*" not in names:
            names.append(label)
    return "\n".join(f"{p}: {', '.join(v)}" for p, v in by_profile.items())


def _reserved_by_profile(rec: dict[str, Any]) -> str:
    """``profiles: ranges`` lines of the default modes, profiles with the same ranges merged."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for p, rs in rec["reserved"].items():
        groups.setdefault(tuple(r["text"] for r in rs), []).append(p)
    lines = []
    for texts, ps in groups.items():
        head = f"{', '.join(ps)}:"
        lines.append(
            f"{head} {texts[0] if texts else 'none'}" if len(texts) < 2 else "\n  ".join([head, *texts])
        )
    return "\n".join(lines)


@click.command()
@json_option
@click.pass_obj
def arches(obj: Ctx, as_json: bool) -> None:
    """List installed arches: distribution, modes, profiles, special bit, the physical ranges
    the kernel reserves at boot (default mode per profile; --json: every mode), XIP drivers."""
    reg = obj.registry
    records = [_arch_record(b) for b in reg]
    failures = [{"entry_point": r.entry_point, "error": r.error} for r in reg.reports if r.error]
    disabled = [r.entry_point for r in reg.reports if r.disabled]
    if as_json:
        emit_json({"arches": records, "failed": failures, "disabled": disabled})
        return
    table = keyed_table(
        ["arch"],
        ["distribution", "modes (profile: modes)", "special bit", "reserved at boot", "XIP drivers"],
        title="installed arches",
        show_lines=True,
    )
    for rec in records:
        special = "\n".join(f"{p}: {v or 'none'}" for p, v in rec["special_bit"].items())
        table.add_row(
            rec["name"],
            f"{rec['distribution']} {rec['version']}",
            _modes_by_profile(rec),
            special,
            _reserved_by_profile(rec),
            ", ".join(rec["xip_drivers"]) or "-",
        )
    out, err = out_console(), err_console()
    out.print(table)
    out.print("* = default mode for the profile")
    for f in failures:
        err.print(f"[red]failed:[/red] {f['error']}")
    if disabled:
        err.print(f"disabled: {', '.join(disabled)}")
    if not records:
        err.print("no arch plugin installed: pip install mixedmap-x86 mixedmap-s390 mixedmap-powerpc")
