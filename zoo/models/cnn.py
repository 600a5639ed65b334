"""Convolution + pooling networks: [conv-BN-ReLU] x k, max-pool, per stage; then a dense head."""
from __future__ import annotations

import dataclasses

import keras

from zoo.models.common import CIFAR10_MEAN, CIFAR10_STD, BatchNormalization, check_settings, image_input, scale_pixels


@dataclasses.dataclass(frozen=True)
class CNNConfig:
    input_shape: tuple[int, int, int] = (28, 28, 1)
    num_classes: int = 10
    filters: tuple[int, ...] = (32, 64)  # one entry per stage; each stage halves H and W
    convs_per_stage: int = 2
    dense_units: int = 128
    dropout: float = 0.4  # before and after the dense layer
    mean: tuple[float, ...] | None = None  # per-channel pixel/255 mean, standardised in-graph
    std: tuple[float, ...] | None = None
    first_stride: int = 1  # of the very first conv: > 1 grows receptive fields faster, > 3 skips pixels


def build_cnn_mnist(config: CNNConfig = CNNConfig()) -> keras.Model:
    return _build_cnn(config, name="cnn_mnist")


CIFAR10_CONFIG = CNNConfig(
    input_shape=(32, 32, 3), filters=(32, 64, 128), dense_units=256, dropout=0.3,
    mean=CIFAR10_MEAN, std=CIFAR10_STD)


def build_cnn_cifar10(config: CNNConfig = CIFAR10_CONFIG) -> keras.Model:
    return _build_cnn(config, name="cnn_cifar10")


def _build_cnn(config: CNNConfig, name: str) -> keras.Model:
    if not config.filters:
        raise ValueError("filters must name at least one stage, got ()")
    check_settings(config, ("num_classes", "convs_per_stage", "dense_units", "first_stride"), ("dropout",))
    image = image_input(config.input_shape)
    x = scale_pixels(image, config.mean, config.std)
    for stage, filters in enumerate(config.filters):
        for index in range(config.convs_per_stage):
            stride = config.first_stride if stage == index == 0 else 1
            x = keras.layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False,
                                    name=f"stage{stage}_conv{index}")(x)
            x = BatchNormalization(name=f"stage{stage}_bn{index}")(x)
            x = keras.layers.ReLU(name=f"stage{stage}_relu{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"stage{stage}_pool")(x)  # H, W halve
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout_features")(x)
    x = keras.layers.Dense(config.dense_units, activation="relu", name="dense")(x)
    x = keras.layers.Dropout(config.dropout, name="dropout_dense")(x)
    scores = keras.layers.Dense(config.num_classes, name="scores")(x)  # logits [N, K]
    return keras.Model(image, scores, name=name)
