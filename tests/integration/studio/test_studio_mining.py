"""The Mining Queue panel in a real browser: pick long recordings in the file browser, mine them
with the tiny exported model as a background `hark mine`, pause and resume it from the page,
then confirm and discard hits in the review queue and find them on disk."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from sentry.audio import read_wav
from sentry.constants import SAMPLE_RATE
from sentry.detector import Detector
from sentry.postprocess import smooth
from tests.integration.studio.conftest import copy_tree, screenshot
from trainer.mining.session import clips_dir, new_session

pytestmark = pytest.mark.integration

RECORDING_MINUTES = 5
COPIES = 24
"""Hard links of the recording: 2 h of audio to mine on 10 MB of disk, long enough that a
pause sent as soon as the miner shows progress lands mid-run (it mines ~1500x real time)."""
POSITIVE_EVERY_S = 20
HITS_QUANTILE = 0.999
"""Mining threshold: the smoothed score the recording's top 0.1% of hops reach, so the
tiny model (whose scores sit in a narrow band) yields a few hits per copy."""
MINING_TIMEOUT_MS = 90_000
HITS_PER_PAGE = 50
"""The review table's page (studio/static/js/panels/mining.js)."""


def make_recording(dataset: Path, folder: Path) -> np.ndarray:
    """FOLDER/night01.wav.. : the eval negative stream looped to RECORDING_MINUTES with an eval
    positive mixed in every POSITIVE_EVERY_S seconds, hard-linked COPIES times. Returns the
    recording (float32, 16 kHz)."""
    eval_set = dataset / "eval" / "espeak"
    negative = read_wav(eval_set / "negative_stream.wav")
    positives = [read_wav(p) for p in sorted((eval_set / "positive").glob("*.wav"))]
    n = RECORDING_MINUTES * 60 * SAMPLE_RATE
    audio = np.tile(negative, -(-n // negative.size))[:n].copy()
    step = POSITIVE_EVERY_S * SAMPLE_RATE
    for k, at in enumerate(range(step // 2, n - step // 2, step)):
        positive = positives[k % len(positives)]
        audio[at:at + positive.size] += positive
    audio = np.clip(audio, -1.0, 1.0)
    folder.mkdir(parents=True)
    first = folder / "night01.wav"
    sf.write(first, audio, SAMPLE_RATE, subtype="PCM_16")
    for k in range(2, COPIES + 1):
        os.link(first, folder / f"night{k:02d}.wav")
    return audio


def test_mine_pause_resume_and_review_from_the_browser(start_studio, page, tiny_dataset, exported, tmp_path):
    workspace = tmp_path / "ws"
    copy_tree(exported, workspace / "runs" / "tiny" / "export")
    copy_tree(tiny_dataset, workspace / "data" / "hey_jarvis")
    recordings = tmp_path / "recordings"
    audio = make_recording(tiny_dataset, recordings / "long")
    detector = Detector(exported)
    scores = smooth(detector.score_pcm(audio), detector.settings.smoothing_hops)
    threshold = round(float(np.quantile(scores, HITS_QUANTILE)), 3)

    studio = start_studio("--root", f"rec={recordings}", workspace=workspace)
    page.goto(studio.url + "/#mining")
    page.get_by_role("tab", name="Background Miner").click()

    # Pick the folder, then a file inside it, and take the file back off the list.
    browser = page.locator('[data-role="filebrowser"]')
    browser.locator('[data-path="rec"]').dblclick()
    browser.locator('[data-path="rec/long"]').click()
    page.get_by_role("button", name="Add folder to recordings").click()
    browser.locator('[data-path="rec/long"]').dblclick()
    browser.locator('[data-path="rec/long/night03.wav"]').click()
    page.get_by_role("button", name="Add file to recordings").click()
    picked = page.locator('[data-role="picked"] li')
    expect(picked).to_have_count(2)
    page.get_by_role("button", name="Remove rec/long/night03.wav").click()
    expect(picked).to_have_count(1)
    expect(picked.first).to_have_attribute("data-path", "rec/long")

    # A bad name is refused next to its field; then a good one starts the miner.
    expect(page.get_by_label("Model (exported run)")).to_have_value("tiny")
    expect(page.locator('[data-role="threshold-default"]')).to_contain_text("0.6")
    page.get_by_label("Session name").fill("../night1")
    page.get_by_role("button", name="Start mining").click()
    expect(page.locator('[data-error="name"]')).to_contain_text("session name")
    page.get_by_label("Session name").fill("night1")
    page.get_by_label("Dataset for confirmed hits").select_option("hey_jarvis")
    page.get_by_label("Mining threshold").fill(str(threshold))
    page.get_by_role("button", name="Start mining").click()

    pause = page.get_by_role("button", name="Pause", exact=True)
    expect(pause).to_be_enabled()
    pause.click()
    row = page.locator('tr[data-session="night1"]')
    expect(row.locator('[data-role="session-state"]')).to_have_text("paused (partial)", timeout=MINING_TIMEOUT_MS)
    session_file = workspace / "sessions" / "night1.json"
    session = json.loads(session_file.read_text())
    assert session["state"] == "paused"
    done = sum(f["status"] == "done" for f in session["files"])
    assert done < COPIES == len(session["files"]), "the pause landed after the last file"
    assert session["settings"]["threshold"] == threshold
    assert session["dataset"] == str((workspace / "data" / "hey_jarvis").resolve())
    expect(page.locator('[data-job-kind="mine"] [data-role="job-state"]')).to_have_text("paused")

    row.get_by_role("button", name="Resume").click()
    expect(row.locator('[data-role="session-state"]')).to_have_text("complete", timeout=MINING_TIMEOUT_MS)
    stats = page.locator('[data-role="mining-stats"]')
    expect(stats.locator('[data-stat="files"]')).to_have_text(f"{COPIES} of {COPIES}")
    expect(stats.locator('[data-stat="hours"]')).to_contain_text("2.000 of 2.000 h")
    expect(stats.locator('[data-stat="rtf"]')).to_contain_text("real time")
    session = json.loads(session_file.read_text())
    assert session["state"] == "complete" and len(session["hits"]) >= 3
    assert int(stats.locator('[data-stat="hits"]').inner_text()) == len(session["hits"])

    # Review: confirm the best hit as a false activation, discard the next one.
    row.get_by_role("button", name="Review").click()
    hits = page.locator('[data-role="hits"] tbody tr[data-hit-id]')
    expect(hits).to_have_count(min(len(session["hits"]), HITS_PER_PAGE))
    best, second = (int(hits.nth(i).get_attribute("data-hit-id")) for i in (0, 1))
    assert max(session["hits"], key=lambda h: (h["score"], -h["id"]))["id"] == best
    clip = hits.first.locator("audio").get_attribute("src")
    answer = page.request.get(studio.url + clip)
    assert answer.status == 200 and answer.headers["content-type"] == "audio/wav"

    page.get_by_role("checkbox", name=f"Select hit {best}", exact=True).check()
    page.get_by_role("button", name="Confirm as false activation").click()
    status = page.locator(f'tr[data-hit-id="{best}"] [data-role="hit-status"]')
    expect(status).to_have_text("confirmed (false activation)")
    mined = workspace / "data" / "hey_jarvis" / "hard_negative" / "mined" / f"night1_{best:05d}.wav"
    assert mined.is_file()
    assert (mined.read_bytes() == (workspace / "sessions" / session["hits"][best - 1]["clip"]).read_bytes())

    page.get_by_role("checkbox", name=f"Select hit {second}", exact=True).check()
    page.get_by_role("button", name="Discard").click()
    expect(page.locator(f'tr[data-hit-id="{second}"] [data-role="hit-status"]')).to_have_text("discarded")
    reviewed = {h["id"]: h for h in json.loads(session_file.read_text())["hits"]}
    assert reviewed[best]["status"] == "confirmed" and reviewed[best]["label"] == "hard_negative"
    assert reviewed[second]["status"] == "discarded" and reviewed[second]["dataset_path"] is None
    expect(page.locator('[data-role="review-summary"]')).to_contain_text(
        re.compile(rf"{len(session['hits'])} hits \({len(session['hits']) - 2} pending, 1 confirmed, 1 discarded\)"))
    screenshot(page, "mining")


def many_hits_session(workspace: Path, count: int) -> None:
    """sessions/big.json as `hark mine` leaves it, with COUNT pending hits (short noise clips)."""
    path = workspace / "sessions" / "big.json"
    clips = clips_dir(path)
    clips.mkdir(parents=True)
    session = new_session(path, files=[{"path": "/recordings/night.wav", "key": "f00000-x", "status": "done",
                                        "duration_s": 3600.0, "scanned_s": 3600.0, "error": None}],
                          settings={"threshold": 0.3}, model={"dir": str(workspace / "runs" / "r1" / "export"),
                                                              "wake_word": "hey jarvis"},
                          dataset=str(workspace / "data" / "d1"), shard=(1, 1))
    noise = (np.random.default_rng(0).standard_normal(SAMPLE_RATE // 10) * 0.1).astype(np.float32)
    for hit_id in range(1, count + 1):
        clip = clips / f"f00000-x_{hit_id:09d}.wav"
        sf.write(clip, noise, SAMPLE_RATE, subtype="PCM_16")
        session.hits.append({"id": hit_id, "file": 0, "source": "/recordings/night.wav", "offset_s": 10.0 * hit_id,
                             "score": round(0.9 - hit_id / 1000, 3), "clip": f"{clips.name}/{clip.name}",
                             "clip_start_s": 10.0 * hit_id - 2.5, "status": "pending", "label": None,
                             "dataset_path": None, "reviewed": None})
    session.data["state"] = "complete"
    session.save(keep_review=False)


def test_a_long_review_queue_is_paged(start_studio, page, tmp_path):
    workspace = tmp_path / "ws"
    count = HITS_PER_PAGE + 10
    many_hits_session(workspace, count)
    studio = start_studio(workspace=workspace)
    page.goto(studio.url + "/#mining")
    hits = page.locator('[data-role="hits"] tbody tr[data-hit-id]')
    where = page.locator('[data-role="hits-page"]')
    expect(hits).to_have_count(HITS_PER_PAGE)
    expect(where).to_have_text(f"hits 1–{HITS_PER_PAGE} of {count}")
    expect(page.get_by_role("button", name="Previous hits")).to_be_disabled()

    page.get_by_role("button", name="Next hits").click()
    expect(hits).to_have_count(count - HITS_PER_PAGE)
    expect(where).to_have_text(f"hits {HITS_PER_PAGE + 1}–{count} of {count}")
    expect(hits.first).to_have_attribute("data-hit-id", str(HITS_PER_PAGE + 1))
    expect(page.get_by_role("button", name="Next hits")).to_be_disabled()
    # "Select all" takes this page's hits only; discarding them leaves one page, shown whole.
    page.get_by_role("checkbox", name="Select all hits on this page").check()
    page.get_by_role("button", name="Discard").click()
    expect(page.locator('[data-role="review-summary"]')).to_contain_text(
        f"{count} hits ({HITS_PER_PAGE} pending, 0 confirmed, {count - HITS_PER_PAGE} discarded)")
    page.get_by_label("Show", exact=True).select_option("pending")
    expect(hits).to_have_count(HITS_PER_PAGE)
    expect(where).to_be_hidden()
    expect(hits.first).to_have_attribute("data-hit-id", "1")
