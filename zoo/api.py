"""The public API: zoo.load, zoo.get_model, zoo.evaluate."""
from __future__ import annotations

import os
from typing import Any

import tensorflow as tf

from zoo import artifact, convert, hub, registry, tasks


def load(name_or_path: str | os.PathLike, runtime: str = "tensorflow", trust: bool = False,
         version: int | None = None, precision: str = "float32") -> Any:
    """Load an exported artifact by registry name ("cnn_mnist", "cnn_mnist@1" or version=) or
    folder path; an ImageClassifier or a LanguageModel. A name resolves through zoo.hub
    ($ZOO_MODELS_DIR, this checkout, the cache, a download from $ZOO_MODELS_URL) and its
    manifest must hash to the digest this package pins; a folder path is the caller's own and is
    not pinned. Before anything runs: the manifest is verified (every file's sha256, only
    regular files, the required ones present), the card is checked (a name loaded by registry
    name must be that entry's), and saved_model.pb's operations are checked against the zoo's
    allowlist (zoo.artifact.ALLOWED_OPS), since loading a SavedModel runs its graph; trust=True
    skips only that last check (here and before converting for runtime=), for a folder whose
    origin you trust.

    runtime="onnxruntime" or "litert" (image models) runs `predict` on an ONNX or TFLite
    conversion of the artifact, made on first use and cached (zoo.convert.converted_dir), checked
    against the SavedModel's outputs each time it is loaded: the same outputs with less per-call
    overhead. precision="int8" predicts through an int8 file (both runtimes; calibrated on
    training images, so its first conversion needs the training split: $ZOO_DATA_DIR or a tfds
    download, or `make export-onnx-NAME QUANTIZE=int8 DATA_DIR=...` ahead), "int8-dynamic"
    through int8 weights alone (litert; no data needed); see zoo.convert.FORMATS.
    """
    known = sorted({name for task in tasks.TASKS.values() for name in task.runtimes})
    if runtime not in known:
        raise ValueError(f"runtime must be one of {tuple(known)}, got {runtime!r}")
    if precision not in convert.PRECISIONS:
        raise ValueError(f"precision must be one of {convert.PRECISIONS}, got {precision!r}")
    if runtime == "tensorflow" and precision != "float32":
        raise ValueError(f"precision={precision!r} runs on a converted file: pass runtime='onnxruntime' or 'litert'")
    if runtime != "tensorflow":
        convert.format_for(convert.RUNTIME_FILE_TYPES[runtime], precision)  # offered? (before any loading)
    if not isinstance(trust, bool):
        raise TypeError(f"trust must be True or False, got {trust!r}")
    path = hub.resolve(name_or_path, version)  # a name: verified and checked against its pin
    if not hub.is_model_name(name_or_path):
        artifact.verify_manifest(path)
    card = artifact.read_card(path)
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
    return model if runtime == "tensorflow" else convert.use_runtime(model, runtime, precision, trust)


def get_model(name: str, pretrained: bool = False, version: int | None = None):
    """The trainable Keras model; with pretrained=True, the published artifact's weights (the
    artifact found by name as zoo.load finds it, pinned; "name@version" or version= selects one)."""
    base, named_version = hub.split_name(name) if isinstance(name, str) else (name, None)
    spec = registry.get(base)
    model = spec.build()
    if pretrained:
        folder = hub.locate(spec.name, named_version if named_version is not None else version)
        weights = folder / "model.weights.h5"
        model.load_weights(weights)
        tasks.get(spec.task).attach_assets(model, folder)
    return model


def evaluate(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict:
    """Re-measure an artifact's test metrics on the real test split."""
    return load(name_or_path).evaluate(data_dir=data_dir)
