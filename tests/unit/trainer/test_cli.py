import pytest
from click.testing import CliRunner

from trainer.cli import main

COMMANDS = ["synth", "synth-stream", "train", "export", "ensemble", "eval", "run", "plugins", "cascade"]


@pytest.mark.parametrize("command", [[]] + [[c] for c in COMMANDS])
def test_help_works_everywhere(command):
    result = CliRunner().invoke(main, command + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_empty_phrase_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["synth", "  ", "--out", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert "Error:" in result.output and "no words" in result.output
    assert "Traceback" not in result.output


def test_engine_choice(tmp_path, monkeypatch):
    import json

    from trainer.synth import dectalk
    args = ["synth", "hey jarvis", "--positives", "3", "--negatives", "2", "--neighbours", "2",
            "--no-eval"]
    result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "e"), "--engine", "espeak"])
    assert result.exit_code == 0, result.output
    engines = {c["engine"] for c in json.loads((tmp_path / "e" / "manifest.json").read_text())["clips"]}
    assert engines == {"espeak", "synthetic"}
    # Asking for DECtalk where it is missing is an error, not a silent espeak-only dataset.
    monkeypatch.setenv(dectalk.ENV_DIR, str(tmp_path / "nowhere"))
    dectalk.available.cache_clear()
    try:
        result = CliRunner().invoke(main, args + ["--out", str(tmp_path / "d"), "--engine", "dectalk"])
    finally:
        dectalk.available.cache_clear()
    assert result.exit_code == 1 and "DECtalk is not installed" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "d").exists()


def test_bad_config_is_a_clean_error_naming_the_key(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[train]\nlr = 'fast'\n")
    result = CliRunner().invoke(main, ["train", "--config", str(config), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert "train.lr: expected float" in result.output
    assert "Traceback" not in result.output


def test_training_on_a_missing_dataset_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "nothing"),
                                       "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "nothing" in result.output


def test_export_of_an_empty_run_dir_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(main, ["export", str(tmp_path)])
    assert result.exit_code == 1 and "no checkpoint" in result.output


def test_train_takes_the_wake_word_from_the_dataset_manifest(tmp_path, monkeypatch):
    import json

    import trainer.loop
    seen = {}

    def fake_training(config, run_dir, resume=False, plugins=None):  # records the resolved config only
        seen["wake_word"] = config.wake_word
        seen["seed"] = config.train.seed
        raise trainer.loop.TrainerError("stop here")

    monkeypatch.setattr(trainer.loop, "train", fake_training)
    data = tmp_path / "ok"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"format": 1, "phrase": "ok computer", "clips": []}))
    result = CliRunner().invoke(main, ["train", "--dataset", str(data), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "stop here" in result.output
    assert seen["wake_word"] == "ok computer"
    result = CliRunner().invoke(main, ["train", "--dataset", str(data), "--run-dir", str(tmp_path / "r"),
                                       "--seed", "7"])
    assert result.exit_code == 1 and seen["seed"] == 7


def test_a_split_without_positives_is_named(tmp_path):
    from trainer.synth.build import SynthConfig, synthesize_dataset
    data = tmp_path / "tiny"
    # One positive clip: whichever split it lands in, the other has none.
    synthesize_dataset("ok computer", data, SynthConfig(n_positive=1, n_negative_speech=3, n_neighbour=3,
                                                        background_files=1, background_seconds=2.0,
                                                        workers=1), progress=False)
    result = CliRunner().invoke(main, ["train", "--dataset", str(data), "--run-dir", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "no usable positive clips in the 'val' split" in result.output or \
        "no usable positive clips in the 'train' split" in result.output


def test_synth_stream_speaks_a_negative_stream_in_the_training_voices(tmp_path):
    import json

    import soundfile as sf

    data = tmp_path / "d"
    data.mkdir()
    manifest = {"format": 1, "phrase": "ok computer", "clips": [], "voice_splits": {"train": ["en+m1"]}}
    (data / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "s" / "stream.wav"
    result = CliRunner().invoke(main, ["synth-stream", str(data), "--out", str(out), "--minutes", "0.5"])
    assert result.exit_code == 0, result.output
    info = sf.info(out)
    assert info.samplerate == 16000 and 30.0 <= info.duration < 40.0
    assert "sentence" in result.output

    (data / "manifest.json").write_text(json.dumps({**manifest, "voice_splits": {}}))
    result = CliRunner().invoke(main, ["synth-stream", str(data), "--out", str(out), "--minutes", "0.5"])
    assert result.exit_code == 1 and "no train-split" in result.output and "Traceback" not in result.output
