"""English speech from libespeak-ng, driven through ctypes.

The library and its data come from the PyPI wheel ``espeakng-loader``, so no system package is
needed. espeak-ng is one process-global C library with global state (current voice, parameters,
the synth callback), so every call goes through one lock; worker processes each load their own
copy on first use.

``synthesize`` is a pure function of its arguments, bit for bit: espeak keeps synthesis state
in static variables that no API resets (not even espeak_Terminate then espeak_Initialize), so
one utterance used to differ by up to a few hundred samples depending on what the process had
said before, and a dataset synthesized by two worker processes depended on which worker got
which clips. Each call after the first therefore unloads the library and loads it afresh
(about 8 ms on a shared 2-core machine, most of it espeak listing its voices again: about a
fifth more per warped dataset clip, 3% more for negative streams). It is loaded
from a private in-memory copy (Linux ``memfd``) so that no other loader of the same file (e.g.
``trainer.provenance``) keeps it mapped and its state alive; where that is not possible and the
unload does not take, a warning says that bits then depend on call order.

Voices are "base+variant" identifiers such as ``en-us+m3`` or ``en-gb-scotland+klatt``: the base
chooses accent and pronunciation rules, the variant chooses speaker colour (pitch, formants,
glottal source). ``list_voices`` gives the English bases crossed with a set of natural-sounding
variants (the novelty variants, robots and demons, are left out).
"""

from __future__ import annotations

import _ctypes
import ctypes
import logging
import os
import threading
from dataclasses import dataclass

import numpy as np

from sentry.audio import resample
from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError

log = logging.getLogger(__name__)

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
    path: str = ""
    """What dlopen was given: the private copy (``_private_copy``) or the wheel's file."""
    spoken: bool = False
    """True once this load has synthesized: the next call loads a fresh library first."""
    reloads: bool = True
    """False where unloading does not take (the library stays mapped): state then carries over."""


_lock = threading.Lock()
_engine: _Engine | None = None
_chunks: list[np.ndarray] = []
_private: tuple[int, str] | None = None
"""(pid, path) of this process's private copy of the library."""


def _collect(wav, n_samples: int, _events) -> int:
    """Synth callback: copy this buffer of int16 samples; returning 0 tells espeak to continue."""
    if n_samples > 0 and wav:
        _chunks.append(np.ctypeslib.as_array(wav, shape=(n_samples,)).copy())
    return 0


def _private_copy(lib_path: str) -> str:
    """A path to the library that only this module opens, so that unloading it really unmaps
    it: an in-memory file on Linux (no file left behind), else the wheel's own file."""
    global _private
    if _private is not None and _private[0] == os.getpid():
        return _private[1]
    path = lib_path
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        try:
            fd = os.memfd_create("hark-libespeak-ng")
            with open(lib_path, "rb") as source:
                os.write(fd, source.read())
            path = f"/proc/self/fd/{fd}"  # the descriptor stays open for reloads
        except OSError:
            path = lib_path
    _private = (os.getpid(), path)
    return path


def _unload(engine: _Engine) -> bool:
    """Terminate espeak and unmap the library; True if it is really gone (its state with it)."""
    engine.lib.espeak_Terminate()
    dlclose = getattr(_ctypes, "dlclose", None)
    if dlclose is None:  # Windows: no dlclose; espeak is reinitialised in place
        return False
    dlclose(engine.lib._handle)
    try:
        still = ctypes.CDLL(engine.path, mode=os.RTLD_NOLOAD)
    except OSError:
        return True
    dlclose(still._handle)
    return False


def _load() -> _Engine:
    """libespeak-ng, loaded and initialised, in the state of a fresh process: once per process
    (a forked child re-initialises), and again after every utterance (see the module's doc)."""
    global _engine
    reloads = True
    if _engine is not None and _engine.pid == os.getpid():
        if not _engine.spoken or not _engine.reloads:
            return _engine
        reloads = _unload(_engine)
        if not reloads:
            log.warning("libespeak-ng stays loaded after unloading (%s), so its waveform state "
                        "carries from one utterance to the next: synthesized audio now depends "
                        "on what this process said before (a few samples, not the words)",
                        _engine.path)
        _engine = None
    try:
        import espeakng_loader
    except ImportError as exc:
        raise TrainerError(
            "espeak-ng is not available: the Python package espeakng-loader is missing. "
            "Fix: pip install espeakng-loader"
        ) from exc
    lib_path = espeakng_loader.get_library_path()
    data_path = espeakng_loader.get_data_path()
    path = _private_copy(lib_path)
    try:
        lib = ctypes.CDLL(path)
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
    lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                                          ctypes.c_int]
    lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
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
    _engine = _Engine(lib=lib, callback=callback, pid=os.getpid(), variants=variants, path=path,
                      reloads=reloads)
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
        # espeak draws on rand() for noise sources; seeding it removes that variation. The
        # rest of its state is fresh: _load reloaded the library after the last utterance.
        lib.espeak_ng_SetRandSeed(RAND_SEED)
        engine.spoken = True
        status = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        pcm = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        _chunks.clear()
    if status != _EE_OK:
        raise TrainerError(f"espeak_Synth failed with status {status} for voice {voice!r}")
    # 22050 -> 16000 Hz is the exact ratio 320/441: polyphase filtering, no drift.
    return resample(pcm.astype(np.float32) / 32768.0, ESPEAK_RATE, SAMPLE_RATE)


_PHONEMES_IPA = 0x02
"""espeak_TextToPhonemes phonememode: IPA symbols, words separated by spaces."""


def phonemize(text: str, voice: str = "en-us") -> str:
    """``text`` as IPA in the accent of an espeak voice (e.g. ``en-us``, ``en-gb-x-rp``).

    Punctuation is not kept: espeak returns one clause at a time, joined here by spaces.
    Like synthesis, each call starts from a freshly loaded library, so the result depends on
    its arguments only.
    """
    if not text or not text.strip():
        raise TrainerError("espeak was asked to phonemize empty text")
    buffer = ctypes.create_string_buffer(text.encode("utf-8") + b"\0")
    with _lock:
        engine = _load()
        lib = engine.lib
        if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
            raise TrainerError(f"espeak does not know the voice {voice!r}; use e.g. 'en-us'")
        engine.spoken = True  # translator state changes too: reload before the next call
        pointer = ctypes.c_void_p(ctypes.addressof(buffer))
        clauses = []
        while pointer.value:
            result = lib.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_IPA)
            if result:
                clauses.append(result.decode("utf-8", "replace").strip())
    return " ".join(c for c in clauses if c)
