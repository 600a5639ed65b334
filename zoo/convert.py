"""Convert an artifact folder's signatures to ONNX (tf2onnx) or TFLite (LiteRT runtime).

Converters take an artifact folder (its manifest is verified first) and read nothing but its
files; `zoo.load(..., runtime="onnxruntime")` uses `cached_onnx`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from zoo import artifact, tasks

ONNX_OPSET = 17
# Converted outputs agree with the SavedModel's to this fraction of each output's scale
# (max(1, largest magnitude in the batch)): float32 kernels sum in other orders, so the error
# grows with the values (ONNX logits of ~68 differ by ~1e-4).
PARITY_TOLERANCE = 1e-4
PROBE_IMAGES = 8  # generated images each load of a cached conversion is checked on


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


def cached_onnx(folder: str | os.PathLike, rebuild: bool = False) -> Path:
    """The ONNX conversion of an image artifact, made once per artifact content: cached as
    <converted_dir>/<name>/model-<manifest sha256[:16]>-<the file's own sha256>.onnx, so a
    truncated or altered file fails its own digest and is converted again (rebuild=True: always).
    Written under a temporary name unique to the call, then renamed: concurrent loads each end
    with a whole file."""
    folder, card = _verified(folder)  # card["name"] matches NAME_PATTERN: a safe folder name
    key = artifact.manifest_digest(folder)[:16]
    directory = converted_dir() / card["name"]
    if not rebuild:
        for candidate in sorted(directory.glob(f"model-{key}-*.onnx")):
            if candidate.is_file() and candidate.name == f"model-{key}-{artifact.sha256_file(candidate)}.onnx":
                return candidate
            candidate.unlink(missing_ok=True)  # a damaged conversion of ours: made again below
    directory.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=".partial-", suffix=".onnx", dir=directory)
    os.close(handle)
    try:
        to_onnx(folder, partial)
        final = directory / f"model-{key}-{artifact.sha256_file(partial)}.onnx"
        os.replace(partial, final)
    finally:
        Path(partial).unlink(missing_ok=True)
    return final


def use_onnxruntime(model: Any) -> Any:
    """Switch a loaded image model (ImageClassifier) to onnxruntime, on its cached conversion,
    once the conversion has given the SavedModel's outputs on a probe batch (class ids equal,
    every output within PARITY_TOLERANCE of its scale); a conversion that does not is made again,
    and refused if it still differs."""
    import onnxruntime  # optional dependency (extra `onnx`)

    probe = np.random.default_rng(0).integers(0, 256, (PROBE_IMAGES, *model.input_shape), dtype=np.uint8)
    expected = model.predict(probe)
    for rebuild in (False, True):
        onnx_file = cached_onnx(model.path, rebuild=rebuild)
        session = onnxruntime.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        outputs = dict(zip(names, session.run(names, {"image": probe})))
        if outputs_agree(outputs, expected):
            return model.use_onnxruntime(onnx_file)
    raise artifact.ArtifactError(f"{model.path}: its ONNX conversion ({onnx_file}) does not reproduce the "
                                 "SavedModel's outputs on a probe batch; use runtime='tensorflow'")


def outputs_agree(outputs: dict[str, np.ndarray], expected: Any) -> bool:
    """Class ids equal, and each float output within PARITY_TOLERANCE of its own scale."""
    if "class_id" not in outputs or not np.array_equal(outputs["class_id"], expected.class_id):
        return False
    for key in ("scores", "probabilities", "distance"):
        reference = getattr(expected, key)
        if reference is None:
            continue
        if key not in outputs or np.shape(outputs[key]) != reference.shape:
            return False
        scale = max(1.0, float(np.abs(reference).max()))
        if not np.all(np.abs(outputs[key] - reference) <= PARITY_TOLERANCE * scale):
            return False
    return True


def to_tflite(folder: str | os.PathLike, output: str | os.PathLike | None = None) -> Path:
    """Image models: serving_default; language models: the `step` signature (state in and out)."""
    folder, card = _verified(folder)
    signature = tasks.get(card["task"]).tflite_signature
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[signature])
    output = Path(output or converted_dir() / card["name"] / "model.tflite")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(converter.convert())
    return output
