"""Expected squared error = bias^2 + variance + noise. Known target f(x) = sin(2 pi x) on [0, 1]
(Bishop's example) with Gaussian noise of known sigma; training sets of N points at fixed x
with fresh noise, R of them. Capacity = polynomial degree d: the zoo's linear model on the
Legendre features P_1..P_d of 2x - 1, one output per training set (the R fits are independent
columns of one Dense layer, trained together by full-batch Adam on the squared error)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.experiments.common import save_figure, seed, subplots
from zoo.models.linear import LinearConfig, build_linear

NOISE = 0.3  # sigma of the label noise; the noise term is sigma^2
TRAIN_POINTS = 20
TEST_POINTS = 201


def target(x: np.ndarray) -> np.ndarray:
    return np.sin(2 * np.pi * x)


def features(x: np.ndarray, degree: int) -> np.ndarray:
    """[N] -> [N, degree]: orthonormal Legendre polynomials sqrt(2k+1) P_k(2x - 1), k = 1..degree."""
    return np.stack([np.sqrt(2 * k + 1) * np.polynomial.legendre.Legendre.basis(k)(2 * x - 1)
                     for k in range(1, degree + 1)], axis=1).astype(np.float32)


def fit_predict(degree: int, train_x, train_targets, test_x, steps: int) -> np.ndarray:
    """R linear models (one per column of train_targets [N, R]) -> predictions [T, R]."""
    model = build_linear(LinearConfig(input_shape=(degree,), num_classes=train_targets.shape[1],
                                      pixel_input=False), name=f"degree{degree}")
    model.compile(keras.optimizers.Adam(0.05), "mse")
    batch = tf.data.Dataset.from_tensors((features(train_x, degree), train_targets)).repeat()
    model.fit(batch, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return model.predict(features(test_x, degree), verbose=0)


def decompose(predictions: np.ndarray, test_x: np.ndarray, rng: np.random.Generator) -> dict:
    """bias^2, variance (over the R fits, averaged over x), noise, their sum, and the test error
    measured against fresh noisy targets y = f(x) + e (one per fit and test point)."""
    mean = predictions.mean(axis=1)  # the average model [T]
    fresh = target(test_x)[:, None] + NOISE * rng.normal(size=predictions.shape)
    bias_squared = float(np.mean((mean - target(test_x)) ** 2))
    variance = float(np.mean(predictions.var(axis=1)))
    return {"bias_squared": bias_squared, "variance": variance, "noise": NOISE ** 2,
            "sum": bias_squared + variance + NOISE ** 2,
            "test_error": float(np.mean((predictions - fresh) ** 2))}


def run(quick: bool = False, data_dir=None) -> dict:
    degrees = (1, 4, 12) if quick else tuple(range(1, 14))
    fits = 100 if quick else 200
    steps = 1000 if quick else 2000
    seed(0)
    rng = np.random.default_rng(0)
    train_x = np.linspace(0, 1, TRAIN_POINTS)
    noise = NOISE * rng.normal(size=(TRAIN_POINTS, fits))
    train_targets = (target(train_x)[:, None] + noise).astype(np.float32)  # [N, R]
    test_x = np.linspace(0, 1, TEST_POINTS)
    rows, examples = [], {}
    for degree in degrees:
        predictions = fit_predict(degree, train_x, train_targets, test_x, steps)
        rows.append({"degree": degree, **decompose(predictions, test_x, rng)})
        examples[str(degree)] = np.round(predictions[::4, :5].T, 4)  # 5 fits, every 4th test point
    errors = [row["test_error"] for row in rows]
    return {"target": "sin(2 pi x)", "noise_sigma": NOISE, "train_points": TRAIN_POINTS,
            "fits_per_degree": fits, "adam_steps": steps, "rows": rows,
            "best_degree": degrees[int(np.argmin(errors))],
            "max_relative_gap_sum_vs_test_error": max(abs(row["sum"] - row["test_error"]) / row["test_error"]
                                                      for row in rows),
            "example_fits": {"x": np.round(test_x[::4], 4), "by_degree": examples},
            "train_x": np.round(train_x, 4), "one_training_set": np.round(train_targets[:, 0], 4)}


def plot(results: dict, path) -> None:
    rows = results["rows"]
    degrees = [row["degree"] for row in rows]
    figure, axes = subplots(columns=2, width=6.3, height=4.8)
    for key, style, label in (("bias_squared", "o-", "bias^2"), ("variance", "s-", "variance"),
                              ("noise", ":", f"noise sigma^2 = {results['noise_sigma'] ** 2:.2f}"),
                              ("sum", "k-", "bias^2 + variance + noise"),
                              ("test_error", "rx--", "measured test error (fresh noise)")):
        axes[0].plot(degrees, [row[key] for row in rows], style, label=label)
    axes[0].set(yscale="log", xlabel="capacity: polynomial degree d", ylabel="squared error (log)",
                title=f"{results['fits_per_degree']} fits per degree, {results['train_points']} points each")
    fits = results["example_fits"]
    x = np.array(fits["x"])
    grid = np.linspace(0, 1, 400)
    axes[1].plot(grid, np.sin(2 * np.pi * grid), "k-", linewidth=2, label="f(x) = sin(2 pi x)")
    axes[1].scatter(results["train_x"], results["one_training_set"], color="black", s=12,
                    label="one training set")
    best = results["best_degree"]
    for degree, color in ((degrees[0], "tab:blue"), (best, "tab:green"), (degrees[-1], "tab:red")):
        for index, curve in enumerate(fits["by_degree"][str(degree)]):
            axes[1].plot(x, curve, color=color, alpha=0.6, linewidth=1,
                         label=f"degree {degree}: 5 fits" if index == 0 else None)
    axes[1].set(ylim=(-2, 2), xlabel="x", ylabel="y", title="underfit, best, overfit")
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path, "Bias-variance decomposition: the U-shaped test error of growing capacity")
