"""The public API: zoo.load, zoo.get_model, zoo.evaluate."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from zoo import artifact, convert, registry, tasks


def load(name_or_path: str | os.PathLike, runtime: str = "tensorflow") -> Any:
    """Load an exported artifact by registry name or folder path: verify its manifest, read its
    card, tf.saved_model.load; an ImageClassifier or a LanguageModel.

    runtime="onnxruntime" (image models) runs `predict` on an ONNX conversion of the artifact,
    made on first use and cached (zoo.convert.converted_dir): the same outputs with less per-call overhead.
    """
    known = sorted({name for task in tasks.TASKS.values() for name in task.runtimes})
    if runtime not in known:
        raise ValueError(f"runtime must be one of {tuple(known)}, got {runtime!r}")
    path = artifact.resolve(name_or_path)
    artifact.verify_manifest(path)
    card = artifact.read_card(path)
    task = tasks.get(card["task"])
    if runtime not in task.runtimes:
        raise ValueError(f"{card['name']} is a {task.name} model: it runs on {task.runtimes}, "
                         f"so runtime must be one of those, got {runtime!r} (its text handling needs TensorFlow)")
    model = task.predictor(tf.saved_model.load(str(path)), card, path)
    return model.use_onnxruntime(convert.cached_onnx(path)) if runtime == "onnxruntime" else model


def get_model(name: str, pretrained: bool = False):
    """The trainable Keras model; with pretrained=True, the committed artifact's weights."""
    spec = registry.get(name)
    model = spec.build()
    if pretrained:
        folder = artifact.committed_dir(name)
        weights = folder / "model.weights.h5"
        if not weights.is_file():
            raise artifact.ArtifactError(f"{name} has no trained weights ({weights} is missing); "
                                         f"train it with `make train-{name}`")
        artifact.verify_manifest(folder)
        model.load_weights(weights)
        tasks.get(spec.task).attach_assets(model, folder)
    return model


def evaluate(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Re-measure an artifact's test metrics on the real test split."""
    return load(name_or_path).evaluate(data_dir=data_dir)
