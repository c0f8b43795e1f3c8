"""Audio in for the edge runtime: WAV files, raw PCM chunks, and resampling.

Everything here is numpy and the standard library, because the sentry runs on
devices where torch and scipy are not installed. Every function returns float32
mono audio in [-1, 1] at SAMPLE_RATE (16 kHz), the only format the models take.
"""

from __future__ import annotations

import math
import struct
import wave
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

RESAMPLE_ZERO_CROSSINGS = 24
"""Sinc lobes on each side of the interpolation point. 24 with a Kaiser window gives
a stopband near -90 dB and a transition band a few percent of Nyquist wide."""
RESAMPLE_ROLLOFF = 0.94
"""Low-pass cutoff as a fraction of the lower Nyquist frequency; the margin is the
transition band, so tones just below Nyquist alias at the stopband level, not 0 dB."""
RESAMPLE_KAISER_BETA = 9.0
"""Kaiser window shape: higher means lower sidelobes and a wider transition band."""
RESAMPLE_BLOCK_OUTPUTS = 16_384
"""Output samples computed per vectorised step; bounds the temporary gather matrix
to about BLOCK x taps floats (a few MB) however long the input is."""


# --------------------------------------------------------------------------- chunks

def to_float32(chunk: np.ndarray | bytes | bytearray | memoryview) -> np.ndarray:
    """Convert one chunk of mono audio to float32 in [-1, 1].

    Accepts int16 arrays (scaled by 1/32768), float arrays (taken as already in
    [-1, 1]), or raw little-endian int16 bytes (as from a microphone or stdin).
    A [samples, 1] array from a one-channel capture is flattened.
    """
    if isinstance(chunk, (bytes, bytearray, memoryview)):
        raw = bytes(chunk)
        if len(raw) % 2:
            raise SentryError(f"raw PCM chunk has {len(raw)} bytes, not a whole number of "
                              "int16 samples; send 16-bit little-endian mono audio")
        return np.frombuffer(raw, dtype="<i2").astype(np.float32) / np.float32(INT16_SCALE)
    array = np.asarray(chunk)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise SentryError(f"audio chunk must be mono (1-D), got shape {array.shape}; "
                          "downmix before feeding the detector")
    if array.dtype == np.int16:
        return array.astype(np.float32) / np.float32(INT16_SCALE)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    raise SentryError(f"audio chunk has dtype {array.dtype}; pass int16 PCM, float audio "
                      "in [-1, 1], or raw int16 bytes")


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


# --------------------------------------------------------------------------- WAV files

@dataclass(frozen=True)
class WavFormat:
    format_tag: int  # the effective tag (SubFormat's for extensible files)
    channels: int
    rate: int  # Hz
    width: int  # bytes per sample
    data_offset: int  # bytes from the file start
    data_size: int  # bytes, as declared
    extensible: bool  # WAVE_FORMAT_EXTENSIBLE header, which the stdlib `wave` (3.11) rejects


def parse_riff(path: Path, blob: bytes) -> WavFormat:
    """Walk the RIFF chunks for 'fmt ' and 'data'; every problem names the file."""
    if len(blob) < 12 or blob[:4] not in (b"RIFF", b"RIFX") or blob[8:12] != b"WAVE":
        raise SentryError(f"{path}: not a WAV file (no RIFF/WAVE header); convert it, e.g. "
                          f"`ffmpeg -i {path.name} -ar {SAMPLE_RATE} -ac 1 out.wav`")
    if blob[:4] == b"RIFX":
        raise SentryError(f"{path}: big-endian WAV (RIFX) is not supported; re-save it as a "
                          "standard little-endian WAV")
    fmt: tuple[int, int, int, int, bool] | None = None
    pos = 12
    while pos + 8 <= len(blob):
        cid, size = blob[pos:pos + 4], struct.unpack_from("<I", blob, pos + 4)[0]
        body = pos + 8
        if cid == b"fmt ":
            if size < 16 or body + size > len(blob):
                raise SentryError(f"{path}: truncated or malformed 'fmt ' chunk")
            tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", blob, body)
            extensible = tag == WAVE_FORMAT_EXTENSIBLE
            if extensible:
                if size < 40:
                    raise SentryError(f"{path}: WAVE_FORMAT_EXTENSIBLE header is too short")
                tag = struct.unpack_from("<H", blob, body + 24)[0]
            fmt = (tag, channels, rate, (bits + 7) // 8, extensible)
        elif cid == b"data":
            if fmt is None:
                raise SentryError(f"{path}: 'data' chunk before 'fmt '; the WAV header is malformed")
            return WavFormat(*fmt[:4], data_offset=body, data_size=size, extensible=fmt[4])
        pos = body + size + (size & 1)  # chunks are padded to even sizes
    missing = "'fmt '" if fmt is None else "'data'"
    raise SentryError(f"{path}: truncated WAV, no {missing} chunk found")


def check_format(path: Path, fmt: WavFormat) -> None:
    if fmt.channels < 1 or fmt.rate < 1:
        raise SentryError(f"{path}: WAV header claims {fmt.channels} channels at {fmt.rate} Hz")
    if fmt.format_tag == WAVE_FORMAT_PCM and fmt.width in PCM_WIDTHS:
        return
    if fmt.format_tag == WAVE_FORMAT_IEEE_FLOAT and fmt.width in FLOAT_WIDTHS:
        return
    raise SentryError(f"{path}: unsupported WAV encoding (format tag 0x{fmt.format_tag:04x}, "
                      f"{8 * fmt.width}-bit); use 8/16/24/32-bit PCM or 32/64-bit float")


def _read_wave_module(path: Path, fmt: WavFormat) -> bytes:
    """Plain PCM through the stdlib reader, which also checks the header's arithmetic."""
    try:
        with wave.open(str(path), "rb") as wav:
            n_frames = wav.getnframes()
            raw = wav.readframes(n_frames)
    except (wave.Error, EOFError) as exc:
        raise SentryError(f"{path}: unreadable WAV ({exc})") from exc
    if len(raw) < n_frames * fmt.channels * fmt.width:
        raise SentryError(f"{path}: truncated WAV, the header promises {n_frames} frames but "
                          f"the file holds {len(raw) // (fmt.channels * fmt.width)}")
    return raw


def read_wav(path: str | Path) -> np.ndarray:
    """Read a WAV file as float32 mono audio at SAMPLE_RATE (16 kHz), in [-1, 1].

    Decodes 8/16/24/32-bit PCM and 32/64-bit IEEE float, plain or
    WAVE_FORMAT_EXTENSIBLE; channels are averaged; other rates are resampled.
    """
    path = Path(path)
    if not path.is_file():
        raise SentryError(f"{path}: no such audio file")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise SentryError(f"{path}: cannot read ({exc.strerror})") from exc
    fmt = parse_riff(path, blob)
    check_format(path, fmt)
    frame_bytes = fmt.channels * fmt.width
    if fmt.format_tag == WAVE_FORMAT_PCM and not fmt.extensible:
        raw = _read_wave_module(path, fmt)
    else:  # float and extensible files: the stdlib `wave` rejects them
        raw = blob[fmt.data_offset:fmt.data_offset + fmt.data_size]
        if len(raw) < fmt.data_size:
            raise SentryError(f"{path}: truncated WAV, the header promises {fmt.data_size} bytes "
                              f"of audio but the file holds {len(raw)}")
    raw = raw[:len(raw) - len(raw) % frame_bytes]
    samples = decode_pcm(raw, fmt.width, fmt.format_tag == WAVE_FORMAT_IEEE_FLOAT)
    mono = samples.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
    return resample(mono, fmt.rate, SAMPLE_RATE)


# --------------------------------------------------------------------------- resampling

class StreamResampler:
    """Band-limited rational resampler (Kaiser-windowed sinc, polyphase) for streams.

    Feed chunks of any size to `process`; call `flush` at the end of the stream to
    get the last outputs, which need a little future signal (taken as silence).
    Output sample n sits at input time n * rate_in / rate_out, computed exactly in
    integers, so chunking never changes the result.
    """

    def __init__(self, rate_in: int, rate_out: int = SAMPLE_RATE) -> None:
        if rate_in <= 0 or rate_out <= 0:
            raise SentryError(f"sample rates must be positive, got {rate_in} -> {rate_out} Hz")
        g = math.gcd(int(rate_in), int(rate_out))
        self.rate_in, self.rate_out = int(rate_in), int(rate_out)
        self._up, self._down = self.rate_out // g, self.rate_in // g
        # Cutoff in cycles per input sample: below the lower of the two Nyquists.
        cutoff = 0.5 * min(1.0, self._up / self._down) * RESAMPLE_ROLLOFF
        self._half = int(math.ceil(RESAMPLE_ZERO_CROSSINGS / (2.0 * cutoff)))
        self._table = self._polyphase_table(cutoff)
        self.reset()

    def _polyphase_table(self, cutoff: float) -> np.ndarray:
        """[up, 2*half] filter taps: row p interpolates at fractional offset p/up."""
        half, up = self._half, self._up
        k = np.arange(2 * half)
        frac = np.arange(up)[:, None] / up
        tau = frac + (half - 1) - k[None, :]  # distance from each tap to the output time
        window = np.kaiser(2 * half + 1, RESAMPLE_KAISER_BETA)
        # Evaluate the (symmetric) Kaiser window at fractional positions by interpolation.
        wpos = np.clip(tau + half, 0, 2 * half)
        taps = 2 * cutoff * np.sinc(2 * cutoff * tau) * np.interp(wpos, np.arange(2 * half + 1), window)
        return taps / taps.sum(axis=1, keepdims=True)  # exact unity gain at DC, every phase

    def reset(self) -> None:
        """Forget the stream; the next sample is input time 0 (silence before it)."""
        # Input before time 0 is silence, so the first outputs need no special case.
        self._buf = np.zeros(self._half, dtype=np.float32)
        self._buf_start = -self._half  # input index of _buf[0]
        self._received = 0  # input samples seen
        self._next_out = 0  # index of the next output sample

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Append input samples (float32 mono); return every output now computable."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if self._up == self._down:
            return chunk.copy()
        self._buf = np.concatenate([self._buf, chunk])
        self._received += chunk.size
        # Output n needs inputs up to floor(n*down/up) + half, which must have arrived.
        last_ready = ((self._received - self._half) * self._up - 1) // self._down
        return self._emit(last_ready + 1)

    def flush(self) -> np.ndarray:
        """End of stream: emit the remaining outputs, ceil(inputs * up / down) in all."""
        if self._up == self._down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self._up // self._down)
        self._buf = np.concatenate([self._buf, np.zeros(self._half + 1, dtype=np.float32)])
        out = self._emit(total)
        self.reset()
        return out

    def _emit(self, stop: int) -> np.ndarray:
        start = self._next_out
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        out = np.empty(stop - start, dtype=np.float32)
        taps = np.arange(2 * self._half)
        for b in range(start, stop, RESAMPLE_BLOCK_OUTPUTS):
            n = np.arange(b, min(b + RESAMPLE_BLOCK_OUTPUTS, stop), dtype=np.int64)
            base, phase = np.divmod(n * self._down, self._up)
            idx = (base - self._half + 1 - self._buf_start)[:, None] + taps[None, :]
            out[b - start:b - start + n.size] = np.einsum(
                "ij,ij->i", self._buf[idx].astype(np.float64), self._table[phase])
        self._next_out = stop
        # Drop input no future output can reach.
        keep_from = (stop * self._down) // self._up - self._half + 1
        drop = max(0, keep_from - self._buf_start)
        self._buf = self._buf[drop:]
        self._buf_start += drop
        return out


def resample(audio: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Resample a whole float32 signal; the output has ceil(len * rate_out / rate_in) samples."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate_in == rate_out:
        return audio
    resampler = StreamResampler(rate_in, rate_out)
    return np.concatenate([resampler.process(audio), resampler.flush()])
