"""The Data panel in a real browser: synthesize a tiny dataset through the form, import a
folder from an extra root, read the health report and play a sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from sentry.constants import SAMPLE_RATE
from tests.integration.studio.conftest import screenshot
from trainer.dataset import load_dataset

pytestmark = pytest.mark.integration

CD_RATE = 44_100
SYNTH_TIMEOUT_MS = 90_000
"""`hark synth` of 8+8+8 clips without eval sets: ~4 s on an idle machine, more on busy cores."""
CLIPS = 8


def recordings(folder: Path) -> Path:
    """A folder to import: a clip, its exact copy deeper down, a 44.1 kHz stereo clip, a note."""
    t = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    sf.write(folder / "mine.wav", 0.3 * np.sin(2 * np.pi * 440 * t), SAMPLE_RATE, subtype="PCM_16")
    (folder / "takes").mkdir()
    shutil.copyfile(folder / "mine.wav", folder / "takes" / "mine_again.wav")
    t_cd = np.arange(CD_RATE) / CD_RATE
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 330 * t_cd)] * 2, axis=1)
    sf.write(folder / "phone.wav", stereo, CD_RATE, subtype="PCM_16")
    (folder / "notes.txt").write_text("not audio")
    return folder


def test_synthesize_import_check_health_and_listen(start_studio, page, tmp_path):
    source = tmp_path / "recordings"
    source.mkdir()
    recordings(source)
    studio = start_studio("--root", f"rec={source}")
    page.goto(studio.url + "/#data")

    synth = page.locator("[data-card=synth]")
    synth.get_by_label("Phrase", exact=True).fill("hey studio")
    expect(synth.get_by_label("Dataset name", exact=True)).to_have_value("hey_studio")
    for field in ("Positives", "Negatives", "Phonetic neighbours"):
        synth.get_by_label(field, exact=True).fill(str(CLIPS))
    synth.get_by_label("Evaluation sets").uncheck()
    synth.get_by_label("Licence-clean (training audio usable commercially)").check()
    expect(synth.locator("[data-role=engines]")).not_to_contain_text("DECtalk")
    expect(synth.locator("[data-role=licence-note]")).to_contain_text("leaves out DECtalk")
    synth.get_by_role("button", name="Synthesize").click()
    expect(synth.locator("[data-role=job-state]")).to_have_text("done", timeout=SYNTH_TIMEOUT_MS)
    manifest = json.loads((studio.workspace / "data" / "hey_studio" / "manifest.json").read_text())
    assert manifest["provenance"]["licence_clean"] is True
    assert {c["engine"] for c in manifest["clips"]} <= {"espeak", "pico", "synthetic"}

    # The finished job selects its dataset and the health table counts its clips.
    expect(page.get_by_label("Dataset", exact=True)).to_have_value("hey_studio")
    table = page.locator("[data-role=health-table]")
    for label in ("positive", "negative", "hard_negative"):
        expect(table.locator(f"tr[data-class={label}] [data-col=total]")).to_have_text(str(CLIPS))
    expect(page.locator("[data-role=problems]")).to_contain_text("No problems found")

    importer = page.locator("[data-card=import]")
    importer.locator("[data-role=filebrowser] [data-path=rec]").click()
    importer.get_by_role("button", name="Add selected").click()
    expect(importer.locator("[data-role=import-sources]")).to_contain_text("rec")
    importer.get_by_label("Class to import into").select_option("positive")
    importer.get_by_role("button", name="Import", exact=True).click()
    expect(importer.locator("[data-role=job-state]")).to_have_text("done")
    expect(importer.locator("[data-role=job-log]")).to_contain_text("skipped")
    expect(importer.locator("[data-role=job-log]")).to_contain_text("notes.txt")

    expect(table.locator("tr[data-class=positive] [data-col=total]")).to_have_text(str(CLIPS + 3))
    rate = page.locator("[data-problem=sample_rate]")
    expect(rate).to_contain_text("positive/imported/recordings/phone.wav: 44100 Hz, 2 channel(s)")
    duplicates = page.locator("[data-problem=duplicates]")
    expect(duplicates).to_contain_text("positive/imported/recordings/mine.wav")
    expect(duplicates).to_contain_text("positive/imported/recordings/takes/mine_again.wav")
    dataset = load_dataset(studio.workspace / "data" / "hey_studio")
    assert len(dataset.select("positive")) == CLIPS + 3  # the trainer sees the imported files

    listen = page.locator("[data-card=listen]")
    listen.get_by_label("Class to listen to").select_option("positive")
    expect(listen.get_by_label("Class to listen to")).to_contain_text(f"positive ({CLIPS + 3})")
    audio = listen.locator("audio").first
    page.wait_for_function("el => el.readyState >= 1 && el.duration > 0", arg=audio.element_handle())
    # Each clip's length is listed (the player rounds a short clip to 0:00), as its header says.
    shown = float(listen.locator("[data-col=duration]").first.inner_text().removesuffix(" s"))
    assert shown == pytest.approx(audio.evaluate("el => el.duration"), abs=0.01)
    response = page.request.get(studio.url + audio.get_attribute("src"))
    assert response.status == 200 and response.headers["content-type"] == "audio/wav"
    expect(page.locator("#toast")).to_be_hidden()  # a clean picture for the docs
    screenshot(page, "data")
