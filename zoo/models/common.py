"""Pieces shared by the image families: the raw-uint8 input, its scaling, and batch norm."""
from __future__ import annotations

import keras

# Per-channel mean and std of CIFAR-10 training pixels / 255, standardised inside the graph.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def image_input(input_shape: tuple[int, ...]) -> keras.KerasTensor:
    """The named raw input every image model takes: uint8 pixels, [N, H, W, C]."""
    return keras.Input(shape=input_shape, dtype="uint8", name="image")


def scale_pixels(image, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
    """uint8 [N, H, W, C] -> float32 x / 255, or per-channel (x / 255 - mean) / std.

    Preprocessing lives inside the model so the exported graph takes raw pixels. One Rescaling
    layer with Python-number constants: they become graph constants (a Normalization layer's
    would be captured eager tensors, which ONNX conversion cannot freeze)."""
    pixels = keras.ops.cast(image, "float32")
    if mean is None:
        return keras.layers.Rescaling(1.0 / 255.0, dtype="float32", name="scale")(pixels)
    if std is None or len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(f"mean and std need one value per channel and std > 0, got {mean!r}, {std!r}")
    scale = [1.0 / (255.0 * s) for s in std]
    offset = [-m / s for m, s in zip(mean, std)]
    return keras.layers.Rescaling(scale, offset, dtype="float32", name="scale")(pixels)


def check_positive(name: str, value) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


def check_settings(config, positive: tuple[str, ...] = (), rates: tuple[str, ...] = ()) -> None:
    """A family config's positive settings and its rates in [0, 1) (dropout), one-line errors."""
    for field in positive:
        check_positive(field, getattr(config, field))
    for field in rates:
        value = getattr(config, field)
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{field} must be in [0, 1), got {value!r}")


@keras.saving.register_keras_serializable(package="zoo")  # so .keras files of zoo models load
class BatchNormalization(keras.layers.BatchNormalization):
    """keras.layers.BatchNormalization whose training step runs TensorFlow's fused kernel.

    Keras 3 normalises with separate moments, subtract, rsqrt, multiply and add ops, each a pass
    over the activations forward and again backward; FusedBatchNormV3 is one pass each way.
    Same variables, same statistics (the kernel's Bessel-corrected variance is undone, as Keras
    keeps the biased one), same inference graph; `make bench` times ResNet-20's train step with
    each. Anything the kernel doesn't cover falls back to Keras' own path."""

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable and self._fusable(inputs, mask)):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        scale = self.gamma if self.scale else tf.ones([channels], tf.float32)  # float32 for bfloat16 inputs too
        offset = self.beta if self.center else tf.zeros([channels], tf.float32)
        # outputs [N, H, W, C]; mean, variance [C]
        outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            inputs, scale, offset, epsilon=self.epsilon, is_training=True)
        count = tf.cast(tf.reduce_prod(tf.shape(inputs)[:-1]), variance.dtype)
        variance = variance * (count - 1) / tf.maximum(count, 1)  # unbiased -> biased
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return outputs

    def _fusable(self, inputs, mask) -> bool:
        # float32, or bfloat16 under mixed precision (the kernel keeps its statistics in float32)
        supported = keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16")
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4 and supported
                and self.axis in (-1, 3) and not self.renorm and not self.synchronized and self.epsilon >= 1.001e-5)
