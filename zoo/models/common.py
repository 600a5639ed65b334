"""Pieces shared by the image families: the raw-uint8 input and its scaling."""
from __future__ import annotations

import keras


def image_input(input_shape: tuple[int, int, int]) -> keras.KerasTensor:
    """The named raw input every image model takes: uint8 pixels, [N, H, W, C]."""
    return keras.Input(shape=input_shape, dtype="uint8", name="image")


def scale_pixels(image, mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None):
    """uint8 [N, H, W, C] -> float32 in [0, 1], then per-channel standardised if mean/std given.

    Preprocessing lives inside the model so the exported graph takes raw pixels.
    """
    x = keras.layers.Rescaling(1.0 / 255.0, dtype="float32", name="scale")(
        keras.ops.cast(image, "float32"))
    if mean is not None:
        variance = [s * s for s in std]
        x = keras.layers.Normalization(mean=list(mean), variance=variance, name="standardise")(x)
    return x


def check_positive(name: str, value) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
