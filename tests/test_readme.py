"""The README's Python examples run as written (on the arches they name, when installed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mixedmap.plugin.registry import default_registry

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    runnable = [b for b in blocks if "Machine(" in b or "XipFS" in b]
    assert len(runnable) >= 3, "README lost its API examples"
    if "s390x" not in default_registry().names:
        pytest.skip("the examples use s390x")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    for block in runnable:
        exec(compile(block, str(README), "exec"), namespace)
    assert (tmp_path / "phys.raw").exists()
