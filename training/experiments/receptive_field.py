"""Receptive fields of every convolution and pooling layer of the zoo's CNN and ResNet-20:
computed analytically (r_out = r_in + (k - 1) j_in, j_out = j_in s) and measured as the extent
of the input pixels with a non-zero gradient for one central output unit. A larger first stride
grows them faster; the cost is discarded information: with stride 4 > kernel 3 some pixels
reach no output at all (the output is exactly invariant to them), and accuracy drops."""
from __future__ import annotations

from typing import Any

import keras
import matplotlib.ticker
import numpy as np
import tensorflow as tf

from training.experiments.common import load_subset, save_figure, seed, subplots
from zoo.models.cnn import CNNConfig, build_cnn_mnist
from zoo.models.resnet import ResNetConfig, build_resnet

STRIDES = (1, 2, 3, 4)
SWEEP_CONFIG: dict[str, Any] = {"filters": (16, 32), "dense_units": 64, "dropout": 0.2}  # a small CNN for the sweep
POOLING = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)


def receptive_fields(model: keras.Model) -> dict[str, tuple[int, int]]:
    """layer name -> (receptive field size, jump in input pixels) for every conv / pool layer,
    along the path that grows it most (the convolutional branch of a residual block)."""
    fields: dict[int, tuple[int, int]] = {}  # id(KerasTensor) -> (size, jump)
    result: dict[str, tuple[int, int]] = {}
    for operation in model.operations:
        node = operation._inbound_nodes[0]
        size, jump = max((fields.get(id(tensor), (1, 1)) for tensor in node.input_tensors), default=(1, 1))
        kernel, stride = kernel_and_stride(operation, node)
        size, jump = size + (kernel - 1) * jump, jump * stride
        for tensor in node.output_tensors:
            fields[id(tensor)] = (size, jump)
        if isinstance(operation, (keras.layers.Conv2D, *POOLING)):
            result[operation.name] = (size, jump)
    return result


def kernel_and_stride(operation, node) -> tuple[int, int]:
    """Effective kernel size and stride of one operation along H (the zoo's layers are square)."""
    if isinstance(operation, keras.layers.Conv2D):
        return (operation.kernel_size[0] - 1) * operation.dilation_rate[0] + 1, operation.strides[0]
    if isinstance(operation, POOLING):
        return operation.pool_size[0], operation.strides[0]
    # Element-wise, or a 1x1 subsample (the residual shortcut): the stride from the shapes.
    shapes = [tensor.shape for tensor in (*node.input_tensors[:1], node.output_tensors[0])]
    if len(shapes) == 2 and all(len(shape) == 4 for shape in shapes):
        return 1, shapes[0][1] // shapes[1][1]
    return 1, 1


def measured_fields(model: keras.Model, names: list[str], examples: int,
                    rng: np.random.Generator) -> dict[str, int]:
    """layer name -> extent (pixels) of the input region whose gradient is non-zero for the
    central unit (all channels) of that layer, union over random inputs (max-pooling routes
    each input's gradient through one pixel of each window)."""
    pixels = model.get_layer("scale").input  # float pixels, after the uint8 cast
    probe = keras.Model(pixels, [model.get_layer(name).output for name in names])
    images = tf.constant(rng.uniform(0, 255, size=(examples, *pixels.shape[1:])).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        outputs = probe(images, training=False)  # each [B, H, W, C]
        centers = [tf.reduce_sum(output[:, output.shape[1] // 2, output.shape[2] // 2, :])
                   for output in outputs]
    extents = {}
    for name, center in zip(names, centers):
        support = np.any(tape.gradient(center, images).numpy() != 0, axis=(0, 3))  # [H, W]
        rows, columns = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
        extents[name] = int(max(rows.max() - rows.min(), columns.max() - columns.min()) + 1)
    return extents


def compare(model: keras.Model, examples: int) -> list[dict]:
    analytic = receptive_fields(model)
    measured = measured_fields(model, list(analytic), examples, np.random.default_rng(0))
    return [{"layer": name, "analytic": size, "jump": jump, "measured": measured[name]}
            for name, (size, jump) in analytic.items()]


def stride_model(stride: int) -> keras.Model:
    return build_cnn_mnist(CNNConfig(first_stride=stride, **SWEEP_CONFIG))


def discarded_pixels(model: keras.Model, rng: np.random.Generator) -> dict:
    """Fraction of input pixels that reach the last conv layer at all (non-zero gradient of the
    sum of all its outputs, union over inputs), and the largest change of the model's scores
    when every other pixel is redrawn at random (0 when they are truly discarded)."""
    pixels = model.get_layer("scale").input
    last_conv = [layer.name for layer in model.layers if isinstance(layer, keras.layers.Conv2D)][-1]
    probe = keras.Model(pixels, model.get_layer(last_conv).output)
    images = tf.constant(rng.uniform(0, 255, size=(8, *pixels.shape[1:])).astype(np.float32))
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(probe(images, training=False))
    reached = np.any(tape.gradient(total, images).numpy() != 0, axis=(0, 3))  # [H, W]
    originals = np.round(images.numpy()).astype(np.uint8)
    redrawn = np.where(reached[None, :, :, None], originals,
                       rng.integers(0, 256, size=originals.shape)).astype(np.uint8)
    change = np.max(np.abs(model(originals, training=False) - model(redrawn, training=False)))
    return {"fraction_of_pixels_used": float(reached.mean()),
            "max_score_change_unused_redrawn": float(change)}


def sweep_accuracy(stride: int, data: dict) -> float:
    """Test accuracy of the sweep CNN with this first stride after a short training."""
    seed(0)
    model = stride_model(stride)
    model.compile(keras.optimizers.Adam(2e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    # ~470 steps: enough for batch norm's moving statistics (momentum 0.99) used at test time.
    model.fit(*data["train"], batch_size=32, epochs=3, verbose=0)
    return float(model.evaluate(*data["test"], batch_size=500, verbose=0)[1])


def stride_sweep(quick: bool, data_dir) -> list[dict]:
    data = None if quick else {"train": load_subset("mnist", "train", 5000, data_dir),
                               "test": load_subset("mnist", "test", 2000, data_dir)}
    rows = []
    for stride in STRIDES:
        seed(0)
        model = stride_model(stride)
        fields = receptive_fields(model)
        row = {"stride": stride, "receptive_field": {name: size for name, (size, _) in fields.items()},
               "feature_map_before_dense": list(model.get_layer("flatten").input.shape[1:3]),
               **discarded_pixels(model, np.random.default_rng(stride))}
        if data is not None:
            row["test_accuracy"] = sweep_accuracy(stride, data)
        rows.append(row)
    return rows


def run(quick: bool = False, data_dir=None) -> dict:
    seed(0)
    if quick:
        cnn = build_cnn_mnist(CNNConfig(filters=(8, 8), dense_units=8, input_shape=(32, 32, 1)))
        resnet = build_resnet(ResNetConfig(depth=8, widths=(4, 4, 4), input_shape=(48, 48, 3)))
    else:  # the zoo's cnn_mnist and resnet20_cifar10 layers, on inputs larger than their fields
        cnn = build_cnn_mnist(CNNConfig(input_shape=(64, 64, 1)))
        resnet = build_resnet(ResNetConfig(depth=20, input_shape=(96, 96, 3)))
    layers = {"cnn": compare(cnn, examples=32), "resnet": compare(resnet, examples=4)}
    return {"layers": layers,
            "all_measured_equal_analytic": all(row["measured"] == row["analytic"]
                                               for rows in layers.values() for row in rows),
            "sweep_config": SWEEP_CONFIG, "stride_sweep": stride_sweep(quick, data_dir)}


def plot(results: dict, path) -> None:
    figure, axes = subplots(columns=3, width=5.3, height=4.8)
    families = (("cnn", "CNN (cnn_mnist layers)"), ("resnet", "ResNet-20 layers"))
    for axis, (family, title) in zip(axes, families):
        rows = results["layers"][family]
        positions = np.arange(len(rows))
        axis.plot(positions, [row["analytic"] for row in rows], "-", color="black", label="analytic")
        axis.scatter(positions, [row["measured"] for row in rows], color="tab:orange", zorder=3,
                     label="measured: non-zero input gradient")
        strided = [index for index, row in enumerate(rows) if index and row["jump"] > rows[index - 1]["jump"]]
        axis.scatter(strided, [rows[index]["analytic"] for index in strided], marker="s", s=60,
                     facecolors="none", edgecolors="tab:red", label="stride 2 (pool or conv)")
        axis.set(xlabel="layer (conv / pool, input to output)", ylabel="receptive field (pixels)",
                 title=title)
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    sweep = results["stride_sweep"]
    strides = [row["stride"] for row in sweep]
    last = list(sweep[0]["receptive_field"])[-1]
    axes[2].plot(strides, [row["receptive_field"][last] for row in sweep], "o-", color="black",
                 label=f"receptive field of {last} (pixels)")
    right = axes[2].twinx()
    right.plot(strides, [row["fraction_of_pixels_used"] for row in sweep], "s--", color="tab:red",
               label="fraction of input pixels used")
    if "test_accuracy" in sweep[0]:
        right.plot(strides, [row["test_accuracy"] for row in sweep], "^-", color="tab:blue",
                   label="MNIST test accuracy (5,000 images, 3 epochs)")
    right.set(ylabel="fraction", ylim=(0.4, 1.02))
    axes[2].set(xlabel="stride of the first convolution (kernel 3)", ylabel="receptive field (pixels)",
                title="stride sweep (small CNN)", xticks=strides)
    handles = [axis.get_legend_handles_labels() for axis in (axes[2], right)]
    axes[2].legend(handles[0][0] + handles[1][0], handles[0][1] + handles[1][1], fontsize=8,
                   loc="center left")
    for axis in axes[:2]:
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=8)
    save_figure(figure, path, "Receptive fields: analytic = measured from input gradients; "
                "stride grows them faster but discards pixels")
