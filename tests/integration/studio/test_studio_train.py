"""The Config and Training panels in a real browser: set both distillation teachers, see inline
validation, save, and train with it (the secondary teacher reaches the run); start a tiny run,
watch the charts fill, reload the page mid-run, stop it and resume it to the end."""

from __future__ import annotations

import json
import re
import shutil
import tomllib
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.integration.conftest import TINY
from tests.integration.studio.conftest import copy_tree, screenshot
from trainer.config import load_config, to_toml

pytestmark = pytest.mark.integration

TRAIN_TIMEOUT_MS = 90_000
"""A tiny run on two busy cores: interpreter and torch start-up, then well under a second an epoch."""
LONG_EPOCHS = 40
"""Enough epochs that a page reload lands mid-run (each tiny epoch takes ~0.3-1 s)."""


def workspace_with(tmp_path: Path, dataset: Path, **overrides) -> Path:
    """A studio workspace holding a copy of DATASET (data/hey_jarvis) and configs/tiny.toml."""
    workspace = tmp_path / "workspace"
    copy_tree(dataset, workspace / "data" / "hey_jarvis")
    (workspace / "configs").mkdir(parents=True)
    config = load_config(None, {**TINY, "train.threads": 1, **overrides})
    (workspace / "configs" / "tiny.toml").write_text(to_toml(config.to_dict()))
    return workspace


def job(studio) -> dict:
    import urllib.request
    with urllib.request.urlopen(studio.url + "/api/jobs/train", timeout=10) as response:
        return json.loads(response.read())["job"]


def test_a_secondary_teacher_set_in_config_reaches_the_training_run(start_studio, page, tiny_dataset,
                                                                   trained_run, tmp_path):
    workspace = workspace_with(tmp_path, tiny_dataset, **{"train.epochs": 1})
    teacher = workspace / "runs" / "teacher"
    (teacher / "checkpoints").mkdir(parents=True)
    shutil.copyfile(trained_run / "checkpoints" / "best.pt", teacher / "checkpoints" / "best.pt")
    shutil.copyfile(trained_run / "config.toml", teacher / "config.toml")
    teacher_path = str((teacher / "checkpoints" / "best.pt").resolve())
    studio = start_studio(workspace=workspace)
    page.goto(studio.url + "/#config")

    page.get_by_label("Saved configs").select_option("tiny")
    page.get_by_role("button", name="Load").click()
    expect(page.get_by_label("train.epochs")).to_have_value("1")
    expect(page.get_by_label("model.channels")).to_have_value("12, 12, 16")
    page.get_by_label("distill.mode").select_option("dual")

    # Primary teacher: picked from the workspace's runs (fills the architecture too).
    page.get_by_label("Primary teacher from a workspace run").select_option(label="teacher (tcresnet)")
    expect(page.get_by_label("distill.teacher_model_path")).to_have_value(teacher_path)
    expect(page.get_by_label("distill.teacher_architecture")).to_have_value("tcresnet")

    # Secondary teacher: a wrong path is named next to its own field ...
    page.get_by_label("distill.secondary_teacher_architecture").select_option("tcresnet")
    page.get_by_label("distill.secondary_teacher_model_path").fill("runs/teacher/checkpoints/nope.pt")
    expect(page.get_by_label("Secondary teacher from a workspace run")).to_have_value("")  # not a run's checkpoint
    secondary_problem = page.locator('[data-problem-for="distill.secondary_teacher_model_path"]')
    expect(secondary_problem).to_contain_text("no such file")
    expect(page.get_by_label("distill.secondary_teacher_model_path")).to_have_attribute("aria-invalid", "true")
    expect(page.locator('[data-problem-for="distill.teacher_model_path"]')).to_be_empty()
    # ... and picking the checkpoint in the file browser clears it.
    page.get_by_role("button", name="Browse for the secondary teacher checkpoint…").click()
    browser = page.locator("[data-role=secondary_teacher-browser]")
    browser.locator('[data-path="workspace/runs/teacher"]').dblclick()
    browser.locator('[data-path="workspace/runs/teacher/checkpoints"]').dblclick()
    browser.locator('[data-path="workspace/runs/teacher/checkpoints/best.pt"]').click()
    expect(page.get_by_label("distill.secondary_teacher_model_path")).to_have_value(teacher_path)
    expect(secondary_problem).to_be_empty()
    status = page.locator("[data-role=config-status]")
    expect(status).to_contain_text("ready to train; distillation from teacher: tcresnet")
    expect(status).to_contain_text("secondary teacher: tcresnet")

    page.get_by_label("Config name").fill("dual_tiny")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Saved configs")).to_have_value("dual_tiny")
    for title in ("Primary teacher", "Secondary teacher"):  # the pickers still name the run after the save
        expect(page.get_by_label(f"{title} from a workspace run")).to_have_value(teacher_path)
    saved = tomllib.loads((workspace / "configs" / "dual_tiny.toml").read_text())
    assert saved["distill"]["secondary_teacher_model_path"] == teacher_path
    screenshot(page, "config")

    page.get_by_role("tab", name="Training").click()
    page.get_by_label("Config", exact=True).select_option("dual_tiny")
    page.get_by_label("Dataset", exact=True).select_option("hey_jarvis")
    page.get_by_label("Run name").fill("student")
    page.get_by_role("button", name="Start").click()
    expect(page.locator("[data-role=job-state]")).to_have_text("done", timeout=TRAIN_TIMEOUT_MS)

    # The run's resolved config and its log both show the dual-teacher distillation.
    run_config = tomllib.loads((workspace / "runs" / "student" / "config.toml").read_text())
    assert run_config["distill"]["secondary_teacher_model_path"] == teacher_path
    assert run_config["distill"]["mode"] == "dual"
    log = "\n".join(job(studio)["log"])
    assert re.search(rf"distillation \(dual\): teacher tcresnet from {re.escape(teacher_path)} .*; "
                     rf"secondary_teacher tcresnet from {re.escape(teacher_path)}", log), log
    expect(page.locator("[data-role=job-log]")).to_contain_text("distillation (dual)")
    expect(page.locator("[data-role=loss-chart] svg.chart")).to_have_attribute("data-points", "2")


def _points(page) -> int:
    return int(page.locator("[data-role=loss-chart] svg.chart").get_attribute("data-points"))


def test_live_charts_reattach_after_a_reload_and_a_stopped_run_resumes(start_studio, page, tiny_dataset, tmp_path):
    workspace = workspace_with(tmp_path, tiny_dataset, **{"train.epochs": LONG_EPOCHS})
    studio = start_studio(workspace=workspace)
    page.goto(studio.url + "/#train")
    chart = page.locator("[data-role=loss-chart] svg.chart")
    expect(chart).to_have_attribute("data-points", "0")

    page.get_by_label("Config", exact=True).select_option("tiny")
    page.get_by_label("Run name").fill("live")
    page.get_by_role("button", name="Start").click()
    state = page.locator("[data-role=job-state]")
    expect(state).to_have_text("running")
    # Two series (train and validation loss): 2 points per finished epoch.
    page.wait_for_function("() => Number(document.querySelector('[data-role=loss-chart] svg.chart').dataset.points) >= 2")

    page.reload()  # a fresh page finds the running job and its run by itself
    expect(page.locator("[data-role=run-title]")).to_have_text("Run: live (running)")
    expect(state).to_have_text("running")
    expect(page.get_by_label("Config", exact=True)).to_have_value("tiny")
    expect(page.get_by_label("Run name")).to_have_value("live")
    seen = _points(page)
    page.wait_for_function("n => Number(document.querySelector('[data-role=loss-chart] svg.chart').dataset.points) > n",
                           arg=seen)
    expect(page.locator("[data-role=run-progress]")).to_contain_text(f"of {LONG_EPOCHS} epoch(s) finished")
    expect(page.locator("[data-role=runs-list] [data-run=live] [data-role=run-state]")).to_contain_text("running")
    # Epochs are whole numbers: no tick between two of them.
    ticks = page.locator("[data-role=loss-chart] svg.chart text[data-axis=x]").all_text_contents()
    assert ticks and all(t.isdigit() for t in ticks), ticks
    screenshot(page, "train")

    page.get_by_role("button", name="Stop").click()
    expect(state).to_have_text("stopped", timeout=TRAIN_TIMEOUT_MS)
    stopped = job(studio)
    assert stopped["returncode"] == 130 and any("interrupted" in line for line in stopped["log"])
    done_before = len((workspace / "runs" / "live" / "metrics.jsonl").read_text().splitlines())
    assert done_before < LONG_EPOCHS
    expect(page.locator("[data-role=runs-list] [data-run=live]")).to_contain_text("resumable")

    page.get_by_role("button", name="Resume").click()
    expect(state).to_have_text("done", timeout=TRAIN_TIMEOUT_MS)
    resumed = job(studio)
    assert resumed["meta"]["resume"] and "--resume" in resumed["argv"]
    epochs = [json.loads(line)["epoch"] for line in (workspace / "runs" / "live" / "metrics.jsonl").read_text().splitlines()]
    assert epochs[-1] == LONG_EPOCHS and epochs == sorted(set(epochs))
    expect(chart).to_have_attribute("data-points", str(2 * len(epochs)))
    expect(page.locator("[data-role=epochs] tr")).to_have_count(len(epochs) + 1)
