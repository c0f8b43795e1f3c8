"""Training runs only through the plugin hooks: curriculum, blocking, third-party plugins."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from plugins.augment_noise import measured_snr_db
from sentry.constants import N_MELS
from trainer import hookimpl
from trainer.cli import main
from trainer.errors import TrainerError
from trainer.export import export_run
from trainer.loop import LAST, METRICS_NAME, train
from trainer.plugins import BLOCK_ENV, DEFAULT_PLUGINS, DISABLE_AUTOLOAD_ENV, ESSENTIAL_PLUGINS, PluginManager

SHORT = {"data.negatives_per_positive": 1.0}


class Probe:
    """Records each training batch before and after the noise step, tagged with its epoch."""

    def __init__(self) -> None:
        self.epoch = -1
        self.clean: torch.Tensor | None = None
        self.snr_by_epoch: dict[int, list[float]] = {}

    @hookimpl
    def on_epoch_start(self, epoch):
        self.epoch = epoch

    @hookimpl
    def register_augmentations(self, register):
        probe = self

        class Before:
            stage = "waveform"

            def __init__(self, config, context):
                pass

            def __call__(self, pcm, labels, generator):
                probe.clean = pcm.clone()
                return pcm

        class After(Before):
            def __call__(self, pcm, labels, generator):
                snr = measured_snr_db(probe.clean, pcm)
                probe.snr_by_epoch.setdefault(probe.epoch, []).extend(snr.tolist())
                return pcm

        register("probe_before", Before)
        register("probe_after", After)


class MeanPool(nn.Module):
    """log-mel [B, frames, mels] -> logits [B]: the mean frame through one linear layer."""

    def __init__(self, config) -> None:
        super().__init__()
        self.head = nn.Linear(N_MELS, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.mean(dim=1)).squeeze(-1)


class MeanPoolPlugin:
    """An inline plugin providing an architecture no installed plugin knows."""

    @hookimpl
    def register_architectures(self, register):
        register("meanpool", MeanPool)


@pytest.fixture(autouse=True)
def _no_entry_points(monkeypatch):
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")


def test_snr_curriculum_reaches_the_training_batches(tiny_dataset, tmp_path, make_config):
    config = make_config(tiny_dataset, **SHORT, **{
        "augment.chain": ["probe_before", "noise", "probe_after", "gain", "specaugment"],
        "augment.noise_probability": 1.0, "augment.snr_schedule": "linear",
        "augment.snr_start_db": [25.0, 30.0], "augment.snr_end_db": [0.0, 5.0]})
    manager = PluginManager(autoload=False)
    probe = Probe()
    manager.register(probe, "probe")
    train(config, tmp_path / "run", progress=False, plugins=manager)
    medians = [float(np.median(probe.snr_by_epoch[e])) for e in range(config.train.epochs)]
    assert medians[0] > 25.0 and medians[-1] < 5.0
    assert medians == sorted(medians, reverse=True)


def test_training_with_every_optional_plugin_blocked(tiny_dataset, tmp_path, make_config, monkeypatch):
    monkeypatch.setenv(BLOCK_ENV, ",".join(n for n in DEFAULT_PLUGINS if n not in ESSENTIAL_PLUGINS))
    config = make_config(tiny_dataset, **SHORT, **{"augment.chain": [], "train.epochs": 1})
    result = train(config, tmp_path / "run", progress=False)
    assert result.epochs_run == 1 and (tmp_path / "run" / LAST).is_file()
    # the default chain names augmentations nobody provides now: a clear error, no training
    with pytest.raises(TrainerError, match="unknown augmentation 'noise'"):
        train(make_config(tiny_dataset), tmp_path / "other", progress=False)
    assert not (tmp_path / "other" / LAST).exists()


def test_unknown_augmentation_in_config_is_a_clean_cli_error(tiny_dataset, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[augment]\nchain = ["gain", "reverbb"]\n[train]\nepochs = 1\n')
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--dataset", str(tiny_dataset),
                                       "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "augment.chain: unknown augmentation 'reverbb'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r" / METRICS_NAME).exists()


def test_third_party_distribution_is_discovered_and_runs_in_training(tiny_dataset, tmp_path, make_config,
                                                                    monkeypatch):
    module = "hark_reverse_plugin"
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{module}.py").write_text(
        "from trainer import hookimpl\n\nCALLS = []\n\n\n"
        "class Reverse:\n    stage = 'waveform'\n\n    def __init__(self, config, context):\n        pass\n\n"
        "    def __call__(self, pcm, labels, generator):\n        CALLS.append(pcm.shape[0])\n"
        "        return pcm.flip(1)\n\n\n"
        "@hookimpl\ndef register_augmentations(register):\n    register('reverse', Reverse)\n")
    info = site / "hark_reverse-0.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: hark-reverse\nVersion: 0.2.0\n")
    (info / "entry_points.txt").write_text(f"[hark.plugins]\nreverse = {module}\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, module, raising=False)
    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    config = make_config(tiny_dataset, **SHORT, **{"augment.chain": ["reverse", "gain"], "train.epochs": 1})
    train(config, tmp_path / "run", progress=False)
    calls = sys.modules[module].CALLS
    rows = json.loads((tmp_path / "run" / METRICS_NAME).read_text().splitlines()[0])
    assert rows["epoch"] == 1 and len(calls) > 0 and sum(calls) > 100


def test_every_builtin_augmentation_runs_in_a_short_training(tiny_dataset, tmp_path, make_config):
    chain = ["noise", "reverb", "pitch", "speed", "shift", "lowpass", "gain", "mel_warp", "specaugment"]
    config = make_config(tiny_dataset, **SHORT, **{"augment.chain": chain, "train.epochs": 1,
                                                   "augment.shift_probability": 0.5})
    result = train(config, tmp_path / "run", progress=False)
    row = json.loads((tmp_path / "run" / METRICS_NAME).read_text().splitlines()[0])
    assert result.epochs_run == 1 and np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])


def test_a_run_trained_with_an_inline_architecture_exports_with_the_same_manager(
        tiny_dataset, tmp_path, make_config):
    manager = PluginManager(autoload=False)
    plugin = MeanPoolPlugin()
    manager.register(plugin, "meanpool")
    run = tmp_path / "run"
    try:
        config = make_config(tiny_dataset, **SHORT, **{"model.architecture": "meanpool", "train.epochs": 1})
        train(config, run, progress=False, plugins=manager)
        # A manager of its own (what export used to build) has never heard of the architecture.
        with pytest.raises(TrainerError, match="unknown architecture 'meanpool'"):
            export_run(run, tmp_path / "fresh")
        folder, manifest = export_run(run, plugins=manager)
    finally:
        manager.unregister(plugin)
    assert manifest.architecture == "meanpool" and manifest.parameters == N_MELS + 1
    assert (folder / "model.onnx").is_file() and manifest.metrics["parity"]["model"]["max_abs_diff"] < 1e-3
    assert "meanpool" not in manager.registry("architectures")
