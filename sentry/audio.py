"""Audio in for the edge runtime: WAV files, raw PCM chunks, and resampling.

Everything here is numpy and the standard library, because the sentry runs on
devices where torch and scipy are not installed. Every function returns float32
mono audio in [-1, 1] at SAMPLE_RATE (16 kHz), the only format the models take.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .constants import SAMPLE_RATE
from .errors import SentryError
from .wav import DEFAULT_BUDGET, INT16_SCALE, DecodeBudget, read_wav_file

RESAMPLE_ZERO_CROSSINGS = 24
"""Sinc lobes on each side of the interpolation point. 24 with a Kaiser window gives
a stopband near -90 dB and a transition band a few percent of Nyquist wide."""
RESAMPLE_ROLLOFF = 0.94
"""Low-pass cutoff as a fraction of the lower Nyquist frequency; the margin is the
transition band, so tones just below Nyquist alias at the stopband level, not 0 dB."""
RESAMPLE_KAISER_BETA = 9.0
"""Kaiser window shape: higher means lower sidelobes and a wider transition band."""
RESAMPLE_BLOCK_OUTPUTS = 16_384
"""Output samples computed per gathering step; bounds the temporary gather matrix
to about BLOCK x taps floats (a few MB) however long the input is."""
RESAMPLE_PHASE_MIN_OUTPUTS = 64
"""Outputs per polyphase phase from which computing a phase over a strided view (one
numpy call per phase) beats gathering each output's window (one copy per output)."""
RESAMPLE_CACHED_TABLES = 16
"""Polyphase tables kept per process, keyed by the rate ratio (a few common rates)."""
RESAMPLE_EAGER_TAPS = 1 << 16
"""Tables up to this many taps (512 KB; every common rate's is under 40 000) are built
whole and cached. An odd rate's table can reach 10 million taps (191999 Hz: 16000 phases
of 614), so its phases are computed as outputs need them: a short file pays for few."""


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


# --------------------------------------------------------------------------- WAV files

def read_wav(path: str | Path, budget: DecodeBudget = DEFAULT_BUDGET) -> np.ndarray:
    """Read a WAV file as float32 mono audio at SAMPLE_RATE (16 kHz), in [-1, 1].

    Decodes 8/16/24/32-bit PCM and 32/64-bit IEEE float, plain or
    WAVE_FORMAT_EXTENSIBLE (sentry.wav); channels are averaged; other rates are
    resampled. The header is checked against `budget` before anything is decoded.
    """
    mono, fmt = read_wav_file(path, budget)
    return resample(mono, fmt.rate, SAMPLE_RATE)


# --------------------------------------------------------------------------- resampling

def _filter_half(up: int, down: int) -> tuple[int, float]:
    """(half, cutoff): taps on each side and the low-pass cutoff in cycles per input sample."""
    cutoff = 0.5 * min(1.0, up / down) * RESAMPLE_ROLLOFF  # below the lower of the two Nyquists
    return int(math.ceil(RESAMPLE_ZERO_CROSSINGS / (2.0 * cutoff))), cutoff


def _phase_taps(up: int, half: int, cutoff: float, phases: np.ndarray) -> np.ndarray:
    """[len(phases), 2*half] filter taps: row i interpolates at fractional offset phases[i]/up."""
    k = np.arange(2 * half)
    frac = np.asarray(phases)[:, None] / up
    tau = frac + (half - 1) - k[None, :]  # distance from each tap to the output time
    window = np.kaiser(2 * half + 1, RESAMPLE_KAISER_BETA)
    # Evaluate the (symmetric) Kaiser window at fractional positions by interpolation.
    wpos = np.clip(tau + half, 0, 2 * half)
    taps = 2 * cutoff * np.sinc(2 * cutoff * tau) * np.interp(wpos, np.arange(2 * half + 1), window)
    return taps / taps.sum(axis=1, keepdims=True)  # exact unity gain at DC, every phase


@functools.lru_cache(maxsize=RESAMPLE_CACHED_TABLES)
def _polyphase_table(up: int, down: int) -> np.ndarray:
    """Every phase's taps for up/down resampling; cached, a table costs more than a short clip."""
    half, cutoff = _filter_half(up, down)
    table = _phase_taps(up, half, cutoff, np.arange(up))
    table.setflags(write=False)
    return table


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
        self._half, self._cutoff = _filter_half(self._up, self._down)
        if self._up * 2 * self._half <= RESAMPLE_EAGER_TAPS:
            self._table, self._row_of = _polyphase_table(self._up, self._down), None
        else:  # an odd rate: compute phases as outputs need them (at most the work itself)
            self._table = np.zeros((0, 2 * self._half))
            self._row_of = np.full(self._up, -1, dtype=np.int64)
        self.reset()

    def _taps(self, phase: np.ndarray) -> np.ndarray:
        """Filter taps for each output phase in `phase` ([n, 2*half])."""
        if self._row_of is None:
            return self._table[phase]
        missing = np.unique(phase[self._row_of[phase] < 0])
        if missing.size:
            self._row_of[missing] = np.arange(missing.size) + self._table.shape[0]
            self._table = np.concatenate(
                [self._table, _phase_taps(self._up, self._half, self._cutoff, missing)])
        return self._table[self._row_of[phase]]

    def reset(self) -> None:
        """Forget the stream; the next sample is input time 0 (silence before it)."""
        # Input before time 0 is silence, so the first outputs need no special case.
        self._buf = np.zeros(self._half, dtype=np.float64)
        self._buf_start = -self._half  # input index of _buf[0]
        self._received = 0  # input samples seen
        self._next_out = 0  # index of the next output sample

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Append input samples (float32 mono); return every output now computable."""
        chunk = np.asarray(chunk, dtype=np.float32)
        if self._up == self._down:
            return chunk.copy()
        self._buf = np.concatenate([self._buf, chunk.astype(np.float64)])
        self._received += chunk.size
        # Output n needs inputs up to floor(n*down/up) + half, which must have arrived.
        last_ready = ((self._received - self._half) * self._up - 1) // self._down
        return self._emit(last_ready + 1)

    def flush(self) -> np.ndarray:
        """End of stream: emit the remaining outputs, ceil(inputs * up / down) in all."""
        if self._up == self._down:
            return np.zeros(0, dtype=np.float32)
        total = -(-self._received * self._up // self._down)
        self._buf = np.concatenate([self._buf, np.zeros(self._half + 1, dtype=np.float64)])
        out = self._emit(total)
        self.reset()
        return out

    def _emit(self, stop: int) -> np.ndarray:
        """Outputs [next_out, stop). Output n is the dot product of the 2*half inputs from
        floor(n*down/up) - half + 1 with the taps of phase n*down mod up. Outputs n and
        n + up share a phase and lie `down` inputs apart, so when there are many, each
        phase is one product of a strided view (no copy); few outputs gather their
        windows instead. Both sum the same products in the same order: same bits."""
        start = self._next_out
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        up, down, half = self._up, self._down, self._half
        windows = sliding_window_view(self._buf, 2 * half)  # row i: inputs from _buf_start + i
        out = np.empty(stop - start, dtype=np.float32)
        if stop - start >= RESAMPLE_PHASE_MIN_OUTPUTS * up:
            first = np.arange(start, start + up, dtype=np.int64)  # one output of each phase
            bases, phases = np.divmod(first * down, up)
            taps = self._taps(phases)
            for i, n0 in enumerate(range(start, start + up)):
                row = int(bases[i]) - half + 1 - self._buf_start
                count = -(-(stop - n0) // up)
                rows = windows[row:row + (count - 1) * down + 1:down]
                out[n0 - start::up] = np.einsum("ij,j->i", rows, taps[i])
        else:
            for b in range(start, stop, RESAMPLE_BLOCK_OUTPUTS):
                n = np.arange(b, min(b + RESAMPLE_BLOCK_OUTPUTS, stop), dtype=np.int64)
                base, phase = np.divmod(n * down, up)
                out[b - start:b - start + n.size] = np.einsum(
                    "ij,ij->i", windows[base - half + 1 - self._buf_start], self._taps(phase))
        self._next_out = stop
        # Drop input no future output can reach.
        keep_from = (stop * down) // up - half + 1
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
