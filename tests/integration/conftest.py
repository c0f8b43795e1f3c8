"""One tiny real pipeline shared by the integration tests: espeak dataset -> training -> ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import Config, load_config

TINY = {"train.epochs": 3, "train.batch_size": 32, "model.channels": [12, 12, 16],
        "model.strides": [1, 2], "model.kernel_size": 5}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from trainer.synth.build import SynthConfig, synthesize_dataset
    from trainer.synth.evalsets import synthesize_eval_sets
    root = tmp_path_factory.mktemp("data") / "hey_jarvis"
    synthesize_dataset("hey jarvis", root, SynthConfig(
        seed=1, n_positive=80, n_negative_speech=60, n_neighbour=60, background_files=2,
        background_seconds=6.0, workers=1), progress=False)
    synthesize_eval_sets("hey jarvis", root, negative_minutes_espeak=0.5, negative_minutes_heldout=0.5,
                         n_positive_espeak=6, n_positive_heldout=6, seed=2, progress=False)
    return root


def tiny_config(dataset: Path, **extra) -> Config:
    return load_config(None, {**TINY, "data.dataset": str(dataset), **extra})


@pytest.fixture(scope="session")
def make_config():
    return tiny_config


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory) -> Path:
    from trainer.loop import train
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(tiny_dataset), run, progress=False)
    return run


@pytest.fixture(scope="session")
def exported(trained_run) -> Path:
    from trainer.export import export_run
    folder, _ = export_run(trained_run)
    return folder
