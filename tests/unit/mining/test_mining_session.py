"""Session files: atomic writes, corrupted files left alone, review fields kept, shards, ids."""

from __future__ import annotations

import json

import pytest

from trainer.mining import MiningError
from trainer.mining.miner import parse_shard
from trainer.mining.queue import parse_ids
from trainer.mining.session import (
    Session,
    list_sessions,
    load_session,
    new_session,
    write_json_atomic,
)


def _session(path, hits=3) -> Session:
    session = new_session(path, files=[], settings={}, model={"hash": "x"}, dataset=None, shard=(1, 1))
    session.data["hits"] = [{"id": i, "status": "pending", "label": None, "dataset_path": None,
                             "reviewed": None, "score": 0.5} for i in range(1, hits + 1)]
    session.save(keep_review=False)
    return session


def test_corrupted_session_is_reported_and_never_rewritten(tmp_path):
    path = tmp_path / "s.json"
    path.write_text('{"kind": "hark-mining-session", "files": [')
    before = path.read_bytes()
    with pytest.raises(MiningError, match="corrupted.*left untouched"):
        load_session(path)
    assert path.read_bytes() == before
    other = tmp_path / "other.json"
    other.write_text('{"name": "not a session"}')
    with pytest.raises(MiningError, match="not a hark mining session"):
        load_session(other)
    rows = list_sessions(tmp_path)
    assert [(p.name, s is None) for p, s, _ in rows] == [("s.json", True)]


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "s.json"
    write_json_atomic(path, {"a": 1})

    def full(*_args, **_kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr("trainer.mining.session.os.fsync", full)
    with pytest.raises(OSError):
        write_json_atomic(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_a_miner_save_keeps_what_the_queue_wrote(tmp_path):
    path = tmp_path / "s.json"
    miner_view = _session(path)
    queue_view = load_session(path)
    queue_view.hit(2).update(status="confirmed", label="hard_negative")
    queue_view.save(keep_review=False)
    miner_view.data["hits"].append({"id": 4, "status": "pending", "score": 0.7})
    miner_view.save()
    saved = load_session(path)
    assert [(h["id"], h["status"]) for h in saved.hits] == [
        (1, "pending"), (2, "confirmed"), (3, "pending"), (4, "pending")]
    assert saved.hit(2)["label"] == "hard_negative"


def test_shards_cover_every_file_exactly_once():
    files = list(range(23))
    for count in (1, 2, 5, 23, 40):
        seen = []
        for index in range(1, count + 1):
            i, n = parse_shard(f"{index}/{count}")
            seen += [f for k, f in enumerate(files) if k % n == i - 1]
        assert sorted(seen) == files
    for bad in ("0/4", "5/4", "x", "1/0", "2"):
        with pytest.raises(MiningError, match="--shard"):
            parse_shard(bad)


def test_hit_id_specs(tmp_path):
    session = _session(tmp_path / "s.json", hits=10)
    session.hit(3)["status"] = "discarded"
    assert parse_ids(("1-3", "7,9"), session) == [1, 2, 3, 7, 9]
    assert parse_ids(("all",), session) == list(range(1, 11))
    assert 3 not in parse_ids(("pending",), session)
    with pytest.raises(MiningError, match="no hit with id 11"):
        parse_ids(("9-11",), session)
    with pytest.raises(MiningError, match="expected numbers"):
        parse_ids(("a-b",), session)
