"""Benchmark audio for comparing wake-word systems: held-out engines only, in context, in noise.

Hark is trained on espeak-ng speech only. Every word spoken here comes from flite and festival
voices (``trainer.synth.heldout``), which Hark's training never uses, so no system under test
has heard these engines, unless a peer's authors trained on them (openWakeWord and
microWakeWord document Piper TTS and recorded speech, not flite or festival).

Written under ``out/``:

- ``<word>/positive_stream.wav`` and ``<word>/regions.json``: for each wake word, scenes laid
  end to end. A scene is a 2.5-4 s gap, optionally a sentence before (the speaker was already
  talking), a short pause, the wake word, a short pause and optionally a command after, all by
  one voice. Each scene gets one noise condition (clean, 20, 10 or 5 dB SNR of the wake word
  against babble, music-like chords, hum or coloured noise, under the whole scene including its
  gap, as in a real room) and a share of scenes is reverberated. ``regions.json`` lists every
  wake word's (start_s, end_s) with its voice, condition and reverb flag.
- ``negative_stream.wav``: continuous audio shared by all words, never containing any of them:
  ordinary sentences, confusable phrases of every word (``phonetic_neighbours``), babble of
  held-out voices, music-like chords, hum and noise, with some speech in noise or reverberated.
- ``manifest.json``: voices, counts, conditions, durations and the seed.

One worker: synthesis runs one engine process at a time (the dev box is shared).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from sentry.constants import SAMPLE_RATE
from trainer.audio import snr_gain, write_wav
from trainer.errors import TrainerError
from trainer.evaluate import DEFAULT_GAP_S
from trainer.reverb import generated_rir, reverberate
from trainer.synth.evalsets import (
    HELDOUT_PITCH_PROBABILITY,
    HELDOUT_PITCH_SEMITONES,
    HELDOUT_STRETCH,
)
from trainer.synth.heldout import list_heldout_voices, synthesize_heldout
from trainer.synth.noise import make_background
from trainer.synth.text import (
    contains_phrase,
    normalise_phrase,
    ordinary_sentences,
    phonetic_neighbours,
)
from trainer.synth.warps import peak_normalize, pitch_shift, trim_silence

MANIFEST = "manifest.json"
NEGATIVE_STREAM = "negative_stream.wav"
NEGATIVE_SEGMENTS = "negative_segments.json"
"""[start_s, end_s, kind] of every segment of the negative stream: "sentence", "confusable"
or a background kind."""
POSITIVE_STREAM = "positive_stream.wav"
REGIONS = "regions.json"

CONDITIONS = ("clean", "20", "10", "5")
"""Noise conditions of positive scenes, cycled so each voice gets each equally: no noise, or
the wake word's RMS this many dB above the noise's RMS."""
NOISE_KINDS = ("babble", "music", "pink", "white", "brown", "hum")
"""Background kinds; babble is made of held-out voices (see ``_babble``)."""
REVERB_SHARE = 0.3
"""Fraction of positive scenes and of negative speech segments that are reverberated."""
RT60_S = (0.2, 0.8)
"""Reverberation time of generated rooms, seconds: a furnished living room to a bare hall."""
REVERB_TAIL_S = 0.5
"""Seconds of silence appended before convolution so a room's tail is not cut off."""
BEFORE_PROBABILITY = 0.5
"""Share of scenes in which the speaker says a sentence before the wake word."""
AFTER_PROBABILITY = 0.7
"""Share of scenes with a command after the wake word."""
PAUSE_BEFORE_S = (0.15, 0.6)
PAUSE_AFTER_S = (0.1, 0.4)
SPEECH_PEAK = (0.2, 0.9)
"""Peak level of a scene's (or segment's) speech: loud and quiet talkers."""
NOISE_FLOOR_DBFS = -60.0
"""RMS of the faint pink floor under everything: real audio is never digital silence."""
FLOOR_CHUNK_S = 60.0
"""The floor is generated in chunks this long (an FFT over two hours would need gigabytes)."""

SEGMENT_WEIGHTS = {"sentence": 0.55, "confusable": 0.25, "background": 0.20}
"""Share of negative-stream segments by kind."""
NEGATIVE_NOISY_SHARE = 0.3
"""Fraction of negative speech segments mixed with background noise."""
NEGATIVE_SNR_DB = (5.0, 20.0)
BACKGROUND_SEGMENT_S = (2.0, 8.0)
BACKGROUND_GAIN_DB = (-18.0, -3.0)
"""Level of background segments relative to -20 dBFS RMS."""
NEGATIVE_PAUSE_S = (0.2, 1.5)
LOOKBACK_SEGMENTS = 3
"""Adjacent texts checked together, so "hey" then "jarvis" never spells a wake word."""

BABBLE_TALKERS = (4, 8)
BABBLE_PAUSE_S = (0.1, 0.8)
BABBLE_POOL_SIZE = 240
"""Held-out sentences babble is mixed from (30 per voice with the 8 installed voices)."""

COMMANDS = ("what time is it", "turn on the kitchen light", "set a timer for ten minutes",
            "play some music", "what is the weather tomorrow", "stop", "turn the volume down",
            "add milk to the shopping list", "call my sister", "good morning")
"""What a speaker says right after the wake word."""


def word_slug(word: str) -> str:
    """Folder name of a wake word: "hey jarvis" -> "hey_jarvis"."""
    return normalise_phrase(word).replace(" ", "_")


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def _speak(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    """One held-out utterance with the same stretch and pitch variation as ``hark eval``."""
    audio = synthesize_heldout(text, voice, float(rng.uniform(*HELDOUT_STRETCH)))
    if rng.random() < HELDOUT_PITCH_PROBABILITY:
        audio = pitch_shift(audio, rng.uniform(-HELDOUT_PITCH_SEMITONES, HELDOUT_PITCH_SEMITONES))
    return trim_silence(audio, 0.05).astype(np.float32)


def _sentence(rng: np.random.Generator, words: list[str]) -> str:
    """An ordinary sentence containing none of ``words``."""
    while True:
        text = ordinary_sentences(rng, 1, words[0])[0]
        if not any(contains_phrase(text, w) for w in words):
            return text


def _reverb(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``audio`` in a generated room (RT60 drawn from RT60_S), same length plus the tail."""
    padded = np.concatenate([audio, np.zeros(int(REVERB_TAIL_S * SAMPLE_RATE), np.float32)])
    generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
    rir = generated_rir(torch.tensor([rng.uniform(*RT60_S)], dtype=torch.float32), generator)
    wet = reverberate(torch.from_numpy(padded)[None], rir)[0].numpy()
    return wet.astype(np.float32)


_POOLS: dict[tuple, list[np.ndarray]] = {}
"""Babble pools of the running build, keyed by (voices, words); cleared at each build."""


def _babble_pool(rng: np.random.Generator, voices: list[str], words: list[str]) -> list[np.ndarray]:
    """BABBLE_POOL_SIZE held-out sentences, synthesized once per build and reused by every
    babble stretch (synthesizing 4-8 talkers afresh for each would dominate the build)."""
    key = (tuple(voices), tuple(words))
    if key not in _POOLS:
        _POOLS[key] = [synthesize_heldout(_sentence(rng, words), voices[i % len(voices)])
                       for i in range(BABBLE_POOL_SIZE)]
    return _POOLS[key]


def _babble(seconds: float, rng: np.random.Generator, voices: list[str],
            words: list[str]) -> np.ndarray:
    """4-8 held-out voices talking over each other (espeak babble would be a training engine)."""
    pool = _babble_pool(rng, voices, words)
    n = round(seconds * SAMPLE_RATE)
    out = np.zeros(n, np.float64)
    for _ in range(int(rng.integers(BABBLE_TALKERS[0], BABBLE_TALKERS[1] + 1))):
        pos = int(rng.integers(0, SAMPLE_RATE))
        while pos < n:
            speech = pool[int(rng.integers(len(pool)))]
            end = min(n, pos + speech.size)
            out[pos:end] += speech[: end - pos] * rng.uniform(0.5, 1.0)
            pos = end + int(rng.uniform(*BABBLE_PAUSE_S) * SAMPLE_RATE)
    return out.astype(np.float32)


def _background(kind: str, seconds: float, rng: np.random.Generator, voices: list[str],
                words: list[str]) -> np.ndarray:
    """``seconds`` of background ``kind`` at -20 dBFS RMS (the level make_background uses)."""
    if kind != "babble":
        return make_background(kind, seconds, rng)
    audio = _babble(seconds, rng, voices, words)
    return (audio * (0.1 / max(_rms(audio), 1e-9))).astype(np.float32)


def _add_floor(stream: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    chunk = int(FLOOR_CHUNK_S * SAMPLE_RATE)
    gain = 10 ** ((NOISE_FLOOR_DBFS + 20.0) / 20)  # backgrounds come at -20 dBFS
    for start in range(0, stream.size, chunk):
        piece = stream[start:start + chunk]
        piece += make_background("pink", max(piece.size, 1) / SAMPLE_RATE, rng)[: piece.size] * gain
    return stream


def _scene(word: str, voice: str, condition: str, reverb: bool, rng: np.random.Generator,
           words: list[str], voices: list[str]) -> tuple[np.ndarray, tuple[int, int], dict]:
    """One positive scene: (audio, (start, end) of the wake word in samples, description)."""
    gap = np.zeros(int(rng.uniform(*DEFAULT_GAP_S) * SAMPLE_RATE), np.float32)
    parts = [gap]
    before = rng.random() < BEFORE_PROBABILITY
    if before:
        parts += [_speak(_sentence(rng, words), voice, rng),
                  np.zeros(int(rng.uniform(*PAUSE_BEFORE_S) * SAMPLE_RATE), np.float32)]
    phrase = _speak(word, voice, rng)
    start = sum(p.size for p in parts)
    parts.append(phrase)
    command = COMMANDS[int(rng.integers(len(COMMANDS)))] if rng.random() < AFTER_PROBABILITY else ""
    if command:
        parts += [np.zeros(int(rng.uniform(*PAUSE_AFTER_S) * SAMPLE_RATE), np.float32),
                  _speak(command, voice, rng)]
    speech = np.concatenate(parts)
    gain = rng.uniform(*SPEECH_PEAK) / max(float(np.max(np.abs(speech))), 1e-9)
    speech = speech * gain
    phrase_rms = _rms(speech[start:start + phrase.size])
    if reverb:
        speech = _reverb(speech, rng)
    noise_kind = ""
    if condition != "clean":
        noise_kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
        noise = _background(noise_kind, speech.size / SAMPLE_RATE, rng, voices, words)[: speech.size]
        speech = speech + noise * snr_gain(phrase_rms, max(_rms(noise), 1e-12), float(condition))
    info = {"voice": voice, "condition": condition, "noise": noise_kind, "reverb": reverb,
            "before": before, "command": command}
    return speech.astype(np.float32), (start, start + phrase.size), info


def build_positive_stream(word: str, folder: Path, voices: list[str], per_voice: int,
                          rng: np.random.Generator, words: list[str], progress: bool) -> dict:
    """Write ``folder/positive_stream.wav`` and ``regions.json``; returns their summary."""
    scenes, regions, cursor = [], [], 0
    jobs = [(v, CONDITIONS[k % len(CONDITIONS)]) for k in range(per_voice) for v in voices]
    for voice, condition in tqdm(jobs, desc=f"{word}: positive scenes", disable=not progress):
        audio, (lo, hi), info = _scene(word, voice, condition, bool(rng.random() < REVERB_SHARE),
                                       rng, words, voices)
        regions.append({"start_s": (cursor + lo) / SAMPLE_RATE, "end_s": (cursor + hi) / SAMPLE_RATE,
                        **info})
        scenes.append(audio)
        cursor += audio.size
    tail = np.zeros(int(DEFAULT_GAP_S[1] * SAMPLE_RATE), np.float32)
    stream = _add_floor(np.concatenate(scenes + [tail]), rng)
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / POSITIVE_STREAM, stream)
    (folder / REGIONS).write_text(json.dumps(regions, indent=1), encoding="utf-8")
    return {"n_positive": len(regions), "positive_stream_seconds": round(stream.size / SAMPLE_RATE, 2),
            "per_voice": per_voice, "conditions": dict(Counter(r["condition"] for r in regions)),
            "reverberated": sum(r["reverb"] for r in regions),
            "with_sentence_before": sum(r["before"] for r in regions),
            "with_command_after": sum(bool(r["command"]) for r in regions)}


def _negative_text(kind: str, rng: np.random.Generator, words: list[str]) -> str:
    """An ordinary sentence, or a confusable phrase of one of ``words``."""
    if kind == "sentence":
        return _sentence(rng, words)
    return phonetic_neighbours(words[int(rng.integers(len(words)))], rng, 1)[0]


def build_negative_stream(path: Path, voices: list[str], words: list[str], minutes: float,
                          rng: np.random.Generator, progress: bool) -> dict:
    """Write the shared negative stream and, beside it, NEGATIVE_SEGMENTS (every segment's
    [start_s, end_s, kind]); returns its duration and segment counts."""
    target = int(minutes * 60 * SAMPLE_RATE)
    kinds, weights = list(SEGMENT_WEIGHTS), np.array(list(SEGMENT_WEIGHTS.values()))
    pieces: list[np.ndarray] = []
    recent: list[str] = []
    counts: Counter = Counter()
    spans: list[list] = []
    total = 0
    bar = tqdm(total=round(minutes * 60), desc="negative stream", unit="s", disable=not progress)
    while total < target:
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "background":
            bg = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
            audio = _background(bg, rng.uniform(*BACKGROUND_SEGMENT_S), rng, voices, words)
            audio = audio * 10 ** (rng.uniform(*BACKGROUND_GAIN_DB) / 20)
            counts[bg] += 1
            recent.append("")  # noise breaks up the words around it
        else:
            text = _negative_text(kind, rng, words)
            while any(contains_phrase(" ".join(recent[-LOOKBACK_SEGMENTS:] + [text]), w) for w in words):
                text = _negative_text(kind, rng, words)
            voice = voices[int(rng.integers(len(voices)))]
            audio = peak_normalize(_speak(text, voice, rng), rng.uniform(*SPEECH_PEAK))
            if rng.random() < REVERB_SHARE:
                audio = _reverb(audio, rng)
                counts[f"{kind}_reverberated"] += 1
            if rng.random() < NEGATIVE_NOISY_SHARE:
                bg = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
                noise = _background(bg, audio.size / SAMPLE_RATE, rng, voices, words)[: audio.size]
                snr = rng.uniform(*NEGATIVE_SNR_DB)
                audio = audio + noise * snr_gain(_rms(audio), max(_rms(noise), 1e-12), snr)
                counts[f"{kind}_in_noise"] += 1
            counts[kind] += 1
            recent.append(text)
        pause = np.zeros(int(rng.uniform(*NEGATIVE_PAUSE_S) * SAMPLE_RATE), np.float32)
        spans.append([round(total / SAMPLE_RATE, 3), round((total + audio.size) / SAMPLE_RATE, 3),
                      kind if kind != "background" else bg])
        pieces += [audio.astype(np.float32), pause]
        total += audio.size + pause.size
        bar.update(min(round(total / SAMPLE_RATE), bar.total) - bar.n)
    bar.close()
    stream = _add_floor(np.concatenate(pieces), rng)
    write_wav(path, stream)
    (path.parent / NEGATIVE_SEGMENTS).write_text(json.dumps(spans), encoding="utf-8")
    return {"negative_stream_seconds": round(stream.size / SAMPLE_RATE, 2), "segments": dict(counts)}


def build_benchset(words: list[str], out: str | Path, *, negative_minutes: float = 120.0,
                   per_voice: int = 24, voices: list[str] | None = None, seed: int = 8,
                   progress: bool = True) -> dict:
    """Write the benchmark audio for ``words`` into ``out``; returns the manifest.

    per_voice: wake words per voice and word (a multiple of len(CONDITIONS) balances them).
    voices: held-out voices (``engine:name``), default every installed flite/festival voice.
    """
    words = [normalise_phrase(w) for w in words]
    if not words:
        raise TrainerError("build_benchset: no wake words given; pass at least one, e.g. 'hey jarvis'")
    if negative_minutes <= 0 or per_voice < 1:
        raise TrainerError(f"build_benchset: need negative_minutes > 0 and per_voice >= 1, got "
                           f"{negative_minutes} and {per_voice}")
    voices = list(voices) if voices else list_heldout_voices()
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    _POOLS.clear()  # the pool is part of this seed's audio
    sets = {w: build_positive_stream(w, out / word_slug(w), voices, per_voice, rng, words, progress)
            for w in words}
    negative = build_negative_stream(out / NEGATIVE_STREAM, voices, words, negative_minutes, rng,
                                     progress)
    manifest = {"words": words, "seed": seed, "voices": voices,
                "engines_never_in_hark_training": sorted({v.split(":")[0] for v in voices}),
                "conditions_snr_db": list(CONDITIONS), "reverb_share": REVERB_SHARE,
                "rt60_s": list(RT60_S), "negative": negative, "positive": sets}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def load_benchset(out: str | Path) -> dict:
    """The manifest of a built benchset; TrainerError naming the fix when absent."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        raise TrainerError(f"{path}: no benchmark audio there; build it with "
                           "`python benchmarks/peers.py --build-audio --out DIR`")
    return json.loads(path.read_text(encoding="utf-8"))


def confusable_spans(out: str | Path) -> list[tuple[float, float]] | None:
    """(start_s, end_s) of the confusable phrases in the negative stream; None for audio
    built before the segments were recorded."""
    path = Path(out) / NEGATIVE_SEGMENTS
    if not path.is_file():
        return None
    return [(float(a), float(b)) for a, b, kind in json.loads(path.read_text(encoding="utf-8"))
            if kind == "confusable"]


def regions_of(folder: Path) -> list[dict]:
    """The wake-word regions of one word's positive stream (dicts with start_s, end_s, ...)."""
    return json.loads((folder / REGIONS).read_text(encoding="utf-8"))

