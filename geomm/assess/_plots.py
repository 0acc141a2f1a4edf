"""The PNG figures of an accuracy report, drawn on matplotlib's Agg canvas (no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["area_bars", "confusion_heatmap", "f1_bars"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, facecolor="white", layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=100, bbox_inches="tight", pad_inches=0.15)
    return path


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def confusion_heatmap(path: Path, counts: np.ndarray, names: Sequence[str],
                      proportions: np.ndarray | None = None) -> Path:
    """Error matrix heatmap: cells coloured by share of their map row, annotated with counts.

    With ``proportions`` a second panel shows the estimated area proportions ``p_ij``.
    """
    k = len(names)
    panels = [("Sample counts (colour: share of map row)", counts, _row_share(counts), "d")]
    if proportions is not None:
        panels.append(("Estimated area proportions", proportions, proportions, ".4f"))
    side = max(3.5, 0.75 * k + 1.8)
    fig = _figure(side * len(panels) + 0.5, side)
    for p, (title, values, colour, fmt) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), p + 1)
        top = float(np.nanmax(colour)) if np.size(colour) and np.nanmax(colour) > 0 else 1.0
        ax.imshow(colour, cmap="Blues", vmin=0, vmax=top, interpolation="nearest")
        size = 9 if k <= 8 else 7 if k <= 14 else 5
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                text = format(int(v), fmt) if fmt == "d" else format(float(v), fmt)
                dark = colour[i, j] > 0.55 * top
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if dark else "black",
                        fontweight="bold" if i == j else "normal")
        ax.set_xticks(range(k), labels=list(names), rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(k), labels=list(names) if p == 0 else [], fontsize=8)
        ax.set_xlabel("Reference class")
        if p == 0:
            ax.set_ylabel("Map class")
        ax.set_title(title, fontsize=10)
    return _save(fig, path)


def _row_share(counts: np.ndarray) -> np.ndarray:
    rows = counts.sum(axis=1, keepdims=True).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rows > 0, counts / rows, 0.0)


def f1_bars(path: Path, names: Sequence[str], f1: Sequence[float], users: Sequence[float],
            producers: Sequence[float], colours: Sequence[Sequence[int]]) -> Path:
    """Per-class F1 as bars in the class colours, user's and producer's accuracy as marks."""
    k = len(names)
    fig = _figure(7.5, max(2.5, 0.45 * k + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    y = np.arange(k)
    vals = np.nan_to_num(np.asarray(f1, dtype=float), nan=0.0)
    ax.barh(y, vals, color=[_hex(c) for c in colours], edgecolor="0.3", height=0.7,
            label="F1")
    ax.plot(np.asarray(users, float), y, "k|", markersize=14, markeredgewidth=2,
            label="user's accuracy")
    ax.plot(np.asarray(producers, float), y, "rx", markersize=7, label="producer's accuracy")
    for i, v in enumerate(f1):
        ax.text(0.01, i, "F1 n/a" if v != v else f"F1 {v:.2f}", va="center", fontsize=8,
                color="black", bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none",
                                     "pad": 1})
    ax.set_yticks(y, labels=list(names), fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("score")
    ax.set_title("Per-class F1 (bars), user's and producer's accuracy (marks)", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8,
              frameon=False)
    ax.grid(axis="x", color="0.9")
    ax.set_axisbelow(True)
    return _save(fig, path)


def area_bars(path: Path, names: Sequence[str], mapped: Sequence[float] | np.ndarray,
              estimated: Sequence[float] | None, ci95: Sequence[float] | None, unit: str,
              colours: Sequence[Sequence[int]]) -> Path:
    """Mapped area beside the error-adjusted estimate with its 95 % confidence interval.

    Without ``estimated`` only the mapped areas are drawn, titled so.
    """
    k = len(names)
    fig = _figure(max(5.0, 1.1 * k + 2.0), 4.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(k)
    ax.bar(x - 0.2, mapped, width=0.4, color="0.8", edgecolor="0.4", label="mapped")
    if estimated is not None:
        err = np.nan_to_num(np.asarray(ci95 if ci95 is not None else [], float), nan=0.0)
        ax.bar(x + 0.2, estimated, width=0.4, color=[_hex(c) for c in colours],
               edgecolor="0.3", yerr=err if err.size else None, capsize=4,
               error_kw={"elinewidth": 1.2}, label="estimated ± 95 % CI")
    ax.set_xticks(x, labels=list(names), rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"area ({unit})")
    ax.set_yscale("symlog" if max(mapped, default=0) > 50 * max(min(mapped, default=1), 1)
                  else "linear")
    ax.set_title("Mapped vs error-adjusted area" if estimated is not None else
                 "Mapped area (no error-adjusted estimate: see the notes)", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    return _save(fig, path)
