"""Novikoff: on data separable with margin gamma by a unit vector u, inside a ball of radius R,
the online perceptron makes at most (R / gamma)^2 mistakes, however many passes it takes.

The zoo's perceptron has a bias: x is in effect augmented to (x, 1), so R^2 = max ||x||^2 + 1,
and (u, 0) keeps margin gamma. With two classes its multi-class rule is the binary perceptron on
w_1 - w_0 (steps of 2 y x from zero), which makes the same mistakes."""
from __future__ import annotations

import matplotlib.ticker
import numpy as np

from training.experiments.common import save_figure, subplots
from zoo.models.perceptron import PerceptronConfig, build_perceptron, perceptron_criterion

MAX_EPOCHS = 200
DIMENSION = 10


def separable_data(count: int, margin: float, dimension: int, rng: np.random.Generator):
    """Points [N, D] uniform in the unit ball, at least `margin` from the hyperplane u.x = 0
    (a random unit vector u), labelled by their side [N]; and u."""
    direction = rng.normal(size=dimension)
    direction /= np.linalg.norm(direction)
    points = np.empty((0, dimension))
    while len(points) < count:
        candidates = rng.normal(size=(4 * count, dimension))  # uniform in the ball: direction x radius
        candidates *= rng.uniform(size=(4 * count, 1)) ** (1 / dimension) / np.linalg.norm(
            candidates, axis=1, keepdims=True)
        points = np.concatenate([points, candidates[np.abs(candidates @ direction) >= margin]])
    points = points[:count].astype(np.float32)
    return points, (points @ direction > 0).astype(int), direction


def online_perceptron(dimension: int):
    model = build_perceptron(PerceptronConfig(input_shape=(dimension,), num_classes=2, pixel_input=False,
                                              mode="online", averaged=False))
    model.compile(loss=perceptron_criterion)
    return model


def mistakes_until_separated(model, points: np.ndarray, labels: np.ndarray) -> tuple[int, int]:
    """(total mistakes, epochs) of online passes until one pass makes no mistake."""
    for variable in model.weights:  # back to w = 0, counter 0: reuse the traced step
        variable.assign(np.zeros(variable.shape, variable.dtype))
    total = 0
    for epoch in range(1, MAX_EPOCHS + 1):
        model.fit(points, np.eye(2)[labels], batch_size=len(points), epochs=1, shuffle=False, verbose=0)
        mistakes = int(round(float(model.mistake_tracker.result()) * len(points)))
        total += mistakes
        if mistakes == 0:
            return total, epoch
    raise RuntimeError(f"no error-free pass in {MAX_EPOCHS} epochs on separable data")


def run(quick: bool = False, data_dir=None) -> dict:
    margins = (0.03, 0.2) if quick else (0.02, 0.03, 0.05, 0.1, 0.15, 0.2, 0.3)
    seeds = 2 if quick else 5
    count = 200 if quick else 500
    model = online_perceptron(DIMENSION)
    rows = []
    for margin in margins:
        for seed in range(seeds):
            points, labels, direction = separable_data(
                count, margin, DIMENSION, np.random.default_rng(seed))
            mistakes, epochs = mistakes_until_separated(model, points, labels)
            radius_squared = float(np.max(np.sum(points ** 2, axis=1)) + 1.0)  # augmented (x, 1)
            gamma = float(np.min(np.abs(points @ direction)))  # >= margin
            rows.append({"margin": margin, "seed": seed, "gamma": gamma, "radius": radius_squared ** 0.5,
                         "bound": radius_squared / gamma ** 2, "mistakes": mistakes, "epochs": epochs})
    return {"points": count, "dimension": DIMENSION, "rows": rows,
            "all_within_bound": all(row["mistakes"] <= row["bound"] for row in rows),
            "largest_mistakes_over_bound": max(row["mistakes"] / row["bound"] for row in rows)}


def plot(results: dict, path) -> None:
    rows = results["rows"]
    figure, (axis,) = subplots(width=7, height=5)
    gamma = np.array([row["gamma"] for row in rows])
    order = np.argsort(gamma)
    axis.plot(gamma[order], np.array([row["bound"] for row in rows])[order], "-", color="red",
              label="bound (R / gamma)^2")
    axis.scatter(gamma, [row["mistakes"] for row in rows], color="tab:blue", zorder=3,
                 label=f"measured mistakes until an error-free pass ({len(rows)} runs)")
    axis.set(xscale="log", yscale="log", xlabel="margin gamma of the separating unit vector u",
             ylabel="mistakes (log scale)")
    margins = sorted({row["margin"] for row in rows})
    axis.set_xticks(margins, [f"{margin:g}" for margin in margins])
    axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    save_figure(figure, path, "Online perceptron on separable data: mistakes vs the (R/gamma)^2 bound\n"
                f"({results['points']} points in the {results['dimension']}-D unit ball; R^2 = max|x|^2 + 1 "
                "for the bias;\n"
                f"largest mistakes/bound = {results['largest_mistakes_over_bound']:.3f})")
