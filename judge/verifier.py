"""The judge's model: an exported folder's clip.onnx run with onnxruntime, and WAV decoding.

A clip sent by a sentry holds pre-roll (>= 0.5 s before the sentry fired), the wake word
and a little after, so it is longer than the model's 1.5 s window and the wake word can
sit anywhere in it. The verifier slides the window over the clip in 80 ms steps (the
sentry's hop) and takes the highest probability: the score of the best-aligned window.

No torch here: numpy, onnxruntime and the sentry's own WAV and resampling code, so the
server decodes audio exactly as the device and the trainer do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sentry.audio import (WAVE_FORMAT_IEEE_FLOAT, check_format, decode_pcm, parse_riff,
                          resample)
from sentry.constants import CLIP_SAMPLES, HOP_SAMPLES, SAMPLE_RATE
from sentry.errors import SentryError
from sentry.manifest import Manifest, load_manifest

from .errors import JudgeError

STEP_SAMPLES = HOP_SAMPLES
"""Samples between two scored windows: 80 ms, the sentry's hop, so a wake word is never
more than 40 ms from the best window's alignment."""

BATCH_WINDOWS = 32
"""Windows per onnxruntime call: a [32, 24000] float32 batch is 3 MB."""

SUPPORTED_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
                   88_200, 96_000, 176_400, 192_000)
"""Hz. The rates sound cards and codecs produce. Any other rate is refused: resampling an
arbitrary rate (say 191999 Hz) needs a polyphase table of millions of taps per request."""

MAX_CHANNELS = 8
"""Channels accepted in one WAV (7.1 audio); more is a malformed or hostile header."""

MODEL_VERSION_HEX = 12
"""Hex digits of the clip graph's SHA-256 used as the model version."""

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
    up to MAX_CHANNELS channels) to float32 mono 16 kHz; channels are averaged.

    max_seconds: longest clip accepted, checked from the header before any decoding.
    Every problem is a JudgeError with status 400 and a code naming it.
    """
    if not blob:
        raise JudgeError("the request body is empty; send a WAV file holding the clip "
                         "(pre-roll, the wake word and a little after)", code="empty_body")
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RIFX") or blob[8:12] != b"WAVE":
        raise JudgeError("the body is not a WAV file (no RIFF/WAVE header); send the clip as "
                         "a WAV file with Content-Type: audio/wav", code="not_wav")
    try:
        fmt = parse_riff(BODY_LABEL, blob)
    except SentryError as exc:
        raise JudgeError(f"{exc}; send a complete WAV file", code="bad_wav") from exc
    try:
        check_format(BODY_LABEL, fmt)
    except SentryError as exc:
        raise JudgeError(str(exc), code="unsupported_encoding") from exc
    if fmt.rate not in SUPPORTED_RATES:
        raise JudgeError(f"sample rate {fmt.rate} Hz is not supported; send one of "
                         f"{', '.join(str(r) for r in SUPPORTED_RATES)} Hz (16000 is best)",
                         code="unsupported_rate")
    if fmt.channels > MAX_CHANNELS:
        raise JudgeError(f"the WAV header claims {fmt.channels} channels; at most "
                         f"{MAX_CHANNELS} are accepted (mono is best)", code="bad_wav")
    raw = blob[fmt.data_offset:fmt.data_offset + fmt.data_size]
    if len(raw) < fmt.data_size:
        raise JudgeError(f"truncated WAV: the header promises {fmt.data_size} bytes of audio but "
                         f"the body holds {len(raw)}; send the whole file", code="bad_wav")
    frame_bytes = fmt.channels * fmt.width
    frames = len(raw) // frame_bytes
    if frames == 0:
        raise JudgeError("the WAV file holds no audio; send the clip around the detection",
                         code="empty_audio")
    seconds = frames / fmt.rate
    if seconds > max_seconds:
        raise JudgeError(f"the clip is {seconds:.1f} s long; this judge accepts at most "
                         f"{max_seconds:g} s (pre-roll, the wake word and a little after)",
                         code="clip_too_long")
    samples = decode_pcm(raw[:frames * frame_bytes], fmt.width,
                          fmt.format_tag == WAVE_FORMAT_IEEE_FLOAT)
    mono = samples.reshape(frames, fmt.channels).mean(axis=1, dtype=np.float32)
    if not np.all(np.isfinite(mono)):
        raise JudgeError("the float WAV holds NaN or infinite samples; send audio in [-1, 1]",
                         code="bad_audio")
    # Float WAVs may exceed full scale; the models were trained on audio in [-1, 1].
    mono = np.clip(mono, -1.0, 1.0)
    return DecodedClip(resample(mono, fmt.rate, SAMPLE_RATE), fmt.rate, fmt.channels)


def sliding_windows(pcm: np.ndarray) -> np.ndarray:
    """[n_windows, CLIP_SAMPLES] read-only view of 1.5 s windows every STEP_SAMPLES.

    Windows are aligned to the clip's end: a sentry's clip ends a whole number of hops
    after the hop that fired (sentry.judge_client.clip_span), so the very window the
    sentry scored is among them. One more window at the clip's start means no audio
    goes unscored. A clip shorter than a window is preceded by silence, as the
    sentry's stream is.
    """
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    if pcm.size < CLIP_SAMPLES:
        pcm = np.concatenate([np.zeros(CLIP_SAMPLES - pcm.size, np.float32), pcm])
    view = np.lib.stride_tricks.sliding_window_view(pcm, CLIP_SAMPLES)
    starts = list(range(pcm.size - CLIP_SAMPLES, -1, -STEP_SAMPLES))[::-1]
    if starts[0] != 0:
        starts.insert(0, 0)
    return view[starts]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "model"


def load_judge_manifest(model_dir: Path) -> Manifest:
    """The manifest of a folder the judge can serve: it lists a clip graph over
    CLIP_SAMPLES-sample windows at SAMPLE_RATE. Every problem is a JudgeError."""
    try:
        manifest = load_manifest(model_dir)
    except SentryError as exc:
        raise JudgeError(f"cannot load the judge model: {exc}") from exc
    if "clip" not in manifest.files:
        raise JudgeError(f"{model_dir}: the manifest lists no 'clip' graph; re-export "
                         "the model with a current `hark export`, which writes clip.onnx")
    if (manifest.sample_rate, manifest.window_samples) != (SAMPLE_RATE, CLIP_SAMPLES):
        raise JudgeError(f"{model_dir}: the model takes {manifest.window_samples}-sample "
                         f"windows at {manifest.sample_rate} Hz; this judge scores "
                         f"{CLIP_SAMPLES} at {SAMPLE_RATE} Hz; re-export it")
    return manifest


class Verifier:
    """One exported model folder's clip.onnx, loaded once and shared by a worker's threads.

    model_dir: folder written by `hark export` (manifest.json and clip.onnx).
    threshold: score (0..1) at or above which a clip is verified; default the manifest's.
    threads: onnxruntime intra-op threads; concurrency comes from the server's request
        threads (onnxruntime's run is thread-safe and releases the GIL), so 1 is right.
    """

    def __init__(self, model_dir: str | Path, *, threshold: float | None = None,
                 threads: int = 1,
                 providers: Sequence[str] = ("CPUExecutionProvider",)) -> None:
        self.model_dir = Path(model_dir)
        self.manifest = load_judge_manifest(self.model_dir)
        self.threshold = self.manifest.threshold if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise JudgeError(f"judge threshold must be in [0, 1], got {self.threshold}")
        self.clip_path = self.model_dir / self.manifest.files["clip"]
        blob = self.clip_path.read_bytes()
        self.version = hashlib.sha256(blob).hexdigest()[:MODEL_VERSION_HEX]
        self.name = _slug(self.manifest.wake_word)
        import onnxruntime as ort  # here, so validating a setup does not pay for importing it

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(blob, sess_options=options,
                                                 providers=list(providers))
        except Exception as exc:  # onnxruntime raises bare RuntimeError/Fail subclasses
            raise JudgeError(f"{self.clip_path}: cannot load the ONNX graph ({exc}); "
                             "re-export the model") from exc
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        # One real inference now: a graph that loads but cannot run fails at startup,
        # not on the first device's request, and /readyz means what it says.
        self.score(np.zeros(CLIP_SAMPLES, np.float32))

    def score(self, pcm: np.ndarray) -> float:
        """Highest window probability (0..1) over a float32 16 kHz mono clip."""
        windows = sliding_windows(pcm)
        best = 0.0
        for i in range(0, windows.shape[0], BATCH_WINDOWS):
            batch = np.ascontiguousarray(windows[i:i + BATCH_WINDOWS])
            prob = np.asarray(self._session.run([self._output], {self._input: batch})[0])
            prob = prob.reshape(-1)
            if prob.size != batch.shape[0] or not np.all(np.isfinite(prob)):
                raise RuntimeError(f"{self.clip_path}: returned {prob.size} scores "
                                   f"(finite: {bool(np.all(np.isfinite(prob)))}) for "
                                   f"{batch.shape[0]} windows")
            best = max(best, float(prob.max()))
        return best

    def describe(self) -> dict[str, Any]:
        """What /v1/models says about this model."""
        m = self.manifest
        return {"name": self.name, "version": self.version, "wake_word": m.wake_word,
                "threshold": self.threshold, "manifest_threshold": m.threshold,
                "architecture": m.architecture, "parameters": m.parameters,
                "config_hash": m.config_hash, "created": m.created,
                "sample_rate": SAMPLE_RATE, "window_seconds": CLIP_SAMPLES / SAMPLE_RATE,
                "step_seconds": STEP_SAMPLES / SAMPLE_RATE}

