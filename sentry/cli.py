"""`hark-sentry`: run an exported wake-word model on a file or on live audio."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Iterator

import click

from . import __version__
from .constants import SAMPLE_RATE
from .daemon import Listener, MicrophoneSource, StdinSource, stop_on_signals
from .detector import Detection, Detector
from .errors import SentryError

MODEL_HELP = "Model folder written by `hark export` (holds manifest.json)."


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Every SentryError is the user's to fix: a message and exit 1, no traceback."""
    try:
        yield
    except SentryError as exc:
        raise click.ClickException(str(exc)) from exc


def _format(detection: Detection, as_json: bool) -> str:
    if as_json:
        return json.dumps(detection.to_dict())
    return f"{detection.time_s:9.2f} s  {detection.wake_word}  (score {detection.score:.3f})"


def _model_option(f):
    return click.option("--model", "model_dir", required=True,
                        type=click.Path(exists=True, file_okay=False, path_type=Path),
                        help=MODEL_HELP)(f)


def _detector_options(f):
    f = click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
                     help="Smoothed score (0-1) needed to fire; default from the manifest.")(f)
    f = click.option("--int8", is_flag=True, help="Use the quantized classifier (model.int8.onnx).")(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hark-sentry")
@click.option("-v", "--verbose", is_flag=True, help="Log what the runtime is doing to stderr.")
def cli(verbose: bool) -> None:
    """Hark's edge runtime: spot a custom wake word with an exported ONNX model."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="hark-sentry: %(message)s")


@cli.command()
@click.argument("wav", type=click.Path(dir_okay=False, path_type=Path))
@_model_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per detection.")
@_detector_options
def scan(wav: Path, model_dir: Path, as_json: bool, int8: bool, threshold: float | None) -> None:
    """Report every wake word in a WAV file (any rate or channel count).

    Prints one line per detection (time in seconds from the start of the file) and a
    summary on stderr.
    """
    from .audio import read_wav

    with _user_errors():
        detector = Detector(model_dir, int8=int8, threshold=threshold)
        audio = read_wav(wav)
        detections = detector.detect_pcm(audio)
    for detection in detections:
        click.echo(_format(detection, as_json))
    duration = audio.size / SAMPLE_RATE
    click.echo(f"{len(detections)} detection(s) of '{detector.wake_word}' in {duration:.1f} s "
               f"of {wav} (threshold {detector.settings.threshold:g})", err=True)


@cli.command()
@_model_option
@click.option("--stdin-raw", is_flag=True,
              help="Read raw 16-bit little-endian mono PCM from stdin instead of a microphone.")
@click.option("--rate", type=click.IntRange(min=1), default=SAMPLE_RATE, show_default=True,
              help="Input sample rate in Hz; other rates than 16000 are resampled.")
@click.option("--device", default=None,
              help="Microphone: index or name as listed by `python -m sounddevice`.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per detection.")
@_detector_options
def listen(model_dir: Path, stdin_raw: bool, rate: int, device: str | None, as_json: bool,
           int8: bool, threshold: float | None) -> None:
    """Print detections from a microphone (or stdin) as they happen.

    Stops cleanly at end of input, on Ctrl+C (SIGINT) or on SIGTERM.
    """
    if stdin_raw and device is not None:
        raise click.UsageError("--device selects a microphone; it cannot be combined with --stdin-raw")
    with _user_errors():
        detector = Detector(model_dir, int8=int8, threshold=threshold)
        if stdin_raw:
            source = StdinSource(sys.stdin.buffer, rate)
        else:
            mic = int(device) if device is not None and device.isdigit() else device
            source = MicrophoneSource(rate, mic)
        listener = Listener(detector, source,
                            lambda detection: click.echo(_format(detection, as_json)))
        where = "stdin" if stdin_raw else f"microphone {device if device is not None else '(default)'}"
        click.echo(f"listening for '{detector.wake_word}' on {where} at {rate} Hz "
                   "(Ctrl+C to stop)", err=True)
        with stop_on_signals(listener.stop):
            stats = listener.run()
    click.echo(f"stopped after {stats.audio_s:.1f} s of audio: {stats.detections} detection(s), "
               f"{stats.dropped_chunks} dropped chunk(s)", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`hark-sentry`); argv defaults to sys.argv[1:]."""
    cli.main(args=argv, prog_name="hark-sentry")


if __name__ == "__main__":
    main()
