"""The wake-word detector: an exported model folder run with onnxruntime.

Two paths over the same two graphs (sentry.scoring), giving the same scores:
  * streaming (`Detector.process`): audio chunks of any size in, detections out, with
    O(1) state (a few hundred samples and a ring of WINDOW_FRAMES mel frames);
  * batch (`Detector.score_pcm`, `detect_pcm`, `scan_file`): a whole recording at once,
    feature and classifier graphs run on many hops per call.

The framing (hops, windows, silence before the stream) is sentry.scoring's; the trigger
(smoothing, threshold, refractory period) is sentry.postprocess's. Score i belongs to the
end of hop i, (i + 1) * HOP_SECONDS after the start.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .audio import read_wav, to_float32
from .errors import SentryError
from .manifest import load_manifest
from .postprocess import HOP_SECONDS, Trigger, TriggerSettings, detect_hops, smooth
from .scoring import DEFAULT_PROVIDERS, Graphs, StreamScorer

SCORE_HISTORY_HOPS = 750
"""Raw scores kept in `Detector.scores`: 60 s at one score per 80 ms hop."""


@dataclass
class Detection:
    """One firing of the detector.

    time_s: stream time in seconds of the end of the hop that fired.
    score: smoothed score (0..1) that reached the threshold.
    """

    time_s: float
    score: float
    wake_word: str

    def to_dict(self) -> dict[str, float | str]:
        return {"time_s": round(self.time_s, 4), "score": round(self.score, 6),
                "wake_word": self.wake_word}


class Detector:
    """Load an exported model folder and score audio with it.

    model_dir: folder written by `hark export` (manifest.json, features.onnx, model.onnx...).
    int8: use the quantized classifier (model.int8.onnx) instead of model.onnx.
    threshold, smoothing_hops, refractory_s: override the manifest's trigger settings.
    providers: onnxruntime execution providers, in order of preference.
    threads: intra-op threads per session; one stream rarely gains from more on an edge CPU.
    history_hops: how many recent raw scores `scores` keeps (one per 80 ms hop).

    Streaming state: `hops` (hops scored since the last reset), `time_s` (their end,
    in seconds) and `scores` (the most recent raw scores, oldest first).
    """

    def __init__(self, model_dir: str | Path, *, int8: bool = False,
                 threshold: float | None = None, smoothing_hops: int | None = None,
                 refractory_s: float | None = None,
                 providers: Sequence[str] = DEFAULT_PROVIDERS, threads: int = 1,
                 history_hops: int = SCORE_HISTORY_HOPS) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(self.model_dir)
        self.wake_word = self.manifest.wake_word
        overrides = {k: v for k, v in (("threshold", threshold), ("smoothing_hops", smoothing_hops),
                                       ("refractory_s", refractory_s)) if v is not None}
        try:
            self.settings: TriggerSettings = dataclasses.replace(self.manifest.trigger, **overrides)
        except ValueError as exc:
            raise SentryError(f"invalid trigger setting: {exc}") from exc
        self.graphs = Graphs(self.model_dir, int8=int8, providers=providers, threads=threads,
                             manifest=self.manifest)
        self.features_path = self.graphs.features_path
        self.model_path = self.graphs.model_path
        self._stream = StreamScorer(self.graphs)
        self._trigger = Trigger(self.settings)
        self.scores: deque[float] = deque(maxlen=history_hops)
        self.reset()

    # ------------------------------------------------------------------ streaming

    def reset(self) -> None:
        """Start a new stream: time 0, silence before it, trigger and history cleared."""
        self._stream.reset()
        self._trigger.reset()
        self.scores.clear()
        self.hops = 0

    @property
    def time_s(self) -> float:
        """Stream time in seconds up to which audio has been scored."""
        return self.hops * HOP_SECONDS

    def process(self, chunk: np.ndarray | bytes) -> list[Detection]:
        """Feed the next chunk of 16 kHz mono audio (any length; int16, float or raw
        int16 bytes); returns the detections fired by the hops it completed."""
        detections: list[Detection] = []
        for score in self._stream.push(to_float32(chunk)):
            detections.extend(self._score_hop(float(score)))
        return detections

    def _score_hop(self, score: float) -> list[Detection]:
        self.hops += 1
        self.scores.append(score)
        fired, smoothed = self._trigger.update(score)
        return [Detection(self.hops * HOP_SECONDS, smoothed, self.wake_word)] if fired else []

    # ------------------------------------------------------------------ batch

    def score_pcm(self, pcm: np.ndarray) -> np.ndarray:
        """Raw scores, one per complete hop of a whole 16 kHz recording (float32 [hops]).

        Independent of the streaming state; equal to streaming the same audio from a
        reset detector. Score i belongs to time (i + 1) * HOP_SECONDS.
        """
        return self.graphs.score_pcm(to_float32(pcm))

    def detect_pcm(self, pcm: np.ndarray) -> list[Detection]:
        """Detections in a whole 16 kHz recording, with this detector's trigger settings."""
        return self.detect_scores(self.score_pcm(pcm))

    def detect_scores(self, scores: np.ndarray) -> list[Detection]:
        """Detections from raw per-hop scores (``score_pcm``'s output), with this detector's
        trigger settings: what ``detect_pcm`` returns for the audio they were scored on."""
        scores = np.asarray(scores, dtype=np.float32)
        smoothed = smooth(scores, self.settings.smoothing_hops)
        hops = detect_hops(smoothed, self.settings.threshold, self.settings.refractory_hops)
        return [Detection(float((h + 1) * HOP_SECONDS), float(smoothed[h]), self.wake_word)
                for h in hops]

    def scan_file(self, path: str | Path) -> list[Detection]:
        """Detections in a WAV file (any rate and channel count; see sentry.audio.read_wav)."""
        return self.detect_pcm(read_wav(path))
