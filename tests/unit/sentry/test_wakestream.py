"""WakeStream: several Detectors on one stream, a trigger level, clips held for a judge."""

from __future__ import annotations

import numpy as np
import pytest

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE
from sentry.detector import Detector
from sentry.errors import SentryError
from sentry.postprocess import Trigger, TriggerSettings
from sentry.wakestream import WakeStream

ODD_CHUNK = 1_000
"""Samples per fed chunk: not a multiple of the 1280-sample hop, so hops straddle chunks."""


def _feed(stream: WakeStream, audio: np.ndarray, chunk: int = ODD_CHUNK) -> list:
    hits = []
    for i in range(0, audio.size, chunk):
        hits += stream.feed(audio[i:i + chunk])
    return hits + stream.finish()


def test_level_one_fires_where_the_batch_detector_does(model_dir, bursts):
    settings = {"smoothing_hops": 3, "refractory_s": 0.3}
    audio = bursts(6.0, [0.7, 2.0, 2.6, 4.5])
    expected = Detector(model_dir, **settings).detect_pcm(audio)
    hits = _feed(WakeStream([("tone", Detector(model_dir, **settings))]), audio)
    assert len(expected) >= 4
    assert [h.detection.time_s for h in hits] == [d.time_s for d in expected]
    assert [h.detection.score for h in hits] == pytest.approx([d.score for d in expected], abs=1e-5)
    assert all(h.clip is None for h in hits)  # no clip_span: no clips kept


def test_trigger_level_counts_consecutive_hops():
    settings = TriggerSettings(threshold=0.5, smoothing_hops=1, refractory_s=0.0)
    trigger = Trigger(settings, level=3)
    fired = [trigger.update(s)[0] for s in [0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9]]
    assert fired == [False, False, False, False, False, True, False, False, True]
    with pytest.raises(SentryError, match="trigger level"):
        Trigger(settings, level=0)


def test_hits_wait_for_their_clip_and_carry_the_stream_audio(model_dir, bursts):
    lead, post = 2 * SAMPLE_RATE, SAMPLE_RATE // 2  # a clip: 2 s before to 0.5 s after

    def span(time_s: float) -> tuple[int, int]:
        at = round(time_s * SAMPLE_RATE)
        return at - lead, at + post

    audio = bursts(6.0, [3.0])
    stream = WakeStream([("tone", Detector(model_dir))], clip_span=span)
    fed = 0
    for i in range(0, audio.size, ODD_CHUNK):
        hits = stream.feed(audio[i:i + ODD_CHUNK])
        fed += audio[i:i + ODD_CHUNK].size
        if hits:
            break
    [hit] = hits
    start, end = span(hit.detection.time_s)
    assert end <= fed < end + ODD_CHUNK  # held back until its post-roll had arrived
    np.testing.assert_array_equal(hit.clip, audio[start:end])
    assert stream.finish() == []


def test_finish_releases_a_hit_whose_clip_the_stream_cut_short(model_dir, bursts):
    audio = bursts(1.2, [0.6])  # fires near 0.64 s; the post-roll would pass the end

    def span(time_s: float) -> tuple[int, int]:
        at = round(time_s * SAMPLE_RATE)
        return at - 2 * SAMPLE_RATE, at + SAMPLE_RATE

    stream = WakeStream([("tone", Detector(model_dir))], clip_span=span)
    assert stream.feed(audio) == []
    [hit] = stream.finish()
    # What exists: from the stream's start to its last complete hop's audio.
    np.testing.assert_array_equal(hit.clip, audio[:stream.samples])
    assert stream.samples == audio.size and hit.detection.time_s < 0.8


def test_models_on_one_stream_trigger_independently(model_dir, bursts):
    audio = bursts(5.0, [1.0, 3.0])
    patient, eager = Detector(model_dir, refractory_s=4.0), Detector(model_dir, refractory_s=1.0)
    hits = _feed(WakeStream([("patient", patient), ("eager", eager)]), audio)
    names = [h.detection.wake_word for h in hits]
    assert sorted(names) == ["eager", "eager", "patient"]
    times = [h.detection.time_s for h in hits]
    assert times == sorted(times)  # one time-ordered answer for the whole stream
    assert times[0] == pytest.approx(1.0, abs=3 * HOP_SAMPLES / SAMPLE_RATE)
