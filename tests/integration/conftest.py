"""One tiny real pipeline shared by the integration tests: espeak dataset -> training -> ONNX."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from trainer.config import Config, load_config

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0

TINY = {"train.epochs": 3, "train.batch_size": 32, "model.channels": [12, 12, 16],
        "model.strides": [1, 2], "model.kernel_size": 5}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from trainer.synth.build import SynthConfig, synthesize_dataset
    from trainer.synth.evalsets import synthesize_eval_sets
    root = tmp_path_factory.mktemp("data") / "hey_jarvis"
    synthesize_dataset("hey jarvis", root, SynthConfig(
        seed=1, n_positive=80, n_negative_speech=60, n_neighbour=60, background_files=2,
        background_seconds=6.0, workers=1), progress=False)
    synthesize_eval_sets("hey jarvis", root, negative_minutes_espeak=0.5, negative_minutes_heldout=0.5,
                         n_positive_espeak=6, n_positive_heldout=6, seed=2, progress=False)
    return root


def tiny_config(dataset: Path, **extra) -> Config:
    return load_config(None, {**TINY, "data.dataset": str(dataset), **extra})


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory) -> Path:
    from trainer.loop import train
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(tiny_dataset), run, progress=False)
    return run


@pytest.fixture(scope="session")
def exported(trained_run) -> Path:
    from trainer.export import export_run
    folder, _ = export_run(trained_run)
    return folder


class ServerProcess:
    """A server CLI as a real subprocess on loopback: its stderr is collected by a thread,
    its URL read from the line matching URL_PATTERN (group 1: "http://host:port"), and it is
    ready once READY_PATH answers 200 (sent with HEADERS)."""

    URL_PATTERN = r"(http://[\d.]+:\d+)"
    READY_PATH = "/"

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        match = None
        while match is None:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError(f"{argv[:3]} did not start: {''.join(self.stderr)}") from None
            match = re.search(self.URL_PATTERN, line)
        self.url = match.group(1)
        self.port = int(self.url.rsplit(":", 1)[1])
        ready = urllib.request.Request(self.url + self.READY_PATH, headers=headers or {})
        while True:  # a server may bind its port before it can answer
            try:
                with urllib.request.urlopen(ready, timeout=1.0) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.kill()
                raise AssertionError(f"{argv[:3]} never became ready: {''.join(self.stderr)}")
            time.sleep(0.05)

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        time.sleep(0.05)  # let the reader thread drain the last lines
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class JudgeServer(ServerProcess):
    """`hark-judge serve --model MODEL --keys-file KEYS_FILE [EXTRA...]`, ready on /readyz."""

    URL_PATTERN = r"serving .* on (http://[\d.]+:\d+)"
    READY_PATH = "/readyz"

    def __init__(self, model: Path, keys_file: Path, *extra: str, port: int = 0) -> None:
        super().__init__(["-m", "judge.cli", "serve", "--model", str(model), "--port", str(port),
                          "--keys-file", str(keys_file), *extra], env={"HARK_JUDGE_KEYS": ""})
