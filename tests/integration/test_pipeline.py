"""The real thing, small: espeak speech, a CPU training run, ONNX export, the sentry on a WAV."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from sentry.detector import Detector
from sentry.manifest import load_manifest
from trainer.data import WindowSampler, load_pools, open_dataset
from trainer.errors import TrainerError
from trainer.export import FILES, check_parity, export_run
from trainer.features import LogMel
from trainer.loop import BEST, LAST, VAL_SEED_OFFSET, ema_decay, load_checkpoint, train, validate
from trainer.plugins import PluginManager

pytestmark = pytest.mark.integration


def test_training_writes_resolved_config_metrics_and_full_checkpoints(trained_run):
    assert (trained_run / "config.toml").is_file()
    lines = (trained_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]
    ckpt = load_checkpoint(trained_run / LAST)
    assert {"model", "optimizer", "scheduler", "epoch", "step", "rng", "config"} <= ckpt.keys()
    assert ckpt["epoch"] == 2 and tuple(ckpt["config"]["model"]["channels"]) == (12, 12, 16)
    assert (trained_run / BEST).is_file()


def test_resume_continues_exactly(tiny_dataset, trained_run, tmp_path, make_config):
    """Stop after epoch 1, resume: the weights equal an uninterrupted 3-epoch run bit for bit."""
    run = tmp_path / "interrupted"
    config = make_config(tiny_dataset)
    train(config, run, progress=False, stop_after=1)
    assert load_checkpoint(run / LAST)["epoch"] == 0
    with pytest.raises(TrainerError, match="--resume"):
        train(config, run, progress=False)
    with open(run / "metrics.jsonl", "a") as fh:  # killed after epoch 2's line, before its checkpoint
        fh.write(json.dumps({"epoch": 2, "train_loss": -1.0}) + '\n{"epoch": 3, "tra')
    train(config, run, resume=True, progress=False)
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in logged] == [1, 2, 3] and logged[1]["train_loss"] > 0
    resumed = load_checkpoint(run / LAST)
    straight = load_checkpoint(trained_run / LAST)
    assert resumed["step"] == straight["step"]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name


def test_weight_average_spans_at_most_a_fifth_of_a_short_run():
    assert ema_decay(0.995, 1200) == 0.995  # the default job: 16 epochs of 75 steps
    assert ema_decay(0.995, 10) == pytest.approx(0.5)
    assert ema_decay(0.995, 3) == 0.0  # the latest weights


def test_weight_average_is_validated_exported_and_resumed_exactly(tiny_dataset, tmp_path, make_config):
    """train.ema_decay: the averaged weights are "model" (validated, exported), the trained
    weights are kept beside them, and an interrupted run resumes both bit for bit."""
    config = make_config(tiny_dataset, **{"train.ema_decay": 0.9, "train.epochs": 2})
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    train(config, straight, progress=False)
    train(config, interrupted, progress=False, stop_after=1)
    train(config, interrupted, resume=True, progress=False)
    a, b = load_checkpoint(straight / LAST), load_checkpoint(interrupted / LAST)
    for key in ("model", "train_model"):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), (key, name)
    assert any(not torch.equal(a["model"][n], a["train_model"][n]) for n in a["model"])

    model = PluginManager().build_model(config.model)
    model.load_state_dict(a["model"])
    sampler = WindowSampler(load_pools(open_dataset(config), "val", config.data.max_positive_s),
                            config, augment=False)
    logged = json.loads((straight / "metrics.jsonl").read_text().splitlines()[-1])
    assert validate(model, LogMel(), sampler, VAL_SEED_OFFSET)["val_loss"] == pytest.approx(
        logged["val_loss"], rel=1e-5)
    with pytest.raises(TrainerError, match="train.ema_decay"):
        make_config(tiny_dataset, **{"train.ema_decay": 1.0})
    folder, _ = export_run(straight)
    assert load_manifest(folder).metrics["parity"]["model"]["max_abs_diff"] < 1e-3


def test_resume_keeps_the_checkpoint_config_and_says_so(tiny_dataset, tmp_path, caplog, make_config):
    run = tmp_path / "r"
    train(make_config(tiny_dataset), run, progress=False, stop_after=1)
    changed = make_config(tiny_dataset, **{"train.lr": 0.5})
    with caplog.at_level("WARNING"):
        train(changed, run, resume=True, progress=False, stop_after=2)
    assert "train.lr: checkpoint 0.003, given 0.5" in caplog.text
    assert load_checkpoint(run / LAST)["config"]["train"]["lr"] == 0.003


def test_export_writes_graphs_and_manifest_with_parity(exported):
    manifest = load_manifest(exported)
    assert set(manifest.files) == set(FILES)
    assert manifest.parameters < 100_000 and manifest.wake_word == "hey jarvis"
    parity = manifest.metrics["parity"]
    assert parity["model"]["max_abs_diff"] < 1e-3 and parity["clip"]["max_abs_diff"] < 1e-3
    assert parity["model_int8"]["mean_abs_diff"] < 0.03 and "per_channel" in parity["model_int8"]


def test_int8_that_drifts_too_far_is_left_out_with_a_warning(trained_run, tmp_path, monkeypatch, caplog):
    """The export still succeeds with the float model; the sentry names what is missing."""
    from sentry.errors import SentryError
    from trainer import export

    out = tmp_path / "export"
    out.mkdir()
    (out / FILES["model_int8"]).write_bytes(b"stale")  # an earlier export's file must not survive
    monkeypatch.setattr(export, "INT8_MEAN_TOLERANCE", 0.0)
    with caplog.at_level("WARNING"):
        folder, manifest = export.export_run(trained_run, out)
    assert "no INT8 model: quantizing moved probabilities" in caplog.text
    assert "model_int8" not in manifest.files and "model_int8" not in manifest.metrics["parity"]
    assert not (folder / FILES["model_int8"]).exists()
    assert sorted(p.name for p in folder.glob("*.onnx")) == sorted(
        name for role, name in FILES.items() if role != "model_int8")
    assert len(Detector(folder).score_pcm(np.zeros(16000 * 2, np.float32))) > 0
    with pytest.raises(SentryError, match="no 'model_int8' file.*drop --int8"):
        Detector(folder, int8=True)


def test_parity_check_fails_loudly():
    with pytest.raises(TrainerError, match="parity failed for model.onnx"):
        check_parity("model.onnx", np.zeros(4), np.array([0, 0, 0, 0.5]), 1e-3)


def test_exported_sentry_streams_exactly_like_batch(exported):
    rng = np.random.default_rng(0)
    pcm = (rng.standard_normal(16000 * 6) * 0.05).astype(np.float32)
    for int8 in (False, True):
        batch = Detector(exported, int8=int8).score_pcm(pcm)
        stream = Detector(exported, int8=int8)
        streamed, i = [], 0
        while i < len(pcm):
            n = int(rng.integers(1, 5000))
            stream.process(pcm[i:i + n])
            i += n
        streamed = np.array(list(stream.scores))
        np.testing.assert_allclose(streamed[-len(batch):], batch, atol=1e-5)


def test_sentry_scan_cli_on_a_real_recording(exported, tiny_dataset, tmp_path):
    from trainer.pipeline import make_demo_recording
    wav = tmp_path / "demo.wav"
    regions = make_demo_recording(tiny_dataset / "eval" / "heldout", wav)
    assert len(regions) == 6
    result = subprocess.run([sys.executable, "-m", "sentry.cli", "scan", str(wav), "--model", str(exported),
                             "--json", "--threshold", "0.0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    detections = [json.loads(line) for line in result.stdout.splitlines()]
    # Threshold 0 fires at the first hop, then once per refractory period (2 s) for the whole file.
    duration = regions[-1][1]
    assert len(detections) >= int(duration // 2.5)
    assert all(d["wake_word"] == "hey jarvis" for d in detections)


def test_evaluation_on_the_exported_model(exported, tiny_dataset, tmp_path):
    from trainer.pipeline import evaluate_and_report
    summary = evaluate_and_report(exported, tiny_dataset / "eval", out=tmp_path, progress=False)
    assert set(summary["sets"]) == {"calib", "espeak", "heldout", "heldout_sentence"}
    for entry in summary["sets"].values():
        assert 0.0 <= entry["frr"] <= 1.0 and entry["fa_per_hour"] >= 0.0
        assert entry["n_positive"] == 6
    assert (tmp_path / "det_curve.png").stat().st_size > 1000
    assert load_manifest(exported).threshold == summary["threshold"]
