"""Bad ``mixedmap verify`` input: missing walker package, unknown arch, no matching mode."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from mixedmap.cli.main import run as cli
from mixedmap.verify.drgn_walker import DrgnWalker
from mixedmap.verify.driver import VerifyError, case_specs, run
from mixedmap.verify.unicorn_walker import UnicornWalker
from mixedmap.verify.volatility_walker import VolatilityWalker
from tests.conftest import REGISTRY


@pytest.fixture
def no_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def fake(name: str, package: Any = None) -> Any:
        if name.split(".")[0] in ("drgn", "volatility3", "unicorn"):
            raise ImportError(f"No module named {name!r}")
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_missing_walker_is_reported_with_hint(no_tools: None, tmp_path: Path) -> None:
    specs = case_specs(["x86_64"], ["6.18"], ["4level"], registry=REGISTRY)
    rep = run(
        specs,
        tmp_path,
        pages=32,
        walkers=[DrgnWalker(), VolatilityWalker(), UnicornWalker()],
        registry=REGISTRY,
    )
    assert [c.skipped is not None for c in rep.cells] == [True, True, True]
    for c in rep.cells:
        assert c.skipped is not None and "is not installed" in c.skipped and "mixedmap[verify]" in c.skipped


def test_missing_walker_in_cli(no_tools: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["verify", "-a", "x86_64", "-m", "4level", "-k", "6.18", "-n", "32"]) == 0
    out = capsys.readouterr().out
    assert "drgn is not installed" in out and "unicorn is not installed" in out and "pip install" in out


def test_unknown_arch_and_no_match(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(VerifyError, match="unknown arch 'vax'"):
        case_specs(["vax"], registry=REGISTRY)
    with pytest.raises(VerifyError, match="no installed mode matches"):
        case_specs(["riscv64"], ["2.6.27"], registry=REGISTRY)
    assert cli(["verify", "-a", "vax"]) == 2
    assert "unknown arch 'vax'" in capsys.readouterr().err
