"""`hark`: the dev-box command line (synthesize, train, export, evaluate, run it all)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from .clitools import fail_cleanly as _fail_cleanly


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.version_option(package_name="hark", prog_name="hark")
def main(verbose: bool) -> None:
    """Hark: train a custom wake word, export it for the edge, measure it honestly."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    # Our own progress is INFO; the ONNX exporter's internals stay quiet unless -v.
    for name in ("trainer", "sentry", "plugins"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


@main.command()
@click.argument("phrase")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create (standard layout).")
@click.option("--positives", type=int, default=None, help="Positive clips (default 3000).")
@click.option("--negatives", type=int, default=None, help="Ordinary-speech negative clips (default 3000).")
@click.option("--neighbours", type=int, default=None, help="Phonetic-neighbour hard negatives (default 3000).")
@click.option("--eval/--no-eval", "with_eval", default=True, show_default=True,
              help="Also write held-out evaluation sets under OUT/eval.")
@click.option("--eval-minutes", type=click.FloatRange(min=0.5), default=60.0, show_default=True,
              help="Minutes of continuous negative audio in each eval set (FA/h resolution).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--engine", "engines", type=click.Choice(["espeak", "dectalk", "pico"]), multiple=True,
              help="Speech engines to use (repeat the option; espeak is always one). Default: "
                   "espeak and, where installed, DECtalk (scripts/install_dectalk.sh) and "
                   "SVOX Pico (the pico extra).")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset folder.")
@_fail_cleanly
def synth(phrase: str, out: Path, positives, negatives, neighbours, with_eval: bool,
          eval_minutes: float, seed: int, engines: tuple[str, ...], overwrite: bool) -> None:
    """Synthesize a training dataset for PHRASE with espeak-ng, DECtalk and Pico voices."""
    from .pipeline import synth_all
    synth_all(phrase, out, positives=positives, negatives=negatives, neighbours=neighbours,
              with_eval=with_eval, eval_minutes=eval_minutes, seed=seed, overwrite=overwrite,
              engines=engines or None)


@main.command(name="synth-stream")
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="WAV file to write (16 kHz mono).")
@click.option("--minutes", type=click.FloatRange(min=0.5), default=600.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@_fail_cleanly
def synth_stream(dataset: Path, out: Path, minutes: float, seed: int) -> None:
    """A long negative stream in DATASET's training voices, to mine false accepts from.

    Then `hark mine night.json --model SENTRY OUT --threshold 0.3 --dataset DATASET` and
    `hark queue confirm night.json all`: the next trainings (a judge's members) learn what
    the sentry confuses with the wake word. Never the phrase; never an eval voice."""
    from .synth.evalsets import synthesize_training_stream
    info = synthesize_training_stream(dataset, out, minutes=minutes, seed=seed)
    click.echo(f"wrote {out}: {info['negative_stream_seconds'] / 3600:.2f} h, segments "
               f"{info['segments']}")


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML or YAML config; unset keys keep their defaults.")
@click.option("--dataset", type=click.Path(file_okay=False, path_type=Path), help="Overrides data.dataset.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), required=True)
@click.option("--epochs", type=int, help="Overrides train.epochs.")
@click.option("--seed", type=int, help="Overrides train.seed (another seed, another model: see "
                                      "`hark ensemble`).")
@click.option("--resume", is_flag=True, help="Continue the run in --run-dir from its last checkpoint.")
@click.option("--compile/--no-compile", "use_compile", default=None,
              help="Overrides train.use_compile (torch.compile; needs a C++ compiler on CPU).")
@click.option("--grad-checkpointing/--no-grad-checkpointing", "grad_checkpointing", default=None,
              help="Overrides train.gradient_checkpointing (recompute blocks in backward: less memory).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]),
              help="Overrides train.precision (bf16: CPU or GPU autocast; fp16: CUDA only).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Overrides train.device.")
@_fail_cleanly
def train(config_path, dataset, run_dir: Path, epochs, seed, resume: bool, use_compile, grad_checkpointing,
          precision, device) -> None:
    """Train the sentry model on a dataset folder.

    Data-parallel on N processes: `torchrun --nproc_per_node N -m trainer.cli train ...`."""
    from .config import load_training_config
    from .loop import train as run_training
    overrides = {}
    if dataset:
        overrides["data.dataset"] = str(dataset)
    if epochs:
        overrides["train.epochs"] = epochs
    if seed is not None:
        overrides["train.seed"] = seed
    for key, value in (("use_compile", use_compile), ("gradient_checkpointing", grad_checkpointing),
                       ("precision", precision), ("device", device)):
        if value is not None:
            overrides[f"train.{key}"] = value
    from .plugins import PluginManager
    config = load_training_config(config_path, overrides)
    result = run_training(config, run_dir, resume=resume, plugins=PluginManager())
    if os.environ.get("RANK", "0") != "0":
        return  # under torchrun the summary comes once, from rank 0
    click.echo(f"trained {result.epochs_run} epoch(s) in {result.seconds:.0f} s; best epoch "
               f"{result.best_epoch} (val loss {result.best_val_loss:.4f}); {result.parameters} parameters")


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Default: RUN_DIR/export.")
@_fail_cleanly
def export(run_dir: Path, out) -> None:
    """Export RUN_DIR's best checkpoint to ONNX (fp32 + int8) with a manifest."""
    from .export import export_run
    from .plugins import PluginManager
    folder, manifest = export_run(run_dir, out, plugins=PluginManager())
    sizes = manifest.metrics["size_bytes"]
    int8 = (f"model.int8.onnx {sizes['model_int8'] / 1024:.0f} KB" if "model_int8" in sizes
            else "no model.int8.onnx (quantization moved the scores too far; see the warning)")
    click.echo(f"exported to {folder}: {manifest.parameters} parameters, model.onnx "
               f"{sizes['model'] / 1024:.0f} KB, {int8}")


@main.command()
@click.argument("model_dirs", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the ensemble to (an exported folder like any other).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0),
              help="The ensemble's threshold. Default: the mean of the members'; "
                   "`hark eval OUT --eval-root ...` then picks one on your eval set.")
@_fail_cleanly
def ensemble(model_dirs: tuple[Path, ...], out: Path, threshold) -> None:
    """Average exported models of one wake word (say, trainings with other seeds) into one.

    The result serves anywhere a model does: `hark-judge serve --model OUT` (the usual use:
    a judge that errs less on new voices than any one member), `hark eval`, the sentry."""
    from .ensemble import build_ensemble
    folder, manifest = build_ensemble(model_dirs, out, threshold=threshold)
    size = manifest.metrics["size_bytes"]["model"]
    click.echo(f"ensemble of {len(model_dirs)} models written to {folder}: "
               f"{manifest.parameters} parameters, model.onnx {size / 1024:.0f} KB, "
               f"threshold {manifest.threshold:.3f}")


@main.command(name="eval")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--eval-root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of evaluation sets (each with positive/ and negative_stream.wav).")
@click.option("--target-fa", type=float, default=0.5, show_default=True, help="Target false accepts per hour.")
@click.option("--int8", is_flag=True, help="Evaluate model.int8.onnx instead of model.onnx.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder (default MODEL_DIR).")
@click.option("--update-manifest/--no-update-manifest", default=True, show_default=True,
              help="Store the recommended threshold and metrics in the manifest.")
@_fail_cleanly
def evaluate(model_dir: Path, eval_root: Path, target_fa: float, int8: bool, out, update_manifest: bool) -> None:
    """Measure FRR and false accepts per hour on continuous audio; write JSON + DET curve."""
    from .pipeline import evaluate_and_report
    evaluate_and_report(model_dir, eval_root, target_fa=target_fa, int8=int8, out=out,
                        update_manifest=update_manifest)


@main.command()
@click.argument("phrase", default="hey jarvis")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("hark-runs"),
              show_default=True, help="Where data, runs and reports go.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fresh", is_flag=True, help="Delete earlier data and runs for this phrase first.")
@_fail_cleanly
def run(phrase: str, workdir: Path, config_path, fresh: bool) -> None:
    """The whole job: synthesize, train, export, evaluate, and scan a test recording."""
    from .pipeline import run_all
    summary = run_all(phrase, workdir, config_path=config_path, fresh=fresh)
    click.echo(json.dumps(summary, indent=2))


@main.group()
def cascade() -> None:
    """The sentry + judge cascade."""


@cascade.command(name="eval")
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--eval-root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of evaluation sets (each with positive/ and negative_stream.wav).")
@click.option("--judge-model", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The judge's exported model, scored in-process (default: MODEL_DIR itself).")
@click.option("--judge-url", help="Ask a running `hark-judge serve` instead, e.g. http://127.0.0.1:8080.")
@click.option("--judge-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File whose first line is the judge's API key (with --judge-url).")
@click.option("--sentry-threshold", type=click.FloatRange(0.0, 1.0),
              help="Sentry threshold (default: its manifest's).")
@click.option("--judge-threshold", type=click.FloatRange(0.0, 1.0),
              help="Judge threshold (default: the judge's own).")
@click.option("--seed", type=int, default=0, show_default=True, help="Gaps of the positive stream.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report (default MODEL_DIR/cascade_report.json).")
@_fail_cleanly
def cascade_eval(model_dir: Path, eval_root: Path, judge_model, judge_url, judge_key_file,
                 sentry_threshold, judge_threshold, seed: int, out) -> None:
    """FRR and false accepts per hour of the sentry alone and of sentry + judge."""
    from sentry.judge_client import read_key_file

    from .cascade import (
        REPORT_JSON,
        evaluate_cascade,
        format_cascade_table,
        write_cascade_report,
    )
    if judge_key_file and not judge_url:
        raise click.UsageError("--judge-key-file goes with --judge-url")
    from sentry.errors import SentryError
    try:
        key = read_key_file(judge_key_file) if judge_key_file else None
    except SentryError as exc:
        raise click.ClickException(str(exc)) from exc
    reports = evaluate_cascade(model_dir, eval_root, judge_dir=judge_model, judge_url=judge_url,
                               judge_key=key, sentry_threshold=sentry_threshold,
                               judge_threshold=judge_threshold, seed=seed)
    context = {"sentry_model": str(model_dir), "judge": judge_url or str(judge_model or model_dir),
               "eval_root": str(eval_root), "seed": seed}
    path = write_cascade_report(reports, out or model_dir / REPORT_JSON, context)
    click.echo(format_cascade_table(reports))
    click.echo(f"report: {path}", err=True)


@main.group(name="config")
def config_group() -> None:
    """Check training configs before a long run."""


@config_group.command(name="validate")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="TOML or YAML config (default: the built-in defaults).")
@_fail_cleanly
def config_validate(config_path) -> None:
    """Check a config's keys, types and values and its distillation teachers (files exist and
    load, architectures and feature settings match); list every problem with its key."""
    from .config import load_config, validate
    from .plugins import PluginManager
    from .teachers import inspect_teachers
    config = load_config(config_path, check=False)  # unknown keys / wrong types raise here
    teachers, teacher_problems = inspect_teachers(config, PluginManager().build_model)
    problems = validate(config) + teacher_problems
    source = config_path or "defaults"
    if problems:
        raise click.ClickException(f"{source}: {len(problems)} problem(s):\n  " + "\n  ".join(problems))
    summary = ", ".join(f"{t.role} {t.architecture} ({t.parameters} parameters)" for t in teachers)
    click.echo(f"{source}: OK" + (f"; distillation from {summary}" if summary else ""))


@main.command(name="plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_fail_cleanly
def list_plugins(as_json: bool) -> None:
    """List loaded trainer plugins, their versions, and what each registers."""
    from dataclasses import asdict

    from .plugins import PluginManager
    infos = PluginManager().plugins()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    for info in infos:
        click.echo(f"{info.name} {info.version}")
        for kind, names in info.registers.items():
            click.echo(f"  {kind}: {', '.join(names)}")
        events = [h for h in info.hooks if h.startswith("on_")]
        if events:
            click.echo(f"  hooks: {', '.join(events)}")
    if not infos:
        click.echo("no plugins loaded (all blocked?)")


from studio.server import studio as _studio

from .mining.cli import mine as _mine
from .mining.cli import queue as _queue
from .mining.cli import sessions as _sessions

for _command in (_mine, _queue, _sessions, _studio):
    main.add_command(_command)

if __name__ == "__main__":
    main()
