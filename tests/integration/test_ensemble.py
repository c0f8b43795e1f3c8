"""`hark ensemble`: two tiny trainings (other seeds) averaged into one exported folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from judge.verifier import Verifier
from sentry.detector import Detector
from trainer.audio import load_audio
from trainer.cli import main
from trainer.ensemble import build_ensemble
from trainer.errors import TrainerError

from .conftest import tiny_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def second(tiny_dataset, tmp_path_factory):
    from trainer.export import export_run
    from trainer.loop import train
    run = tmp_path_factory.mktemp("runs") / "tiny_seed2"
    train(tiny_config(tiny_dataset, **{"train.seed": 2}), run, progress=False)
    return export_run(run)[0]


@pytest.fixture(scope="module")
def ensemble_dir(exported, second, tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "hj"
    result = CliRunner().invoke(main, ["ensemble", str(exported), str(second), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "ensemble of 2 models" in result.output
    return out


def test_the_ensemble_scores_the_mean_of_its_members(ensemble_dir, exported, second, tiny_dataset):
    clip = np.concatenate([load_audio(p) for p in
                           sorted((tiny_dataset / "eval" / "espeak" / "positive").glob("*.wav"))[:3]])
    members = [Verifier(d).window_scores(clip)[1] for d in (exported, second)]
    ends, probs = Verifier(ensemble_dir).window_scores(clip)
    assert probs.size == ends.size > 1
    np.testing.assert_allclose(probs, np.mean(members, axis=0), atol=1e-5)
    assert not np.allclose(members[0], members[1], atol=1e-3)  # two models, not one twice
    # The sentry streams the same graphs: its scores equal the batch path's.
    detector = Detector(ensemble_dir)
    streamed = detector.score_pcm(clip)
    assert streamed.size > 0 and np.all((streamed >= 0) & (streamed <= 1))


def test_the_manifest_says_what_it_holds(ensemble_dir, exported, second):
    manifest = json.loads((ensemble_dir / "manifest.json").read_text())
    member = [json.loads((d / "manifest.json").read_text()) for d in (exported, second)]
    assert manifest["wake_word"] == "hey jarvis"
    assert set(manifest["files"]) == {"features", "model"}
    assert sorted(p.name for p in ensemble_dir.iterdir()) == ["MODEL_CARD.md", "features.onnx",
                                                              "manifest.json", "model.onnx"]
    # Members of one dataset: the ensemble keeps their provenance, and its card says so.
    assert member[0]["provenance"] and member[0]["provenance"] == member[1]["provenance"]
    assert manifest["provenance"] == {**member[0]["provenance"], "ensemble_members": 2}
    card = (ensemble_dir / "MODEL_CARD.md").read_text()
    assert "hey jarvis" in card and member[0]["provenance"]["engines"][0]["name"] in card
    assert manifest["parameters"] == sum(m["parameters"] for m in member)
    assert manifest["threshold"] == pytest.approx(np.mean([m["threshold"] for m in member]))
    assert [m["source"] for m in manifest["metrics"]["ensemble"]] == [str(exported.resolve()),
                                                                        str(second.resolve())]
    assert manifest["metrics"]["parity"]["model"]["max_abs_diff"] < 1e-4


def test_an_explicit_threshold_and_hark_eval_on_the_ensemble(exported, second, tiny_dataset,
                                                            tmp_path):
    out, manifest = build_ensemble([exported, second], tmp_path / "e", threshold=0.3)
    assert manifest.threshold == 0.3
    result = CliRunner().invoke(main, ["eval", str(out), "--eval-root", str(tiny_dataset / "eval")])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["threshold"] != 0.3  # chosen on espeak


def test_bad_ensembles_are_clean_errors(exported, second, tmp_path):
    runner = CliRunner()
    one = runner.invoke(main, ["ensemble", str(exported), "--out", str(tmp_path / "x")])
    assert one.exit_code == 1 and "at least 2" in one.output and "Traceback" not in one.output
    twice = runner.invoke(main, ["ensemble", str(exported), str(exported), "--out", str(tmp_path / "y")])
    assert twice.exit_code == 1 and "named twice" in twice.output
    inside = runner.invoke(main, ["ensemble", str(exported), str(second), "--out", str(second)])
    assert inside.exit_code == 1 and "is one of the members" in inside.output

    other = tmp_path / "alexa"
    shutil.copytree(second, other)
    manifest = json.loads((other / "manifest.json").read_text())
    (other / "manifest.json").write_text(json.dumps({**manifest, "wake_word": "alexa"}))
    with pytest.raises(TrainerError, match="one wake word"):
        build_ensemble([exported, other], tmp_path / "z")
    (other / "manifest.json").write_text(json.dumps({**manifest, "n_mels": 64}))
    with pytest.raises(TrainerError, match="n_mels"):
        build_ensemble([exported, other], tmp_path / "z")
    (other / "manifest.json").write_text(json.dumps(manifest))
    shutil.copyfile(exported / "model.onnx", other / "features.onnx")  # not a frontend at all
    with pytest.raises(TrainerError, match="features"):
        build_ensemble([exported, other], tmp_path / "z")
    assert not (tmp_path / "z").exists()  # nothing half-written
