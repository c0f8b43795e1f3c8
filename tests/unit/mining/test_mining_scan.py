"""Block scoring equals the sentry's scores; blocks are pure; hits merge; strides agree."""

from __future__ import annotations

import shutil
from itertools import pairwise

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from sentry.audio import read_wav
from sentry.constants import HOP_SAMPLES
from sentry.detector import Detector
from sentry.postprocess import smooth
from sentry.scoring import FEATURE_INPUT_SAMPLES
from trainer.mining.audio import AudioSource, BadAudio, find_audio, probe
from trainer.mining.graphs import has_stft_node, open_graphs
from trainer.mining.scan import HitTracker, ScanSettings, Scorer

SETTINGS = ScanSettings(threshold=0.5, probe_threshold=0.25, stride_hops=1, smoothing_hops=3,
                        merge_gap_s=1.0, int8=False)


def _scan(model, path, settings, block_starts=None):
    """Smoothed scores of a whole file, scored in the given blocks."""
    scorer = Scorer(open_graphs(model, int8=settings.int8, threads=1), settings)
    with AudioSource(path) as source:
        n = source.length // HOP_SAMPLES
        edges = sorted({0, *(block_starts or range(0, n, 2048)), n})
        return np.concatenate([scorer.score_block(source, a, b, n) for a, b in pairwise(edges)])


def _hits(smoothed, settings):
    tracker = HitTracker(settings)
    return [(h.peak_hop, round(h.peak_score, 6)) for h in tracker.update(0, smoothed) + tracker.finish()]


def test_stride_one_equals_the_sentry_batch_path(tone_model, long_wav):
    ours = _scan(tone_model, long_wav, SETTINGS)
    detector = Detector(tone_model)
    theirs = smooth(detector.score_pcm(read_wav(long_wav)), 3)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_scores_do_not_depend_on_where_blocks_start(tone_model, long_wav):
    """Resume recomputes from a committed block: any block split must give equal scores."""
    reference = _scan(tone_model, long_wav, SETTINGS)
    for starts in ([0, 1, 2, 3, 17, 100], [0, 2047, 2048, 2049], [0, 1000, 3000]):
        np.testing.assert_array_equal(_scan(tone_model, long_wav, SETTINGS, starts), reference)


def test_coarse_stride_finds_the_hits_of_every_hop(tone_model, long_wav):
    fine = _hits(_scan(tone_model, long_wav, SETTINGS), SETTINGS)
    assert len(fine) == 6  # seven bursts, two of them 0.9 s apart merge into one hit
    for stride in (2, 3, 4):
        coarse = ScanSettings(**{**SETTINGS.to_dict(), "stride_hops": stride})
        smoothed = _scan(tone_model, long_wav, coarse)
        assert _hits(smoothed, coarse) == fine
        assert np.isnan(smoothed).mean() > 0.5  # most hops were never scored at 80 ms


def test_hit_tracker_merges_and_keeps_the_peak():
    settings = ScanSettings(0.5, 0.25, 1, 1, 0.4, False)  # gap = 5 hops
    scores = np.zeros(60)
    scores[[10, 12, 14]] = [0.6, 0.9, 0.7]  # within the gap: one hit, peak at 12
    scores[[30, 40]] = [0.8, 0.55]  # 10 hops apart: two hits
    one = HitTracker(settings)
    whole = [(h.first_hop, h.peak_hop, h.last_hop, h.peak_score) for h in one.update(0, scores) + one.finish()]
    assert whole == [(10, 12, 14, 0.9), (30, 30, 30, 0.8), (40, 40, 40, 0.55)]
    # Fed in pieces, with its state saved and restored in between, it gives the same hits.
    pieces, state = [], None
    for a in range(0, 60, 7):
        tracker = HitTracker(settings, state)
        pieces += tracker.update(a, scores[a:a + 7])
        state = tracker.state()
    pieces += HitTracker(settings, state).finish()
    assert [(h.first_hop, h.peak_hop, h.last_hop, h.peak_score) for h in pieces] == whole


def test_resampled_stereo_flac_reads_like_the_sentry(tmp_path):
    rng = np.random.default_rng(0)
    audio = (rng.standard_normal((44_100 * 7, 2)) * 0.1).astype(np.float32)
    sf.write(str(tmp_path / "x.wav"), audio, 44_100, subtype="FLOAT")
    sf.write(str(tmp_path / "x.flac"), audio, 44_100, subtype="PCM_24")
    want = read_wav(tmp_path / "x.wav")
    with AudioSource(tmp_path / "x.wav") as source:
        assert source.length == want.size
        got = np.concatenate([source.read(-100, 5000), source.read(5000, 50_000),
                              source.read(40_000, source.length)[10_000:]])
    np.testing.assert_array_equal(got[:100], 0)
    np.testing.assert_array_equal(got[100:], want)
    with AudioSource(tmp_path / "x.flac") as source:
        np.testing.assert_allclose(source.read(0, source.length), want, atol=1e-5)


def test_reading_past_a_truncated_end_raises_bad_audio(tmp_path):
    path = tmp_path / "t.wav"
    sf.write(str(path), np.zeros(16_000 * 3, np.float32), 16_000, subtype="PCM_16")
    blob = path.read_bytes()
    path.write_bytes(blob[:len(blob) // 2])
    with pytest.raises(BadAudio, match="truncated"):
        probe(path)
    garbage = tmp_path / "g.flac"
    garbage.write_bytes(b"fLaC" + bytes(range(256)) * 8)
    with pytest.raises(BadAudio, match="unreadable"):
        probe(garbage)


def test_find_audio_recurses_sorts_and_rejects_missing(audio_folder, tmp_path):
    (audio_folder / "notes.txt").write_text("not audio")
    found = find_audio([audio_folder, audio_folder / "a.wav"])
    assert [p.name for p in found] == ["a.wav", "c.flac", "d.wav"]
    with pytest.raises(Exception, match="no such file"):
        find_audio([tmp_path / "nope"])


def _stft_features_graph() -> onnx.ModelProto:
    """A features graph built like exports made before LogMel became a strided convolution:
    ONNX STFT with a Hann window, |X|^2, log; [B, 1520] -> [B, 8, 40]."""
    window = np.hanning(401)[:-1].astype(np.float32)
    nodes = [
        helper.make_node("Reshape", ["pcm", "shape"], ["flat"]),
        helper.make_node("Unsqueeze", ["flat", "axis"], ["signal"]),
        helper.make_node("STFT", ["signal", "step", "window", "length"], ["stft"], onesided=1),
        helper.make_node("ReduceL2", ["stft", "axis"], ["mag"], keepdims=0),
        helper.make_node("Mul", ["mag", "mag"], ["power"]),
        helper.make_node("Slice", ["power", "zero", "forty", "two"], ["bands"]),
        helper.make_node("Add", ["bands", "floor"], ["floored"]),
        helper.make_node("Log", ["floored"], ["frames"]),
    ]
    inits = [numpy_helper.from_array(np.array([-1, FEATURE_INPUT_SAMPLES], np.int64), "shape"),
             numpy_helper.from_array(np.array([-1], np.int64), "axis"),
             numpy_helper.from_array(np.array(160, np.int64), "step"),
             numpy_helper.from_array(window, "window"),
             numpy_helper.from_array(np.array(400, np.int64), "length"),
             numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([40], np.int64), "forty"),
             numpy_helper.from_array(np.array([2], np.int64), "two"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "floor")]
    graph = helper.make_graph(
        nodes, "stft_features",
        [helper.make_tensor_value_info("pcm", TensorProto.FLOAT, ["B", FEATURE_INPUT_SAMPLES])],
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, ["B", 8, 40])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def test_an_old_export_with_an_stft_node_is_scored_unchanged_with_one_warning(tone_model, tmp_path,
                                                                           caplog):
    """Graphs are run as exported; an STFT node (an old, ~10x slower export) earns one warning
    that says to re-export, and the current export's features graph earns none."""
    import onnxruntime as ort
    assert not has_stft_node(tone_model / "features.onnx")
    with caplog.at_level("WARNING", logger="trainer.mining.graphs"):
        open_graphs(tone_model)
    assert not caplog.records
    old = tmp_path / "old_export"
    shutil.copytree(tone_model, old)
    onnx.save(_stft_features_graph(), str(old / "features.onnx"))
    assert has_stft_node(old / "features.onnx")
    with caplog.at_level("WARNING", logger="trainer.mining.graphs"):
        graphs = open_graphs(old)
    assert len(caplog.records) == 1 and "hark export" in caplog.records[0].getMessage()
    x = (np.random.default_rng(1).standard_normal((4, FEATURE_INPUT_SAMPLES)) * 0.1).astype(np.float32)
    want = ort.InferenceSession(str(old / "features.onnx")).run(None, {"pcm": x})[0]
    np.testing.assert_array_equal(graphs.run_features(x), want)


def test_a_fresh_source_resumes_mid_file_with_equal_scores_and_bounded_memory(tone_model, tone_kit,
                                                                              tmp_path):
    """Resume opens the file anew at a committed block: 16 kHz files seek, other rates decode
    their past (without holding it) so the resampler's output is the same."""
    burst = tone_kit.make_bursts(200.0, [5.0, 170.0], rate=22_050, seed=7)
    path = tmp_path / "r.flac"
    sf.write(str(path), burst, 22_050)
    whole = _scan(tone_model, path, SETTINGS)
    scorer = Scorer(open_graphs(tone_model, threads=1), SETTINGS)
    with AudioSource(path) as source:
        n = source.length // HOP_SAMPLES
        tail = scorer.score_block(source, 2048, n, n)
        assert source._buf.size < 2 * (n - 2048 + 64) * HOP_SAMPLES  # not the whole past
    np.testing.assert_array_equal(tail, whole[2048:])
