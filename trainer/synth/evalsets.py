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

Two more sets put the word in running speech or serve the threshold choice. ``synthesize_eval_sets``
builds them too, and each can be added to an existing dataset on its own:

- ``heldout_sentence/`` (``synthesize_sentence_set``): the pinned held-out voices saying the
  word inside speech: a short ordinary sentence before it (absent in ~15 %), a pause, the word,
  and in ~70 % a pause and an assistant command after it ("turn on the kitchen lights"). Each
  piece is synthesized on its own in one voice from one stretch/pitch draw, trimmed and joined,
  so the word's place is known to the sample: ``positive/regions.json`` holds it
  (``{"clip.wav": [start_s, end_s]}``), and evaluation (``trainer.evaluate.EvalSet``) counts a
  detection on the speech before the word as a false accept of the positive stream and a hit
  only from the word's start to its end plus the tolerance. Its negative stream is
  ``heldout``'s own file, hard-linked (copied only where the file system cannot link), so the
  two sets share one stream without a second 115 MB.
- ``calib/`` (``synthesize_calibration_set``): the data the shipped threshold is chosen on.
  Its voices are the dataset's *validation-split* speakers of every training engine installed
  here (espeak-ng, DECtalk; Pico has no validation speakers), never a held-out engine.
  Validation speakers are never trained on (they only pick checkpoints), so this is honest
  calibration data that is not the test. Half the positives are in-sentence, half the phrase
  alone; the negative stream is spoken by the same voices, varied as held-out speech is
  (duration stretch, pitch shifts), so it is no easier than held-out speech.

These two are built beside eval/ and moved in whole, so a run cut off half-way never leaves a
partial set to be scored.

Babble inside the espeak and held-out streams uses the espeak test voices, the calibration
stream's the espeak validation voices: no training voice leaks into any eval set.
``eval/manifest.json`` lists the voices of each set, counts, durations and recipes.
"""

from __future__ import annotations

import json
import os
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
from sentry.files import copy_atomic, write_text_atomic
from trainer.evaluate import REGIONS_JSON, Region
from trainer.synth import dectalk, pico
from trainer.synth.build import engine_missing, require_speech
from trainer.synth.espeak import synthesize
from trainer.synth.heldout import (STANDARD_VOICES, engine_versions, install_hint,
                                   list_heldout_voices, synthesize_heldout)
from trainer.synth.noise import make_background
from trainer.synth.text import (commands, contains_phrase, normalise_phrase, ordinary_sentences,
                                phonetic_neighbours)
from trainer.synth.warps import peak_normalize, pitch_shift, random_warp, time_stretch, trim_silence

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
STAGING_DIR = ".eval.partial"
"""Sets are built here, beside eval/, and moved into eval/ whole."""
SENTENCE_SET = "heldout_sentence"
CALIB_SET = "calib"
SENTENCE_BEFORE_PROBABILITY = 0.85
"""Share of in-sentence clips with an ordinary sentence before the word."""
COMMAND_AFTER_PROBABILITY = 0.7
"""Share of in-sentence clips with an assistant command after the word."""
PAUSE_BEFORE_WORD_S = (0.05, 0.4)
PAUSE_AFTER_WORD_S = (0.05, 0.3)
PIECE_MARGIN_S = 0.02
"""Silence kept around each trimmed piece, so soft onsets ("h") are not cut off."""
CALIB_SENTENCE_EVERY = 2
"""Every second calibration positive is in-sentence, the others are the phrase alone."""
SENTENCE_SEED, CALIB_SEED = 1, 2
"""Mixed with the caller's seed, so each set draws its own stream of random numbers and
adding one never changes another."""

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


def _calibration_speaker(text: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    """A validation voice of a training engine, varied as held-out speech is (stretch, pitch)."""
    stretch = float(rng.uniform(*HELDOUT_STRETCH))
    semitones = (float(rng.uniform(-HELDOUT_PITCH_SEMITONES, HELDOUT_PITCH_SEMITONES))
                 if rng.random() < HELDOUT_PITCH_PROBABILITY else 0.0)
    if dectalk.is_dectalk(voice):
        audio = dectalk.synthesize(text, voice, rng)
    elif pico.is_pico(voice):
        audio = pico.synthesize(text, voice, rng)
    else:
        audio = synthesize(text, voice, int(rng.integers(*ESPEAK_RATE_WPM)),
                           int(rng.integers(*ESPEAK_PERCENT)), int(rng.integers(*ESPEAK_PERCENT)))
    audio = time_stretch(require_speech(audio, voice, text), 1.0 / stretch)
    return pitch_shift(audio, semitones) if semitones else audio


def in_sentence_clip(phrase: str, voice: str, speak: Speaker,
                     rng: np.random.Generator) -> tuple[np.ndarray, Region]:
    """The phrase inside running speech, in one voice: (audio float32 16 kHz, word region).

    [sentence before (in SENTENCE_BEFORE_PROBABILITY)] pause, phrase, [pause, command (in
    COMMAND_AFTER_PROBABILITY)]. Every piece is spoken separately by ``speak`` from a fresh
    generator on one seed, so all pieces share the voice's stretch, pitch and prosody draws,
    then trimmed to PIECE_MARGIN_S and joined. The region is (start_s, end_s) of the phrase's
    piece in the returned clip, exact to the sample.
    """
    words = phrase.split()
    before = after = ""
    if rng.random() < SENTENCE_BEFORE_PROBABILITY:
        # never the phrase across the join either ("... hey" + "hey hey" is an earlier one)
        while not before or contains_phrase(" ".join([before] + words[:-1]), phrase):
            before = ordinary_sentences(rng, 1, phrase)[0]
    if rng.random() < COMMAND_AFTER_PROBABILITY:
        while not after or contains_phrase(" ".join(words[1:] + [after]), phrase):
            after = commands(rng, 1, phrase)[0]
    delivery = int(rng.integers(2**63))
    gaps = rng.uniform(*PAUSE_BEFORE_WORD_S), rng.uniform(*PAUSE_AFTER_WORD_S)
    margin, peak = rng.uniform(*TRIM_MARGIN_S), rng.uniform(*SPEECH_PEAK)

    def say(text: str) -> np.ndarray:
        audio = speak(text, voice, np.random.default_rng(delivery))
        return trim_silence(audio, PIECE_MARGIN_S).astype(np.float32)

    def quiet(seconds: float) -> np.ndarray:
        return np.zeros(int(round(seconds * SAMPLE_RATE)), np.float32)

    head = [quiet(margin)] + ([say(before + "."), quiet(gaps[0])] if before else [])
    word = say(phrase + ("," if after else "."))
    tail = ([quiet(gaps[1]), say(after + ".")] if after else []) + [quiet(margin)]
    start = sum(len(p) for p in head)
    audio = peak_normalize(np.concatenate(head + [word] + tail), peak)
    return audio, (start / SAMPLE_RATE, (start + len(word)) / SAMPLE_RATE)


def _mixed_positives(folder: Path, phrase: str, voices: list[str], speak: Speaker, n: int,
                     every: int, rng: np.random.Generator, progress: bool) -> float:
    """Write ``n`` clips, every ``every``-th one in-sentence (1: all of them; each voice says
    both kinds alike), and their ``regions.json``; returns seconds of audio written."""
    folder.mkdir(parents=True, exist_ok=True)
    regions: dict[str, list[float]] = {}
    seconds = 0.0
    for i in tqdm(range(n), desc=f"eval {folder.parent.name} positives", unit="clip",
                  disable=not progress):
        name = f"positive_{i:04d}.wav"
        voice = voices[(i // every) % len(voices)]
        if i % every == every - 1:
            audio, region = in_sentence_clip(phrase, voice, speak, rng)
            regions[name] = list(region)
        else:
            audio = speak(phrase, voice, rng)
            audio = peak_normalize(trim_silence(audio, rng.uniform(*TRIM_MARGIN_S)),
                                   rng.uniform(*SPEECH_PEAK))
        write_wav(folder / name, audio)
        seconds += len(audio) / SAMPLE_RATE
    write_text_atomic(folder / REGIONS_JSON, json.dumps(regions, indent=1))
    return seconds


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
    n_positive_sentence: int | None = None,
    negative_minutes_calib: float | None = None,
    n_positive_calib: int | None = None,
) -> dict:
    """Write ``out/eval/espeak``, ``heldout``, ``heldout_sentence`` and ``calib`` for the
    dataset in ``out``.

    An hour of negative audio per set: with 20-30 minutes one false accept already reads
    as 2-3 FA/h, too coarse to pick a threshold for a 0.5 FA/h target.

    The dataset must exist (its manifest names the test voices). Replaces earlier eval sets.
    The held-out voices are ``heldout_voices`` when given, else those pinned in the dataset
    manifest, else the standard ones (see ``heldout_voices_for``); voices and recipe are then
    pinned in the dataset manifest. The in-sentence and calibration sets follow the held-out
    set's sizes unless given (``synthesize_sentence_set``, ``synthesize_calibration_set``).
    Returns the contents of ``eval/manifest.json``.
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
    synthesize_sentence_set(out, n_positive=n_positive_sentence or n_positive_heldout, seed=seed,
                            progress=progress)
    return synthesize_calibration_set(
        out, minutes=negative_minutes_calib or negative_minutes_heldout,
        n_positive=n_positive_calib or n_positive_heldout, seed=seed, progress=progress)


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


def _staging(dataset: Path, name: str) -> Path:
    """An empty folder to build set ``name`` in: beside eval/, not in it, so a set cut off
    half-way is never found and scored as if whole."""
    stage = dataset / STAGING_DIR / name
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def _install(stage: Path, target: Path) -> None:
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage, target)
    try:
        stage.parent.rmdir()
    except OSError:
        pass  # another set is being built beside it


def _share_file(source: Path, target: Path) -> str:
    """``target`` becomes ``source``'s file without a second copy: a hard link, or a copy
    where the file system cannot link (FAT, another device). Returns "hard link" or "copy"."""
    target.unlink(missing_ok=True)
    try:
        os.link(source, target)
        return "hard link"
    except OSError:
        copy_atomic(source, target)
        return "copy"


def _eval_manifest(root: Path, phrase: str) -> dict:
    path = root / "manifest.json"
    if path.is_file():
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise TrainerError(f"{path}: unreadable ({exc}). Fix: rebuild the eval sets with "
                               "`hark synth --overwrite`") from exc
    return {"phrase": phrase, "sets": {}}


def _record_set(root: Path, phrase: str, name: str, info: dict) -> dict:
    """Put set ``name``'s entry into eval/manifest.json (atomically); returns the manifest."""
    summary = _eval_manifest(root, phrase)
    summary.setdefault("sets", {})[name] = info
    write_text_atomic(root / "manifest.json", json.dumps(summary, indent=1))
    return summary


def _sentence_recipe(seed: int, n_positive: int, every: int) -> dict:
    return {"version": RECIPE_VERSION, "seed": seed, "n_positive": n_positive,
            "in_sentence_every": every, "sentence_before_probability": SENTENCE_BEFORE_PROBABILITY,
            "command_after_probability": COMMAND_AFTER_PROBABILITY,
            "pause_before_word_s": list(PAUSE_BEFORE_WORD_S),
            "pause_after_word_s": list(PAUSE_AFTER_WORD_S), "piece_margin_s": PIECE_MARGIN_S,
            "stretch": list(HELDOUT_STRETCH), "pitch_semitones": HELDOUT_PITCH_SEMITONES,
            "pitch_probability": HELDOUT_PITCH_PROBABILITY, "speech_peak": list(SPEECH_PEAK)}


def _check_count(name: str, value: float) -> None:
    if value <= 0:
        raise TrainerError(f"{name} must be positive, got {value}")


def synthesize_sentence_set(dataset: str | Path, *, n_positive: int = 300, seed: int = 1,
                            progress: bool = True) -> dict:
    """Add (or replace) ``eval/heldout_sentence`` in the dataset folder ``dataset``.

    ``n_positive`` in-sentence clips in the pinned held-out voices (``heldout_voices_for``),
    with ``positive/regions.json``; the negative stream is ``eval/heldout``'s, hard-linked
    (copied where linking fails), so ``eval/heldout`` must exist. Records the set in
    eval/manifest.json and returns that manifest.
    """
    dataset = Path(dataset).expanduser().resolve()
    _check_count("n_positive", n_positive)
    manifest = read_manifest(dataset)
    phrase = manifest["phrase"]
    root = dataset / EVAL_DIR
    stream = root / "heldout" / NEGATIVE_STREAM
    if not stream.is_file():
        raise TrainerError(f"{stream} is missing: the in-sentence set shares eval/heldout's "
                           f"negative stream. Fix: build the eval sets first (`hark synth "
                           f"\"{phrase}\" --out {dataset} --overwrite`)")
    pin = manifest.get(PIN_KEY) if isinstance(manifest.get(PIN_KEY), dict) else None
    if pin is None:  # an older dataset: the voices its heldout set was made with
        pin = {"voices": _eval_manifest(root, phrase).get("sets", {}).get("heldout", {}).get("voices")}
    voices = heldout_voices_for(pin)["voices"]
    rng = np.random.default_rng([seed, SENTENCE_SEED])
    stage = _staging(dataset, SENTENCE_SET)
    seconds = _mixed_positives(stage / POSITIVE_DIR, phrase, voices, _heldout_speaker, n_positive,
                               1, rng, progress)
    shared = _share_file(stream, stage / NEGATIVE_STREAM)
    _install(stage, root / SENTENCE_SET)
    heldout_info = _eval_manifest(root, phrase).get("sets", {}).get("heldout", {})
    info = {"engine": "heldout", "voices": voices, "n_positive": n_positive,
            "positive_seconds": round(seconds, 2), "in_sentence": n_positive,
            "negative_stream": f"eval/heldout/{NEGATIVE_STREAM} ({shared})",
            "negative_stream_seconds": heldout_info.get("negative_stream_seconds"),
            "segments": heldout_info.get("segments"),
            "recipe": _sentence_recipe(seed, n_positive, 1)}
    return _record_set(root, phrase, SENTENCE_SET, info)


def calibration_voices(dataset: str | Path) -> list[str]:
    """The dataset's validation-split speakers whose engines run here (training engines only:
    espeak-ng, DECtalk; held-out engines never have validation speakers).

    An engine that is not installed is left out with a note on stderr; none left is an error.
    """
    dataset = Path(dataset).expanduser().resolve()
    manifest = read_manifest(dataset)
    speakers = manifest.get("speaker_splits") or manifest.get("voice_splits") or {}
    val = list(speakers.get("val") or [])
    if not val:
        raise TrainerError(f"{dataset / 'manifest.json'} lists no validation-split speakers, and "
                           "the calibration set is made of them. Fix: rebuild the dataset with "
                           "validation voices (`hark synth ... --overwrite`, val_voice_fraction > 0)")
    by_engine: dict[str, list[str]] = {}
    for voice in val:
        engine = "dectalk" if dectalk.is_dectalk(voice) else "pico" if pico.is_pico(voice) else "espeak"
        by_engine.setdefault(engine, []).append(voice)
    voices = []
    for engine, names in by_engine.items():
        missing = engine_missing(engine)
        if missing:
            _note(f"calibration set without the {len(names)} {engine} validation voices: "
                  f"{missing[0]}. Fix: {missing[1]}")
            continue
        voices += names
    if not voices:
        raise TrainerError(f"none of the engines of the validation speakers "
                           f"({', '.join(by_engine)}) runs here, so the calibration set would be "
                           "empty. Fix: install them (see the notes above)")
    return voices


def synthesize_calibration_set(dataset: str | Path, *, minutes: float = 60.0, n_positive: int = 300,
                               seed: int = 1, progress: bool = True) -> dict:
    """Add (or replace) ``eval/calib`` in the dataset folder ``dataset``: the set the shipped
    threshold is chosen on, spoken by the validation speakers (``calibration_voices``).

    ``n_positive`` clips, every other one in-sentence (``positive/regions.json``), and a
    ``minutes``-long negative stream in the same voices, varied as held-out speech is, with
    babble from the espeak validation voices. Records the set in eval/manifest.json and
    returns that manifest.
    """
    dataset = Path(dataset).expanduser().resolve()
    _check_count("n_positive", n_positive)
    _check_count("minutes", minutes)
    manifest = read_manifest(dataset)
    phrase = manifest["phrase"]
    voices = calibration_voices(dataset)
    espeak_voices = [v for v in voices if not (dectalk.is_dectalk(v) or pico.is_pico(v))]
    babble = espeak_voices or _split_voices(manifest, dataset, "test", phrase)
    rng = np.random.default_rng([seed, CALIB_SEED])
    stage = _staging(dataset, CALIB_SET)
    seconds = _mixed_positives(stage / POSITIVE_DIR, phrase, voices, _calibration_speaker,
                               n_positive, CALIB_SENTENCE_EVERY, rng, progress)
    info = _stream(stage / NEGATIVE_STREAM, phrase, voices, babble, _calibration_speaker, minutes,
                   rng, progress)
    root = dataset / EVAL_DIR
    _install(stage, root / CALIB_SET)
    recipe_ = {**_sentence_recipe(seed, n_positive, CALIB_SENTENCE_EVERY),
               "negative_minutes": minutes, "espeak_rate_wpm": list(ESPEAK_RATE_WPM),
               "segment_weights": SEGMENT_WEIGHTS, "pause_s": list(PAUSE_S),
               "noise_floor_dbfs": NOISE_FLOOR_DBFS}
    info = {"engine": "validation speakers", "voices": voices, "babble_voices": babble,
            "n_positive": n_positive, "in_sentence": n_positive // CALIB_SENTENCE_EVERY,
            "positive_seconds": round(seconds, 2), **info, "recipe": recipe_}
    return _record_set(root, phrase, CALIB_SET, info)
