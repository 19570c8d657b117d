"""Arch name -> binding, with each arch's primitive hooks resolved exactly once.

Broadcasting a primitive through the manager's ``hook`` relay would reach every arch and answer with whichever
registered last; the registry instead builds one ``subset_hook_caller`` per arch that removes
the other arch plugins (non-arch plugins such as tracing wrappers stay in), and mm code calls
those per batch. One dispatch per batch keeps pluggy's cost invisible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import attrs
import numpy as np
import pluggy
from numpy.typing import NDArray

from mixedmap.arch import ArchMode, ArchSpec, PageTableFormat, Support
from mixedmap.errors import PluginError, UnknownArchError, UnsupportedOperation
from mixedmap.phys.memmap import MemMap
from mixedmap.plugin.manager import (
    PRIMITIVES,
    LoadedArch,
    PluginLoadReport,
    disabled_from_env,
    load_arch_plugins,
    new_plugin_manager,
)
from mixedmap.plugin.sparsemem import DefaultPfnValid
from mixedmap.profiles import get_profile

#: A resolved ``mixedmap_pfn_valid``: (memmap, pfns) -> bool array, or None (every impl declined).
PfnValidFn = Callable[[MemMap, NDArray[np.uint64]], Any]


def _checked(arr: Any, n: int, dtype: type, hook: str, where: str) -> Any:
    if not isinstance(arr, np.ndarray) or arr.shape != (n,) or arr.dtype != dtype:
        got = f"{type(arr).__name__} {getattr(arr, 'dtype', '')} {getattr(arr, 'shape', '')}"
        raise PluginError(
            f"{where}: {hook} returned {got}, expected a {np.dtype(dtype)} array of shape ({n},)"
        )
    return arr


def resolve_pfn_valid(caller: pluggy.HookCaller) -> tuple[PfnValidFn, bool]:
    """The arch's ``pfn_valid`` as one plain callable, resolved once when the arch is bound.

    ``pfn_valid`` is asked per fault (``vmf_insert_page_mkwrite``, ``insert_page``,
    ``vm_normal_page`` scheme B); a pluggy dispatch costs more than the SPARSEMEM test itself.
    So the implementations are read once, in the order pluggy would call them
    (``firstresult``: the first non-None answer wins), and called directly. Returns
    (function, core): ``core`` when the first implementation is the core's own
    :class:`~mixedmap.plugin.sparsemem.DefaultPfnValid` (every arch that keeps the generic
    SPARSEMEM ``pfn_valid`` of ``include/linux/mmzone.h``), so the caller may use
    :meth:`MemMap.pfn_valid` and its scalar form :meth:`MemMap.pfn_valid_one` without a
    result check. A hook wrapper (tracing, a test's spy) must see every call: then the pluggy
    caller itself is kept.
    """
    impls = caller.get_hookimpls()
    if any(i.hookwrapper or i.wrapper for i in impls):

        def via_pluggy(memmap: MemMap, pfns: NDArray[np.uint64]) -> Any:
            return caller(memmap=memmap, pfns=pfns)

        return via_pluggy, False
    order = list(reversed(impls))  # pluggy's _multicall runs the list back to front
    if order and isinstance(order[0].plugin, DefaultPfnValid):
        return MemMap.pfn_valid, True
    funcs = tuple((i.function, tuple(i.argnames)) for i in order)

    def first_result(memmap: MemMap, pfns: NDArray[np.uint64]) -> Any:
        kwargs = {"memmap": memmap, "pfns": pfns}
        for func, names in funcs:
            res = func(*[kwargs[n] for n in names])
            if res is not None:
                return res
        return None

    return first_result, False


@attrs.define(eq=False)
class ArchBinding:
    """One arch: its spec, where it came from, and its resolved primitive callers."""

    spec: ArchSpec
    report: PluginLoadReport
    _callers: dict[str, pluggy.HookCaller]
    xip_drivers: tuple[Any, ...] = ()
    #: ``mixedmap_pfn_valid`` resolved at bind time (see :func:`resolve_pfn_valid`).
    _pfn_valid_fn: PfnValidFn = attrs.field(init=False, repr=False)
    #: Whether that is the core's SPARSEMEM ``pfn_valid`` (then the scalar form needs no array).
    pfn_valid_is_core: bool = attrs.field(init=False, default=False)

    def __attrs_post_init__(self) -> None:
        self._pfn_valid_fn, self.pfn_valid_is_core = resolve_pfn_valid(self._callers["mixedmap_pfn_valid"])

    @property
    def name(self) -> str:
        return self.spec.name

    def mode(self, kernel: str | None = None, **options: object) -> BoundMode:
        """The bound mode for a kernel profile and arch options.

        Without ``kernel`` the default profile (2.6.27) is used, or, for an arch that did
        not exist then (e.g. riscv64), the newest profile it has.
        """
        profile = get_profile(kernel).name
        if kernel is None and profile not in self.spec.profiles:
            profile = self.spec.profiles[-1]
        return BoundMode(arch=self, mode=self.spec.select(profile, options))

    def pte_special(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        res = self._callers["mixedmap_pte_special"](fmt=fmt, ptes=ptes)
        return _checked(res, ptes.shape[0], np.bool_, "mixedmap_pte_special", self.report.where)  # type: ignore[no-any-return]

    def pte_mkspecial(self, fmt: PageTableFormat, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        res = self._callers["mixedmap_pte_mkspecial"](fmt=fmt, ptes=ptes)
        return _checked(res, ptes.shape[0], np.uint64, "mixedmap_pte_mkspecial", self.report.where)  # type: ignore[no-any-return]

    def pfn_valid(self, memmap: MemMap, pfns: NDArray[np.uint64]) -> NDArray[np.bool_]:
        """``pfn_valid`` over a batch through the implementation resolved at bind time."""
        if self.pfn_valid_is_core:
            return memmap.pfn_valid(pfns)
        res = self._pfn_valid_fn(memmap, pfns)
        return _checked(res, pfns.shape[0], np.bool_, "mixedmap_pfn_valid", self.report.where)  # type: ignore[no-any-return]

    def pfn_valid_scalar(self, memmap: MemMap) -> Callable[[int], bool]:
        """``pfn_valid`` of one pfn as a plain-int callable for the scalar fault paths: the
        core's :meth:`MemMap.pfn_valid_one` itself, or the arch's implementation on a
        one-element array (its answer checked as for a batch)."""
        if self.pfn_valid_is_core:
            return memmap.pfn_valid_one
        batch = self.pfn_valid

        def one(pfn: int) -> bool:
            return bool(batch(memmap, np.array([pfn], dtype=np.uint64))[0])

        return one

    @property
    def implemented(self) -> tuple[str, ...]:
        return tuple(n for n in PRIMITIVES if n in self._callers and self._callers[n].get_hookimpls())


@attrs.define(eq=False)
class BoundMode:
    """An arch mode with its primitives bound to the format: what mm code talks to."""

    arch: ArchBinding
    mode: ArchMode
    _scalar_mask: int | None = None

    @property
    def fmt(self) -> PageTableFormat:
        return self.mode.fmt

    @property
    def has_special(self) -> bool:
        """Scheme A (the bit decides) vs scheme B (pfn_valid / linearity decide)."""
        return self.mode.fmt.special_mask is not None

    def pte_special(self, ptes: NDArray[np.uint64]) -> NDArray[np.bool_]:
        if not self.has_special:
            return np.zeros(ptes.shape, dtype=np.bool_)
        return self.arch.pte_special(self.mode.fmt, ptes)

    def special_scalar_mask(self) -> int | None:
        """The special mask when the arch's hooks are exactly "test/set that mask".

        Checked once per binding on a sample of entries (one batch per hook); the scalar
        fault path then tests and sets the bit without a pluggy dispatch per fault. None
        (keep calling the hooks) for an arch whose hooks do something else.
        """
        if not self.has_special:
            return None
        if self._scalar_mask is None:
            mask = self.mode.fmt.special_mask or 0
            rng = np.random.default_rng(0x5EC1A1)
            ops, fmt = self.mode.ops, self.mode.fmt
            pfns = rng.integers(0, min(fmt.max_pfn, 1 << 40), size=64, dtype=np.uint64)
            sample = np.concatenate(
                [np.asarray(ops.pfn_pte(pfns, p), dtype=np.uint64) for p in sorted(set(fmt.protection_map))]
                + [rng.integers(0, 2**63, size=256, dtype=np.uint64) << np.uint64(1)]
            )
            same = bool(
                np.array_equal(self.arch.pte_mkspecial(fmt, sample), sample | np.uint64(mask))
                and np.array_equal(self.arch.pte_special(fmt, sample), (sample & np.uint64(mask)) != 0)
            )
            self._scalar_mask = mask if same else 0
        return self._scalar_mask or None

    def pte_mkspecial(self, ptes: NDArray[np.uint64]) -> NDArray[np.uint64]:
        if not self.has_special:
            raise UnsupportedOperation(
                f"arch {self.arch.name} has no special PTE bit under kernel {self.mode.profile} "
                f"(mode {self.mode.name}); the kernel takes the pfn_valid path instead"
            )
        return self.arch.pte_mkspecial(self.mode.fmt, ptes)


class ArchRegistry:
    """All installed arches of one plugin manager."""

    def __init__(
        self, pm: pluggy.PluginManager, loaded: Mapping[str, LoadedArch], reports: Iterable[PluginLoadReport]
    ):
        self._pm = pm
        self.reports = tuple(reports)
        arch_plugins = [la.plugin for la in loaded.values()]
        self._bindings: dict[str, ArchBinding] = {}
        self._aliases: dict[str, str] = {}
        for name, la in loaded.items():
            others = [p for p in arch_plugins if p is not la.plugin]
            callers: dict[str, pluggy.HookCaller] = {}
            for hook in PRIMITIVES:
                callers[hook] = pm.subset_hook_caller(hook, remove_plugins=others)
            drivers = tuple(
                d
                for impl in pm.hook.mixedmap_xip_drivers.get_hookimpls()
                if impl.plugin is la.plugin
                for d in impl.function()  # type: ignore[attr-defined]
            )
            self._bindings[name] = ArchBinding(
                spec=la.spec, report=la.report, callers=callers, xip_drivers=drivers
            )
            for alias in la.spec.aliases:
                self._aliases[alias] = name

    @classmethod
    def load(
        cls,
        *,
        disable: Iterable[str] | None = None,
        extra: Iterable[tuple[str, object]] = (),
        entry_points: bool = True,
    ) -> ArchRegistry:
        """Load installed arch plugins (minus ``disable``, default: $MIXEDMAP_DISABLE_PLUGINS)."""
        pm = new_plugin_manager()
        blocked = tuple(disabled_from_env() if disable is None else disable)
        loaded, reports = load_arch_plugins(
            pm, disable=blocked, extra=extra, entry_points=None if entry_points else []
        )
        return cls(pm, loaded, reports)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self._bindings))

    def __iter__(self) -> Iterator[ArchBinding]:
        return iter(self._bindings[n] for n in self.names)

    def bind(self, name: str) -> ArchBinding:
        """The binding for ``name`` (or an alias); errors list what is installed."""
        real = self._aliases.get(name, name)
        if real in self._bindings:
            return self._bindings[real]
        for r in self.reports:
            if r.error and (r.entry_point == name or r.arch == name):
                raise PluginError(f"arch {name!r} failed to load: {r.error}")
            if r.disabled and r.entry_point == name:
                raise UnknownArchError(
                    f"arch {name!r} is disabled ({r.where}); installed: {', '.join(self.names)}"
                )
        installed = ", ".join(self.names) or "none (install mixedmap-x86, mixedmap-s390 or mixedmap-powerpc)"
        raise UnknownArchError(f"arch {name!r} is not installed; installed arches: {installed}")

    def capability(self, name: str) -> Support:
        return self.bind(name).spec.caps.pte_special


_default: ArchRegistry | None = None


def default_registry() -> ArchRegistry:
    """The process-wide registry of installed plugins (built on first use)."""
    global _default
    if _default is None:
        _default = ArchRegistry.load()
    return _default


def reset_default_registry() -> None:
    """Forget the cached registry (after installing or disabling plugins at run time)."""
    global _default
    _default = None
