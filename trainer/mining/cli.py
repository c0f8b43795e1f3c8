"""`hark mine`, `hark queue` and `hark sessions`: mining hard negatives from the command line.

    hark mine night1.json --model runs/jarvis/export ~/recordings --dataset data/jarvis
    hark mine night1.json --resume          # after Ctrl-C, SIGTERM, a crash or a reboot
    hark queue list night1.json
    hark queue confirm night1.json 1-12     # false activations -> DATASET/hard_negative/
    hark queue confirm night1.json 7 --positive
    hark sessions list .                    # every session in a folder

A paused `hark mine` exits with status 75 (EX_TEMPFAIL), so a job array can requeue it.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import click

from sentry.clitools import model_option
from trainer.clitools import fail_cleanly as _clean

from . import (
    DEFAULT_STRIDE_HOPS,
    DEFAULT_THREADS,
    DEFAULT_THRESHOLD_RATIO,
    PROBE_RATIO,
    MiningError,
)
from .session import (
    CONFIRMED,
    DISCARDED,
    HIT_STATUSES,
    PENDING,
    list_sessions,
    load_session,
)

EXIT_PAUSED = 75
"""sysexits.h EX_TEMPFAIL: the work is incomplete and can be retried (resumed)."""


class _StopFlag:
    """Set by SIGINT/SIGTERM; the miner pauses at the next block boundary."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self) -> bool:
        return self.signal is not None

    def install(self) -> dict:
        """Install the handlers; returns the previous ones for `restore`."""
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, _frame):
            if self.signal is None:
                click.echo(f"\n{signal.Signals(signum).name}: pausing at the next safe point "
                           "(a second signal waits for it too)...", err=True)
            self.signal = signum
        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)
        return previous


@click.command()
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@model_option(required=False,
              help="Exported model folder (required for a new session; on --resume it must match).")
@click.option("--resume", is_flag=True, help="Continue SESSION exactly where it stopped.")
@click.option("--force", is_flag=True, help="On --resume, accept a changed model or settings.")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0),
              help=f"Mining threshold on the smoothed score [default: {DEFAULT_THRESHOLD_RATIO} x "
                   "the model's detection threshold].")
@click.option("--probe-threshold", type=click.FloatRange(0.0, 1.0),
              help=f"Coarse-pass score that triggers 80 ms scoring nearby [default: {PROBE_RATIO} "
                   "x --threshold].")
@click.option("--stride", type=click.IntRange(1, 8),
              help=f"Coarse stride in 80 ms hops; 1 scores every hop [default: {DEFAULT_STRIDE_HOPS}].")
@click.option("--merge-gap", type=click.FloatRange(0.0), help="Seconds within which activations "
              "merge into one hit [default: the model's refractory period].")
@click.option("--int8/--fp32", default=None, help="Classifier graph [default: fp32, model.onnx as "
              "the sentry runs it; int8 is ~25% faster but moves scores by up to 0.02].")
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path),
              help="Dataset the queue confirms hits into (recorded in the session).")
@click.option("--shard", default="1/1", show_default=True,
              help="I/N: mine only file k of the sorted list where k mod N = I-1 (job arrays).")
@click.option("--threads", type=click.IntRange(1), default=DEFAULT_THREADS, show_default=True,
              help="onnxruntime intra-op threads per graph (for more cores, prefer --shard).")
@click.option("--progress/--no-progress", default=True, show_default=True)
@_clean
def mine(session_path: Path, paths, model_dir, resume, force, threshold, probe_threshold, stride,
         merge_gap, int8, dataset, shard, threads, progress) -> None:
    """Scan long recordings in PATHS (files or folders) for what the model fires on.

    Activations at or above the mining threshold become hits (score, source, offset and a clip
    with context in SESSION's .clips folder) that wait in `hark queue` for review. SESSION is
    a JSON file, saved atomically every few seconds; Ctrl-C or SIGTERM pauses at a safe
    point (exit 75) and `--resume` continues exactly there.
    """
    from dataclasses import replace

    from .graphs import open_graphs
    from .miner import Miner, create, parse_shard, scan_settings
    from .scan import ScanSettings
    from .session import model_hash, running

    if resume:
        if paths:
            raise MiningError("PATHS are fixed when a session starts; drop them with --resume")
        session = load_session(session_path)
        model_dir = model_dir or Path(session.data["model"]["dir"])
        recorded = ScanSettings.from_dict(session.data["settings"], str(session_path))
        asked = {"threshold": threshold, "probe_threshold": probe_threshold,
                 "stride_hops": stride, "merge_gap_s": merge_gap, "int8": int8}
        changed = {k: (getattr(recorded, k), v) for k, v in asked.items()
                   if v is not None and v != getattr(recorded, k)}
        settings = replace(recorded, **{k: v for k, (_, v) in changed.items()})
        graphs = open_graphs(model_dir, int8=settings.int8, threads=threads)
        digest = model_hash(model_dir, [graphs.manifest.files["features"], graphs.model_file])
        problems = [f"{k}: session {old} -> now {new}" for k, (old, new) in changed.items()]
        if digest != session.data["model"]["hash"]:
            problems.insert(0, f"model: {model_dir} is not the model the session started with "
                               "(its files changed since)")
        if problems and not force:
            raise MiningError(f"{session_path}: refusing to resume, since hits found so far would "
                              "not match the rest: " + "; ".join(problems) + ". Resume with the "
                              "original model and settings, start a new session, or pass --force")
        if problems:
            click.echo("--force: continuing with " + "; ".join(problems), err=True)
            session.data["settings"] = settings.to_dict()
            session.data["model"].update(dir=str(model_dir.resolve()), hash=digest)
    else:
        if model_dir is None or not paths:
            raise click.UsageError("a new session needs --model DIR and PATHS (or pass --resume)")
        if session_path.exists():
            load_session(session_path)  # a corrupted file gets its own, clearer message
        graphs = open_graphs(model_dir, int8=bool(int8), threads=threads)
        settings = scan_settings(graphs.manifest, threshold=threshold, probe=probe_threshold,
                             stride=stride, merge_gap=merge_gap, int8=int8)
        digest = model_hash(model_dir, [graphs.manifest.files["features"], graphs.model_file])
        session = create(session_path, model_dir=model_dir, paths=list(paths), settings=settings,
                         dataset=dataset, shard=parse_shard(shard),
                         model={"hash": digest, "wake_word": graphs.manifest.wake_word,
                                "graph": graphs.model_file})
    if dataset and resume:
        session.data["dataset"] = str(dataset.resolve())
    stop = _StopFlag()
    previous = stop.install()
    try:
        with running(session_path):
            result = Miner(session, graphs, settings, should_stop=stop, progress=progress).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    counts = session.counts()
    for entry in session.files:
        if entry["error"]:
            click.echo(f"skipped: {entry['error']}", err=True)
    click.echo(f"{result.state}: {counts['files_done']}/{counts['files']} files done, "
               f"{counts['files_skipped']} skipped (unreadable or truncated); "
               f"{result.audio_s / 3600:.2f} h scanned at {result.realtime_factor:.0f}x real time; "
               f"{result.hits_added} new hits, {counts['hits']} in the session")
    if result.state == "paused":
        click.echo(f"resume with: hark mine {session_path} --resume", err=True)
        sys.exit(EXIT_PAUSED)
    click.echo(f"review with: hark queue list {session_path}", err=True)


# ---------------------------------------------------------------------- queue

@click.group()
def queue() -> None:
    """Review mined hits: list, show, play, confirm into the dataset, discard."""


def _emit(rows, as_json: bool, columns=("id", "status", "label", "score", "offset_s", "source", "clip_path")):
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no hits")
        return
    for row in rows:
        click.echo("  ".join(f"{row.get(c) if row.get(c) is not None else '-'}" for c in columns))


@queue.command(name="list")
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--status", type=click.Choice(HIT_STATUSES + ("all",)), default=PENDING, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (what the studio UI reads).")
@_clean
def queue_list(session_path: Path, status: str, as_json: bool) -> None:
    """List hits (id status label score offset source clip), highest score first."""
    from .queue import hit_rows
    rows = hit_rows(load_session(session_path), None if status == "all" else status)
    rows.sort(key=lambda r: (-r["score"], r["id"]))
    _emit(rows, as_json)


@queue.command(name="show")
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ids", nargs=-1, required=True)
@_clean
def queue_show(session_path: Path, ids) -> None:
    """Every field of the given hits (ids like 3, 5-9, 1,4,7, pending, all), as JSON."""
    from .queue import hit_rows, parse_ids
    session = load_session(session_path)
    chosen = set(parse_ids(ids, session))
    click.echo(json.dumps([r for r in hit_rows(session) if r["id"] in chosen], indent=1))


@queue.command(name="play")
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ids", nargs=-1, required=True)
@_clean
def queue_play(session_path: Path, ids) -> None:
    """Play the clips of hits (needs `sounddevice`; otherwise prints their paths)."""
    from .queue import hit_rows, parse_ids, play
    session = load_session(session_path)
    chosen = set(parse_ids(ids, session))
    for row in hit_rows(session):
        if row["id"] in chosen:
            click.echo(f"{row['id']}: {row['score']:.3f} at {row['offset_s']:.1f} s of "
                       f"{row['source']}: {row['clip_path']}")
            if not play(Path(row["clip_path"])):
                click.echo("  (install `sounddevice` to play clips here)", err=True)


@queue.command(name="confirm")
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ids", nargs=-1, required=True)
@click.option("--positive", is_flag=True, help="These really were the wake word: copy to positive/.")
@click.option("--dataset", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Dataset folder [default: the one recorded in the session].")
@_clean
def queue_confirm(session_path: Path, ids, positive: bool, dataset) -> None:
    """Confirm hits as false activations (to DATASET/hard_negative/) or, with --positive,
    as the wake word (to DATASET/positive/); the next `hark train` uses them."""
    from .queue import review
    label = "positive" if positive else "hard_negative"
    changed = review(session_path, ids, status=CONFIRMED, label=label, dataset=dataset)
    click.echo(f"confirmed {len(changed)} hit(s) as {label}: "
               f"{Path(changed[0]['dataset_path']).parent if changed else '-'}")


@queue.command(name="discard")
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("ids", nargs=-1, required=True)
@_clean
def queue_discard(session_path: Path, ids) -> None:
    """Drop hits from the queue (and their dataset copy, if they were confirmed)."""
    from .queue import review
    changed = review(session_path, ids, status=DISCARDED)
    click.echo(f"discarded {len(changed)} hit(s)")


# ---------------------------------------------------------------------- sessions

@click.group()
def sessions() -> None:
    """Mining sessions: list a folder's, show one, merge the shards of a job array."""


@sessions.command(name="list")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path), default=".")
@click.option("--json", "as_json", is_flag=True)
@_clean
def sessions_list(folder: Path, as_json: bool) -> None:
    """Sessions in FOLDER with their state, progress and queue counts."""
    rows = []
    for path, session, error in list_sessions(folder):
        if session is None:
            rows.append({"session": str(path), "state": "corrupted", "error": error})
            continue
        rows.append({"session": str(path), "state": session.data.get("state"),
                     "wake_word": session.data["model"].get("wake_word"), **session.counts()})
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    for row in rows:
        if row["state"] == "corrupted":
            click.echo(f"{row['session']}  corrupted")
            continue
        click.echo(f"{row['session']}  {row['state']}  {row['files_done']}/{row['files']} files  "
                   f"{row['audio_s'] / 3600:.2f} h  {row['hits']} hits ({row['hits_pending']} pending)")
    if not rows:
        click.echo(f"no mining sessions in {folder}")


@sessions.command(name="show")
@click.argument("session_path", metavar="SESSION", type=click.Path(dir_okay=False, path_type=Path))
@_clean
def sessions_show(session_path: Path) -> None:
    """A session's model, settings, position, counts and skipped files, as JSON."""
    session = load_session(session_path)
    data = session.data
    click.echo(json.dumps({
        "session": str(session_path), "state": data.get("state"), "model": data["model"],
        "settings": data["settings"], "dataset": data.get("dataset"), "shard": data.get("shard"),
        "position": data["position"], "counts": session.counts(), "stats": data.get("stats"),
        "skipped": [{"path": f["path"], "error": f["error"]} for f in session.files if f["error"]],
    }, indent=1))


@sessions.command(name="merge")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("shards", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_clean
def sessions_merge(out: Path, shards) -> None:
    """Combine the shard sessions of one job into OUT (hits renumbered by source and time)."""
    from .merge import merge_sessions
    merged = merge_sessions(out, [load_session(p) for p in shards])
    counts = merged.counts()
    click.echo(f"merged {len(shards)} session(s) into {out}: {counts['files']} files, "
               f"{counts['hits']} hits")
