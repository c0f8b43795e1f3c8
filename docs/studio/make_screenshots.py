"""The README's Hark Studio screenshots, taken from a real model and dataset.

    .venv/bin/python docs/studio/make_screenshots.py --data /tmp/hark-bench3/data/hey_jarvis \
        --run /tmp/hark-bench3/runs/hey_jarvis --out docs/studio

A throwaway workspace gets the dataset (hard links) and a copy of the run; a real `hark studio`
and a real `hark-judge serve` run on loopback, and headless Chromium drives every panel as a
person would: check the data, set two distillation teachers, watch a short training run, evaluate
the model and score a clip, mine a recording and review the hits, verify a clip with the judge,
look at the export. OUT/NAME.png (1280 px wide, full page) are written only when all seven
succeed. The browser tests in tests/integration/studio/ prove the panels work; this takes pictures.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from sentry.audio import read_wav
from sentry.constants import HOP_SAMPLES, OVERLAP_SAMPLES, SAMPLE_RATE
from trainer.config import load_config, to_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HARK_CHROMIUM", "/usr/bin/chromium")
PANELS = ("data", "config", "train", "evaluate", "mining", "cascade", "export")
WIDTH_PX, HEIGHT_PX = 1280, 900
START_TIMEOUT_S, UI_TIMEOUT_MS, JOB_TIMEOUT_MS = 120.0, 60_000, 600_000
"""A studio or judge starting; an element or expectation; a background job, on two busy cores."""
DATASET, RUN, QUICK_RUN = "hey_jarvis", "hey_jarvis", "hey_jarvis_quick"
QUICK_EPOCHS, TRAIN_POINTS = 5, 8
"""The live run's length; its screenshot waits for 8 chart points (2 series: 4 epochs)."""
RECORDING_MIN, WAKE_WORDS_IN_RECORDING, POSITIVE_STRIDE = 10, 8, 37
"""The recording to mine; every 37th held-out positive is used: a spread of voices, not easy ones."""
CLIP_FROM_S = 20 * 60
"""Where the short test clips take their background speech: past the recording's."""
HIT_MATCH_S = (1.5, 3.0)
"""A mined hit from 1.5 s before to 3 s after a mixed-in wake word's start is that wake word."""
KEY = "docs-screenshots-key-0123456789"
FEATURE_TOLERANCE = 1e-2
"""Normalised log-mel difference up to which two frontends are the same (`hark export`'s bound)."""


class Server:
    """A subprocess that prints `serving ... on http://HOST:PORT` on stderr once it listens."""

    def __init__(self, argv: list[str], env: dict[str, str], ready: str = "/") -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env})
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline, match = time.monotonic() + START_TIMEOUT_S, None
        while match is None:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise SystemExit(f"{' '.join(argv[1:4])} did not start:\n{''.join(self.stderr)}") from None
            match = re.search(r"serving .* on (http://\S+)", line)
        self.url = match.group(1).partition("?token=")[0].rstrip("/")
        while self.proc.poll() is None:  # a judge loads its model after binding the port
            try:
                with urllib.request.urlopen(self.url + ready, timeout=2.0) as response:
                    if response.status == 200:
                        return
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"{self.url}{ready} never became ready:\n{''.join(self.stderr)}")

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # the studio stops its own jobs on SIGTERM
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ------------------------------------------------------------------ workspace and audio

def link_tree(source: Path, dest: Path) -> None:
    """`cp -al` for audio (a copy across file systems); other files are copied, so nothing the
    studio writes into the workspace's dataset can reach the original."""
    for path in sorted(source.rglob("*")):
        target = dest / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if path.suffix.lower() not in (".wav", ".flac", ".ogg"):
                raise OSError("copied, not linked")
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)


def stamp_features(run: Path) -> None:
    """A run saved before checkpoints recorded their frontend cannot be a teacher (the Config
    panel asks to retrain it). Its export's features.onnx is the frontend it was trained with:
    when that computes what today's LogMel computes, today's settings go into this copy."""
    import onnxruntime
    import torch

    from trainer.features import LogMel
    from trainer.teachers import feature_settings

    path = run / "checkpoints" / "best.pt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if "features" in checkpoint:
        return
    pcm = np.random.default_rng(0).uniform(-0.5, 0.5, (8, OVERLAP_SAMPLES + HOP_SAMPLES)).astype(np.float32)
    then = onnxruntime.InferenceSession(str(run / "export" / "features.onnx")).run(None, {"pcm": pcm})[0]
    with torch.no_grad():
        now = LogMel()(torch.from_numpy(pcm)).numpy()
    if np.abs(then - now).max() > FEATURE_TOLERANCE:
        raise SystemExit(f"{path} records no feature settings and its features.onnx differs from "
                         "today's frontend: retrain the run")
    checkpoint["features"] = feature_settings()
    torch.save(checkpoint, path)


def make_workspace(data: Path, run: Path, ws: Path) -> None:
    link_tree(data, ws / "data" / DATASET)
    shutil.copytree(run, ws / "runs" / RUN, ignore=shutil.ignore_patterns("*.wav"))
    stamp_features(ws / "runs" / RUN)
    (ws / "configs").mkdir()
    for name, overrides in ((RUN, {}), (QUICK_RUN, {"train.epochs": QUICK_EPOCHS, "train.threads": 1})):
        config = load_config(run / "config.toml", {"data.dataset": str(ws / "data" / DATASET), **overrides})
        (ws / "configs" / f"{name}.toml").write_text(to_toml(config.to_dict()))


def positives(dataset: Path, name: str) -> list[np.ndarray]:
    """Every POSITIVE_STRIDE-th positive of eval set NAME (float32, 16 kHz)."""
    return [read_wav(p) for p in sorted((dataset / "eval" / name / "positive").glob("*.wav"))[::POSITIVE_STRIDE]]


def mix(path: Path, negative: np.ndarray, clips: list[np.ndarray], seconds: float, skip_s: float = 0.0) -> list[float]:
    """PATH: SECONDS of NEGATIVE (looped, from SKIP_S on) with CLIPS spread evenly across it
    (16 kHz WAV). Returns where each clip starts (seconds)."""
    n, skip = int(seconds * SAMPLE_RATE), int(skip_s * SAMPLE_RATE)
    audio = np.tile(negative, -(-(n + skip) // negative.size))[skip:skip + n].copy()
    starts = [int((k + 0.25) * n / len(clips)) for k in range(len(clips))]
    for clip, at in zip(clips, starts):
        audio[at:at + clip.size] += clip
    sf.write(path, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return [at / SAMPLE_RATE for at in starts]


# ------------------------------------------------------------------ the panels

@dataclass
class Ui:
    page: Any
    base: str
    expect: Any

    def open(self, name: str):
        """Show panel NAME; returns its section (other panels stay in the page, hidden)."""
        self.page.goto(f"{self.base}/#{name}")
        return self.page.locator(f"#panel-{name}")


def data_panel(ui: Ui) -> None:
    panel = ui.open("data")
    ui.expect(panel.get_by_label("Dataset", exact=True)).to_have_value(DATASET)
    ui.expect(panel.locator("tr[data-class=positive] [data-col=total]")).not_to_have_text("0")
    panel.get_by_label("Class to listen to").select_option("positive")
    audio = panel.locator("[data-card=listen] audio").first
    ui.page.wait_for_function("el => el.readyState >= 1 && el.duration > 0", arg=audio.element_handle())


def config_panel(ui: Ui) -> None:
    panel = ui.open("config")
    panel.get_by_label("Saved configs").select_option(RUN)
    panel.get_by_role("button", name="Load").click()
    ui.expect(panel.get_by_label("model.channels")).to_have_value("48, 64, 64, 96, 96")
    panel.get_by_label("distill.mode").select_option("dual")
    for title in ("Primary teacher", "Secondary teacher"):
        panel.get_by_label(f"{title} from a workspace run").select_option(label=f"{RUN} (tcresnet)")
    panel.get_by_label("distill.secondary_teacher_architecture").select_option("tcresnet")
    panel.locator("details[data-group=distill] summary").click()  # the rest of the distillation settings
    panel.get_by_label("Config name").fill(f"{RUN}_distilled")
    panel.get_by_role("button", name="Save").click()
    ui.expect(panel.get_by_label("Saved configs")).to_have_value(f"{RUN}_distilled")
    ui.expect(panel.locator("[data-role=config-status]")).to_contain_text("secondary teacher: tcresnet")


def train_panel(ui: Ui) -> None:
    panel = ui.open("train")
    panel.get_by_label("Config", exact=True).select_option(QUICK_RUN)
    panel.get_by_label("Dataset", exact=True).select_option(DATASET)
    panel.get_by_label("Run name").fill(QUICK_RUN)
    panel.get_by_role("button", name="Start").click()
    ui.page.wait_for_function("n => Number(document.querySelector('[data-role=loss-chart] svg.chart')"
                              "?.dataset.points) >= n", arg=TRAIN_POINTS, timeout=JOB_TIMEOUT_MS)
    ui.expect(panel.locator("[data-role=run-progress]")).to_contain_text("left")


def evaluate_panel(ui: Ui, clip: Path) -> None:
    train = ui.open("train")  # the live run has been seen: its CPU is better spent evaluating
    train.get_by_role("button", name="Stop").click()
    ui.expect(train.locator("[data-role=job-state]")).to_have_text(re.compile("stopped|done"), timeout=JOB_TIMEOUT_MS)
    panel = ui.open("evaluate")
    panel.get_by_label("Model (run)").select_option(RUN)
    panel.get_by_label("Dataset").select_option(DATASET)
    panel.get_by_role("button", name="Evaluate", exact=True).click()
    state = panel.locator('[data-job-kind="eval"] [data-role="job-state"]')
    ui.expect(state).to_have_text("running")
    ui.expect(state).to_have_text("done", timeout=JOB_TIMEOUT_MS)
    ui.expect(panel.locator('[data-role="picked-threshold"]')).not_to_be_empty()
    panel.get_by_label("Audio file").set_input_files(str(clip))
    panel.get_by_role("button", name="Score file").click()
    ui.expect(panel.locator('[data-role="score-status"]')).to_contain_text("channel")


def mining_panel(ui: Ui, starts: list[float]) -> None:
    panel = ui.open("mining")
    panel.get_by_role("tab", name="Background Miner").click()
    panel.locator('[data-role="filebrowser"] [data-path="recordings"]').dblclick()
    panel.locator('[data-role="filebrowser"] [data-path="recordings/kitchen_evening.wav"]').click()
    panel.get_by_role("button", name="Add file to recordings").click()
    panel.get_by_label("Session name").fill("kitchen")
    panel.get_by_label("Model (exported run)").select_option(RUN)
    panel.get_by_label("Dataset for confirmed hits").select_option(DATASET)
    panel.get_by_role("button", name="Start mining").click()
    row = panel.locator('tr[data-session="kitchen"]')
    ui.expect(row.locator('[data-role="session-state"]')).to_have_text("complete", timeout=JOB_TIMEOUT_MS)
    row.get_by_role("button", name="Review").click()
    hits = panel.locator('[data-role="hits"] tbody tr[data-hit-id]')
    ui.expect(hits.first).to_be_visible()
    # A reviewer listens: the best hit on a mixed-in wake word, and the best one elsewhere.
    done = set()
    for i in range(hits.count()):
        hit = hits.nth(i)
        offset = float(hit.locator("td").nth(4).inner_text().split()[0])
        real = any(s - HIT_MATCH_S[0] <= offset <= s + HIT_MATCH_S[1] for s in starts)
        if real in done:
            continue
        done.add(real)
        hit_id = hit.get_attribute("data-hit-id")
        panel.get_by_role("checkbox", name=f"Select hit {hit_id}", exact=True).check()
        panel.get_by_role("button", name="Confirm as wake word" if real else "Confirm as false activation").click()
        ui.expect(panel.locator(f'tr[data-hit-id="{hit_id}"] [data-role="hit-status"]')).to_contain_text("confirmed")


def cascade_panel(ui: Ui, judge_url: str, clip: Path) -> None:
    panel = ui.open("cascade")
    panel.get_by_label("Judge URL").fill(judge_url)
    panel.get_by_label("API key").fill(KEY)
    panel.get_by_role("button", name="Check health").click()
    ui.expect(panel.locator('[data-role="health-status"]')).to_have_attribute("data-status", "ok")
    panel.get_by_label("Sentry model (exported run)").select_option(RUN)
    panel.get_by_label("WAV file").set_input_files(str(clip))
    panel.get_by_role("button", name="Verify with Judge").click()
    ui.expect(panel.locator('[data-field="judge-verdict"]')).to_have_text(re.compile("^(verified|rejected)$"))


def export_panel(ui: Ui) -> None:
    panel = ui.open("export")
    panel.get_by_label("Run").select_option(RUN)
    ui.expect(panel.locator('[data-role="manifest-table"]')).to_contain_text("hey jarvis")


# ------------------------------------------------------------------ main

def check_inputs(data: Path, run: Path) -> None:
    problems = []
    if not Path(CHROMIUM).is_file():
        problems.append(f"{CHROMIUM} is missing: install Debian's chromium package (./run.sh does) or set $HARK_CHROMIUM")
    for name in ("espeak", "heldout"):
        if not (data / "eval" / name / "negative_stream.wav").is_file():
            problems.append(f"{data}: no eval/{name}/negative_stream.wav (make the dataset with `hark synth`)")
    for need in ("checkpoints/best.pt", "config.toml", "export/manifest.json"):
        if not (run / need).is_file():
            problems.append(f"{run}: no {need} (train and export the run first)")
    if problems:
        raise SystemExit("cannot take the screenshots:\n  " + "\n  ".join(problems))


def take_screenshots(ws: Path, tmp: Path, shots: Path, starts: list[float], clips: dict[str, Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    servers, errors = [], []

    def interrupted(signum: int, _frame: Any) -> None:
        # Playwright's sync API swallows KeyboardInterrupt while it waits, so clean up here.
        print(f"{signal.Signals(signum).name}: stopping the studio and the judge", file=sys.stderr)
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        os._exit(128 + signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupted)
    try:
        studio = Server([sys.executable, "-m", "trainer.cli", "studio", "--workspace", str(ws), "--port", "0",
                         "--root", f"recordings={tmp / 'recordings'}"], {"HARK_STUDIO_TOKEN": ""}, ready="/api/state")
        servers.append(studio)
        (tmp / "judge-keys").write_text(f"{KEY}\n")
        judge = Server([sys.executable, "-m", "judge.cli", "serve", "--model", str(ws / "runs" / RUN / "export"),
                        "--port", "0", "--workers", "1", "--keys-file", str(tmp / "judge-keys")],
                       {"HARK_JUDGE_KEYS": ""}, ready="/readyz")
        servers.append(judge)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--no-sandbox"])
            context = browser.new_context(viewport={"width": WIDTH_PX, "height": HEIGHT_PX}, permissions=["microphone"])
            context.set_default_timeout(UI_TIMEOUT_MS)
            expect.set_options(timeout=UI_TIMEOUT_MS)
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            ui, began = Ui(page, studio.url, expect), time.monotonic()
            steps = [("data", lambda: data_panel(ui)), ("config", lambda: config_panel(ui)),
                     ("train", lambda: train_panel(ui)),
                     ("evaluate", lambda: evaluate_panel(ui, clips["score"])),
                     ("mining", lambda: mining_panel(ui, starts)),
                     ("cascade", lambda: cascade_panel(ui, judge.url, clips["judge"])),
                     ("export", lambda: export_panel(ui))]
            for name, step in steps:
                try:
                    step()
                    expect(page.locator("#toast")).to_be_hidden()  # no passing message in the picture
                    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                    print(f"{name}.png after {time.monotonic() - began:.0f} s", flush=True)
                except Exception:
                    failed = Path(tempfile.gettempdir()) / f"hark-studio-failed-{name}.png"
                    page.screenshot(path=str(failed), full_page=True)
                    print(f"failed; the page at that moment: {failed}", file=sys.stderr)
                    raise
            browser.close()
    finally:
        for server in reversed(servers):
            server.stop()
    if errors:
        raise SystemExit(f"JavaScript errors on the page: {errors}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="dataset folder (with eval/espeak and eval/heldout)")
    parser.add_argument("--run", type=Path, required=True, help="run folder (checkpoints/, config.toml, export/)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "studio", help="folder for the PNGs")
    args = parser.parse_args()
    check_inputs(args.data, args.run)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hark-studio-") as tmp:
        tmp = Path(tmp)
        for folder in ("recordings", "shots"):
            (tmp / folder).mkdir()
        print("building the workspace ...", flush=True)
        make_workspace(args.data, args.run, tmp / "workspace")
        negative = read_wav(args.data / "eval" / "heldout" / "negative_stream.wav")
        heldout, espeak = positives(args.data, "heldout"), positives(args.data, "espeak")
        wake_words = [heldout[k % len(heldout)] for k in range(WAKE_WORDS_IN_RECORDING)]
        starts = mix(tmp / "recordings" / "kitchen_evening.wav", negative, wake_words, RECORDING_MIN * 60)
        # Short clips from later in the stream: one unseen espeak voice (and one held-out voice,
        # whose FRR is far higher) in the middle of speech.
        clips = {"score": tmp / "wake_words_in_speech.wav", "judge": tmp / "wake_word_in_speech.wav"}
        mix(clips["score"], negative, [espeak[0], heldout[0]], 8.0, skip_s=CLIP_FROM_S)
        mix(clips["judge"], negative, [espeak[0]], 3.0, skip_s=CLIP_FROM_S)
        take_screenshots(tmp / "workspace", tmp, tmp / "shots", starts, clips)
        args.out.mkdir(parents=True, exist_ok=True)
        written = [Path(shutil.copy2(tmp / "shots" / f"{name}.png", args.out / f"{name}.png")) for name in PANELS]
    print(f"wrote {len(written)} screenshots in {time.monotonic() - began:.0f} s:")
    for path in written:
        print(f"  {path}")


if __name__ == "__main__":
    main()
