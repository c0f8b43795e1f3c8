"""Voice warps that turn one synthetic speaker into many.

All functions take and return float32 mono audio at SAMPLE_RATE (16 kHz). Each is deterministic:
randomness comes only from the numpy Generator handed to ``random_warp``.

- ``time_stretch``: tempo change keeping pitch (WSOLA: overlap-add of waveform segments, each
  shifted within a small tolerance to the best cross-correlation, so the periodicity of voiced
  speech is kept without the phasiness of a plain phase vocoder).
- ``pitch_shift``: WSOLA-stretch by the pitch ratio, then resample back to the original duration.
- ``formant_shift``: vocal-tract-length warp of the spectral envelope (LPC fit per STFT frame)
  with the harmonics, hence the pitch, left in place.
- ``spectral_tilt``: a gain of a fixed number of dB per octave around 1 kHz.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import istft, resample, stft

from sentry.constants import SAMPLE_RATE

WSOLA_FRAME = 512
"""Samples per WSOLA segment (32 ms): a few pitch periods of even a low male voice."""
WSOLA_HOP = WSOLA_FRAME // 2
WSOLA_TOLERANCE = 160
"""Samples (10 ms) a segment may slide to line up with the previous one: one 100 Hz period."""

ENVELOPE_NFFT = 512
"""STFT size for the formant warp (32 ms window, 31 Hz bins)."""
LPC_ORDER = 20
"""All-pole order of the envelope: two poles per formant up to 8 kHz, plus spectral slope."""
LPC_WHITE_NOISE = 1e-3
"""Relative white-noise floor added to the autocorrelation (-30 dB) for a stable fit."""
MAX_FORMANT_GAIN_DB = 30.0
"""Clamp on the per-bin gain of the formant warp, so near-empty bins are not blown up."""

TILT_REFERENCE_HZ = 1_000.0
"""Frequency left unchanged by ``spectral_tilt``."""
TILT_FLOOR_HZ = 60.0
"""Below this the tilt gain is held constant, so DC and hum are not boosted without bound."""

TRIM_FRAME = 160
"""Samples (10 ms) per frame when looking for silence to trim."""
TRIM_THRESHOLD_DB = 40.0
"""Frames this far below the loudest frame count as silence."""
TRIM_MARGIN_S = 0.15
"""Seconds of silence kept before and after speech by default."""

PEAK = 0.9
"""Default peak after normalisation: about -1 dBFS, headroom for 16-bit rounding."""

# Ranges random_warp draws from at strength 1.0.
PITCH_SEMITONES = 4.0
FORMANT_RATIO = 0.15
TEMPO_RATIO = 0.2
TILT_DB_PER_OCTAVE = 3.0
WARP_PROBABILITY = 0.7
"""Each warp in random_warp is applied independently with this probability."""


def _as_float32(audio: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)


def time_stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """Change tempo by ``rate`` (>1 faster, shorter) keeping pitch; length becomes len/rate."""
    x = _as_float32(audio)
    if rate <= 0:
        raise ValueError(f"time_stretch rate must be positive, got {rate}")
    out_len = int(round(len(x) / rate))
    if abs(rate - 1.0) < 1e-6 or len(x) == 0:
        return x.copy()
    window = np.hanning(WSOLA_FRAME).astype(np.float32)
    pad = np.zeros(WSOLA_FRAME + WSOLA_TOLERANCE, np.float32)
    src = np.concatenate([pad, x, pad])
    n_frames = out_len // WSOLA_HOP + 2
    out = np.zeros(n_frames * WSOLA_HOP + WSOLA_FRAME, np.float32)
    norm = np.zeros_like(out)
    prev_start = 0
    for k in range(n_frames):
        # The segment should continue naturally from the previous one: the "natural
        # continuation" is the previous segment's source advanced by one hop.
        nominal = len(pad) + int(round(k * WSOLA_HOP * rate))
        if k == 0:
            start = nominal
        else:
            target = src[prev_start + WSOLA_HOP: prev_start + WSOLA_HOP + WSOLA_FRAME]
            lo = nominal - WSOLA_TOLERANCE
            region = src[lo: lo + WSOLA_FRAME + 2 * WSOLA_TOLERANCE]
            corr = np.correlate(region, target, mode="valid")
            start = lo + int(np.argmax(corr))
        prev_start = start
        seg = src[start: start + WSOLA_FRAME]
        out[k * WSOLA_HOP: k * WSOLA_HOP + len(seg)] += seg * window[: len(seg)]
        norm[k * WSOLA_HOP: k * WSOLA_HOP + len(seg)] += window[: len(seg)]
    out = out / np.maximum(norm, 1e-3)
    return out[:out_len].astype(np.float32)


def pitch_shift(audio: np.ndarray, semitones: float) -> np.ndarray:
    """Shift pitch (and formants with it) by ``semitones`` keeping duration."""
    x = _as_float32(audio)
    if abs(semitones) < 1e-6 or len(x) == 0:
        return x.copy()
    ratio = 2.0 ** (semitones / 12.0)
    # Slow down by the ratio (longer, same pitch) then squeeze back to the original length:
    # squeezing raises every frequency by the ratio.
    longer = time_stretch(x, 1.0 / ratio)
    return resample(longer, len(x)).astype(np.float32)


def _lpc_log_envelope(spec: np.ndarray) -> np.ndarray:
    """Per-frame log-magnitude LPC envelope of an STFT (bins x frames).

    LPC (an all-pole fit) follows formant peaks closely, unlike cepstral smoothing, which blurs
    them so much that a warp barely moves them.
    """
    power = np.abs(spec) ** 2
    autocorr = np.fft.irfft(power, axis=0)[: LPC_ORDER + 1]
    autocorr[0] *= 1.0 + LPC_WHITE_NOISE  # conditioning: keeps near-silent frames stable
    autocorr[0] += 1e-12
    a = np.zeros_like(autocorr)
    a[0] = 1.0
    err = autocorr[0].copy()
    for i in range(1, LPC_ORDER + 1):  # Levinson-Durbin, vectorised over frames
        acc = autocorr[i] + np.sum(a[1:i] * autocorr[i - 1:0:-1], axis=0)
        k = -acc / err
        a[1:i] = a[1:i] + k * a[i - 1:0:-1]
        a[i] = k
        err = err * (1.0 - k * k)
    response = np.abs(np.fft.rfft(a, n=2 * (spec.shape[0] - 1), axis=0))
    return 0.5 * np.log(err + 1e-12) - np.log(response + 1e-12)


def formant_shift(audio: np.ndarray, ratio: float) -> np.ndarray:
    """Scale the spectral envelope's frequency axis by ``ratio`` keeping pitch and duration.

    ``ratio`` > 1 moves formants up (a shorter vocal tract: smaller speaker), < 1 down.
    """
    x = _as_float32(audio)
    if abs(ratio - 1.0) < 1e-6 or len(x) < ENVELOPE_NFFT:
        return x.copy()
    _, _, spec = stft(x, nperseg=ENVELOPE_NFFT, noverlap=ENVELOPE_NFFT * 3 // 4)
    envelope = _lpc_log_envelope(spec)
    bins = np.arange(spec.shape[0], dtype=np.float64)
    source = np.clip(bins / ratio, 0, spec.shape[0] - 1)
    lo = np.floor(source).astype(int)
    hi = np.minimum(lo + 1, spec.shape[0] - 1)
    frac = (source - lo)[:, None]
    warped = envelope[lo] * (1 - frac) + envelope[hi] * frac
    limit = MAX_FORMANT_GAIN_DB / 20.0 * np.log(10.0)
    gain = np.exp(np.clip(warped - envelope, -limit, limit))
    _, y = istft(spec * gain, nperseg=ENVELOPE_NFFT, noverlap=ENVELOPE_NFFT * 3 // 4)
    y = y[: len(x)]
    if len(y) < len(x):
        y = np.pad(y, (0, len(x) - len(y)))
    return y.astype(np.float32)


def spectral_tilt(audio: np.ndarray, db_per_octave: float) -> np.ndarray:
    """Tilt the spectrum by ``db_per_octave`` around 1 kHz (positive brightens).

    Done as one FFT gain over the whole clip rather than a first-order filter, because a
    first-order filter's slope is only ~6 dB/octave above its corner and flat below it; the
    FFT gives exactly the slope asked for at every frequency above TILT_FLOOR_HZ.
    """
    x = _as_float32(audio)
    if abs(db_per_octave) < 1e-9 or len(x) == 0:
        return x.copy()
    freqs = np.fft.rfftfreq(len(x), 1.0 / SAMPLE_RATE)
    octaves = np.log2(np.maximum(freqs, TILT_FLOOR_HZ) / TILT_REFERENCE_HZ)
    gain = 10.0 ** (db_per_octave * octaves / 20.0)
    return np.fft.irfft(np.fft.rfft(x) * gain, n=len(x)).astype(np.float32)


def peak_normalize(audio: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """Scale so the largest absolute sample is ``peak``; digital silence is returned unchanged."""
    x = _as_float32(audio)
    top = float(np.max(np.abs(x))) if len(x) else 0.0
    if top < 1e-9:
        return x.copy()
    return (x * (peak / top)).astype(np.float32)


def trim_silence(audio: np.ndarray, margin_s: float = TRIM_MARGIN_S) -> np.ndarray:
    """Cut leading and trailing silence, keeping ``margin_s`` seconds around the speech.

    Silence is any 10 ms frame more than TRIM_THRESHOLD_DB below the loudest frame.
    """
    x = _as_float32(audio)
    n_frames = len(x) // TRIM_FRAME
    if n_frames == 0:
        return x.copy()
    frames = x[: n_frames * TRIM_FRAME].reshape(n_frames, TRIM_FRAME)
    rms = np.sqrt(np.mean(np.square(frames), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (-TRIM_THRESHOLD_DB / 20))
    if rms.max() <= 0 or len(loud) == 0:
        return x.copy()
    margin = int(round(margin_s * SAMPLE_RATE))
    start = max(0, loud[0] * TRIM_FRAME - margin)
    stop = min(len(x), (loud[-1] + 1) * TRIM_FRAME + margin)
    return x[start:stop].copy()


def random_warp(audio: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Apply a random mix of pitch, formant, tempo and tilt warps, then peak-normalise.

    ``strength`` in [0, 1] scales every range: at 1.0 pitch moves up to +-4 semitones, formants
    +-15 %, tempo +-20 %, tilt +-3 dB/octave. The same rng state always gives the same output.
    """
    strength = float(np.clip(strength, 0.0, 1.0))
    x = _as_float32(audio)
    # Draw every parameter first so the rng stream does not depend on which warps fire.
    fire = rng.random(4) < WARP_PROBABILITY
    semitones = rng.uniform(-PITCH_SEMITONES, PITCH_SEMITONES) * strength
    formant = 1.0 + rng.uniform(-FORMANT_RATIO, FORMANT_RATIO) * strength
    tempo = 1.0 + rng.uniform(-TEMPO_RATIO, TEMPO_RATIO) * strength
    tilt = rng.uniform(-TILT_DB_PER_OCTAVE, TILT_DB_PER_OCTAVE) * strength
    if fire[0]:
        x = pitch_shift(x, semitones)
    if fire[1]:
        x = formant_shift(x, formant)
    if fire[2]:
        x = time_stretch(x, tempo)
    if fire[3]:
        x = spectral_tilt(x, tilt)
    return peak_normalize(x)
