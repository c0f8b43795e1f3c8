"""MicroNet as ESPHome runs it: a TensorFlow graph with its state inside, then int8 TFLite.

Every layer keeps the past it needs in a `tf.Variable` (a ring buffer, oldest step first):
the stem the last STEM_KERNEL - stride feature slices, each block the last 2 * dilation
steps of its input. One call consumes `stride` new slices ([1, stride, 40]) and returns the
probability of the newest step ([1, 1]). The dilated depthwise kernels read their taps with
a strided slice of the buffer rather than a dilated convolution, so the graph uses only ops
in ESPHome's resolver (VarHandle, ReadVariable, AssignVariable, Concatenation, StridedSlice,
Conv2D, DepthwiseConv2D, Add, Reshape, FullyConnected, Logistic, Quantize, CallOnce).
Activations are [1, steps, 1, channels] (NHWC with time as height).

Conversion: TFLiteConverter from the concrete function, resource variables enabled, full
int8 quantization calibrated on real feature streams fed in order (so the buffers hold real
activations while ranges are measured), int8 input and uint8 output as microWakeWord models.
The input quantization is pinned to ESPHome's mapping (scale 26/256, zero point -128) by
including the two ends of that range in the calibration data, and checked afterwards.

TensorFlow is imported lazily: `import trainer.micro.streaming` works without it.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator

import numpy as np

from . import ESPHOME_EXTRA_HINT, MicroError
from .features import INPUT_SCALE, INPUT_ZERO_POINT, N_FEATURES
from .model import DW_KERNEL, STEM_KERNEL, MicroNet, fold


def _tf():
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise MicroError(f"the ESPHome export needs TensorFlow ({exc}); {ESPHOME_EXTRA_HINT}") from exc
    return tf


def build_streaming(model: MicroNet):
    """A tf.Module whose `step(features [1, stride, 40] float32) -> [1, 1]` is one Invoke."""
    tf = _tf()
    w = fold(model)
    stride, channels = model.config.stride, model.config.channels

    class Streaming(tf.Module):
        def __init__(self) -> None:
            super().__init__(name="micronet")
            # torch Conv1d [out, in, taps] -> TF conv2d [taps, 1, in, out]
            self.stem_w = tf.constant(w.stem_w.permute(2, 1, 0).numpy()[:, None])
            self.stem_b = tf.constant(w.stem_b.numpy())
            self.stem_state = tf.Variable(tf.zeros([1, STEM_KERNEL - stride, N_FEATURES]),
                                          trainable=False, name="stem_state")
            self.blocks = []
            for i, (dw, pw, pb, d) in enumerate(w.blocks):
                self.blocks.append((
                    tf.constant(dw[:, 0].T.numpy()[:, None, :, None]),  # [taps, 1, C, 1]
                    tf.constant(pw[:, :, 0].T.numpy()[None, None]),  # [1, 1, C_in, C_out]
                    tf.constant(pb.numpy()),
                    d,
                    tf.Variable(tf.zeros([1, (DW_KERNEL - 1) * d, 1, channels]), trainable=False,
                                name=f"block{i}_state"),
                ))
            self.head_w = tf.constant(w.head_w.numpy().T)  # [C, 1]
            self.head_b = tf.constant(w.head_b.numpy())

        @tf.function(input_signature=[tf.TensorSpec([1, stride, N_FEATURES], tf.float32)])
        def step(self, features):
            window = tf.concat([self.stem_state, features], axis=1)  # [1, STEM_KERNEL, 40]
            self.stem_state.assign(window[:, stride:, :])
            x = tf.nn.conv2d(tf.reshape(window, [1, STEM_KERNEL, 1, N_FEATURES]), self.stem_w,
                             strides=1, padding="VALID")
            x = tf.nn.relu(tf.nn.bias_add(x, self.stem_b))  # [1, 1, 1, C]
            for dw, pw, pb, d, state in self.blocks:
                buf = tf.concat([state, x], axis=1)  # [1, 2d + 1, 1, C]
                state.assign(buf[:, 1:])
                taps = buf[:, ::d] if d > 1 else buf  # [1, 3, 1, C]
                y = tf.nn.depthwise_conv2d(taps, dw, strides=[1, 1, 1, 1], padding="VALID")
                y = tf.nn.conv2d(y, pw, strides=1, padding="VALID")
                x = x + tf.nn.relu(tf.nn.bias_add(y, pb))
            logit = tf.matmul(tf.reshape(x, [1, channels]), self.head_w) + self.head_b
            return tf.sigmoid(logit)

        def reset(self) -> None:
            self.stem_state.assign(tf.zeros_like(self.stem_state))
            for *_, state in self.blocks:
                state.assign(tf.zeros_like(state))

    return Streaming()


def run_streaming(module, features: np.ndarray, stride: int) -> np.ndarray:
    """fp32 streaming scores [steps] of float features [slices, 40], from zero state."""
    module.reset()
    steps = len(features) // stride
    out = np.empty(steps, dtype=np.float32)
    for j in range(steps):
        chunk = features[None, j * stride:(j + 1) * stride].astype(np.float32)
        out[j] = float(module.step(chunk).numpy()[0, 0])
    return out


def _range_ends(stride: int) -> np.ndarray:
    """A calibration slice group holding both ends of ESPHome's int8 input range."""
    lo, hi = (-128 - INPUT_ZERO_POINT) * INPUT_SCALE, (127 - INPUT_ZERO_POINT) * INPUT_SCALE
    chunk = np.full((1, stride, N_FEATURES), lo, dtype=np.float32)
    chunk[0, 0, 0] = hi
    return chunk


def calibration_steps(streams: Iterable[np.ndarray], stride: int, limit: int) -> Iterator[list]:
    """Representative data: [1, stride, 40] groups of real features, in stream order."""
    yield [_range_ends(stride)]
    n = 1
    for features in streams:
        for j in range(len(features) // stride):
            if n >= limit:
                return
            yield [features[None, j * stride:(j + 1) * stride].astype(np.float32)]
            n += 1


def convert_int8(model: MicroNet, calibration: Iterable[np.ndarray], *,
                 max_steps: int = 3000) -> bytes:
    """The int8 TFLite flatbuffer: input int8 [1, stride, 40], output uint8 [1, 1].

    calibration: float feature streams [slices, 40] (features_for of real audio)."""
    tf = _tf()
    module = build_streaming(model)
    stride = model.config.stride
    concrete = module.step.get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    converter.experimental_enable_resource_variables = True
    converter._experimental_variable_quantization = True  # int8 ring buffers, no float ops
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    streams = list(calibration)
    converter.representative_dataset = lambda: calibration_steps(streams, stride, max_steps)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.uint8
    flatbuffer = converter.convert()
    check_contract(flatbuffer, stride)
    return flatbuffer


def check_contract(flatbuffer: bytes, stride: int) -> None:
    """Raise MicroError unless the model has ESPHome's input/output contract."""
    tf = _tf()
    with warnings.catch_warnings():  # "tf.lite.Interpreter is deprecated": only read here
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    problems = []
    if list(inp["shape"]) != [1, stride, N_FEATURES] or inp["dtype"] != np.int8:
        problems.append(f"input {inp['dtype'].__name__} {list(inp['shape'])}, want int8 "
                        f"[1, {stride}, {N_FEATURES}]")
    scale, zero = inp["quantization"]
    if abs(scale - INPUT_SCALE) > 1e-6 or zero != INPUT_ZERO_POINT:
        problems.append(f"input quantization (scale {scale}, zero point {zero}), want "
                        f"({INPUT_SCALE}, {INPUT_ZERO_POINT}) to match ESPHome's feature mapping")
    if list(out["shape"]) != [1, 1] or out["dtype"] != np.uint8:
        problems.append(f"output {out['dtype'].__name__} {list(out['shape'])}, want uint8 [1, 1]")
    if problems:
        raise MicroError("the converted model breaks ESPHome's contract: " + "; ".join(problems))
