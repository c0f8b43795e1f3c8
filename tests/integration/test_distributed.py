"""Data-parallel training for real: torchrun starts 2 CPU processes (gloo) on the tiny dataset."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from trainer.loop import LAST, load_checkpoint

pytestmark = pytest.mark.integration

WORKER = Path(__file__).with_name("ddp_worker.py")
TIMEOUT_S = 300
"""Generous for 2 processes on a busy 2-core machine; a hung collective fails the test instead."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_processes_keep_identical_weights(tiny_dataset, tmp_path):
    out, run = tmp_path / "ranks", tmp_path / "run"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
         str(WORKER), str(tiny_dataset), str(run), str(out)],
        env=env, check=False, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stderr  # rank 0 says how it trains

    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    final0, final1 = ranks[0]["final"], ranks[1]["final"]
    assert final0.keys() == final1.keys()
    for name in final0:
        assert torch.equal(final0[name], final1[name]), f"{name} differs between the ranks"
    moved = [name for name in final0 if final0[name].is_floating_point()
             and not torch.equal(final0[name], ranks[0]["initial"][name])]
    assert "head.weight" in moved and len(moved) > len(final0) // 2

    # Only rank 0 wrote the run, and its checkpoint is the shared state with plain keys.
    checkpoint = load_checkpoint(run / LAST)
    saved = checkpoint.get("train_model", checkpoint["model"])  # "model": the weight average
    assert not any(key.startswith(("module.", "_orig_mod.")) for key in checkpoint["model"])
    for name in final0:
        assert torch.equal(saved[name], final0[name]), name
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
