"""`hark cascade eval` on the tiny trained model: sentry alone vs sentry + judge."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from trainer.cascade import cut_clip, evaluate_cascade
from trainer.cli import main
from trainer.thresholds import DEFAULT_THRESHOLDS

pytestmark = pytest.mark.integration

LOW_SENTRY_THRESHOLD = 0.05
"""A cascade runs its sentry for recall; this low, the tiny model fires often, so the
judge has detections to rule on in both streams."""


@pytest.fixture(scope="module")
def reports(exported, tiny_dataset):
    return evaluate_cascade(exported, tiny_dataset / "eval", sentry_threshold=LOW_SENTRY_THRESHOLD,
                            progress=False)


def test_both_sides_are_measured_on_every_set(reports, tiny_dataset):
    assert [r.name for r in reports] == ["calib", "espeak", "heldout", "heldout_sentence"]
    for r in reports:
        info = sf.info(tiny_dataset / "eval" / r.name / "negative_stream.wav")
        assert r.n_positive == 6 and r.negative_hours == pytest.approx(info.duration / 3600)
        assert r.sentry_threshold == LOW_SENTRY_THRESHOLD and r.judge_threshold is not None
        for side in (r.sentry, r.cascade):
            assert 0.0 <= side.frr <= 1.0 and side.fa_per_hour >= 0
            assert side.missed == round(side.frr * r.n_positive)
            assert side.fa_per_hour == pytest.approx(side.false_accepts / r.negative_hours)
    assert sum(r.judge_calls for r in reports) > 0  # the judge really ruled on something
    assert any(r.sentry.false_accepts for r in reports)  # and on false accepts among them


def test_the_judge_only_removes_detections(reports):
    for r in reports:
        assert r.cascade.false_accepts <= r.sentry.false_accepts
        assert r.cascade.positive_stream_false_accepts <= r.sentry.positive_stream_false_accepts
        assert r.cascade.frr >= r.sentry.frr and r.frr_added == pytest.approx(r.cascade.frr - r.sentry.frr)
        if r.sentry.false_accepts:
            assert r.fa_removed == pytest.approx(1 - r.cascade.false_accepts / r.sentry.false_accepts)
        else:
            assert r.fa_removed is None


def test_the_judge_threshold_sweep_trades_misses_for_false_accepts(reports):
    for r in reports:
        assert [row["judge_threshold"] for row in r.judge_sweep] == list(DEFAULT_THRESHOLDS)
        fas = [row["false_accepts"] for row in r.judge_sweep]
        frrs = [row["frr"] for row in r.judge_sweep]
        assert fas == sorted(fas, reverse=True) and frrs == sorted(frrs)
        assert fas[0] <= r.sentry.false_accepts


def test_a_clip_is_cut_as_the_device_cuts_it():
    stream = np.arange(10 * 16_000, dtype=np.float32)
    clip = cut_clip(stream, 5.0)
    assert clip[0] == 3.0 * 16_000 and clip.size == 35_840  # 2.0 s before, 0.24 s after
    assert cut_clip(stream, 1.0)[0] == 0  # near the start: what exists
    assert cut_clip(stream, 9.9)[-1] == stream[-1]


def test_cli_writes_json_and_prints_the_table(exported, tiny_dataset, tmp_path, reports):
    out = tmp_path / "cascade.json"
    result = CliRunner().invoke(main, ["cascade", "eval", str(exported), "--eval-root",
                                       str(tiny_dataset / "eval"), "--sentry-threshold",
                                       str(LOW_SENTRY_THRESHOLD), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "sentry FRR" in result.output and "cascade FRR" in result.output
    written = json.loads(out.read_text())
    assert written["sentry_model"] == str(exported) and written["judge"] == str(exported)
    assert [s["cascade"] for s in written["sets"]] == [r.to_dict()["cascade"] for r in reports]


def test_cli_help_and_clean_errors(tmp_path, exported):
    assert CliRunner().invoke(main, ["cascade", "eval", "--help"]).exit_code == 0
    result = CliRunner().invoke(main, ["cascade", "eval", str(exported), "--eval-root", str(tmp_path)])
    assert result.exit_code == 1 and "no evaluation sets" in result.output
    assert "Traceback" not in result.output
    both = CliRunner().invoke(main, ["cascade", "eval", str(exported), "--eval-root", str(tmp_path),
                                     "--judge-model", str(exported), "--judge-url", "http://x"])
    assert both.exit_code == 1 and "not both" in both.output


def test_scores_kept_from_the_sentry_evaluation_give_the_same_cascade(reports, exported, tiny_dataset):
    """The main job hands the sentry evaluation's scores to the cascade instead of streaming
    the audio twice: the result must be the cascade measured from the audio."""
    from trainer.evaluate import evaluate_model_dir

    kept = {r.name: r.scores for r in evaluate_model_dir(exported, tiny_dataset / "eval",
                                                         progress=False)}
    reused = evaluate_cascade(exported, tiny_dataset / "eval", sentry_threshold=LOW_SENTRY_THRESHOLD,
                              progress=False, sentry_scores=kept)
    for fresh, again in zip(reports, reused, strict=True):
        a, b = fresh.to_dict(), again.to_dict()
        for d in (a, b):
            d.pop("elapsed_s"), d.pop("judge_ms_mean")
        assert a == b
    # the kept scores are what the cascade reads (silence in them: no detection at all) ...
    silent = {name: (np.zeros_like(pos), np.zeros_like(neg)) for name, (pos, neg) in kept.items()}
    quiet = evaluate_cascade(exported, tiny_dataset / "eval", sentry_threshold=LOW_SENTRY_THRESHOLD,
                             progress=False, sentry_scores=silent)
    assert all(r.judge_calls == 0 and r.sentry.frr == 1.0 for r in quiet)
    # ... but scores of another length (another stream) are not trusted: the audio is scored again
    wrong = {name: (pos[:-1], neg) for name, (pos, neg) in kept.items()}
    again = evaluate_cascade(exported, tiny_dataset / "eval", sentry_threshold=LOW_SENTRY_THRESHOLD,
                             progress=False, sentry_scores=wrong)
    assert [r.sentry for r in again] == [r.sentry for r in reports]
