"""`hark mine` in-process: hits where the bursts are, bad files counted, disk full, pause and
resume, refusals on resume, the review queue into a dataset, and every command's --help."""

from __future__ import annotations

import errno
import json
import shutil

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from trainer.cli import main
from trainer.dataset import load_dataset
from trainer.mining.session import load_session


def hark(*args, code=0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _hits(path):
    return [(h["source"], h["peak_hop"], h["score"], h["clip"]) for h in load_session(path).hits]


def test_mines_every_file_and_finds_the_bursts(tone_model, audio_folder, tmp_path):
    session = tmp_path / "s.json"
    out = hark("mine", session, "--model", tone_model, audio_folder, "--no-progress").output
    assert "complete: 3/3 files done, 0 skipped" in out
    data = load_session(session)
    by_file = {}
    for hit in data.hits:
        by_file.setdefault(hit["source"].rsplit("/", 1)[1], []).append(hit["offset_s"])
    # A burst of 0.5 s starting at t peaks in score within ~0.6 s after it ends.
    assert by_file.keys() == {"a.wav", "c.flac"}
    assert [round(t) for t in by_file["a.wav"]] in ([5], [6])
    assert len(by_file["c.flac"]) == 2  # the 44.1 kHz stereo file, resampled and downmixed
    for hit in data.hits:
        clip, rate = sf.read(str(session.parent / hit["clip"]))
        assert rate == 16_000 and clip.size == int(3.0 * 16_000)  # 1 s + 1.5 s window + 0.5 s
        assert np.abs(clip).max() > 0.3  # the burst is in the clip
    assert data.data["settings"]["threshold"] == pytest.approx(0.3)  # 0.6 x manifest's 0.5


def test_bad_files_are_skipped_and_counted(tone_model, audio_folder, tmp_path):
    (audio_folder / "garbage.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 10)
    truncated = audio_folder / "truncated.wav"
    shutil.copy(audio_folder / "a.wav", truncated)
    truncated.write_bytes(truncated.read_bytes()[:20_000])
    flac = audio_folder / "b" / "c.flac"
    (audio_folder / "cut.flac").write_bytes(flac.read_bytes()[:len(flac.read_bytes()) // 2])
    (audio_folder / "empty.ogg").write_bytes(b"")
    session = tmp_path / "s.json"
    result = hark("mine", session, "--model", tone_model, audio_folder, "--no-progress")
    assert "3/7 files done, 4 skipped" in result.output
    data = load_session(session)
    errors = {f["path"].rsplit("/", 1)[1]: f["error"] for f in data.files if f["error"]}
    assert set(errors) == {"garbage.wav", "truncated.wav", "cut.flac", "empty.ogg"}
    assert "truncated" in errors["truncated.wav"]
    assert data.counts()["files_skipped"] == 4


def _claiming(rate: int, data_bytes: int) -> bytes:
    """A 16-bit mono WAV whose header claims `rate` Hz, followed by silence."""
    import struct
    fmt = struct.pack("<HHIIHH", 1, 1, rate, (2 * rate) % 2**32, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", data_bytes)
    return b"RIFF" + struct.pack("<I", len(body) + data_bytes) + body + bytes(data_bytes)


def test_hostile_sample_rates_are_skipped_and_counted(tone_model, audio_folder, tmp_path):
    """100 KB claiming 1 Hz used to abort the session with a traceback (a 3 GiB allocation)."""
    (audio_folder / "one_hz.wav").write_bytes(_claiming(1, 100_000))
    (audio_folder / "four_ghz.wav").write_bytes(_claiming(4_000_000_000, 10_000))
    session = tmp_path / "s.json"
    result = hark("mine", session, "--model", tone_model, audio_folder, "--no-progress")
    assert "complete: 3/5 files done, 2 skipped" in result.output
    errors = {f["path"].rsplit("/", 1)[1]: f["error"] for f in load_session(session).files if f["error"]}
    assert set(errors) == {"one_hz.wav", "four_ghz.wav"}
    assert "sample rate of 1 Hz, outside 8000-192000 Hz" in errors["one_hz.wav"]


def test_disk_full_while_saving_a_clip_leaves_the_session_consistent(tone_model, long_wav,
                                                                     tmp_path, monkeypatch):
    reference = tmp_path / "ref.json"
    hark("mine", reference, "--model", tone_model, long_wav, "--no-progress")
    session = tmp_path / "s.json"
    calls = {"n": 0}
    real = __import__("trainer.mining.miner", fromlist=["write_bytes"]).write_bytes

    def flaky(path, blob):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, blob)
    monkeypatch.setattr("trainer.mining.miner.write_bytes", flaky)
    result = hark("mine", session, "--model", tone_model, long_wav, "--no-progress", code=1)
    assert "disk is full" in result.output and "--resume" in result.output
    data = load_session(session)  # still valid JSON, at its last commit
    committed = {h["clip"] for h in data.hits}
    assert all((tmp_path / c).is_file() for c in committed)
    assert not list(data.clips.glob(".*tmp"))
    monkeypatch.setattr("trainer.mining.miner.write_bytes", real)
    hark("mine", session, "--resume", "--no-progress")
    got = [(h[1], h[2]) for h in _hits(session)]
    assert got == [(h[1], h[2]) for h in _hits(reference)] and len(got) == 6


def test_disk_full_while_saving_the_session_keeps_the_last_commit(tone_model, long_wav, tmp_path,
                                                                  monkeypatch):
    session = tmp_path / "s.json"
    monkeypatch.setattr("trainer.mining.miner.SAVE_INTERVAL_S", 0.0)  # commit every block
    calls = {"n": 0}
    real = __import__("trainer.mining.session", fromlist=["x"]).write_json_atomic

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] == 3:  # 1: the new session, 2: first block, 3: second block
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)
    monkeypatch.setattr("trainer.mining.session.write_json_atomic", flaky)
    out = hark("mine", session, "--model", tone_model, long_wav, "--no-progress", code=1).output
    assert "cannot save the session (the disk is full)" in out
    assert load_session(session).position["hop"] == 2048
    monkeypatch.setattr("trainer.mining.session.write_json_atomic", real)
    hark("mine", session, "--resume", "--no-progress")
    assert len(load_session(session).hits) == 6


def test_corrupted_session_gives_a_clear_error_and_is_left_alone(tone_model, long_wav, tmp_path):
    session = tmp_path / "s.json"
    session.write_text('{"kind": "hark-mining-session", "hits": [{"id": 1,')
    before = session.read_bytes()
    for args in (["mine", session, "--resume"], ["mine", session, "--model", tone_model, long_wav],
                 ["queue", "list", session], ["queue", "confirm", session, "1"]):
        out = hark(*args, code=1).output
        assert "corrupted" in out and "left untouched" in out
    assert session.read_bytes() == before


def test_pause_at_a_safe_point_then_resume(tone_model, long_wav, tmp_path, monkeypatch):
    reference = tmp_path / "ref.json"
    hark("mine", reference, "--model", tone_model, long_wav, "--no-progress", "--stride", "3")
    session = tmp_path / "s.json"
    # A stop request as a signal handler would set it, after the first block.
    monkeypatch.setattr("trainer.mining.cli._StopFlag.__call__", lambda self: True)
    result = hark("mine", session, "--model", tone_model, long_wav, "--no-progress",
                  "--stride", "3", code=75)
    assert "paused" in result.output
    data = load_session(session)
    assert data.data["state"] == "paused" and data.position["hop"] == 2048
    monkeypatch.undo()
    hark("mine", session, "--resume", "--no-progress")
    got = [(h[1], h[2]) for h in _hits(session)]
    assert got == [(h[1], h[2]) for h in _hits(reference)] and len(got) == 6
    assert load_session(session).data["state"] == "complete"


def test_resume_refuses_changed_model_or_settings_unless_forced(tone_model, audio_folder, tmp_path):
    session = tmp_path / "s.json"
    hark("mine", session, "--model", tone_model, audio_folder / "a.wav", "--no-progress")
    other = tmp_path / "other_model"
    shutil.copytree(tone_model, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["threshold"] = 0.6
    (other / "manifest.json").write_text(json.dumps(manifest))
    out = hark("mine", session, "--resume", "--model", other, code=1).output
    assert "not the model the session started with" in out and "--force" in out
    out = hark("mine", session, "--resume", "--threshold", "0.9", code=1).output
    assert "threshold: session 0.3 -> now 0.9" in out
    hark("mine", session, "--resume", "--threshold", "0.9", "--force", "--no-progress")
    assert load_session(session).data["settings"]["threshold"] == 0.9
    assert "already exists" in hark("mine", session, "--model", tone_model, audio_folder,
                                    code=1).output


def test_resume_of_a_session_with_unknown_settings_is_refused_cleanly(tone_model, audio_folder,
                                                                     tmp_path):
    """Settings a session recorded under another version (here a dropped option) are named."""
    session = tmp_path / "s.json"
    hark("mine", session, "--model", tone_model, audio_folder / "a.wav", "--no-progress")
    data = json.loads(session.read_text())
    data["settings"]["exact_features"] = False
    session.write_text(json.dumps(data))
    out = hark("mine", session, "--resume", code=1).output
    assert "unknown: ['exact_features']" in out and "start a new session" in out


def test_queue_confirms_into_the_dataset_and_discards(tone_model, audio_folder, tmp_path):
    dataset = tmp_path / "data"
    (dataset / "positive").mkdir(parents=True)
    session = tmp_path / "night.json"
    hark("mine", session, "--model", tone_model, audio_folder, "--dataset", dataset, "--no-progress")
    listed = json.loads(hark("queue", "list", session, "--json").output)
    assert [h["id"] for h in listed] and all(h["status"] == "pending" for h in listed)
    hark("queue", "confirm", session, "1-2")
    hark("queue", "confirm", session, "3", "--positive")
    data = load_session(session)
    assert [(h["status"], h["label"]) for h in data.hits] == [
        ("confirmed", "hard_negative"), ("confirmed", "hard_negative"), ("confirmed", "positive")]
    loaded = load_dataset(dataset)
    assert sorted(c.path.name for c in loaded.select("hard_negative")) == ["night_00001.wav", "night_00002.wav"]
    assert [c.path.name for c in loaded.select("positive")] == ["night_00003.wav"]
    # Cut to the window that fired, so the training loader's 1.45 s limit keeps it.
    assert sf.info(str(loaded.select("positive")[0].path)).duration == pytest.approx(1.4)
    hark("queue", "discard", session, "2")
    assert [c.path.name for c in load_dataset(dataset).select("hard_negative")] == ["night_00001.wav"]
    assert json.loads(hark("queue", "list", session, "--json").output) == []
    assert "no hit with id 9" in hark("queue", "confirm", session, "9", code=1).output
    shown = json.loads(hark("queue", "show", session, "1").output)
    assert shown[0]["dataset_path"].endswith("hard_negative/mined/night_00001.wav")
    out = hark("sessions", "list", tmp_path).output
    assert "night.json  complete  3/3 files" in out and "3 hits (0 pending)" in out
    assert json.loads(hark("sessions", "show", session).output)["counts"]["hits_confirmed"] == 2


def test_shards_merge_into_one_session(tone_model, audio_folder, tmp_path):
    shards = [tmp_path / f"s{i}.json" for i in (1, 2)]
    for i, shard in enumerate(shards, start=1):
        hark("mine", shard, "--model", tone_model, audio_folder, "--shard", f"{i}/2", "--no-progress")
    whole = tmp_path / "whole.json"
    hark("mine", whole, "--model", tone_model, audio_folder, "--no-progress")
    assert sum(len(load_session(s).files) for s in shards) == 3
    merged = tmp_path / "merged.json"
    hark("sessions", "merge", merged, *shards)
    want = [(h["source"], h["peak_hop"], h["score"]) for h in load_session(whole).hits]
    got = load_session(merged)
    assert sorted((h["source"], h["peak_hop"], h["score"]) for h in got.hits) == sorted(want)
    assert all((merged.parent / h["clip"]).is_file() for h in got.hits)


@pytest.mark.parametrize("command", [["mine"], ["queue"], ["queue", "list"], ["queue", "show"],
                                     ["queue", "play"], ["queue", "confirm"], ["queue", "discard"],
                                     ["sessions"], ["sessions", "list"], ["sessions", "show"],
                                     ["sessions", "merge"]])
def test_help(command):
    assert "Usage:" in hark(*command, "--help").output
