"""airbench94 (Jordan 2024, arXiv 2404.00498; github KellerJordan/cifar10-airbench): a frozen 2x2
patch-whitening conv, then three groups of conv-pool-BN-GELU, conv-BN-GELU (64/256/256 filters,
identity-initialised convs, batch norm without a learned scale), max-pool, a bias-free linear
layer and logits scaled by 1/9. Test-time augmentation is part of the model: at inference it
scores the image, its mirror and their one-pixel shifts, and returns the log of their weighted
mean probability, so the exported signature gives the augmented accuracy from raw pixels."""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import keras

from zoo.models import common
from zoo.models.common import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    BatchNormalization,
    MergeViews,
    TestTimeViews,
    image_input,
    scale_pixels,
)

# The fused batch-norm kernel's smallest epsilon (airbench's 1e-12 would fall back to Keras' slower
# path; on unit-scale activations the two are indistinguishable).
BN_EPSILON = 1.001e-5
VIEW_WEIGHTS = common.VIEW_WEIGHTS["mirror"]  # tta_level -> the views' weights


@dataclasses.dataclass(frozen=True)
class AirbenchConfig:
    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    widths: tuple[int, int, int] = (64, 256, 256)
    whitening_kernel_size: int = 2  # its 2 x 3 x k x k filters: each whitened direction and its negative
    batch_norm_momentum: float = 0.6  # Keras' convention: moving = 0.6 moving + 0.4 batch (PyTorch's 0.4)
    logit_scale: float = 1 / 9
    tta_level: int = 2  # 0: none, 1: mirror, 2: mirror and one-pixel shifts (6 views)
    views: ClassVar[str] = "mirror"  # the scheme of common.VIEW_WEIGHTS tta_level picks from
    mean: tuple[float, ...] | None = CIFAR10_MEAN
    std: tuple[float, ...] | None = CIFAR10_STD


def build_airbench_cifar10(config: AirbenchConfig = AirbenchConfig()) -> keras.Model:
    return _build_airbench(config, name="airbench_cifar10")


def _build_airbench(config: AirbenchConfig, name: str) -> keras.Model:
    common.check_views(config.tta_level, config.views)
    image = image_input(config.input_shape)
    x = scale_pixels(image, config.mean, config.std)
    x = TestTimeViews(config.tta_level, config.views, name="views")(x)  # inference: [V * N, H, W, C]
    channels = config.input_shape[-1] * config.whitening_kernel_size ** 2
    x = PatchWhitening(2 * channels, config.whitening_kernel_size, name="whitening")(x)  # [N, 31, 31, 24]
    x = keras.layers.Activation(gelu, name="whitening_gelu")(x)
    for index, width in enumerate(config.widths, start=1):  # spatial 31 -> 15 -> 7 -> 3
        x = _conv_group(x, width, config.batch_norm_momentum, f"block{index}")
    x = keras.layers.MaxPooling2D(3, name="pool")(x)  # [N, 1, 1, 256]
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(config.num_classes, use_bias=False, name="logits")(x)
    x = keras.layers.Rescaling(config.logit_scale, name="logit_scale")(x)
    scores = MergeViews(config.tta_level, config.views, name="scores")(x)  # inference: [V * N, K] -> [N, K]
    return keras.Model(image, scores, name=name)


def _conv_group(x, filters: int, momentum: float, name: str):
    x = _conv(x, filters, f"{name}_conv1")
    x = keras.layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = _batch_norm_gelu(x, momentum, f"{name}_bn1")
    x = _conv(x, filters, f"{name}_conv2")
    return _batch_norm_gelu(x, momentum, f"{name}_bn2")


def _conv(x, filters: int, name: str):
    return keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, kernel_initializer=PartialDirac(),
                               name=name)(x)


def _batch_norm_gelu(x, momentum: float, name: str):
    # scale=False: airbench freezes the scale at 1 and learns only the offset.
    x = BatchNormalization(momentum=momentum, epsilon=BN_EPSILON, scale=False, name=name)(x)
    return keras.layers.Activation(gelu, name=f"{name}_gelu")(x)


@keras.saving.register_keras_serializable(package="zoo")
def gelu(x):
    """Exact GELU, x Phi(x), through erf: Keras' own uses erfc, which tf2onnx cannot convert."""
    return 0.5 * x * (1.0 + keras.ops.erf(x * (1 / math.sqrt(2.0))))


@keras.saving.register_keras_serializable(package="zoo")
class PartialDirac(keras.initializers.Initializer):
    """PyTorch's Conv2d initialisation (uniform, bound 1/sqrt(fan_in)) with its first min(in, out)
    filters replaced by identities (filter i passes channel i through its centre tap): a deep
    stack starts close to the identity map (airbench's `dirac_(w[:w.size(1)])`)."""

    def __init__(self, seed=None):
        self.seed = seed
        self._base = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform", seed=seed)

    def __call__(self, shape, dtype=None):
        height, width, in_channels, out_channels = shape  # [kh, kw, in, out]
        kernel = self._base(shape, dtype=dtype)
        identities = min(in_channels, out_channels)
        dirac = keras.ops.zeros((height, width, in_channels, identities), dtype=kernel.dtype)
        centre = keras.ops.one_hot(keras.ops.arange(identities), in_channels, dtype=kernel.dtype)  # [id, in]
        dirac = keras.ops.slice_update(dirac, (height // 2, width // 2, 0, 0),
                                       keras.ops.transpose(centre)[None, None])
        return keras.ops.concatenate([dirac, kernel[..., identities:]], axis=-1)

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class PatchWhitening(keras.layers.Layer):
    """A k x k 'valid' convolution whose kernel is not trained: the trainer sets it from the
    training patches' covariance (each eigenvector / sqrt(eigenvalue + eps), and its negative),
    so the outputs are decorrelated and of unit variance. Its bias trains (for as long as the
    recipe says). [N, H, W, C] -> [N, H - k + 1, W - k + 1, filters]."""

    def __init__(self, filters: int, kernel_size: int, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = filters, kernel_size

    def build(self, input_shape):
        shape = (self.kernel_size, self.kernel_size, input_shape[-1], self.filters)
        # Random until the trainer sets it, so that an untrained model still tells images apart.
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer="glorot_uniform", trainable=False)
        self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def call(self, inputs):
        return keras.ops.conv(inputs, self.kernel, padding="valid") + self.bias

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        shrink = self.kernel_size - 1
        return (batch, None if height is None else height - shrink, None if width is None else width - shrink,
                self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size}


