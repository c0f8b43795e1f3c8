"""Accuracy on continuous audio: false rejects, false accepts per hour, threshold sweep.

A wake-word model is never judged clip by clip here. Positive clips are laid end to
end with gaps into one stream, negatives are one long stream, both are scored hop by
hop exactly as the sentry streams, and the sentry's own trigger logic
(`sentry.postprocess`: smoothing, threshold, refractory period) turns scores into
detections. The numbers are therefore the ones a device will show: a missed wake word
is a false reject, a detection in the negative stream is a false accept.

Scores are one per hop (HOP_SECONDS = 80 ms); score i belongs to time (i + 1) * 80 ms.

The evaluation API, one copy of each piece:
- eval sets under an eval root: `find_eval_sets` -> `EvalSet` (clips, negative stream, and
  where the word lies in clips that hold more speech: `EvalSet.word_regions`);
- streams and matching: `build_positive_stream`, `match_detections` (DEFAULT_TOLERANCE_S);
- the trigger sweep on the one grid: `sweep`; rows of detections: `detections_row`;
- reading rows (grid, row at a threshold, recommendation, which set chooses):
  `trainer.thresholds`;
- the judge-threshold sweep of a cascade: `trainer.cascade.JudgedDetections`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from sentry.constants import HOP_SAMPLES, SAMPLE_RATE
from sentry.postprocess import HOP_SECONDS, TriggerSettings, detect, detect_hops, smooth

from .audio import snr_gain
from .errors import TrainerError
from .thresholds import (DEFAULT_TARGET_FA_PER_HOUR, frr_at_fa_rate, recommend_threshold, row_at,
                         sweep_grid)

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""float32 16 kHz mono pcm [n_samples] -> one score (0..1) per 80 ms hop."""

Region = tuple[float, float]
"""(start_s, end_s) of one wake word in a positive stream, seconds from its start."""

SECONDS_PER_HOUR = 3600.0

DEFAULT_TOLERANCE_S = 0.5
"""Seconds after a clip's end a detection may still land and count as a hit: the
smoothing and the classifier's 1.5 s window make a detector fire a little late."""

DEFAULT_GAP_S = (2.5, 4.0)
"""Seconds of gap between positive clips, drawn uniformly: longer than the default
2 s refractory period, so one wake word's detection never blocks the next one's."""

REPORTED_FA_RATES = (0.5, 1.0)
"""False accepts per hour at which each report quotes the best achievable FRR."""

REPORT_JSON = "eval_report.json"
REPORT_PNG = "det_curve.png"

POSITIVE_DIR = "positive"
NEGATIVE_STREAM = "negative_stream.wav"
REGIONS_JSON = "regions.json"
"""In POSITIVE_DIR: {"clip.wav": [start_s, end_s]}, where the wake word lies in a clip that
also holds other speech (a sentence before it, a command after it)."""


def build_positive_stream(clips: Sequence[np.ndarray], rng: np.random.Generator,
                          gap_s: tuple[float, float] = DEFAULT_GAP_S,
                          background: np.ndarray | None = None,
                          snr_db: float | None = None, *,
                          word_regions: Sequence[Region | None] | None = None,
                          ) -> tuple[np.ndarray, list[Region]]:
    """Lay positive clips end to end, with a gap before the first and after the last.

    clips: float32 16 kHz mono pcm, one wake word each.
    word_regions: optional, one per clip: (start_s, end_s) of the wake word inside the clip,
        or None for a clip that is the wake word alone. A clip with a region contributes only
        that region, so a detection on the speech around the word is outside every region.
    gap_s: (min, max) seconds of gap, drawn uniformly per gap.
    background: optional noise pcm, tiled or cropped to the stream's length and mixed
        under the whole stream (gaps and wake words alike, as in a real room) so that
        the clips' mean RMS is `snr_db` dB above the noise's RMS. Without it gaps are
        digital silence.
    Returns (stream float32 in [-1, 1], regions [(start_s, end_s)] of each clip).
    """
    if not clips:
        raise TrainerError("build_positive_stream: no positive clips given; "
                           "pass at least one wake-word recording")
    lo, hi = gap_s
    if not 0 <= lo <= hi:
        raise TrainerError(f"build_positive_stream: gap_s must be (min, max) seconds with "
                           f"0 <= min <= max, got {gap_s}")
    if (background is None) != (snr_db is None):
        raise TrainerError("build_positive_stream: background noise and snr_db go together; "
                           "give both or neither")
    if word_regions is not None and len(word_regions) != len(clips):
        raise TrainerError(f"build_positive_stream: {len(word_regions)} word regions for "
                           f"{len(clips)} clips; give one (or None) per clip")

    pieces: list[np.ndarray] = []
    regions: list[Region] = []
    cursor = 0  # samples written so far

    def gap() -> None:
        nonlocal cursor
        n = int(round(rng.uniform(lo, hi) * SAMPLE_RATE))
        pieces.append(np.zeros(n, dtype=np.float32))
        cursor += n

    for i, clip in enumerate(clips):
        clip = np.asarray(clip, dtype=np.float32).reshape(-1)
        gap()
        word = word_regions[i] if word_regions is not None else None
        if word is None:
            regions.append((cursor / SAMPLE_RATE, (cursor + clip.size) / SAMPLE_RATE))
        else:
            start, end = _checked_region(word, clip.size, i)
            regions.append((cursor / SAMPLE_RATE + start, cursor / SAMPLE_RATE + end))
        pieces.append(clip)
        cursor += clip.size
    gap()
    stream = np.concatenate(pieces)

    if background is not None:
        stream = _mix_background(stream, clips, np.asarray(background, dtype=np.float32),
                                 float(snr_db))
    return np.clip(stream, -1.0, 1.0).astype(np.float32), regions


def _checked_region(region: Region, n_samples: int, index: int) -> Region:
    start, end = float(region[0]), float(region[1])
    # a region rounded to the sample may end a hair past the clip's last sample
    if not 0.0 <= start < end <= n_samples / SAMPLE_RATE + 1.0 / SAMPLE_RATE:
        raise TrainerError(f"build_positive_stream: clip {index}'s word region ({start}, {end}) s "
                           f"is not inside the clip (0 to {n_samples / SAMPLE_RATE:.3f} s)")
    return start, end


def _mix_background(stream: np.ndarray, clips: Sequence[np.ndarray], background: np.ndarray,
                    snr_db: float) -> np.ndarray:
    background = background.reshape(-1)
    noise_rms = float(np.sqrt(np.mean(np.square(background, dtype=np.float64)))) \
        if background.size else 0.0
    if noise_rms == 0.0:
        raise TrainerError("build_positive_stream: background noise is empty or silent; "
                           "give a recording with some noise in it, or no background")
    reps = -(-stream.size // background.size)  # ceiling division
    noise = np.tile(background, reps)[: stream.size]
    speech_rms = float(np.mean([np.sqrt(np.mean(np.square(np.asarray(c, np.float64))))
                                for c in clips]))
    return stream + snr_gain(speech_rms, noise_rms, snr_db) * noise


def match_detections(times: np.ndarray, regions: Sequence[Region],
                     tolerance_s: float = DEFAULT_TOLERANCE_S) -> tuple[int, int]:
    """(regions hit, detections outside every region) for sorted detection times (seconds).

    A detection hits region k when start_k <= t <= end_k + tolerance_s; it hits the
    earliest such region not already hit, so it can hit only one. A second detection
    inside an already-hit region is neither a hit nor a false accept (the refractory
    period normally prevents it).
    """
    if not regions:
        return 0, int(times.size)
    starts = np.array([r[0] for r in regions])
    ends = np.array([r[1] for r in regions]) + tolerance_s
    hit = np.zeros(len(regions), dtype=bool)
    outside = 0
    for t in times:
        inside = np.flatnonzero((starts <= t) & (t <= ends))
        if inside.size == 0:
            outside += 1
            continue
        free = inside[~hit[inside]]
        if free.size:
            hit[free[0]] = True
    return int(hit.sum()), outside


def frr_at(scores: np.ndarray, regions: Sequence[Region], settings: TriggerSettings,
           tolerance_s: float = DEFAULT_TOLERANCE_S) -> tuple[float, int, int]:
    """False reject rate of a positive stream's per-hop scores: (frr 0..1, missed, total)."""
    if not regions:
        raise TrainerError("frr_at: no wake-word regions; "
                           "a positive stream needs at least one clip")
    hits, _ = match_detections(detect(scores, settings), regions, tolerance_s)
    missed = len(regions) - hits
    return missed / len(regions), missed, len(regions)


def false_accepts(scores: np.ndarray, settings: TriggerSettings) -> int:
    """Detections in a negative stream's per-hop scores (every one is a false accept)."""
    return int(detect(scores, settings).size)


def stream_hours(n_scores: int) -> float:
    """Hours of audio covered by `n_scores` hops."""
    return n_scores * HOP_SECONDS / SECONDS_PER_HOUR


def audio_hours(n_samples: int) -> float:
    """Hours of 16 kHz audio in `n_samples` samples."""
    return n_samples / SAMPLE_RATE / SECONDS_PER_HOUR


def fa_per_hour(count: int, n_scores: int) -> float:
    """False accepts per hour of a negative stream that produced `n_scores` hops."""
    hours = stream_hours(n_scores)
    if hours <= 0:
        raise TrainerError("fa_per_hour: the negative stream is empty; it needs at least one "
                           f"hop ({HOP_SAMPLES} samples) of audio")
    return count / hours


def detections_row(pos_times: np.ndarray, regions: Sequence[Region], n_false_accepts: int,
                   hours: float, tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict[str, float | int]:
    """What one set of detections scores: frr (0..1), missed, fa_per_hour, false_accepts and
    positive_stream_false_accepts (detections outside every wake word; not in FRR or FA/h).

    pos_times: sorted detection times (seconds) in the positive stream; n_false_accepts:
    detections in `hours` of negative audio.
    """
    hits, pos_fa = match_detections(pos_times, regions, tolerance_s)
    missed = len(regions) - hits
    return {"frr": missed / len(regions), "missed": missed, "fa_per_hour": n_false_accepts / hours,
            "false_accepts": n_false_accepts, "positive_stream_false_accepts": pos_fa}


def sweep(pos_scores: np.ndarray, regions: Sequence[Region], neg_scores: np.ndarray,
          duration_h: float | None = None, thresholds: Sequence[float] | None = None,
          smoothing_hops: int = 3, refractory_s: float = 2.0,
          tolerance_s: float = DEFAULT_TOLERANCE_S) -> list[dict[str, float | int]]:
    """FRR and FA/h at each threshold (default the one grid, trainer.thresholds), ascending.

    duration_h: hours of negative audio; default the hours `neg_scores` covers.
    Each row: threshold, then `detections_row`'s fields.
    Both streams are smoothed once; each threshold then only re-runs the trigger.
    """
    if not regions:
        raise TrainerError("sweep: no wake-word regions; a positive stream needs at least one clip")
    hours = stream_hours(len(neg_scores)) if duration_h is None else float(duration_h)
    if hours <= 0:
        raise TrainerError("sweep: the negative stream is empty; "
                           "give at least some seconds of audio")
    grid = sweep_grid(thresholds)
    # TriggerSettings validates the arguments and rounds seconds to hops as the sentry does
    refractory_hops = TriggerSettings(smoothing_hops=smoothing_hops,
                                      refractory_s=refractory_s).refractory_hops
    pos_smooth = smooth(pos_scores, smoothing_hops)
    neg_smooth = smooth(neg_scores, smoothing_hops)
    rows: list[dict[str, float | int]] = []
    for threshold in grid:
        pos_times = (detect_hops(pos_smooth, threshold, refractory_hops) + 1) * HOP_SECONDS
        n_fa = int(detect_hops(neg_smooth, threshold, refractory_hops).size)
        rows.append({"threshold": round(float(threshold), 6),
                     **detections_row(pos_times, regions, n_fa, hours, tolerance_s)})
    return rows


@dataclass
class SetReport:
    """One evaluation set's results (one folder of eval_root, or one constructed set)."""

    name: str
    n_positive: int
    negative_hours: float
    settings: TriggerSettings
    frr: float
    """False reject rate (0..1) at `settings`."""
    missed: int
    fa_per_hour: float
    """False accepts per hour of negative audio at `settings`."""
    false_accepts: int
    positive_stream_false_accepts: int
    recommendation: dict[str, Any]
    frr_at_fa: dict[str, float | None]
    """Best FRR reachable at each of REPORTED_FA_RATES, keyed like "0.5"."""
    sweep: list[dict[str, Any]] = field(default_factory=list)
    elapsed_s: float = 0.0
    scores: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)
    """Raw per-hop scores of (positive stream, negative stream), kept so a cascade run on the
    same model and set need not stream the audio again; not written to the report."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(replace(self, scores=None))  # the kept scores stay out of the report
        out.pop("scores")
        out["settings"] = asdict(self.settings)
        return out


def _scores(score_fn: ScoreFn, pcm: np.ndarray, what: str) -> np.ndarray:
    scores = np.asarray(score_fn(pcm), dtype=np.float64)
    expected = pcm.size / HOP_SAMPLES
    if scores.ndim != 1 or abs(scores.size - expected) > 1:
        raise TrainerError(f"{what}: the score function returned shape {scores.shape} for "
                           f"{pcm.size} samples; it must return one score per {HOP_SAMPLES}-sample "
                           f"hop (about {expected:.0f})")
    if not np.all(np.isfinite(scores)):
        raise TrainerError(f"{what}: the score function returned NaN or infinite scores; "
                           "check the model export")
    return scores


def evaluate_set(score_fn: ScoreFn, positives: Sequence[np.ndarray], negative_stream: np.ndarray,
                 settings: TriggerSettings,
                 target_fa_per_hour: float = DEFAULT_TARGET_FA_PER_HOUR,
                 rng: np.random.Generator | None = None, name: str = "eval", *,
                 tolerance_s: float = DEFAULT_TOLERANCE_S,
                 thresholds: Sequence[float] | None = None,
                 word_regions: Sequence[Region | None] | None = None) -> SetReport:
    """Score a positive stream built from `positives` and `negative_stream`, then measure.

    positives: wake-word clips, float32 16 kHz mono. negative_stream: float32 16 kHz
    mono audio that never contains the wake word (an hour or so for a useful FA/h).
    word_regions: where the word lies in each clip (`build_positive_stream`), e.g.
    `EvalSet.word_regions()`; default every clip is the word alone.
    """
    started = time.perf_counter()
    rng = np.random.default_rng(0) if rng is None else rng
    negative_stream = np.asarray(negative_stream, dtype=np.float32).reshape(-1)
    if negative_stream.size < HOP_SAMPLES:
        raise TrainerError(f"{name}: the negative stream has {negative_stream.size} samples; "
                           "it needs at least one hop, and an hour of audio for a "
                           "trustworthy FA/h")
    stream, regions = build_positive_stream(positives, rng, word_regions=word_regions)
    pos_scores = _scores(score_fn, stream, f"{name} positive stream")
    neg_scores = _scores(score_fn, negative_stream, f"{name} negative stream")

    frr, missed, _ = frr_at(pos_scores, regions, settings, tolerance_s)
    _, pos_fa = match_detections(detect(pos_scores, settings), regions, tolerance_s)
    n_fa = false_accepts(neg_scores, settings)
    rows = sweep(pos_scores, regions, neg_scores, thresholds=thresholds,
                 smoothing_hops=settings.smoothing_hops, refractory_s=settings.refractory_s,
                 tolerance_s=tolerance_s)
    return SetReport(
        name=name, n_positive=len(regions), negative_hours=stream_hours(neg_scores.size),
        settings=settings, frr=frr, missed=missed,
        fa_per_hour=fa_per_hour(n_fa, neg_scores.size), false_accepts=n_fa,
        positive_stream_false_accepts=pos_fa,
        recommendation=recommend_threshold(rows, target_fa_per_hour),
        frr_at_fa={str(rate): frr_at_fa_rate(rows, rate) for rate in REPORTED_FA_RATES},
        sweep=rows, elapsed_s=time.perf_counter() - started, scores=(pos_scores, neg_scores))


def write_report(reports: Sequence[SetReport], out_dir: str | Path,
                 operating_threshold: float | None = None) -> tuple[Path, Path]:
    """Write `eval_report.json` and the DET curve `det_curve.png` into `out_dir`.

    `operating_threshold`, when given, is the threshold the model ships with: the JSON
    records it and the plot marks it on every set instead of each set's own best.
    """
    from .det_plot import DetCurve, plot_det  # matplotlib is slow to import; only reports need it

    if not reports:
        raise TrainerError("write_report: no set reports to write; evaluate at least one set")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / REPORT_JSON
    payload = {"operating_threshold": operating_threshold, "sets": [r.to_dict() for r in reports]}
    json_path.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n")
    curves = []
    for report in reports:
        if operating_threshold is None:
            marked = report.recommendation
            label = f"{report.name}: threshold {marked['threshold']:.3f}" + (
                "" if marked["met"] else " (target not met)")
        else:
            marked = row_at(report.sweep, operating_threshold)
            label = f"{report.name} at shipped threshold {operating_threshold:.3f}"
        curves.append(DetCurve(report.name, report.sweep, marked, label))
    targets = sorted({r.recommendation["target_fa_per_hour"] for r in reports})
    png_path = plot_det(curves, out_dir / REPORT_PNG, targets)
    return json_path, png_path


@dataclass(frozen=True)
class EvalSet:
    """One evaluation set: a folder holding positive/*.wav (one wake word each) and
    negative_stream.wav (continuous audio without the wake word).

    positive/regions.json, when present, says where the word lies in clips that hold other
    speech too ({"clip.wav": [start_s, end_s]}); clips it does not list are the word alone.
    """

    folder: Path

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def positive_paths(self) -> list[Path]:
        return sorted((self.folder / POSITIVE_DIR).glob("*.wav"))

    def positives(self, progress: bool = False) -> list[np.ndarray]:
        """The wake-word clips in file-name order, float32 16 kHz mono."""
        from tqdm import tqdm

        from .audio import load_audio

        return [load_audio(p) for p in tqdm(self.positive_paths, desc=f"{self.name} clips",
                                            unit="clip", leave=False, disable=not progress)]

    def word_regions(self) -> list[Region | None]:
        """Per positive clip (in `positive_paths` order), the word's (start_s, end_s) inside
        it from positive/regions.json, or None where the clip is the word alone."""
        path = self.folder / POSITIVE_DIR / REGIONS_JSON
        names = [p.name for p in self.positive_paths]
        if not path.is_file():
            return [None] * len(names)
        try:
            table = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TrainerError(f"{path}: cannot read the word regions ({exc}). Fix: rebuild the "
                               "set, or delete the file to score whole clips") from exc
        bad = [k for k, v in table.items() if not (isinstance(v, list) and len(v) == 2 and all(
            isinstance(x, (int, float)) for x in v) and 0 <= v[0] < v[1])] \
            if isinstance(table, dict) else ["(not an object)"]
        unknown = sorted(set(table) - set(names)) if isinstance(table, dict) else []
        if bad or unknown:
            raise TrainerError(f"{path}: expected {{\"clip.wav\": [start_s, end_s]}} for clips in "
                               f"{POSITIVE_DIR}/ with 0 <= start < end; bad entries: "
                               f"{', '.join(bad + unknown)[:300]}. Fix: rebuild the set")
        return [(float(table[n][0]), float(table[n][1])) if n in table else None for n in names]

    def negative_stream(self) -> np.ndarray:
        """The negative stream, float32 16 kHz mono."""
        from .audio import load_audio

        return load_audio(self.folder / NEGATIVE_STREAM)


def find_eval_sets(eval_root: str | Path) -> list[EvalSet]:
    """Every set under `eval_root` (one subfolder each, in name order), checked before any
    audio is read: a missing folder or file is a TrainerError that says what to add."""
    eval_root = Path(eval_root)
    if not eval_root.is_dir():
        raise TrainerError(f"{eval_root}: no such evaluation folder; create it with one subfolder "
                           f"per set, each holding {POSITIVE_DIR}/*.wav and {NEGATIVE_STREAM}")
    sets = [EvalSet(p) for p in sorted(p for p in eval_root.iterdir() if p.is_dir())]
    if not sets:
        raise TrainerError(f"{eval_root}: no evaluation sets; add subfolders "
                           f"(e.g. espeak/, heldout/) each holding {POSITIVE_DIR}/*.wav and "
                           f"{NEGATIVE_STREAM}")
    for eval_set in sets:
        if not eval_set.positive_paths:
            raise TrainerError(f"{eval_set.folder / POSITIVE_DIR}: no positive clips; put "
                               "wake-word recordings there as .wav files")
        if not (eval_set.folder / NEGATIVE_STREAM).is_file():
            raise TrainerError(f"{eval_set.folder / NEGATIVE_STREAM}: missing; record or assemble "
                               "about an hour of audio without the wake word and save it there")
        eval_set.word_regions()  # a broken regions.json fails here, not after the scoring
    return sets


def evaluate_model_dir(model_dir: str | Path, eval_root: str | Path, *,
                       target_fa_per_hour: float = DEFAULT_TARGET_FA_PER_HOUR,
                       int8: bool = False, progress: bool = True,
                       seed: int = 0) -> list[SetReport]:
    """Evaluate an exported model folder on every set under `eval_root`.

    Each subfolder of eval_root (e.g. eval/espeak, eval/heldout) holds positive/*.wav
    and negative_stream.wav. Audio is scored with the sentry's own streaming detector,
    at the trigger settings in the model's manifest.
    """
    model_dir = Path(model_dir)
    sets = find_eval_sets(eval_root)  # before the heavy imports: a typo should fail fast

    from tqdm import tqdm

    from sentry.detector import Detector
    from sentry.errors import SentryError
    from sentry.manifest import load_manifest

    try:
        settings = load_manifest(model_dir).trigger
        detector = Detector(model_dir, int8=int8)
    except SentryError as exc:
        raise TrainerError(f"{model_dir}: cannot load the exported model ({exc}); "
                           "run `hark export` first") from exc

    reports = []
    for eval_set in tqdm(sets, desc="eval sets", unit="set", disable=not progress):
        reports.append(evaluate_set(detector.score_pcm, eval_set.positives(progress),
                                    eval_set.negative_stream(), settings, target_fa_per_hour,
                                    np.random.default_rng(seed), eval_set.name,
                                    word_regions=eval_set.word_regions()))
    return reports
