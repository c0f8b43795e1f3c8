"""The judge's model, and WAV decoding.

A clip sent by a sentry holds pre-roll (>= 0.5 s before the sentry fired), the wake word
and POST_ROLL_HOPS hops after, and ends on the sentry's 80 ms hop grid
(sentry.judge_client.clip_span). The judge scores it with the sentry's own scoring core
(sentry.scoring.ClipScorer): the 1.5 s windows that lie wholly inside the clip and end at
its end and at each hop before it, back SCORED_TAIL_HOPS hops, and the highest mean over
the manifest's smoothing_hops consecutive windows, as the sentry's trigger smooths its
scores. An isolated spike on one window is how most false accepts look; a wake word holds
its score over several hops. On the cascade evaluation (benchmarks/RESULTS.md) the
smoothed score rejected more false accepts at the same FRR than the single best window.

Which windows, and why only those: a sentry's 2.24 s clip holds 10 whole windows, from 9
hops before the one the sentry fired on to 3 after, and all are scored; a window ending
earlier would reach before the clip, into audio the judge never received. The tail limit
(SCORED_TAIL_SECONDS, 0.96 s) binds only on longer clips, whose wake word must end in
their last 0.96 s: it bounds the work per request whatever the clip's length. A clip
shorter than a window gets one window, ending at the clip's end and preceded by silence,
as the sentry's stream is before it starts.

A window ending at sample E is exactly what the sentry scored at the hop ending at E, and
equals clip.onnx on samples [E - WINDOW_SPAN_SAMPLES, E + CLIP_SAMPLES - WINDOW_SPAN_SAMPLES)
(clip.onnx frames its 1.5 s input without centre padding, so its last 80 samples are
never read). Computing the features once per hop instead of once per window is what
makes this ~4x cheaper than running clip.onnx on each window.

This module adds what the server needs around that score: the manifest checks for a
servable folder, the model version (a hash of the graphs), describe() for /v1/models, and
decode_wav. No torch here: numpy, onnxruntime and the sentry's own code, so the server
decodes and scores audio exactly as the device does.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sentry.audio import resample
from sentry.wav import MAX_RATE, MIN_RATE, DecodeBudget, WavError, decode_wav_bytes
from sentry.constants import CLIP_SAMPLES, SAMPLE_RATE
from sentry.errors import SentryError
from sentry.manifest import Manifest, load_manifest
from sentry.scoring import (DEFAULT_PROVIDERS, SCORED_TAIL_HOPS, SCORED_TAIL_SECONDS,
                            STEP_SAMPLES, WINDOW_SPAN_SAMPLES, ClipScorer, Graphs,
                            best_smoothed, check_framing, require_graphs, window_ends)

from .errors import JudgeError

__all__ = ["Verifier", "DecodedClip", "decode_wav", "load_judge_manifest", "GRAPH_ROLES",
           "SUPPORTED_RATES", "MAX_CHANNELS",
           # the clip scoring the judge serves, defined in sentry.scoring:
           "STEP_SAMPLES", "SCORED_TAIL_HOPS", "SCORED_TAIL_SECONDS", "WINDOW_SPAN_SAMPLES",
           "window_ends", "best_smoothed"]

SUPPORTED_RATES = tuple(r for r in (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000,
                                     44_100, 48_000, 88_200, 96_000, 176_400, 192_000)
                        if MIN_RATE <= r <= MAX_RATE)
"""Hz. The rates sound cards and codecs produce, within sentry.wav's range. Any other rate
is refused: resampling an arbitrary rate (say 191999 Hz) needs a polyphase table of
millions of taps."""

MAX_CHANNELS = 8
"""Channels accepted in one WAV (7.1 audio); more is a malformed or hostile header."""

MAX_DECODED_SAMPLES_PER_SECOND = 48_000 * 2
"""Samples (frames x channels) decoded per second of the clip limit: 48 kHz stereo. With
the rate, the decoded samples bound the work of a request before it is done; a 10 s clip
at 192 kHz would cost the judge ~60x a sentry's 16 kHz clip."""

WAV_ERROR_CODES = {"not_wav": "not_wav", "bad_wav": "bad_wav",
                   "unsupported_encoding": "unsupported_encoding",
                   "unsupported_rate": "unsupported_rate", "too_many_channels": "bad_wav",
                   "too_long": "clip_too_long", "too_big": "bad_wav"}
"""sentry.wav's WavError reasons -> the judge's error codes (judge/openapi.json)."""

MODEL_VERSION_HEX = 12
"""Hex digits of the scoring graphs' SHA-256 used as the model version."""

GRAPH_ROLES = ("features", "model")
"""Manifest roles of the graphs the judge scores with, in the order they are hashed."""

BODY_LABEL = Path("body.wav")
"""How error messages from sentry.audio name the request body."""
@dataclass(frozen=True)
class DecodedClip:
    """A request's audio: float32 mono in [-1, 1] at SAMPLE_RATE, and what it came as."""

    pcm: np.ndarray
    source_rate: int  # Hz
    source_channels: int

    @property
    def seconds(self) -> float:
        return self.pcm.size / SAMPLE_RATE


def decode_wav(blob: bytes, max_seconds: float) -> DecodedClip:
    """Decode WAV bytes (8/16/24/32-bit PCM or 32/64-bit float, any SUPPORTED_RATES rate,
    up to MAX_CHANNELS channels) to float32 mono 16 kHz with sentry.wav, the sentry's own
    reader; channels are averaged.

    max_seconds: longest clip accepted. It and the decoded samples are checked from the
    header before any decoding. Every problem is a JudgeError with status 400 and a code
    naming it.
    """
    if not blob:
        raise JudgeError("the request body is empty; send a WAV file holding the clip "
                         "(pre-roll, the wake word and a little after)", code="empty_body")
    budget = DecodeBudget(rates=SUPPORTED_RATES, max_channels=MAX_CHANNELS,
                          max_seconds=max_seconds,
                          max_samples=int(max_seconds * MAX_DECODED_SAMPLES_PER_SECOND))
    try:
        mono, fmt = decode_wav_bytes(blob, BODY_LABEL, budget)
    except WavError as exc:
        hint = {"not_wav": "; send the clip as a WAV file with Content-Type: audio/wav",
                "bad_wav": "; send a complete WAV file",
                "too_long": " (pre-roll, the wake word and a little after)"}.get(exc.reason, "")
        raise JudgeError(f"{exc}{hint}", code=WAV_ERROR_CODES.get(exc.reason, "bad_wav")) from exc
    if mono.size == 0:
        raise JudgeError("the WAV file holds no audio; send the clip around the detection",
                         code="empty_audio")
    if not np.all(np.isfinite(mono)):
        raise JudgeError("the float WAV holds NaN or infinite samples; send audio in [-1, 1]",
                         code="bad_audio")
    # Float WAVs may exceed full scale; the models were trained on audio in [-1, 1].
    mono = np.clip(mono, -1.0, 1.0)
    return DecodedClip(resample(mono, fmt.rate, SAMPLE_RATE), fmt.rate, fmt.channels)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "model"


def load_judge_manifest(model_dir: Path) -> Manifest:
    """The manifest of a folder the judge can serve: it lists the features and model
    graphs for CLIP_SAMPLES-sample windows at SAMPLE_RATE, framed as the sentry frames.
    Checked without onnxruntime (validate_config runs it before serving); every problem
    is a JudgeError."""
    try:
        manifest = load_manifest(model_dir)
        require_graphs(manifest, model_dir, GRAPH_ROLES)
    except SentryError as exc:
        raise JudgeError(f"cannot load the judge model: {exc}") from exc
    if (manifest.sample_rate, manifest.window_samples) != (SAMPLE_RATE, CLIP_SAMPLES):
        raise JudgeError(f"{model_dir}: the model takes {manifest.window_samples}-sample "
                         f"windows at {manifest.sample_rate} Hz; this judge scores "
                         f"{CLIP_SAMPLES} at {SAMPLE_RATE} Hz; re-export it")
    try:
        check_framing(manifest, model_dir)
    except SentryError as exc:
        raise JudgeError(f"cannot load the judge model: {exc}") from exc
    return manifest


class Verifier:
    """One exported model folder, loaded once and shared by a worker's threads.

    model_dir: folder written by `hark export` (manifest.json, features.onnx, model.onnx).
    threshold: score (0..1) at or above which a clip is verified; default the manifest's.
    threads: onnxruntime intra-op threads; concurrency comes from the server's worker
        processes and request threads (onnxruntime's run releases the GIL), so 1 is right.
    """

    def __init__(self, model_dir: str | Path, *, threshold: float | None = None,
                 threads: int = 1,
                 providers: Sequence[str] = DEFAULT_PROVIDERS) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = load_judge_manifest(self.model_dir)
        self.threshold = self.manifest.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise JudgeError(f"judge threshold must be in [0, 1], got {self.threshold}")
        digest = hashlib.sha256()
        for role in GRAPH_ROLES:
            path = self.model_dir / self.manifest.files[role]
            try:
                digest.update(path.read_bytes())
            except OSError as exc:
                raise JudgeError(f"{path}: cannot read the {role} graph ({exc.strerror}); "
                                 "re-export the model") from exc
        self.version = digest.hexdigest()[:MODEL_VERSION_HEX]
        self.name = _slug(self.manifest.wake_word)
        try:
            graphs = Graphs(self.model_dir, threads=threads, providers=providers,
                            manifest=self.manifest)
            self.clips = ClipScorer(graphs, self.threshold)
            # One real inference now: graphs that load but cannot run fail at startup, not
            # on the first device's request, and /readyz means what it says.
            self.clips.score(np.zeros(CLIP_SAMPLES, np.float32))
        except SentryError as exc:
            raise JudgeError(f"cannot load the judge model: {exc}") from exc

    def window_scores(self, pcm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(ends, probabilities) of the scored windows of a float32 16 kHz mono clip
        (sentry.scoring.ClipScorer.window_scores)."""
        return self.clips.window_scores(pcm)

    def score(self, pcm: np.ndarray) -> float:
        """The clip's score (0..1) for a float32 16 kHz mono clip: best_smoothed of its
        window probabilities over the manifest's smoothing_hops."""
        return self.clips.score(pcm)

    def describe(self) -> dict[str, Any]:
        """What /v1/models says about this model."""
        m = self.manifest
        return {"name": self.name, "version": self.version, "wake_word": m.wake_word,
                "threshold": self.threshold, "manifest_threshold": m.threshold,
                "architecture": m.architecture, "parameters": m.parameters,
                "config_hash": m.config_hash, "created": m.created,
                "sample_rate": SAMPLE_RATE, "window_seconds": CLIP_SAMPLES / SAMPLE_RATE,
                "step_seconds": STEP_SAMPLES / SAMPLE_RATE,
                "scored_tail_seconds": SCORED_TAIL_SECONDS}
