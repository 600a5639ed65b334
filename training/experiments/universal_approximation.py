"""A three-layer network (one hidden layer of n_H units) fits a continuous function on a compact
set as closely as wanted, given enough hidden units: the zoo's MLP, tanh hidden units, fitted
to a few continuous targets on [-1, 1]; approximation error against n_H.

The network sees 3x rather than x: Glorot's initial weights from one input shrink like
1 / sqrt(n_H), which leaves wide tanh layers almost linear on [-1, 1] and slow to train.

Every (target, n_H, seed) network is an independent zoo MLP; they are trained side by side in
one keras model (the loss is the sum of their mean squared errors, so their gradients do not mix)."""
from __future__ import annotations

from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from training.experiments.common import save_figure, seed, subplots
from zoo.models.mlp import MLPConfig, build_mlp

TARGETS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "sin(3 pi x)": lambda x: np.sin(3 * np.pi * x),
    "|x|": np.abs,  # continuous, not differentiable at 0
    "bump exp(-x^2 / 0.02)": lambda x: np.exp(-x ** 2 / 0.02),
}
INPUT_SCALE = 3.0


def summed_squared_error(targets, predictions):
    """Per example: sum over the networks (columns) of the squared error -> mean over the batch."""
    return keras.ops.sum(keras.ops.square(targets - predictions), axis=-1)


def side_by_side(configurations: list[tuple[str, int, int]]) -> keras.Model:
    """x [N, 1] -> [N, M]: column m is the zoo MLP of configuration m = (target, units, seed)."""
    inputs = keras.Input(shape=(1,), name="x")
    outputs = []
    for index, (_, units, network_seed) in enumerate(configurations):
        seed(network_seed * 1000 + units)  # the same initial network for every target
        network = build_mlp(MLPConfig(input_shape=(1,), num_classes=1, hidden_units=units,
                                      activation="tanh", dropout=0.0, pixel_input=False),
                            name=f"network{index}")
        outputs.append(network(inputs))
    return keras.Model(inputs, keras.layers.Concatenate(name="all")(outputs))


def run(quick: bool = False, data_dir=None) -> dict:
    widths = (1, 4, 16) if quick else (1, 2, 4, 8, 16, 32)
    seeds = (0,) if quick else (0, 1)
    steps = 1500 if quick else 3000
    targets = {name: TARGETS[name] for name in list(TARGETS)[1:]} if quick else TARGETS  # |x|, bump
    configurations = [(name, units, network_seed)
                      for name in targets for units in widths for network_seed in seeds]
    train_x = np.linspace(-1, 1, 200, dtype=np.float32)[:, None]  # [N, 1]
    test_x = np.linspace(-1, 1, 1001, dtype=np.float32)[:, None]  # between and beyond the grid
    columns = lambda x: np.concatenate(  # noqa: E731
        [targets[name](x) for name, _, _ in configurations], axis=1)  # [N, 1] -> [N, M]
    model = side_by_side(configurations)
    rate = keras.optimizers.schedules.CosineDecay(0.05, steps)
    model.compile(keras.optimizers.Adam(rate), summed_squared_error, jit_compile=True)
    batch = tf.data.Dataset.from_tensors((INPUT_SCALE * train_x, columns(train_x).astype(np.float32)))
    model.fit(batch.repeat(), steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    predictions = model.predict(INPUT_SCALE * test_x, verbose=0)  # [T, M]
    errors = predictions - columns(test_x)
    rows = [{"target": name, "hidden_units": units, "seed": network_seed,
             "rms_error": float(np.sqrt(np.mean(errors[:, index] ** 2))),
             "max_error": float(np.max(np.abs(errors[:, index])))}
            for index, (name, units, network_seed) in enumerate(configurations)]
    return {"widths": widths, "seeds": seeds, "adam_steps": steps, "activation": "tanh",
            "input_scale": INPUT_SCALE, "train_points": len(train_x), "test_points": len(test_x),
            "rows": rows, "best_rms_error": best_errors(rows, targets, widths),
            "example_fits": example_fits(rows, predictions, test_x, list(targets)[0], widths)}


def example_fits(rows: list[dict], predictions: np.ndarray, test_x: np.ndarray, name: str, widths) -> dict:
    """The best seed's fit of target `name` at each width, every 5th test point."""
    fits = {}
    for units in widths:
        candidates = [index for index, row in enumerate(rows)
                      if row["target"] == name and row["hidden_units"] == units]
        best = min(candidates, key=lambda index: rows[index]["rms_error"])
        fits[str(units)] = np.round(predictions[::5, best], 4)
    return {"target": name, "x": np.round(test_x[::5, 0], 4), "by_width": fits}


def best_errors(rows: list[dict], targets, widths) -> dict:
    """target -> [smallest RMS error over seeds for each width] (the approximation, not bad luck)."""
    return {name: [min(row["rms_error"] for row in rows
                       if row["target"] == name and row["hidden_units"] == units)
                   for units in widths] for name in targets}


def plot(results: dict, path) -> None:
    figure, (axis, fits_axis) = subplots(columns=2, width=6.5, height=5)
    for name, errors in results["best_rms_error"].items():
        axis.plot(results["widths"], errors, "o-", label=f"f(x) = {name}")
    axis.set(xscale="log", yscale="log", xlabel="hidden units n_H (log)",
             ylabel="RMS error on [-1, 1] (log), best of seeds",
             title=f"one tanh hidden layer, {results['adam_steps']} full-batch Adam steps, "
                   f"{results['train_points']} training points")
    axis.set_xticks(results["widths"], [str(width) for width in results["widths"]])
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    fits = results["example_fits"]
    x = np.array(fits["x"])
    fits_axis.plot(x, TARGETS[fits["target"]](x), color="black", linewidth=3,
                   label=f"target {fits['target']}")
    for units, curve in fits["by_width"].items():
        fits_axis.plot(x, curve, linewidth=1.3, label=f"n_H = {units}")
    fits_axis.set(xlabel="x", ylabel="network output", title=f"fits of {fits['target']} (best seed)")
    fits_axis.grid(True, alpha=0.3)
    fits_axis.legend(fontsize=8)
    save_figure(figure, path, "Universal approximation: error of a three-layer network vs hidden units")
