"""English speech from SVOX Pico, a third synthesis engine for training data.

espeak-ng and DECtalk are both formant synthesizers. Pico (Android's old offline voice) is a
different kind: a statistical (HMM) parametric synthesizer trained on recordings of real
speakers, so its timbre is closer to a human voice. Its two English voices are both women
(``en-US`` and ``en-GB``); held-out female voices are the ones Hark's models miss most.

Pico comes from PyPI's ``ttspico`` (Apache-2.0: the engine's C source and its language files,
built into a Python extension on install; the ``pico`` extra, part of ``all``). Without it,
synthesis uses the other engines.

Two speakers cannot be split into train/val/test, so Pico's voices are training voices only:
validation and test speakers come from the other engines. Each clip draws its own pitch and
rate, so the two voices are heard at many pitches and speeds.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from trainer.errors import TrainerError

PREFIX = "pico:"
LANGUAGES = ("en-US", "en-GB")
SAMPLE_WIDTH = 2
"""Pico renders 16-bit mono PCM at 16 kHz, the rate Hark uses (sentry.constants.SAMPLE_RATE)."""
PITCH_PERCENT = (70, 140)
"""Per-clip pitch, percent of the voice's own (Pico accepts 50..200)."""
RATE_PERCENT = (75, 130)
"""Per-clip speed, percent of the voice's own (Pico accepts 20..500)."""
VOLUME_PERCENT = 60
"""Pico's default volume (100) clips loud syllables; levels are normalized afterwards anyway."""
_UNSAFE = str.maketrans({"<": " ", ">": " ", "\n": " ", "\r": " "})
"""Pico reads XML-like markup (<pitch level=...>), so angle brackets never reach it."""


@cache
def available() -> bool:
    """True if the ``ttspico`` extension imports and speaks."""
    try:
        _engine(LANGUAGES[0])
    except TrainerError:
        return False
    return True


def list_voices() -> list[str]:
    """Pico voice identifiers (``pico:en-US``, ``pico:en-GB``), or none without Pico."""
    return [f"{PREFIX}{lang}" for lang in LANGUAGES] if available() else []


def is_pico(voice: str) -> bool:
    return voice.startswith(PREFIX)


def _engine(language: str):
    """A fresh engine (about 5 ms): Pico's noise excitation carries its position from one
    utterance to the next, so only a new engine makes a clip depend on its text and settings
    alone, and synthesis reproducible."""
    try:
        import ttspico
    except ImportError as exc:
        raise TrainerError("SVOX Pico is not installed. Fix: pip install 'hark-wakeword[pico]' "
                           "(builds ttspico, needs a C compiler)") from exc
    try:
        engine = ttspico.TtsEngine(language)
    except RuntimeError as exc:
        raise TrainerError(f"SVOX Pico could not load its {language} voice: {exc}") from exc
    engine.volume = VOLUME_PERCENT
    return engine


def synthesize(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    """Speak ``text`` with a Pico voice at a pitch and rate drawn from ``rng``.

    Returns float32 mono audio at 16 kHz.
    """
    language = voice[len(PREFIX):] if is_pico(voice) else ""
    if language not in LANGUAGES:
        raise TrainerError(f"bad Pico voice {voice!r}: expected one of "
                           f"{', '.join(PREFIX + lang for lang in LANGUAGES)}")
    text = text.translate(_UNSAFE).strip()
    if not text:
        raise TrainerError("Pico was asked to speak empty text")
    engine = _engine(language)
    engine.pitch = int(rng.integers(PITCH_PERCENT[0], PITCH_PERCENT[1] + 1))
    engine.rate = int(rng.integers(RATE_PERCENT[0], RATE_PERCENT[1] + 1))
    pcm = engine.speak(text) or b""
    if not pcm:
        raise TrainerError(f"Pico produced no audio for {text!r}")
    return np.frombuffer(pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH], dtype="<i2").astype(np.float32) / 32768.0
