"""Three-layer networks (input, hidden, output): Dense + activation + dropout."""
from __future__ import annotations

import dataclasses

import keras

from zoo.models.common import check_settings, image_input, scale_pixels

ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "softplus", "abs", "linear")


@dataclasses.dataclass(frozen=True)
class MLPConfig:
    input_shape: tuple[int, ...] = (28, 28, 1)
    num_classes: int = 10
    hidden_units: int = 1024
    activation: str = "relu"  # see ACTIVATIONS; "abs" is non-smooth, "elu" unbounded above
    dropout: float = 0.3  # on the hidden layer; active in training only
    input_dropout: float = 0.0
    pixel_input: bool = True  # uint8 "image" scaled to [0, 1]; else float32 "features"
    hidden_layers: int = 1  # 1 = the classic three-layer network


def build_mlp_mnist(config: MLPConfig = MLPConfig()) -> keras.Model:
    return _build_mlp(config, name="mlp_mnist")


def build_mlp(config: MLPConfig, name: str = "mlp") -> keras.Model:
    """An MLP of any input shape and output size (used by tests and experiments)."""
    return _build_mlp(config, name=name)


def _activation(name: str):
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return keras.ops.abs if name == "abs" else name


def _build_mlp(config: MLPConfig, name: str) -> keras.Model:
    check_settings(config, ("num_classes", "hidden_units", "hidden_layers"), ("dropout", "input_dropout"))
    activation = _activation(config.activation)
    if config.pixel_input:
        inputs = image_input(config.input_shape)
        x = scale_pixels(inputs)
    else:
        inputs = x = keras.Input(shape=config.input_shape, dtype="float32", name="features")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(config.input_dropout, name="input_dropout")(x)
    for index in range(config.hidden_layers):
        x = keras.layers.Dense(config.hidden_units, activation=activation, name=f"hidden{index}")(x)
        x = keras.layers.Dropout(config.dropout, name=f"dropout{index}")(x)
    scores = keras.layers.Dense(config.num_classes, name="scores")(x)  # [N, K]
    return keras.Model(inputs, scores, name=name)
