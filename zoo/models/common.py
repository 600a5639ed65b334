"""Pieces shared by the image families: the raw-uint8 input and its scaling."""
from __future__ import annotations

import keras

# Per-channel mean and std of CIFAR-10 training pixels / 255, standardised inside the graph.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def image_input(input_shape: tuple[int, int, int]) -> keras.KerasTensor:
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
    if len(mean) != len(std) or any(s <= 0 for s in std):
        raise ValueError(f"mean and std need one value per channel and std > 0, got {mean!r}, {std!r}")
    scale = [1.0 / (255.0 * s) for s in std]
    offset = [-m / s for m, s in zip(mean, std)]
    return keras.layers.Rescaling(scale, offset, dtype="float32", name="scale")(pixels)


def check_positive(name: str, value) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")
