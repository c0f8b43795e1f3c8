"""`hark run`'s default recipe end to end, tiny: round 1, its false accepts mined into the
dataset, round 2 (the sentry), the ensemble of both rounds (the judge), both evaluated with
thresholds chosen on the calibration set; and a run folder refuses another recipe."""

from __future__ import annotations

import json
import shutil

import pytest

from sentry.manifest import load_manifest
from trainer.dataset import load_dataset
from trainer.errors import TrainerError
from trainer.pipeline import QUICK, RECIPE_FILE, Recipe, run_all

from .conftest import TINY

pytestmark = pytest.mark.integration

TINY_RECIPE = Recipe(round1_epochs=1, mine_minutes=1.0, mine_stream_minutes=0.5, mine_threshold=0.0)
"""Threshold 0: every activation of the untrained-ish first round is a hit, so hits exist."""


def test_the_mined_recipe_ships_a_sentry_and_a_judge(tiny_dataset, tmp_path):
    from trainer.synth.evalsets import synthesize_calibration_set, synthesize_sentence_set
    workdir = tmp_path / "work"
    data = workdir / "data" / "hey_jarvis"
    shutil.copytree(tiny_dataset, data)
    if not (data / "eval" / "calib").is_dir():
        synthesize_calibration_set(data, minutes=0.3, n_positive=6, progress=False)
    if not (data / "eval" / "heldout_sentence").is_dir():
        synthesize_sentence_set(data, n_positive=6, progress=False)
    before = len(load_dataset(data).select("hard_negative"))

    summary = run_all("hey jarvis", workdir, progress=False, recipe=TINY_RECIPE,
                      overrides={**TINY, "train.epochs": 2})

    run_dir = workdir / "runs" / "hey_jarvis"
    assert json.loads((run_dir / RECIPE_FILE).read_text()) == TINY_RECIPE.to_dict()
    mined = sorted((data / "hard_negative" / "mined").glob("*.wav"))
    assert summary["mining"]["confirmed"] == len(mined) > 0
    assert len(load_dataset(data).select("hard_negative")) == before + len(mined)
    assert not list((run_dir / "mining").glob("stream_*.wav"))  # streams deleted once mined
    assert set(summary["seconds"]) == {"synthesize", "train round 1", "mine false accepts",
                                       "train round 2", "export sentry + judge", "evaluate sentry",
                                       "evaluate cascade", "scan"}

    sentry = load_manifest(run_dir / "export")
    assert summary["threshold_chosen_on"] == "calib"
    assert sentry.threshold == summary["threshold"]
    assert {"calib", "espeak", "heldout", "heldout_sentence"} <= set(summary["evaluation"])
    judge = load_manifest(run_dir / "judge")
    assert judge.architecture.startswith("ensemble of 2")
    assert judge.metrics["cascade"]["chosen_on"] == "calib"
    assert judge.threshold == summary["cascade"]["threshold"]
    assert set(summary["cascade"]["sets"]) == set(summary["evaluation"])
    for s in summary["cascade"]["sets"].values():  # a judge can only remove detections
        assert s["fa_per_hour"] <= s["sentry_fa_per_hour"] and s["frr"] >= s["sentry_frr"]

    with pytest.raises(TrainerError, match="another recipe"):
        run_all("hey jarvis", workdir, progress=False, recipe=QUICK, overrides=TINY)
