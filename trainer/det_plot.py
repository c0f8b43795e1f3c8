"""DET curve: false reject rate against false accepts per hour, one line per set.

Lower-left is better. The x axis is symmetric-log so that 0 FA/h (common at high
thresholds) stays on the plot next to rates spanning several decades.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: the dev box may have no display
import matplotlib.pyplot as plt  # noqa: E402

LINEAR_BELOW_FA_PER_HOUR = 0.1
"""Symlog x axis is linear below this many FA/h, so 0 is drawn, logarithmic above."""

FIGURE_SIZE_IN = (7.0, 5.0)
DPI = 110


@dataclass(frozen=True)
class DetCurve:
    """One line of the plot: a set's sweep rows and the one row to mark on it."""

    name: str
    rows: Sequence[Mapping[str, Any]]
    """Sweep rows, each with threshold, frr (0..1) and fa_per_hour."""
    marked: Mapping[str, Any]
    """The row drawn as a dot (the shipped or the recommended threshold's)."""
    label: str
    """The dot's legend entry."""


def plot_det(curves: Sequence[DetCurve], png_path: str | Path,
             target_fa_per_hour: Sequence[float] = ()) -> Path:
    """Draw every curve as a DET curve, with a dashed line at each target FA/h, and save
    it to `png_path` (PNG)."""
    png_path = Path(png_path)
    fig, ax = plt.subplots(figsize=FIGURE_SIZE_IN)
    try:
        for curve in curves:
            # threshold order, not sorted by FA/h: FA/h only falls along it, and FRR's
            # occasional rises (a false accept's refractory blocking a wake word) stay visible
            rows = sorted(curve.rows, key=lambda row: row["threshold"])
            (line,) = ax.plot([row["fa_per_hour"] for row in rows],
                              [100.0 * row["frr"] for row in rows], label=curve.name)
            ax.plot([curve.marked["fa_per_hour"]], [100.0 * curve.marked["frr"]], marker="o",
                    color=line.get_color(), markersize=7, markeredgecolor="black",
                    linestyle="none", label=curve.label)
        for target in target_fa_per_hour:
            ax.axvline(target, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=LINEAR_BELOW_FA_PER_HOUR)
        ax.set_xlim(left=0)
        ax.set_ylim(0, 100)
        ax.set_xlabel("false accepts per hour")
        ax.set_ylabel("false reject rate (%)")
        ax.set_title("DET curve (dashed: target FA/h)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
        fig.tight_layout()
        fig.savefig(png_path, dpi=DPI)
    finally:
        plt.close(fig)
    return png_path
