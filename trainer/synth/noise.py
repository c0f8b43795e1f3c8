"""Seeded synthetic backgrounds to mix under speech: noise colours, babble, music, hum.

Every generator returns float32 mono audio at SAMPLE_RATE (16 kHz) scaled to BACKGROUND_RMS_DBFS,
so the training mixer controls the signal-to-noise ratio, not the generator. The same rng state
always gives the same audio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError
from trainer.synth.espeak import list_voices, synthesize
from trainer.synth.text import ordinary_sentences

BACKGROUND_KINDS = ("white", "pink", "brown", "babble", "music", "hum")
BACKGROUND_RMS_DBFS = -20.0
"""Loudness every background is scaled to (RMS, dB re full scale), leaving ~20 dB headroom."""
PEAK_LIMIT = 0.99

BABBLE_TALKERS = (4, 8)
"""Inclusive range of simultaneous voices in babble."""
BABBLE_PAUSE_S = (0.1, 0.8)
"""Seconds of silence between one talker's sentences."""
NEUTRAL_PHRASE = "zzz"
"""Default phrase babble avoids when none is given: no sentence template contains it."""

MUSIC_NOTE_S = (0.15, 1.2)
"""Seconds a chord lasts."""
MUSIC_ROOT_MIDI = (45, 72)
"""MIDI note range for chord roots (A2..C5)."""
CHORDS = ((0, 4, 7), (0, 3, 7), (0, 4, 7, 11), (0, 3, 7, 10), (0, 5, 7), (0, 7, 12))
"""Semitone offsets: major, minor, major 7th, minor 7th, sus4, power chord."""
MUSIC_HARMONICS = 5
ATTACK_S = 0.01

HUM_BASES_HZ = (50.0, 60.0)
"""Mains frequencies; hum is a set of their harmonics."""
HUM_HARMONICS = 8
HUM_NOISE_DB = -30.0
"""Level of the broadband floor under hum, relative to the hum."""


COLOURED_CHUNK = 1 << 22
"""Samples coloured by one FFT (262 s at 16 kHz, a power of two: fast)."""


def _scale(audio: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    if rms < 1e-12:
        return audio.astype(np.float32)
    out = audio * (10 ** (BACKGROUND_RMS_DBFS / 20) / rms)
    peak = float(np.max(np.abs(out)))
    if peak > PEAK_LIMIT:  # scale down rather than clip
        out = out * (PEAK_LIMIT / peak)
    return out.astype(np.float32)


def _coloured(n: int, rng: np.random.Generator, exponent: float) -> np.ndarray:
    """Gaussian noise with power spectrum ~ 1/f**exponent (0 white, 1 pink, 2 brown).

    Longer than COLOURED_CHUNK samples, it is coloured chunk by chunk: one FFT over an hour
    of audio took minutes and 8 GB (an arbitrary length has large prime factors), ten hours
    would not fit in memory. Below 4 Hz the chunks are independent, which no model hears.
    """
    if n > COLOURED_CHUNK:
        chunks = [_coloured(COLOURED_CHUNK, rng, exponent) for _ in range(-(-n // COLOURED_CHUNK))]
        return np.concatenate(chunks)[:n]
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    freqs[0] = freqs[1] if n > 1 else 1.0  # no infinite DC gain
    spectrum *= freqs ** (-exponent / 2.0)
    return np.fft.irfft(spectrum, n=n)


def babble(
    seconds: float,
    rng: np.random.Generator,
    exclude_phrase: str = NEUTRAL_PHRASE,
    voices: Sequence[str] | None = None,
) -> np.ndarray:
    """4-8 espeak voices talking over each other in ordinary sentences avoiding ``exclude_phrase``.

    ``voices`` restricts the talkers (e.g. to one split's voices); default all English voices.
    """
    n = int(round(seconds * SAMPLE_RATE))
    voices = list(voices) if voices else list_voices()
    out = np.zeros(n, np.float64)
    for _ in range(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        voice = voices[int(rng.integers(len(voices)))]
        pos = int(rng.integers(0, SAMPLE_RATE))  # talkers do not start in lock-step
        track = np.zeros(n, np.float64)
        while pos < n:
            sentence = ordinary_sentences(rng, 1, exclude_phrase)[0]
            speech = synthesize(sentence, voice, int(rng.integers(140, 220)),
                                int(rng.integers(30, 71)), int(rng.integers(30, 71)))
            end = min(n, pos + len(speech))
            track[pos:end] += speech[: end - pos]
            pos = end + int(rng.uniform(*BABBLE_PAUSE_S) * SAMPLE_RATE)
        out += track * rng.uniform(0.5, 1.0)  # talkers at different distances
    return out


def music(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Random chords of harmonic tones with attack/decay envelopes: a stand-in for music."""
    n = int(round(seconds * SAMPLE_RATE))
    out = np.zeros(n, np.float64)
    pos = 0
    while pos < n:
        length = min(n - pos, int(rng.uniform(*MUSIC_NOTE_S) * SAMPLE_RATE))
        t = np.arange(length) / SAMPLE_RATE
        decay = rng.uniform(1.0, 6.0)  # 1/s
        envelope = np.minimum(t / ATTACK_S, 1.0) * np.exp(-decay * t)
        root = int(rng.integers(*MUSIC_ROOT_MIDI))
        chord = CHORDS[int(rng.integers(len(CHORDS)))]
        bright = rng.uniform(0.3, 0.8)  # harmonic roll-off: timbre varies per chord
        for offset in chord:
            f0 = 440.0 * 2 ** ((root + offset - 69) / 12)
            for h in range(1, MUSIC_HARMONICS + 1):
                if f0 * h < SAMPLE_RATE / 2:
                    out[pos:pos + length] += bright ** (h - 1) * np.sin(
                        2 * np.pi * f0 * h * t + rng.uniform(0, 2 * np.pi)) * envelope
        pos += length
    return out


def hum(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz harmonics with random levels) over a faint pink floor."""
    n = int(round(seconds * SAMPLE_RATE))
    t = np.arange(n) / SAMPLE_RATE
    base = HUM_BASES_HZ[int(rng.integers(len(HUM_BASES_HZ)))]
    out = np.zeros(n, np.float64)
    for h in range(1, HUM_HARMONICS + 1):
        out += rng.uniform(0.05, 1.0) / h * np.sin(2 * np.pi * base * h * t + rng.uniform(0, 2 * np.pi))
    floor = _coloured(n, rng, 1.0)
    floor *= np.sqrt(np.mean(out ** 2) / max(np.mean(floor ** 2), 1e-12)) * 10 ** (HUM_NOISE_DB / 20)
    return out + floor


def make_background(
    kind: str,
    seconds: float,
    rng: np.random.Generator,
    exclude_phrase: str = NEUTRAL_PHRASE,
    voices: Sequence[str] | None = None,
) -> np.ndarray:
    """``seconds`` of background ``kind`` (one of BACKGROUND_KINDS), float32 16 kHz at -20 dBFS RMS.

    ``exclude_phrase`` is the wake phrase babble must never say; ``voices`` limits babble's talkers.
    """
    if seconds <= 0:
        raise TrainerError(f"background length must be positive, got {seconds} s")
    n = int(round(seconds * SAMPLE_RATE))
    if kind == "white":
        audio = rng.standard_normal(n)
    elif kind == "pink":
        audio = _coloured(n, rng, 1.0)
    elif kind == "brown":
        audio = _coloured(n, rng, 2.0)
    elif kind == "babble":
        audio = babble(seconds, rng, exclude_phrase, voices)
    elif kind == "music":
        audio = music(seconds, rng)
    elif kind == "hum":
        audio = hum(seconds, rng)
    else:
        raise TrainerError(f"unknown background kind {kind!r}; choose from {', '.join(BACKGROUND_KINDS)}")
    return _scale(audio)
