"""`hark studio` as a real process on loopback, driven by a real headless Chromium
(Debian's chromium package through Playwright; never a downloaded browser)."""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import studio

REPO_ROOT = Path(studio.__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HARK_CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
UI_TIMEOUT_MS = 20_000
"""Playwright's default wait for an element or an expectation (milliseconds)."""


class StudioProcess:
    """One `hark studio` subprocess; stderr collected by a thread."""

    def __init__(self, workspace: Path, *extra: str) -> None:
        self.workspace = workspace
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "trainer.cli", "studio", "--workspace", str(workspace), "--port", "0", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HARK_STUDIO_TOKEN": ""})
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT_S
        match = None
        while match is None:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"the studio did not start: {''.join(self.stderr)}") from None
            match = re.search(r"serving .* on (http://\S+)", line)
        self.url, _, token = match.group(1).partition("?token=")
        self.url = self.url.rstrip("/")
        ready = urllib.request.Request(self.url + "/api/state",
                                       headers={"Authorization": f"Bearer {token}"} if token else {})
        with urllib.request.urlopen(ready, timeout=10) as response:
            assert response.status == 200

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)
            self.lines.put(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise


@pytest.fixture
def start_studio(tmp_path):
    """start_studio(*cli_args, workspace=None) -> StudioProcess; all stopped at teardown, and
    each must exit cleanly without a traceback."""
    started: list[StudioProcess] = []

    def start(*extra: str, workspace: Path | None = None) -> StudioProcess:
        proc = StudioProcess(workspace or tmp_path / "workspace", *extra)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        code = proc.stop()
        log = "".join(proc.stderr)
        assert code == 0 and "Traceback" not in log, log


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (./run.sh does)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        # Fake camera/microphone: the page's microphone test records a synthetic tone.
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    from playwright.sync_api import expect
    context = browser.new_context(viewport={"width": 1280, "height": 900}, permissions=["microphone"])
    context.set_default_timeout(UI_TIMEOUT_MS)
    expect.set_options(timeout=UI_TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def screenshot(page, name: str) -> None:
    """Save the page to $HARK_STUDIO_SCREENSHOTS/NAME.png when that is set (docs/studio)."""
    folder = os.environ.get("HARK_STUDIO_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def copy_tree(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest, dirs_exist_ok=True)
    return dest
