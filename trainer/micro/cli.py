"""`hark export-esphome`: the ESPHome micro_wake_word files from a run folder.

Imports only click here: TensorFlow and torch load when the command runs, so `hark` starts
without the [esphome] extra and says how to install it when the command is used.
"""

from __future__ import annotations

from pathlib import Path

import click

from trainer.clitools import fail_cleanly as _clean


@click.command(name="export-esphome")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for NAME.tflite and NAME.json. Default: RUN_DIR/esphome.")
@click.option("--name", help="File name stem. Default: the wake word, e.g. hey_jarvis.")
@click.option("--target-fa", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="False accepts per hour allowed when choosing probability_cutoff (on the "
                   "eval set the main trainer chooses on, or the validation split).")
@click.option("--eval-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Eval sets to choose the cutoff on. Default: DATASET/eval when present "
                   "(its espeak set, never heldout), else the dataset's validation split.")
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs when the micro student is "
                                                           "trained (default 6).")
@click.option("--retrain", is_flag=True, help="Train the micro student again even if "
                                              "RUN_DIR/micro/micro.pt exists.")
@click.option("--author", default="Hark", show_default=True, help="The manifest's author.")
@click.option("--website", default="https://github.com/hark-wakeword/hark", show_default=True,
              help="The manifest's website (a URL).")
@click.option("--language", "languages", multiple=True, default=("en",), show_default=True,
              help="A trained language for the manifest; repeat for several.")
@_clean
def export_esphome(run_dir: Path, out, name, target_fa: float, eval_root, epochs, retrain: bool,
                   author: str, website: str, languages: tuple[str, ...]) -> None:
    """Export RUN_DIR for ESPHome's micro_wake_word (needs the esphome extra).

    Trains a streaming int8 student on the chip's own features (TFLite Micro frontend) when
    RUN_DIR has none yet (a few CPU minutes), converts it to NAME.tflite, measures its tensor
    arena in TFLite Micro, chooses probability_cutoff (never on held-out audio), and writes the
    v2 manifest NAME.json. In ESPHome: `micro_wake_word: models: - model: path/NAME.json`."""
    from trainer.micro.esphome import export_esphome as run_export
    result = run_export(run_dir, out, name=name, target_fa=target_fa, eval_root=eval_root,
                        retrain=retrain,
                        epochs=epochs, author=author, website=website, languages=languages)
    row = result.chosen
    click.echo(f"wrote {result.manifest} and {result.tflite.name}: {result.size_bytes / 1024:.1f} KB "
               f"int8, {result.parameters} parameters, tensor arena {result.tensor_arena_size} "
               f"bytes; probability_cutoff {row['threshold']:.3f} (FRR {row['frr']:.1%}, "
               f"{row['fa_per_hour']:.2f} FA/h on the {row['chosen_on']})")
