"""The wake-word detector: an exported model folder run with onnxruntime.

Two paths over the same two graphs, giving the same scores:
  * streaming (`Detector.process`): audio chunks of any size in, detections out, with
    O(1) state (a few hundred samples and a ring of WINDOW_FRAMES mel frames);
  * batch (`Detector.score_pcm`, `detect_pcm`, `scan_file`): a whole recording at once,
    feature and classifier graphs run on many hops per call.

Framing (see sentry.constants): the stream is prefixed by OVERLAP_SAMPLES of silence;
hop i feeds samples [i*HOP - OVERLAP, (i+1)*HOP) to features.onnx, which returns
HOP_FRAMES new mel frames; the classifier scores the last WINDOW_FRAMES frames. Before
the stream starts, the frame ring holds the frames of silence. Score i belongs to the
end of hop i, (i + 1) * HOP_SECONDS after the start.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort

from .audio import read_wav, to_float32
from .constants import (HOP_FRAMES, HOP_SAMPLES, N_MELS, OVERLAP_SAMPLES, SAMPLE_RATE,
                        WINDOW_FRAMES)
from .errors import SentryError
from .manifest import Manifest, load_manifest
from .postprocess import HOP_SECONDS, Trigger, TriggerSettings, detect_hops, smooth

FEATURE_INPUT_SAMPLES = OVERLAP_SAMPLES + HOP_SAMPLES
"""Samples features.onnx takes per hop (1520): the previous hop's tail plus a new hop."""

BATCH_HOPS = 512
"""Hops per onnxruntime call on the batch path (and for big streaming chunks): large
enough to amortise call overhead, small enough that a window batch stays ~12 MB."""

SCORE_HISTORY_HOPS = 750
"""Raw scores kept in `Detector.scores`: 60 s at one score per 80 ms hop."""

RING_SLACK_FRAMES = BATCH_HOPS * HOP_FRAMES
"""Spare rows after the live window in the frame ring, so appending a hop is a copy
into place and the window is compacted to the front once per many hops."""


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


class _FrameRing:
    """The last WINDOW_FRAMES mel frames, in a preallocated array with slack after them."""

    def __init__(self, initial: np.ndarray) -> None:
        self._data = np.empty((WINDOW_FRAMES + RING_SLACK_FRAMES, N_MELS), dtype=np.float32)
        self._initial = initial
        self.reset()

    def reset(self) -> None:
        self._data[:WINDOW_FRAMES] = self._initial
        self._end = WINDOW_FRAMES

    def append(self, frames: np.ndarray) -> None:
        """Add [n, N_MELS] frames, n <= RING_SLACK_FRAMES."""
        n = frames.shape[0]
        if self._end + n > self._data.shape[0]:
            self._data[:WINDOW_FRAMES] = self._data[self._end - WINDOW_FRAMES:self._end]
            self._end = WINDOW_FRAMES
        self._data[self._end:self._end + n] = frames
        self._end += n

    def last_windows(self, n_hops: int) -> np.ndarray:
        """Read-only view [n_hops, WINDOW_FRAMES, N_MELS]: the windows ending at each of
        the last n_hops hops appended (which must all still be in the buffer)."""
        start = self._end - WINDOW_FRAMES - HOP_FRAMES * (n_hops - 1)
        return _windows(self._data[start:self._end], n_hops)


def _windows(frames: np.ndarray, n_hops: int) -> np.ndarray:
    """Windows of WINDOW_FRAMES frames stepping by HOP_FRAMES over a C-contiguous
    [WINDOW_FRAMES + HOP_FRAMES * (n_hops - 1), N_MELS] array, without copying."""
    row, col = frames.strides
    return np.lib.stride_tricks.as_strided(
        frames, shape=(n_hops, WINDOW_FRAMES, N_MELS),
        strides=(HOP_FRAMES * row, row, col), writeable=False)


def _hop_inputs(samples: np.ndarray) -> np.ndarray:
    """[hops, FEATURE_INPUT_SAMPLES] view of every complete hop in `samples`, which
    starts with the OVERLAP_SAMPLES of context before the first hop."""
    n_hops = max(0, (samples.size - OVERLAP_SAMPLES) // HOP_SAMPLES)
    if n_hops == 0:
        return np.zeros((0, FEATURE_INPUT_SAMPLES), dtype=np.float32)
    view = np.lib.stride_tricks.sliding_window_view(samples, FEATURE_INPUT_SAMPLES)
    return view[::HOP_SAMPLES][:n_hops]


def _check_framing(manifest: Manifest, folder: Path) -> None:
    """The graphs are only meaningful with the framing this sentry streams with."""
    expected = {"sample_rate": SAMPLE_RATE, "hop_samples": HOP_SAMPLES,
                "overlap_samples": OVERLAP_SAMPLES, "window_frames": WINDOW_FRAMES,
                "hop_frames": HOP_FRAMES, "n_mels": N_MELS}
    wrong = [f"{k}={getattr(manifest, k)} (this sentry uses {v})"
             for k, v in expected.items() if getattr(manifest, k) != v]
    if wrong:
        raise SentryError(f"{folder}: the model was exported for a different framing: "
                          f"{', '.join(wrong)}; re-export it with this version of hark")


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
                 providers: Sequence[str] = ("CPUExecutionProvider",), threads: int = 1,
                 history_hops: int = SCORE_HISTORY_HOPS) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = load_manifest(self.model_dir)
        _check_framing(self.manifest, self.model_dir)
        self.wake_word = self.manifest.wake_word
        overrides = {k: v for k, v in (("threshold", threshold), ("smoothing_hops", smoothing_hops),
                                       ("refractory_s", refractory_s)) if v is not None}
        try:
            self.settings: TriggerSettings = dataclasses.replace(self.manifest.trigger, **overrides)
        except ValueError as exc:
            raise SentryError(f"invalid trigger setting: {exc}") from exc
        if threads < 1:
            raise SentryError(f"threads must be >= 1, got {threads}")

        role = "model_int8" if int8 else "model"
        for needed in ("features", role):
            if needed not in self.manifest.files:
                hint = " (export with quantization, or drop --int8)" if needed == "model_int8" else ""
                raise SentryError(f"{self.model_dir}: the manifest lists no '{needed}' file{hint}")
        self.features_path = self.model_dir / self.manifest.files["features"]
        self.model_path = self.model_dir / self.manifest.files[role]
        self._features = _Graph(self.features_path, providers, threads)
        self._model = _Graph(self.model_path, providers, threads)

        silence = self._run_features(np.zeros((1, FEATURE_INPUT_SAMPLES), dtype=np.float32))
        if silence.shape != (1, HOP_FRAMES, N_MELS):
            raise SentryError(f"{self.features_path}: returns shape {list(silence.shape)} for one "
                              f"hop, expected [1, {HOP_FRAMES}, {N_MELS}]; re-export the model")
        # As if the stream were preceded by silence for a whole window.
        reps = -(-WINDOW_FRAMES // HOP_FRAMES)
        self._initial_frames = np.tile(silence[0], (reps, 1))[-WINDOW_FRAMES:].copy()
        self._ring = _FrameRing(self._initial_frames)
        self._trigger = Trigger(self.settings)
        self.scores: deque[float] = deque(maxlen=history_hops)
        self.reset()

    # ------------------------------------------------------------------ graphs

    def _run_features(self, inputs: np.ndarray) -> np.ndarray:
        """[hops, FEATURE_INPUT_SAMPLES] -> [hops, HOP_FRAMES, N_MELS], BATCH_HOPS per call."""
        parts = [self._features.run(np.ascontiguousarray(inputs[i:i + BATCH_HOPS]))
                 for i in range(0, inputs.shape[0], BATCH_HOPS)]
        if not parts:
            return np.zeros((0, HOP_FRAMES, N_MELS), dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    def _run_model(self, windows: np.ndarray) -> np.ndarray:
        """[n, WINDOW_FRAMES, N_MELS] -> [n] probabilities, BATCH_HOPS per call."""
        parts = []
        for i in range(0, windows.shape[0], BATCH_HOPS):
            batch = np.ascontiguousarray(windows[i:i + BATCH_HOPS])
            prob = self._model.run(batch).reshape(-1)
            if prob.size != batch.shape[0]:
                raise SentryError(f"{self.model_path}: returned {prob.size} scores for "
                                  f"{batch.shape[0]} windows; expected output 'prob' [B]")
            parts.append(prob)
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ streaming

    def reset(self) -> None:
        """Start a new stream: time 0, silence before it, trigger and history cleared."""
        # The OVERLAP_SAMPLES before the first hop are silence; new audio goes after them.
        self._tail = np.zeros(OVERLAP_SAMPLES, dtype=np.float32)
        self._ring.reset()
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
        audio = to_float32(chunk)
        samples = np.concatenate([self._tail, audio]) if audio.size else self._tail
        inputs = _hop_inputs(samples)
        detections: list[Detection] = []
        for start in range(0, inputs.shape[0], BATCH_HOPS):
            block = inputs[start:start + BATCH_HOPS]
            frames = self._run_features(block)
            self._ring.append(frames.reshape(-1, N_MELS))
            for score in self._run_model(self._ring.last_windows(block.shape[0])):
                detections.extend(self._score_hop(float(score)))
        self._tail = samples[inputs.shape[0] * HOP_SAMPLES:].copy()
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
        audio = to_float32(pcm)
        samples = np.concatenate([np.zeros(OVERLAP_SAMPLES, dtype=np.float32), audio])
        inputs = _hop_inputs(samples)
        n_hops = inputs.shape[0]
        if n_hops == 0:
            return np.zeros(0, dtype=np.float32)
        frames = self._run_features(inputs).reshape(-1, N_MELS)
        sequence = np.concatenate([self._initial_frames[HOP_FRAMES:], frames])
        return self._run_model(_windows(sequence, n_hops))

    def detect_pcm(self, pcm: np.ndarray) -> list[Detection]:
        """Detections in a whole 16 kHz recording, with this detector's trigger settings."""
        scores = self.score_pcm(pcm)
        smoothed = smooth(scores, self.settings.smoothing_hops)
        hops = detect_hops(smoothed, self.settings.threshold, self.settings.refractory_hops)
        return [Detection(float((h + 1) * HOP_SECONDS), float(smoothed[h]), self.wake_word)
                for h in hops]

    def scan_file(self, path: str | Path) -> list[Detection]:
        """Detections in a WAV file (any rate and channel count; see sentry.audio.read_wav)."""
        return self.detect_pcm(read_wav(path))


class _Graph:
    """One onnxruntime session with a single input and a single output that matters."""

    def __init__(self, path: Path, providers: Sequence[str], threads: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # onnxruntime's warnings are not the user's problem
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options,
                                                providers=list(providers))
        except Exception as exc:  # onnxruntime raises bare RuntimeErrors/Fail subclasses
            raise SentryError(f"{path}: cannot load the ONNX graph ({exc}); re-export the "
                              "model or check the --provider names") from exc
        self.path = path
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: x})[0]
        except Exception as exc:
            raise SentryError(f"{self.path}: inference failed on input {list(x.shape)} ({exc})") from exc
