"""`hark studio` as a real process on loopback, driven by a real headless Chromium
(Debian's chromium package through Playwright; never a downloaded browser)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.integration.conftest import ServerProcess

CHROMIUM = os.environ.get("HARK_CHROMIUM", "/usr/bin/chromium")
UI_TIMEOUT_MS = 20_000
"""Playwright's default wait for an element or an expectation (milliseconds)."""


class StudioProcess(ServerProcess):
    """One `hark studio` subprocess on a free port; `.url` without the token."""

    URL_PATTERN = r"serving .* on (http://[\d.]+:\d+)"
    READY_PATH = "/api/state"

    def __init__(self, workspace: Path, *extra: str) -> None:
        self.workspace = workspace
        token = extra[extra.index("--token") + 1] if "--token" in extra else None
        super().__init__(["-m", "trainer.cli", "studio", "--workspace", str(workspace), "--port", "0", *extra],
                         env={"HARK_STUDIO_TOKEN": ""},
                         headers={"Authorization": f"Bearer {token}"} if token else None)


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


@pytest.fixture(scope="module")
def browser():
    """Per module, not per session: while Playwright's sync API is open its event loop runs
    in this thread, and later tests' asyncio.run (the Wyoming server's) would refuse to start."""
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
