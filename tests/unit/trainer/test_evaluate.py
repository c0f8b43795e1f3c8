"""Evaluation on continuous audio, checked on constructed scores with known answers."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE
from sentry.postprocess import HOP_SECONDS, TriggerSettings
from trainer.errors import TrainerError
from trainer.evaluate import (
    SetReport, build_positive_stream, evaluate_model_dir, evaluate_set, fa_per_hour,
    false_accepts, frr_at, sweep, write_report,
)
from trainer.thresholds import DEFAULT_THRESHOLDS, frr_at_fa_rate, recommend_threshold

NO_SMOOTHING = 1


def hop_at(t_s: float) -> int:
    """Index of the hop whose score is timed at `t_s` seconds ((i + 1) * 80 ms)."""
    return int(round(t_s / HOP_SECONDS)) - 1


def spikes(n_hops: int, hops: list[int], value: float = 0.9) -> np.ndarray:
    scores = np.zeros(n_hops)
    scores[hops] = value
    return scores


def tone(seconds: float, freq_hz: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amp * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def energy_scores(pcm: np.ndarray) -> np.ndarray:
    """A stand-in detector: per-hop RMS, saturating at 1 for anything louder than 0.1."""
    n = pcm.size // HOP_SAMPLES
    hops = pcm[: n * HOP_SAMPLES].reshape(n, HOP_SAMPLES).astype(np.float64)
    return np.minimum(1.0, np.sqrt(np.mean(hops ** 2, axis=1)) / 0.1)


def burst_clip(rng: np.random.Generator) -> np.ndarray:
    """1.5 s 'wake word': quiet noise with a 0.5 s tone in the middle."""
    clip = (0.001 * rng.standard_normal(24_000)).astype(np.float32)
    clip[8_000:16_000] += tone(0.5, freq_hz=rng.uniform(300, 900))
    return clip


# --- false accepts -----------------------------------------------------------------


def test_two_spikes_one_second_apart_are_one_false_accept_within_refractory():
    scores = spikes(1000, [100, 100 + 12])  # 12 hops = 0.96 s apart
    assert false_accepts(scores, TriggerSettings(0.5, NO_SMOOTHING, refractory_s=2.0)) == 1
    assert false_accepts(scores, TriggerSettings(0.5, NO_SMOOTHING, refractory_s=0.5)) == 2


def test_spikes_further_apart_than_refractory_each_count():
    scores = spikes(1000, [100, 100 + 30, 100 + 60])  # 2.4 s apart
    assert false_accepts(scores, TriggerSettings(0.5, NO_SMOOTHING, refractory_s=2.0)) == 3


def test_three_false_accepts_in_half_an_hour_is_six_per_hour():
    n_hops = int(round(1800 / HOP_SECONDS))  # 30 min of hops
    scores = spikes(n_hops, [1000, 8000, 20000])
    count = false_accepts(scores, TriggerSettings(0.5, NO_SMOOTHING, 2.0))
    assert count == 3
    assert fa_per_hour(count, n_hops) == pytest.approx(6.0)


def test_smoothing_pulls_a_single_hop_spike_below_threshold():
    scores = spikes(200, [50], value=0.9)
    assert false_accepts(scores, TriggerSettings(0.5, NO_SMOOTHING, 2.0)) == 1
    # averaged over 3 hops the spike peaks at 0.3
    assert false_accepts(scores, TriggerSettings(0.5, 3, 2.0)) == 0


def test_fa_per_hour_rejects_an_empty_stream():
    with pytest.raises(TrainerError, match="empty"):
        fa_per_hour(0, 0)


# --- false rejects -----------------------------------------------------------------

REGIONS = [(2.0, 3.5), (6.0, 7.5), (10.0, 11.5), (14.0, 15.5)]


def test_frr_counts_exactly_the_missed_region():
    # hits: inside region 0, in region 1's tolerance tail, in region 3's tail; none for region 2
    scores = spikes(250, [hop_at(3.2), hop_at(7.6), hop_at(15.92)])
    frr, missed, total = frr_at(scores, REGIONS, TriggerSettings(0.5, NO_SMOOTHING, 2.0), 0.5)
    assert (frr, missed, total) == (0.25, 1, 4)


def test_detection_just_outside_tolerance_is_a_miss():
    settings = TriggerSettings(0.5, NO_SMOOTHING, 2.0)
    region = [(2.0, 3.5)]
    assert frr_at(spikes(100, [hop_at(3.92)]), region, settings, 0.5)[1] == 0
    assert frr_at(spikes(100, [hop_at(4.08)]), region, settings, 0.5)[1] == 1
    assert frr_at(spikes(100, [hop_at(1.92)]), region, settings, 0.5)[1] == 1  # too early


def test_one_detection_hits_only_one_region():
    # overlapping tolerance windows: a single detection must not satisfy both
    regions = [(2.0, 3.5), (3.6, 5.1)]
    scores = spikes(100, [hop_at(3.92)])
    assert frr_at(scores, regions, TriggerSettings(0.5, NO_SMOOTHING, 2.0), 0.5)[1] == 1


def test_detections_outside_regions_are_positive_stream_false_accepts_not_hits():
    scores = spikes(250, [hop_at(3.2), hop_at(5.0), hop_at(12.8)])
    rows = sweep(scores, REGIONS, np.zeros(1000), thresholds=[0.5], smoothing_hops=1,
                 refractory_s=0.5)
    assert rows[0]["missed"] == 3
    assert rows[0]["positive_stream_false_accepts"] == 2
    assert rows[0]["false_accepts"] == 0


# --- sweep and recommendation ------------------------------------------------------


def _random_streams(seed: int = 3):
    rng = np.random.default_rng(seed)
    neg = np.clip(rng.beta(0.5, 4.0, 45_000), 0, 1)  # ~1 h of mostly-low scores
    pos = np.clip(rng.beta(0.5, 4.0, 1_000), 0, 1)
    regions = []
    for k in range(15):
        start = 2.0 + 5.0 * k
        i = hop_at(start + 1.2)
        pos[i - 3:i + 1] = rng.uniform(0.3, 1.0)  # wake words of varied strength
        regions.append((start, start + 1.5))
    return pos, regions, neg


def test_sweep_fa_never_rises_with_threshold_and_matches_direct_measures():
    pos, regions, neg = _random_streams()
    rows = sweep(pos, regions, neg, smoothing_hops=3, refractory_s=2.0)
    assert [r["threshold"] for r in rows] == pytest.approx(sorted(DEFAULT_THRESHOLDS))
    fas = [r["false_accepts"] for r in rows]
    assert all(a >= b for a, b in zip(fas, fas[1:]))
    assert fas[0] > fas[-1]  # the constructed scores must actually exercise the sweep
    for row in rows[::17]:
        settings = TriggerSettings(row["threshold"], 3, 2.0)
        assert row["false_accepts"] == false_accepts(neg, settings)
        assert row["fa_per_hour"] == pytest.approx(fa_per_hour(row["false_accepts"], neg.size))
        assert row["frr"] == frr_at(pos, regions, settings)[0]


def test_recommendation_takes_the_lowest_frr_meeting_the_target():
    rows = [
        {"threshold": 0.3, "frr": 0.00, "fa_per_hour": 4.0},
        {"threshold": 0.5, "frr": 0.05, "fa_per_hour": 0.9},
        {"threshold": 0.7, "frr": 0.10, "fa_per_hour": 0.4},
        {"threshold": 0.8, "frr": 0.10, "fa_per_hour": 0.0},
        {"threshold": 0.9, "frr": 0.30, "fa_per_hour": 0.0},
    ]
    rec = recommend_threshold(rows, target_fa_per_hour=0.5)
    assert (rec["threshold"], rec["met"], rec["target_fa_per_hour"]) == (0.7, True, 0.5)
    assert recommend_threshold(rows, target_fa_per_hour=1.0)["threshold"] == 0.5
    assert frr_at_fa_rate(rows, 1.0) == 0.05
    assert frr_at_fa_rate(rows, 0.0) == 0.10


def test_recommendation_flags_an_unmet_target():
    rows = [
        {"threshold": 0.5, "frr": 0.0, "fa_per_hour": 9.0},
        {"threshold": 0.9, "frr": 0.2, "fa_per_hour": 2.0},
        {"threshold": 0.99, "frr": 0.5, "fa_per_hour": 2.0},
    ]
    rec = recommend_threshold(rows, target_fa_per_hour=0.5)
    assert (rec["threshold"], rec["met"]) == (0.9, False)
    assert frr_at_fa_rate(rows, 0.5) is None


def test_sweep_of_one_hour_is_fast_enough_to_run_in_a_test():
    # a budget far above the ~1 s it takes, only to catch an accidental O(n^2)
    import time

    pos, regions, neg = _random_streams()
    started = time.perf_counter()
    sweep(pos, regions, neg)
    assert time.perf_counter() - started < 20.0


# --- streams and whole sets --------------------------------------------------------


def test_positive_stream_places_each_clip_at_its_region():
    rng = np.random.default_rng(0)
    clips = [burst_clip(rng) for _ in range(5)]
    stream, regions = build_positive_stream(clips, np.random.default_rng(1))
    assert len(regions) == 5
    for clip, (start, end) in zip(clips, regions):
        a, b = int(round(start * SAMPLE_RATE)), int(round(end * SAMPLE_RATE))
        np.testing.assert_array_equal(stream[a:b], clip)
    gaps = [regions[0][0]] + [b[0] - a[1] for a, b in zip(regions, regions[1:])]
    assert all(2.5 <= g <= 4.0 for g in gaps)
    assert 2.5 <= stream.size / SAMPLE_RATE - regions[-1][1] <= 4.0


def test_positive_stream_background_is_at_the_requested_snr():
    rng = np.random.default_rng(0)
    clips = [tone(1.0, amp=0.2) for _ in range(3)]
    noise = rng.standard_normal(SAMPLE_RATE).astype(np.float32)
    stream, regions = build_positive_stream(clips, rng, background=noise, snr_db=20.0)
    gap = stream[: int(regions[0][0] * SAMPLE_RATE)]
    snr = 20 * np.log10(np.sqrt(np.mean(clips[0] ** 2)) / np.sqrt(np.mean(gap ** 2)))
    assert snr == pytest.approx(20.0, abs=0.5)
    with pytest.raises(TrainerError, match="snr_db"):
        build_positive_stream(clips, rng, background=noise)


def test_evaluate_set_on_tone_bursts_misses_nothing_and_counts_stray_bursts():
    rng = np.random.default_rng(7)
    positives = [burst_clip(rng) for _ in range(12)]
    negative = (0.001 * rng.standard_normal(SAMPLE_RATE * 120)).astype(np.float32)
    for at_s in (30, 80):  # two loud noises in the negative audio: two false accepts
        negative[at_s * SAMPLE_RATE: at_s * SAMPLE_RATE + 8_000] += tone(0.5)
    settings = TriggerSettings(0.5, 3, 2.0)
    report = evaluate_set(energy_scores, positives, negative, settings, 0.5,
                          np.random.default_rng(0), "tones")
    assert (report.name, report.n_positive) == ("tones", 12)
    assert (report.frr, report.missed, report.positive_stream_false_accepts) == (0.0, 0, 0)
    assert report.false_accepts == 2
    assert report.negative_hours == pytest.approx(120 / 3600, rel=1e-3)
    assert report.fa_per_hour == pytest.approx(2 / report.negative_hours)
    # every threshold sees both stray bursts, so 0.5 FA/h is out of reach on 2 minutes
    assert report.recommendation["met"] is False
    assert report.frr_at_fa["1.0"] is None


def test_evaluate_set_rejects_a_score_fn_with_the_wrong_rate():
    rng = np.random.default_rng(0)
    with pytest.raises(TrainerError, match="one score per"):
        evaluate_set(lambda pcm: np.zeros(pcm.size // 160), [burst_clip(rng)],
                     np.zeros(SAMPLE_RATE * 5, np.float32), TriggerSettings())


def test_write_report_writes_valid_json_and_a_png(tmp_path):
    rng = np.random.default_rng(5)
    positives = [burst_clip(rng) for _ in range(6)]
    negative = (0.001 * rng.standard_normal(SAMPLE_RATE * 60)).astype(np.float32)
    reports = [evaluate_set(energy_scores, positives, negative, TriggerSettings(), 0.5,
                            np.random.default_rng(s), name) for s, name in enumerate(["a", "b"])]
    json_path, png_path = write_report(reports, tmp_path / "out")
    data = json.loads(json_path.read_text())
    assert [s["name"] for s in data["sets"]] == ["a", "b"]
    assert data["sets"][0]["settings"] == {"threshold": 0.5, "smoothing_hops": 3,
                                           "refractory_s": 2.0}
    assert len(data["sets"][0]["sweep"]) == len(DEFAULT_THRESHOLDS)
    assert data["sets"][1]["recommendation"]["met"] is True
    png = png_path.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000


def test_set_report_to_dict_round_trips_through_json():
    report = SetReport("x", 1, 0.5, TriggerSettings(), 0.0, 0, 0.0, 0, 0,
                       {"threshold": 0.5, "met": True}, {"0.5": None})
    assert json.loads(json.dumps(report.to_dict()))["frr_at_fa"] == {"0.5": None}


# --- evaluate_model_dir's folder checks --------------------------------------------


def _write_wav(path, pcm):
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())


def test_model_dir_evaluation_names_a_missing_eval_root(tmp_path):
    with pytest.raises(TrainerError, match="no such evaluation folder"):
        evaluate_model_dir(tmp_path / "model", tmp_path / "nope", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainerError, match="no evaluation sets"):
        evaluate_model_dir(tmp_path / "model", tmp_path / "empty", progress=False)


def test_model_dir_evaluation_names_the_missing_file(tmp_path):
    root = tmp_path / "eval"
    (root / "espeak" / "positive").mkdir(parents=True)
    with pytest.raises(TrainerError, match=r"espeak/positive.*no positive clips"):
        evaluate_model_dir(tmp_path / "model", root, progress=False)
    _write_wav(root / "espeak" / "positive" / "0.wav", tone(1.0))
    with pytest.raises(TrainerError, match=r"espeak/negative_stream\.wav: missing"):
        evaluate_model_dir(tmp_path / "model", root, progress=False)
