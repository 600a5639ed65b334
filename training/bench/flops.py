"""Analytic multiply-add counts of the layers the zoo uses (forward pass, per example)."""
from __future__ import annotations

import keras
import numpy as np


def forward_flops(model: keras.Model) -> int:
    """2 x multiply-adds of every Conv2D and Dense layer for one example (others are
    negligible next to them). Training costs about 3x this (forward + two backward matmuls)."""
    total = 0
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            _, height, width, out_channels = layer.output.shape
            kernel_height, kernel_width, in_channels, _ = layer.kernel.shape
            total += 2 * height * width * out_channels * kernel_height * kernel_width * in_channels
        elif isinstance(layer, keras.layers.Dense):
            inputs, outputs = layer.kernel.shape
            positions = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 else 1
            total += 2 * inputs * outputs * positions
    return int(total)


def _layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _layers(layer)
        else:
            yield layer


GATES = {"rnn": 1, "gru": 3, "lstm": 4}  # weight matrices per recurrent cell


def language_forward_flops(config) -> int:
    """2 x multiply-adds per token of a LanguageModelConfig's recurrent layers and output layer."""
    total, width = 0, config.embedding_dim
    for _ in range(config.num_layers):
        total += 2 * (width + config.hidden_units) * GATES[config.cell] * config.hidden_units
        width = config.hidden_units
    return int(total + 2 * width * config.vocab_size)
