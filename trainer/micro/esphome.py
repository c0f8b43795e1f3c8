"""`hark export-esphome RUN_DIR`: NAME.tflite + NAME.json for ESPHome's `micro_wake_word`.

The steps, each its own function so the benchmark and the tests call the same code:
1. the micro student: RUN_DIR/micro/micro.pt, trained first (a few CPU minutes) from the
   dataset RUN_DIR/config.toml names when it is not there yet (`ensure_student`);
2. int8 conversion, calibrated on a stream of training clips (`calibration_streams`);
3. the tensor arena, measured in the TFLite Micro interpreter (`tflm.measure_arena`);
4. probability_cutoff, chosen as the main trainer chooses its threshold (the same grid, the
   same rule `trainer.thresholds.promise_threshold`, on the same eval set (the calibration
   set, else the espeak one), never a held-out one; the validation split when the dataset has no eval sets), on scores from
   TFLite Micro fed by the chip's frontend and decided as ESPHome decides (`sweep`);
5. the v2 manifest, with only the keys ESPHome's schema allows (it rejects others); what
   Hark measured goes to NAME.hark.json beside it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sentry.constants import SAMPLE_RATE
from sentry.files import atomic_write, write_text_atomic

from . import ESPHOME_EXTRA_HINT, MicroError
from .decide import detections
from .features import FEATURE_STEP_MS, features_for
from .tflm import measure_arena, stream_probabilities

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2
MINIMUM_ESPHOME_VERSION = "2024.7.0"
"""The first ESPHome release reading v2 manifests (feature_step_size, tensor_arena_size)."""
SLIDING_WINDOW_SIZE = 5
"""Invokes averaged by ESPHome before deciding: 5 x 30 ms."""
DEFAULT_TARGET_FA_PER_HOUR = 0.5
CALIBRATION_CLIPS = 120
"""Training clips of each kind (positive, negative) in the int8 calibration stream."""
GAP_S = 0.5
"""Silence between clips laid end to end in calibration and validation streams."""
MIC_NOISE_DBFS = -70.0
"""RMS of the faint white noise laid under every stream fed to the frontend: a microphone
never delivers digital zeros, and the frontend's noise estimate and gain control behave
unlike any device's on long runs of exact silence (the gaps between clips)."""
DEFAULT_AUTHOR = "Hark"
DEFAULT_WEBSITE = "https://github.com/hark-wakeword/hark"


def require_extra() -> None:
    """Fail before any work when the [esphome] extra is not installed."""
    missing = []
    for module in ("tensorflow", "tflite_micro", "pymicro_features"):
        try:
            __import__(module)
        except ImportError:
            missing.append(module)
    if missing:
        raise MicroError(f"the ESPHome export needs {', '.join(missing)}, which the esphome "
                         f"extra installs: {ESPHOME_EXTRA_HINT}")


def model_name(wake_word: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", wake_word.lower()).strip("_") or "wake_word"


def run_settings(run_dir: Path) -> tuple[Path, str]:
    """(dataset folder, wake word) of a `hark train` / `hark run` run folder."""
    from ..config import load_config
    path = run_dir / "config.toml"
    if not path.is_file():
        raise MicroError(f"{run_dir}: no config.toml; pass a run folder made by `hark train` "
                         "or `hark run` (it names the dataset the micro model trains on)")
    config = load_config(path, check=False)
    return Path(config.data.dataset), config.wake_word


def ensure_student(run_dir: Path, *, retrain: bool = False, epochs: int | None = None):
    from .train import CHECKPOINT, MICRO_DIR, MicroTrainConfig, load_checkpoint, train_micro
    path = run_dir / MICRO_DIR / CHECKPOINT
    if retrain or not path.is_file():
        dataset, wake_word = run_settings(run_dir)
        settings = MicroTrainConfig() if epochs is None else MicroTrainConfig(epochs=epochs)
        log.info("training the micro student on %s (%d epochs)", dataset, settings.epochs)
        train_micro(dataset, run_dir, wake_word=wake_word, train=settings)
    return load_checkpoint(path)


def with_noise_floor(pcm: np.ndarray, seed: int = 0, dbfs: float = MIC_NOISE_DBFS) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(pcm)).astype(np.float32)
    return (np.asarray(pcm, dtype=np.float32) + noise * np.float32(10 ** (dbfs / 20)))


def _concat(clips: list[np.ndarray]) -> np.ndarray:
    gap = np.zeros(int(GAP_S * SAMPLE_RATE), dtype=np.float32)
    stream = np.concatenate([piece for clip in clips for piece in (gap, clip)] + [gap])
    return with_noise_floor(stream)


def calibration_streams(dataset: Path, seed: int = 0) -> list[np.ndarray]:
    """Feature streams of training clips (never validation or held-out), for int8 ranges."""
    from ..audio import load_audio
    from ..dataset import load_dataset
    data = load_dataset(dataset)
    rng = np.random.default_rng(seed)
    streams = []
    for labels in (("positive",), ("negative", "hard_negative")):
        clips = [c for label in labels for c in data.select(label, "train")]
        if not clips:
            continue
        pick = rng.choice(len(clips), size=min(CALIBRATION_CLIPS, len(clips)), replace=False)
        streams.append(features_for(_concat([load_audio(clips[i].path) for i in pick])))
    return streams


@dataclass
class ChoosingAudio:
    """The audio probability_cutoff is chosen on: positives laid in a stream, and negatives."""

    source: str
    positive: np.ndarray
    regions: list[tuple[float, float]]
    negative: np.ndarray

    @property
    def negative_hours(self) -> float:
        return len(self.negative) / SAMPLE_RATE / 3600


def eval_set_audio(eval_root: Path, seed: int = 0) -> ChoosingAudio:
    """The eval set the main trainer chooses its threshold on (`trainer.thresholds.
    threshold_chooser`: the calibration set, else the espeak test-split voices; never a
    held-out set). In-sentence clips count only on their word's region."""
    from ..evaluate import build_positive_stream, find_eval_sets
    from ..thresholds import threshold_chooser
    sets = {s.name: s for s in find_eval_sets(eval_root)}
    chosen = sets[threshold_chooser(list(sets))]
    positive, regions = build_positive_stream(chosen.positives(), np.random.default_rng(seed),
                                              word_regions=chosen.word_regions())
    from ..audio import load_audio
    negative = load_audio(chosen.folder / "negative_stream.wav")
    return ChoosingAudio(f"eval set {chosen.folder}", with_noise_floor(positive, seed), regions,
                         with_noise_floor(negative, seed + 1))


def validation_audio(dataset: Path, seed: int = 0) -> ChoosingAudio:
    """Without eval sets: the validation split as streams, positives with gaps, negatives
    (speech, neighbours, then the background noise) end to end. Neighbours are dense here
    (one every second or so), so FA/h reads far higher than on a recording of a room."""
    from ..audio import load_audio
    from ..dataset import load_dataset
    from ..evaluate import build_positive_stream
    data = load_dataset(dataset)
    positives = [load_audio(c.path) for c in data.select("positive", "val")]
    if not positives:
        raise MicroError(f"{dataset}: no validation positives to choose probability_cutoff on")
    positive, regions = build_positive_stream(positives, np.random.default_rng(seed))
    negatives = [load_audio(c.path) for label in ("negative", "hard_negative")
                 for c in data.select(label, "val")]
    negatives += [load_audio(c.path) for c in data.select("background")]
    return ChoosingAudio(f"validation split of {dataset}", with_noise_floor(positive, seed),
                         regions, _concat(negatives))


def choosing_audio(dataset: Path, eval_root: Path | None) -> ChoosingAudio:
    eval_root = eval_root if eval_root is not None else dataset / "eval"
    if eval_root.is_dir():
        return eval_set_audio(eval_root)
    return validation_audio(dataset)


def sweep(pos_probs: np.ndarray, regions, neg_probs: np.ndarray, neg_hours: float, *,
          stride: int, window: int = SLIDING_WINDOW_SIZE, grid=None) -> list[dict]:
    """Rows {threshold, frr, fa_per_hour} on the main trainer's grid, ESPHome's decision on
    uint8 probabilities (threshold = probability_cutoff)."""
    from ..evaluate import match_detections
    from ..thresholds import sweep_grid
    rows = []
    for cutoff in (sweep_grid() if grid is None else grid):
        hits, _ = match_detections(detections(pos_probs, cutoff=float(cutoff), window=window,
                                              stride=stride, step_ms=FEATURE_STEP_MS), regions)
        false = len(detections(neg_probs, cutoff=float(cutoff), window=window, stride=stride,
                               step_ms=FEATURE_STEP_MS))
        rows.append({"threshold": float(cutoff), "frr": 1 - hits / len(regions),
                     "fa_per_hour": false / neg_hours})
    return rows


@dataclass
class EsphomeExport:
    tflite: Path
    manifest: Path
    report: Path
    size_bytes: int
    tensor_arena_size: int
    chosen: dict
    """The sweep row shipped (trainer.thresholds.promise_threshold) and where."""
    parameters: int


def manifest_dict(*, wake_word: str, model_file: str, cutoff: float, arena: int, author: str,
                  website: str, languages: list[str]) -> dict:
    return {
        "type": "micro",
        "wake_word": wake_word,
        "author": author,
        "website": website,
        "model": model_file,
        "trained_languages": languages,
        "version": MANIFEST_VERSION,
        "micro": {
            "probability_cutoff": round(cutoff, 3),
            "sliding_window_size": SLIDING_WINDOW_SIZE,
            "feature_step_size": FEATURE_STEP_MS,
            "tensor_arena_size": arena,
            "minimum_esphome_version": MINIMUM_ESPHOME_VERSION,
        },
    }


def export_esphome(run_dir: Path, out: Path | None = None, *, name: str | None = None,
                   target_fa: float = DEFAULT_TARGET_FA_PER_HOUR, eval_root: Path | None = None,
                   retrain: bool = False, epochs: int | None = None, author: str = DEFAULT_AUTHOR,
                   website: str = DEFAULT_WEBSITE, languages: tuple[str, ...] = ("en",)
                   ) -> EsphomeExport:
    require_extra()
    from ..thresholds import promise_threshold
    from .model import count_parameters
    from .streaming import convert_int8
    run_dir = Path(run_dir)
    student = ensure_student(run_dir, retrain=retrain, epochs=epochs)
    dataset = Path(student.dataset)
    out = Path(out) if out is not None else run_dir / "esphome"
    out.mkdir(parents=True, exist_ok=True)
    name = name or model_name(student.wake_word)
    log.info("converting to int8 TFLite")
    flatbuffer = convert_int8(student.model, calibration_streams(dataset))
    tflite = out / f"{name}.tflite"
    with atomic_write(tflite) as handle:
        handle.write(flatbuffer)
    log.info("measuring the tensor arena in TFLite Micro")
    arena = measure_arena(tflite)
    audio = choosing_audio(dataset, eval_root)
    log.info("choosing probability_cutoff on the %s", audio.source)
    pos = stream_probabilities(flatbuffer, audio.positive, arena)
    neg = stream_probabilities(flatbuffer, audio.negative, arena)
    rows = sweep(pos.probs, audio.regions, neg.probs, audio.negative_hours, stride=pos.stride)
    chosen = {**promise_threshold(rows, target_fa), "chosen_on": audio.source}
    manifest = out / f"{name}.json"
    write_text_atomic(manifest, json.dumps(manifest_dict(
        wake_word=student.wake_word, model_file=tflite.name, cutoff=chosen["threshold"], arena=arena,
        author=author, website=website, languages=list(languages)), indent=2) + "\n")
    report = out / f"{name}.hark.json"
    write_text_atomic(report, json.dumps({
        "checkpoint": str(student.path), "dataset": str(dataset),
        "parameters": count_parameters(student.model), "net": student.model.config.to_dict(),
        "size_bytes": len(flatbuffer), "tensor_arena_size": arena,
        "arena_note": "smallest arena that allocates and invokes in PyPI tflite-micro on this "
                      "(64-bit) host; a 32-bit ESP32 needs no more",
        "cutoff_chosen_on": audio.source, "negative_hours": audio.negative_hours,
        "positives": len(audio.regions), "chosen": chosen, "sweep": rows}, indent=2) + "\n")
    return EsphomeExport(tflite, manifest, report, len(flatbuffer), arena, chosen,
                         count_parameters(student.model))


DEVICE_YAML = """\
esphome:
  name: hark-micro-check

esp32:
  board: esp32-s3-devkitc-1
  framework:
    type: esp-idf

logger:

i2s_audio:
  - id: i2s_in
    i2s_lrclk_pin: GPIO5
    i2s_bclk_pin: GPIO6

microphone:
  - platform: i2s_audio
    id: mic
    i2s_audio_id: i2s_in
    adc_type: external
    i2s_din_pin: GPIO7

micro_wake_word:
  microphone: mic
  models:
    - model: {manifest}
"""
"""A minimal ESP32-S3 voice device (I2S microphone) that loads one micro_wake_word model."""


def esphome_config(manifest: Path, esphome: str = "esphome", workdir: Path | None = None
                   ) -> tuple[bool, str]:
    """Run `esphome config` (offline: validation only, no build, no download) on a device
    using `manifest`. Returns (valid, esphome's output)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        yaml = Path(tmp) / "device.yaml"
        yaml.write_text(DEVICE_YAML.format(manifest=Path(manifest).resolve()))
        try:
            result = subprocess.run([esphome, "config", str(yaml)], capture_output=True,
                                    text=True, timeout=300, cwd=tmp,
                                    env={**os.environ, "HOME": tmp})
        except FileNotFoundError as exc:
            raise MicroError(f"esphome not found ({exc}); pip install esphome (in a venv of "
                             "its own if its pins clash) and pass its path") from exc
    return result.returncode == 0, result.stdout + result.stderr


__all__ = ["ESPHOME_EXTRA_HINT", "esphome_config", "export_esphome", "require_extra"]
