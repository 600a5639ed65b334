"""Deeper plain networks train worse; residual ones much less so (He et al. 2016, fig. 1/6):
the zoo's CIFAR ResNet builder, plain (no shortcuts) and residual, at depths 8, 20, 32, trained
a few epochs on a CIFAR-10 subset with the same SGD settings; training loss against depth.
Narrower than the registered ResNets (widths 8/16/32) to fit the CPU budget."""
from __future__ import annotations

import keras
import numpy as np

from training.experiments.common import load_subset, save_figure, seed, subplots
from zoo.models.resnet import ResNetConfig, build_resnet


def synthetic_images(count: int, side: int, classes: int, rng: np.random.Generator):
    """Random uint8 images [N, side, side, 3] labelled by a fixed random linear function of them."""
    images = rng.integers(0, 256, size=(count, side, side, 3), dtype=np.uint8)
    projection = np.random.default_rng(5).normal(size=(side * side * 3, classes))
    return images, np.argmax((images.reshape(count, -1) / 255.0 - 0.5) @ projection, axis=1)


def load_data(quick: bool, data_dir) -> dict:
    if quick:
        return {"train": synthetic_images(256, 4, 4, np.random.default_rng(0)), "dataset": "synthetic 4x4",
                "depths": (8, 20), "epochs": 10, "batch_size": 32,
                "config": {"widths": (8, 8, 8), "input_shape": (4, 4, 3), "num_classes": 4,
                           "mean": None, "std": None}}
    return {"train": load_subset("cifar10", "train", 2500, data_dir),
            "dataset": "CIFAR-10 (2,500 training images)",
            "depths": (8, 20, 32), "epochs": 4, "batch_size": 64, "config": {"widths": (8, 16, 32)}}


def train(depth: int, residual: bool, data: dict) -> list[float]:
    """Training loss (mean over each epoch) of one network."""
    seed(0)
    model = build_resnet(ResNetConfig(depth=depth, residual=residual, **data["config"]))
    model.compile(keras.optimizers.SGD(0.05, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(*data["train"], batch_size=data["batch_size"], epochs=data["epochs"], verbose=0)
    return history.history["loss"]


def run(quick: bool = False, data_dir=None) -> dict:
    data = load_data(quick, data_dir)
    curves = {kind: {str(depth): train(depth, kind == "residual", data) for depth in data["depths"]}
              for kind in ("plain", "residual")}
    final = {kind: {depth: values[-1] for depth, values in by_depth.items()}
             for kind, by_depth in curves.items()}
    shallow, deep = str(data["depths"][0]), str(data["depths"][-1])
    return {"dataset": data["dataset"], "depths": data["depths"], "epochs": data["epochs"],
            "widths": data["config"]["widths"], "optimizer": "SGD lr 0.05, momentum 0.9",
            "batch_size": data["batch_size"], "curves": curves, "final_loss": final,
            "loss_increase_shallow_to_deep": {kind: final[kind][deep] - final[kind][shallow]
                                              for kind in final}}


def plot(results: dict, path) -> None:
    figure, axes = subplots(columns=2, width=6.3, height=4.8)
    colors = {"plain": "tab:red", "residual": "tab:blue"}
    depths = results["depths"]
    for kind, by_depth in results["final_loss"].items():
        axes[0].plot(depths, [by_depth[str(depth)] for depth in depths], "o-", color=colors[kind], label=kind)
        for index, depth in enumerate(depths):
            curve = results["curves"][kind][str(depth)]
            axes[1].plot(np.arange(1, len(curve) + 1), curve, color=colors[kind], linewidth=1 + index,
                         alpha=0.4 + 0.6 * index / max(1, len(depths) - 1), label=f"{kind}-{depth}")
    axes[0].set(xlabel="depth (layers)", ylabel=f"training loss, epoch {results['epochs']}", xticks=depths,
                title=f"{results['dataset']}, {results['epochs']} epochs")
    axes[1].set(xlabel="epoch", ylabel="training loss (epoch mean)", xticks=range(1, results["epochs"] + 1),
                title="training curves (thicker = deeper)")
    for axis in axes:
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path, "Plain vs residual networks: training loss against depth")
