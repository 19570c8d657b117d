"""The plugin host: entry points, validation, errors that name the culprit, disabling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mixedmap import ArchRegistry, Machine, PluginError, UnknownArchError
from mixedmap.plugin.registry import BoundMode
from mixedmap.testing.distributions import make_distribution
from mixedmap.testing.synthetic_arch import ToyPlugin, ToySpecialPlugin

GOOD = """
from mixedmap.testing.synthetic_arch import make_spec, ToySpecialPlugin
_p = ToySpecialPlugin("{name}")
mixedmap_arch_spec = _p.mixedmap_arch_spec
mixedmap_pte_special = _p.mixedmap_pte_special
mixedmap_pte_mkspecial = _p.mixedmap_pte_mkspecial
"""


def install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dist: str, modules: dict[str, str], eps: dict[str, str]
) -> None:
    make_distribution(tmp_path / dist, dist, modules, eps)
    monkeypatch.syspath_prepend(str(tmp_path / dist))


def load(**kw: object) -> ArchRegistry:
    return ArchRegistry.load(**kw)  # type: ignore[arg-type]


def test_entry_point_plugin_loads_like_a_user_would(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path,
        monkeypatch,
        "mixedmap-fakearch",
        {"fakearch_plugin": GOOD.format(name="fakearch")},
        {"fakearch": "fakearch_plugin"},
    )
    reg = load()
    assert "fakearch" in reg.names
    b = reg.bind("fakearch")
    assert b.report.distribution == "mixedmap-fakearch" and b.report.version == "0.0.1"
    m = Machine("fakearch", ram="16M", registry=reg)
    assert m.new_pagetable().map(0x1000, 3, special=True) & 0x200


BROKEN = {
    "import": ("raise RuntimeError('boom at import')", "import failed: RuntimeError: boom at import"),
    "misnamed": (
        GOOD.format(name="brokenarch")
        + "\nfrom mixedmap import hookimpl\n@hookimpl\ndef mixedmap_pte_speshul(ptes): return ptes\n",
        "unknown hook",
    ),
    "wrong_type": (
        "from mixedmap import hookimpl\n@hookimpl\ndef mixedmap_arch_spec():\n    return {'name': 'x'}\n",
        "returned dict, expected mixedmap.ArchSpec",
    ),
    "raises": (
        "from mixedmap import hookimpl\n@hookimpl\ndef mixedmap_arch_spec():\n    raise KeyError('nope')\n",
        "mixedmap_arch_spec raised KeyError",
    ),
    "caps_mismatch": (
        "from mixedmap.testing.synthetic_arch import ToySpecialPlugin\n_p = ToySpecialPlugin('brokenarch')\nmixedmap_arch_spec = _p.mixedmap_arch_spec\n",
        "declares pte_special=yes but does not implement",
    ),
    "half_special": (
        "from mixedmap.testing.synthetic_arch import ToySpecialPlugin\n_p = ToySpecialPlugin('brokenarch')\n"
        "mixedmap_arch_spec = _p.mixedmap_arch_spec\nmixedmap_pte_special = _p.mixedmap_pte_special\n",
        "without its partner",
    ),
    "bad_signature": (
        "from mixedmap.testing.synthetic_arch import make_spec\nfrom mixedmap import hookimpl\n"
        "@hookimpl\ndef mixedmap_arch_spec(colour):\n    return make_spec('brokenarch')\n",
        "invalid hook implementation",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_plugin_is_named_and_others_keep_working(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source, message = BROKEN[kind]
    mod = f"brokenarch_{kind}"  # a fresh module name: sys.modules caches imports
    install(tmp_path, monkeypatch, "mixedmap-brokenarch", {mod: source}, {"brokenarch": mod})
    reg = load(extra=[("toyarch", ToyPlugin())])
    failed = [r for r in reg.reports if r.error]
    assert len(failed) == 1, [r.error for r in reg.reports]
    err = failed[0].error or ""
    assert message in err
    assert "mixedmap-brokenarch" in err and "'brokenarch'" in err, err
    assert "brokenarch" not in reg.names
    with pytest.raises(PluginError, match=r"failed to load.*mixedmap-brokenarch"):
        reg.bind("brokenarch")
    assert Machine("toyarch", ram="16M", registry=reg).new_pagetable().map(0, 1)


def test_wrong_primitive_result_names_the_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = "from mixedmap import hookimpl\n" + GOOD.format(name="liar")
    src = src.replace(
        "mixedmap_pte_special = _p.mixedmap_pte_special",
        "@hookimpl\ndef mixedmap_pte_special(fmt, ptes):\n    return [True] * len(ptes)\n",
    )
    install(tmp_path, monkeypatch, "mixedmap-liar", {"liar_plugin": src}, {"liar": "liar_plugin"})
    bm: BoundMode = load().bind("liar").mode()
    with pytest.raises(PluginError, match=r"mixedmap-liar.*mixedmap_pte_special returned list"):
        bm.pte_special(np.array([1], dtype=np.uint64))


def test_taken_arch_name_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path,
        monkeypatch,
        "mixedmap-dupa",
        {"dupa_plugin": GOOD.format(name="dup")},
        {"dup": "dupa_plugin"},
    )
    install(
        tmp_path,
        monkeypatch,
        "mixedmap-dupb",
        {"dupb_plugin": GOOD.format(name="dup")},
        {"dup2": "dupb_plugin"},
    )
    reg = load()
    assert reg.bind("dup").report.distribution == "mixedmap-dupa"
    err = next(r.error for r in reg.reports if r.entry_point == "dup2")
    assert err and "already provided by" in err and "mixedmap-dupa" in err and "mixedmap-dupb" in err


def test_disable_by_env_and_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path,
        monkeypatch,
        "mixedmap-offarch",
        {"offarch_plugin": GOOD.format(name="offarch")},
        {"offarch": "offarch_plugin"},
    )
    assert "offarch" in load().names
    monkeypatch.setenv("MIXEDMAP_DISABLE_PLUGINS", "x, offarch")
    reg = load()
    assert "offarch" not in reg.names
    with pytest.raises(UnknownArchError, match="disabled"):
        reg.bind("offarch")
    monkeypatch.delenv("MIXEDMAP_DISABLE_PLUGINS")
    assert "offarch" not in load(disable=["mixedmap-offarch"]).names


def test_unknown_arch_lists_installed() -> None:
    reg = load(
        extra=[("toyarch", ToyPlugin()), ("toyspecial", ToySpecialPlugin("toyspecial"))], entry_points=False
    )
    with pytest.raises(
        UnknownArchError, match="'sparc64' is not installed; installed arches: toyarch, toyspecial"
    ):
        reg.bind("sparc64")


def test_primitives_resolved_per_arch_not_broadcast() -> None:
    """Two arches with different answers: each binding gets its own, whatever the order."""
    reg = load(
        extra=[("toyspecial", ToySpecialPlugin("toyspecial")), ("toyarch", ToyPlugin())], entry_points=False
    )
    ptes = np.array([0x201, 0x1], dtype=np.uint64)
    assert reg.bind("toyspecial").mode().pte_special(ptes).tolist() == [True, False]
    assert reg.bind("toyarch").mode().pte_special(ptes).tolist() == [False, False]
    assert reg.bind("toyarch").implemented == ("mixedmap_pfn_valid",)


def test_arch_may_override_pfn_valid() -> None:
    class EvenOnly(ToyPlugin):
        from mixedmap import hookimpl

        @hookimpl
        def mixedmap_pfn_valid(self, memmap: object, pfns: np.ndarray) -> np.ndarray:
            return (pfns % 2) == 0  # type: ignore[no-any-return]

    reg = load(extra=[("even", EvenOnly("even")), ("toyarch", ToyPlugin())], entry_points=False)
    assert Machine("even", ram="16M", registry=reg).pfn_valid(np.arange(4)).tolist() == [
        True,
        False,
        True,
        False,
    ]
    assert Machine("toyarch", ram="16M", registry=reg).pfn_valid(np.arange(4)).tolist() == [True] * 4


def test_uninstalling_removes_the_arch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(
        tmp_path,
        monkeypatch,
        "mixedmap-gone",
        {"gone_plugin": GOOD.format(name="gonearch")},
        {"gonearch": "gone_plugin"},
    )
    assert "gonearch" in load().names
    monkeypatch.syspath_prepend(str(tmp_path / "empty"))
    import sys

    sys.path.remove(str(tmp_path / "mixedmap-gone"))  # pip uninstall: the dist-info is gone
    reg = load()
    assert "gonearch" not in reg.names
    with pytest.raises(UnknownArchError, match="'gonearch' is not installed"):
        reg.bind("gonearch")


def test_load_failures_are_logged_not_printed(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    install(
        tmp_path,
        monkeypatch,
        "mixedmap-noisy",
        {"noisy_plugin": "raise ImportError('nope')"},
        {"noisy": "noisy_plugin"},
    )
    with caplog.at_level("WARNING", logger="mixedmap"):
        load()
    assert any(
        "plugin_load_failed" in r.getMessage() and "mixedmap-noisy" in r.getMessage() for r in caplog.records
    )
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
