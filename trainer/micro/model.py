"""MicroNet: a causal convolution stack small enough for an ESP32, streamable layer by layer.

Shape of the network (all convolutions causal, i.e. padded on the left only):
- stem: a convolution over STEM_KERNEL feature slices with stride `stride` (3 slices = 30 ms):
  the only stride in the network, so on the chip one Invoke consumes `stride` new slices and
  every later layer advances exactly one step per Invoke;
- `len(dilations)` residual blocks: a depthwise convolution of kernel 3 over steps `d` apart
  (dilation d), a pointwise convolution, batch norm, ReLU, plus the block's input;
- head: one linear unit on the newest step's channels, then the sigmoid.

The receptive field (`receptive_field_slices`) is kept inside the training window, so the
score of a window's last step never depends on padding: the non-streaming forward over any
stream equals the streaming model invoked slice group by slice group from zero state, step for
step (`streaming_forward` here in torch and `trainer.micro.streaming` in TensorFlow both keep
ring buffers of past activations; the tests compare them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .features import N_FEATURES

STEM_KERNEL = 5
"""Feature slices the stem looks at: 50 ms, overlapping the previous step by 2 slices."""
DW_KERNEL = 3
"""Taps of each depthwise convolution."""


@dataclass(frozen=True)
class MicroConfig:
    """The network's shape. Defaults: 28k parameters, 59 KB as int8 TFLite (64 channels would be 68 KB)."""

    channels: int = 56
    stride: int = 3
    """Feature slices per step (and per Invoke on the chip): 3 x 10 ms."""
    dilations: tuple[int, ...] = (1, 2, 4, 8, 8)
    dropout: float = 0.0
    """Dropout on each block's residual branch while training (inference ignores it)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "MicroConfig":
        return cls(channels=int(data["channels"]), stride=int(data["stride"]),
                   dilations=tuple(int(d) for d in data["dilations"]),
                   dropout=float(data.get("dropout", 0.0)))

    def receptive_field_steps(self) -> int:
        return 1 + sum((DW_KERNEL - 1) * d for d in self.dilations)

    def receptive_field_slices(self) -> int:
        return STEM_KERNEL + (self.receptive_field_steps() - 1) * self.stride


def fold_batch_norm(conv_weight: torch.Tensor, conv_bias: torch.Tensor | None,
                    bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a convolution followed by `bn` in eval mode, as one convolution."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = conv_bias if conv_bias is not None else torch.zeros_like(bn.running_mean)
    shape = (-1,) + (1,) * (conv_weight.dim() - 1)
    return conv_weight * scale.reshape(shape), (bias - bn.running_mean) * scale + bn.bias


class Block(nn.Module):
    def __init__(self, channels: int, dilation: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.dilation = dilation
        self.pad = (DW_KERNEL - 1) * dilation
        self.depthwise = nn.Conv1d(channels, channels, DW_KERNEL, dilation=dilation,
                                   groups=channels, bias=False)
        self.pointwise = nn.Conv1d(channels, channels, 1, bias=False)
        self.norm = nn.BatchNorm1d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.depthwise(nn.functional.pad(x, (self.pad, 0)))
        return x + self.drop(torch.relu(self.norm(self.pointwise(y))))


class MicroNet(nn.Module):
    """float features [B, slices, N_FEATURES] -> logits [B, steps], one per `stride` slices.

    Step j ends at slice (j + 1) * stride - 1, the last slice the chip has when it invokes."""

    def __init__(self, config: MicroConfig = MicroConfig()) -> None:
        super().__init__()
        self.config = config
        self.stem_pad = STEM_KERNEL - config.stride
        self.stem = nn.Conv1d(N_FEATURES, config.channels, STEM_KERNEL, stride=config.stride,
                              bias=False)
        self.stem_norm = nn.BatchNorm1d(config.channels)
        self.blocks = nn.ModuleList(Block(config.channels, d, config.dropout)
                                    for d in config.dilations)
        self.head = nn.Linear(config.channels, 1)

    def trunk(self, features: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(features.transpose(1, 2), (self.stem_pad, 0))
        x = torch.relu(self.stem_norm(self.stem(x)))
        for block in self.blocks:
            x = block(x)
        return x  # [B, channels, steps]

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(features).transpose(1, 2)).squeeze(-1)


def n_steps(n_slices: int, stride: int) -> int:
    """Steps MicroNet emits for n_slices of features (complete groups of `stride`)."""
    return n_slices // stride


@dataclass
class FoldedWeights:
    """Inference weights with batch norm folded in: what the streaming graphs compute with.

    Convolutions as [out, in, taps] (depthwise: [channels, 1, taps]) with biases [out]."""

    stem_w: torch.Tensor
    stem_b: torch.Tensor
    blocks: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]] = field(default_factory=list)
    """(depthwise weight, pointwise weight, pointwise bias, dilation) per block."""
    head_w: torch.Tensor | None = None
    head_b: torch.Tensor | None = None


@torch.no_grad()
def fold(model: MicroNet) -> FoldedWeights:
    model = model.eval()
    stem_w, stem_b = fold_batch_norm(model.stem.weight, None, model.stem_norm)
    weights = FoldedWeights(stem_w, stem_b, head_w=model.head.weight.clone(),
                            head_b=model.head.bias.clone())
    for block in model.blocks:
        pw_w, pw_b = fold_batch_norm(block.pointwise.weight, None, block.norm)
        weights.blocks.append((block.depthwise.weight.clone(), pw_w, pw_b, block.dilation))
    return weights


@torch.no_grad()
def streaming_forward(model: MicroNet, features: torch.Tensor) -> torch.Tensor:
    """The chip's computation in torch: features [slices, N_FEATURES] consumed `stride` slices
    per call, each layer keeping a ring buffer of its past inputs (zeros at the start).
    Returns probabilities [steps]. A reference for the TensorFlow graph, which mirrors it."""
    w = fold(model)
    stride = model.config.stride
    stem_state = torch.zeros(STEM_KERNEL - stride, N_FEATURES)
    states = [torch.zeros((DW_KERNEL - 1) * d, model.config.channels) for *_, d in w.blocks]
    out = []
    for j in range(n_steps(len(features), stride)):
        window = torch.cat([stem_state, features[j * stride:(j + 1) * stride]])  # [5, 40]
        stem_state = window[stride:]
        x = torch.relu(torch.einsum("oit,ti->o", w.stem_w, window) + w.stem_b)
        for i, (dw, pw, pb, d) in enumerate(w.blocks):
            buf = torch.cat([states[i], x[None]])  # [2d + 1, C], oldest first
            states[i] = buf[1:]
            taps = buf[::d]  # [3, C]: the steps d apart that the dilated kernel reads
            y = torch.einsum("ct,tc->c", dw[:, 0], taps)
            x = x + torch.relu(pw[:, :, 0] @ y + pb)
        out.append(torch.sigmoid(w.head_w[0] @ x + w.head_b[0]))
    return torch.stack(out) if out else torch.zeros(0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
