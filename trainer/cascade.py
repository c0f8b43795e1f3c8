"""Cascade evaluation: the sentry alone versus the sentry with a judge, on the same audio.

Each evaluation set (eval_root/<set>/positive/*.wav and negative_stream.wav, as for
`hark eval`) is scored once by the sentry, exactly as `trainer.evaluate` does: the
positives laid end to end with gaps (`build_positive_stream`), the negative stream as
is, the sentry's own trigger turning scores into detections. Every detection's clip is
then cut as the device would cut it (`sentry.judge_client.clip_span`: the sentry's
1.5 s window plus 0.5 s of pre-roll before the detection, 0.24 s after) and scored by
the judge, in-process (sentry.scoring, as the judge scores, fast) or over HTTP (a running `hark-judge`).

The cascade keeps the detections the judge verifies. Both sides are matched to the
wake-word regions by the same rule as `hark eval`, so the two rows of the report are
directly comparable: FRR (missed wake words / all), FA/h (detections in the negative
stream per hour). Because judge scores are kept per detection, the report also sweeps
the judge's threshold (on the one grid, trainer.thresholds.DEFAULT_THRESHOLDS) at no
extra cost. `JudgedDetections` is that arithmetic, shared with the benchmarks.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np

from sentry.constants import HOP_SAMPLES
from sentry.judge_client import clip_span

from .errors import TrainerError
from .evaluate import (DEFAULT_TOLERANCE_S, Region, audio_hours, build_positive_stream,
                       detections_row, find_eval_sets)
from .thresholds import sweep_grid

REPORT_JSON = "cascade_report.json"


class Judge(Protocol):
    """Anything that scores a clip: float32 16 kHz mono pcm -> probability (0..1)."""

    threshold: float | None

    def score(self, pcm: np.ndarray) -> float: ...


class HttpJudge:
    """A running judge server asked over HTTP (sentry.judge_client, no policy fallback:
    an evaluation with an unreachable judge is an error, not a number)."""

    def __init__(self, url: str, key: str | None, timeout_s: float = 10.0) -> None:
        from sentry.errors import SentryError
        from sentry.judge_client import JudgeClient, Policy

        try:
            self.client = JudgeClient(url, key, timeout_s=timeout_s, policy=Policy.FAIL_CLOSED,
                                      device_id="hark-cascade-eval")
        except SentryError as exc:
            raise TrainerError(str(exc)) from exc
        self.threshold: float | None = None  # the server's, learnt from its first verdict

    def score(self, pcm: np.ndarray) -> float:
        verdict = self.client.verify_pcm(pcm)
        if verdict.source != "judge" or verdict.score is None:
            raise TrainerError(f"the judge at {self.client.url} gave no verdict ({verdict.error}); "
                               "check that `hark-judge serve` runs there and the key is right")
        self.threshold = verdict.threshold
        return float(verdict.score)


def cut_clip(stream: np.ndarray, time_s: float) -> np.ndarray:
    """The clip a device would send for a detection at `time_s` seconds of `stream`."""
    start, end = clip_span(time_s)
    return stream[max(start, 0):min(end, stream.size)]


@dataclass
class SideReport:
    """One side of the comparison (sentry alone, or sentry + judge) on one set."""

    frr: float
    """Missed wake words / all wake words (0..1)."""
    missed: int
    fa_per_hour: float
    false_accepts: int
    positive_stream_false_accepts: int
    """Detections outside every wake word of the positive stream (reported, not in FRR)."""


@dataclass
class CascadeSetReport:
    name: str
    n_positive: int
    negative_hours: float
    sentry_threshold: float
    judge_threshold: float | None
    sentry: SideReport
    cascade: SideReport
    fa_removed: float | None
    """Fraction (0..1) of the sentry's false accepts the judge rejected; None if it had none."""
    frr_added: float
    """cascade FRR - sentry FRR (0..1; the judge can only add misses)."""
    judge_calls: int
    judge_ms_mean: float
    judge_sweep: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class JudgedDetections:
    """A sentry's detections on one set, each with the judge's score of its clip: what a
    cascade keeps at any judge threshold follows without asking the judge again."""

    regions: Sequence[Region]
    """The positive stream's wake words, (start_s, end_s)."""
    positive_times: np.ndarray
    """Seconds into the positive stream of each detection there."""
    positive_scores: np.ndarray
    """The judge's score (0..1) of each positive-stream detection's clip."""
    negative_scores: np.ndarray
    """The judge's score of each negative-stream detection's clip (all false accepts)."""
    negative_hours: float
    tolerance_s: float = DEFAULT_TOLERANCE_S

    def at(self, judge_threshold: float | None) -> dict[str, float | int]:
        """`detections_row` of the detections the judge verifies (score >= judge_threshold);
        None keeps every detection: the sentry alone."""
        pos_times, n_neg = self.positive_times, int(self.negative_scores.size)
        if judge_threshold is not None:
            pos_times = pos_times[self.positive_scores >= judge_threshold]
            n_neg = int((self.negative_scores >= judge_threshold).sum())
        return detections_row(np.sort(pos_times), self.regions, n_neg, self.negative_hours,
                              self.tolerance_s)

    def sweep(self, thresholds: Sequence[float] | None = None) -> list[dict[str, float | int]]:
        """`at` each judge threshold (default the one grid), ascending, as rows keyed
        "judge_threshold"."""
        grid = sweep_grid(thresholds)
        return [{"judge_threshold": float(t), **self.at(float(t))} for t in grid]


def _detection_times(detector, pcm: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """Seconds of the detector's detections in ``pcm``, from its known scores when they fit."""
    hops = pcm.size // HOP_SAMPLES
    found = detector.detect_scores(scores) if scores is not None and len(scores) == hops \
        else detector.detect_pcm(pcm)
    return np.array([d.time_s for d in found], dtype=np.float64)


def evaluate_cascade_set(detector, judge: Judge, positives: Sequence[np.ndarray],
                         negative_stream: np.ndarray, *, judge_threshold: float | None = None,
                         rng: np.random.Generator | None = None, name: str = "eval",
                         tolerance_s: float = DEFAULT_TOLERANCE_S,
                         word_regions: Sequence[Region | None] | None = None,
                         sentry_scores: tuple[np.ndarray, np.ndarray] | None = None,
                         ) -> CascadeSetReport:
    """Sentry alone vs sentry + judge on one set.

    detector: a sentry.detector.Detector at the sentry's operating trigger settings.
    judge: scores each detection's clip. judge_threshold: verified when score >= it;
        default the judge's own threshold. word_regions: where the word lies in each
        clip (`trainer.evaluate.build_positive_stream`). sentry_scores: this detector's
        raw per-hop scores of (the positive stream built with the same rng, the negative
        stream), e.g. `SetReport.scores` from evaluating the same model: the audio is then
        not streamed again (scores of another length are ignored and recomputed).
    """
    started = time.perf_counter()
    rng = np.random.default_rng(0) if rng is None else rng
    negative_stream = np.asarray(negative_stream, dtype=np.float32).reshape(-1)
    hours = audio_hours(negative_stream.size)
    if hours <= 0:
        raise TrainerError(f"{name}: the negative stream is empty; give it an hour or so of "
                           "audio without the wake word")
    stream, regions = build_positive_stream(positives, rng, word_regions=word_regions)
    pos_times = _detection_times(detector, stream, sentry_scores and sentry_scores[0])
    neg_times = _detection_times(detector, negative_stream, sentry_scores and sentry_scores[1])

    judge_started = time.perf_counter()
    pos_scores = np.array([judge.score(cut_clip(stream, t)) for t in pos_times], np.float64)
    neg_scores = np.array([judge.score(cut_clip(negative_stream, t)) for t in neg_times],
                          np.float64)
    calls = pos_times.size + neg_times.size
    judge_ms = (time.perf_counter() - judge_started) * 1000.0 / max(calls, 1)

    threshold = judge_threshold if judge_threshold is not None else judge.threshold
    judged = JudgedDetections(regions, pos_times, pos_scores, neg_scores, hours, tolerance_s)
    sentry_side = SideReport(**judged.at(None))
    # no threshold means no detection was judged, so none was learnt: nothing to drop
    cascade_side = SideReport(**judged.at(threshold))
    fa_removed = (1.0 - cascade_side.false_accepts / sentry_side.false_accepts
                  if sentry_side.false_accepts else None)
    return CascadeSetReport(
        name=name, n_positive=len(regions), negative_hours=hours,
        sentry_threshold=float(detector.settings.threshold), judge_threshold=threshold,
        sentry=sentry_side, cascade=cascade_side, fa_removed=fa_removed,
        frr_added=cascade_side.frr - sentry_side.frr, judge_calls=int(calls),
        judge_ms_mean=judge_ms, judge_sweep=judged.sweep(), elapsed_s=time.perf_counter() - started)


def evaluate_cascade(sentry_dir: str | Path, eval_root: str | Path, *,
                     judge_dir: str | Path | None = None, judge_url: str | None = None,
                     judge_key: str | None = None, sentry_threshold: float | None = None,
                     judge_threshold: float | None = None, seed: int = 0,
                     progress: bool = True,
                     sentry_scores: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
                     ) -> list[CascadeSetReport]:
    """Run the cascade comparison on every set under `eval_root`.

    sentry_dir: the sentry's exported model. judge_dir: the judge's exported model
    (default the sentry's own), scored in-process; or judge_url (+ judge_key) to ask a
    running server instead. sentry_threshold: override the sentry's manifest threshold
    (a cascade usually runs its sentry lower, for recall). sentry_scores: set name ->
    `SetReport.scores` of an evaluation of this same sentry (fp32) with the same seed,
    so the sentry's audio is not scored twice.
    """
    if judge_dir is not None and judge_url is not None:
        raise TrainerError("give either a judge model folder or a judge URL, not both")
    sets = find_eval_sets(Path(eval_root))  # a typo fails before anything slow

    from tqdm import tqdm

    from sentry.detector import Detector
    from sentry.errors import SentryError

    try:
        detector = Detector(sentry_dir, threshold=sentry_threshold)
    except SentryError as exc:
        raise TrainerError(f"{sentry_dir}: cannot load the sentry model ({exc})") from exc
    judge: Judge
    if judge_url is not None:
        judge = HttpJudge(judge_url, judge_key)
    else:  # the judge's own clip score (sentry.scoring), without its server
        from sentry.scoring import ClipScorer, Graphs

        try:
            judge = ClipScorer(Graphs(judge_dir or sentry_dir))
        except SentryError as exc:
            raise TrainerError(f"cannot load the judge model: {exc}") from exc

    reports = []
    for eval_set in tqdm(sets, desc="cascade sets", unit="set", disable=not progress):
        reports.append(evaluate_cascade_set(
            detector, judge, eval_set.positives(), eval_set.negative_stream(),
            judge_threshold=judge_threshold, rng=np.random.default_rng(seed), name=eval_set.name,
            word_regions=eval_set.word_regions(),
            sentry_scores=(sentry_scores or {}).get(eval_set.name)))
    return reports


def write_cascade_report(reports: Sequence[CascadeSetReport], path: str | Path,
                         context: dict[str, Any]) -> Path:
    """Write the reports and how they were made (`context`: models, URL, options) as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**context, "sets": [r.to_dict() for r in reports]}
    path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    return path


def format_cascade_table(reports: Sequence[CascadeSetReport]) -> str:
    """A plain-text table: FRR and FA/h for the sentry alone and with the judge."""
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    header = (f"{'set':<10} {'wake words':>10} {'neg h':>6} | {'sentry FRR':>10} {'FA/h':>7} | "
              f"{'cascade FRR':>11} {'FA/h':>7} | {'FA removed':>10} {'FRR added':>9}")
    lines = [header, "-" * len(header)]
    for r in reports:
        lines.append(f"{r.name:<10} {r.n_positive:>10} {r.negative_hours:>6.2f} | "
                     f"{pct(r.sentry.frr):>10} {r.sentry.fa_per_hour:>7.2f} | "
                     f"{pct(r.cascade.frr):>11} {r.cascade.fa_per_hour:>7.2f} | "
                     f"{pct(r.fa_removed):>10} {100 * r.frr_added:>8.1f}p")
    return "\n".join(lines)
