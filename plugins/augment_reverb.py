"""Room reverb: convolution with impulse responses from the dataset's rir/ folder or with
generated rooms (exponentially decaying noise with a drawn RT60), batched by FFT. The
primitives live in trainer.reverb, which the benchmark scenes use too."""

from __future__ import annotations

import numpy as np
import torch

from sentry.constants import SAMPLE_RATE
from trainer import hookimpl
from trainer.audio import load_audio
from trainer.errors import TrainerError
from trainer.reverb import MAX_RIR_S, generated_rir, reverberate

__all__ = ["MAX_RIR_S", "Reverb", "generated_rir", "reverberate"]


class Reverb:
    stage = "waveform"

    def __init__(self, config, context) -> None:
        self.probability, self.rt60 = config.reverb_probability, config.reverb_rt60_s
        self.rirs: list[torch.Tensor] = []
        if config.reverb_source == "rir":
            if not context.rir:
                raise TrainerError("augment.chain has 'reverb' with reverb_source = \"rir\" but the "
                                   "dataset's rir/ folder is empty; add impulse-response WAVs or set "
                                   "augment.reverb_source = \"generated\"")
            for path in context.rir:  # read now: an unreadable file fails before training
                audio = load_audio(path)[: int(MAX_RIR_S * SAMPLE_RATE)]
                peak = float(np.max(np.abs(audio)))
                if peak == 0.0:
                    raise TrainerError(f"{path}: impulse response is silent; replace or delete it")
                self.rirs.append(torch.from_numpy(audio / peak))

    def __call__(self, pcm, labels, generator):
        batch = len(pcm)
        apply = torch.rand(batch, generator=generator) < self.probability
        if self.rirs:
            picks = torch.randint(len(self.rirs), (batch,), generator=generator).tolist()
            longest = max(len(self.rirs[i]) for i in picks)
            rir = torch.stack([torch.nn.functional.pad(self.rirs[i], (0, longest - len(self.rirs[i])))
                               for i in picks])
        else:
            rir = generated_rir(torch.empty(batch).uniform_(*self.rt60, generator=generator), generator)
        return torch.where(apply.to(pcm.device).unsqueeze(1), reverberate(pcm, rir), pcm)


@hookimpl
def register_augmentations(register) -> None:
    register("reverb", Reverb)
