"""Every model of the zoo, registered once. The Makefile, tests, CLI and API read this."""
from __future__ import annotations

from zoo.models import cnn
from zoo.registry import ModelSpec, register

MNIST_LABELS = tuple(str(digit) for digit in range(10))
CIFAR10_LABELS = ("airplane", "automobile", "bird", "cat", "deer",
                  "dog", "frog", "horse", "ship", "truck")

register(ModelSpec(
    name="cnn_mnist", task="image", dataset="mnist",
    builder=cnn.build_cnn_mnist, config=cnn.CNNConfig(),
    parameter_count=468_394, metric="accuracy", bar=0.995,
    reference="keras-io simple MNIST convnet: 0.9922",
    recipe={"epochs": 15, "batch_size": 128, "learning_rate": 2e-3, "warmup_epochs": 1,
            "augment": "shift", "label_smoothing": 0.1},
    label_names=MNIST_LABELS,
    description="Conv + pooling network: two stages of two 3x3 conv-BN-ReLU layers and a "
                "max-pool (32, 64 filters), dropout, a 128-unit dense layer, 10 outputs.",
))
