"""The microcontroller target: a streaming int8 student for ESPHome's `micro_wake_word`.

- `features`: the TFLite Micro audio frontend as the chip computes it (PyPI
  `pymicro-features`), quantized to the int8 model input exactly as ESPHome does.
- `model`: a small causal convolution stack (torch), trained non-streaming over a window.
- `train`: trains it from a Hark dataset folder with the main trainer's window sampler.
- `streaming` (needs TensorFlow, the `[esphome]` extra): the same network with its past
  activations held in resource variables, converted to an int8 TFLite flatbuffer.
- `esphome`: the export (NAME.tflite + the v2 NAME.json manifest) and its verification in
  the TFLite Micro interpreter, decided as ESPHome decides.

Only `features` and `decide` are torch-free; TensorFlow and tflite-micro are imported lazily.
"""

from trainer.errors import TrainerError


class MicroError(TrainerError):
    """A problem with the microcontroller export (missing extra, bad run folder, ...)."""


ESPHOME_EXTRA_HINT = 'pip install "hark-wakeword[esphome]"'
