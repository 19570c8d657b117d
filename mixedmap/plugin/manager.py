"""Loading arch plugins from entry points, with every failure contained and named.

A broken third-party plugin must not take the other arches down: each entry point is loaded,
registered and validated on its own, and a failure becomes a :class:`PluginLoadReport` that
names the distribution and entry point. Asking for that arch later raises the recorded error.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Any

import attrs
import pluggy

from mixedmap._log import get_logger
from mixedmap.arch import ArchSpec, Support
from mixedmap.errors import ArchSpecError, PluginError
from mixedmap.plugin import API_VERSION, NAME
from mixedmap.plugin.sparsemem import DefaultPfnValid
from mixedmap.plugin.spec import MixedmapSpecs

log = get_logger("mixedmap.plugin")

PRIMITIVES = ("mixedmap_pte_special", "mixedmap_pte_mkspecial", "mixedmap_pfn_valid")
DISABLE_ENV = "MIXEDMAP_DISABLE_PLUGINS"


@attrs.frozen(kw_only=True)
class PluginLoadReport:
    """What happened to one entry point."""

    entry_point: str
    value: str
    distribution: str
    version: str
    arch: str | None = None
    error: str | None = None
    disabled: bool = False

    @property
    def where(self) -> str:
        return f"distribution {self.distribution!r} {self.version}, entry point {self.entry_point!r} = {self.value!r}"


@attrs.define(eq=False)
class LoadedArch:
    """A validated arch plugin: its spec and the plugin object that produced it."""

    spec: ArchSpec
    plugin: object
    report: PluginLoadReport


def disabled_from_env() -> tuple[str, ...]:
    raw = os.environ.get(DISABLE_ENV, "")
    return tuple(n.strip() for n in raw.split(",") if n.strip())


def new_plugin_manager() -> pluggy.PluginManager:
    """A fresh manager with the specs and the core's default pfn_valid (no arches yet)."""
    pm = pluggy.PluginManager(NAME)
    pm.add_hookspecs(MixedmapSpecs)
    pm.register(DefaultPfnValid(), name="mixedmap.default_pfn_valid")
    return pm


def _implemented(plugin: object) -> set[str]:
    return {n for n in dir(plugin) if n.startswith("mixedmap_") and callable(getattr(plugin, n, None))}


def validate_arch_plugin(
    pm: pluggy.PluginManager,
    plugin: object,
    name: str,
    taken: dict[str, PluginLoadReport],
    report: PluginLoadReport,
) -> ArchSpec:
    """Register ``plugin`` and check it; on any error it is unregistered again."""
    specs = {n for n in dir(MixedmapSpecs) if n.startswith("mixedmap_")}
    unknown = sorted(_implemented(plugin) - specs)
    if unknown:
        raise PluginError(
            f"{report.where}: unknown hook(s) {', '.join(unknown)} (known: {', '.join(sorted(specs))})"
        )
    try:
        pm.register(plugin, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginError(f"{report.where}: invalid hook implementation: {exc}") from exc
    try:
        callers = pm.get_hookcallers(plugin) or []
        pending = sorted(hc.name for hc in callers if hc.spec is None)
        if pending:
            raise PluginError(
                f"{report.where}: unknown hook(s) {', '.join(pending)} (known: {', '.join(sorted(specs))})"
            )
        has = {hc.name for hc in callers}
        impls = [i for i in pm.hook.mixedmap_arch_spec.get_hookimpls() if i.plugin is plugin]
        if len(impls) != 1:
            raise PluginError(f"{report.where}: must implement mixedmap_arch_spec exactly once")
        try:
            spec = impls[0].function()
        except Exception as exc:
            raise PluginError(
                f"{report.where}: mixedmap_arch_spec raised {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(spec, ArchSpec):
            raise PluginError(
                f"{report.where}: mixedmap_arch_spec returned {type(spec).__name__}, expected mixedmap.ArchSpec"
            )
        if spec.api_version != API_VERSION:
            raise PluginError(
                f"{report.where}: api_version {spec.api_version}, this mixedmap speaks {API_VERSION}"
            )
        special_hooks = {"mixedmap_pte_special", "mixedmap_pte_mkspecial"} & has
        if len(special_hooks) == 1:
            raise ArchSpecError(f"{report.where}: implements {special_hooks.pop()} without its partner")
        if (spec.caps.pte_special is Support.YES) != bool(special_hooks):
            raise ArchSpecError(
                f"{report.where}: arch {spec.name!r} declares pte_special={spec.caps.pte_special.value} "
                f"but {'implements' if special_hooks else 'does not implement'} the pte_special hooks"
            )
        for n in (spec.name, *spec.aliases):
            if n in taken:
                raise PluginError(
                    f"{report.where}: arch name {n!r} is already provided by {taken[n].where}; "
                    f"disable one with {DISABLE_ENV}={report.entry_point} or --disable-plugin"
                )
        return spec
    except Exception:
        pm.unregister(plugin)
        raise


def load_arch_plugins(
    pm: pluggy.PluginManager,
    *,
    disable: Iterable[str] = (),
    entry_points: Sequence[metadata.EntryPoint] | None = None,
    extra: Iterable[tuple[str, object]] = (),
) -> tuple[dict[str, LoadedArch], list[PluginLoadReport]]:
    """Load every ``mixedmap`` entry point (and ``extra`` (name, plugin) pairs) into ``pm``."""
    blocked = set(disable)
    eps = list(metadata.entry_points(group=NAME)) if entry_points is None else list(entry_points)
    loaded: dict[str, LoadedArch] = {}
    taken: dict[str, PluginLoadReport] = {}
    reports: list[PluginLoadReport] = []
    candidates: list[tuple[PluginLoadReport, Any]] = []
    for ep in sorted(eps, key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else "<unknown>"
        version = ep.dist.version if ep.dist is not None else "?"
        report = PluginLoadReport(entry_point=ep.name, value=ep.value, distribution=dist, version=version)
        if ep.name in blocked or dist in blocked:
            reports.append(attrs.evolve(report, disabled=True))
            log.debug("plugin_disabled", entry_point=ep.name, distribution=dist)
            continue
        candidates.append((report, ep))
    for name, obj in extra:
        candidates.append(
            (
                PluginLoadReport(entry_point=name, value=repr(obj), distribution="<registered>", version="-"),
                obj,
            )
        )
    for report, source in candidates:
        try:
            plugin = source.load() if isinstance(source, metadata.EntryPoint) else source
        except Exception as exc:
            err = f"{report.where}: import failed: {type(exc).__name__}: {exc}"
            reports.append(attrs.evolve(report, error=err))
            log.warning("plugin_load_failed", entry_point=report.entry_point, error=err)
            continue
        try:
            spec = validate_arch_plugin(pm, plugin, report.entry_point, taken, report)
        except PluginError as exc:
            reports.append(attrs.evolve(report, error=str(exc)))
            log.warning("plugin_load_failed", entry_point=report.entry_point, error=str(exc))
            continue
        report = attrs.evolve(report, arch=spec.name)
        reports.append(report)
        loaded[spec.name] = LoadedArch(spec=spec, plugin=plugin, report=report)
        for n in (spec.name, *spec.aliases):
            taken[n] = report
        log.debug("arch_registered", arch=spec.name, distribution=report.distribution)
    return loaded, reports
