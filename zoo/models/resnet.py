"""CIFAR ResNets of He et al. 2016 (sec. 4.2): depth 6n + 2, three stages of n basic blocks
with 16/32/64 filters, identity shortcuts (option A: stride-2 subsample + zero-pad channels)."""
from __future__ import annotations

import dataclasses

import keras

from zoo.models.common import CIFAR10_MEAN, CIFAR10_STD, BatchNormalization, image_input, scale_pixels


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
    depth: int = 20  # 6n + 2
    input_shape: tuple[int, int, int] = (32, 32, 3)
    num_classes: int = 10
    widths: tuple[int, int, int] = (16, 32, 64)
    residual: bool = True  # False: the same "plain" network without shortcuts
    mean: tuple[float, ...] | None = CIFAR10_MEAN
    std: tuple[float, ...] | None = CIFAR10_STD


def build_resnet20_cifar10(config: ResNetConfig = ResNetConfig(depth=20)) -> keras.Model:
    return _build_resnet(config, name="resnet20_cifar10")


def build_resnet56_cifar10(config: ResNetConfig = ResNetConfig(depth=56)) -> keras.Model:
    return _build_resnet(config, name="resnet56_cifar10")


def build_resnet(config: ResNetConfig, name: str | None = None) -> keras.Model:
    """Any depth 6n + 2 (20, 32, 44, 56, 110, ...), residual or plain."""
    return _build_resnet(config, name=name or f"{'resnet' if config.residual else 'plain'}{config.depth}")


def _build_resnet(config: ResNetConfig, name: str) -> keras.Model:
    if config.depth < 8 or (config.depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, 44, 56, ...), got {config.depth}")
    blocks_per_stage = (config.depth - 2) // 6
    image = image_input(config.input_shape)
    x = scale_pixels(image, config.mean, config.std)
    x = _conv_bn(x, config.widths[0], 1, "stem")
    x = keras.layers.ReLU(name="stem_relu")(x)
    for stage, width in enumerate(config.widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1  # [N, H, W] halves at each new stage
            x = _basic_block(x, width, stride, config.residual, f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)  # [N, 64]
    scores = keras.layers.Dense(config.num_classes, name="scores")(x)
    return keras.Model(image, scores, name=name)


def _conv_bn(x, filters: int, stride: int, name: str):
    x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                            kernel_initializer="he_normal", name=f"{name}_conv")(x)
    return BatchNormalization(name=f"{name}_bn")(x)


def _basic_block(x, filters: int, stride: int, residual: bool, name: str):
    shortcut = x
    y = _conv_bn(x, filters, stride, f"{name}_a")
    y = keras.layers.ReLU(name=f"{name}_a_relu")(y)
    y = _conv_bn(y, filters, 1, f"{name}_b")
    if residual:
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = PadShortcut(filters, name=f"{name}_shortcut")(shortcut)
        y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@keras.saving.register_keras_serializable(package="zoo")  # a layer, not a Lambda: .keras files load safely
class PadShortcut(keras.layers.Layer):
    """Option A: [N, H, W, C] -> [N, H/2, W/2, filters], zero channels added, no parameters."""

    def __init__(self, filters: int, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters

    def call(self, tensor):
        subsampled = tensor[:, ::2, ::2, :]
        extra = self.filters - tensor.shape[-1]
        return keras.ops.pad(subsampled, [[0, 0], [0, 0], [0, 0], [extra // 2, extra - extra // 2]])

    def compute_output_shape(self, input_shape):
        batch, height, width, _ = input_shape
        return (batch, None if height is None else (height + 1) // 2, None if width is None else (width + 1) // 2,
                self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
