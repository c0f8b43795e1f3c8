"""The Cascade Testing panel in a real browser against a real `hark-judge serve` on loopback:
the health check tells a healthy judge, a wrong key and a dead port apart, and "Verify with
Judge" shows the sentry's score beside the judge's verdict for an uploaded clip and for a
microphone take (Chromium's fake microphone)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from sentry.audio import read_wav
from sentry.constants import SAMPLE_RATE
from tests.integration.conftest import JudgeServer
from tests.integration.studio.conftest import copy_tree, screenshot

pytestmark = pytest.mark.integration

KEY = "studio-cascade-key-0123456789"
CONTEXT_S = 3.0
LEAD_S = 1.0


@pytest.fixture
def judge_server(exported, tmp_path):
    keys = tmp_path / "judge-keys"
    keys.write_text(f"# studio cascade test\n{KEY}\n")
    server = JudgeServer(exported, keys)
    yield server
    assert server.stop() == 0, "".join(server.stderr)


def positive_in_context(dataset: Path, out: Path) -> Path:
    """The first eval positive mixed into the eval negative stream, LEAD_S in: a clip with
    audio before and after the wake word, as a device hears it."""
    eval_set = dataset / "eval" / "espeak"
    audio = read_wav(eval_set / "negative_stream.wav")[:int(CONTEXT_S * SAMPLE_RATE)].copy()
    positive = read_wav(min((eval_set / "positive").glob("*.wav")))
    at = int(LEAD_S * SAMPLE_RATE)
    audio[at:at + positive.size] += positive
    sf.write(out, np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16")
    return out


def dead_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_health_and_verify_against_a_real_judge(start_studio, page, exported, tiny_dataset, judge_server, tmp_path):
    workspace = tmp_path / "ws"
    copy_tree(exported, workspace / "runs" / "tiny" / "export")
    studio = start_studio(workspace=workspace)
    page.goto(studio.url + "/#cascade")
    url, key = page.get_by_label("Judge URL"), page.get_by_label("API key")
    check = page.get_by_role("button", name="Check health")
    status = page.locator('[data-role="health-status"]')

    url.fill("ftp://127.0.0.1/")
    check.click()
    expect(page.locator('[data-error="url"]')).to_contain_text("http:// or https://")

    url.fill(f"http://127.0.0.1:{dead_port()}")
    check.click()
    expect(status).to_have_attribute("data-status", "unreachable")
    expect(page.locator('[data-role="health-message"]')).to_contain_text("connection refused")

    url.fill(judge_server.url)
    key.fill("not-the-key-0123456789")
    check.click()
    expect(status).to_have_attribute("data-status", "unauthorized")
    expect(page.locator('[data-role="health-message"]')).to_contain_text("wrong API key")

    key.fill(KEY)
    check.click()
    expect(status).to_have_attribute("data-status", "ok")
    expect(page.locator('[data-role="judge-model"]')).to_contain_text('for "hey jarvis", threshold')
    expect(page.locator('[data-role="health-message"]')).to_have_count(0)  # the model line says it once

    # Verify an eval positive in context: the sentry's score beside the judge's verdict.
    clip = positive_in_context(tiny_dataset, tmp_path / "positive_in_context.wav")
    expect(page.get_by_label("Sentry model (exported run)")).to_have_value("tiny")
    page.get_by_label("WAV file").set_input_files(str(clip))
    page.get_by_role("button", name="Verify with Judge").click()
    judged = page.locator('[data-role="judge-result"]')
    expect(judged.locator('[data-field="judge-verdict"]')).to_have_text(re.compile("^(verified|rejected)$"))
    expect(judged.locator('[data-field="judge-score"]')).to_have_text(re.compile(r"^\d\.\d{3}$"))
    expect(judged.locator('[data-field="judge-latency"]')).to_have_text(re.compile(r"^\d+\.\d ms \(1 attempt\)$"))
    expect(judged.locator('[data-field="judge-threshold"]')).not_to_have_text("-")
    sentry = page.locator('[data-role="sentry-result"]')
    expect(sentry.locator('[data-field="sentry-score"]')).to_have_text(re.compile(r"^\d\.\d{3}$"))
    expect(sentry.locator('[data-field="sentry-peak"]')).to_contain_text(f"of {CONTEXT_S:.2f} s")
    expect(page.locator('[data-role="verify-result"] svg.chart')).to_have_attribute("data-points", re.compile("^[1-9]"))
    screenshot(page, "cascade")

    # A microphone take (Chromium's fake device) goes the same way; a wrong key shows the 401.
    page.get_by_label("Seconds to record").fill("1")
    page.get_by_role("button", name="Record from microphone").click()
    expect(page.locator('[data-role="clip"]')).to_contain_text("microphone take, 1 s")
    key.fill("not-the-key-0123456789")
    page.get_by_role("button", name="Verify with Judge").click()
    expect(judged.locator('[data-field="judge-verdict"]')).to_have_text("no verdict")
    expect(judged.locator('[data-field="judge-error"]')).to_contain_text("HTTP 401")
    expect(sentry.locator('[data-field="sentry-peak"]')).to_contain_text("of 1.00 s")

    # The key was only ever in requests: nothing the studio wrote holds it.
    for path in workspace.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
    assert KEY not in "".join(studio.stderr)
