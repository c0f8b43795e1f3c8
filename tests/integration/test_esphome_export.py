"""`hark export-esphome` end to end on the tiny espeak dataset: a micro student trained from
the run's config, int8 TFLite under 64 KB with ESPHome's contract, a measured arena, the v2
manifest (and, when esphome is installed, `esphome config` accepts it). Needs the [esphome]
extra; skipped without it."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner

pytest.importorskip("tensorflow")
pytest.importorskip("tflite_micro")
pytest.importorskip("pymicro_features")

pytestmark = [pytest.mark.integration, pytest.mark.slow]

V2_KEYS = {"type", "wake_word", "author", "website", "model", "trained_languages", "version",
           "micro"}
MICRO_KEYS = {"probability_cutoff", "sliding_window_size", "feature_step_size",
              "tensor_arena_size", "minimum_esphome_version"}


def test_export_esphome_from_a_run(trained_run, tmp_path):
    from trainer.cli import main
    from trainer.micro.esphome import esphome_config
    from trainer.micro.tflm import _fits
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(trained_run / "config.toml", run / "config.toml")  # all the export reads
    out = tmp_path / "esphome"
    result = CliRunner().invoke(main, ["export-esphome", str(run), "--out", str(out),
                                       "--epochs", "1"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "hey_jarvis.json").read_text())
    assert set(manifest) == V2_KEYS and set(manifest["micro"]) == MICRO_KEYS
    assert manifest["version"] == 2 and manifest["type"] == "micro"
    assert manifest["model"] == "hey_jarvis.tflite" and manifest["micro"]["feature_step_size"] == 10
    tflite = out / manifest["model"]
    assert tflite.stat().st_size <= 64 * 1024
    arena = manifest["micro"]["tensor_arena_size"]
    assert _fits(tflite, arena) and not _fits(tflite, arena - 16)
    report = json.loads((out / "hey_jarvis.hark.json").read_text())
    assert "heldout" not in report["cutoff_chosen_on"]
    assert report["chosen"]["threshold"] == pytest.approx(manifest["micro"]["probability_cutoff"],
                                                          abs=1e-3)
    assert (run / "micro" / "micro.pt").is_file()
    esphome = os.environ.get("HARK_ESPHOME") or shutil.which("esphome")
    if esphome:
        valid, output = esphome_config(out / "hey_jarvis.json", esphome, workdir=tmp_path)
        assert valid, output[-3000:]
