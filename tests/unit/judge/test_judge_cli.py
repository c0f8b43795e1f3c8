"""`hark-judge` (judge.cli): help everywhere, setup errors as messages, never tracebacks."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from judge.cli import cli


@pytest.mark.parametrize("args", [[], ["serve"]])
def test_help_works_on_every_command(args):
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output
    if args:
        for option in ["--model", "--workers", "--keys-file", "--threshold", "--max-body-bytes",
                       "--max-clip-seconds", "--port", "--host"]:
            assert option in result.output


def test_serving_without_keys_is_a_clean_error(judge_model, monkeypatch):
    monkeypatch.delenv("HARK_JUDGE_KEYS", raising=False)
    result = CliRunner().invoke(cli, ["serve", "--model", str(judge_model), "--port", "0"])
    assert result.exit_code == 1 and "no API keys configured" in result.output
    assert "Traceback" not in result.output


def test_serving_a_folder_that_is_not_a_model_is_a_clean_error(tmp_path, judge_spec, monkeypatch):
    monkeypatch.setenv("HARK_JUDGE_KEYS", judge_spec.key)
    result = CliRunner().invoke(cli, ["serve", "--model", str(tmp_path), "--port", "0"])
    assert result.exit_code == 1 and "no manifest" in result.output
    assert "Traceback" not in result.output


def test_a_port_in_use_is_a_clean_error(judge_model, judge_spec, monkeypatch):
    import socket
    monkeypatch.setenv("HARK_JUDGE_KEYS", judge_spec.key)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = CliRunner().invoke(cli, ["serve", "--model", str(judge_model), "--port", str(port)])
    assert result.exit_code == 1 and f"cannot listen on 127.0.0.1:{port}" in result.output


def test_one_worker_per_core_by_default_with_a_cap(monkeypatch):
    from judge import cli as judge_cli

    monkeypatch.setattr(judge_cli.os, "sched_getaffinity", lambda pid: set(range(2)), raising=False)
    assert judge_cli.default_workers() == 2
    monkeypatch.setattr(judge_cli.os, "sched_getaffinity", lambda pid: set(range(96)), raising=False)
    assert judge_cli.default_workers() == judge_cli.MAX_DEFAULT_WORKERS
