"""`hark-sentry`: run an exported wake-word model on a file or on live audio."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .clitools import (
    MODEL_HELP,
    CommandGroup,
    model_option,
    setup_logging,
    user_errors,
    version_option,
)
from .constants import SAMPLE_RATE
from .daemon import Listener, MicrophoneSource, StdinSource, stop_on_signals
from .detector import Detection, Detector
from .errors import SentryError
from .wav import MAX_RATE, MIN_RATE

USER_ERRORS = (SentryError,)


def _user_errors():
    """The group's own path (sentry.clitools.user_errors), around the part of a command
    that can fail, so the summary lines after it print only on success."""
    return user_errors(USER_ERRORS)


def _format(detection: Detection, as_json: bool, verdict=None) -> str:
    """One output line; `verdict` (a judge_client.Verdict) when a judge was asked."""
    if as_json:
        record = detection.to_dict()
        if verdict is not None:
            record["judge"] = verdict.to_dict()
        return json.dumps(record)
    line = f"{detection.time_s:9.2f} s  {detection.wake_word}  (score {detection.score:.3f})"
    if verdict is not None:
        line += (f"  judge {verdict.score:.3f}" if verdict.source == "judge"
                 else f"  judge: none ({verdict.error}), {verdict.source}")
    return line


def _detector_options(f):
    f = click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
                     help="Smoothed score (0-1) needed to fire; default from the manifest.")(f)
    f = click.option("--int8", is_flag=True, help="Use the quantized classifier (model.int8.onnx).")(f)
    return f


@click.group(cls=CommandGroup, user_errors=USER_ERRORS)
@version_option("hark-sentry")
@click.option("-v", "--verbose", is_flag=True, help="Log what the runtime is doing to stderr.")
def cli(verbose: bool) -> None:
    """Hark's edge runtime: spot a custom wake word with an exported ONNX model."""
    setup_logging("hark-sentry", verbose)


@cli.command()
@click.argument("wav", type=click.Path(dir_okay=False, path_type=Path))
@model_option()
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


def _judge_options(f):
    f = click.option("--judge-deadline", type=click.FloatRange(min=0.01), default=None,
                     show_default="3 x --judge-timeout plus backoffs, 6.3 s",
                     help="Seconds a detection may wait for the judge in all, retries "
                          "included; past it --judge-policy decides.")(f)
    f = click.option("--judge-timeout", type=click.FloatRange(min=0.01), default=2.0,
                     show_default=True, help="Seconds one request to the judge may take in "
                                             "all: connect, send and the whole answer.")(f)
    f = click.option("--judge-policy", type=click.Choice(["fail-open", "fail-closed"]),
                     default="fail-open", show_default=True,
                     help="When the judge cannot be reached: act on the sentry alone "
                          "(fail-open) or drop the detection (fail-closed).")(f)
    f = click.option("--judge-key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                     default=None, help="File whose first line is the judge's API key.")(f)
    f = click.option("--judge-url", default=None,
                     help="Verify each detection with this judge, e.g. http://judge.local:8080.")(f)
    return f


@cli.command()
@model_option()
@click.option("--stdin-raw", is_flag=True,
              help="Read raw 16-bit little-endian mono PCM from stdin instead of a microphone.")
@click.option("--rate", type=click.IntRange(MIN_RATE, MAX_RATE), default=SAMPLE_RATE, show_default=True,
              help="Input sample rate in Hz; other rates than 16000 are resampled.")
@click.option("--device", default=None,
              help="Microphone: index or name as listed by `python -m sounddevice`.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per detection.")
@_detector_options
@_judge_options
def listen(model_dir: Path, stdin_raw: bool, rate: int, device: str | None, as_json: bool,
           int8: bool, threshold: float | None, judge_url: str | None,
           judge_key_file: Path | None, judge_policy: str, judge_timeout: float,
           judge_deadline: float | None) -> None:
    """Print detections from a microphone (or stdin) as they happen.

    With --judge-url, each detection is first verified by a judge server (`hark-judge
    serve`) and printed only if the judge agrees, or per --judge-policy when it cannot
    be reached; capture and scoring never wait for it. Stops cleanly at end of input,
    on Ctrl+C (SIGINT) or on SIGTERM.
    """
    if stdin_raw and device is not None:
        raise click.UsageError("--device selects a microphone; it cannot be combined with --stdin-raw")
    if judge_url is None and judge_key_file is not None:
        raise click.UsageError("--judge-key-file needs --judge-url")
    gate = None
    with _user_errors():
        detector = Detector(model_dir, int8=int8, threshold=threshold)
        if stdin_raw:
            source = StdinSource(sys.stdin.buffer, rate)
        else:
            mic = int(device) if device is not None and device.isdigit() else device
            source = MicrophoneSource(rate, mic)
        if judge_url is None:
            listener = Listener(detector, source,
                                lambda detection: click.echo(_format(detection, as_json)))
        else:
            gate = _judge_gate(judge_url, judge_key_file, judge_policy, judge_timeout,
                               judge_deadline, as_json)
            listener = Listener(detector, source, gate.on_detection, on_audio=gate.on_audio)
        where = "stdin" if stdin_raw else f"microphone {device if device is not None else '(default)'}"
        click.echo(f"listening for '{detector.wake_word}' on {where} at {rate} Hz "
                   "(Ctrl+C to stop)", err=True)
        try:
            with stop_on_signals(listener.stop):
                stats = listener.run()
        finally:
            verdicts = gate.close() if gate is not None else None
    click.echo(f"stopped after {stats.audio_s:.1f} s of audio: {stats.detections} detection(s), "
               f"{stats.dropped_chunks} dropped chunk(s)", err=True)
    if verdicts is not None:
        click.echo(f"judge: {verdicts.verified} verified, {verdicts.rejected} rejected, "
                   f"{verdicts.policy} decided by --judge-policy {judge_policy} "
                   f"({verdicts.fail_open} fail-open, {verdicts.fail_closed} fail-closed), "
                   f"{verdicts.undecided} undecided (no verdict when stopping)", err=True)


def _judge_gate(url: str, key_file: Path | None, policy: str, timeout_s: float,
                deadline_s: float | None, as_json: bool):
    """A JudgeGate that prints each detection the judge (or the policy) lets through."""
    from .judge_client import JudgeClient, read_key_file
    from .judge_gate import JudgeGate

    key = read_key_file(key_file) if key_file is not None else None
    client = JudgeClient(url, key, timeout_s=timeout_s, deadline_s=deadline_s, policy=policy)
    return JudgeGate(client, lambda detection, verdict: click.echo(
        _format(detection, as_json, verdict)))


WYOMING_URI = "tcp://127.0.0.1:10400"
"""10400 is the port Home Assistant's Wyoming wake-word services (openWakeWord) use."""


@cli.command("wyoming")
@click.option("--uri", default=WYOMING_URI, show_default=True,
              help="Where to listen: tcp://HOST:PORT (tcp://0.0.0.0:10400 lets Home Assistant "
                   "on another machine connect) or unix://PATH.")
@model_option(help=MODEL_HELP + " Repeat to serve several wake words on one stream.", multiple=True,
              old=("--model-dir",), dest="model_dirs")
@click.option("--threshold", type=click.FloatRange(0.0, 1.0), default=None,
              help="Smoothed score (0-1) needed to fire, for every model; default from each manifest.")
@click.option("--trigger-level", type=click.IntRange(min=1), default=1, show_default=True,
              help="Consecutive 80 ms hops at or above the threshold before a detection is sent.")
@click.option("--refractory-s", type=click.FloatRange(min=0.0), default=None,
              help="Seconds a model stays quiet after a detection; default from each manifest.")
@click.option("--int8", is_flag=True, help="Use the quantized classifiers (model.int8.onnx).")
@_judge_options
def wyoming_service(uri: str, model_dirs: tuple[Path, ...], threshold: float | None,
                    trigger_level: int, refractory_s: float | None, int8: bool,
                    judge_url: str | None, judge_key_file: Path | None, judge_policy: str,
                    judge_timeout: float, judge_deadline: float | None) -> None:
    """Serve wake words to Home Assistant over the Wyoming protocol.

    Add it in Home Assistant under Settings > Devices & services > Add integration >
    Wyoming Protocol, with this machine's host name and port. With --judge-url each
    detection is verified by a judge first (a judge serves one wake word, so one
    --model). Needs `pip install "hark-wakeword[wyoming]"`. Stops on Ctrl+C or SIGTERM.
    """
    import asyncio

    if judge_url is None and judge_key_file is not None:
        raise click.UsageError("--judge-key-file needs --judge-url")
    if judge_url is not None and len(model_dirs) > 1:
        raise click.UsageError("a judge verifies one wake word: --judge-url takes one --model; "
                               "run one service per judged wake word")
    with _user_errors():
        from .judge_client import JudgeClient, read_key_file
        from .wyoming import WakeService, judge_verifier, serve

        verify = None
        if judge_url is not None:
            key = read_key_file(judge_key_file) if judge_key_file is not None else None
            verify = judge_verifier(JudgeClient(judge_url, key, timeout_s=judge_timeout,
                                                deadline_s=judge_deadline, policy=judge_policy))
        service = WakeService(model_dirs, threshold=threshold, trigger_level=trigger_level,
                              refractory_s=refractory_s, int8=int8, verify=verify)
        names = ", ".join(f"'{model.name}'" for model in service.models)
        judged = f", verified by {judge_url}" if judge_url else ""
        asyncio.run(serve(service, uri, on_ready=lambda: click.echo(
            f"serving {names}{judged} over Wyoming on {uri} (Ctrl+C to stop)", err=True)))
    click.echo("stopped", err=True)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (`hark-sentry`); argv defaults to sys.argv[1:]."""
    cli.main(args=argv, prog_name="hark-sentry")


if __name__ == "__main__":
    main()
