"""Thresholds: the one sweep grid, and every rule that reads a threshold off sweep rows.

A sweep row (`trainer.evaluate.sweep`, `trainer.cascade.JudgedDetections.sweep`) is a dict
with at least "threshold" (0..1), "frr" (0..1) and "fa_per_hour". Everything here is
arithmetic on such rows, so the pipeline, `hark eval`, the studio and the benchmarks read
the same row, pick the same threshold and choose it on the same set.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .errors import TrainerError

GRID_DECIMALS = 6
"""Every grid point is the double nearest a 6-decimal value, the number the manifest stores."""

DEFAULT_THRESHOLDS = np.unique(np.concatenate([
    np.linspace(0.01, 0.99, 99), [0.995, 0.999], np.linspace(0.9, 0.999, 100),
]).round(GRID_DECIMALS))
"""The sweep grid, ascending: every hundredth from 0.01, and every thousandth from 0.900 to
0.999, where well-trained models (and saturating peers, whose cutoffs sit near 0.97) operate.
Sentry, judge and peer sweeps all use it; `threshold_grid` adds a system's own operating point."""

DEFAULT_TARGET_FA_PER_HOUR = 0.5
"""False accepts per hour a recommended threshold must not exceed (one every 2 h)."""

CHOOSE_ON = "calib"
"""The eval set whose sweep chooses the shipped threshold: the calibration set, spoken by the
validation-split voices of every training engine (never trained on) with hours of negative
speech, where the model does fire, so the threshold is read where false accepts happen."""

CHOOSE_FALLBACK = ("espeak",)
"""Sets that choose, in this order, where an eval root has no calibration set (datasets made
before it existed): the espeak test-split voices."""

HELD_OUT_SETS = frozenset({"heldout", "heldout_sentence"})
"""Eval sets of engines no training clip comes from (the wake word alone, and said inside a
sentence). They never choose a threshold: one tuned on the test voices would flatter the
held-out numbers."""


def threshold_grid(*operating_points: float) -> np.ndarray:
    """DEFAULT_THRESHOLDS plus `operating_points` (e.g. a peer's shipped cutoff), ascending,
    rounded to GRID_DECIMALS so a point already on the grid is not repeated."""
    extra = np.asarray(operating_points, dtype=float)
    return np.unique(np.concatenate([DEFAULT_THRESHOLDS, extra]).round(GRID_DECIMALS))


def sweep_grid(thresholds: Sequence[float] | None = None) -> np.ndarray:
    """The thresholds a sweep visits, ascending: `thresholds`, or the one grid when None."""
    return np.sort(np.asarray(DEFAULT_THRESHOLDS if thresholds is None else thresholds, float))


def row_at(rows: Sequence[Mapping[str, Any]], threshold: float,
           key: str = "threshold") -> Mapping[str, Any]:
    """The row whose `key` is nearest `threshold`; on a tie the earlier row (in an ascending
    sweep, the lower threshold). Exact when `threshold` came from the same grid."""
    if not rows:
        raise TrainerError(f"row_at: the sweep is empty; there is no row near threshold {threshold}")
    return min(rows, key=lambda row: abs(float(row[key]) - threshold))


def recommend_threshold(sweep_rows: Sequence[Mapping[str, Any]],
                        target_fa_per_hour: float = DEFAULT_TARGET_FA_PER_HOUR) -> dict[str, Any]:
    """The sweep row to ship: the lowest FRR with FA/h <= target, ties to the lowest threshold.

    FA counts never rise with the threshold, so this is normally the lowest threshold
    meeting the target. If no row meets it, the row with the fewest FA/h (then lowest
    FRR) is returned. The result is the row plus `met` (bool) and `target_fa_per_hour`.
    """
    if not sweep_rows:
        raise TrainerError("recommend_threshold: the sweep is empty; sweep at least one threshold")
    feasible = [r for r in sweep_rows if r["fa_per_hour"] <= target_fa_per_hour]
    if feasible:
        best = min(feasible, key=lambda r: (r["frr"], r["threshold"]))
    else:
        best = min(sweep_rows, key=lambda r: (r["fa_per_hour"], r["frr"], r["threshold"]))
    return {**best, "met": bool(feasible), "target_fa_per_hour": float(target_fa_per_hour)}


TAIL_SPAN = 20.0
"""Sweep rows with 0 < FA/h <= TAIL_SPAN x the target are the tail the fit reads: the part
of the curve within about a decade of the rate promised, where its slope is the one that
matters (set a priori; the held-out sets never saw it chosen)."""
TAIL_MIN_POINTS = 3
"""Distinct false-accept rates the tail needs before it is fitted."""
FIT_BELOW_COUNT = 3.0
"""The fit is read only where the target means fewer false accepts than this in the sweep's
negative audio (target x hours): with more, the count itself is a fair measure."""


def negative_hours(sweep_rows: Sequence[Mapping[str, Any]]) -> float | None:
    """Hours of negative audio behind a sweep, from a row's count and rate (None if no row
    has both, e.g. rows typed by hand)."""
    for r in sweep_rows:
        if r.get("false_accepts") and r["fa_per_hour"] > 0:
            return float(r["false_accepts"]) / float(r["fa_per_hour"])
    return None


def tail_fit(sweep_rows: Sequence[Mapping[str, Any]],
             target_fa_per_hour: float = DEFAULT_TARGET_FA_PER_HOUR) -> dict[str, float] | None:
    """A straight line through log(FA/h) against the threshold over the sweep's tail
    (0 < FA/h <= TAIL_SPAN x target), least squares: false accepts thin out roughly
    exponentially as the threshold rises. None when the tail has fewer than TAIL_MIN_POINTS
    distinct rates or does not fall. Returns {"slope", "intercept", "points"}."""
    tail = [(float(r["threshold"]), float(r["fa_per_hour"])) for r in sweep_rows
            if 0 < r["fa_per_hour"] <= TAIL_SPAN * target_fa_per_hour]
    if len({fa for _, fa in tail}) < TAIL_MIN_POINTS:
        return None
    t, fa = np.array(tail).T
    slope, intercept = np.polyfit(t, np.log(fa), 1)
    if slope >= 0:
        return None
    return {"slope": float(slope), "intercept": float(intercept), "points": len(tail)}


def promise_threshold(sweep_rows: Sequence[Mapping[str, Any]],
                      target_fa_per_hour: float = DEFAULT_TARGET_FA_PER_HOUR) -> dict[str, Any]:
    """The threshold to promise `target_fa_per_hour` with: the lowest whose measured FA/h
    and whose tail-fitted FA/h (see `tail_fit`) are both <= target.

    An hour of negatives counts false accepts in whole numbers, so "no false accept in this
    hour" is reached by luck a little above where the rate really falls under 0.5 FA/h; the
    fitted tail reads the rate off the many false accepts at lower thresholds instead. The
    fit is used only where the target means fewer than FIT_BELOW_COUNT false accepts in the
    sweep's audio (rows must carry "false_accepts" to tell); otherwise, or without a tail to
    fit, this is `recommend_threshold`. Returns its row plus `met`,
    `target_fa_per_hour`, `fitted_fa_per_hour` (None without a fit) and `tail_fit`.
    """
    hours = negative_hours(sweep_rows)
    sparse = hours is not None and 0 < target_fa_per_hour * hours < FIT_BELOW_COUNT
    fit = tail_fit(sweep_rows, target_fa_per_hour) if sparse else None

    def fitted(row: Mapping[str, Any]) -> float | None:
        return None if fit is None else float(np.exp(fit["intercept"] + fit["slope"] * row["threshold"]))

    kept = [r for r in sweep_rows if fit is None or fitted(r) <= target_fa_per_hour]
    chosen = recommend_threshold(kept or sweep_rows, target_fa_per_hour)
    if not kept:  # the fit never falls that low on this grid: the highest threshold
        chosen = {**max(sweep_rows, key=lambda r: r["threshold"]), "met": False,
                  "target_fa_per_hour": float(target_fa_per_hour)}
    return {**chosen, "fitted_fa_per_hour": fitted(chosen), "tail_fit": fit}


def frr_at_fa_rate(sweep_rows: Sequence[Mapping[str, Any]], max_fa_per_hour: float) -> float | None:
    """Lowest FRR the sweep reaches with FA/h <= `max_fa_per_hour`; None if never."""
    frrs = [r["frr"] for r in sweep_rows if r["fa_per_hour"] <= max_fa_per_hour]
    return min(frrs) if frrs else None


def threshold_chooser(set_names: Sequence[str], chosen_on: str = CHOOSE_ON) -> str:
    """The eval set whose sweep chooses the threshold: `chosen_on` when it is among
    `set_names`; for the default `chosen_on` (the calibration set) then CHOOSE_FALLBACK; else
    the first set that is not held out. A held-out set never chooses."""
    if chosen_on in HELD_OUT_SETS:
        raise TrainerError(f"the threshold cannot be chosen on the held-out set {chosen_on!r}: a "
                           "threshold tuned on the test voices flatters their numbers; choose it "
                           f"on {CHOOSE_ON!r}")
    if chosen_on in set_names:
        return chosen_on
    if chosen_on == CHOOSE_ON:
        for name in CHOOSE_FALLBACK:
            if name in set_names:
                return name
    for name in set_names:
        if name not in HELD_OUT_SETS:
            return name
    raise TrainerError(f"no eval set may choose the threshold: {', '.join(set_names) or 'none'} "
                       f"{'is' if len(set_names) == 1 else 'are'} held out; add a set such as "
                       f"{CHOOSE_ON}/ (the dataset's test-split voices) to the eval root")


def choose_threshold(sweeps: Mapping[str, Sequence[Mapping[str, Any]]], target_fa_per_hour: float,
                     chosen_on: str = CHOOSE_ON) -> dict[str, Any]:
    """The threshold to ship, read off one set's sweep.

    sweeps: set name -> its sweep rows, in the report's order (the order decides "first").
    The set is `threshold_chooser`'s; the row is `promise_threshold`'s on it. Returns
    that row with `met`, `target_fa_per_hour`, `fitted_fa_per_hour`, `tail_fit` and
    `chosen_on` (the set's name).
    """
    name = threshold_chooser(list(sweeps), chosen_on)
    return {**promise_threshold(sweeps[name], target_fa_per_hour), "chosen_on": name}
