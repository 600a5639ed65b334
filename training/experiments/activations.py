"""Activation functions on the same MLP, data and initial weights: the zero-centred odd tanh
trains faster than the sigmoid (whose outputs are all positive, so every weight into the next
layer gets a gradient of the same sign for a given unit: zig-zag steps), next to ReLU and two
more (ELU: unbounded above; |x|: non-smooth and even). Plain SGD, so no optimizer hides it."""
from __future__ import annotations

import keras
import numpy as np

from training.experiments.common import load_subset, save_figure, seed, subplots
from zoo.models.mlp import MLPConfig, build_mlp

ACTIVATIONS = ("sigmoid", "tanh", "relu", "elu", "abs")
COLORS = {"sigmoid": "tab:red", "tanh": "tab:blue", "relu": "tab:green", "elu": "tab:purple",
          "abs": "tab:orange"}


def teacher_data(count: int, rng: np.random.Generator, dimension: int = 20, classes: int = 4):
    """Gaussian inputs [N, D] labelled by a fixed random one-hidden-layer tanh network [N]."""
    teacher = np.random.default_rng(99)
    hidden, readout = teacher.normal(size=(dimension, 32)), teacher.normal(size=(32, classes))
    inputs = rng.normal(size=(count, dimension)).astype(np.float32)
    return inputs, np.argmax(np.tanh(inputs @ hidden / np.sqrt(dimension)) @ readout, axis=1)


def load_data(quick: bool, data_dir) -> dict:
    if quick:
        rng = np.random.default_rng(0)
        return {"train": teacher_data(2048, rng), "test": teacher_data(1000, rng), "dataset": "synthetic",
                "config": {"input_shape": (20,), "num_classes": 4, "pixel_input": False, "hidden_units": 64}}
    return {"train": load_subset("mnist", "train", 6400, data_dir),
            "test": load_subset("mnist", "test", 2000, data_dir),
            "dataset": "MNIST", "config": {"hidden_units": 256}}


class BatchLosses(keras.callbacks.Callback):
    """The loss of every training batch (keras logs the running mean over the epoch)."""

    def __init__(self):
        super().__init__()
        self.losses = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_start = len(self.losses)

    def on_train_batch_end(self, batch, logs=None):
        steps = len(self.losses) - self.epoch_start  # steps before this one in the epoch
        previous_mean = np.mean(self.losses[self.epoch_start:]) if steps else 0.0
        self.losses.append((batch + 1) * logs["loss"] - steps * previous_mean)


def train(activation: str, network_seed: int, data: dict, epochs: int, batch_size: int) -> dict:
    seed(network_seed)  # same seed -> same initial weights whatever the activation
    model = build_mlp(MLPConfig(activation=activation, dropout=0.0, hidden_layers=2, **data["config"]))
    initial = [weights.copy() for weights in model.get_weights()]
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    losses = BatchLosses()
    model.fit(*data["train"], batch_size=batch_size, epochs=epochs, shuffle=False, verbose=0,
              callbacks=[losses])
    _, test_accuracy = model.evaluate(*data["test"], verbose=0)
    return {"losses": np.array(losses.losses), "test_accuracy": test_accuracy, "initial_weights": initial}


def run(quick: bool = False, data_dir=None) -> dict:
    data = load_data(quick, data_dir)
    seeds, epochs, batch_size = (0, 1, 2), 2, (32 if quick else 64)
    activations = ACTIVATIONS[:2] if quick else ACTIVATIONS  # the test's claim: sigmoid vs tanh
    runs = {activation: [train(activation, network_seed, data, epochs, batch_size) for network_seed in seeds]
            for activation in activations}
    window = 20  # loss after k steps: mean over the last `window` batches, per seed
    same_start = all(np.array_equal(a, b) for network_seed in range(len(seeds))
                     for a, b in zip(runs["sigmoid"][network_seed]["initial_weights"],
                                     runs["tanh"][network_seed]["initial_weights"]))
    return {"dataset": data["dataset"], "seeds": seeds, "epochs": epochs, "batch_size": batch_size,
            "optimizer": "SGD lr 0.1", "hidden_layers": 2, "hidden_units": data["config"]["hidden_units"],
            "steps": len(runs["tanh"][0]["losses"]), "identical_initial_weights": same_start,
            "final_loss": {activation: [float(np.mean(result["losses"][-window:])) for result in results]
                           for activation, results in runs.items()},
            "test_accuracy": {activation: [result["test_accuracy"] for result in results]
                              for activation, results in runs.items()},
            "losses": {activation: [np.round(result["losses"], 4) for result in results]
                       for activation, results in runs.items()}}


def plot(results: dict, path) -> None:
    figure, axes = subplots(columns=2, width=6.3, height=4.8)
    for activation, curves in results["losses"].items():
        for index, curve in enumerate(curves):
            smooth = np.convolve(curve, np.ones(10) / 10, mode="valid")  # 10-step moving average
            axes[0].plot(np.arange(len(smooth)) + 10, smooth, color=COLORS[activation], alpha=0.8,
                         label=activation if index == 0 else None)
    axes[0].set(yscale="log", xlabel="SGD step", ylabel="training loss (10-step mean, log)",
                title=f"{results['dataset']}: {len(results['seeds'])} seeds, same initial weights per seed")
    names = list(results["final_loss"])
    for index, name in enumerate(names):
        values = results["final_loss"][name]
        axes[1].bar(index, np.mean(values), color=COLORS[name], alpha=0.6)
        axes[1].scatter([index] * len(values), values, color="black", s=12, zorder=3,
                        label="one seed" if index == 0 else None)
    axes[1].set_xticks(range(len(names)), names)
    axes[1].set(ylabel="training loss, last 20 steps",
                title=f"after {results['steps']} steps ({results['hidden_layers']} x "
                      f"{results['hidden_units']} hidden units, {results['optimizer']})")
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path, "Activation functions: tanh (zero-centred) trains faster than sigmoid")
