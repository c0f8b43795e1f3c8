"""The one evaluation API: one grid, one nearest-row rule, one threshold choice, one
matching tolerance, one cascade arithmetic."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from trainer.cascade import JudgedDetections
from trainer.errors import TrainerError
from trainer.evaluate import DEFAULT_TOLERANCE_S, match_detections, sweep
from trainer.thresholds import (
    CHOOSE_ON,
    DEFAULT_THRESHOLDS,
    HELD_OUT_SETS,
    choose_threshold,
    promise_threshold,
    tail_fit,
    recommend_threshold,
    row_at,
    threshold_chooser,
    threshold_grid,
)

# --- the grid ------------------------------------------------------------------------


def test_the_grid_holds_every_point_the_old_grids_swept_once_each_in_order():
    grid = list(DEFAULT_THRESHOLDS)
    assert grid == sorted(set(grid))
    hundredths = [round(0.01 * k, 2) for k in range(1, 100)]   # hark eval's
    judge_steps = [round(0.05 * k, 2) for k in range(1, 20)]   # hark cascade eval's
    thousandths = [round(0.9 + 0.001 * k, 3) for k in range(100)]  # the peers bench's
    for point in hundredths + judge_steps + thousandths + [0.97, 0.995, 0.999]:
        assert point in grid, point
    assert len(grid) == 89 + 100  # 0.01..0.89, then 0.900..0.999
    assert all(t == round(t, 6) for t in grid)  # the value a manifest stores


def test_an_operating_point_joins_the_grid_once():
    assert np.array_equal(threshold_grid(0.97), DEFAULT_THRESHOLDS)
    grid = threshold_grid(0.4567, 0.4567)
    assert grid.size == DEFAULT_THRESHOLDS.size + 1 and 0.4567 in grid
    assert list(grid) == sorted(grid)


def test_both_sweeps_default_to_the_grid():
    pos = np.zeros(100)
    rows = sweep(pos, [(1.0, 2.0)], np.zeros(1000), smoothing_hops=1)
    judged = JudgedDetections([(1.0, 2.0)], np.array([1.5]), np.array([0.5]), np.array([]), 1.0)
    assert [r["threshold"] for r in rows] == list(DEFAULT_THRESHOLDS)
    assert [r["judge_threshold"] for r in judged.sweep()] == list(DEFAULT_THRESHOLDS)


# --- the row at a threshold ----------------------------------------------------------

ROWS = [{"threshold": 0.2, "frr": 0.0, "fa_per_hour": 9.0},
        {"threshold": 0.4, "frr": 0.1, "fa_per_hour": 2.0},
        {"threshold": 0.6, "frr": 0.3, "fa_per_hour": 0.0}]


def test_row_at_takes_the_nearest_row_and_an_exact_one_when_on_the_grid():
    assert row_at(ROWS, 0.4)["threshold"] == 0.4
    assert row_at(ROWS, 0.37)["threshold"] == 0.4
    assert row_at(ROWS, 0.99)["threshold"] == 0.6
    assert row_at(ROWS, -1.0)["threshold"] == 0.2


def test_row_at_breaks_a_tie_towards_the_earlier_row():
    rows = [{"threshold": 0.25}, {"threshold": 0.75}]  # 0.5 is 0.25 from both, exactly
    assert row_at(rows, 0.5)["threshold"] == 0.25
    assert row_at(rows[::-1], 0.5)["threshold"] == 0.75
    judged = [{"judge_threshold": 0.25}, {"judge_threshold": 0.75}]
    assert row_at(judged, 0.5, key="judge_threshold")["judge_threshold"] == 0.25


def test_row_at_refuses_an_empty_sweep():
    with pytest.raises(TrainerError, match="empty"):
        row_at([], 0.5)


# --- which set chooses the threshold --------------------------------------------------

ESPEAK = ROWS
HELDOUT = [{"threshold": 0.2, "frr": 0.2, "fa_per_hour": 30.0},
           {"threshold": 0.4, "frr": 0.3, "fa_per_hour": 0.4},
           {"threshold": 0.6, "frr": 0.5, "fa_per_hour": 0.0}]


CALIB = [{"threshold": 0.2, "frr": 0.0, "fa_per_hour": 9.0},
         {"threshold": 0.4, "frr": 0.1, "fa_per_hour": 2.0},
         {"threshold": 0.8, "frr": 0.2, "fa_per_hour": 0.0}]


def test_the_calibration_set_chooses_wherever_it_stands():
    assert CHOOSE_ON == "calib" and {"heldout", "heldout_sentence"} <= HELD_OUT_SETS
    for sweeps in ({"espeak": ESPEAK, "calib": CALIB, "heldout": HELDOUT},
                   {"heldout": HELDOUT, "espeak": ESPEAK, "calib": CALIB}):
        chosen = choose_threshold(sweeps, 0.5)
        assert chosen == {**promise_threshold(CALIB, 0.5), "chosen_on": "calib"}
        assert chosen["threshold"] == 0.8 and chosen["tail_fit"] is None  # two rates: no fit
    with pytest.raises(TrainerError, match="held-out set 'heldout_sentence'"):
        choose_threshold({"calib": CALIB}, 0.5, chosen_on="heldout_sentence")


def _exponential_tail(lucky_zero_at: float | None = None) -> list[dict]:
    """Whole false accepts in one hour, falling e-fold every 0.05 of threshold."""
    rows = []
    for t in np.round(np.arange(0.30, 0.96, 0.01), 2):
        fa = float(np.floor(400.0 * np.exp(-(t - 0.30) / 0.05)))
        if lucky_zero_at is not None and t >= lucky_zero_at:
            fa = 0.0
        rows.append({"threshold": float(t), "frr": float(t / 2), "fa_per_hour": fa,
                     "false_accepts": int(fa)})  # one hour
    return rows


def test_the_tail_fit_reads_the_rate_off_the_false_accepts_below():
    fit = tail_fit(_exponential_tail(), 0.5)
    assert fit["slope"] == pytest.approx(-20.0, rel=0.15) and fit["points"] >= 3
    assert tail_fit([{"threshold": 0.5, "frr": 0.1, "fa_per_hour": 3.0}], 0.5) is None
    rising = [{"threshold": t, "frr": 0.1, "fa_per_hour": fa} for t, fa in ((0.5, 1.0), (0.6, 2.0), (0.7, 3.0))]
    assert tail_fit(rising, 0.5) is None


def test_the_fit_is_read_only_where_the_count_is_sparse():
    rows = _exponential_tail(lucky_zero_at=0.55)
    assert promise_threshold(rows, 0.5)["tail_fit"] is not None  # 0.5 false accepts in 1 h
    dense = promise_threshold(rows, 10.0)  # 10 false accepts in 1 h: the count is measure enough
    assert dense["tail_fit"] is None
    assert dense["threshold"] == recommend_threshold(rows, 10.0)["threshold"]
    uncounted = [{k: v for k, v in r.items() if k != "false_accepts"} for r in rows]
    assert promise_threshold(uncounted, 0.5)["threshold"] == recommend_threshold(uncounted, 0.5)["threshold"]


def test_a_lucky_zero_does_not_set_the_promise():
    """An hour happens to hold no false accept from 0.55 up, though the rate there is ~2/h."""
    rows = _exponential_tail(lucky_zero_at=0.55)
    plain = recommend_threshold(rows, 0.5)
    assert plain["threshold"] == 0.55
    promised = promise_threshold(rows, 0.5)
    true_rate = 400.0 * np.exp(-(promised["threshold"] - 0.30) / 0.05)
    assert promised["threshold"] > 0.55 and true_rate <= 0.5 * 1.5
    assert promised["fitted_fa_per_hour"] <= 0.5 and promised["met"]


def test_without_a_calibration_set_the_espeak_set_chooses_wherever_it_stands():
    for sweeps in ({"espeak": ESPEAK, "heldout": HELDOUT}, {"heldout": HELDOUT, "espeak": ESPEAK}):
        chosen = choose_threshold(sweeps, 0.5)
        assert chosen == {**promise_threshold(ESPEAK, 0.5), "chosen_on": "espeak"}
        assert chosen["threshold"] == 0.6  # heldout alone would have given 0.4


def test_a_held_out_set_is_refused_as_chooser():
    with pytest.raises(TrainerError, match="held-out set 'heldout'"):
        choose_threshold({"espeak": ESPEAK, "heldout": HELDOUT}, 0.5, chosen_on="heldout")
    with pytest.raises(TrainerError, match="held out"):
        choose_threshold({"heldout": HELDOUT}, 0.5)


def test_without_espeak_the_first_set_that_is_not_held_out_chooses():
    assert threshold_chooser(["heldout", "kitchen", "office"]) == "kitchen"
    assert threshold_chooser(["kitchen", "office"], chosen_on="office") == "office"
    chosen = choose_threshold({"heldout": HELDOUT, "kitchen": HELDOUT}, 0.5)
    assert (chosen["chosen_on"], chosen["threshold"]) == ("kitchen", 0.4)


# --- matching ------------------------------------------------------------------------


def test_a_detection_counts_up_to_the_named_tolerance_after_the_wake_word():
    assert DEFAULT_TOLERANCE_S == 0.5
    region = [(2.0, 3.5)]
    assert match_detections(np.array([3.5 + DEFAULT_TOLERANCE_S]), region) == (1, 0)
    assert match_detections(np.array([3.5 + DEFAULT_TOLERANCE_S + 0.01]), region) == (0, 1)
    assert match_detections(np.array([3.9]), region, tolerance_s=0.2) == (0, 1)
    assert match_detections(np.array([1.99]), region) == (0, 1)  # before it: never


# --- the cascade ---------------------------------------------------------------------

REGIONS = [(2.0, 3.5), (6.0, 7.5), (10.0, 11.5), (14.0, 15.5)]


def _judged() -> JudgedDetections:
    # four wake words detected (judge: 0.9, 0.6, 0.3, 0.95), one stray detection at 5 s
    # (judge 0.7), and three false accepts in 2 hours of negatives (judge 0.2, 0.65, 0.99)
    return JudgedDetections(REGIONS, np.array([3.0, 5.0, 7.0, 11.0, 15.9]),
                            np.array([0.9, 0.7, 0.6, 0.3, 0.95]), np.array([0.2, 0.65, 0.99]), 2.0)


def test_the_sentry_alone_keeps_every_detection():
    assert _judged().at(None) == {"frr": 0.0, "missed": 0, "fa_per_hour": 1.5, "false_accepts": 3,
                                  "positive_stream_false_accepts": 1}


def test_the_judge_keeps_the_detections_it_verifies():
    assert _judged().at(0.62) == {"frr": 0.5, "missed": 2, "fa_per_hour": 1.0, "false_accepts": 2,
                                  "positive_stream_false_accepts": 1}
    assert _judged().at(0.96)["missed"] == 4 and _judged().at(0.96)["false_accepts"] == 1


def test_the_judge_sweep_trades_misses_for_false_accepts():
    rows = _judged().sweep()
    fas, misses = [r["false_accepts"] for r in rows], [r["missed"] for r in rows]
    assert fas == sorted(fas, reverse=True) and misses == sorted(misses)
    assert (fas[0], misses[0], fas[-1], misses[-1]) == (3, 0, 0, 4)
    assert row_at(rows, 0.62, key="judge_threshold") == {"judge_threshold": 0.62,
                                                          **_judged().at(0.62)}


def test_positive_times_need_not_be_sorted():
    judged = _judged()
    order = np.array([4, 2, 0, 3, 1])
    shuffled = JudgedDetections(REGIONS, judged.positive_times[order],
                                judged.positive_scores[order], judged.negative_scores, 2.0)
    assert [shuffled.at(t) for t in (None, 0.5, 0.8)] == [judged.at(t) for t in (None, 0.5, 0.8)]


# --- no hidden cycle ----------------------------------------------------------------


def test_the_det_plot_needs_nothing_of_the_evaluation():
    code = ("import sys, trainer.det_plot; "
            "print(sorted(m for m in sys.modules if m.startswith('trainer.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "trainer.evaluate" not in out.stdout and "trainer.det_plot" in out.stdout
