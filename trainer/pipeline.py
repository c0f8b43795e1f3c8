"""The main job, step by step: synthesize -> train -> export -> evaluate -> scan.

`hark run` calls `run_all`; each step is also its own CLI command. Steps whose output
already exists are reused, so an interrupted job picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from sentry.constants import SAMPLE_RATE
from sentry.manifest import load_manifest

from .audio import load_audio, write_wav
from .errors import TrainerError
from .evaluate import POSITIVE_DIR, EvalSet, evaluate_model_dir, match_detections, write_report
from .thresholds import DEFAULT_TARGET_FA_PER_HOUR, choose_threshold, row_at

log = logging.getLogger(__name__)

DEMO_PHRASES = 6
"""Wake words embedded in the generated demo recording."""


def synth_all(phrase: str, out: Path, *, positives: int | None = None, negatives: int | None = None,
              neighbours: int | None = None, with_eval: bool = True, eval_minutes: float = 60.0,
              seed: int = 0, overwrite: bool = False, progress: bool = True,
              engines: tuple[str, ...] | None = None, licence_clean: bool = False) -> dict[str, Any]:
    """Synthesize the dataset (and its eval sets). ``engines`` names the speech engines; None
    means espeak plus DECtalk and Pico where installed, while naming one requires it.
    ``licence_clean``: only engines whose licences allow commercial use of their output."""
    from .provenance import ENGINES, LICENCE_CLEAN_ENGINES
    from .synth.build import SynthConfig, engine_missing, synthesize_dataset
    from .synth.evalsets import synthesize_eval_sets
    settings = SynthConfig(seed=seed, licence_clean=licence_clean)
    if engines is not None:
        settings.engines = tuple(dict.fromkeys(("espeak", *engines)))
        unclear = [e for e in settings.engines if licence_clean and e not in LICENCE_CLEAN_ENGINES]
        if unclear:
            info = ENGINES[unclear[0]]
            raise TrainerError(f"--engine {unclear[0]} with --licence-clean: {info.name}'s licence is "
                               f"{info.licence} ({info.note}). Fix: leave out --engine {unclear[0]} "
                               "or --licence-clean")
        for engine in settings.engines:
            missing = engine_missing(engine)
            if missing:
                raise TrainerError(f"--engine {engine}: {missing[0]}. Fix: {missing[1]}, or "
                                   f"leave out --engine {engine}")
    for name, value in (("n_positive", positives), ("n_negative_speech", negatives),
                        ("n_neighbour", neighbours)):
        if value is not None:
            if value < 1:
                raise TrainerError(f"--{name}: must be at least 1, got {value}")
            setattr(settings, name, value)
    began = time.monotonic()
    dataset = synthesize_dataset(phrase, out, settings, progress=progress, overwrite=overwrite)
    summary = dataset.summary()
    if with_eval:
        synthesize_eval_sets(phrase, out, negative_minutes_espeak=eval_minutes,
                             negative_minutes_heldout=eval_minutes, seed=seed + 1, progress=progress)
    summary["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(summary, indent=2))
    return summary


def evaluate_and_report(model_dir: Path, eval_root: Path, *,
                        target_fa: float = DEFAULT_TARGET_FA_PER_HOUR, int8: bool = False,
                        out: Path | None = None, update_manifest: bool = True,
                        progress: bool = True) -> dict[str, Any]:
    """Evaluate every set under eval_root; print a table; store the threshold in the manifest."""
    reports = evaluate_model_dir(model_dir, eval_root, target_fa_per_hour=target_fa, int8=int8,
                                 progress=progress)
    chosen = choose_threshold({r.name: r.sweep for r in reports}, target_fa)
    threshold = float(chosen["threshold"])
    json_path, png_path = write_report(reports, out or model_dir, operating_threshold=threshold)
    summary: dict[str, Any] = {"threshold": threshold, "threshold_chosen_on": chosen["chosen_on"],
                               "target_fa_per_hour": target_fa, "sets": {},
                               "report": str(json_path), "det_curve": str(png_path),
                               "eval_root": str(eval_root)}
    print(f"\nthreshold {threshold:.3f} (chosen on '{summary['threshold_chosen_on']}' "
          f"for <= {target_fa} FA/h)")
    for report in reports:
        row = row_at(report.sweep, threshold)
        summary["sets"][report.name] = {
            "frr": row["frr"], "fa_per_hour": row["fa_per_hour"], "n_positive": report.n_positive,
            "negative_hours": report.negative_hours, "frr_at_0.5_fa_h": report.frr_at_fa.get("0.5"),
            "frr_at_1_fa_h": report.frr_at_fa.get("1.0")}
    print_eval_table(summary["sets"])
    print(f"report: {json_path}\nDET curve: {png_path}")
    if update_manifest:
        from .model_card import write_model_card
        manifest = load_manifest(model_dir)
        manifest.threshold = threshold
        manifest.metrics["evaluation"] = summary
        manifest.write(model_dir)
        write_model_card(model_dir, eval_root)  # the card shows what the manifest now says
    return summary


def print_eval_table(sets: dict[str, dict[str, Any]]) -> None:
    """One row per eval set: FRR and FA/h at the shipped threshold, best FRR at 0.5 / 1 FA/h."""
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.1f}%"
    print(f"{'set':<10} {'positives':>9} {'neg hours':>9} {'FRR':>7} {'FA/h':>7} "
          f"{'FRR@<=0.5FA/h':>14} {'FRR@<=1FA/h':>12}")
    for name, s in sets.items():
        print(f"{name:<10} {s['n_positive']:>9} {s['negative_hours']:>9.2f} {pct(s['frr']):>7} "
              f"{s['fa_per_hour']:>7.2f} {pct(s['frr_at_0.5_fa_h']):>14} {pct(s['frr_at_1_fa_h']):>12}")


def make_demo_recording(eval_set: Path, out_wav: Path, seed: int = 0) -> list[tuple[float, float]]:
    """A ~1 minute recording: held-out speech with DEMO_PHRASES wake words at known places."""
    rng = np.random.default_rng(seed)
    source = EvalSet(eval_set)
    clips = source.positive_paths
    if not clips:
        raise TrainerError(f"{eval_set / POSITIVE_DIR}: no clips for the demo recording")
    chosen = [clips[i] for i in rng.choice(len(clips), size=min(DEMO_PHRASES, len(clips)), replace=False)]
    chatter = source.negative_stream()
    parts, regions, cursor = [], [], 0
    for clip_path in chosen:
        start = int(rng.integers(0, max(1, len(chatter) - 8 * SAMPLE_RATE)))
        talk = chatter[start:start + int(rng.uniform(4, 8) * SAMPLE_RATE)]
        pause = np.zeros(int(0.6 * SAMPLE_RATE), dtype=np.float32)
        clip = load_audio(clip_path)
        parts += [talk, pause]
        cursor += len(talk) + len(pause)
        regions.append((cursor / SAMPLE_RATE, (cursor + len(clip)) / SAMPLE_RATE))
        parts += [clip, pause]
        cursor += len(clip) + len(pause)
    audio = np.concatenate(parts)
    write_wav(out_wav, audio)
    return regions


def _check_licence_clean(data_dir: Path, licence_clean: bool) -> None:
    """A reused dataset must have been synthesized as licence-clean as this run asks."""
    from .dataset import read_manifest
    provenance = read_manifest(data_dir).get("provenance") or {}
    recorded = bool(provenance.get("licence_clean", False))
    if recorded != licence_clean:
        raise TrainerError(f"{data_dir} was synthesized {'with' if recorded else 'without'} "
                           f"--licence-clean, this run asks {'for' if licence_clean else 'without'} "
                           f"it. Fix: add --fresh to rebuild the dataset, or "
                           f"{'add' if recorded else 'drop'} --licence-clean")


def run_all(phrase: str, workdir: Path, *, config_path: Path | None = None, fresh: bool = False,
            progress: bool = True, overrides: dict[str, Any] | None = None,
            licence_clean: bool = False, plugins: Any = None) -> dict[str, Any]:
    """The whole job; ``plugins`` (a PluginManager, default: the default one) serves both
    training and export, so the model is rebuilt by the manager that trained it."""
    from .config import load_config
    from .export import export_run
    from .loop import LAST, train
    from .plugins import PluginManager
    from .synth.text import normalise_phrase

    phrase = normalise_phrase(phrase)
    slug = phrase.replace(" ", "_")
    data_dir, run_dir = workdir / "data" / slug, workdir / "runs" / slug
    if fresh:
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)
    began = time.monotonic()
    timings: dict[str, float] = {}

    def step(name: str, t0: float) -> None:
        timings[name] = round(time.monotonic() - t0, 1)
        print(f"== {name} done in {timings[name]:.0f} s")

    t0 = time.monotonic()
    if (data_dir / "manifest.json").is_file() and (data_dir / "eval" / "manifest.json").is_file():
        _check_licence_clean(data_dir, licence_clean)
        print(f"== reusing dataset {data_dir} (use --fresh to rebuild)")
    else:
        print(f"== 1/5 synthesizing '{phrase}' into {data_dir}{' (licence-clean)' if licence_clean else ''}")
        synth_all(phrase, data_dir, overwrite=True, progress=progress, licence_clean=licence_clean)
    step("synthesize", t0)

    t0 = time.monotonic()
    config = load_config(config_path, {"wake_word": phrase, "data.dataset": str(data_dir),
                                       **(overrides or {})})
    resume = (run_dir / LAST).is_file()
    print(f"== 2/5 training {'(resuming) ' if resume else ''}in {run_dir}")
    plugins = plugins or PluginManager()
    result = train(config, run_dir, resume=resume, progress=progress, plugins=plugins)
    step("train", t0)

    t0 = time.monotonic()
    print("== 3/5 exporting to ONNX (fp32 + int8) with parity checks")
    model_dir, manifest = export_run(run_dir, plugins=plugins)
    step("export", t0)

    t0 = time.monotonic()
    print("== 4/5 evaluating on continuous audio (held-out voices)")
    evaluation = evaluate_and_report(model_dir, data_dir / "eval", target_fa=config.trigger.target_fa_per_hour,
                                     progress=progress)
    step("evaluate", t0)

    t0 = time.monotonic()
    print("== 5/5 sentry scan of a generated test recording (held-out flite/festival voices)")
    from sentry.detector import Detector
    demo = run_dir / "demo.wav"
    regions = make_demo_recording(data_dir / "eval" / "heldout", demo)
    detections = Detector(model_dir).scan_file(demo)
    # the demo's wake words lie seconds apart: a detection can hit at most one of them
    hits, _ = match_detections(np.sort([d.time_s for d in detections]), regions)
    for d in detections:
        print(f"   detection at {d.time_s:6.2f} s  score {d.score:.3f}")
    print(f"   {hits}/{len(regions)} wake words detected, "
          f"{len(detections) - hits} other detection(s), in {demo}")
    step("scan", t0)

    manifest = load_manifest(model_dir)
    return {"phrase": phrase, "model_dir": str(model_dir), "parameters": manifest.parameters,
            "int8_bytes": manifest.metrics["size_bytes"].get("model_int8"), "threshold": manifest.threshold,
            "evaluation": evaluation["sets"], "demo": {"file": str(demo), "wake_words": len(regions),
                                                      "detected": hits, "detections": len(detections)},
            "best_epoch": result.best_epoch, "seconds": timings,
            "total_seconds": round(time.monotonic() - began, 1)}
