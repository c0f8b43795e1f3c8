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

Resumable over sessions: every system's result on a word is kept in CACHE (default
benchmarks/results/peers/, in the repository), keyed by the audio's checksum and the model's
(its .onnx files and manifest; a peer's package version). A later run on the same audio (it
is rebuilt bit for bit from the same settings) reuses a result whose key matches, so a
table over training runs made in several sessions is still one run over one audio; a --hark
folder that no longer exists is taken from the cache when it holds that folder's result
(the table says "cached"). --no-cache scores everything again.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peer_systems sits next to this file

from peer_systems import PEERS, PeerUnavailable, System, hark_sentry, hark_tflm

from sentry.postprocess import HOP_SECONDS, TriggerSettings, detect, detect_hops, smooth
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

CONFUSABLE_TAIL_S = 1.5
"""A false accept up to this long after a confusable phrase ends is the phrase's (a window
holds 1.5 s); "confusables left out" drops those and the phrases' own time."""
REFRACTORY_S = 2.0
"""Seconds after a detection in which no other fires, for every system (the sentry's default)."""
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / "peers"
DEFAULT_WORDS = ("hey jarvis", "alexa")
DEFAULT_CACHE = Path(__file__).resolve().parent / "results" / "peers"
PEER_PACKAGES = {"openwakeword": "pyopen-wakeword", "microwakeword": "pymicro-wakeword"}
COLOURS = {"Hark sentry": "C0", "openWakeWord": "C1", "microWakeWord": "C2", "Hark cascade": "C3",
           "Hark (TFLite Micro)": "C4"}
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


def ordinary_mask(n_hops: int, spans: list[tuple[float, float]]) -> np.ndarray:
    """True for the negative stream's hops outside every confusable phrase (and its tail)."""
    keep = np.ones(n_hops, dtype=bool)
    for start, end in spans:
        a = max(int(start / HOP_SECONDS), 0)
        b = min(int(np.ceil((end + CONFUSABLE_TAIL_S) / HOP_SECONDS)), n_hops)
        keep[a:b] = False
    return keep


def without_confusables(rows: list[dict], neg_scores: np.ndarray, keep: np.ndarray,
                        smoothing_hops: int) -> list[dict]:
    """The sweep's rows with false accepts counted on ordinary negatives only (speech and
    noise, confusable phrases left out), per hour of that audio; FRR as in ``rows``."""
    refractory_hops = TriggerSettings(smoothing_hops=smoothing_hops,
                                      refractory_s=REFRACTORY_S).refractory_hops
    smoothed = smooth(neg_scores, smoothing_hops)
    hours = float(keep.sum()) * HOP_SECONDS / 3600
    out = []
    for row in rows:
        hops = detect_hops(smoothed, row["threshold"], refractory_hops)
        n = int(keep[hops].sum())
        out.append({**row, "false_accepts": n, "fa_per_hour": n / hours})
    return out


def evaluate_system(system: System, positive: np.ndarray, regions: list[dict],
                    negative: np.ndarray, confusables: list[tuple[float, float]] | None = None,
                    ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Score both streams, sweep, and summarise; also returns both streams' per-hop scores.
    confusables: spans of confusable phrases in ``negative`` (benchset.confusable_spans): the
    result then also says what the system reaches with them left out."""
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
    if confusables is not None:
        keep = ordinary_mask(neg_scores.size, confusables)
        plain = without_confusables(rows, neg_scores, keep, system.smoothing_hops)
        result["without_confusables"] = {
            "negative_hours": float(keep.sum()) * HOP_SECONDS / 3600,
            "at_default": {k: row_at(plain, system.default_threshold)[k]
                           for k in ("frr", "fa_per_hour", "false_accepts")},
            "at_fa_per_hour": {str(rate): ({"frr": best["frr"], "threshold": best["threshold"],
                                            "fa_per_hour": best["fa_per_hour"]} if best["met"] else None)
                               for rate in REPORTED_FA_RATES
                               for best in [recommend_threshold(plain, rate)]}}
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
    label = sentry.name.replace("Hark sentry", "Hark cascade", 1)
    return {"system": label, "word": sentry.word, "judge": str(judge_dir),
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
    print("| word | system | FRR @ <= 0.5 FA/h | FRR @ <= 1 FA/h | FRR @ <= 0.5 FA/h, confusables "
          "left out | shipped threshold | FRR / FA/h at it | CPU s per audio hour | model size "
          "| parameters |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        frr = partial(_frr_cell, r.get("at_fa_per_hour", {}))
        thr = (f"{r['sentry_threshold']:g} + judge {r['judge_threshold']:g}"
               if "judge" in r else f"{r['default_threshold']:g}")
        cpu = f"{r['cpu_s_per_audio_hour']:.0f}" if "cpu_s_per_audio_hour" in r else "-"
        size = f"{r['model_bytes'] / 1024:.0f} KB" if "model_bytes" in r else "-"
        params = f"{r['parameters']:,}" if "parameters" in r else "-"
        name = r["system"] + (" (cached)" if r.get("cached") else "")
        plain = _frr_cell((r.get("without_confusables") or {}).get("at_fa_per_hour", {}), "0.5")
        print(f"| {r['word']} | {name} | {frr('0.5')} | {frr('1.0')} | {plain} | {thr} "
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


def file_digest(paths: list[Path]) -> str:
    """sha256 (first 16 hex digits) over the bytes of ``paths``, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_digest(folder: Path) -> str:
    """What a model folder scores with: its ONNX graphs and its manifest (threshold, trigger)."""
    files = sorted(folder.glob("*.onnx")) + [folder / "manifest.json"]
    return file_digest([f for f in files if f.is_file()])


class ResultCache:
    """One JSON file per (word, system, model folder): the key it was scored under and the
    result, plus cascade rows by judge."""

    def __init__(self, root: Path | None) -> None:
        self.root = root

    def _path(self, word: str, name: str, where: str) -> Path:
        slug = "".join(c if c.isalnum() else "_" for c in f"{word}__{name}").strip("_")
        return self.root / f"{slug}__{hashlib.sha1(where.encode()).hexdigest()[:8]}.json"

    def get(self, word: str, name: str, where: str, key: dict) -> dict | None:
        """The entry for this system, if its key matches ``key`` (a None value in ``key``
        matches anything: a model folder that is gone)."""
        if self.root is None:
            return None
        path = self._path(word, name, where)
        try:
            entry = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        ok = all(v is None or entry.get("key", {}).get(k) == v for k, v in key.items())
        return entry if ok else None

    def put(self, word: str, name: str, where: str, key: dict, result: dict,
            cascades: dict | None = None) -> None:
        if self.root is None:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "scored": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "result": result, "cascades": cascades or {}}
        path = self._path(word, name, where)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entry, indent=1) + "\n")
        tmp.replace(path)


def _pairs(values: list[str], flag: str) -> dict[str, list[tuple[str, Path]]]:
    """WORD=DIR[@LABEL] values -> word -> [(system name, folder)], in the order given.

    A word's first Hark model is "Hark sentry" (the one the cascade row builds on); further
    ones (other training runs of a recipe, say) are "Hark sentry (LABEL)", LABEL defaulting to
    their position."""
    out: dict[str, list[tuple[str, Path]]] = {}
    for value in values:
        word, sep, rest = value.partition("=")
        path, _, label = rest.partition("@")
        if not sep or not path:
            raise SystemExit(f"{flag} {value!r}: expected WORD=EXPORTED_MODEL_DIR[@LABEL], "
                             f"e.g. {flag} 'hey jarvis=hark-runs/runs/hey_jarvis/export'")
        models = out.setdefault(benchset.normalise_phrase(word), [])
        name = "Hark sentry" if not models else f"Hark sentry ({label or len(models) + 1})"
        models.append((name, Path(path)))
    return out


def cascade_sentry_threshold(judge_dir: Path | None) -> float | None:
    """The sentry threshold `hark run` chose for the cascade (the judge manifest's
    metrics["cascade"]), or None (then the sentry's shipped threshold is used)."""
    if judge_dir is None or not (judge_dir / "manifest.json").is_file():
        return None
    cascade_info = json.loads((judge_dir / "manifest.json").read_text()).get("metrics", {}).get("cascade")
    return float(cascade_info["sentry_threshold"]) if cascade_info else None


def _package_version(peer: str) -> str | None:
    try:
        return f"{PEER_PACKAGES[peer]}=={importlib.metadata.version(PEER_PACKAGES[peer])}"
    except importlib.metadata.PackageNotFoundError:
        return "missing"


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
    parser.add_argument("--tflm", action="append", default=[], metavar="WORD=NAME.json[@LABEL]",
                        help="Hark's ESPHome export (hark export-esphome), run in TFLite Micro "
                             "as the chip runs it (needs the esphome extra)")
    parser.add_argument("--judge", action="append", default=[], metavar="WORD=DIR",
                        help="judge model for the cascade row of a word (optional)")
    parser.add_argument("--cascade-sentry-threshold", type=float, default=None,
                        help="sentry threshold in the cascade row (default: the one `hark run` chose "
                             "for the cascade, in the judge's manifest; else the sentry's shipped one)")
    parser.add_argument("--cascade-judge-threshold", type=float, default=None,
                        help="judge threshold in the cascade row (default: the judge's shipped one); "
                             "choose it on training-side data, never on this benchmark")
    parser.add_argument("--peers", nargs="*", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                        help="kept results, reused when the audio and model are the same")
    parser.add_argument("--no-cache", action="store_true", help="score every system again")
    args = parser.parse_args()
    args.audio = args.audio or args.out / "audio"
    hark, judges = _pairs(args.hark, "--hark"), _pairs(args.judge, "--judge")
    tflm = _pairs(args.tflm, "--tflm")

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
    cache = ResultCache(None if args.no_cache else args.cache)
    confusables = benchset.confusable_spans(args.audio)
    for word in words:
        folder = args.audio / benchset.word_slug(word)
        positive, regions = load_audio(folder / benchset.POSITIVE_STREAM), benchset.regions_of(folder)
        audio_key = file_digest([folder / benchset.POSITIVE_STREAM, args.audio / benchset.NEGATIVE_STREAM])
        # the i-th --judge of a word goes with its i-th --hark model
        word_judges = [d for _, d in judges.get(word, [])]
        makers = [(name, str(d), {"audio": audio_key, "model": model_digest(d) if d.is_dir() else None},
                   d.is_dir(), word_judges[i] if i < len(word_judges) else None,
                   lambda d=d, w=word, n=name: hark_sentry(d, w, n))
                  for i, (name, d) in enumerate(hark.get(word, []))]
        for i, (name, path) in enumerate(tflm.get(word, [])):
            label = name.replace("Hark sentry", "Hark (TFLite Micro)", 1)
            files = [path, path.with_suffix(".tflite")]
            makers.append((label, str(path), {"audio": audio_key, "model": file_digest(files)
                                              if all(f.is_file() for f in files) else None},
                           path.is_file(), None, lambda p=path, w=word, n=label: hark_tflm(p, w, n)))
        makers += [(name, name, {"audio": audio_key, "package": _package_version(name)},
                    True, None, lambda f=PEERS[name], w=word: f(w)) for name in args.peers]
        if word not in hark:
            skipped.append(f"{word}: Hark sentry (no --hark '{word}=DIR' given)")
        for name, where, key, present, judge, make in makers:
            sentry_at = (args.cascade_sentry_threshold if args.cascade_sentry_threshold is not None
                         else cascade_sentry_threshold(judge))
            judge_key = (json.dumps({"judge": str(judge), "model": model_digest(judge),
                                     "sentry_threshold": sentry_at,
                                     "judge_threshold": args.cascade_judge_threshold},
                                    sort_keys=True) if judge is not None and judge.is_dir() else None)
            entry = cache.get(word, name, where, key)
            if entry and (judge_key is None or judge_key in entry["cascades"]):
                print(f"{word!r} with {entry['result']['system']}: cached result of "
                      f"{entry['scored']} (same audio and model)", flush=True)
                results.append({**entry["result"], "cached": entry["scored"]})
                results.extend(entry["cascades"].values() if judge_key is None
                               else [entry["cascades"][judge_key]])
                continue
            if not present:
                skipped.append(f"{word}: {name}: {where} is not a folder and no result of it is "
                               f"cached for this audio")
                continue
            try:
                system = make()
            except PeerUnavailable as exc:
                skipped.append(f"{word}: {name}: {exc}")
                continue
            print(f"scoring {word!r} with {system.name} ...", flush=True)
            result, pos_scores, neg_scores = evaluate_system(system, positive, regions, negative,
                                                             confusables)
            results.append(result)
            cascades = {}
            if judge_key is not None:
                cascades[judge_key] = cascade(pos_scores, neg_scores, positive, negative, regions,
                                              system, judge, sentry_at, args.cascade_judge_threshold)
                results.append(cascades[judge_key])
            cache.put(word, name, where, key, result, cascades)
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
