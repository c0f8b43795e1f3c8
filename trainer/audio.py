"""Reading, checking and writing audio files for the trainer.

Everything inside the trainer is float32 mono at SAMPLE_RATE (16 kHz) in [-1, 1]. Files at other
rates are resampled and multi-channel files are downmixed on load; ``inspect_audio`` reports
those fixes and the problems that make a file unusable, so a dataset loader can count them.

This is the trainer's one way in for audio files, and it uses the device's own pieces: WAV is
decoded by sentry.wav and every rate is converted by sentry.audio's resampler, so a number
computed here is the number the sentry would compute. soundfile decodes what the sentry
does not read (FLAC, OGG, A-law/u-law WAV), under the same decode budget.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from sentry.audio import resample
from sentry.constants import SAMPLE_RATE
from sentry.files import write_bytes_atomic
from sentry.wav import DEFAULT_BUDGET, DecodeBudget, WavError, encode_wav, read_wav_file
from trainer.errors import TrainerError

SILENCE_DBFS = -60.0
"""A file whose peak is below this level (dB re full scale) holds no usable signal."""

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
"""Audio files the trainer, the miner and the studio pick up (compared lower-cased)."""

SOUNDFILE_REASONS = ("not_wav", "unsupported_encoding")
"""sentry.wav refusals that soundfile may still decode: a .wav file that is RF64 or
A-law/u-law, say. Any other refusal (a bad rate, a truncation) is final."""

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


def snr_gain(signal_rms, noise_rms, snr_db):
    """The factor that puts noise of RMS `noise_rms` `snr_db` dB below a signal of RMS
    `signal_rms`: mix as signal + gain * noise. Floats, numpy arrays and torch tensors alike."""
    return signal_rms / noise_rms / 10.0 ** (snr_db / 20.0)


def _read_soundfile(path: Path, budget: DecodeBudget) -> tuple[np.ndarray, int, int]:
    """Float32 mono at the file's own rate, (audio, rate, channels), checked from the header."""
    try:
        info = sf.info(str(path))
        budget.check_size(str(path), path.stat().st_size)
        budget.check_stream(str(path), int(info.samplerate), int(info.channels))
        budget.check_length(str(path), int(info.samplerate), int(info.channels), int(info.frames))
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except WavError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise TrainerError(
            f"{path}: cannot read audio ({exc}). Fix: re-export it as 16 kHz mono WAV, or delete it"
        ) from exc
    channels = data.shape[1]
    return (data.mean(axis=1) if channels > 1 else data[:, 0]), int(rate), int(channels)


def _read(path: Path, budget: DecodeBudget = DEFAULT_BUDGET) -> tuple[np.ndarray, int, int]:
    """Read a file as float32 mono at SAMPLE_RATE; returns (audio, original rate, channels)."""
    try:
        try:
            if path.suffix.lower() != ".wav":
                raise WavError(f"{path}: not a WAV file", "not_wav")
            mono, fmt = read_wav_file(path, budget)
            rate, channels = fmt.rate, fmt.channels
        except WavError as exc:
            if exc.reason not in SOUNDFILE_REASONS:
                raise
            mono, rate, channels = _read_soundfile(path, budget)
    except WavError as exc:
        raise TrainerError(f"{exc}. Fix: re-export it as 16 kHz mono WAV, or delete it") from exc
    return resample(mono, rate), rate, channels


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
    through sentry.files' atomic write, so a crash never leaves half a file.
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
    return write_bytes_atomic(path, encode_wav(x, SAMPLE_RATE))
