"""Hark's one WAV codec: RIFF parsing, a decode budget checked from the header, PCM/float
decoding, and the 16-bit writer.

Every WAV a number is computed from goes through here: the sentry's `read_wav`, the
judge's request bodies, the trainer's `load_audio` and the miner. Numpy and the standard
library only, because the sentry runs where scipy and libsndfile are not installed.

A header is an untrusted promise: a 10 KB file may claim a rate of 1 Hz (16000 output
samples per input sample once resampled) or 4 GHz (no output at all). So the header is
checked against a `DecodeBudget` (rate range, channels, seconds, bytes) before anything is
decoded or allocated, and the work a file can cause is bounded by its size.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import SAMPLE_RATE
from .errors import SentryError

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_IEEE_FLOAT = 0x0003
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
"""Format tags from the RIFF WAVE spec (mmreg.h). In an extensible file the real
format is the first two bytes of the SubFormat GUID, so the same tags apply."""

PCM_WIDTHS = (1, 2, 3, 4)
"""Integer sample widths in bytes we decode: 8-bit unsigned, 16/24/32-bit signed."""
FLOAT_WIDTHS = (4, 8)
"""IEEE float sample widths in bytes: float32 and float64."""

INT16_SCALE = 32_768.0
"""Full scale of int16 PCM; dividing by it maps samples into [-1, 1)."""
INT16_WRITE_SCALE = 32_767.0
"""What the writer multiplies [-1, 1] audio by, so +1.0 stays inside int16 (libsndfile's
convention, which every Hark writer has used)."""

MIN_RATE = 8_000
MAX_RATE = 192_000
"""Hz. Sample rates accepted: telephone to studio. Below, a tiny file resamples to an
enormous one (16000 outputs per input at 1 Hz); above, to almost nothing."""
MAX_CHANNELS = 32
"""Channels per frame accepted by default; more is a malformed or hostile header."""
MAX_SECONDS = 24 * 3600.0
"""Longest recording decoded whole by default: a day (the 10 h evaluation streams fit)."""
MAX_BYTES = 4 * 2**30
"""Largest file read whole by default: 4 GiB, all a RIFF header's 32-bit sizes describe."""

UNKNOWN_DATA_SIZES = (0, 0xFFFFFFFF)
"""'data' sizes that streaming writers leave as placeholders: the audio runs to the end
of the file (libsndfile reads such files the same way)."""

_CHUNK_ID_BYTES = frozenset(range(0x20, 0x7F))
"""A chunk id is four printable ASCII characters ('fmt ', 'data', 'LIST'...)."""


class WavError(SentryError):
    """A WAV file refused, with `reason` saying which kind of problem for callers that map
    it (the judge to an error code): unreadable (no such file), not_wav, bad_wav,
    unsupported_encoding, unsupported_rate, too_many_channels, too_long or too_big."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class DecodeBudget:
    """What one decode may cost, checked from the header before any allocation.

    min_rate, max_rate: accepted sample rates in Hz (inclusive).
    rates: when set, only these rates in Hz (the judge's list of common rates).
    max_channels: channels per frame.
    max_seconds: duration in seconds.
    max_bytes: size of the file (or body) in bytes.
    max_samples: decoded samples (frames x channels), which with the rate bounds the
        work of decoding and resampling; None for no limit beyond the others.
    """

    min_rate: int = MIN_RATE
    max_rate: int = MAX_RATE
    rates: tuple[int, ...] | None = None
    max_channels: int = MAX_CHANNELS
    max_seconds: float = MAX_SECONDS
    max_bytes: int = MAX_BYTES
    max_samples: int | None = None

    def check_size(self, label: str, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            raise WavError(f"{label}: {nbytes:,} bytes is more than the {self.max_bytes:,} "
                           "accepted; cut the recording into shorter files", "too_big")

    def check_stream(self, label: str, rate: int, channels: int) -> None:
        """Rate and channels, the part of the budget a stream of unknown length has."""
        if self.rates is not None and rate not in self.rates:
            raise WavError(f"{label}: sample rate {rate} Hz is not supported; send one of "
                           f"{', '.join(str(r) for r in self.rates)} Hz (16000 is best)",
                           "unsupported_rate")
        if not self.min_rate <= rate <= self.max_rate:
            raise WavError(f"{label}: the header claims a sample rate of {rate} Hz, outside "
                           f"{self.min_rate}-{self.max_rate} Hz; the file is damaged or must "
                           f"be converted, e.g. `ffmpeg -i IN -ar {SAMPLE_RATE} -ac 1 out.wav`",
                           "unsupported_rate")
        if channels > self.max_channels:
            raise WavError(f"{label}: the header claims {channels} channels; at most "
                           f"{self.max_channels} are accepted (mono is best)", "too_many_channels")

    def check_length(self, label: str, rate: int, channels: int, frames: int) -> None:
        """Duration and decoded samples of `frames` frames (rate and channels already checked)."""
        seconds = frames / rate
        if seconds > self.max_seconds:
            raise WavError(f"{label}: {seconds:.1f} s of audio is more than the {self.max_seconds:g} s "
                           "accepted; send a shorter recording", "too_long")
        if self.max_samples is not None and frames * channels > self.max_samples:
            raise WavError(f"{label}: {seconds:.1f} s at {rate} Hz x {channels} channel(s) is "
                           f"{frames * channels:,} samples, more than the {self.max_samples:,} "
                           f"decoded at most; send {SAMPLE_RATE} Hz mono audio or a shorter clip",
                           "too_long")


DEFAULT_BUDGET = DecodeBudget()


@dataclass(frozen=True)
class WavFormat:
    format_tag: int  # the effective tag (SubFormat's for extensible files)
    channels: int
    rate: int  # Hz
    width: int  # bytes per sample
    data_offset: int  # bytes from the file start
    data_size: int  # bytes, as declared
    extensible: bool  # WAVE_FORMAT_EXTENSIBLE header

    @property
    def is_float(self) -> bool:
        return self.format_tag == WAVE_FORMAT_IEEE_FLOAT


def _looks_like_chunk(blob: bytes, pos: int) -> bool:
    return pos + 8 <= len(blob) and all(b in _CHUNK_ID_BYTES for b in blob[pos:pos + 4])


def parse_riff(path: Path | str, blob: bytes) -> WavFormat:
    """Walk the RIFF chunks of `blob` (a whole file or its head) for 'fmt ' and 'data';
    every problem is a WavError naming `path`."""
    name = Path(path).name
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RIFX") or blob[8:12] != b"WAVE":
        raise WavError(f"{path}: not a WAV file (no RIFF/WAVE header); convert it, e.g. "
                       f"`ffmpeg -i {name} -ar {SAMPLE_RATE} -ac 1 out.wav`", "not_wav")
    if blob[:4] == b"RIFX":
        raise WavError(f"{path}: big-endian WAV (RIFX) is not supported; re-save it as a "
                       "standard little-endian WAV", "unsupported_encoding")
    fmt: tuple[int, int, int, int, bool] | None = None
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = blob[pos:pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > len(blob):
                raise WavError(f"{path}: truncated or malformed 'fmt ' chunk", "bad_wav")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", blob, body)
            extensible = tag == WAVE_FORMAT_EXTENSIBLE
            if extensible:
                if size < 40:
                    raise WavError(f"{path}: WAVE_FORMAT_EXTENSIBLE header is too short", "bad_wav")
                tag = struct.unpack_from("<H", blob, body + 24)[0]
            fmt = (tag, channels, rate, (bits + 7) // 8, extensible)
        elif cid == b"data":
            if fmt is None:
                raise WavError(f"{path}: 'data' chunk before 'fmt '; the WAV header is malformed",
                               "bad_wav")
            return WavFormat(*fmt[:4], data_offset=body, data_size=size, extensible=fmt[4])
        pos = body + size
        # Chunks are padded to even sizes, but some writers omit the pad byte: skip it
        # unless only the unpadded position holds the next chunk's id.
        if size & 1 and not (_looks_like_chunk(blob, pos) and not _looks_like_chunk(blob, pos + 1)):
            pos += 1
    missing = "'fmt '" if fmt is None else "'data'"
    raise WavError(f"{path}: truncated WAV, no {missing} chunk found", "bad_wav")


def check_format(path: Path | str, fmt: WavFormat, budget: DecodeBudget = DEFAULT_BUDGET) -> None:
    """The encoding is one we decode, and rate and channels are within `budget`."""
    if fmt.channels < 1 or fmt.rate < 1:
        raise WavError(f"{path}: WAV header claims {fmt.channels} channels at {fmt.rate} Hz",
                       "unsupported_encoding")
    decodable = ((fmt.format_tag == WAVE_FORMAT_PCM and fmt.width in PCM_WIDTHS)
                 or (fmt.format_tag == WAVE_FORMAT_IEEE_FLOAT and fmt.width in FLOAT_WIDTHS))
    if not decodable:
        raise WavError(f"{path}: unsupported WAV encoding (format tag 0x{fmt.format_tag:04x}, "
                       f"{8 * fmt.width}-bit); use 8/16/24/32-bit PCM or 32/64-bit float",
                       "unsupported_encoding")
    budget.check_stream(str(path), fmt.rate, fmt.channels)


def decode_pcm(raw: bytes, width: int, is_float: bool) -> np.ndarray:
    """Interleaved little-endian sample bytes -> float32 in [-1, 1]."""
    if is_float:
        return np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float32)
    if width == 1:  # 8-bit WAV is unsigned with 128 as silence
        return (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 2:
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(INT16_SCALE)
    if width == 3:
        b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        value = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        return value.astype(np.float32) / np.float32(1 << 23)
    return (np.frombuffer(raw, dtype="<i4").astype(np.float64) / float(1 << 31)).astype(np.float32)


def decode_wav_bytes(blob: bytes, path: Path | str, budget: DecodeBudget = DEFAULT_BUDGET
                     ) -> tuple[np.ndarray, WavFormat]:
    """A whole WAV file's bytes -> (float32 mono audio at the file's own rate, its format).

    Channels are averaged. The header is checked against `budget` (rate, channels, bytes,
    duration, samples) before the audio is decoded; every problem is a WavError naming
    `path`, including a 'data' chunk that promises more bytes than the file holds.
    """
    budget.check_size(str(path), len(blob))
    fmt = parse_riff(path, blob)
    check_format(path, fmt, budget)
    frame_bytes = fmt.channels * fmt.width
    held = len(blob) - fmt.data_offset
    if fmt.data_size in UNKNOWN_DATA_SIZES:
        size = held - held % frame_bytes
    elif held < fmt.data_size:
        raise WavError(f"{path}: truncated WAV, the header promises {fmt.data_size} bytes of audio "
                       f"but the file holds {max(held, 0)}; re-copy or re-record it", "bad_wav")
    else:
        size = fmt.data_size - fmt.data_size % frame_bytes
    frames = size // frame_bytes
    budget.check_length(str(path), fmt.rate, fmt.channels, frames)
    raw = blob[fmt.data_offset:fmt.data_offset + size]
    samples = decode_pcm(raw, fmt.width, fmt.is_float)
    return samples.reshape(frames, fmt.channels).mean(axis=1, dtype=np.float32), fmt


def read_wav_file(path: str | Path, budget: DecodeBudget = DEFAULT_BUDGET
                  ) -> tuple[np.ndarray, WavFormat]:
    """`decode_wav_bytes` of a file; its size is checked against `budget` before it is read."""
    path = Path(path)
    if not path.is_file():
        raise WavError(f"{path}: no such audio file", "unreadable")
    try:
        budget.check_size(str(path), path.stat().st_size)
        blob = path.read_bytes()
    except OSError as exc:
        raise WavError(f"{path}: cannot read ({exc.strerror})", "unreadable") from exc
    return decode_wav_bytes(blob, path, budget)


def encode_wav(audio: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    """float mono audio in [-1, 1] -> the bytes of a 16-bit PCM WAV file (44-byte header).

    Samples beyond full scale are clipped; callers that must not clip scale first.
    """
    samples = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    data = np.round(samples * np.float32(INT16_WRITE_SCALE)).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", WAVE_FORMAT_PCM, 1, rate, rate * 2, 2, 16)
    return b"".join([b"RIFF", struct.pack("<I", 36 + len(data)), b"WAVE",
                     b"fmt ", struct.pack("<I", len(fmt)), fmt,
                     b"data", struct.pack("<I", len(data)), data])
