"""Performance toggles: each one really acts (compiled module, recomputed blocks, bf16 convs)
or says why not (named fallback, clear error), and the config values reach the loop."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from sentry.constants import N_MELS, SAMPLE_RATE, WINDOW_FRAMES
from trainer import perf
from trainer.audio import write_wav
from trainer.config import ModelConfig, load_config
from trainer.distributed import Distributed, from_env
from trainer.errors import TrainerError
from trainer.loop import LAST, load_checkpoint, train
from trainer.models.tcresnet import TCResNet

TINY_MODEL = ModelConfig(channels=(8, 8, 12), strides=(1, 2), kernel_size=5, dropout=0.25)


def _features(batch: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, WINDOW_FRAMES, N_MELS, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def compile_works():
    """torch.compile needs a C++ compiler here (run.sh's Debian may lack g++): skip, saying why."""
    reason = perf.compile_blocker()
    if reason is not None:
        pytest.skip(f"torch.compile cannot work on this machine: {reason}")


def test_compile_toggle_yields_a_compiled_module_matching_eager(compile_works):
    torch.manual_seed(0)
    model = TCResNet(TINY_MODEL).eval()
    compiled, ok = perf.compile_model(model)
    assert ok
    assert isinstance(compiled, torch._dynamo.eval_frame.OptimizedModule)
    assert compiled._orig_mod is model  # weights are shared, so state_dict comes from `model`
    with torch.no_grad():
        torch.testing.assert_close(compiled(_features()), model(_features()), atol=1e-5, rtol=1e-5)


def test_compile_on_an_unsupported_platform_is_a_named_fallback(monkeypatch, caplog):
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with caplog.at_level(logging.WARNING, logger="trainer.perf"):
        _, ok = perf.compile_model(TCResNet(TINY_MODEL))
    assert not ok
    assert f"{perf.COMPILE_FALLBACK}: train.use_compile is set" in caplog.text
    assert "does not support this platform" in caplog.text


def _block_calls(model: TCResNet) -> list[int]:
    counts = [0] * len(model.blocks)
    for i, block in enumerate(model.blocks):
        # A pre-hook: the recomputation stops early once backward has what it needs, so a
        # block's (post-)forward hook would not see it.
        block.register_forward_pre_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    torch.manual_seed(1)
    model(_features()).sum().backward()
    return counts


def test_gradient_checkpointing_recomputes_every_block_in_backward():
    torch.manual_seed(0)
    plain, checkpointed = TCResNet(TINY_MODEL), TCResNet(TINY_MODEL)
    checkpointed.load_state_dict(plain.state_dict())
    perf.enable_checkpointing(checkpointed, "tcresnet")
    assert _block_calls(plain) == [1, 1]
    assert _block_calls(checkpointed) == [2, 2]  # forward, then again in backward
    # Same maths: the recomputation replays the dropout masks (checkpoint keeps the RNG state).
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_gradient_checkpointing_without_repeated_blocks_is_a_clear_error():
    class Flat(nn.Module):
        def forward(self, x):
            return x.mean(dim=(1, 2))

    with pytest.raises(TrainerError, match=r"train.gradient_checkpointing: architecture 'flat' has no "
                                           r"repeated blocks.*set it to false"):
        perf.enable_checkpointing(Flat(), "flat")


def test_bf16_autocast_runs_the_convolutions_in_bf16():
    model = TCResNet(TINY_MODEL).eval()
    dtypes = []
    model.stem[0].register_forward_hook(lambda _m, _i, out: dtypes.append(out.dtype))
    cpu = torch.device("cpu")
    with torch.no_grad():
        with perf.autocast("bf16", cpu):
            low = model(_features())
        with perf.autocast("fp32", cpu):
            full = model(_features())
    assert dtypes == [torch.bfloat16, torch.float32]
    assert torch.isfinite(low.float()).all()
    assert not torch.equal(low.float(), full)  # rounded, so not bit-identical...
    torch.testing.assert_close(low.float(), full, atol=0.1, rtol=0.05)  # ...but close


def test_precision_and_device_errors_name_the_key_and_the_fix():
    cpu = torch.device("cpu")
    with pytest.raises(TrainerError, match="train.precision: 'fp16' needs a CUDA GPU.*use 'bf16'"):
        perf.resolve_precision("fp16", cpu)
    assert perf.resolve_precision("bf16", cpu) == "bf16"
    assert perf.resolve_device("cpu") == cpu
    if not torch.cuda.is_available():
        assert perf.resolve_device("auto") == cpu
        with pytest.raises(TrainerError, match="train.device: 'cuda' asked for but torch sees no CUDA"):
            perf.resolve_device("cuda")
    with pytest.raises(TrainerError) as info:
        load_config(None, {"train.precision": "fp8", "train.device": "tpu", "train.use_compile": "yes"})
    message = str(info.value)
    assert "train.use_compile: expected bool" in message
    with pytest.raises(TrainerError) as info:
        load_config(None, {"train.precision": "fp8", "train.device": "tpu"})
    assert "train.precision: unknown 'fp8'" in str(info.value)
    assert "train.device: unknown 'tpu'" in str(info.value)


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert from_env() == Distributed()
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(TrainerError, match="LOCAL_RANK missing.*torchrun"):
        from_env()
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    ctx = from_env()
    assert (ctx.rank, ctx.world, ctx.local_rank, ctx.threads(2), ctx.is_main) == (1, 2, 1, 1, False)


def test_every_rank_gets_an_equal_disjoint_slice_of_a_batch():
    pcm, labels = torch.arange(7.0)[:, None].repeat(1, 3), torch.arange(7.0)
    slices = [Distributed(rank, 2).shard(pcm, labels) for rank in range(2)]
    assert [s[1].tolist() for s in slices] == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert Distributed(0, 2).shard(pcm[:1], labels[:1]) is None  # every rank skips it alike
    assert Distributed(0, 2).seed(5) == 5 and Distributed(1, 2).seed(5) != 5


@pytest.fixture(scope="module")
def noise_dataset(tmp_path_factory):
    """Hand-made dataset: 'positives' are chirps, negatives noise; splits by path hash."""
    root = tmp_path_factory.mktemp("perf") / "chirps"
    rng = np.random.default_rng(0)
    t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
    for i in range(40):
        chirp = np.sin(2 * np.pi * (400 + 300 * i % 900 + 800 * t) * t) * 0.3
        write_wav(root / "positive" / f"p{i:02d}.wav", chirp + rng.normal(0, 0.01, len(t)))
        write_wav(root / "negative" / f"n{i:02d}.wav", rng.normal(0, 0.1, SAMPLE_RATE))
    write_wav(root / "background" / "hum.wav", rng.normal(0, 0.05, 2 * SAMPLE_RATE))
    return root


def _tiny_run_config(dataset, **train):
    return load_config(None, {
        "data.dataset": str(dataset), "train.epochs": 1, "train.batch_size": 32,
        "model.channels": [8, 8, 12], "model.strides": [1, 2], "model.kernel_size": 5,
        "augment.chain": [], **{f"train.{key}": value for key, value in train.items()}})


def test_config_toggles_reach_the_loop_and_checkpoints_keep_plain_keys(noise_dataset, tmp_path, compile_works):
    from torch._dynamo.utils import counters
    before = counters["stats"]["unique_graphs"]
    config = _tiny_run_config(noise_dataset, use_compile=True, gradient_checkpointing=True,
                              precision="bf16", device="cpu")
    result = train(config, tmp_path / "run", progress=False)
    assert result.runtime.compiled and result.runtime.checkpointing
    assert (result.runtime.precision, result.runtime.device.type) == ("bf16", "cpu")
    assert counters["stats"]["unique_graphs"] > before  # dynamo really traced the model
    state = load_checkpoint(tmp_path / "run" / LAST)["model"]
    assert not any(key.startswith(("_orig_mod.", "module.")) for key in state)
    TCResNet(ModelConfig(channels=(8, 8, 12), strides=(1, 2), kernel_size=5)).load_state_dict(state)


def test_hark_train_compile_without_a_cxx_compiler_falls_back_and_says_so(noise_dataset, tmp_path):
    """A machine without a C++ compiler, for real: a fresh process whose CXX does not exist and
    whose inductor cache is empty (an in-process test would reuse kernels compiled earlier)."""
    config = tmp_path / "tiny.toml"
    config.write_text('[model]\nchannels = [8, 8, 12]\nstrides = [1, 2]\nkernel_size = 5\n'
                      '[augment]\nchain = []\n[train]\nbatch_size = 32\n')
    env = {**os.environ, "CXX": str(tmp_path / "no-such-c++"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")}
    done = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "train", "--config", str(config), "--dataset",
         str(noise_dataset), "--run-dir", str(tmp_path / "run"), "--epochs", "1", "--compile"],
        env=env, check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"WARNING trainer.perf: {perf.COMPILE_FALLBACK}: train.use_compile is set" in done.stderr
    assert "InvalidCxxCompiler" in done.stderr
    assert "compile off" in done.stderr  # the run says what is in effect
    assert "trained 1 epoch(s)" in done.stdout


def test_train_flags_reach_the_config(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import trainer.loop
    from trainer.cli import main
    seen = {}

    def fake_training(config, run_dir, resume=False, plugins=None):  # records the resolved config only
        seen.update({k: getattr(config.train, k) for k in ("use_compile", "gradient_checkpointing",
                                                           "precision", "device")})
        raise trainer.loop.TrainerError("stop here")

    monkeypatch.setattr(trainer.loop, "train", fake_training)
    args = ["train", "--dataset", str(tmp_path / "d"), "--run-dir", str(tmp_path / "r")]
    CliRunner().invoke(main, args + ["--compile", "--grad-checkpointing", "--precision", "bf16",
                                     "--device", "cpu"])
    assert seen == {"use_compile": True, "gradient_checkpointing": True, "precision": "bf16", "device": "cpu"}
    config = tmp_path / "c.toml"
    config.write_text("[train]\nuse_compile = true\ngradient_checkpointing = true\n")
    CliRunner().invoke(main, args + ["--config", str(config), "--no-compile", "--no-grad-checkpointing"])
    assert (seen["use_compile"], seen["gradient_checkpointing"]) == (False, False)
    bad = CliRunner().invoke(main, args + ["--precision", "fp8"])
    assert bad.exit_code == 2 and "'fp8' is not one of" in bad.output


def test_fp16_on_the_cpu_stops_hark_train_with_a_clean_error(noise_dataset, tmp_path):
    from click.testing import CliRunner

    from trainer.cli import main
    result = CliRunner().invoke(main, ["train", "--dataset", str(noise_dataset), "--run-dir",
                                       str(tmp_path / "r"), "--device", "cpu", "--precision", "fp16"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "train.precision: 'fp16' needs a CUDA GPU" in result.output
