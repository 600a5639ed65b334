"""Linear models f(x) = W^T x + b: softmax regression. Row k of W^T with b_k is the
hyperplane of class k; f_k(x) / ||w_k|| is x's signed distance to it."""
from __future__ import annotations

import dataclasses

import keras
import numpy as np

from zoo.models.common import check_positive, image_input, scale_pixels


@dataclasses.dataclass(frozen=True)
class LinearConfig:
    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 10
    pixel_input: bool = True  # uint8 "image" scaled to [0, 1]; else float32 "features" as given


def build_linear_mnist(config: LinearConfig = LinearConfig()) -> keras.Model:
    return _build_linear(config, name="linear_mnist")


def build_linear(config: LinearConfig, name: str = "linear") -> keras.Model:
    """A linear model of any input shape (used by the experiments on 2-D data)."""
    return _build_linear(config, name=name)


def _build_linear(config: LinearConfig, name: str) -> keras.Model:
    inputs, features = linear_features(config)
    scores = keras.layers.Dense(config.num_classes, name="scores")(features)  # f(x) [N, K]
    return keras.Model(inputs, scores, name=name)


def linear_features(config) -> tuple[keras.KerasTensor, keras.KerasTensor]:
    """(input, flattened feature vector [N, D]) shared by the linear model and the perceptron."""
    check_positive("num_classes", config.num_classes)
    if not config.input_shape or any(size <= 0 for size in config.input_shape):
        raise ValueError(f"input_shape must be positive sizes, got {config.input_shape!r}")
    if config.pixel_input:
        if len(config.input_shape) != 3:
            raise ValueError(f"pixel input needs (H, W, C), got {config.input_shape!r}")
        inputs = image_input(config.input_shape)
        features = scale_pixels(inputs)
    else:
        inputs = keras.Input(shape=config.input_shape, dtype="float32", name="features")
        features = inputs
    return inputs, keras.layers.Flatten(name="flatten")(features)


def hyperplane_distance(model: keras.Model, features: np.ndarray) -> np.ndarray:
    """f(x) / ||w_k|| for each class k, from the weights of the layer named "scores"."""
    kernel, bias = (np.asarray(w) for w in model.get_layer("scores").get_weights())
    return (features.reshape(len(features), -1) @ kernel + bias) / np.linalg.norm(kernel, axis=0)
