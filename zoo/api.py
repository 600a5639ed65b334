"""The public API: zoo.load, zoo.get_model, zoo.evaluate."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from zoo import artifact, convert, registry, tasks


def load(name_or_path: str | os.PathLike, runtime: str = "tensorflow", trust: bool = False) -> Any:
    """Load an exported artifact by registry name or folder path; an ImageClassifier or a
    LanguageModel. Before anything runs: the manifest is verified (every file's sha256, only
    regular files, the required ones present), the card is checked (a name loaded by registry
    name must be that entry's), and saved_model.pb's operations are checked against the zoo's
    allowlist (zoo.artifact.ALLOWED_OPS), since loading a SavedModel runs its graph; trust=True
    skips only that last check, for a folder whose origin you trust.

    runtime="onnxruntime" (image models) runs `predict` on an ONNX conversion of the artifact,
    made on first use and cached (zoo.convert.converted_dir), checked against the SavedModel's
    outputs each time it is loaded: the same outputs with less per-call overhead.
    """
    known = sorted({name for task in tasks.TASKS.values() for name in task.runtimes})
    if runtime not in known:
        raise ValueError(f"runtime must be one of {tuple(known)}, got {runtime!r}")
    if not isinstance(trust, bool):
        raise TypeError(f"trust must be True or False, got {trust!r}")
    path = artifact.resolve(name_or_path)
    artifact.verify_manifest(path)
    card = artifact.read_card(path)
    if os.fspath(name_or_path) in registry.list_models() and card["name"] != name_or_path:
        raise artifact.ArtifactError(f"{path}: its card names model {card['name']!r}, "
                                     f"but it is loaded as {name_or_path!r}")
    task = tasks.get(card["task"])
    if runtime not in task.runtimes:
        raise ValueError(f"{card['name']} is a {task.name} model: it runs on {task.runtimes}, "
                         f"so runtime must be one of those, got {runtime!r} (its text handling needs TensorFlow)")
    if not trust:
        artifact.check_operations(path)
    saved_model = tf.saved_model.load(str(path))
    missing = sorted(set(task.signatures) - set(saved_model.signatures))
    if missing:
        raise artifact.ArtifactError(f"{path}: a {task.name} artifact needs the signatures {list(task.signatures)}; "
                                     f"{missing} missing (its card's task {task.name!r} does not match its graph)")
    model = task.predictor(saved_model, card, path)
    return convert.use_onnxruntime(model) if runtime == "onnxruntime" else model


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
