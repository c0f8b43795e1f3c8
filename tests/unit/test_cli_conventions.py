"""One convention across hark, hark-sentry and hark-judge (sentry.clitools): a user error is
`Error: ...` and exit 1 without a traceback, Ctrl-C is exit 130, `--version` comes from the
installed package's metadata, `--model DIR` is the model everywhere and the old spellings
still work, one logging format."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import sentry
from sentry.clitools import EXIT_INTERRUPTED, CommandGroup, setup_logging
from sentry.errors import SentryError
from sentry.version import DISTRIBUTION

REPO_ROOT = Path(sentry.__file__).resolve().parents[1]
TOOLS = {"hark": "trainer.cli", "hark-sentry": "sentry.cli", "hark-judge": "judge.cli"}
FAKE_VERSION = "9.8.7"


def _run(module: str, *args: str, cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m MODULE ARGS` from this checkout, as the console script runs it."""
    path = [str(extra_path)] if extra_path else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*path, str(REPO_ROOT)]),
           "HARK_JUDGE_KEYS": ""}
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120, check=False)


@pytest.fixture(scope="module")
def installed_metadata(tmp_path_factory) -> Path:
    """A folder holding the distribution's metadata as pip writes it, at FAKE_VERSION: first
    on the path, it is what importlib.metadata finds."""
    root = tmp_path_factory.mktemp("site")
    info = root / f"{DISTRIBUTION.replace('-', '_')}-{FAKE_VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DISTRIBUTION}\n"
                                   f"Version: {FAKE_VERSION}\n")
    return root


@pytest.mark.parametrize("prog", TOOLS)
def test_version_comes_from_the_package_metadata(prog, installed_metadata, tmp_path):
    done = _run(TOOLS[prog], "--version", cwd=tmp_path, extra_path=installed_metadata)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{prog}, version {FAKE_VERSION}"


def test_the_library_versions_are_the_same_number(installed_metadata, tmp_path):
    code = "import sentry, judge; print(sentry.__version__, judge.__version__)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(installed_metadata), str(REPO_ROOT)])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.stdout.split() == [FAKE_VERSION, FAKE_VERSION], done.stderr


@pytest.mark.parametrize("prog, args, message", [
    ("hark", ["ensemble", "--model", "{empty}", "--out", "{tmp}/out"], "at least 2 exported models"),
    ("hark-sentry", ["scan", "{tmp}/missing.wav", "--model", "{empty}"], "no manifest"),
    ("hark-judge", ["serve", "--model", "{empty}", "--port", "0"], "no API keys configured"),
])
def test_a_user_error_is_a_message_and_exit_1_in_every_tool(prog, args, message, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = [a.format(empty=empty, tmp=tmp_path) for a in args]
    done = _run(TOOLS[prog], *args, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("Error: ") and message in done.stderr
    assert "Traceback" not in done.stderr


def _group(error: BaseException) -> click.Group:
    @click.group(cls=CommandGroup, user_errors=(SentryError,))
    def tool() -> None:
        pass

    @tool.command()
    def fails() -> None:  # no decorator of its own: the group's path handles it
        raise error
    return tool


def test_the_group_turns_its_errors_into_messages():
    result = CliRunner().invoke(_group(SentryError("the folder is wrong; fix it")), ["fails"])
    assert result.exit_code == 1
    assert result.output == "Error: the folder is wrong; fix it\n"


def test_ctrl_c_is_exit_130_without_a_traceback():
    result = CliRunner().invoke(_group(KeyboardInterrupt()), ["fails"])
    assert result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in result.output


def test_a_bug_keeps_its_traceback():
    """Only the tool's own error types are the user's to fix; anything else is reported."""
    result = CliRunner().invoke(_group(ValueError("a bug")), ["fails"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


# ------------------------------------------------------------------ --model and old spellings

def test_hark_eval_takes_model_and_the_old_positional_alike(tmp_path):
    from trainer.cli import main
    model, eval_root = tmp_path / "model", tmp_path / "eval"
    model.mkdir()
    eval_root.mkdir()
    runner = CliRunner()
    new = runner.invoke(main, ["eval", "--model", str(model), "--eval-root", str(eval_root)])
    old = runner.invoke(main, ["eval", str(model), "--eval-root", str(eval_root)])
    # both reach the command: the (empty) eval root is what it complains about
    assert new.exit_code == old.exit_code == 1
    assert new.output == old.output and "no evaluation sets" in new.output
    both = runner.invoke(main, ["eval", "--model", str(model), str(eval_root), "--eval-root",
                                str(eval_root)])
    assert both.exit_code == 2 and "two models given" in both.output
    none = runner.invoke(main, ["eval", "--eval-root", str(eval_root)])
    assert none.exit_code == 2 and "--model" in none.output


def test_hark_cascade_eval_takes_model_and_the_old_positional_alike(tmp_path):
    from trainer.cli import main
    model, eval_root = tmp_path / "model", tmp_path / "eval"
    model.mkdir()
    eval_root.mkdir()
    runner = CliRunner()
    new = runner.invoke(main, ["cascade", "eval", "--model", str(model), "--eval-root", str(eval_root)])
    old = runner.invoke(main, ["cascade", "eval", str(model), "--eval-root", str(eval_root)])
    assert new.exit_code == old.exit_code == 1, new.output
    assert new.output == old.output and "Traceback" not in new.output


def test_hark_ensemble_merges_model_options_and_old_positionals(tmp_path):
    from trainer.cli import main
    member = tmp_path / "a"
    member.mkdir()
    runner = CliRunner()
    out = ["--out", str(tmp_path / "out")]
    for args in (["--model", str(member)], [str(member)]):
        result = runner.invoke(main, ["ensemble", *args, *out])
        assert result.exit_code == 1 and "at least 2 exported models, got 1" in result.output
    # one of each spelling: two members, the same folder, which the command itself refuses
    result = runner.invoke(main, ["ensemble", str(member), "--model", str(member), *out])
    assert result.exit_code == 1 and "named twice" in result.output
    result = runner.invoke(main, ["ensemble", *out])
    assert result.exit_code == 2 and "--model" in result.output


def test_wyoming_takes_model_and_the_old_model_dir_alike(tmp_path):
    """Both spellings fill one list: with a judge, two models of either spelling are refused
    before anything (the wyoming package included) is loaded."""
    from sentry.cli import cli
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    result = CliRunner().invoke(cli, ["wyoming", "--model", str(a), "--model-dir", str(b),
                                      "--judge-url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "--judge-url takes one --model" in result.output
    help_text = " ".join(CliRunner().invoke(cli, ["wyoming", "--help"]).output.split())
    assert "--model, --model-dir" in help_text and "old spelling" in help_text


def test_mine_uses_the_same_model_option():
    from trainer.cli import main
    result = CliRunner().invoke(main, ["mine", "--help"])
    assert result.exit_code == 0 and "--model DIRECTORY" in result.output


# ------------------------------------------------------------------ --epochs 0

def test_epochs_0_is_refused_by_the_config_check_not_ignored(tmp_path):
    """`if epochs:` used to drop 0 and train the default 16 epochs; now 0 reaches the config
    and its check names the key."""
    from trainer.cli import main
    result = CliRunner().invoke(main, ["train", "--dataset", str(tmp_path / "missing"),
                                       "--run-dir", str(tmp_path / "run"), "--epochs", "0"])
    assert result.exit_code == 1
    assert "train.epochs: must be >= 1, got 0" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "run").exists()


# ------------------------------------------------------------------ logging

def test_one_logging_format(tmp_path):
    code = ("import logging; from sentry.clitools import setup_logging; "
            "setup_logging('hark-x', False, level=logging.INFO); "
            "logging.getLogger('trainer.loop').info('progress'); "
            "logging.getLogger('trainer.loop').debug('detail'); "
            "logging.getLogger('somelib').info('library chatter'); "
            "logging.getLogger('somelib').warning('library warning')")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=60, check=False)
    assert done.stderr.splitlines() == ["hark-x: INFO trainer.loop: progress",
                                        "hark-x: WARNING somelib: library warning"]


def test_verbose_logs_debug_from_our_loggers():
    root = logging.getLogger()
    saved = root.level, list(root.handlers), logging.getLogger("sentry").level
    try:
        setup_logging("hark-sentry", True)
        assert logging.getLogger("sentry.detector").isEnabledFor(logging.DEBUG)
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("sentry").setLevel(saved[2])
