"""What ``mixedmap verify`` needs of an arch beyond its ArchSpec: its vmcore and its walkers.

An external walker is picked by what it is given, not by mixedmap's arch name: drgn chooses
its page-table iterator by the vmcore's ELF ``e_machine`` (``drgn_platform_from_elf``,
libdrgn/platform.c) and reads the VMCOREINFO keys that arch's ``arch_*.c`` wants; a
unicorn walker is code per CPU. The ArchSpec says none of that, so the arches mixedmap
ships are described here (``BUILTIN``) and a third-party plugin adds its own with an
entry point in the group ``mixedmap.verify``, named after the arch, whose value is a
:class:`VerifyTarget` (or a callable returning one)::

    [project.entry-points."mixedmap.verify"]
    myarch = "mixedmap_myarch.verify:TARGET"

An arch with no target gets no vmcore, and every walker is reported as not run, with this
hint, instead of the whole run failing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import metadata
from typing import Any

import attrs

from mixedmap._log import get_logger
from mixedmap.verify.base import Walker
from mixedmap.vmcore import ELF_MACHINE, direct_map_base

log = get_logger("mixedmap.verify")

ENTRY_POINT_GROUP = "mixedmap.verify"


@attrs.frozen(kw_only=True)
class VerifyTarget:
    """How the external walkers see one arch.

    ``elf_machine`` is the vmcore's ``e_machine`` (``include/uapi/linux/elf-em.h``);
    ``page_offset`` maps a mode name to its direct-map start (``""``: every mode), the
    ``p_vaddr`` of the PT_LOADs and the base drgn adds to a root table's PA; ``drgn`` says
    that libdrgn walks this arch's Linux tables from such a vmcore (drgn 0.3.0: x86_64,
    s390x, ppc64 radix, aarch64; ``follow_phys`` raises for the rest), ``vmcoreinfo`` adds
    the keys its walker reads; ``walkers`` are extra :class:`Walker` objects (a unicorn CPU
    of this arch, say) that the driver runs beside the built-in ones.
    """

    elf_machine: int
    page_offset: Mapping[str, int] = attrs.field(factory=dict)
    drgn: bool = False
    vmcoreinfo: Mapping[str, str] = attrs.field(factory=dict)
    walkers: tuple[Walker, ...] = ()

    def base(self, mode: str) -> int:
        """PAGE_OFFSET of ``mode``."""
        return self.page_offset.get(mode, self.page_offset.get("", 0))


def _builtin(arch: str) -> VerifyTarget:
    modes = ("la57", "") if arch == "x86_64" else ("",)
    return VerifyTarget(
        elf_machine=ELF_MACHINE[arch],
        page_offset={m: direct_map_base(arch, m) for m in modes},
        drgn=arch in ("x86_64", "s390x", "ppc64"),  # ppc64: radix only, see drgn_walker
    )


#: The arches mixedmap ships (and the riscv64 example): their vmcore is mixedmap.vmcore's own.
BUILTIN: Mapping[str, VerifyTarget] = {a: _builtin(a) for a in ELF_MACHINE}


def _entry_points() -> list[Any]:
    return list(metadata.entry_points(group=ENTRY_POINT_GROUP))


@functools.cache
def plugin_targets() -> tuple[tuple[tuple[str, VerifyTarget], ...], tuple[tuple[str, str], ...]]:
    """((arch, target) declared by installed plugins, (arch, why it could not be loaded))."""
    found: list[tuple[str, VerifyTarget]] = []
    broken: list[tuple[str, str]] = []
    for ep in _entry_points():
        where = f"entry point {ep.name} = {ep.value} in group {ENTRY_POINT_GROUP}"
        try:
            obj: object = ep.load()
            value = obj() if callable(obj) and not isinstance(obj, VerifyTarget) else obj
        except Exception as exc:  # a plugin's bug: reported, the other arches still verify
            broken.append((ep.name, f"{where} failed to load: {type(exc).__name__}: {exc}"))
            continue
        if not isinstance(value, VerifyTarget):
            broken.append((ep.name, f"{where} gave {type(value).__name__}, not a VerifyTarget"))
            continue
        found.append((ep.name, value))
    for arch, why in broken:
        log.warning("verify_target_broken", arch=arch, reason=why)
    return tuple(found), tuple(broken)


def target(arch: str) -> VerifyTarget | str:
    """The target of ``arch``, or why there is none (a plugin's declaration wins)."""
    found, broken = plugin_targets()
    declared = dict(found)
    if arch in declared:
        return declared[arch]
    if arch in dict(broken):
        return dict(broken)[arch]
    if arch in BUILTIN:
        return BUILTIN[arch]
    return (
        f"no vmcore: verify knows no ELF machine for {arch}; its plugin declares one with an entry "
        f'point in group "{ENTRY_POINT_GROUP}" giving a mixedmap.verify.targets.VerifyTarget'
    )


def extra_walkers() -> list[Walker]:
    """Walkers the installed plugins' targets bring."""
    return [w for _, t in plugin_targets()[0] for w in t.walkers]
