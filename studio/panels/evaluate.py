"""Evaluation panel: run `hark eval` on a run's exported model, read its report (metrics and
threshold sweep per eval set), pick the threshold a target false-accept rate implies and
store it in the manifest, and score an uploaded or recorded clip over time.

    POST /api/eval                               {run, dataset, target_fa} -> the "eval" job
    GET  /api/eval/report?run=R                  metrics per set, sweep rows, thresholds
    GET  /api/eval/threshold?run=R&target_fa=X   the threshold X FA/h implies, FRR per set
    POST /api/eval/threshold                     {run, target_fa} -> stored in the manifest
    POST /api/eval/score                         multipart run=R, file=<audio> -> scores over time

The report is the eval_report.json `hark eval` writes into runs/R/export; the sweep rows
(threshold, frr, fa_per_hour, ...) are trainer.evaluate.sweep's, and every threshold is read
off them by trainer.thresholds, as `hark eval` reads it.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, jsonify, request

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE
from sentry.errors import SentryError
from sentry.manifest import load_manifest
from sentry.postprocess import HOP_SECONDS, detect_hops, smooth
from trainer.errors import TrainerError
from trainer.evaluate import REPORT_JSON, find_eval_sets
from trainer.model_card import write_model_card
from trainer.thresholds import (
    CHOOSE_ON,
    DEFAULT_TARGET_FA_PER_HOUR,
    choose_threshold,
    frr_at_fa_rate,
    row_at,
    threshold_chooser,
)

from ..context import get_studio
from ..errors import CONFLICT, NOT_FOUND, StudioError
from ..jobs import RUNNING_STATES, hark_argv
from ..workspace import named
from .export import export_folder

bp = Blueprint("evaluate", __name__, url_prefix="/api/eval")

PAYLOAD_TOO_LARGE = 413
MAX_SCORE_SECONDS = 600.0
"""Longest recording one score request takes: 10 minutes is 7,500 hops, a few seconds of
CPU; longer files belong to `hark-sentry scan` or the background miner."""
MAX_TARGET_FA_PER_HOUR = 1e6
"""Sanity bound on a typed target (false accepts per hour)."""
QUOTED_FA_RATES = ("0.5", "1.0")
"""Keys of a report's frr_at_fa: best FRR at <= 0.5 and <= 1 false accepts per hour."""
SCORE_DECIMALS = 5
DECODE_BLOCK_S = 10
"""Seconds of an upload decoded (and mixed down to mono) at a time."""


# ------------------------------------------------------------------ pure functions

def threshold_for_target(sets: Sequence[dict[str, Any]], target_fa_per_hour: float,
                         chosen_on: str = CHOOSE_ON) -> dict[str, Any]:
    """The threshold a target false-accept rate implies, and what it costs on every set.

    sets: [{"name", "sweep": [{"threshold", "frr" (0..1), "fa_per_hour", ...}]}], as in
        eval_report.json.
    target_fa_per_hour: false accepts per hour the threshold may not exceed (>= 0).
    chosen_on: the set whose sweep picks the threshold, by trainer.thresholds.choose_threshold
        as `hark eval` picks it (the first set not held out when none has that name; a
        held-out set is refused: never tune on the held-out voices).
    The threshold is the lowest FRR with FA/h <= target (if no row meets it, the fewest
    FA/h). Each set then reports its sweep row at that threshold and the best FRR it could
    reach alone at the target (None if never).
    Returns {"target_fa_per_hour", "threshold", "met", "chosen_on",
             "sets": {name: {"frr", "fa_per_hour", "missed", "best_frr_at_target"}}}.
    """
    if not math.isfinite(target_fa_per_hour) or not 0 <= target_fa_per_hour <= MAX_TARGET_FA_PER_HOUR:
        raise StudioError(f"target false accepts per hour must be a number from 0 to "
                          f"{MAX_TARGET_FA_PER_HOUR:g}, got {target_fa_per_hour}", code="bad_target")
    if not sets:
        raise StudioError("the evaluation report has no sets; evaluate again", code="bad_report")
    for s in sets:
        if not s.get("sweep"):
            raise StudioError(f"eval set {s.get('name')!r} has no threshold sweep; evaluate again",
                              code="bad_report")
    try:
        chosen = choose_threshold({s["name"]: s["sweep"] for s in sets}, target_fa_per_hour,
                                  chosen_on)
    except TrainerError as exc:
        raise StudioError(str(exc), code="bad_report") from exc
    threshold = float(chosen["threshold"])
    per_set = {}
    for s in sets:
        row = row_at(s["sweep"], threshold)
        per_set[s["name"]] = {"frr": float(row["frr"]), "fa_per_hour": float(row["fa_per_hour"]),
                              "missed": row.get("missed"),
                              "best_frr_at_target": frr_at_fa_rate(s["sweep"], target_fa_per_hour)}
    return {"target_fa_per_hour": float(target_fa_per_hour), "threshold": threshold,
            "met": bool(chosen["met"]), "chosen_on": chosen["chosen_on"], "sets": per_set}


def parse_target(value: Any) -> float:
    """A target FA/h from a form or query value; StudioError says what is wrong."""
    if value is None or value == "":
        return DEFAULT_TARGET_FA_PER_HOUR
    try:
        target = float(value)
    except (TypeError, ValueError):
        raise StudioError(f"target false accepts per hour: {value!r} is not a number",
                          code="bad_target") from None
    if not math.isfinite(target) or not 0 <= target <= MAX_TARGET_FA_PER_HOUR:
        raise StudioError(f"target false accepts per hour must be from 0 to "
                          f"{MAX_TARGET_FA_PER_HOUR:g}, got {value}", code="bad_target")
    return target


# ------------------------------------------------------------------ report

def load_report(folder: Path) -> dict[str, Any] | None:
    """eval_report.json of an export folder, or None when it was never evaluated."""
    path = folder / REPORT_JSON
    if not path.is_file():
        return None
    try:
        report = json.loads(path.read_text())
        sets = report["sets"]
        if not isinstance(sets, list) or not all(isinstance(s, dict) and "name" in s and
                                                 isinstance(s.get("sweep"), list) for s in sets):
            raise TypeError("'sets' must be a list of sets, each with a name and a sweep")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudioError(f"{path}: unreadable evaluation report ({exc}); evaluate again",
                          code="bad_report") from exc
    return report


def _needs_report(run: str | None) -> tuple[Path, dict[str, Any]]:
    folder = export_folder(run)
    report = load_report(folder)
    if report is None:
        raise StudioError(f"run {run!r} has not been evaluated yet: press Evaluate first",
                          status=NOT_FOUND, code="not_evaluated")
    return folder, report


def summarize(report: dict[str, Any], chosen_on: str = CHOOSE_ON) -> dict[str, Any]:
    """What the panel shows of a report: per-set metrics at the recommended threshold, the
    best FRR at 0.5 and 1 FA/h, and the sweep rows for the DET curve."""
    sets = report["sets"]
    threshold = report.get("operating_threshold")
    out = []
    for s in sets:
        row = row_at(s["sweep"], float(threshold)) if threshold is not None and s.get("sweep") else s
        frr_at = s.get("frr_at_fa") or {}
        out.append({"name": s["name"], "n_positive": s.get("n_positive"),
                    "negative_hours": s.get("negative_hours"), "frr": row.get("frr"),
                    "fa_per_hour": row.get("fa_per_hour"),
                    "frr_at_fa": {rate: frr_at.get(rate) for rate in QUOTED_FA_RATES},
                    "sweep": [{k: r[k] for k in ("threshold", "frr", "fa_per_hour")} for r in s["sweep"]]})
    try:
        picked = threshold_chooser([s["name"] for s in sets], chosen_on)
    except TrainerError:  # only held-out sets: none chose the threshold
        picked = None
    picker = next((s for s in sets if s["name"] == picked), {})
    target = (picker.get("recommendation") or {}).get("target_fa_per_hour")
    return {"operating_threshold": threshold, "target_fa_per_hour": target,
            "chosen_on": picker.get("name"), "sets": out}


# ------------------------------------------------------------------ endpoints

@bp.post("")
def start_eval():
    """Body {run, dataset, target_fa}: `hark eval runs/R/export --eval-root data/D/eval`."""
    body = request.get_json(silent=True) or {}
    folder = export_folder(body.get("run"))
    run = folder.parent.name
    dataset = named(get_studio().folder("data"), body.get("dataset") or "", "dataset")
    try:
        find_eval_sets(dataset / "eval")  # a missing set fails here, not minutes into a job
    except TrainerError as exc:
        raise StudioError(f"dataset {dataset.name!r} cannot be used for evaluation: {exc}",
                          code="no_eval_sets") from exc
    target = parse_target(body.get("target_fa"))
    studio = get_studio()
    job = studio.jobs.start("eval", hark_argv("eval", f"runs/{run}/export", "--eval-root",
                                              f"data/{dataset.name}/eval", "--target-fa", repr(target)),
                            title=f"evaluate {run} on {dataset.name}",
                            meta={"run": run, "dataset": dataset.name, "target_fa": target})
    return jsonify({"job": studio.jobs.describe(job)})


@bp.get("/report")
def report():
    """?run=R: {"run", "threshold" (the manifest's), "wake_word", "report": summary or null,
    "stale": the model was exported again after this evaluation}."""
    run = request.args.get("run")
    folder = export_folder(run)
    manifest = _load_manifest(folder)
    data = load_report(folder)
    stale = False
    if data is not None:
        model = folder / manifest.files.get("model", "model.onnx")
        stale = model.is_file() and model.stat().st_mtime > (folder / REPORT_JSON).stat().st_mtime
    return jsonify({"run": folder.parent.name, "threshold": manifest.threshold,
                    "wake_word": manifest.wake_word, "stale": stale,
                    "report": None if data is None else summarize(data)})


@bp.get("/threshold")
def pick_threshold():
    """?run=R&target_fa=X: threshold_for_target over R's report."""
    _, data = _needs_report(request.args.get("run"))
    return jsonify(threshold_for_target(data["sets"], parse_target(request.args.get("target_fa"))))


@bp.post("/threshold")
def store_threshold():
    """Body {run, target_fa}: the threshold that target implies becomes the manifest's
    threshold; the manifest's evaluation metrics follow it. Returns {before, after, pick}."""
    body = request.get_json(silent=True) or {}
    folder, data = _needs_report(body.get("run"))
    for kind in ("eval", "export"):  # both rewrite this manifest when they finish
        job = get_studio().jobs.current(kind)
        if job is not None and job.state in RUNNING_STATES and job.meta.get("run") == folder.parent.name:
            raise StudioError(f"an {kind} job is rewriting run {folder.parent.name!r}'s manifest; store "
                              "the threshold once it has finished", status=CONFLICT, code="busy")
    pick = threshold_for_target(data["sets"], parse_target(body.get("target_fa")))
    manifest = _load_manifest(folder)
    before = manifest.threshold
    manifest.threshold = pick["threshold"]
    evaluation = manifest.metrics.get("evaluation")
    evaluation = dict(evaluation) if isinstance(evaluation, dict) else {}
    evaluation.update(threshold=pick["threshold"], target_fa_per_hour=pick["target_fa_per_hour"],
                      threshold_chosen_on=pick["chosen_on"], threshold_set_in="studio")
    sets = evaluation.get("sets") if isinstance(evaluation.get("sets"), dict) else {}
    for name, at in pick["sets"].items():
        sets[name] = {**(sets.get(name) or {}), "frr": at["frr"], "fa_per_hour": at["fa_per_hour"]}
    evaluation["sets"] = sets
    manifest.metrics["evaluation"] = evaluation
    path = manifest.write(folder)  # temp file + rename: a reader never sees half a manifest
    write_model_card(folder)  # the card shows the stored threshold and what it measures
    return jsonify({"run": folder.parent.name, "before": before, "after": manifest.threshold,
                    "manifest": f"runs/{folder.parent.name}/{folder.name}/{path.name}", "pick": pick})


@bp.post("/score")
def score():
    """Multipart run=R, file=<audio, any rate and channel count, at most MAX_SCORE_SECONDS>:
    {"times_s", "scores", "smoothed", "threshold", "detections": [{time_s, score}],
     "seconds", "input": {sample_rate, channels, seconds}, "wake_word"}.
    Score i belongs to time (i + 1) * 80 ms; detections use the manifest's trigger settings."""
    folder = export_folder(request.form.get("run"))
    upload = request.files.get("file")
    if upload is None:
        raise StudioError("no audio file in the request: send it as the multipart field 'file'",
                          code="no_file")
    name = upload.filename or "upload"
    pcm, source = decode_audio(upload.read(), name)
    try:
        from sentry.detector import Detector
        detector = Detector(folder)
        scores = detector.score_pcm(pcm)
    except SentryError as exc:
        raise StudioError(f"cannot score with run {folder.parent.name!r}: {exc}",
                          code="bad_model") from exc
    settings = detector.settings
    smoothed = smooth(scores, settings.smoothing_hops)
    fired = detect_hops(smoothed, settings.threshold, settings.refractory_hops)
    times = (np.arange(scores.size) + 1) * HOP_SECONDS
    return jsonify({
        "run": folder.parent.name, "file": name, "wake_word": detector.wake_word,
        "threshold": settings.threshold, "seconds": pcm.size / SAMPLE_RATE, "input": source,
        "times_s": np.round(times, 3).tolist(), "scores": np.round(scores.astype(np.float64), SCORE_DECIMALS).tolist(),
        "smoothed": np.round(smoothed, SCORE_DECIMALS).tolist(),
        "detections": [{"time_s": round(float((h + 1) * HOP_SECONDS), 3),
                        "score": round(float(smoothed[h]), SCORE_DECIMALS)} for h in fired]})


def decode_audio(blob: bytes, name: str) -> tuple[np.ndarray, dict[str, Any]]:
    """Uploaded bytes (WAV, FLAC, OGG...; any rate and channel count) -> float32 16 kHz mono
    pcm and {"sample_rate" (Hz), "channels", "seconds"} of the original. The duration is
    checked from the header before anything is decoded, and channels are mixed down block
    by block, so a long multi-channel file never sits in memory whole."""
    import soundfile as sf

    from sentry.audio import resample

    if not blob:
        raise StudioError(f"{name}: the file is empty", code="not_audio")
    try:
        with sf.SoundFile(io.BytesIO(blob)) as audio:
            rate, channels, frames = audio.samplerate, audio.channels, audio.frames
            if frames <= 0 or rate <= 0:
                raise StudioError(f"{name}: the file holds no audio", code="not_audio")
            if frames / rate > MAX_SCORE_SECONDS:
                raise StudioError(f"{name} is {frames / rate / 60:.1f} minutes long; the studio scores at "
                                  f"most {MAX_SCORE_SECONDS / 60:.0f} minutes at a time: cut it, or scan the "
                                  "whole file with `hark-sentry scan`", status=PAYLOAD_TOO_LARGE,
                                  code="too_long")
            mono = np.concatenate([block.mean(axis=1) for block in audio.blocks(
                blocksize=DECODE_BLOCK_S * rate, dtype="float32", always_2d=True)])
    except StudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, TypeError, EOFError) as exc:
        reason = getattr(exc, "error_string", None) or str(exc)  # not "Error opening <BytesIO...>"
        raise StudioError(f"{name}: not an audio file the studio can read ({reason}); upload a WAV, "
                          "FLAC or OGG file", code="not_audio") from exc
    pcm = resample(mono, int(rate))
    if pcm.size < HOP_SAMPLES:
        raise StudioError(f"{name}: {pcm.size / SAMPLE_RATE:.2f} s of audio is too short to score; "
                          f"the model needs at least {HOP_SECONDS:.2f} s", code="too_short")
    return pcm.astype(np.float32, copy=False), {"sample_rate": int(rate), "channels": int(channels),
                                                 "seconds": round(mono.size / rate, 3)}


def _load_manifest(folder: Path):
    try:
        return load_manifest(folder)
    except SentryError as exc:
        raise StudioError(f"{exc}; export the run again", code="bad_manifest") from exc
