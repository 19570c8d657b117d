"""The pytest11 plugin behind the conformance suite: inert until used.

It only registers options, markers and two parametrised fixtures. Nothing is imported and no
arch is loaded unless a collected test asks for ``arch_case``/``arch_profile`` (the shipped
suite, or a plugin repo's subclass of :class:`mixedmap.conformance.ArchConformance`).

Options: ``--mixedmap-arch NAME`` (repeatable; default every installed arch),
``--mixedmap-kernel PROFILE`` (repeatable; default every profile the arch has),
``--mixedmap-max-examples N`` (hypothesis examples per property).
"""

from __future__ import annotations

from typing import Any

import pytest

AREA_KEY = "mixedmap_area"
CONTRACT = "contract"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mixedmap", "mixedmap conformance suite")
    group.addoption("--mixedmap-arch", action="append", default=[], help="Arch to test (repeatable).")
    group.addoption("--mixedmap-kernel", action="append", default=[], help="Kernel profile (repeatable).")
    group.addoption(
        "--mixedmap-max-examples", type=int, default=None, help="Hypothesis examples per property."
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "mixedmap_area(name): conformance area of a test (contract, helpers, ...)"
    )
    config.addinivalue_line("markers", "mixedmap_requires(*caps): capabilities a conformance test needs")
    config._mixedmap_failed_contract = {}  # type: ignore[attr-defined]
    n = config.getoption("--mixedmap-max-examples", default=None)
    if n is not None:
        from hypothesis import HealthCheck, settings

        settings.register_profile(
            "mixedmap-cli", max_examples=n, deadline=None, suppress_health_check=list(HealthCheck)
        )
        settings.load_profile("mixedmap-cli")


def _registry(metafunc: pytest.Metafunc) -> Any:
    from mixedmap.conformance.cases import registry_with
    from mixedmap.plugin.registry import default_registry

    plugins = getattr(metafunc.cls, "mixedmap_plugins", None) if metafunc.cls else None
    if plugins:
        return registry_with(plugins)
    return default_registry()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    wanted = [f for f in ("arch_case", "arch_profile") if f in metafunc.fixturenames]
    if not wanted:
        return
    from mixedmap.conformance.cases import select_cases

    config = metafunc.config
    cls_arches = getattr(metafunc.cls, "mixedmap_arches", None) if metafunc.cls else None
    arches = cls_arches or config.getoption("--mixedmap-arch") or ()
    kernels = config.getoption("--mixedmap-kernel") or ()
    reg = _registry(metafunc)
    for name in wanted:
        cases = select_cases(reg, arches, kernels, representative=name == "arch_profile")
        metafunc.parametrize(name, cases, ids=[c.id for c in cases], scope="module")


def _area(item: pytest.Item) -> str:
    """The suite module that defines the test ("contract", "helpers", ...), else a marker.

    Taken from the function's module so that a plugin repo's subclass of ArchConformance
    reports every inherited test under its real area.
    """
    func = getattr(item, "function", None)
    module = getattr(func, "__module__", "") or ""
    if module.startswith("mixedmap.conformance.test_"):
        return module.rsplit(".test_", 1)[1]
    mark = item.get_closest_marker("mixedmap_area")
    return str(mark.args[0]) if mark else "other"


def _case(item: pytest.Item) -> Any:
    params = getattr(item, "callspec", None)
    if params is None:
        return None
    return params.params.get("arch_case") or params.params.get("arch_profile")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Contract tests first: a broken contract should stop the run with one message."""
    if any(_case(it) is not None for it in items):
        items.sort(key=lambda it: 0 if _area(it) == CONTRACT else 1)


def pytest_runtest_setup(item: pytest.Item) -> None:
    case = _case(item)
    if case is None:
        return
    item.user_properties.append(("mixedmap_arch", case.arch))
    item.user_properties.append(("mixedmap_profile", case.profile))
    item.user_properties.append((AREA_KEY, _area(item)))
    failed = item.config._mixedmap_failed_contract  # type: ignore[attr-defined]
    if _area(item) != CONTRACT and case.arch in failed:
        pytest.skip(f"arch {case.arch!r} failed its contract test {failed[case.arch]}: fix that first")
    for mark in item.iter_markers("mixedmap_requires"):
        for cap in mark.args:
            reason = missing_capability(case, cap)
            if reason:
                pytest.skip(reason)


def missing_capability(case: Any, cap: str) -> str:
    """Why ``case`` lacks ``cap`` ("" when it has it)."""
    fmt = case.mode.fmt
    if cap == "special_bit" and fmt.special_mask is None:
        return f"arch {case.arch!r} declares no special bit under {case.profile} (scheme B)"
    if cap == "no_special_bit" and fmt.special_mask is not None:
        return f"arch {case.arch!r} has a special bit under {case.profile} (scheme A)"
    if cap == "young_dirty" and not fmt.tracks_young_dirty:
        return f"arch {case.arch!r} keeps referenced/changed outside the PTE under {case.profile}"
    if cap == "large_leaves" and not any(lv.leaf_ok for lv in fmt.levels[:-1]):
        return f"arch {case.arch!r} mode {case.mode.name} has no large leaves"
    if cap == "xip_driver" and not case.registry.bind(case.arch).xip_drivers:
        return f"arch {case.arch!r} offers no XIP driver model"
    return ""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed and _area(item) == CONTRACT:
        case = _case(item)
        if case is not None:
            item.config._mixedmap_failed_contract.setdefault(case.arch, item.nodeid)  # type: ignore[attr-defined]
    return report
