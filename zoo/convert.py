"""Convert an artifact folder's signatures to ONNX (tf2onnx) or TFLite (LiteRT runtime).

Converters take an artifact folder (its manifest is verified first) and read nothing but its
files; `zoo.load(..., runtime="onnxruntime")` uses `cached_onnx`.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import tensorflow as tf

from zoo import artifact, tasks

ONNX_OPSET = 17


def converted_dir() -> Path:
    """Where conversions go unless told otherwise: <cache>/converted (zoo.artifact.cache_dir)."""
    return artifact.cache_dir() / "converted"


def _verified(folder: str | os.PathLike) -> tuple[Path, dict]:
    folder = Path(folder)
    artifact.verify_manifest(folder)
    return folder, artifact.read_card(folder)


def to_onnx(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """serving_default of an image artifact -> ONNX with the same named input (uint8 `image`)
    and outputs."""
    import tf2onnx  # optional dependency (extra `onnx`); slow to import

    folder, card = _verified(folder)
    if "onnxruntime" not in tasks.get(card["task"]).runtimes:
        raise ValueError(f"{card['name']} is a {card['task']} model; ONNX export covers image models "
                         "(language models: TFLite of the step signature, see to_tflite)")
    saved_model = tf.saved_model.load(str(folder))  # held: the signature's variables live in it
    signature = saved_model.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    output = Path(output or converted_dir() / card["name"] / "model.onnx")
    output.parent.mkdir(parents=True, exist_ok=True)
    function = tf.function(lambda image: signature(image=image))
    tf2onnx.convert.from_function(function, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="image")],
                                  opset=ONNX_OPSET, output_path=str(output))
    return output


def cached_onnx(folder: str | os.PathLike) -> Path:
    """The ONNX conversion of an image artifact, made once per artifact content (keyed by its
    manifest's sha256) in the cache; written to a temporary name, then renamed."""
    folder, card = _verified(folder)
    digest = hashlib.sha256((folder / artifact.MANIFEST_NAME).read_bytes()).hexdigest()[:16]
    path = converted_dir() / card["name"] / f"model-{digest}.onnx"
    if not path.is_file():
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        to_onnx(folder, partial)
        os.replace(partial, path)
    return path


def to_tflite(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Image models: serving_default; language models: the `step` signature (state in and out)."""
    folder, card = _verified(folder)
    signature = tasks.get(card["task"]).tflite_signature
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[signature])
    output = Path(output or converted_dir() / card["name"] / "model.tflite")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(converter.convert())
    return output
