"""The third-party example plugin, installed from its directory by the test command,
passes the conformance suite through the same command a plugin author would run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mixedmap.plugin.registry import ArchRegistry


def test_riscv64_example_is_installed_from_its_directory() -> None:
    reg = ArchRegistry.load()
    assert "riscv64" in reg.names, (
        "install it: pip install ./examples/riscv64-plugin (the README's test command does)"
    )
    report = reg.bind("riscv64").report
    assert report.distribution == "mixedmap-riscv64" and report.entry_point == "riscv64"


def test_riscv64_example_passes_the_conformance_suite(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-c", "from mixedmap.cli import entry; entry()", "conformance", "--arch", "riscv64",
         "--json", str(out), "--max-examples", "15"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["failures"] == []
    matrix = rec["matrix"]["riscv64"]
    for area in ("contract", "helpers", "pgtable", "mm", "equivalence"):
        assert matrix.get(area, {}).get("passed", 0) > 0, f"area {area} ran nothing: {matrix}"
