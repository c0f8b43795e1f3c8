"""The main job, step by step: synthesize -> train -> mine -> train -> export -> evaluate -> scan.

`hark run` calls `run_all`; each step is also its own CLI command. Steps whose output
already exists are reused, so an interrupted job picks up where it stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sentry.constants import SAMPLE_RATE
from sentry.files import write_text_atomic
from sentry.manifest import load_manifest

from .audio import load_audio, write_wav
from .errors import TrainerError
from .evaluate import POSITIVE_DIR, EvalSet, evaluate_model_dir, match_detections, write_report
from .thresholds import DEFAULT_TARGET_FA_PER_HOUR, HELD_OUT_SETS, choose_threshold, row_at

log = logging.getLogger(__name__)

CALIB_FACTOR = 2.0
"""The calibration set holds this many times the other sets' negative minutes (2 h by
default): it sets the threshold, so it needs the finest false-accept counts."""

DEMO_PHRASES = 6
"""Wake words embedded in the generated demo recording."""


KOKORO_NAMED_SHARE = 0.15
"""Kokoro's share of the speech when `--engine kokoro` is named without `--kokoro-share`."""


def synth_all(phrase: str, out: Path, *, positives: int | None = None, negatives: int | None = None,
              neighbours: int | None = None, with_eval: bool = True, eval_minutes: float = 60.0,
              seed: int = 0, overwrite: bool = False, progress: bool = True,
              engines: tuple[str, ...] | None = None, licence_clean: bool = False,
              kokoro_share: float | None = None,
              sentence_share: float | None = None) -> dict[str, Any]:
    """Synthesize the dataset (and its eval sets). ``engines`` names the speech engines; None
    means espeak plus DECtalk and Pico where installed, while naming one requires it.
    ``licence_clean``: only engines whose licences allow commercial use of their output.
    ``kokoro_share`` (default 0, or KOKORO_NAMED_SHARE when ``engines`` names kokoro) and
    ``sentence_share``: see SynthConfig."""
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
    if kokoro_share is None and engines is not None and "kokoro" in engines:
        kokoro_share = KOKORO_NAMED_SHARE
    if kokoro_share:
        missing = engine_missing("kokoro")
        if missing:
            raise TrainerError(f"Kokoro asked for (share {kokoro_share:g}): {missing[0]}. Fix: "
                               f"{missing[1]}")
        settings.kokoro_share = kokoro_share
        settings.engines = tuple(dict.fromkeys((*settings.engines, "kokoro")))
    if sentence_share is not None:
        settings.sentence_share = sentence_share
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
                             negative_minutes_heldout=eval_minutes,
                             negative_minutes_calib=CALIB_FACTOR * eval_minutes, seed=seed + 1,
                             progress=progress)
    summary["seconds"] = round(time.monotonic() - began, 1)
    print(json.dumps(summary, indent=2))
    return summary


def evaluate_and_report(model_dir: Path, eval_root: Path, *,
                        target_fa: float = DEFAULT_TARGET_FA_PER_HOUR, int8: bool = False,
                        out: Path | None = None, update_manifest: bool = True,
                        progress: bool = True,
                        keep_scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate every set under eval_root; print a table; store the threshold in the manifest.

    keep_scores: a dict that receives each set's raw sentry scores (`SetReport.scores`), for
    `evaluate_cascade_and_report` on the same model."""
    reports = evaluate_model_dir(model_dir, eval_root, target_fa_per_hour=target_fa, int8=int8,
                                 progress=progress)
    if keep_scores is not None:
        keep_scores.update({r.name: r.scores for r in reports})
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
    picked = summary["sets"].get(summary["threshold_chosen_on"], {})
    for name in (n for n in summary["sets"] if n in HELD_OUT_SETS):
        s = summary["sets"][name]
        print(f"promise <= {target_fa:g} FA/h (on '{summary['threshold_chosen_on']}': "
              f"{picked.get('fa_per_hour', float('nan')):.2f} FA/h, FRR "
              f"{100 * picked.get('frr', float('nan')):.1f}%); measured on '{name}', never used to "
              f"choose: {s['fa_per_hour']:.2f} FA/h, FRR {100 * s['frr']:.1f}%")
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
    print(f"{'set':<17} {'positives':>9} {'neg hours':>9} {'FRR':>7} {'FA/h':>7} "
          f"{'FRR@<=0.5FA/h':>14} {'FRR@<=1FA/h':>12}")
    for name, s in sets.items():
        print(f"{name:<17} {s['n_positive']:>9} {s['negative_hours']:>9.2f} {pct(s['frr']):>7} "
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


def _complete_eval_sets(data_dir: Path, progress: bool) -> None:
    """Add the eval sets a dataset made before them lacks: the calibration set (it chooses
    the threshold) and the held-out voices' wake words inside sentences."""
    from .synth.defaults import EVAL_MINUTES
    from .synth.evalsets import synthesize_calibration_set, synthesize_sentence_set
    eval_root = data_dir / "eval"
    if not (eval_root / "calib" / "negative_stream.wav").is_file():
        print("   adding the calibration set (validation voices of the training engines)")
        synthesize_calibration_set(data_dir, minutes=CALIB_FACTOR * EVAL_MINUTES, progress=progress)
    if not (eval_root / "heldout_sentence" / "positive").is_dir():
        print("   adding the held-out in-sentence wake words")
        synthesize_sentence_set(data_dir, progress=progress)


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


RECIPE_FILE = "recipe.json"
"""What trained a run folder (recipe name and sizes): a rerun with another recipe refuses
to resume it rather than mix two recipes in one model."""


@dataclass(frozen=True)
class Recipe:
    """How `hark run` trains. The default ("mined"): a first round, its false accepts mined
    from hours of negative speech in the training voices, a second round that learns them
    (the shipped sentry), and the ensemble of both rounds as the judge. "quick": one round."""

    name: str = "mined"
    round1_epochs: int = 8
    """Epochs of the first round (its model only mines, and joins the judge)."""
    mine_minutes: float = 360.0
    """Minutes of negative speech in the training voices mined for false accepts."""
    mine_stream_minutes: float = 60.0
    """Minutes per stream file (the stream is written, mined and deleted file by file)."""
    mine_threshold: float = 0.3
    """Smoothed score at which the first round's activations count as false accepts."""
    judge_target_fa_per_hour: float = 0.1
    """False accepts per hour the cascade may reach on the calibration set."""
    cascade_sentry_fa_per_hour: float = 5.0
    """In the cascade the sentry runs at the threshold for this rate alone on the calibration
    set (it wakes the judge a few times an hour; the judge keeps the rest out)."""

    @property
    def mined(self) -> bool:
        return self.name == "mined"

    def to_dict(self) -> dict[str, Any]:
        """What trained the models (recorded in the run folder; evaluation settings are not)."""
        if not self.mined:
            return {"name": self.name}
        return {k: v for k, v in asdict(self).items() if k in TRAINING_FIELDS}


QUICK = Recipe(name="quick")
TRAINING_FIELDS = ("name", "round1_epochs", "mine_minutes", "mine_stream_minutes", "mine_threshold")


def round1_config(recipe: Recipe, config_path: Path | None, overrides: dict[str, Any],
                  seed: int):
    """Round 1's training config: the run's (``overrides`` on ``config_path``) with the
    recipe's round-1 epochs and the training seed + 1, so the two rounds start apart."""
    from .config import load_config
    return load_config(config_path, {**overrides, "train.epochs": recipe.round1_epochs,
                                     "train.seed": seed + 1})


def _claim_run_dir(run_dir: Path, recipe: Recipe) -> None:
    """Record the recipe in a new run folder; refuse one another recipe trained."""
    from .loop import LAST
    marker = run_dir / RECIPE_FILE
    wanted = recipe.to_dict()
    if marker.is_file():
        recorded = json.loads(marker.read_text(encoding="utf-8"))
    elif (run_dir / LAST).is_file():
        recorded = QUICK.to_dict()  # run folders made before recipes were recorded: one round
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(marker, json.dumps(wanted, indent=1))
        return
    recorded = {k: v for k, v in recorded.items() if k in TRAINING_FIELDS}
    if recorded != wanted:
        other = "--quick" if recorded.get("name") == "quick" else "the default recipe"
        raise TrainerError(f"{run_dir} was trained by another recipe ({recorded}), this run asks "
                           f"for {wanted}. Fix: add --fresh to start again, or rerun with {other}")


def _mine_round(data_dir: Path, run_dir: Path, model_dir: Path, recipe: Recipe,
                progress: bool) -> dict[str, Any]:
    """Mine the first round's false accepts from negative streams in the training voices into
    the dataset (hard_negative/mined/); resumable, and a finished round is not redone."""
    from .mining.feedback import mine_false_accepts
    from .synth.evalsets import synthesize_training_stream
    folder = run_dir / "mining"
    done = folder / "done.json"
    if done.is_file():
        result = json.loads(done.read_text(encoding="utf-8"))
        print(f"   reusing the mining round: {result['confirmed']} false accepts in the dataset")
        return result
    folder.mkdir(parents=True, exist_ok=True)
    n_files = max(1, int(np.ceil(recipe.mine_minutes / recipe.mine_stream_minutes)))
    minutes = recipe.mine_minutes / n_files
    totals: dict[str, Any] = {"confirmed": 0, "hits": 0, "audio_s": 0.0, "streams": n_files}
    for k in range(n_files):
        session = folder / f"round1_{k:02d}.json"
        stream = folder / f"stream_{k:02d}.wav"
        if not session.is_file():
            partial = stream.with_suffix(".partial.wav")
            synthesize_training_stream(data_dir, partial, minutes=minutes, seed=1000 + k,
                                       progress=progress)
            partial.replace(stream)
        counts = mine_false_accepts(session, model_dir, [stream], data_dir,
                                    threshold=recipe.mine_threshold, progress=progress)
        stream.unlink(missing_ok=True)  # ~115 MB an hour; the hits' clips stay in the dataset
        for key in ("confirmed", "hits", "audio_s"):
            totals[key] += counts[key]
        totals["threshold"] = counts["threshold"]
    print(f"   {totals['confirmed']} false accepts in {totals['audio_s'] / 3600:.1f} h of negative "
          f"speech now in {data_dir / 'hard_negative' / 'mined'}")
    write_text_atomic(done, json.dumps(totals, indent=1))
    return totals


def _judge_threshold(reports: list[Any], target: float) -> dict[str, Any]:
    """The judge threshold chosen on the cascade's calibration sweep (as the sentry's)."""
    sweeps = {r.name: [{**row, "threshold": row["judge_threshold"]} for row in r.judge_sweep]
              for r in reports}
    return choose_threshold(sweeps, target)


def evaluate_cascade_and_report(sentry_dir: Path, judge_dir: Path, eval_root: Path, *,
                                target_fa: float, sentry_target_fa: float,
                                progress: bool = True,
                                sentry_scores: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sentry + judge on every set. In a cascade the sentry runs lower than alone, for
    recall: at the threshold the calibration set gives for `sentry_target_fa` FA/h (read off
    the sentry's own eval report); the judge's threshold is then chosen on the calibration
    set for <= `target_fa` FA/h. Both are stored in the judge's manifest. sentry_scores:
    what `evaluate_and_report(keep_scores=...)` kept for this sentry (saves streaming the
    audio again)."""
    from .cascade import evaluate_cascade, write_cascade_report
    from .evaluate import REPORT_JSON
    report = json.loads((sentry_dir / REPORT_JSON).read_text(encoding="utf-8"))
    sentry_pick = choose_threshold({s["name"]: s["sweep"] for s in report["sets"]}, sentry_target_fa)
    sentry_threshold = float(sentry_pick["threshold"])
    reports = evaluate_cascade(sentry_dir, eval_root, judge_dir=judge_dir,
                               sentry_threshold=sentry_threshold, progress=progress,
                               sentry_scores=sentry_scores)
    chosen = _judge_threshold(reports, target_fa)
    threshold = float(chosen["threshold"])
    sets = {}
    for r in reports:
        row = row_at(r.judge_sweep, threshold, key="judge_threshold")
        sets[r.name] = {"n_positive": r.n_positive, "negative_hours": r.negative_hours,
                        "sentry_frr": r.sentry.frr, "sentry_fa_per_hour": r.sentry.fa_per_hour,
                        "frr": row["frr"], "fa_per_hour": row["fa_per_hour"],
                        "false_accepts": row["false_accepts"]}
    context = {"sentry": str(sentry_dir), "judge": str(judge_dir),
               "sentry_threshold": sentry_threshold, "sentry_target_fa_per_hour": sentry_target_fa,
               "judge_threshold": threshold, "chosen_on": chosen["chosen_on"],
               "target_fa_per_hour": target_fa}
    path = write_cascade_report(reports, judge_dir / "cascade_report.json", context)
    manifest = load_manifest(judge_dir)
    manifest.threshold = threshold
    manifest.metrics["cascade"] = {**context, "threshold": threshold, "sets": sets,
                                   "report": str(path)}
    manifest.write(judge_dir)
    print(f"\ncascade: sentry at {sentry_threshold:.3f} (<= {sentry_target_fa:g} FA/h alone on "
          f"'{sentry_pick['chosen_on']}'), judge at {threshold:.3f} (chosen on "
          f"'{chosen['chosen_on']}' for the cascade at <= {target_fa:g} FA/h): "
          f"hark-sentry listen --model {sentry_dir} --threshold {sentry_threshold:.3f} "
          f"--judge-url URL; hark-judge serve --model {judge_dir}")
    print(f"{'set':<17} {'sentry FRR':>10} {'FA/h':>6} | {'cascade FRR':>11} {'FA/h':>6}")
    for name, s in sets.items():
        print(f"{name:<17} {100 * s['sentry_frr']:>9.1f}% {s['sentry_fa_per_hour']:>6.2f} | "
              f"{100 * s['frr']:>10.1f}% {s['fa_per_hour']:>6.2f}")
    return {"threshold": threshold, "sentry_threshold": sentry_threshold,
            "chosen_on": chosen["chosen_on"], "sets": sets, "report": str(path)}


def run_all(phrase: str, workdir: Path, *, config_path: Path | None = None, fresh: bool = False,
            progress: bool = True, overrides: dict[str, Any] | None = None,
            licence_clean: bool = False, plugins: Any = None,
            recipe: Recipe = Recipe()) -> dict[str, Any]:
    """The whole job; ``plugins`` (a PluginManager, default: the default one) serves both
    training and export, so the model is rebuilt by the manager that trained it. ``recipe``:
    the default mines the first round's false accepts and trains again (see Recipe);
    QUICK trains one round and ships no judge."""
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
    names = (["synthesize", "train round 1", "mine false accepts", "train round 2",
              "export sentry + judge", "evaluate sentry", "evaluate cascade", "scan"]
             if recipe.mined else ["synthesize", "train", "export", "evaluate", "scan"])
    started: dict[str, float] = {}

    def begin(name: str, what: str) -> None:
        started[name] = time.monotonic()
        print(f"== {names.index(name) + 1}/{len(names)} {what}")

    def step(name: str) -> None:
        timings[name] = round(time.monotonic() - started[name], 1)
        print(f"== {name} done in {timings[name]:.0f} s")

    begin("synthesize", f"synthesizing '{phrase}' into {data_dir}"
          f"{' (licence-clean)' if licence_clean else ''}")
    if (data_dir / "manifest.json").is_file() and (data_dir / "eval" / "manifest.json").is_file():
        _check_licence_clean(data_dir, licence_clean)
        print(f"   reusing dataset {data_dir} (use --fresh to rebuild)")
        _complete_eval_sets(data_dir, progress)
    else:
        synth_all(phrase, data_dir, overwrite=True, progress=progress, licence_clean=licence_clean)
    step("synthesize")

    config = load_config(config_path, {"wake_word": phrase, "data.dataset": str(data_dir),
                                       **(overrides or {})})
    plugins = plugins or PluginManager()
    _claim_run_dir(run_dir, recipe)
    rounds: dict[str, Any] = {}
    if recipe.mined:
        first_dir = run_dir / "round1"
        begin("train round 1", f"training round 1 ({recipe.round1_epochs} epochs) in {first_dir}")
        first = round1_config(recipe, config_path, {"wake_word": phrase,
                                                    "data.dataset": str(data_dir),
                                                    **(overrides or {})}, config.train.seed)
        if (first_dir / "export" / "manifest.json").is_file():
            print(f"   reusing round 1 ({first_dir / 'export'})")
        else:
            train(first, first_dir, resume=(first_dir / LAST).is_file(), progress=progress,
                  plugins=plugins)
            export_run(first_dir, plugins=plugins)
        step("train round 1")
        begin("mine false accepts", f"mining round 1's false accepts from "
              f"{recipe.mine_minutes / 60:g} h of negative speech in the training voices")
        rounds["mining"] = _mine_round(data_dir, run_dir, first_dir / "export", recipe, progress)
        step("mine false accepts")
        train_step = "train round 2"
    else:
        train_step = "train"
    resume = (run_dir / LAST).is_file()
    begin(train_step, f"training {'round 2, with the mined false accepts, ' if recipe.mined else ''}"
                      f"{'(resuming) ' if resume else ''}in {run_dir}")
    result = train(config, run_dir, resume=resume, progress=progress, plugins=plugins)
    step(train_step)

    export_step = "export sentry + judge" if recipe.mined else "export"
    begin(export_step, "exporting to ONNX (fp32 + int8) with parity checks")
    model_dir, manifest = export_run(run_dir, plugins=plugins)
    judge_dir = None
    if recipe.mined:
        from .ensemble import build_ensemble
        judge_dir, _ = build_ensemble([run_dir / "round1" / "export", model_dir], run_dir / "judge")
        print(f"   judge (ensemble of both rounds): {judge_dir}")
    step(export_step)

    evaluate_step = "evaluate sentry" if recipe.mined else "evaluate"
    begin(evaluate_step, "evaluating the sentry on continuous audio")
    scores: dict[str, Any] = {}
    evaluation = evaluate_and_report(model_dir, data_dir / "eval",
                                     target_fa=config.trigger.target_fa_per_hour, progress=progress,
                                     keep_scores=scores)
    step(evaluate_step)

    cascade = None
    if judge_dir is not None:
        begin("evaluate cascade", "evaluating sentry + judge on continuous audio")
        cascade = evaluate_cascade_and_report(model_dir, judge_dir, data_dir / "eval",
                                              target_fa=recipe.judge_target_fa_per_hour,
                                              sentry_target_fa=recipe.cascade_sentry_fa_per_hour,
                                              progress=progress, sentry_scores=scores)
        step("evaluate cascade")

    begin("scan", "sentry scan of a generated test recording (held-out flite/festival voices)")
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
    step("scan")

    manifest = load_manifest(model_dir)
    total = round(time.monotonic() - began, 1)
    print("\n== timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
          + f"; total {total / 60:.1f} min")
    return {"phrase": phrase, "recipe": recipe.to_dict(), "model_dir": str(model_dir),
            "judge_dir": str(judge_dir) if judge_dir else None,
            "parameters": manifest.parameters,
            "int8_bytes": manifest.metrics["size_bytes"].get("model_int8"), "threshold": manifest.threshold,
            "threshold_chosen_on": evaluation["threshold_chosen_on"],
            "evaluation": evaluation["sets"], "cascade": cascade, **rounds,
            "demo": {"file": str(demo), "wake_words": len(regions),
                     "detected": hits, "detections": len(detections)},
            "best_epoch": result.best_epoch, "seconds": timings, "total_seconds": total}
