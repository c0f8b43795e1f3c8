"""sentry.scoring: every path over the graphs gives one number for one window.

The streaming path (odd chunk sizes), the batch path, the judge's clip windows and the
miner's blocks are run on the same audio through the same tiny exported model (the
closed-form fixture graphs of conftest.py, on real onnxruntime sessions), and all are
checked against a numpy evaluation of those graphs framed as the module docstring says.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import numpy_helper

from judge.verifier import Verifier
from sentry.constants import HOP_FRAMES, HOP_SAMPLES, OVERLAP_SAMPLES, SAMPLE_RATE, WINDOW_FRAMES
from sentry.detector import Detector
from sentry.errors import SentryError
from sentry.judge_client import clip_span
from sentry.postprocess import smooth
from sentry.scoring import (FEATURE_INPUT_SAMPLES, LOOKBACK_HOPS, ClipScorer, Graphs,
                            StreamScorer, windows)
from trainer.mining.audio import AudioSource
from trainer.mining.graphs import open_graphs
from trainer.mining.scan import ScanSettings, Scorer

BURSTS_S = [0.3, 4.0, 7.3, 7.9, 12.05, 18.5]
"""Tone bursts in the test audio; the first starts before a window's worth of audio, so
the scores there depend on the silence before the stream."""
DURATION_S = 20.0
ODD_CHUNKS = [1, 7, 159, 1279, 1281, 3333, 50_001]
"""Chunk sizes (samples) the stream is fed in: hops straddle chunks, and one chunk holds
more hops than one graph batch."""
CLIP_TIMES_S = [0.24, 1.04, 4.56, 7.68, 12.4, 18.96, 19.92]
"""Detection times on the hop grid whose clips the judge scores; the first ones' clips
reach before the stream's start and are cut there, as a device cuts them."""


@pytest.fixture(scope="module")
def scoring_model(tmp_path_factory, fixture_spec) -> Path:
    return fixture_spec.write_model_dir(tmp_path_factory.mktemp("scoring") / "model",
                                        smoothing_hops=3)


@pytest.fixture(scope="module")
def audio(bursts) -> np.ndarray:
    return bursts(DURATION_S, BURSTS_S, seed=5)


def _numpy_scores(folder: Path, audio: np.ndarray) -> np.ndarray:
    """The fixture graphs evaluated in float64 numpy from their ONNX initializers, framed
    as documented: OVERLAP_SAMPLES of silence before the stream, hop i reads samples
    [i*HOP - OVERLAP, (i+1)*HOP), frames before the stream are features of zeros, score i
    is the window of WINDOW_FRAMES frames ending with hop i."""
    def weights(name: str) -> dict[str, np.ndarray]:
        graph = onnx.load(str(folder / name)).graph
        return {i.name: numpy_helper.to_array(i).astype(np.float64) for i in graph.initializer}

    f, m = weights("features.onnx"), weights("model.onnx")
    stream = np.concatenate([np.zeros(OVERLAP_SAMPLES), audio.astype(np.float64)])
    n = audio.size // HOP_SAMPLES
    inputs = np.zeros((LOOKBACK_HOPS + n, FEATURE_INPUT_SAMPLES))  # the first hops: silence
    for i in range(n):
        inputs[LOOKBACK_HOPS + i] = stream[i * HOP_SAMPLES:i * HOP_SAMPLES + FEATURE_INPUT_SAMPLES]
    framed = inputs[:, f["frame_index"].astype(np.int64)]  # [hops, HOP_FRAMES, 400]
    power = (framed @ f["cos"]) ** 2 + (framed @ f["sin"]) ** 2
    frames = np.log(power + f["floor"]).reshape(-1, power.shape[-1])
    ends = (LOOKBACK_HOPS + 1 + np.arange(n)) * HOP_FRAMES  # row after hop i's last frame
    level = np.array([(frames[e - WINDOW_FRAMES:e] @ m["band_contrast"]) @ m["recency"]
                      for e in ends])
    return 1.0 / (1.0 + np.exp(-(level - m["center"])))


def test_every_path_gives_the_same_scores(scoring_model, audio, tmp_path):
    graphs = Graphs(scoring_model)
    batch = graphs.score_pcm(audio)
    n = audio.size // HOP_SAMPLES
    assert batch.shape == (n,) and batch.dtype == np.float32
    # The framing is the documented one, and the audio exercises the scores' whole range.
    np.testing.assert_allclose(batch, _numpy_scores(scoring_model, audio), atol=1e-5)
    assert batch.max() > 0.9 and batch.min() < 0.01

    # Streaming, in odd chunk sizes, through the bare core and through the Detector.
    stream, detector = StreamScorer(graphs), Detector(scoring_model, history_hops=10 * n)
    rng = np.random.default_rng(5)
    streamed, i = [], 0
    while i < audio.size:
        chunk = audio[i:i + int(rng.choice(ODD_CHUNKS))]
        streamed.append(stream.push(chunk))
        detector.process(chunk)
        i += chunk.size
    np.testing.assert_allclose(np.concatenate(streamed), batch, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.array(detector.scores), batch, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(detector.score_pcm(audio), batch)

    # The judge: each clip's windows are the sentry's scores at the hops they end on.
    verifier, clips = Verifier(scoring_model), ClipScorer(graphs)
    for time_s in CLIP_TIMES_S:
        start, end = clip_span(time_s)
        clip = audio[max(start, 0):min(end, audio.size)]
        ends, prob = verifier.window_scores(clip)
        hops = (max(start, 0) + ends) // HOP_SAMPLES - 1
        np.testing.assert_allclose(prob, batch[hops], rtol=0, atol=1e-6)
        assert clips.score(clip) == verifier.score(clip)  # the cascade's score is the judge's

    # The miner, in blocks that split the file anywhere: its raw scores (no smoothing) and
    # its smoothed scores are the batch path's.
    wav = tmp_path / "audio.wav"
    sf.write(str(wav), audio, SAMPLE_RATE, subtype="FLOAT")
    for smoothing in (1, 3):
        settings = ScanSettings(threshold=0.5, probe_threshold=0.25, stride_hops=1,
                                smoothing_hops=smoothing, merge_gap_s=1.0, int8=False)
        scorer = Scorer(open_graphs(scoring_model, threads=1), settings)
        with AudioSource(wav) as source:
            edges = [0, 1, 17, 100, 101, 163, n]
            mined = np.concatenate([scorer.score_block(source, a, b, n) for a, b in pairwise(edges)])
        np.testing.assert_allclose(mined, smooth(batch, smoothing), rtol=0, atol=1e-6)


def test_int8_scores_come_from_the_quantized_graph(scoring_model, audio):
    fp32, int8 = Graphs(scoring_model), Graphs(scoring_model, int8=True)
    assert int8.model_file == "model.int8.onnx" and fp32.model_file == "model.onnx"
    # The fixture's int8 stand-in is centred higher, so it scores the same audio lower.
    assert int8.score_pcm(audio).max() < fp32.score_pcm(audio).max()


def test_a_clip_shorter_than_a_hop_and_audio_shorter_than_a_hop(scoring_model):
    graphs = Graphs(scoring_model)
    assert graphs.score_pcm(np.zeros(HOP_SAMPLES - 1, np.float32)).shape == (0,)
    # A clip of a few samples is one window of (almost) pure silence, as a stream starts.
    silent = graphs.score_pcm(np.zeros(HOP_SAMPLES, np.float32))
    np.testing.assert_allclose(graphs.score_tail(np.zeros(5, np.float32), 1), silent, atol=1e-6)


def test_windows_end_at_the_end_of_the_frames():
    frames = np.arange((WINDOW_FRAMES + 3 * HOP_FRAMES + 5) * 40, dtype=np.float32).reshape(-1, 40)
    view = windows(frames)
    assert view.shape == (4, WINDOW_FRAMES, 40) and not view.flags.writeable
    np.testing.assert_array_equal(view[-1], frames[-WINDOW_FRAMES:])
    np.testing.assert_array_equal(view[0], frames[5:5 + WINDOW_FRAMES])
    np.testing.assert_array_equal(windows(frames, 2), view[2:])
    assert windows(frames[:WINDOW_FRAMES - 1]).shape == (0, WINDOW_FRAMES, 40)
    with pytest.raises(ValueError, match="hold 4 windows"):
        windows(frames, 5)


def test_a_manifest_without_the_graphs_says_what_to_do(tmp_path, fixture_spec):
    folder = fixture_spec.write_model_dir(tmp_path / "m", files={"model": "model.onnx"})
    with pytest.raises(SentryError, match="lists no 'features' graph; re-export the model"):
        Graphs(folder)


def test_a_features_graph_of_the_wrong_shape_is_refused(tmp_path, fixture_spec):
    """A classifier where the features graph should be: it loads, but cannot run a hop."""
    folder = fixture_spec.write_model_dir(tmp_path / "m", files={
        "features": "model.onnx", "model": "model.onnx"})
    with pytest.raises(SentryError, match=r"model\.onnx: inference failed on input \[1, 1520\]"):
        Graphs(folder)
