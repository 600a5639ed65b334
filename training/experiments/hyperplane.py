"""A linear model f(x) = w.x + b defines the hyperplane f(x) = 0, and r = f(x) / ||w|| is the
signed distance of x to it: checked against a brute-force nearest point on the line."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from training.experiments.common import save_figure, seed, subplots
from zoo.models.linear import LinearConfig, build_linear, hyperplane_distance

CENTERS = np.array([[-1.0, -0.5], [1.2, 1.0]])  # class 0, class 1


def two_blobs(count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`count` 2-D points [N, 2], half around each center, and their labels [N]."""
    labels = np.arange(count) % 2
    points = CENTERS[labels] + rng.normal(scale=0.7, size=(count, 2))
    return points.astype(np.float32), labels


def fit_line(points: np.ndarray, labels: np.ndarray, steps: int) -> keras.Model:
    """The zoo's linear model with one output f(x), trained by logistic regression."""
    model = build_linear(LinearConfig(input_shape=(2,), num_classes=1, pixel_input=False),
                         name="linear_2d")
    model.compile(keras.optimizers.Adam(0.05), keras.losses.BinaryCrossentropy(from_logits=True),
                  metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)])
    dataset = tf.data.Dataset.from_tensors((points, labels[:, None].astype(np.float32))).repeat()
    model.fit(dataset, steps_per_epoch=steps, epochs=1, shuffle=False, verbose=0)
    return model


def brute_force_distance(points: np.ndarray, weight: np.ndarray, bias: float) -> np.ndarray:
    """min over a dense sampling of the line {w.x + b = 0} of ||x - p||, without the formula."""
    anchor = -bias * weight / np.dot(weight, weight)  # a point on the line
    along = np.array([-weight[1], weight[0]]) / np.linalg.norm(weight)  # unit vector along it
    line = anchor + np.linspace(-20, 20, 400_001)[:, None] * along  # [S, 2], 1e-4 apart
    return np.array([np.min(np.linalg.norm(line - point, axis=1)) for point in points])


def run(quick: bool = False, data_dir=None) -> dict:
    seed(0)
    points, labels = two_blobs(60 if quick else 200, np.random.default_rng(0))
    model = fit_line(points, labels, steps=100 if quick else 300)
    scores = model.predict(points, verbose=0)[:, 0]  # f(x) [N]
    distance = hyperplane_distance(model, points)[:, 0]  # r = f(x) / ||w|| [N]
    kernel, bias = model.get_layer("scores").get_weights()
    weight = kernel[:, 0]
    feet = points - distance[:, None] * weight / np.linalg.norm(weight)  # x - r w/||w||: on the line?
    # Scaling (w, b) by 3 triples f but leaves the hyperplane and r unchanged.
    model.get_layer("scores").set_weights([3 * kernel, 3 * bias])
    scaled_scores = model.predict(points, verbose=0)[:, 0]
    scaled_distance = hyperplane_distance(model, points)[:, 0]
    model.get_layer("scores").set_weights([kernel, bias])
    return {
        "weight": weight, "bias": float(bias[0]), "weight_norm": float(np.linalg.norm(weight)),
        "accuracy": float(np.mean((scores > 0) == labels)),
        "max_abs_distance_error_vs_brute_force": float(np.max(np.abs(
            np.abs(distance) - brute_force_distance(points, weight, float(bias[0]))))),
        "sign_of_distance_equals_side": bool(np.all(np.sign(distance) == np.sign(scores))),
        "max_abs_f_at_foot_of_perpendicular": float(np.max(np.abs(
            model.predict(feet, verbose=0)[:, 0]))),
        "scaled_3x_score_ratio": float(np.median(scaled_scores / scores)),
        "scaled_3x_max_distance_change": float(np.max(np.abs(scaled_distance - distance))),
        "points": np.round(points, 4), "labels": labels, "distance": np.round(distance, 4),
    }


def plot(results: dict, path) -> None:
    points, labels = np.array(results["points"]), np.array(results["labels"])
    distance = np.array(results["distance"])
    weight, bias = np.array(results["weight"]), results["bias"]
    unit = weight / np.linalg.norm(weight)
    figure, (axis,) = subplots(width=7, height=6.5)
    grid = np.linspace(-3.5, 3.5, 300)
    grid_x, grid_y = np.meshgrid(grid, grid)
    signed = (weight[0] * grid_x + weight[1] * grid_y + bias) / np.linalg.norm(weight)
    contours = axis.contour(grid_x, grid_y, signed, levels=[-2, -1, 1, 2], colors="grey",
                            linestyles="dotted", linewidths=0.8)
    axis.clabel(contours, fmt="r = %g")
    axis.plot([], [], color="grey", linestyle="dotted", label="level sets r = -2, -1, 1, 2")
    axis.contourf(grid_x, grid_y, signed, levels=[-10, 0, 10], colors=["tab:blue", "tab:orange"], alpha=0.08)
    axis.contour(grid_x, grid_y, signed, levels=[0], colors="black", linewidths=2)
    axis.plot([], [], color="black", linewidth=2, label="hyperplane f(x) = w.x + b = 0")
    for label, color in ((0, "tab:blue"), (1, "tab:orange")):
        chosen = labels == label
        axis.scatter(*points[chosen].T, s=14, color=color, label=f"class {label}")
    for index in np.argsort(np.abs(distance))[::-1][:: max(1, len(points) // 10)][:10]:
        foot = points[index] - distance[index] * unit
        axis.plot(*np.stack([points[index], foot]).T, color="green", linewidth=1)
        axis.annotate(f"{distance[index]:+.2f}", points[index], fontsize=8, color="green",
                      xytext=(3, 3), textcoords="offset points")
    axis.plot([], [], color="green", label="perpendicular, labelled with r = f(x)/||w||")
    origin = -bias * weight / np.dot(weight, weight)
    axis.annotate("", origin + unit, origin, arrowprops={"arrowstyle": "->", "color": "red", "linewidth": 2})
    axis.plot([], [], color="red", label="w (points to f > 0)")
    axis.set(xlim=(-3.5, 3.5), ylim=(-3.5, 3.5), xlabel="x1", ylabel="x2", aspect="equal")
    axis.legend(loc="lower right", fontsize=8)
    save_figure(figure, path, "Linear model: hyperplane f(x) = 0 and signed distance r = f(x)/||w||\n"
                f"(accuracy {results['accuracy']:.3f}; |r| vs brute-force nearest point: "
                f"max error {results['max_abs_distance_error_vs_brute_force']:.1e})")
