"""Training performance toggles: device, mixed precision, gradient checkpointing, torch.compile.

None of these changes what is trained, only how fast and in how much memory (bf16/fp16 also
round the activations). Every toggle either takes effect or says why not: an unusable
setting is a TrainerError before the first batch, and the one fallback (torch.compile on a
machine where it cannot work) is a WARNING whose message starts with ``COMPILE_FALLBACK``.

- ``train.device``: "auto" (CUDA when present, else CPU), "cpu" or "cuda". The data pipeline
  (window sampling, augmentation plugins, log-mel frontend) stays on the CPU, where the
  plugins' seeded generators live; features move to the device for the model.
- ``train.precision``: "fp32"; "bf16" (autocast: CPU and CUDA GPUs with bf16; on a CUDA GPU
  without bf16 it falls back to fp32 with a WARNING starting with ``BF16_FALLBACK``); "fp16"
  (CUDA only, with a GradScaler against underflowing gradients).
- ``train.gradient_checkpointing``: recompute each repeated block in backward instead of
  storing its activations. Only architectures that follow the convention in
  ``trainer.models.common`` have such blocks; asking it of another is a TrainerError (a toggle
  that silently did nothing would let a user believe memory was saved).
- ``train.use_compile``: ``torch.compile`` (inductor). It needs a working C++ compiler on CPU
  (Triton on GPU) and a supported Python; a tiny probe compiles once per process before
  training, and when it fails the run trains eagerly and logs COMPILE_FALLBACK with the reason.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

import torch
from torch import nn

from .config import PRECISIONS
from .config import TRAIN_DEVICES as DEVICES
from .errors import TrainerError
from .models.common import supports_checkpointing

log = logging.getLogger(__name__)

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_FALLBACK = "compile fallback"
"""Start of the WARNING logged when train.use_compile is set but torch.compile cannot work here."""
BF16_FALLBACK = "bf16 fallback"
"""Start of the WARNING logged when a CUDA GPU has no bf16 and the run trains in fp32."""

_probe_results: dict[tuple, str | None] = {}


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device for ``train.device``; under torchrun each CUDA process takes the GPU
    of its LOCAL_RANK."""
    if name not in DEVICES:
        raise TrainerError(f"train.device: unknown '{name}' (known: {', '.join(DEVICES)})")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainerError("train.device: 'cuda' asked for but torch sees no CUDA GPU here "
                           f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise TrainerError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA GPU(s); "
                           "start at most one process per GPU (torchrun --nproc_per_node)")
    return torch.device("cuda", local_rank)


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision that will really be used on ``device`` (see the module docstring)."""
    if precision not in PRECISIONS:
        raise TrainerError(f"train.precision: unknown '{precision}' (known: {', '.join(PRECISIONS)})")
    if precision == "fp16" and device.type != "cuda":
        raise TrainerError("train.precision: 'fp16' needs a CUDA GPU (CPU autocast has no fp16 "
                           "gradient scaling); use 'bf16' on the CPU or 'fp32'")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning("%s: %s has no bf16 support; training in fp32 (precision = 'fp16' gives "
                    "mixed precision on this GPU)", BF16_FALLBACK, torch.cuda.get_device_name(device))
        return "fp32"
    return precision


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed-precision context for the model's forward pass (a no-op for fp32)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def enable_checkpointing(model: nn.Module, architecture: str) -> None:
    """Switch on activation checkpointing of the model's repeated blocks, or say why it cannot."""
    if not supports_checkpointing(model):
        raise TrainerError(
            f"train.gradient_checkpointing: architecture '{architecture}' has no repeated blocks to "
            "checkpoint (it needs `blocks` and `gradient_checkpointing` attributes and run_blocks, see "
            "trainer/models/common.py); set it to false for this architecture")
    model.gradient_checkpointing = True


def compile_blocker(device: torch.device | None = None) -> str | None:
    """Why torch.compile cannot work on ``device`` in this process, or None when a probe
    compiled and ran there.

    The probe compiles a two-op function with the default (inductor) backend, which exercises
    what it needs (a C++ compiler on CPU, Triton on CUDA); the answer is cached per device type
    and compiler setting. ``device`` defaults to the CPU.
    """
    device = device or torch.device("cpu")
    if not torch._dynamo.is_dynamo_supported():
        return f"torch.compile does not support this platform/Python (torch {torch.__version__})"
    import torch._inductor.config as inductor_config
    key = (device.type, tuple(inductor_config.cpp.cxx), torch.__version__)
    if key not in _probe_results:
        try:
            probe = torch.compile(lambda x: torch.relu(x) * 2.0 + 1.0)
            x = torch.linspace(-1.0, 1.0, 8, device=device)
            ok = torch.allclose(probe(x), torch.relu(x) * 2.0 + 1.0)
            _probe_results[key] = None if ok else "the probe's compiled result differed from eager"
        except Exception as exc:  # noqa: BLE001 - any backend failure means: no compile here
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            _probe_results[key] = f"{type(exc).__name__}: {first}"[:300]
    return _probe_results[key]


def compile_model(model: nn.Module, device: torch.device | None = None) -> tuple[nn.Module, bool]:
    """``(torch.compile(model), True)``, or ``(model, False)`` after logging COMPILE_FALLBACK."""
    reason = compile_blocker(device)
    if reason is not None:
        log.warning("%s: train.use_compile is set but torch.compile cannot work here (%s); "
                    "training eagerly. Fix: install a C++ compiler (e.g. `apt install g++`; Triton "
                    "for CUDA) or a supported Python, or set use_compile = false to silence this",
                    COMPILE_FALLBACK, reason)
        return model, False
    return torch.compile(model), True


@dataclass
class Runtime:
    """The effective toggles of one run and the step they imply."""

    device: torch.device
    precision: str
    compiled: bool
    checkpointing: bool
    scaler: torch.amp.GradScaler | None = None

    def autocast(self) -> contextlib.AbstractContextManager:
        return autocast(self.precision, self.device)

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimizer step; fp16 scales the loss so small gradients survive."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def describe(self) -> str:
        return (f"device {self.device}, precision {self.precision}, compile "
                f"{'on' if self.compiled else 'off'}, gradient checkpointing "
                f"{'on' if self.checkpointing else 'off'}")


def prepare_model(model: nn.Module, train_config, architecture: str, local_rank: int = 0) -> Runtime:
    """Move ``model`` to the configured device and switch on checkpointing; the returned
    Runtime says what is in effect. Compiling is separate (``compile_model``) because it must
    wrap the model after DDP, and weights are loaded into the plain module before either."""
    device = resolve_device(train_config.device, local_rank)
    precision = resolve_precision(train_config.precision, device)
    model.to(device)
    if train_config.gradient_checkpointing:
        enable_checkpointing(model, architecture)
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    return Runtime(device, precision, False, bool(train_config.gradient_checkpointing), scaler)
