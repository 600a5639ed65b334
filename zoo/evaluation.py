"""Re-measure a model on a real test split, the same way for Keras models and artifacts."""
from __future__ import annotations

import os
from typing import Callable

import numpy as np
import tensorflow as tf


def image_accuracy(classify: Callable[[tf.Tensor], tf.Tensor], dataset: tf.data.Dataset) -> dict:
    """classify: uint8 [N, H, W, C] -> class ids [N]; dataset: batched (image, label)."""
    correct = examples = 0
    for images, labels in dataset:
        predicted = np.asarray(classify(images)).reshape(-1)
        correct += int(np.sum(predicted == labels.numpy().reshape(-1)))
        examples += int(labels.shape[0])
    if examples == 0:
        raise ValueError("the evaluation dataset is empty")
    return {"value": correct / examples, "examples": examples}


def evaluate(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
             batch_size: int = 500) -> dict:
    """The artifact's test metrics recomputed from its own signatures on the real test split."""
    from zoo.inference import load

    model = load(name_or_path)
    return model.evaluate(data_dir=data_dir, batch_size=batch_size)
