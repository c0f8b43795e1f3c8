"""Evaluation sets: phrase clips and long negative streams from voices training never heard.

Two sets are written under ``<dataset>/eval/``, each with ``positive/*.wav`` (the phrase) and
``negative_stream.wav`` (continuous 16 kHz audio: ordinary sentences and confusable phrases with
0.2-1.5 s pauses, plus stretches of babble, music, hum and noise; never the wake phrase):

- ``espeak/``: only the dataset's *test-split* espeak voices, read from ``manifest.json``
  (``voice_splits.test``: about 10 of the 104 base+variant voices). Same engine as training, new
  speakers: measures speaker generalisation.
- ``heldout/``: the standard held-out voices (``trainer.synth.heldout.STANDARD_VOICES``: flite's
  kal, kal16, awb, rms, slt and festival's kal_diphone, ked_diphone, cmu_us_slt_arctic_hts).
  No training clip ever comes from these engines: measures generalisation beyond espeak's
  synthesis artefacts. Speech is varied with duration stretch (0.8-1.25) and pitch shifts.

The held-out voices and the recipe are pinned in the dataset's ``manifest.json``
(``heldout_eval``): other voices installed on the machine never join, a standard voice that is
missing is named (and the set is marked as differing), and rebuilding the eval sets of a dataset
uses its pinned voices or says which of them this machine lacks.

Babble inside both streams uses the espeak test voices, so no training voice leaks in either.
``eval/manifest.json`` lists the voices of each set, counts and durations.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sentry.constants import SAMPLE_RATE
from trainer.audio import write_wav
from trainer.dataset import read_manifest, write_manifest
from trainer.errors import TrainerError
from trainer.synth.build import require_speech
from trainer.synth.espeak import synthesize
from trainer.synth.heldout import (STANDARD_VOICES, engine_versions, install_hint,
                                   list_heldout_voices, synthesize_heldout)
from trainer.synth.noise import make_background
from trainer.synth.text import contains_phrase, normalise_phrase, ordinary_sentences, phonetic_neighbours
from trainer.synth.warps import peak_normalize, pitch_shift, random_warp, trim_silence

EVAL_DIR = "eval"
POSITIVE_DIR = "positive"
NEGATIVE_STREAM = "negative_stream.wav"
PAUSE_S = (0.2, 1.5)
"""Seconds of quiet between two segments of the negative stream."""
SEGMENT_WEIGHTS = {"sentence": 0.6, "confusable": 0.28, "background": 0.12}
"""Share of stream segments by kind."""
STREAM_BACKGROUNDS = ("babble", "music", "white", "pink", "brown", "hum")
BACKGROUND_SEGMENT_S = (2.0, 8.0)
NOISE_FLOOR_DBFS = -60.0
"""RMS of the faint pink floor under the whole stream: real audio is never digital silence."""
SPEECH_PEAK = (0.2, 0.9)
BACKGROUND_GAIN_DB = (-18.0, -3.0)
"""Level of background segments relative to their -20 dBFS RMS."""
ESPEAK_RATE_WPM = (130, 220)
ESPEAK_PERCENT = (25, 75)
HELDOUT_STRETCH = (0.8, 1.25)
HELDOUT_PITCH_SEMITONES = 2.0
HELDOUT_PITCH_PROBABILITY = 0.5
ESPEAK_WARP_PROBABILITY = 0.5
ESPEAK_WARP_STRENGTH = 0.7
TRIM_MARGIN_S = (0.1, 0.2)
LOOKBACK_SEGMENTS = 3
"""Texts this far back are checked together so adjacent pieces never spell the phrase."""
PIN_KEY = "heldout_eval"
"""Key of the dataset manifest that pins the held-out voices and the eval-set recipe."""
RECIPE_VERSION = 1
"""Bumped whenever the way eval sets are made changes, so an old pin shows it differs."""

Speaker = Callable[[str, str, np.random.Generator], np.ndarray]


def _espeak_speaker(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    audio = require_speech(synthesize(text, voice, int(rng.integers(*ESPEAK_RATE_WPM)),
                                      int(rng.integers(*ESPEAK_PERCENT)),
                                      int(rng.integers(*ESPEAK_PERCENT))), voice, text)
    if rng.random() < ESPEAK_WARP_PROBABILITY:
        audio = random_warp(audio, rng, ESPEAK_WARP_STRENGTH)
    return audio


def _heldout_speaker(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    audio = synthesize_heldout(text, voice, float(rng.uniform(*HELDOUT_STRETCH)))
    if rng.random() < HELDOUT_PITCH_PROBABILITY:
        audio = pitch_shift(audio, rng.uniform(-HELDOUT_PITCH_SEMITONES, HELDOUT_PITCH_SEMITONES))
    return audio


def _positives(folder: Path, phrase: str, voices: list[str], speak: Speaker, n: int,
               rng: np.random.Generator, progress: bool) -> float:
    """Write ``n`` phrase clips; returns their total duration in seconds."""
    folder.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for i in tqdm(range(n), desc=f"eval {folder.parent.name} positives", disable=not progress):
        audio = speak(phrase, voices[i % len(voices)], rng)
        audio = peak_normalize(trim_silence(audio, rng.uniform(*TRIM_MARGIN_S)), rng.uniform(*SPEECH_PEAK))
        write_wav(folder / f"positive_{i:04d}.wav", audio)
        seconds += len(audio) / SAMPLE_RATE
    return seconds


def _stream(path: Path, phrase: str, voices: list[str], babble_voices: list[str], speak: Speaker,
            minutes: float, rng: np.random.Generator, progress: bool) -> dict:
    """Write the negative stream; returns its duration and segment counts."""
    target = int(minutes * 60 * SAMPLE_RATE)
    kinds, weights = list(SEGMENT_WEIGHTS), np.array(list(SEGMENT_WEIGHTS.values()))
    pieces: list[np.ndarray] = []
    recent: list[str] = []
    counts: Counter = Counter()
    total = 0
    bar = tqdm(total=round(minutes * 60), desc=f"eval {path.parent.name} stream", unit="s",
               disable=not progress)
    while total < target:
        kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
        if kind == "background":
            bg = STREAM_BACKGROUNDS[int(rng.integers(len(STREAM_BACKGROUNDS)))]
            audio = make_background(bg, rng.uniform(*BACKGROUND_SEGMENT_S), rng, phrase, babble_voices)
            audio = audio * 10 ** (rng.uniform(*BACKGROUND_GAIN_DB) / 20)
            counts[bg] += 1
            recent.append("")  # noise breaks up the words around it
        else:
            draw = (lambda: ordinary_sentences(rng, 1, phrase)[0]) if kind == "sentence" else (
                lambda: phonetic_neighbours(phrase, rng, 1)[0])
            text = draw()
            # "hey" then "jarvis" half a second apart would be the phrase itself.
            while contains_phrase(" ".join(recent[-LOOKBACK_SEGMENTS:] + [text]), phrase):
                text = draw()
            audio = speak(text, voices[int(rng.integers(len(voices)))], rng)
            audio = peak_normalize(trim_silence(audio, 0.05), rng.uniform(*SPEECH_PEAK))
            counts[kind] += 1
            recent.append(text)
        pause = np.zeros(int(rng.uniform(*PAUSE_S) * SAMPLE_RATE), np.float32)
        pieces += [audio.astype(np.float32), pause]
        total += len(audio) + len(pause)
        bar.update(round(total / SAMPLE_RATE) - bar.n)
    bar.close()
    stream = np.concatenate(pieces)
    floor = make_background("pink", len(stream) / SAMPLE_RATE, rng)
    stream = stream + floor[: len(stream)] * 10 ** ((NOISE_FLOOR_DBFS + 20.0) / 20)
    write_wav(path, stream)
    return {"negative_stream_seconds": round(len(stream) / SAMPLE_RATE, 2), "segments": dict(counts)}


def _split_voices(manifest: dict, dataset: Path, split: str, phrase: str) -> list[str]:
    """The espeak voices of one split, from the `manifest` of the dataset in `dataset`."""
    voices = list(manifest.get("voice_splits", {}).get(split, []))
    if not voices:
        raise TrainerError(f"{dataset / 'manifest.json'} lists no {split}-split espeak voices. Fix: "
                           f"run `hark synth \"{phrase}\" --out {dataset}` first")
    return voices


def recipe(*, negative_minutes_espeak: float, negative_minutes_heldout: float,
           n_positive_espeak: int, n_positive_heldout: int, seed: int) -> dict:
    """Everything besides the voices that decides what the eval sets hold."""
    return {"version": RECIPE_VERSION, "seed": seed,
            "n_positive": {"espeak": n_positive_espeak, "heldout": n_positive_heldout},
            "negative_minutes": {"espeak": negative_minutes_espeak, "heldout": negative_minutes_heldout},
            "heldout_stretch": list(HELDOUT_STRETCH), "heldout_pitch_semitones": HELDOUT_PITCH_SEMITONES,
            "heldout_pitch_probability": HELDOUT_PITCH_PROBABILITY,
            "espeak_rate_wpm": list(ESPEAK_RATE_WPM), "espeak_warp_probability": ESPEAK_WARP_PROBABILITY,
            "segment_weights": SEGMENT_WEIGHTS, "pause_s": list(PAUSE_S),
            "speech_peak": list(SPEECH_PEAK), "noise_floor_dbfs": NOISE_FLOOR_DBFS}


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def heldout_voices_for(pin: dict | None, requested: Sequence[str] | None = None) -> dict:
    """The held-out voices an eval set uses here, and how they differ from the standard set.

    ``requested`` (explicit voices) wins; else the dataset's ``pin`` (its voices must all be
    installed: a missing one is an error, so a rebuilt set is the same set); else the standard
    voices that are installed (a missing one is named). Installed voices outside the chosen
    list never join; they are listed as ``installed_not_used``.
    """
    installed = list_heldout_voices()
    pinned = list(requested or (pin or {}).get("voices") or [])
    wanted = pinned or list(STANDARD_VOICES)
    missing = [v for v in wanted if v not in installed]
    if pinned and missing:
        source = "were asked for" if requested else "are pinned in the dataset manifest"
        raise TrainerError(
            f"held-out voices {', '.join(missing)} {source} but are not installed here "
            f"(installed: {', '.join(installed)}). Fix: {'; '.join(dict.fromkeys(map(install_hint, missing)))}"
            + ("" if requested else "; or rebuild the dataset with `hark synth --overwrite` to pin "
               "the voices this machine has"))
    voices = [v for v in wanted if v in installed]
    if not voices:
        raise TrainerError(f"none of the standard held-out voices ({', '.join(STANDARD_VOICES)}) is "
                           f"installed. Fix: {'; '.join(dict.fromkeys(map(install_hint, STANDARD_VOICES)))}")
    lacking = [v for v in STANDARD_VOICES if v not in voices]
    if lacking and not pinned:
        _note(f"the held-out eval set differs from the standard one: {', '.join(lacking)} not "
              f"installed, so its numbers are not comparable with a full set's. Fix: "
              f"{'; '.join(dict.fromkeys(map(install_hint, lacking)))}")
    unused = [v for v in installed if v not in voices]
    return {"voices": voices, "standard": list(STANDARD_VOICES), "missing_from_standard": lacking,
            "installed_not_used": unused}


def _report_changes(pin: dict | None, new_recipe: dict, versions: dict[str, str]) -> None:
    """Say exactly how this build differs from the dataset's earlier pinned one."""
    if not pin:
        return
    old = pin.get("recipe") or {}
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new_recipe.items() if old.get(k) != v]
    if changed:
        _note("eval sets rebuilt with another recipe than the pinned one: " + "; ".join(changed))
    old_versions = pin.get("engine_versions") or {}
    moved = [f"{k} {old_versions[k]} -> {v}" for k, v in versions.items()
             if k in old_versions and old_versions[k] != v]
    if moved:
        _note("held-out engines differ from the pinned versions: " + "; ".join(moved))


def synthesize_eval_sets(
    phrase: str,
    out: str | Path,
    *,
    negative_minutes_espeak: float = 60.0,
    negative_minutes_heldout: float = 60.0,
    n_positive_espeak: int = 200,
    n_positive_heldout: int = 300,
    seed: int = 1,
    progress: bool = True,
    heldout_voices: Sequence[str] | None = None,
) -> dict:
    """Write ``out/eval/espeak`` and ``out/eval/heldout`` for the dataset in ``out``.

    An hour of negative audio per set: with 20-30 minutes one false accept already reads
    as 2-3 FA/h, too coarse to pick a threshold for a 0.5 FA/h target.

    The dataset must exist (its manifest names the test voices). Replaces earlier eval sets.
    The held-out voices are ``heldout_voices`` when given, else those pinned in the dataset
    manifest, else the standard ones (see ``heldout_voices_for``); voices and recipe are then
    pinned in the dataset manifest. Returns the contents of ``eval/manifest.json``.
    """
    phrase = normalise_phrase(phrase)
    out = Path(out).expanduser().resolve()
    manifest = read_manifest(out)
    test_voices = _split_voices(manifest, out, "test", phrase)
    pin = manifest.get(PIN_KEY) if isinstance(manifest.get(PIN_KEY), dict) else None
    chosen = heldout_voices_for(pin, heldout_voices)
    this_recipe = recipe(negative_minutes_espeak=negative_minutes_espeak,
                         negative_minutes_heldout=negative_minutes_heldout,
                         n_positive_espeak=n_positive_espeak, n_positive_heldout=n_positive_heldout,
                         seed=seed)
    versions = engine_versions()
    _report_changes(pin, this_recipe, versions)
    rng = np.random.default_rng(seed)
    root = out / EVAL_DIR
    sets = {}
    for name, voices, speak, n_pos, minutes in (
        ("espeak", test_voices, _espeak_speaker, n_positive_espeak, negative_minutes_espeak),
        ("heldout", chosen["voices"], _heldout_speaker, n_positive_heldout, negative_minutes_heldout),
    ):
        folder = root / name
        shutil.rmtree(folder, ignore_errors=True)
        seconds = _positives(folder / POSITIVE_DIR, phrase, voices, speak, n_pos, rng, progress)
        info = _stream(folder / NEGATIVE_STREAM, phrase, voices, test_voices, speak, minutes, rng,
                       progress)
        sets[name] = {"engine": name, "voices": voices, "n_positive": n_pos,
                      "positive_seconds": round(seconds, 2), **info}
    new_pin = {**chosen, "recipe": this_recipe, "engine_versions": versions}
    summary = {"phrase": phrase, "seed": seed, "babble_voices": test_voices, "sets": sets,
               PIN_KEY: new_pin}
    (root / "manifest.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    manifest = read_manifest(out)  # re-read: only the pin changes
    manifest[PIN_KEY] = new_pin
    write_manifest(out, manifest)
    return summary


def synthesize_training_stream(dataset: str | Path, out_wav: str | Path, *, minutes: float = 600.0,
                               seed: int = 0, progress: bool = True) -> dict:
    """A long negative stream (as the eval streams: sentences, confusable phrases, noise;
    never the phrase) spoken by the dataset's *training-split* espeak voices, to mine the
    sentry's false accepts from (`hark mine`) for the next training, usually a judge's.

    Training voices only, so mined clips teach nothing about the eval sets' voices and the
    eval numbers stay honest. Returns the stream's duration and segment counts.
    """
    dataset = Path(dataset).expanduser().resolve()
    manifest = read_manifest(dataset)
    phrase = manifest["phrase"]
    voices = _split_voices(manifest, dataset, "train", phrase)
    if minutes <= 0:
        raise TrainerError(f"minutes must be positive, got {minutes}")
    out_wav = Path(out_wav)
    out_wav.parent.mkdir(parents=True, exist_ok=True)
    return _stream(out_wav, phrase, voices, voices, _espeak_speaker, minutes,
                   np.random.default_rng(seed), progress)
