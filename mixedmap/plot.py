"""Figures of the guests experiment (struct-page memory against the number of guests) and of
how a cost grows with its input (the benchmarks' linearity plots).

matplotlib through ``matplotlib.figure.Figure`` and the Agg canvas only: no pyplot, no global
state, so a library call never opens a window or leaks a figure between callers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mixedmap.errors import EINVAL
from mixedmap.guests import GuestsResult

MiB = 1 << 20
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def plot_guests(results: Sequence[GuestsResult], out_base: Path) -> tuple[Path, Path]:
    """Write ``<out_base>.png`` and ``<out_base>.svg``: struct-page memory (MiB) of guests
    1..N for every result (arch x behaviour), the image size as a horizontal line, and the
    break-even guest count marked. Results without a model are listed under the plot with
    their reason. Returns (png path, svg path).
    """
    if not results:
        raise EINVAL("plot_guests: no results to plot")
    base = Path(out_base)
    png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
    modelled = [r for r in results if r.memmap_bytes_per_guest is not None]
    skipped = [r for r in results if r.memmap_bytes_per_guest is None]
    nmax = max(r.guests for r in results)

    fig = Figure(figsize=(10.0, 6.0 + 0.16 * len(skipped) * 2), layout="constrained")
    FigureCanvasAgg(fig)
    if skipped:
        ax, notes_ax = fig.subplots(2, 1, height_ratios=[6.0, 0.32 * len(skipped) + 0.1])
    else:
        ax = fig.add_subplot()
    marked: set[tuple[int, int]] = set()
    for i, r in enumerate(modelled):
        per = r.memmap_bytes_per_guest or 0
        n = np.arange(1, r.guests + 1)
        (line,) = ax.plot(
            n,
            n * per / MiB,
            "--" if r.pre_series else "-",
            linewidth=2.6 if r.pre_series else 1.4,
            marker=_MARKERS[i % len(_MARKERS)],
            markevery=(i % max(1, r.guests // 10), max(1, r.guests // 10)),
            markersize=5,
            label=f"{r.label}: {per / MiB:g} MiB per guest",
        )
        if r.break_even is not None and r.break_even <= nmax:
            point = (r.break_even, r.break_even * per)
            ax.plot([point[0]], [point[1] / MiB], "o", color=line.get_color(), markersize=9, fillstyle="none")
            if point not in marked:
                marked.add(point)
                ax.annotate(
                    f"break-even: N = {r.break_even}",
                    (point[0], point[1] / MiB),
                    textcoords="offset points",
                    xytext=(8, -14),
                    fontsize=8,
                )
    for size in sorted({r.image_size for r in results}):
        ax.axhline(size / MiB, color="black", linewidth=1, linestyle=":")
        ax.annotate(  # at the right end: the legend sits top left
            f"image size {size / MiB:g} MiB",
            (max(nmax, 2), size / MiB),
            textcoords="offset points",
            xytext=(-4, 4),
            ha="right",
            fontsize=8,
        )
    ax.set_xlim(1, max(nmax, 2))  # one guest still gets an axis, not a singular one
    ax.set_ylim(bottom=0)
    ax.set_xlabel("guests mapping the image")
    ax.set_ylabel("struct page memory for the image, all guests (MiB)")
    ax.set_title(
        "One shared XIP image, N guests: struct pages before and after the VM_MIXEDMAP series", fontsize=10
    )
    if modelled:
        ax.legend(fontsize=8, loc="upper left")
    if skipped:
        notes_ax.axis("off")
        notes = "\n".join(
            textwrap.shorten(f"not modelled: {r.label}: {r.reason}", width=170, placeholder=" ...")
            for r in skipped
        )
        text = notes_ax.text(0.0, 1.0, notes, fontsize=7, va="top", ha="left", transform=notes_ax.transAxes)
        text.set_in_layout(False)
    base.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, format="png", dpi=120)
    fig.savefig(svg, format="svg")
    return png, svg


def plot_scaling(
    series: Mapping[str, Sequence[tuple[float, float]]],
    out_base: Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
) -> tuple[Path, Path]:
    """Write ``<out_base>.png`` and ``.svg``: each series' (x, y) points on log-log axes,
    with a dotted line of slope 1 through its largest point, so growth that is not linear
    shows as a departure from the dots. Returns (png path, svg path)."""
    if not series or not any(series.values()):
        raise EINVAL("plot_scaling: no points to plot")
    base = Path(out_base)
    png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
    fig = Figure(figsize=(8.0, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for i, (label, points) in enumerate(series.items()):
        pts = sorted(points)
        if not pts:
            continue
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        (line,) = ax.plot(xs, ys, marker=_MARKERS[i % len(_MARKERS)], label=label)
        x1, y1 = xs[-1], ys[-1]
        ax.plot(xs, [y1 * x / x1 for x in xs], ":", color=line.get_color(), linewidth=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title + " (dotted: linear through the largest point)", fontsize=10)
    ax.legend(fontsize=8, loc="upper left")
    base.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, format="png", dpi=120)
    fig.savefig(svg, format="svg")
    return png, svg
