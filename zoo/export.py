"""Write an artifact: SavedModel with named signatures, weights, card, README, manifest.

Everything is written into a temporary folder beside the destination and renamed into
place only when complete, so a crash never leaves a half-written artifact.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from zoo.manifest import write_manifest
from zoo.registry import ModelSpec


class ExportError(RuntimeError):
    """Writing an artifact failed; nothing was half-written."""


def image_archive(model: keras.Model, spec: ModelSpec) -> keras.export.ExportArchive:
    """serving_default(image uint8[N, H, W, C]) -> scores, class_id, and probabilities
    and/or distance as the spec says."""
    height, width, channels = model.input_shape[1:]
    archive = keras.export.ExportArchive()
    # No archive.track(model): the endpoint's captured variables are saved once on their own;
    # tracking the model too would store every weight a second time (as Keras variables).
    # kernel [D, K]: one hyperplane per class; f(x)/||w_k|| is x's signed distance to it.
    kernel = model.get_layer("scores").kernel if spec.hyperplane_distance else None

    @tf.function(input_signature=[tf.TensorSpec([None, height, width, channels], tf.uint8, name="image")],
                 autograph=False)
    def serve(image):
        scores = tf.cast(model(image, training=False), tf.float32)
        outputs = {"scores": scores, "class_id": tf.argmax(scores, axis=-1, output_type=tf.int64)}
        if spec.probabilistic:
            outputs["probabilities"] = tf.nn.softmax(scores, axis=-1)
        if kernel is not None:
            outputs["distance"] = scores / tf.norm(tf.convert_to_tensor(kernel), axis=0)
        return outputs

    archive.add_endpoint("serving_default", serve)
    return archive


def export(model: keras.Model, spec: ModelSpec, card: dict, destination: Path | None = None,
           extra_files: dict[str, bytes] | None = None) -> Path:
    """Export `model` to `destination` (default exported_models/<name>/) atomically."""
    destination = Path(destination or spec.export_dir)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".tmp-{destination.name}-", dir=destination.parent))
    except OSError as error:
        raise ExportError(f"could not create a folder beside {destination}: {error}") from error
    try:
        if spec.task == "image":
            archive = image_archive(model, spec)
        else:
            from zoo.models.language import language_archive  # the text-in-graph signatures
            archive = language_archive(model, spec, staging)
        archive.write_out(str(staging), verbose=False)
        save_weights_only(model, staging / "model.weights.h5")
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        (staging / "model_card.json").write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
        from zoo.card import write_card_readme  # matplotlib only when exporting
        write_card_readme(staging, card)
        write_manifest(staging)
        replace_directory(staging, destination)
    except OSError as error:  # disk full, permissions: say where, keep the old artifact
        shutil.rmtree(staging, ignore_errors=True)
        raise ExportError(f"could not write the {spec.name} artifact to {destination}: {error}; "
                          "the previous artifact, if any, is unchanged") from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return destination


def save_weights_only(model: keras.Model, path: Path) -> None:
    """model.weights.h5 without the optimizer's slots (Keras saves them once compiled):
    what get_model(pretrained=True) needs, at a third of the size for Adam."""
    optimizer = getattr(model, "optimizer", None)
    model.optimizer = None
    try:
        model.save_weights(path)
    finally:
        model.optimizer = optimizer


def replace_directory(new: Path, destination: Path) -> None:
    """Swap `new` into `destination`; the old artifact is kept until the new one is in place."""
    previous = destination.parent / f".old-{destination.name}"
    restore_interrupted(destination)
    if destination.exists():
        os.replace(destination, previous)
    try:
        os.replace(new, destination)
    except BaseException:
        if previous.exists():
            os.replace(previous, destination)
        raise
    shutil.rmtree(previous, ignore_errors=True)


def restore_interrupted(destination: Path) -> None:
    """After a crash between the two renames, put the previous artifact back."""
    previous = destination.parent / f".old-{destination.name}"
    if previous.exists() and not destination.exists():
        os.replace(previous, destination)


def signature_doc(spec: ModelSpec, model: keras.Model) -> dict:
    """Human-readable description of the artifact's signatures, for the model card."""
    if spec.task != "image":
        from zoo.models.language import language_signature_doc
        return language_signature_doc(spec, model)
    height, width, channels = model.input_shape[1:]
    classes = model.output_shape[-1]
    outputs = {"scores": f"float32[N, {classes}] (pre-softmax decision values f(x))",
               "class_id": "int64[N]"}
    if spec.probabilistic:
        outputs["probabilities"] = f"float32[N, {classes}] (softmax of scores)"
    if spec.hyperplane_distance:
        outputs["distance"] = f"float32[N, {classes}] (f(x)/||w|| per class, in scaled-pixel space)"
    return {"serving_default": {"inputs": {"image": f"uint8[N, {height}, {width}, {channels}]"},
                                "outputs": outputs}}
