"""Build throw-away installed distributions, so tests load plugins the way users do.

A directory with ``NAME-VERSION.dist-info`` (METADATA + entry_points.txt) and modules, put
on ``sys.path``, is an installed distribution as far as ``importlib.metadata`` knows: the
plugin host then finds it through the real entry-point path, not a test-only shortcut.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from pathlib import Path


def make_distribution(
    root: Path,
    name: str,
    modules: Mapping[str, str],
    entry_points: Mapping[str, str],
    version: str = "0.0.1",
    group: str = "mixedmap",
) -> Path:
    """Write modules and a dist-info under ``root``; add ``root`` to sys.path to install."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{eps}\n")
    for mod, source in modules.items():
        path = root / (mod.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root
