"""``plot_scaling``: the benchmarks' log-log growth plots are valid PNG and SVG."""

from __future__ import annotations

from pathlib import Path

import pytest

from mixedmap.errors import EINVAL
from mixedmap.plot import plot_scaling


def test_scaling_plot_writes_png_and_svg(tmp_path: Path) -> None:
    series = {"a": [(1e4, 0.001), (1e5, 0.01), (1e6, 0.1)], "b": [(10.0, 1.0), (100.0, 9.0)]}
    png, svg = plot_scaling(series, tmp_path / "sub" / "grow", title="t", xlabel="n", ylabel="s")
    assert (png.name, svg.name) == ("grow.png", "grow.svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in svg.read_bytes()[:2000]


def test_scaling_plot_needs_points(tmp_path: Path) -> None:
    with pytest.raises(EINVAL, match="no points"):
        plot_scaling({}, tmp_path / "x", title="t", xlabel="n", ylabel="s")
    with pytest.raises(EINVAL, match="no points"):
        plot_scaling({"a": []}, tmp_path / "x", title="t", xlabel="n", ylabel="s")
