"""The Evaluation and Export panels in a real browser: evaluate the tiny exported model on
the tiny dataset's eval sets as a background `hark eval`, read the metrics and the DET
curve, pick a threshold for a target FA/h and store it in the manifest on disk, score an
uploaded WAV and the (fake) microphone; export a trained run and download the zip."""

from __future__ import annotations

import io
import itertools
import json
import math
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect

from sentry.audio import read_wav
from sentry.constants import SAMPLE_RATE
from studio.panels.evaluate import threshold_for_target
from trainer.thresholds import threshold_chooser
from tests.integration.studio.conftest import copy_tree, screenshot

pytestmark = pytest.mark.integration

JOB_TIMEOUT_MS = 90_000
"""A background `hark eval` / `hark export` (a fresh Python importing its libraries) on
two busy cores."""
NONZERO = re.compile(r"^[1-9]\d*$")
CONTEXT_S = 1.5
"""Seconds of negative speech before and after the wake word in the uploaded test clip."""


def make_clip(dataset: Path, path: Path) -> Path:
    """PATH: an eval positive between two stretches of the eval negative stream (16 kHz WAV)."""
    eval_set = dataset / "eval" / "espeak"
    positive = read_wav(min((eval_set / "positive").glob("*.wav")))
    negative = read_wav(eval_set / "negative_stream.wav")
    n = int(CONTEXT_S * SAMPLE_RATE)
    sf.write(path, np.concatenate([negative[:n], positive, negative[n:2 * n]]), SAMPLE_RATE, subtype="PCM_16")
    return path


def a_target_that_moves_the_threshold(report: dict, current: float) -> tuple[float, float]:
    """(target FA/h, threshold) from the report's sweeps whose threshold differs from CURRENT,
    on the set that chooses (the calibration set)."""
    chooser = threshold_chooser([s["name"] for s in report["sets"]])
    assert chooser == "calib"
    chosen = next(s for s in report["sets"] if s["name"] == chooser)
    # whole numbers: a target a person would type (rounding up keeps the row within it)
    for target in sorted({math.ceil(row["fa_per_hour"]) for row in chosen["sweep"]}, reverse=True):
        threshold = threshold_for_target(report["sets"], target)["threshold"]
        if threshold != current:
            return target, threshold
    raise AssertionError(f"every target gives threshold {current}: {chosen['sweep']}")


def test_evaluate_pick_a_threshold_and_score_audio(start_studio, page, tiny_dataset, trained_run, exported, tmp_path):
    workspace = tmp_path / "ws"
    export = copy_tree(exported, workspace / "runs" / "tiny" / "export")
    for earlier in ("eval_report.json", "det_curve.png"):  # other tests may have evaluated it
        (export / earlier).unlink(missing_ok=True)
    copy_tree(tiny_dataset, workspace / "data" / "hey_jarvis")
    clip = make_clip(tiny_dataset, tmp_path / "hey_jarvis_in_speech.wav")
    studio = start_studio(workspace=workspace)

    page.goto(studio.url + "/#evaluate")
    panel = page.locator("#panel-evaluate")
    expect(panel.get_by_label("Model (run)")).to_have_value("tiny")
    expect(panel.get_by_label("Dataset")).to_have_value("hey_jarvis")
    expect(panel.get_by_text("has not been evaluated yet")).to_be_visible()
    panel.get_by_role("button", name="Evaluate", exact=True).click()
    expect(panel.locator('[data-job-kind="eval"] [data-role="job-state"]')).to_have_text("done", timeout=JOB_TIMEOUT_MS)

    report = json.loads((export / "eval_report.json").read_text())
    expect(panel.locator('[data-role="det"] svg')).to_have_attribute("data-points", NONZERO)
    for name in ("espeak", "heldout"):
        curve = panel.locator(f'[data-role="det"] polyline[data-series="{name}"]')
        expect(curve).to_have_count(1)
        expect(panel.locator(f'[data-role="metrics"] tr[data-set="{name}"]')).to_be_visible()
        # The achievable envelope: more false accepts per hour never costs more false rejects
        # (SVG y grows downwards, so FRR falling means y rising).
        points = [tuple(map(float, xy.split(","))) for xy in curve.get_attribute("points").split()]
        assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(points)), points
    expect(panel.locator('[data-role="det-caption"]')).to_contain_text("lowest FRR of any threshold")
    expect(panel.locator('[data-role="recommended"]')).to_have_text(str(report["operating_threshold"]))

    # The slider drives the typed target; the typed target picks the threshold.
    panel.get_by_label("Target (log scale)").fill("2")
    expect(panel.get_by_label("Target false accepts per hour")).to_have_value("100")
    before = json.loads((export / "manifest.json").read_text())["threshold"]
    target, threshold = a_target_that_moves_the_threshold(report, before)
    panel.get_by_label("Target false accepts per hour").fill(str(target))
    expect(panel.locator('[data-role="picked-threshold"]')).to_have_text(str(threshold))
    panel.get_by_role("button", name="Store threshold in manifest").click()
    expect(panel.locator('[data-role="stored"]')).to_contain_text(f"{before} → {threshold}")
    assert json.loads((export / "manifest.json").read_text())["threshold"] == threshold
    expect(panel.locator('[data-role="manifest-threshold"]')).to_have_text(str(threshold))

    scores = panel.locator('[data-role="scores"] svg')
    panel.get_by_label("Seconds to record").fill("1")
    panel.get_by_role("button", name="Record from microphone").click()
    expect(panel.locator('[data-role="score-status"]')).to_contain_text("microphone-")
    expect(panel.locator('[data-role="score-status"]')).to_contain_text("1.0 s (16000 Hz, 1 channel)")
    expect(scores).to_have_attribute("data-points", NONZERO)

    panel.get_by_label("Audio file").set_input_files(clip)
    panel.get_by_role("button", name="Score file").click()
    expect(panel.locator('[data-role="score-status"]')).to_contain_text(re.compile(
        rf"{re.escape(clip.name)}: [\d.]+ s \(16000 Hz, 1 channel\)"))
    expect(scores.locator('polyline[data-series="smoothed"]')).to_have_count(1)
    expect(scores).to_have_attribute("data-points", NONZERO)
    expect(panel.locator('[data-role="score-error"]')).to_be_empty()
    screenshot(page, "evaluate")


def test_export_a_run_and_download_the_zip(start_studio, page, trained_run, tmp_path):
    workspace = tmp_path / "ws"
    run = workspace / "runs" / "tiny"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export"))
    studio = start_studio(workspace=workspace)

    page.goto(studio.url + "/#export")
    panel = page.locator("#panel-export")
    expect(panel.get_by_label("Run")).to_have_value("tiny")
    expect(panel.get_by_text("has no exported model yet")).to_be_visible()
    panel.get_by_role("button", name="Export", exact=True).click()
    expect(panel.locator('[data-job-kind="export"] [data-role="job-state"]')).to_have_text("done", timeout=JOB_TIMEOUT_MS)
    table = panel.locator('[data-role="manifest-table"]')
    expect(table).to_contain_text("hey jarvis")
    on_disk = json.loads((run / "export" / "manifest.json").read_text())
    expect(table).to_contain_text(f"{on_disk['parameters']:,}")
    created = table.locator("time")  # the ISO time shown in the page's own words, kept as datetime
    expect(created).to_have_attribute("datetime", on_disk["created"])
    expect(created).not_to_have_text(on_disk["created"])

    with page.expect_download() as download:
        panel.get_by_role("link", name="Download tiny-export.zip").click()
    assert download.value.suggested_filename == "tiny-export.zip"
    with zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())) as archive:
        names = set(archive.namelist())
        assert {"tiny-export/model.onnx", "tiny-export/manifest.json", "tiny-export/features.onnx"} <= names
        assert json.loads(archive.read("tiny-export/manifest.json")) == on_disk
    with page.expect_download() as download:
        panel.get_by_role("link", name="Download manifest.json").click()
    assert download.value.suggested_filename == "manifest.json"
    assert json.loads(Path(download.value.path()).read_text()) == on_disk
    screenshot(page, "export")
