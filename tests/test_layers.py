"""The house's layers (pyproject ``[tool.importlinter]``): no upward import, no import circle.

import-linter checks the installed ``mixedmap`` against the contracts; the second test plants
an upward import and a circle in a copy of the package, so the contracts are shown to fail
on exactly what they forbid (a check that cannot fail guards nothing).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import mixedmap

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "pyproject.toml"
LINT = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(
    LINT is None,
    reason="import-linter is not installed: pip install '.[test]' (or pip install import-linter)",
)


def _lint(pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert LINT is not None
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [LINT, str(CONFIG), "--no-cache", "--no-logo"],
        capture_output=True,
        text=True,
        env=env,
        cwd=pythonpath or ROOT,
        check=False,
        timeout=120,
    )


def test_contracts_are_kept() -> None:
    res = _lint()
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 kept, 0 broken" in res.stdout


def _copy(tmp_path: Path) -> Path:
    dest = tmp_path / "mixedmap"
    shutil.copytree(Path(mixedmap.__file__).parent, dest, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    pkg = _copy(tmp_path)
    mem = pkg / "phys" / "mem.py"
    mem.write_text(mem.read_text() + "\nimport mixedmap.machine  # planted: phys reaching up to machine\n")
    res = _lint(tmp_path)
    assert res.returncode == 1, res.stdout
    assert "mixedmap layers BROKEN" in res.stdout
    assert "mixedmap.phys.mem -> mixedmap.machine" in res.stdout


def test_a_circle_between_siblings_is_refused(tmp_path: Path) -> None:
    pkg = _copy(tmp_path)
    vma = pkg / "mm" / "vma.py"
    vma.write_text(vma.read_text() + "\nimport mixedmap.mm.fault  # planted: vma <-> fault\n")
    res = _lint(tmp_path)
    assert res.returncode == 1, res.stdout
    assert "no import circle between sibling modules or packages BROKEN" in res.stdout


def _contract_layers() -> list[list[str]]:
    cfg = tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"]
    (layers,) = [c["layers"] for c in cfg if c["type"] == "layers"]
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in reversed(layers)]


def test_readme_layout_is_the_contract() -> None:
    """The README's layer list, bottom to top, names exactly the contract's layers in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\d+\. (.*?): ", section, re.M)
    listed = [re.findall(r"`([\w.]+)`", row) for row in rows]
    assert listed == _contract_layers()
