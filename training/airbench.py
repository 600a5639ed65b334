"""airbench94's training techniques, as recipe options any image model may use: the whitening
layer set from the training patches (and its bias frozen after some epochs), and lookahead
averaging of the weights. The schedule and the faster batch-norm offsets are in loop.py, the
alternating flips in zoo.data.images."""
from __future__ import annotations

import keras
import numpy as np

from zoo.models.airbench import PatchWhitening

WHITENING_EPSILON = 5e-4  # added to each eigenvalue before the inverse square root
WHITENING_IMAGES = 5000  # the first this many training images give the patch covariance
LOOKAHEAD_DECAY = 0.95  # per step; the average's decay at step t of T is this^every x (t / T)^3


def whitening_kernel(inputs: np.ndarray, kernel_size: int, epsilon: float = WHITENING_EPSILON) -> np.ndarray:
    """inputs [N, H, W, C] (the whitening layer's input) -> kernel [k, k, C, 2 C k^2]: the
    eigenvectors of the k x k patches' second-moment matrix, largest eigenvalue first, each
    divided by sqrt(eigenvalue + epsilon), then the same negated (GELU follows, so both signs
    of each direction pass)."""
    inputs = np.asarray(inputs, np.float64)
    channels = inputs.shape[-1]
    windows = np.lib.stride_tricks.sliding_window_view(inputs, (kernel_size, kernel_size), axis=(1, 2))
    # [P, C, k, k] -> [P, k k C], the order of the kernel's first three axes
    patches = windows.reshape(-1, channels, kernel_size, kernel_size).transpose(0, 2, 3, 1).reshape(
        -1, kernel_size * kernel_size * channels)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    scaled = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0) + epsilon)  # [k k C, k k C], one per column
    kernel = np.concatenate([scaled, -scaled], axis=1)
    return kernel.reshape(kernel_size, kernel_size, channels, -1).astype(np.float32)


def whitening_layers(model: keras.Model) -> list[PatchWhitening]:
    return [layer for layer in model.layers if isinstance(layer, PatchWhitening)]


def init_whitening(model: keras.Model, images: np.ndarray) -> None:
    """Sets each PatchWhitening layer's kernel from uint8 `images` [N, H, W, C], as the layer sees
    them (after the model's scaling; training=True, so test-time views are not stacked)."""
    for layer in whitening_layers(model):
        inputs = keras.Model(model.input, layer.input)(images, training=True)
        layer.kernel.assign(whitening_kernel(keras.ops.convert_to_numpy(inputs), layer.kernel_size))


class FreezeWhiteningBias(keras.callbacks.Callback):
    """From epoch `after` on (0-based), the PatchWhitening layers' biases stop training: no
    gradient, no decay, no momentum, as airbench's requires_grad=False. The train step is traced
    again, since a traced step keeps the variables it was traced with."""

    def __init__(self, after: int):
        super().__init__()
        self.after = after

    def on_epoch_begin(self, epoch, logs=None):
        biases = [layer.bias for layer in whitening_layers(self.model) if layer.bias.trainable]
        if epoch >= self.after and biases:
            for bias in biases:
                bias.trainable = False
            self.model.make_train_function(force=True)


class Lookahead(keras.callbacks.Callback):
    """Every `every` steps the model's weights (batch-norm statistics too) become an exponential
    average of their values at those steps: average = d average + (1 - d) weights, weights =
    average, with d = LOOKAHEAD_DECAY^every x (step / total)^3, near 0 early on and 0.77 at the
    end; after the last step the weights are the average (airbench's LookaheadState). The
    optimizer's momentum is left alone. A resumed run starts its average from the restored weights."""

    def __init__(self, every: int, total_steps: int):
        super().__init__()
        self.every, self.total_steps = every, total_steps
        self.average: list[np.ndarray] = []

    def on_train_begin(self, logs=None):
        self.average = [keras.ops.convert_to_numpy(weight) for weight in self.model.weights]

    def on_train_batch_end(self, batch, logs=None):
        step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
        if step % self.every == 0:
            self._update(LOOKAHEAD_DECAY ** self.every * (step / self.total_steps) ** 3)
        if step >= self.total_steps:
            self._update(1.0)

    def _update(self, decay: float) -> None:
        for index, weight in enumerate(self.model.weights):
            current = keras.ops.convert_to_numpy(weight)
            self.average[index] = decay * self.average[index] + (1 - decay) * current
            weight.assign(self.average[index])
