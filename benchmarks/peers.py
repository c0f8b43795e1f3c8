"""Hark side by side with openWakeWord and microWakeWord on the same held-out audio.

Usage:
    python benchmarks/peers.py --build-audio --negative-minutes 120 \
        --hark "hey jarvis=/tmp/hark-bench3/runs/hey_jarvis/export" \
        --hark "alexa=/tmp/hark-alexa/runs/alexa/export" [--judge "hey jarvis=DIR"]

--build-audio writes the benchmark audio (trainer.synth.benchset: flite and festival voices
only, wake words in context, clean and at 20/10/5 dB SNR, some reverberated, and one shared
negative stream) into OUT/audio, or reuses it when a build with the same settings is there.
Then every system is streamed over each word's positive stream and the negative stream in
80 ms chunks; its per-hop scores go through the same trigger logic and threshold sweep
(trainer.evaluate.sweep on the one grid, trainer.thresholds.threshold_grid, plus the
system's shipped threshold: the system's own smoothing, 2 s refractory period, a detection
counts as a hit up to 0.5 s after the wake word ends). Prints a markdown table and writes
OUT/peers.json and OUT/det_peers.png.

The peers (pyopen-wakeword, pymicro-wakeword) are optional: a missing one is skipped with
the command that installs it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peer_systems sits next to this file

from peer_systems import PEERS, PeerUnavailable, System, hark_sentry

from sentry.postprocess import TriggerSettings, detect
from trainer.audio import load_audio
from trainer.errors import TrainerError
from trainer.evaluate import (
    DEFAULT_TOLERANCE_S,
    REPORTED_FA_RATES,
    audio_hours,
    frr_at,
    sweep,
)
from trainer.synth import benchset
from trainer.thresholds import recommend_threshold, row_at, threshold_grid

REFRACTORY_S = 2.0
"""Seconds after a detection in which no other fires, for every system (the sentry's default)."""
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "peers"
DEFAULT_WORDS = ("hey jarvis", "alexa")
COLOURS = {"Hark sentry": "C0", "openWakeWord": "C1", "microWakeWord": "C2", "Hark cascade": "C3"}
"""One colour per system on every panel of the DET plot."""


def machine() -> str:
    mem = ""
    if Path("/proc/meminfo").is_file():
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    return f"{platform.machine()}, {os.cpu_count()} cores{mem}, {platform.system()}"


def build_audio(args: argparse.Namespace) -> dict:
    """Build the audio, or reuse a build with the same settings whose words include these
    (a build's negatives avoid all of its words, so a subset is scored on the same audio)."""
    words = {benchset.normalise_phrase(w) for w in args.words}
    try:
        manifest = benchset.load_benchset(args.audio)
        same = (words <= set(manifest["words"]) and manifest["seed"] == args.seed
                and abs(manifest["negative"]["negative_stream_seconds"] / 60 - args.negative_minutes) < 1
                and all(s["per_voice"] == args.per_voice for s in manifest["positive"].values()))
        if same:
            print(f"benchmark audio: reusing {args.audio}")
            return manifest
    except TrainerError:
        pass
    return benchset.build_benchset(args.words, args.audio, negative_minutes=args.negative_minutes,
                                   per_voice=args.per_voice, seed=args.seed)


def frr_by_condition(scores: np.ndarray, regions: list[dict], threshold: float,
                     smoothing_hops: int) -> dict[str, float]:
    """FRR (0..1) per noise condition and for the reverberated scenes, at one threshold."""
    settings = TriggerSettings(threshold, smoothing_hops, REFRACTORY_S)
    groups = {c: [r for r in regions if r["condition"] == c] for c in benchset.CONDITIONS}
    groups["reverberated"] = [r for r in regions if r["reverb"]]
    return {name: frr_at(scores, [(r["start_s"], r["end_s"]) for r in subset], settings)[0]
            for name, subset in groups.items() if subset}


def evaluate_system(system: System, positive: np.ndarray, regions: list[dict],
                    negative: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score both streams, sweep, and summarise; also returns both streams' per-hop scores."""
    load_before = os.getloadavg()
    wall = time.perf_counter()
    pos_scores, pos_cpu = system.scores(positive)
    neg_scores, neg_cpu = system.scores(negative)
    wall = time.perf_counter() - wall
    audio_h = audio_hours(positive.size + negative.size)
    spans = [(r["start_s"], r["end_s"]) for r in regions]
    rows = sweep(pos_scores, spans, neg_scores, thresholds=threshold_grid(system.default_threshold),
                 smoothing_hops=system.smoothing_hops, refractory_s=REFRACTORY_S)
    default = row_at(rows, system.default_threshold)
    at_rate = {}
    for rate in REPORTED_FA_RATES:
        best = recommend_threshold(rows, rate)
        at_rate[str(rate)] = ({"frr": best["frr"], "threshold": best["threshold"],
                               "fa_per_hour": best["fa_per_hour"],
                               "frr_by_condition": frr_by_condition(
                                   pos_scores, regions, best["threshold"], system.smoothing_hops)}
                              if best["met"] else None)
    result = {
        "system": system.name, "word": system.word, "notes": system.notes,
        "default_threshold": system.default_threshold, "smoothing_hops": system.smoothing_hops,
        "at_default": {"frr": default["frr"], "fa_per_hour": default["fa_per_hour"],
                       "false_accepts": default["false_accepts"],
                       "frr_by_condition": frr_by_condition(pos_scores, regions,
                                                            system.default_threshold,
                                                            system.smoothing_hops)},
        "at_fa_per_hour": at_rate,
        "cpu_s": pos_cpu + neg_cpu, "cpu_s_per_audio_hour": (pos_cpu + neg_cpu) / audio_h,
        "wall_s": wall, "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "model_bytes": system.model_bytes, "parameters": system.parameters, "sweep": rows,
    }
    return result, pos_scores, neg_scores


def cascade(sentry_scores_pos: np.ndarray, sentry_scores_neg: np.ndarray, positive: np.ndarray,
            negative: np.ndarray, regions: list[dict], sentry: System, judge_dir: Path,
            sentry_threshold: float | None = None, judge_threshold: float | None = None) -> dict:
    """Sentry at its shipped trigger (or ``sentry_threshold``: a cascade's sentry is meant to
    be set for recall), each detection's clip verified by the judge's model at its shipped
    threshold (or ``judge_threshold``)."""
    from judge.verifier import Verifier
    from trainer.cascade import JudgedDetections, cut_clip

    verifier = Verifier(judge_dir)
    judge_threshold = verifier.threshold if judge_threshold is None else judge_threshold
    threshold = sentry.default_threshold if sentry_threshold is None else sentry_threshold
    settings = TriggerSettings(threshold, sentry.smoothing_hops, REFRACTORY_S)
    pos_times, neg_times = detect(sentry_scores_pos, settings), detect(sentry_scores_neg, settings)
    started = time.process_time()
    pos_judged = np.array([verifier.score(cut_clip(positive, t)) for t in pos_times], np.float64)
    neg_judged = np.array([verifier.score(cut_clip(negative, t)) for t in neg_times], np.float64)
    judge_cpu = time.process_time() - started
    judged = JudgedDetections([(r["start_s"], r["end_s"]) for r in regions], pos_times,
                              pos_judged, neg_judged, audio_hours(negative.size))
    at = judged.at(judge_threshold)
    return {"system": "Hark cascade", "word": sentry.word, "judge": str(judge_dir),
            "sentry_threshold": threshold, "judge_threshold": judge_threshold,
            "at_default": {"frr": at["frr"], "fa_per_hour": at["fa_per_hour"],
                           "false_accepts": at["false_accepts"]},
            "judge_cpu_s": judge_cpu}


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _frr_cell(at: dict, rate: str) -> str:
    if not at:
        return "n/a"  # a cascade row: shipped thresholds only
    return pct(at[rate]["frr"]) if at.get(rate) else "not reached"


def print_table(results: list[dict]) -> None:
    print("| word | system | FRR @ <= 0.5 FA/h | FRR @ <= 1 FA/h | shipped threshold | FRR / FA/h at it "
          "| CPU s per audio hour | model size | parameters |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        frr = partial(_frr_cell, r.get("at_fa_per_hour", {}))
        thr = (f"{r['sentry_threshold']:g} + judge {r['judge_threshold']:g}"
               if "judge" in r else f"{r['default_threshold']:g}")
        cpu = f"{r['cpu_s_per_audio_hour']:.0f}" if "cpu_s_per_audio_hour" in r else "-"
        size = f"{r['model_bytes'] / 1024:.0f} KB" if "model_bytes" in r else "-"
        params = f"{r['parameters']:,}" if "parameters" in r else "-"
        print(f"| {r['word']} | {r['system']} | {frr('0.5')} | {frr('1.0')} | {thr} "
              f"| {pct(r['at_default']['frr'])} / {r['at_default']['fa_per_hour']:.2f} "
              f"| {cpu} | {size} | {params} |")


def print_conditions(results: list[dict]) -> None:
    """FRR per noise condition at the threshold that reaches <= 1 FA/h (else the shipped one)."""
    names = list(benchset.CONDITIONS) + ["reverberated"]
    print("\n| word | system | threshold | " + " | ".join(
        "clean" if n == "clean" else n if n == "reverberated" else f"{n} dB" for n in names) + " |")
    print("|---|---|---|" + "---|" * len(names))
    for r in results:
        if "sweep" not in r:
            continue
        point = r["at_fa_per_hour"].get("1.0")
        label = f"{point['threshold']:g} (<= 1 FA/h)" if point else f"{r['default_threshold']:g} (shipped)"
        by = (point or r["at_default"])["frr_by_condition"]
        print(f"| {r['word']} | {r['system']} | {label} | "
              + " | ".join(pct(by.get(n)) for n in names) + " |")


def plot(results: list[dict], png: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.det_plot import LINEAR_BELOW_FA_PER_HOUR

    words = list(dict.fromkeys(r["word"] for r in results if "sweep" in r))
    fig, axes = plt.subplots(1, len(words), figsize=(6.0 * len(words), 4.8), squeeze=False)
    for ax, word in zip(axes[0], words):
        for r in (r for r in results if r["word"] == word and "sweep" in r):
            rows = sorted(r["sweep"], key=lambda row: row["threshold"])
            (line,) = ax.plot([row["fa_per_hour"] for row in rows],
                              [100 * row["frr"] for row in rows], label=r["system"],
                              color=COLOURS.get(r["system"], "C0"),
                              linestyle=":" if r["system"].startswith("Hark sentry (") else "-")
            d = r["at_default"]
            ax.plot([d["fa_per_hour"]], [100 * d["frr"]], marker="o", color=line.get_color(),
                    markeredgecolor="black", linestyle="none")
        for r in (r for r in results if r["word"] == word and "judge" in r):
            d = r["at_default"]
            ax.plot([d["fa_per_hour"]], [100 * d["frr"]], marker="*", markersize=11,
                    linestyle="none", color=COLOURS["Hark cascade"],
                    label=f"Hark cascade (sentry {r['sentry_threshold']:g} + judge {r['judge_threshold']:g})")
        for rate in REPORTED_FA_RATES:
            ax.axvline(rate, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xscale("symlog", linthresh=LINEAR_BELOW_FA_PER_HOUR)
        ax.set_xlim(left=0)
        ax.set_ylim(0, 100)
        ax.set_title(f"'{word}': flite + festival voices (dots: shipped thresholds)")
        ax.set_xlabel("false accepts per hour")
        ax.set_ylabel("false reject rate (%)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def _pairs(values: list[str], flag: str) -> dict[str, list[tuple[str, Path]]]:
    """WORD=DIR[@LABEL] values -> word -> [(system name, folder)], in the order given.

    A word's first Hark model is "Hark sentry" (the one the cascade row builds on); further
    ones (other training runs of a recipe, say) are "Hark sentry (LABEL)", LABEL defaulting to
    their position."""
    out: dict[str, list[tuple[str, Path]]] = {}
    for value in values:
        word, sep, rest = value.partition("=")
        path, _, label = rest.partition("@")
        if not sep or not Path(path).is_dir():
            raise SystemExit(f"{flag} {value!r}: expected WORD=EXPORTED_MODEL_DIR[@LABEL] with an "
                             f"existing folder, e.g. {flag} 'hey jarvis=hark-runs/runs/hey_jarvis/export'")
        models = out.setdefault(benchset.normalise_phrase(word), [])
        name = "Hark sentry" if not models else f"Hark sentry ({label or len(models) + 1})"
        models.append((name, Path(path)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results folder")
    parser.add_argument("--audio", type=Path, default=None, help="benchmark audio (default OUT/audio)")
    parser.add_argument("--build-audio", action="store_true", help="build (or reuse) the audio first")
    parser.add_argument("--audio-only", action="store_true", help="stop after building the audio")
    parser.add_argument("--words", nargs="+", default=list(DEFAULT_WORDS))
    parser.add_argument("--negative-minutes", type=float, default=120.0)
    parser.add_argument("--per-voice", type=int, default=24, help="wake words per voice and word")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--hark", action="append", default=[], metavar="WORD=DIR[@LABEL]",
                        help="Hark exported model for a word (repeat per word; repeat a word for "
                             "more training runs, shown as 'Hark sentry (LABEL)')")
    parser.add_argument("--judge", action="append", default=[], metavar="WORD=DIR",
                        help="judge model for the cascade row of a word (optional)")
    parser.add_argument("--cascade-sentry-threshold", type=float, default=None,
                        help="sentry threshold in the cascade row (default: the sentry's shipped one)")
    parser.add_argument("--cascade-judge-threshold", type=float, default=None,
                        help="judge threshold in the cascade row (default: the judge's shipped one); "
                             "choose it on training-side data, never on this benchmark")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    args = parser.parse_args()
    args.audio = args.audio or args.out / "audio"
    hark, judges = _pairs(args.hark, "--hark"), _pairs(args.judge, "--judge")

    try:
        manifest = build_audio(args) if args.build_audio else benchset.load_benchset(args.audio)
    except TrainerError as exc:
        raise SystemExit(f"error: {exc}") from None
    if args.audio_only:
        return
    print(f"machine: {machine()}; load average {os.getloadavg()}", flush=True)
    negative = load_audio(args.audio / benchset.NEGATIVE_STREAM)
    results, skipped = [], []
    words = [benchset.normalise_phrase(w) for w in args.words]
    missing = [w for w in words if w not in manifest["words"]]
    if missing:
        raise SystemExit(f"error: {args.audio} holds no audio for {', '.join(missing)} (it has "
                         f"{', '.join(manifest['words'])}); rebuild with --build-audio --words ...")
    for word in words:
        folder = args.audio / benchset.word_slug(word)
        positive, regions = load_audio(folder / benchset.POSITIVE_STREAM), benchset.regions_of(folder)
        makers = [(name, lambda d=folder, w=word, n=name: hark_sentry(d, w, n))
                  for name, folder in hark.get(word, [])]
        makers += [(name, lambda f=PEERS[name], w=word: f(w)) for name in args.peers]
        if word not in hark:
            skipped.append(f"{word}: Hark sentry (no --hark '{word}=DIR' given)")
        for name, make in makers:
            try:
                system = make()
            except PeerUnavailable as exc:
                skipped.append(f"{word}: {name}: {exc}")
                continue
            print(f"scoring {word!r} with {system.name} ...", flush=True)
            result, pos_scores, neg_scores = evaluate_system(system, positive, regions, negative)
            results.append(result)
            if system.name == "Hark sentry" and word in judges:
                results.append(cascade(pos_scores, neg_scores, positive, negative, regions,
                                       system, judges[word][0][1], args.cascade_sentry_threshold,
                                       args.cascade_judge_threshold))
    print_table(results)
    print_conditions(results)
    for line in skipped:
        print(f"skipped: {line}")
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), "command": " ".join(sys.argv), "audio": str(args.audio),
               "benchset": manifest, "refractory_s": REFRACTORY_S,
               "tolerance_s": DEFAULT_TOLERANCE_S, "skipped": skipped, "results": results}
    json_path = args.out / "peers.json"
    json_path.write_text(json.dumps(payload, indent=1) + "\n")
    png = plot(results, args.out / "det_peers.png") if results else None
    print(f"wrote {json_path}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
