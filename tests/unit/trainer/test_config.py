import pytest

from trainer.config import Config, config_from_dict, load_config, save_config
from trainer.errors import TrainerError


def test_defaults_are_valid_and_hash_is_stable():
    assert config_from_dict({}).hash() == Config().hash()
    assert Config().hash() != config_from_dict({"train": {"lr": 0.01}}).hash()


def test_unknown_keys_and_wrong_types_are_reported_together_with_dotted_paths():
    with pytest.raises(TrainerError) as info:
        config_from_dict({"train": {"lr": "fast", "epochz": 3}, "model": {"channels": [8, "x"]},
                          "bogus": 1})
    message = str(info.value)
    assert "4 problem(s)" in message
    for fragment in ("train.lr: expected float", "train.epochz: unknown key", "model.channels[1]",
                     "bogus: unknown key"):
        assert fragment in message


def test_value_checks_name_the_key():
    with pytest.raises(TrainerError, match=r"model.strides: need one stride per block"):
        config_from_dict({"model": {"channels": [8, 8, 8], "strides": [1]}})
    with pytest.raises(TrainerError, match=r"augment.snr_db: low 20.0 > high 5.0"):
        config_from_dict({"augment": {"snr_db": [20, 5]}})


def test_int_is_accepted_for_float_but_bool_is_not_int():
    assert config_from_dict({"train": {"lr": 1}}).train.lr == 1.0
    with pytest.raises(TrainerError, match="train.epochs: expected int"):
        config_from_dict({"train": {"epochs": True}})


def test_toml_and_yaml_files_and_round_trip(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('wake_word = "ok computer"\n[train]\nepochs = 3\n')
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("wake_word: ok computer\ntrain:\n  epochs: 3\n")
    a, b = load_config(toml), load_config(yaml_file)
    assert a == b and a.train.epochs == 3 and a.wake_word == "ok computer"
    out = tmp_path / "resolved.toml"
    save_config(a, out)
    assert load_config(out) == a


def test_overrides_and_missing_or_broken_files(tmp_path):
    assert load_config(None, {"train.epochs": 2}).train.epochs == 2
    with pytest.raises(TrainerError, match="not found"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = ")
    with pytest.raises(TrainerError, match="cannot parse"):
        load_config(broken)
