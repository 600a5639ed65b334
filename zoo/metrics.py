"""The zoo's metrics, computed the same way for Keras models in training and for artifacts."""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import tensorflow as tf


def image_accuracy(classify: Callable[[tf.Tensor], Any], dataset: tf.data.Dataset) -> dict:
    """classify: uint8 [N, H, W, C] -> class ids [N]; dataset: batched (image, label)."""
    correct = examples = 0
    for images, labels in dataset:
        predicted = np.asarray(classify(images)).reshape(-1)
        correct += int(np.sum(predicted == labels.numpy().reshape(-1)))
        examples += int(labels.shape[0])
    if examples == 0:
        raise ValueError("the evaluation dataset is empty")
    return {"value": correct / examples, "examples": examples}


def perplexity(score: Callable[..., dict], text: str, split: str) -> dict:
    """A card metric: exp(-log_probability / token_count) of `text` scored as one string by a
    `score` function (the artifact's signature, or the same function before export)."""
    result = score(text=tf.constant([text]))
    log_probability, count = float(result["log_probability"][0]), int(result["token_count"][0])
    return {"value": math.exp(-log_probability / count), "split": split, "examples": count}
