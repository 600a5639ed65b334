"""Convert an artifact's serving signature to ONNX (tf2onnx) or TFLite (LiteRT runtime)."""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf

from zoo.inference import ImageClassifier, load
from zoo.registry import REPO_ROOT

CONVERTED_ROOT = REPO_ROOT / "converted"  # not committed: rebuilt by make export-onnx-/-tflite-
ONNX_OPSET = 17


def _image_classifier(name_path_or_model):
    """A loaded image artifact: a name or folder is loaded (verifying its manifest first); an
    already loaded ImageClassifier is used as it is."""
    model = name_path_or_model if isinstance(name_path_or_model, ImageClassifier) else load(name_path_or_model)
    if model.card["task"] != "image":
        raise ValueError(f"{model.name} is a {model.card['task']} model; ONNX export covers image models "
                         "(language models: TFLite of the step signature, see to_tflite)")
    return model


def to_onnx(name_or_path, output: str | os.PathLike | None = None) -> Path:
    """serving_default -> ONNX with the same named input (uint8 `image`) and outputs; takes a
    name, an artifact folder or a model from zoo.load."""
    import tf2onnx

    model = _image_classifier(name_or_path)
    signature = model._signature
    spec = signature.structured_input_signature[1]["image"]
    output = Path(output or CONVERTED_ROOT / model.name / "model.onnx")
    output.parent.mkdir(parents=True, exist_ok=True)
    function = tf.function(lambda image: signature(image=image))
    tf2onnx.convert.from_function(function, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="image")],
                                  opset=ONNX_OPSET, output_path=str(output))
    return output


def cached_onnx(model) -> Path:
    """The ONNX conversion of a loaded image artifact, made once per artifact content (keyed by
    its manifest's sha256) under converted/<name>/; written to a temporary name, then renamed."""
    import hashlib
    from zoo.manifest import MANIFEST_NAME
    digest = hashlib.sha256((Path(model.path) / MANIFEST_NAME).read_bytes()).hexdigest()[:16]
    path = CONVERTED_ROOT / model.name / f"model-{digest}.onnx"
    if not path.is_file():
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        to_onnx(model, partial)
        os.replace(partial, path)
    return path


def to_tflite(name_or_path, output: str | os.PathLike | None = None) -> Path:
    """Image models: serving_default; language models: the `step` signature (state in and out)."""
    model = load(name_or_path)
    key = "serving_default" if model.card["task"] == "image" else "step"
    converter = tf.lite.TFLiteConverter.from_saved_model(str(model.path), signature_keys=[key])
    output = Path(output or CONVERTED_ROOT / model.name / "model.tflite")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(converter.convert())
    return output
