"""What the conformance suite runs on: (arch, mode, profile) cases from a registry."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import attrs
from hypothesis import HealthCheck, settings

from mixedmap.arch import ArchMode
from mixedmap.machine import Machine
from mixedmap.plugin.registry import ArchRegistry, BoundMode

#: Applied to every property of the suite: one test method serves many arch cases (so many
#: executors), and simulated machines are slower than hypothesis' default deadline.
SUITE_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.differing_executors, HealthCheck.too_slow]
)


@attrs.frozen(repr=False)
class ArchCase:
    """One arch mode under one kernel profile, bound to the registry it came from."""

    arch: str
    mode: ArchMode
    registry: ArchRegistry = attrs.field(eq=False)

    @property
    def id(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.mode.options if k != "mode")
        return f"{self.arch}-{self.mode.name}-{self.mode.profile}" + (f"[{opts}]" if opts else "")

    def __repr__(self) -> str:
        return f"ArchCase({self.id})"

    @property
    def profile(self) -> str:
        return self.mode.profile

    @property
    def bound(self) -> BoundMode:
        return self.registry.bind(self.arch).mode(
            self.mode.profile, mode=self.mode.name, **dict(self.mode.options)
        )

    def machine(self, ram: int | str = "256M", ram_base: int | str = 0) -> Machine:
        return Machine(
            self.arch,
            self.mode.profile,
            ram=ram,
            ram_base=ram_base,
            registry=self.registry,
            mode=self.mode.name,
            **dict(self.mode.options),
        )


def select_cases(
    registry: ArchRegistry,
    arches: Sequence[str] = (),
    kernels: Sequence[str] = (),
    representative: bool = False,
) -> list[ArchCase]:
    """Cases for the selected arches (default: all installed) and kernel profiles.

    ``representative`` keeps one mode per (arch, profile): the profile's default.
    """
    names = list(arches) or list(registry.names)
    out: list[ArchCase] = []
    for name in names:
        binding = registry.bind(name)
        for mode in binding.spec.modes:
            if kernels and mode.profile not in kernels:
                continue
            if representative and not mode.default:
                continue
            out.append(ArchCase(binding.name, mode, registry))
    return out


def registry_with(plugins: Iterable[tuple[str, object]], entry_points: bool = False) -> ArchRegistry:
    """A registry of explicit plugin objects (the subclass route: no entry point needed)."""
    return ArchRegistry.load(extra=list(plugins), entry_points=entry_points, disable=())
