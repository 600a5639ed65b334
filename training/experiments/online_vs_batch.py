"""Online, mini-batch and batch perceptron learning (the zoo's perceptron, plain rule, no
averaging): test accuracy against examples seen and against training wall time; then a stream
whose labels rotate midway (y -> (y + 1) mod K), where online learning adapts fastest.

Batch learning on a stream means refitting on everything collected so far: every REFIT_EVERY
new examples, BATCH_STEPS full-batch steps (warm start) on the whole history."""
from __future__ import annotations

import time

import keras
import numpy as np

from training.experiments.common import load_subset, save_figure, seed, subplots
from zoo.models.perceptron import PerceptronConfig, build_perceptron, perceptron_criterion

MODES = ("online", "minibatch", "batch")
CHUNK = 100  # online: examples per fit step (updated one by one); minibatch: batch size
REFIT_EVERY = 500
BATCH_STEPS = 10
COLORS = {"online": "tab:blue", "minibatch": "tab:green", "batch": "tab:red"}


def blobs(count: int, rng: np.random.Generator, classes: int = 4, dimension: int = 20):
    """Gaussian classes around fixed random centers (seeded by the generator's first draw)."""
    centers = np.random.default_rng(1234).normal(scale=0.6, size=(classes, dimension))
    labels = rng.integers(0, classes, size=count)
    return (centers[labels] + rng.normal(size=(count, dimension))).astype(np.float32), labels


def load_data(quick: bool, data_dir) -> dict:
    """train / test arrays, the perceptron's input settings, and the number of classes."""
    if quick:
        rng = np.random.default_rng(0)
        (train_x, train_y), (test_x, test_y) = blobs(2000, rng), blobs(1000, rng)
        return {"train": (train_x, train_y), "test": (test_x, test_y), "classes": 4,
                "input": {"input_shape": (20,), "pixel_input": False}, "dataset": "synthetic 4-class blobs"}
    return {"train": load_subset("mnist", "train", 10_000, data_dir),
            "test": load_subset("mnist", "test", 2000, data_dir), "classes": 10,
            "input": {"input_shape": (28, 28, 1), "pixel_input": True}, "dataset": "MNIST"}


def make_perceptron(mode: str, data: dict):
    model = build_perceptron(PerceptronConfig(num_classes=data["classes"], mode=mode, averaged=False,
                                              **data["input"]))
    model.compile(loss=perceptron_criterion)
    return model


def accuracy(model, test_features: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the current "scores" layer on precomputed features [N, D] (fast, numpy)."""
    kernel, bias = model.get_layer("scores").get_weights()
    return float(np.mean(np.argmax(test_features @ kernel + bias, axis=1) == labels))


class Progress(keras.callbacks.Callback):
    """After every training step: examples seen, training seconds (steps only), test accuracy."""

    def __init__(self, test_features, test_labels, batch_size: int, start_examples: int = 0):
        super().__init__()
        self.test_features, self.test_labels, self.batch_size = test_features, test_labels, batch_size
        self.curve: dict[str, list[float]] = {"examples": [], "seconds": [], "accuracy": []}
        self.examples, self.seconds = start_examples, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.seconds += time.perf_counter() - self.started
        self.examples += self.batch_size
        labels = self.test_labels(self.examples) if callable(self.test_labels) else self.test_labels
        self.curve["examples"].append(self.examples)
        self.curve["seconds"].append(self.seconds)
        self.curve["accuracy"].append(accuracy(self.model, self.test_features, labels))


def reset_to_zero(model) -> None:
    """w = 0 and counter 0 again, keeping the traced training step."""
    for variable in model.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))


def static_curves(data: dict, epochs: dict) -> dict:
    """mode -> {examples, seconds, accuracy} after every step over a fixed training set."""
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    one_hot = np.eye(data["classes"])[train_y]
    curves = {}
    for mode in MODES:
        model = make_perceptron(mode, data)
        batch_size = len(train_x) if mode == "batch" else CHUNK
        # One warm-up step first so that tracing the step is not counted as training time.
        model.fit(train_x[:batch_size], one_hot[:batch_size], batch_size=batch_size, verbose=0)
        reset_to_zero(model)
        progress = Progress(model.features.predict(test_x, verbose=0), test_y, batch_size)
        model.fit(train_x, one_hot, batch_size=batch_size, epochs=epochs[mode], shuffle=False,
                  verbose=0, callbacks=[progress])
        curves[mode] = progress.curve
    return curves


def drift_curves(data: dict) -> dict:
    """One pass over a stream whose labels rotate (y -> y + 1 mod K) halfway through; accuracy
    on test labels of the concept in force."""
    (train_x, train_y), (test_x, test_y) = data["train"], data["test"]
    classes, half = data["classes"], len(train_x) // 2
    stream_y = np.where(np.arange(len(train_x)) < half, train_y, (train_y + 1) % classes)
    one_hot = np.eye(classes)[stream_y]
    concept = lambda examples: test_y if examples <= half else (test_y + 1) % classes  # noqa: E731
    curves = {}
    for mode in MODES:
        model = make_perceptron(mode, data)
        features = model.features.predict(test_x, verbose=0)
        if mode != "batch":
            progress = Progress(features, concept, CHUNK)
            model.fit(train_x, one_hot, batch_size=CHUNK, epochs=1, shuffle=False, verbose=0,
                      callbacks=[progress])
            curves[mode] = {key: progress.curve[key] for key in ("examples", "accuracy")}
            continue
        curves[mode] = {"examples": [], "accuracy": []}
        for seen in range(REFIT_EVERY, len(train_x) + 1, REFIT_EVERY):
            model.fit(train_x[:seen], one_hot[:seen], batch_size=seen, epochs=BATCH_STEPS,
                      shuffle=False, verbose=0)
            curves[mode]["examples"].append(seen)
            curves[mode]["accuracy"].append(accuracy(model, features, concept(seen)))
    return {"drift_at": half, "curves": curves, "recovery": recovery(curves, half)}


def recovery(curves: dict, drift_at: int) -> dict:
    """Per mode: accuracy just before the drift, and examples after it until the accuracy on
    the new labels is back to 90% of that (None: not within the stream); mean accuracy after."""
    summary = {}
    for mode, curve in curves.items():
        examples, accuracies = np.array(curve["examples"]), np.array(curve["accuracy"])
        before = float(accuracies[examples <= drift_at][-1])
        after = examples > drift_at
        recovered = np.flatnonzero(after & (accuracies >= 0.9 * before))
        to_recover = int(examples[recovered[0]] - drift_at) if len(recovered) else None
        summary[mode] = {"accuracy_before_drift": before, "examples_to_recover": to_recover,
                         "mean_accuracy_after_drift": float(np.mean(accuracies[after]))}
    return summary


def run(quick: bool = False, data_dir=None) -> dict:
    seed(0)
    data = load_data(quick, data_dir)
    epochs = {"online": 3, "minibatch": 3, "batch": 20 if quick else 30}
    static = static_curves(data, epochs)
    return {"dataset": data["dataset"], "train_examples": len(data["train"][1]),
            "test_examples": len(data["test"][1]), "chunk": CHUNK, "epochs": epochs,
            "refit_every": REFIT_EVERY, "batch_steps_per_refit": BATCH_STEPS,
            "static": static,
            "final_accuracy": {mode: curve["accuracy"][-1] for mode, curve in static.items()},
            "training_seconds": {mode: curve["seconds"][-1] for mode, curve in static.items()},
            "drift": drift_curves(data)}


def plot(results: dict, path) -> None:
    figure, axes = subplots(columns=3, width=5.2, height=4.6)
    for mode, curve in results["static"].items():
        label = {"online": "online (one update per example)",
                 "minibatch": f"mini-batch ({results['chunk']} examples per update)",
                 "batch": "batch (whole training set per update)"}[mode]
        axes[0].plot(curve["examples"], curve["accuracy"], color=COLORS[mode], label=label)
        axes[1].plot(curve["seconds"], curve["accuracy"], color=COLORS[mode], label=mode)
    axes[0].set(xscale="log", xlabel="training examples seen (log)", ylabel="test accuracy",
                title=f"{results['dataset']}: accuracy vs examples seen")
    axes[1].set(xscale="log", xlabel="training wall time, s (log)", ylabel="test accuracy",
                title="accuracy vs training time")
    drift = results["drift"]
    for mode, curve in drift["curves"].items():
        batch = mode == "batch"
        axes[2].plot(curve["examples"], curve["accuracy"], color=COLORS[mode], marker="." if batch else None,
                     label=f"batch (refit every {results['refit_every']})" if batch else mode)
    axes[2].axvline(drift["drift_at"], color="black", linestyle="--", label="labels rotate: y -> y+1")
    axes[2].set(xlabel="stream examples seen", ylabel="test accuracy (labels in force)",
                title="drifting stream: who adapts?", ylim=(0, 1))
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path, "Perceptron learning: online vs mini-batch vs batch (plain rule, no averaging)")
