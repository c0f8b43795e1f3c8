"""sentry.detector on real onnxruntime sessions of the fixture graphs (see conftest)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE
from sentry.detector import Detection, Detector
from sentry.errors import SentryError
from sentry.postprocess import HOP_SECONDS, TriggerSettings

BURST_START_S = 1.0


@pytest.fixture(scope="module")
def detector(model_dir) -> Detector:
    return Detector(model_dir)


def _stream(detector: Detector, audio: np.ndarray, seed: int) -> list[Detection]:
    """Feed audio in random chunk sizes from 1 sample to several seconds."""
    rng = np.random.default_rng(seed)
    detections, i = [], 0
    while i < audio.size:
        n = int(rng.choice([1, 2, 159, 1279, 1280, 1281, 4000, 50_000]))
        detections += detector.process(audio[i:i + n])
        i += n
    return detections


def test_tone_burst_is_detected_once_at_its_onset(detector, burst_wav, fixture_spec):
    detections = detector.scan_file(burst_wav)
    assert len(detections) == 1
    assert detections[0].wake_word == fixture_spec.wake_word
    assert abs(detections[0].time_s - BURST_START_S) <= 0.1
    assert detections[0].score >= detector.settings.threshold


def test_background_noise_gives_no_detection(detector, quiet_wav):
    assert detector.scan_file(quiet_wav) == []
    assert detector.score_pcm(sf.read(quiet_wav, dtype="float32")[0]).max() < 0.1


def test_digital_silence_gives_low_scores_and_no_detection(detector):
    silence = np.zeros(3 * SAMPLE_RATE, dtype=np.float32)
    assert detector.score_pcm(silence).max() < 0.1
    assert detector.detect_pcm(silence) == []


def test_score_pcm_gives_one_score_per_complete_hop(detector):
    for n in (0, HOP_SAMPLES - 1, HOP_SAMPLES, 10 * HOP_SAMPLES + 5):
        assert detector.score_pcm(np.zeros(n, np.float32)).shape == (n // HOP_SAMPLES,)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_in_any_chunk_size_equals_batch(model_dir, bursts, seed):
    audio = bursts(9.0, [1.0, 4.3, 7.77], seed=seed)
    batch_detector = Detector(model_dir)
    stream_detector = Detector(model_dir, history_hops=10_000)
    expected_scores = batch_detector.score_pcm(audio)
    expected_detections = batch_detector.detect_pcm(audio)

    detections = _stream(stream_detector, audio, seed)

    assert stream_detector.hops == expected_scores.size == audio.size // HOP_SAMPLES
    np.testing.assert_allclose(np.array(stream_detector.scores), expected_scores, atol=1e-5)
    assert len(detections) == len(expected_detections) == 3
    for got, want in zip(detections, expected_detections):
        assert got.time_s == pytest.approx(want.time_s)
        assert got.score == pytest.approx(want.score, abs=1e-5)


def test_streaming_equals_batch_over_a_long_stream(model_dir, bursts):
    """60 s: more hops than one batch block and than the frame ring's slack, so block
    splitting inside one process() call and the ring's compaction are both exercised."""
    audio = bursts(60.0, [5.0 + 10.0 * k for k in range(6)], seed=4)
    expected = Detector(model_dir).score_pcm(audio)
    detector = Detector(model_dir, history_hops=10_000)
    first = int(45.3 * SAMPLE_RATE)  # 566 hops in one call
    detections = detector.process(audio[:first]) + _stream(detector, audio[first:], seed=4)
    np.testing.assert_allclose(np.array(detector.scores), expected, atol=1e-5)
    assert [round(d.time_s) for d in detections] == [5, 15, 25, 35, 45, 55]


def test_streaming_accepts_int16_and_raw_bytes(model_dir, bursts):
    audio = bursts(3.0, [1.0])
    pcm16 = np.round(audio * 32767).astype(np.int16)
    reference = Detector(model_dir).score_pcm(pcm16)
    for chunk_form in (pcm16, pcm16.astype("<i2").tobytes()):
        detector = Detector(model_dir)
        step = 2 * 1000 if isinstance(chunk_form, bytes) else 1000
        for i in range(0, len(chunk_form), step):
            detector.process(chunk_form[i:i + step])
        np.testing.assert_allclose(np.array(detector.scores), reference, atol=1e-5)


def test_detection_times_are_stream_times_and_reset_restarts_them(model_dir, bursts):
    detector = Detector(model_dir)
    first = detector.process(bursts(3.0, [1.0]))
    second = detector.process(bursts(3.0, [1.0]))
    assert len(first) == len(second) == 1
    assert abs(first[0].time_s - 1.0) <= 0.1
    assert abs(second[0].time_s - 4.0) <= 0.1  # 3 s later in the stream
    assert detector.time_s == pytest.approx(detector.hops * HOP_SECONDS)
    assert detector.hops == 6 * SAMPLE_RATE // HOP_SAMPLES

    detector.reset()
    assert detector.hops == 0 and len(detector.scores) == 0
    assert detector.process(bursts(3.0, [1.0])) == first


def test_refractory_period_suppresses_a_second_burst(model_dir, bursts):
    audio = bursts(5.0, [1.0, 1.8], burst_s=0.2)
    assert len(Detector(model_dir, refractory_s=0.5).detect_pcm(audio)) == 2
    assert len(Detector(model_dir, refractory_s=2.0).detect_pcm(audio)) == 1


def test_overrides_replace_manifest_trigger_settings(model_dir, bursts):
    assert Detector(model_dir).settings == TriggerSettings(0.5, 1, 1.0)
    tuned = Detector(model_dir, threshold=0.9, smoothing_hops=4, refractory_s=0.25)
    assert tuned.settings == TriggerSettings(0.9, 4, 0.25)
    # Averaging four hops delays the crossing of a higher threshold.
    audio = bursts(3.0, [1.0])
    assert tuned.detect_pcm(audio)[0].time_s > Detector(model_dir).detect_pcm(audio)[0].time_s


def test_int8_flag_runs_the_quantized_file(model_dir, bursts):
    fp32, int8 = Detector(model_dir), Detector(model_dir, int8=True)
    assert int8.model_path.name == "model.int8.onnx" and fp32.model_path.name == "model.onnx"
    audio = bursts(3.0, [1.0])
    # The fixture's int8 stand-in is centred higher, so it scores the same audio lower.
    assert int8.score_pcm(audio).max() < fp32.score_pcm(audio).max()


def test_score_history_is_bounded(model_dir):
    detector = Detector(model_dir, history_hops=5)
    detector.process(np.zeros(20 * HOP_SAMPLES, np.float32))
    assert detector.hops == 20 and len(detector.scores) == 5


def test_detection_to_dict_is_json_ready():
    detection = Detection(time_s=1.04, score=0.987654321, wake_word="hey hark")
    assert json.loads(json.dumps(detection.to_dict())) == {
        "time_s": 1.04, "score": 0.987654, "wake_word": "hey hark"}


def test_tone_outside_the_band_is_ignored(detector, fixture_spec):
    """The fixture classifier is frequency selective, so this checks the features path
    really computes spectra rather than loudness."""
    t = np.arange(3 * SAMPLE_RATE) / SAMPLE_RATE
    off_band = (0.5 * np.sin(2 * np.pi * (fixture_spec.tone_hz * 2.5) * t)).astype(np.float32)
    assert detector.detect_pcm(off_band) == []


# ------------------------------------------------------------------ errors

def test_missing_model_folder_is_a_sentry_error(tmp_path):
    with pytest.raises(SentryError, match="no manifest"):
        Detector(tmp_path / "nope")


def test_manifest_with_other_framing_is_rejected(tmp_path, fixture_spec):
    folder = fixture_spec.write_model_dir(tmp_path / "m", hop_samples=640)
    with pytest.raises(SentryError, match=r"different framing: hop_samples=640 \(this sentry uses 1280\)"):
        Detector(folder)


def test_int8_without_quantized_file_says_how_to_fix(tmp_path, fixture_spec):
    folder = fixture_spec.write_model_dir(tmp_path / "m", files={"features": "features.onnx",
                                                    "model": "model.onnx"})
    with pytest.raises(SentryError, match="no 'model_int8' file.*drop --int8"):
        Detector(folder, int8=True)


def test_corrupt_onnx_file_is_named(tmp_path, fixture_spec):
    folder = fixture_spec.write_model_dir(tmp_path / "m")
    (folder / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(SentryError, match=r"model\.onnx: cannot load the ONNX graph"):
        Detector(folder)


@pytest.mark.parametrize("kwargs,message", [
    ({"threshold": 1.5}, "threshold must be in"),
    ({"smoothing_hops": 0}, "smoothing_hops must be >= 1"),
    ({"threads": 0}, "threads must be >= 1"),
])
def test_invalid_settings_are_sentry_errors(model_dir, kwargs, message):
    with pytest.raises(SentryError, match=message):
        Detector(model_dir, **kwargs)
