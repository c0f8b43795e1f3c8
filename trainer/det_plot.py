"""DET curve: false reject rate against false accepts per hour, one line per set.

Lower-left is better. The x axis is symmetric-log so that 0 FA/h (common at high
thresholds) stays on the plot next to rates spanning several decades.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: the dev box may have no display
import matplotlib.pyplot as plt  # noqa: E402

if TYPE_CHECKING:
    from .evaluate import SetReport

LINEAR_BELOW_FA_PER_HOUR = 0.1
"""Symlog x axis is linear below this many FA/h, so 0 is drawn, logarithmic above."""

FIGURE_SIZE_IN = (7.0, 5.0)
DPI = 110


def plot_det(reports: Sequence["SetReport"], png_path: str | Path,
             operating_threshold: float | None = None) -> Path:
    """Draw every set's sweep as a DET curve and save it to `png_path` (PNG).

    Each curve gets a marker at `operating_threshold` (the shipped one) when given, else
    at the set's own recommended threshold.
    """
    png_path = Path(png_path)
    fig, ax = plt.subplots(figsize=FIGURE_SIZE_IN)
    try:
        for report in reports:
            # threshold order, not sorted by FA/h: FA/h only falls along it, and FRR's
            # occasional rises (a false accept's refractory blocking a wake word) stay visible
            rows = sorted(report.sweep, key=lambda row: row["threshold"])
            (line,) = ax.plot([row["fa_per_hour"] for row in rows],
                              [100.0 * row["frr"] for row in rows], label=report.name)
            if operating_threshold is None:
                rec = report.recommendation
                label = f"{report.name}: threshold {rec['threshold']:.3f}" + (
                    "" if rec["met"] else " (target not met)")
            else:
                rec = min(rows, key=lambda row: abs(row["threshold"] - operating_threshold))
                label = f"{report.name} at shipped threshold {operating_threshold:.3f}"
            ax.plot([rec["fa_per_hour"]], [100.0 * rec["frr"]], marker="o", color=line.get_color(),
                    markersize=7, markeredgecolor="black", linestyle="none", label=label)
        targets = sorted({r.recommendation["target_fa_per_hour"] for r in reports})
        for target in targets:
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
