"""`hark`: the dev-box command line (synthesize, train, export, evaluate, run it all)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import click

from sentry.clitools import (
    CommandGroup,
    UserError,
    model_option,
    pick_model,
    setup_logging,
    version_option,
)
from sentry.version import DISTRIBUTION

from .clitools import USER_ERRORS
from .clitools import fail_cleanly as _fail_cleanly
from .synth.defaults import EVAL_MINUTES, SEED, WITH_EVAL

OPTIONAL_EXTRAS = ("flask", "waitress", "werkzeug")
"""Packages only the studio extra installs: `hark` starts without them."""


class HarkGroup(CommandGroup):
    """`hark`'s commands, with `hark studio` imported only when it is asked for: the studio
    needs Flask (the studio extra), and `hark mine` or `hark train` must not load it."""

    LAZY = ("studio",)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "studio":
            return studio_command()
        return super().get_command(ctx, name)


def studio_command() -> click.Command:
    """`hark studio`, or, without the studio extra, a command that says how to install it."""
    try:
        from studio.server import studio
    except ImportError as exc:
        if (exc.name or "").split(".")[0] not in OPTIONAL_EXTRAS:
            raise
        missing = exc.name
    else:
        return studio

    @click.command(name="studio", context_settings={"ignore_unknown_options": True,
                                                    "allow_extra_args": True})
    def studio_missing() -> None:
        """Hark Studio, the workflow in a browser (needs the studio extra)."""
        raise UserError(f"hark studio needs {missing}, which the studio extra installs: "
                        f'pip install "{DISTRIBUTION}[studio]"')
    return studio_missing


@click.group(cls=HarkGroup, user_errors=USER_ERRORS)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@version_option("hark")
def main(verbose: bool) -> None:
    """Hark: train a custom wake word, export it for the edge, measure it honestly."""
    # Our own progress is INFO; the ONNX exporter's internals stay quiet unless -v.
    setup_logging("hark", verbose, level=logging.INFO)


@main.command()
@click.argument("phrase")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder to create (standard layout).")
@click.option("--positives", type=int, default=None, help="Positive clips (default 3000).")
@click.option("--negatives", type=int, default=None, help="Ordinary-speech negative clips (default 3000).")
@click.option("--neighbours", type=int, default=None, help="Phonetic-neighbour hard negatives (default 3000).")
@click.option("--eval/--no-eval", "with_eval", default=WITH_EVAL, show_default=True,
              help="Also write held-out evaluation sets under OUT/eval.")
@click.option("--eval-minutes", type=click.FloatRange(min=0.5), default=EVAL_MINUTES, show_default=True,
              help="Minutes of continuous negative audio in each eval set (FA/h resolution).")
@click.option("--seed", type=int, default=SEED, show_default=True)
@click.option("--engine", "engines", type=click.Choice(["espeak", "dectalk", "pico", "kokoro"]),
              multiple=True,
              help="Speech engines to use (repeat the option; espeak is always one). Default: "
                   "espeak and, where installed, DECtalk (scripts/install_dectalk.sh) and "
                   "SVOX Pico (the pico extra). kokoro (neural, the kokoro extra) is off unless "
                   "named or given a --kokoro-share.")
@click.option("--kokoro-share", type=click.FloatRange(0.0, 0.6), default=None,
              help="Share of the speech Kokoro-82M says (default 0; 0.15 when --engine kokoro "
                   "is named).")
@click.option("--sentence-share", type=click.FloatRange(0.0, 1.0), default=None,
              help="Share of positives and phonetic neighbours said at the end of a sentence "
                   "(default 0.3).")
@click.option("--licence-clean", "--license-clean", "licence_clean", is_flag=True,
              help="Only engines whose licences allow commercial use of their output "
                   "(espeak-ng, SVOX Pico); leaves DECtalk (licence unclear) out.")
@click.option("--overwrite", is_flag=True, help="Replace an existing dataset folder.")
@_fail_cleanly
def synth(phrase: str, out: Path, positives, negatives, neighbours, with_eval: bool,
          eval_minutes: float, seed: int, engines: tuple[str, ...], kokoro_share,
          sentence_share, licence_clean: bool, overwrite: bool) -> None:
    """Synthesize a training dataset for PHRASE with espeak-ng, DECtalk and Pico voices."""
    from .pipeline import synth_all
    synth_all(phrase, out, positives=positives, negatives=negatives, neighbours=neighbours,
              with_eval=with_eval, eval_minutes=eval_minutes, seed=seed, overwrite=overwrite,
              engines=engines or None, licence_clean=licence_clean, kokoro_share=kokoro_share,
              sentence_share=sentence_share)


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
@click.option("--epochs", type=int, help="Overrides train.epochs (at least 1).")
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
    if epochs is not None:  # 0 too: the config's check refuses it with its key
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
@click.argument("legacy_models", metavar="[MODEL_DIRS]...", nargs=-1,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option(help="An exported member model; repeat for each (MODEL_DIRS as arguments: the old "
                   "spelling, still accepted).", required=False, multiple=True, dest="model_dirs")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write the ensemble to (an exported folder like any other).")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0),
              help="The ensemble's threshold. Default: the mean of the members'; "
                   "`hark eval --model OUT --eval-root ...` then picks one on your eval set.")
@_fail_cleanly
def ensemble(legacy_models: tuple[Path, ...], model_dirs: tuple[Path, ...], out: Path, threshold) -> None:
    """Average exported models of one wake word (say, trainings with other seeds) into one:
    `hark ensemble --model A --model B --out OUT`.

    The result serves anywhere a model does: `hark-judge serve --model OUT` (the usual use:
    a judge that errs less on new voices than any one member), `hark eval`, the sentry."""
    from .ensemble import build_ensemble
    model_dirs = (*model_dirs, *legacy_models)
    if not model_dirs:
        raise click.UsageError("Missing option '--model' (repeat it for each member).")
    folder, manifest = build_ensemble(model_dirs, out, threshold=threshold)
    size = manifest.metrics["size_bytes"]["model"]
    click.echo(f"ensemble of {len(model_dirs)} models written to {folder}: "
               f"{manifest.parameters} parameters, model.onnx {size / 1024:.0f} KB, "
               f"threshold {manifest.threshold:.3f}")


@main.command(name="eval")
@click.argument("legacy_model", metavar="[MODEL_DIR]", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option(required=False, help="Exported model folder to evaluate (MODEL_DIR as an argument: "
                                   "the old spelling, still accepted).")
@click.option("--eval-root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of evaluation sets (each with positive/ and negative_stream.wav).")
@click.option("--target-fa", type=float, default=0.5, show_default=True, help="Target false accepts per hour.")
@click.option("--int8", is_flag=True, help="Evaluate model.int8.onnx instead of model.onnx.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Report folder (default: the model's).")
@click.option("--update-manifest/--no-update-manifest", default=True, show_default=True,
              help="Store the recommended threshold and metrics in the manifest.")
@_fail_cleanly
def evaluate(legacy_model, model_dir, eval_root: Path, target_fa: float, int8: bool, out,
             update_manifest: bool) -> None:
    """Measure FRR and false accepts per hour on continuous audio; write JSON + DET curve."""
    from .pipeline import evaluate_and_report
    model_dir = pick_model(model_dir, legacy_model)
    evaluate_and_report(model_dir, eval_root, target_fa=target_fa, int8=int8, out=out,
                        update_manifest=update_manifest)


@main.command()
@click.argument("phrase", default="hey jarvis")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path("hark-runs"),
              show_default=True, help="Where data, runs and reports go.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--fresh", is_flag=True, help="Delete earlier data and runs for this phrase first.")
@click.option("--licence-clean", "--license-clean", "licence_clean", is_flag=True,
              help="Synthesize only with engines whose licences allow commercial use of their "
                   "output (as `hark synth --licence-clean`).")
@click.option("--quick", is_flag=True,
              help="One training round and no judge (about a third of the time; misses more "
                   "and fires more: see README).")
@_fail_cleanly
def run(phrase: str, workdir: Path, config_path, fresh: bool, licence_clean: bool,
        quick: bool) -> None:
    """The whole job: synthesize; train; mine the model's false accepts from hours of negative
    speech in the training voices and train again (the sentry); ensemble both rounds (the
    judge); evaluate both, choosing thresholds on the calibration set; scan a test recording."""
    from .pipeline import QUICK, Recipe, run_all
    summary = run_all(phrase, workdir, config_path=config_path, fresh=fresh,
                      licence_clean=licence_clean, recipe=QUICK if quick else Recipe())
    click.echo(json.dumps(summary, indent=2))


@main.group()
def cascade() -> None:
    """The sentry + judge cascade."""


@cascade.command(name="eval")
@click.argument("legacy_model", metavar="[MODEL_DIR]", required=False,
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@model_option(required=False, help="The sentry's exported model (MODEL_DIR as an argument: the "
                                   "old spelling, still accepted).")
@click.option("--eval-root", type=click.Path(exists=True, file_okay=False, path_type=Path), required=True,
              help="Folder of evaluation sets (each with positive/ and negative_stream.wav).")
@click.option("--judge-model", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The judge's exported model, scored in-process (default: --model itself).")
@click.option("--judge-url", help="Ask a running `hark-judge serve` instead, e.g. http://127.0.0.1:8080.")
@click.option("--judge-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File whose first line is the judge's API key (with --judge-url).")
@click.option("--sentry-threshold", type=click.FloatRange(0.0, 1.0),
              help="Sentry threshold (default: its manifest's).")
@click.option("--judge-threshold", type=click.FloatRange(0.0, 1.0),
              help="Judge threshold (default: the judge's own).")
@click.option("--seed", type=int, default=0, show_default=True, help="Gaps of the positive stream.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="JSON report (default: cascade_report.json in the sentry's model folder).")
@_fail_cleanly
def cascade_eval(legacy_model, model_dir, eval_root: Path, judge_model, judge_url, judge_key_file,
                 sentry_threshold, judge_threshold, seed: int, out) -> None:
    """FRR and false accepts per hour of the sentry alone and of sentry + judge."""
    from sentry.judge_client import read_key_file

    from .cascade import (
        REPORT_JSON,
        evaluate_cascade,
        format_cascade_table,
        write_cascade_report,
    )
    model_dir = pick_model(model_dir, legacy_model)
    if judge_key_file and not judge_url:
        raise click.UsageError("--judge-key-file goes with --judge-url")
    key = read_key_file(judge_key_file) if judge_key_file else None
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
    from .config import load_config
    from .plugins import PluginManager
    from .teachers import inspect_teachers
    from .validate import check_config, registered_names
    config = load_config(config_path, check=False)  # unknown keys / wrong types raise here
    plugins = PluginManager()  # the one manager of this check: teachers and plugin names
    teachers, teacher_problems = inspect_teachers(config, plugins.build_model)
    problems = check_config(config, registered_names(plugins)) + teacher_problems  # as the studio's Config panel
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


from .mining.cli import mine as _mine  # noqa: E402 - torch-free, added once main exists
from .mining.cli import queue as _queue  # noqa: E402
from .mining.cli import sessions as _sessions  # noqa: E402
from .micro.cli import export_esphome as _export_esphome  # noqa: E402 - click only

for _command in (_mine, _queue, _sessions, _export_esphome):
    main.add_command(_command)

if __name__ == "__main__":
    main()
