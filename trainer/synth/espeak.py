"""English speech from libespeak-ng, driven through ctypes.

The library and its data come from the PyPI wheel ``espeakng-loader``, so no system package is
needed. espeak-ng is one process-global C library with global state (current voice, parameters,
the synth callback), so every call goes through one lock; worker processes each load their own
copy on first use.

Voices are "base+variant" identifiers such as ``en-us+m3`` or ``en-gb-scotland+klatt``: the base
chooses accent and pronunciation rules, the variant chooses speaker colour (pitch, formants,
glottal source). ``list_voices`` gives the English bases crossed with a set of natural-sounding
variants (the novelty variants, robots and demons, are left out).
"""

from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

import numpy as np

from sentry.audio import resample
from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError

ESPEAK_RATE = 22_050
"""Hz. espeak-ng's native output rate; checked against what espeak_Initialize reports."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_BUFFER_MS = 200
"""Length of the buffer espeak hands to the callback; only affects call granularity."""
_INITIALIZE_DONT_EXIT = 0x8000
"""espeakINITIALIZE_DONT_EXIT: return an error instead of calling exit() on bad data."""
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_RANGE = 1, 2, 3, 4
_EE_OK = 0
RAND_SEED = 1

ENGLISH_BASES = (
    "en",
    "en-us",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
    "en-029",
)
"""espeak-ng English accents: British, American, RP, Scottish, Lancashire, West Midlands,
New York, Caribbean. en-Shaw (Shavian script) is not a spoken accent and is left out."""

VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "klatt3", "Annie")
"""Speaker variants crossed with every base: 8 x 13 = 104 voices."""

RATE_WPM_LIMITS = (80, 450)
"""Words per minute espeak accepts."""
PERCENT_LIMITS = (0, 100)
"""espeak's pitch and pitch-range scale (50 is the voice's own)."""
VOLUME = 100
"""espeak volume in percent; 100 is its unity gain, loud but unclipped for normal speech."""

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


@dataclass
class _Engine:
    lib: ctypes.CDLL
    callback: object
    pid: int
    variants: frozenset[str]
    """Variant names espeak has files for; it silently ignores unknown ones, so we check."""


_lock = threading.Lock()
_engine: _Engine | None = None
_chunks: list[np.ndarray] = []


def _collect(wav, n_samples: int, _events) -> int:
    """Synth callback: copy this buffer of int16 samples; returning 0 tells espeak to continue."""
    if n_samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0


def _load() -> _Engine:
    """Load and initialise libespeak-ng once per process (a forked child re-initialises)."""
    global _engine
    if _engine is not None and _engine.pid == os.getpid():
        return _engine
    try:
        import espeakng_loader
    except ImportError as exc:
        raise TrainerError(
            "espeak-ng is not available: the Python package espeakng-loader is missing. "
            "Fix: pip install espeakng-loader"
        ) from exc
    lib_path = espeakng_loader.get_library_path()
    data_path = espeakng_loader.get_data_path()
    try:
        lib = ctypes.CDLL(lib_path)
    except OSError as exc:
        raise TrainerError(f"cannot load libespeak-ng from {lib_path}: {exc}. "
                           "Fix: pip install --force-reinstall espeakng-loader") from exc
    lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
    lib.espeak_SetSynthCallback.restype = None
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_SetVoiceByName.restype = ctypes.c_int
    lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    lib.espeak_SetParameter.restype = ctypes.c_int
    lib.espeak_Synth.argtypes = [
        ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
        ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.c_void_p,
    ]
    lib.espeak_Synth.restype = ctypes.c_int
    lib.espeak_Synchronize.restype = ctypes.c_int
    lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    lib.espeak_ng_SetRandSeed.restype = None
    rate = lib.espeak_Initialize(
        _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, data_path.encode(), _INITIALIZE_DONT_EXIT
    )
    if rate != ESPEAK_RATE:
        raise TrainerError(
            f"espeak_Initialize with data {data_path} returned {rate}, expected {ESPEAK_RATE} Hz. "
            "Fix: pip install --force-reinstall espeakng-loader"
        )
    callback = _SYNTH_CALLBACK(_collect)  # kept referenced so ctypes does not free it
    lib.espeak_SetSynthCallback(callback)
    variant_dir = os.path.join(data_path, "voices", "!v")
    variants = frozenset(os.listdir(variant_dir)) if os.path.isdir(variant_dir) else frozenset()
    _engine = _Engine(lib=lib, callback=callback, pid=os.getpid(), variants=variants)
    return _engine


def list_voices() -> list[str]:
    """English espeak voice identifiers ``base+variant`` (104 of them), in a stable order."""
    return [f"{base}+{variant}" for base in ENGLISH_BASES for variant in VARIANTS]


def _check_range(name: str, value: int, limits: tuple[int, int]) -> int:
    value = int(round(value))
    if not limits[0] <= value <= limits[1]:
        raise TrainerError(f"espeak {name}={value} is outside {limits[0]}..{limits[1]}")
    return value


def synthesize(
    text: str,
    voice: str = "en-us+m3",
    rate_wpm: int = 175,
    pitch: int = 50,
    pitch_range: int = 50,
) -> np.ndarray:
    """Speak ``text`` with an espeak voice.

    Args:
        text: plain English text.
        voice: ``base+variant`` identifier, e.g. from ``list_voices()``.
        rate_wpm: speaking rate in words per minute (80..450; espeak's default is 175).
        pitch: base pitch on espeak's 0..100 scale, 50 being the voice's own.
        pitch_range: intonation range on the 0..100 scale; 0 is monotone.

    Returns:
        float32 mono audio at SAMPLE_RATE (16 kHz) in [-1, 1].
    """
    if not text or not text.strip():
        raise TrainerError("espeak was asked to speak empty text")
    rate_wpm = _check_range("rate_wpm", rate_wpm, RATE_WPM_LIMITS)
    pitch = _check_range("pitch", pitch, PERCENT_LIMITS)
    pitch_range = _check_range("pitch_range", pitch_range, PERCENT_LIMITS)
    data = text.encode("utf-8") + b"\0"
    with _lock:
        engine = _load()
        lib = engine.lib
        _, plus, variant = voice.partition("+")
        unknown_variant = bool(plus) and variant not in engine.variants
        if unknown_variant or lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise TrainerError(
                f"espeak does not know the voice {voice!r}. Fix: use one of list_voices(), "
                "e.g. 'en-us+m3'"
            )
        for param, value in ((_PARAM_RATE, rate_wpm), (_PARAM_PITCH, pitch),
                             (_PARAM_RANGE, pitch_range), (_PARAM_VOLUME, VOLUME)):
            lib.espeak_SetParameter(param, value, 0)
        _chunks.clear()
        # espeak draws on rand() for noise sources; seeding it removes that variation. espeak
        # also keeps waveform state between utterances, so the same call can still differ by a
        # few samples depending on what was spoken before: content is reproducible, bits not.
        lib.espeak_ng_SetRandSeed(RAND_SEED)
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        _chunks.clear()
    if status != _EE_OK:
        raise TrainerError(f"espeak_Synth failed with status {status} for voice {voice!r}")
    # 22050 -> 16000 Hz is the exact ratio 320/441: polyphase filtering, no drift.
    return resample(pcm.astype(np.float32) / 32768.0, ESPEAK_RATE, SAMPLE_RATE)
