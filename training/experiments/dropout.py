"""Dropout on over-sized MLPs: it narrows the gap between training and test accuracy, by far
the most where the network would memorise noise (synthetic data with 20% wrong labels); on a
clean MNIST subset the effect is small (see reports/README.md). At test time every unit is
active: outputs are deterministic and equal those of the same weights with dropout removed
(keras' inverted dropout scales by 1 / (1 - p) in training, so nothing is rescaled at test time)."""
from __future__ import annotations

import keras
import numpy as np

from training.experiments.common import load_subset, save_figure, seed, subplots
from zoo.models.mlp import MLPConfig, build_mlp

VARIANTS = {"no dropout": (0.0, 0.0), "dropout": (0.5, 0.2)}  # (hidden, input): Srivastava et al.'s


def noisy_teacher_data(count: int, rng: np.random.Generator, dimension: int = 30, classes: int = 4):
    """Gaussian inputs labelled by a fixed random linear teacher, 20% of labels replaced at random
    (so the best possible accuracy is 0.85; anything above on training data is memorised noise)."""
    teacher = np.random.default_rng(7).normal(size=(dimension, classes))
    inputs = rng.normal(size=(count, dimension)).astype(np.float32)
    labels = np.argmax(inputs @ teacher, axis=1)
    flip = rng.uniform(size=count) < 0.2
    return inputs, np.where(flip, rng.integers(0, classes, size=count), labels)


def load_data(name: str, data_dir) -> dict:
    if name == "synthetic":
        rng = np.random.default_rng(0)
        return {"train": noisy_teacher_data(2000, rng), "test": noisy_teacher_data(2000, rng),
                "title": "synthetic, 20% label noise", "epochs": 30, "batch_size": 64,
                "config": {"input_shape": (30,), "num_classes": 4, "pixel_input": False,
                           "hidden_units": 256, "hidden_layers": 2}}
    return {"train": load_subset("mnist", "train", 2000, data_dir),
            "test": load_subset("mnist", "test", 2000, data_dir), "title": "MNIST", "epochs": 40,
            "batch_size": 100, "config": {"hidden_units": 1024, "hidden_layers": 2}}


class Measure(keras.callbacks.Callback):
    """Every `every` epochs: loss and accuracy on the training and test sets, inference mode."""

    def __init__(self, data: dict, every: int):
        super().__init__()
        self.data, self.every = data, every
        keys = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy")
        self.curve: dict[str, list[float]] = {key: [] for key in keys}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        self.curve["epoch"].append(epoch + 1)
        for split in ("train", "test"):
            loss, accuracy = self.model.evaluate(*self.data[split], batch_size=500, verbose=0)
            self.curve[f"{split}_loss"].append(loss)
            self.curve[f"{split}_accuracy"].append(accuracy)


def train(hidden: float, inputs: float, data: dict) -> tuple[keras.Model, dict]:
    seed(0)  # the same initial weights for every variant
    model = build_mlp(MLPConfig(dropout=hidden, input_dropout=inputs, **data["config"]))
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    measure = Measure(data, every=max(1, data["epochs"] // 10))
    model.fit(*data["train"], batch_size=data["batch_size"], epochs=data["epochs"], verbose=0,
              callbacks=[measure])
    return model, measure.curve


def inference_checks(model: keras.Model, data: dict) -> dict:
    """Deterministic at test time, stochastic in training; test outputs equal the same weights
    without dropout (every unit active, unscaled)."""
    inputs = data["test"][0][:64]
    first, second = (np.asarray(model(inputs, training=False)) for _ in range(2))
    noisy_first, noisy_second = (np.asarray(model(inputs, training=True)) for _ in range(2))
    without = build_mlp(MLPConfig(dropout=0.0, **data["config"]))
    without.set_weights(model.get_weights())
    largest = lambda a, b: float(np.max(np.abs(a - b)))  # noqa: E731
    return {"inference_max_difference_between_calls": largest(first, second),
            "training_mode_max_difference_between_calls": largest(noisy_first, noisy_second),
            "inference_max_difference_vs_dropout_removed": largest(first, np.asarray(without(inputs)))}


def experiment(data: dict) -> dict:
    curves, final = {}, {}
    for variant, (hidden, inputs) in VARIANTS.items():
        model, curves[variant] = train(hidden, inputs, data)
        final[variant] = {key: values[-1] for key, values in curves[variant].items() if key != "epoch"}
        final[variant]["accuracy_gap"] = final[variant]["train_accuracy"] - final[variant]["test_accuracy"]
        final[variant]["loss_gap"] = final[variant]["test_loss"] - final[variant]["train_loss"]
    shape = f"{data['config']['hidden_layers']} x {data['config']['hidden_units']}"
    return {"title": data["title"], "train_examples": len(data["train"][1]),
            "test_examples": len(data["test"][1]), "epochs": data["epochs"], "hidden": shape,
            "final": final, "curves": curves, "inference": inference_checks(model, data)}


def run(quick: bool = False, data_dir=None) -> dict:
    names = ("synthetic",) if quick else ("synthetic", "mnist")
    return {"variants": {name: {"hidden_dropout": hidden, "input_dropout": inputs}
                         for name, (hidden, inputs) in VARIANTS.items()},
            "optimizer": "Adam 1e-3",
            "datasets": {name: experiment(load_data(name, data_dir)) for name in names}}


def plot(results: dict, path) -> None:
    datasets = results["datasets"]
    figure, axes = subplots(columns=len(datasets), width=6.3, height=4.8)
    colors = {"no dropout": "tab:red", "dropout": "tab:blue"}
    for axis, outcome in zip(axes, datasets.values()):
        for variant, curve in outcome["curves"].items():
            for split, style in (("train", "--"), ("test", "-")):
                axis.plot(curve["epoch"], curve[f"{split}_accuracy"], style, color=colors[variant],
                          label=f"{variant}: {split}")
        gaps = ", ".join(f"{variant} {values['accuracy_gap']:.3f}"
                         for variant, values in outcome["final"].items())
        axis.set(xlabel="epoch", ylabel="accuracy (inference mode: all units active)",
                 title=f"{outcome['title']}: {outcome['train_examples']} training examples, "
                       f"MLP {outcome['hidden']}\nfinal train - test gap: {gaps}")
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    variant = results["variants"]["dropout"]
    save_figure(figure, path, f"Dropout (hidden {variant['hidden_dropout']}, input "
                f"{variant['input_dropout']}) on over-sized MLPs: the train/test gap")
