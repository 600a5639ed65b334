"""Pieces shared by the image families: the raw-uint8 input, its scaling, batch norm, and
test-time views."""
from __future__ import annotations

import math

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


# Test-time augmentation inside the graph: scheme -> level -> the views' weights, in TestTimeViews'
# order. mirror (airbench): the image, its mirror, then (level 2) the up-left and down-right one-pixel
# shifts of the reflect-padded image, each with its mirror (1/2 plain, 1/2 shifted). shift (digits,
# which a mirror would change): the image, then (level 1) its one-pixel shifts up, down, left and
# right, zero-filled (half the weight on the image, as airbench).
VIEW_WEIGHTS = {"mirror": {0: (1.0,), 1: (0.5, 0.5), 2: (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)},
                "shift": {0: (1.0,), 1: (0.5, 0.125, 0.125, 0.125, 0.125)}}


def check_views(level, scheme: str) -> None:
    if scheme not in VIEW_WEIGHTS:
        raise ValueError(f"test-time view scheme must be one of {sorted(VIEW_WEIGHTS)}, got {scheme!r}")
    if not isinstance(level, int) or isinstance(level, bool) or level not in VIEW_WEIGHTS[scheme]:
        raise ValueError(f"tta_level must be one of {sorted(VIEW_WEIGHTS[scheme])} ({scheme} views), got {level!r}")


def describe_views(level: int, scheme: str) -> str:
    """The views of `level` in words (the card's preprocessing), '' for none."""
    if not level:
        return ""
    if scheme == "shift":
        return "the image and its one-pixel shifts up, down, left and right, zero-filled"
    return "the image and its mirror" + (", and one-pixel shifts of both" if level > 1 else "")


class _ViewsLayer(keras.layers.Layer):
    """A test-time-augmentation step of `level` of `scheme` (VIEW_WEIGHTS): identity while training."""

    def __init__(self, level: int, scheme: str = "mirror", **kwargs):
        super().__init__(**kwargs)
        check_views(level, scheme)
        self.level = level
        self.scheme = scheme

    def call(self, inputs, training=None):
        return inputs if training or self.level == 0 else self.at_inference(inputs)

    def at_inference(self, inputs):
        raise NotImplementedError

    def get_config(self):
        return {**super().get_config(), "level": self.level, "scheme": self.scheme}


@keras.saving.register_keras_serializable(package="zoo")
class TestTimeViews(_ViewsLayer):
    """Inference: the batch [N, H, W, C] -> its views stacked on the batch axis [V * N, H, W, C],
    in VIEW_WEIGHTS' order. Batch norm normalises with its moving statistics at inference, so
    stacking views changes no view's scores."""

    def at_inference(self, images):
        height, width = images.shape[1], images.shape[2]
        if self.scheme == "shift":  # level 1
            padded = keras.ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])  # zeros: the digits' background
            views = [images, padded[:, 2:, 1:-1], padded[:, :height, 1:-1],  # up, down
                     padded[:, 1:-1, 2:], padded[:, 1:-1, :width]]  # left, right
        else:
            views = [images, keras.ops.flip(images, axis=2)]
            if self.level == 2:
                padded = keras.ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
                for shifted in (padded[:, :height, :width], padded[:, 2:, 2:]):
                    views += [shifted, keras.ops.flip(shifted, axis=2)]
        # MergeViews reads the views back with VIEW_WEIGHTS' count: a new level must add both.
        assert len(views) == len(VIEW_WEIGHTS[self.scheme][self.level]), (self.scheme, self.level, len(views))
        return keras.ops.concatenate(views, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape  # the batch is unknown either way


@keras.saving.register_keras_serializable(package="zoo")
class MergeViews(_ViewsLayer):
    """Inference: logits of TestTimeViews' V views [V * N, K] -> log of the weighted mean of their
    softmax probabilities [N, K] (so softmax(scores) is that mean exactly)."""

    def at_inference(self, logits):
        weights = VIEW_WEIGHTS[self.scheme][self.level]
        per_view = keras.ops.reshape(logits, (len(weights), -1, logits.shape[-1]))  # [V, N, K]
        log_weights = keras.ops.convert_to_tensor([[[math.log(weight)]] for weight in weights], logits.dtype)
        # log sum_v w_v softmax(l_v) without underflow
        return keras.ops.logsumexp(log_weights + keras.ops.log_softmax(per_view, axis=-1), axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape
