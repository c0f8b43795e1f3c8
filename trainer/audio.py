"""Reading, checking and writing audio files for the trainer.

Everything inside the trainer is float32 mono at SAMPLE_RATE (16 kHz) in [-1, 1]. Files at other
rates are resampled and multi-channel files are downmixed on load; ``inspect_audio`` reports
those fixes and the problems that make a file unusable, so a dataset loader can count them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError

SILENCE_DBFS = -60.0
"""A file whose peak is below this level (dB re full scale) holds no usable signal."""
MAX_RESAMPLE_DENOMINATOR = 1_000
"""Odd rates are approximated by a ratio with at most this denominator (error < 0.1 %)."""

# Problem kinds. Fatal ones make a file unusable; fixes are applied on load and only counted.
UNREADABLE = "unreadable"
EMPTY = "empty"
SILENT = "silent"
RESAMPLED = "resampled"
DOWNMIXED = "downmixed"


@dataclass
class AudioCheck:
    """What ``inspect_audio`` found in one file.

    Attributes:
        path: the file.
        problem: the fatal problem kind (UNREADABLE, EMPTY, SILENT) or None if usable.
        detail: a human-readable explanation of ``problem`` naming the file ('' if usable).
        fixes: fixes applied on load (RESAMPLED, DOWNMIXED).
        sample_rate: the file's own rate in Hz (0 if unreadable).
        channels: the file's channel count (0 if unreadable).
        seconds: duration in seconds.
        peak_dbfs: peak level in dB re full scale (-inf for digital silence).
    """

    path: Path
    problem: str | None = None
    detail: str = ""
    fixes: list[str] = field(default_factory=list)
    sample_rate: int = 0
    channels: int = 0
    seconds: float = 0.0
    peak_dbfs: float = float("-inf")

    @property
    def usable(self) -> bool:
        return self.problem is None


def resample(audio: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Resample float audio from ``from_rate`` to ``to_rate`` Hz with a polyphase filter."""
    if from_rate == to_rate:
        return np.asarray(audio, dtype=np.float32)
    ratio = Fraction(to_rate, from_rate).limit_denominator(MAX_RESAMPLE_DENOMINATOR)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def _read(path: Path) -> tuple[np.ndarray, int, int]:
    """Read a file as float32 mono at SAMPLE_RATE; returns (audio, original rate, channels)."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise TrainerError(
            f"{path}: cannot read audio ({exc}). Fix: re-export it as 16 kHz mono WAV, or delete it"
        ) from exc
    channels = data.shape[1]
    mono = data.mean(axis=1) if channels > 1 else data[:, 0]
    return resample(mono, rate), int(rate), int(channels)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Load an audio file (wav/flac/ogg) as float32 mono at 16 kHz.

    Raises TrainerError naming the file if it cannot be read or holds no samples.
    """
    path = Path(path)
    audio, _, _ = _read(path)
    if len(audio) == 0:
        raise TrainerError(f"{path}: the file holds no audio samples. Fix: delete or replace it")
    return audio


def peak_dbfs(audio: np.ndarray) -> float:
    """Peak level in dB re full scale; -inf for digital silence."""
    top = float(np.max(np.abs(audio))) if len(audio) else 0.0
    return 20.0 * np.log10(top) if top > 0 else float("-inf")


def inspect_audio(path: str | os.PathLike) -> AudioCheck:
    """Check one file; never raises for a bad file, reports it instead."""
    path = Path(path)
    check = AudioCheck(path=path)
    try:
        audio, rate, channels = _read(path)
    except TrainerError as exc:
        check.problem, check.detail = UNREADABLE, str(exc)
        return check
    check.sample_rate, check.channels = rate, channels
    check.seconds = len(audio) / SAMPLE_RATE
    if rate != SAMPLE_RATE:
        check.fixes.append(RESAMPLED)
    if channels > 1:
        check.fixes.append(DOWNMIXED)
    if len(audio) == 0:
        check.problem = EMPTY
        check.detail = f"{path}: the file holds no audio samples. Fix: delete or replace it"
        return check
    check.peak_dbfs = peak_dbfs(audio)
    if check.peak_dbfs < SILENCE_DBFS:
        check.problem = SILENT
        check.detail = (
            f"{path}: silence only (peak {check.peak_dbfs:.1f} dBFS, below {SILENCE_DBFS:.0f}). "
            "Fix: check the recording level or delete the file"
        )
    return check


def write_wav(path: str | os.PathLike, audio: np.ndarray) -> Path:
    """Write float audio as 16 kHz 16-bit PCM mono WAV, atomically and without clipping.

    Audio peaking above full scale is scaled down to fit rather than clipped. The file is written
    to a temporary name in the same folder and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    x = np.asarray(audio, dtype=np.float32).reshape(-1)
    if not np.all(np.isfinite(x)):
        raise TrainerError(f"{path}: refusing to write audio containing NaN or infinity")
    top = float(np.max(np.abs(x))) if len(x) else 0.0
    full_scale = 32767 / 32768  # the largest positive 16-bit value
    if top > full_scale:
        x = x * (full_scale / top)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, x, SAMPLE_RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
