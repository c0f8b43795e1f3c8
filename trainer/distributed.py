"""Data-parallel training across processes started by ``torchrun``.

``torchrun --nproc_per_node N -m trainer.cli train ...`` starts N copies of the same command
and sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE (and MASTER_ADDR/MASTER_PORT) in
each; without them the trainer runs as one process and nothing here does anything.

How the work is shared: every rank builds the same epoch (the window sampler is seeded by
(seed, epoch), so all ranks draw identical batches) and trains on its own equal slice of
each batch's rows. DDP averages the gradients, so an optimizer step sees the whole batch, as
in one process: the learning-rate schedule and step count do not change with the number of
processes. Equal slices on every rank keep the collectives in lockstep (a rank with one
batch more would hang the others). Each rank augments its slice from its own seed stream.
Only rank 0 writes the config, checkpoints, metrics and progress.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import TrainerError

log = logging.getLogger(__name__)

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
"""Set by torchrun in every process it starts."""
RANK_SEED_STRIDE = 1_000_003
"""Added to a seed once per rank, so ranks augment their slices differently (rank 0: unchanged,
so a one-process run is the same as before distributed training existed)."""
GROUP_TIMEOUT = datetime.timedelta(minutes=30)
"""How long a rank waits in a collective (e.g. while rank 0 validates and saves) before failing."""


@dataclass
class Distributed:
    """This process's place in the run (world 1: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1
    owns_group: bool = False
    """True when ``start`` created the process group (and ``close`` must destroy it)."""

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and shows progress."""
        return self.rank == 0

    def seed(self, base: int) -> int:
        """A per-rank seed derived from ``base`` (rank 0 keeps ``base``)."""
        return base + self.rank * RANK_SEED_STRIDE

    def threads(self, machine_threads: int) -> int:
        """Intra-op threads for this process: ``train.threads`` is shared by the local ranks."""
        return max(1, machine_threads // self.local_world)

    def shard(self, pcm: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This rank's rows of a batch, or None when the batch has fewer rows than ranks
        (every rank then skips it, so all ranks still take the same number of steps)."""
        if not self.active:
            return pcm, labels
        per_rank = len(labels) // self.world
        if per_rank == 0:
            return None
        rows = slice(self.rank * per_rank, (self.rank + 1) * per_rank)
        return pcm[rows], labels[rows]

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        """DDP around ``model`` (which must already be on ``device``); the module itself when
        running alone. DDP broadcasts rank 0's weights, so every rank starts identical."""
        if not self.active:
            return model
        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def sync_buffers(self, model: nn.Module) -> None:
        """Copy rank 0's buffers (BatchNorm running statistics, which each rank updates from
        its own slice) to every rank, so all ranks hold the state that rank 0 saves."""
        if self.active:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def share(self, value):
        """Rank 0's ``value`` on every rank (a small picklable object, e.g. the best epoch)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def from_env() -> Distributed:
    """Read torchrun's variables; a plain process (none of them set) gets world size 1."""
    present = [name for name in ENV_VARS if name in os.environ]
    if not present:
        return Distributed()
    if len(present) != len(ENV_VARS):
        missing = ", ".join(name for name in ENV_VARS if name not in os.environ)
        raise TrainerError(f"distributed training: {', '.join(present)} set but {missing} missing; "
                           "start the processes with torchrun (`torchrun --nproc_per_node N -m "
                           "trainer.cli train ...`), which sets all of them")
    try:
        values = {name: int(os.environ[name]) for name in ENV_VARS}
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", values["WORLD_SIZE"]))
    except ValueError as exc:
        raise TrainerError(f"distributed training: {exc}; RANK, WORLD_SIZE, LOCAL_RANK must be "
                           "integers (torchrun sets them)") from exc
    if not 0 <= values["RANK"] < values["WORLD_SIZE"]:
        raise TrainerError(f"distributed training: RANK {values['RANK']} outside WORLD_SIZE "
                           f"{values['WORLD_SIZE']}")
    return Distributed(values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"], local_world)


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def start(ctx: Distributed, device: torch.device) -> None:
    """Join the process group (a no-op alone, or when the caller already started one)."""
    if not ctx.active or dist.is_initialized():
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = backend_for(device)
    try:
        dist.init_process_group(backend, rank=ctx.rank, world_size=ctx.world, timeout=GROUP_TIMEOUT)
    except Exception as exc:  # rendezvous failures: wrong MASTER_ADDR/PORT, a rank that died
        raise TrainerError(f"distributed training: cannot join the {backend} process group as rank "
                           f"{ctx.rank} of {ctx.world} ({exc}); start the run with torchrun") from exc
    ctx.owns_group = True
    log.info("rank %d of %d joined the %s process group", ctx.rank, ctx.world, backend)
