"""Convert an artifact folder to ONNX (tf2onnx) or TFLite (LiteRT), in float32 or int8, cache the
files, and run them: what `zoo.load(name, runtime=..., precision=...)` predicts through.

Converters read nothing but the artifact's files (its manifest verified and its graph's
operations checked first, as zoo.load checks them: converting loads the SavedModel, which runs
its graph) and, for the calibrated int8 formats, the uint8 images the caller passes;
`use_runtime` draws those from the training split (zoo.serving.image.training_sample, the `data`
extra), so zoo imports no data pipeline itself.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import tensorflow as tf

from zoo import artifact, files, tasks
from zoo.serving import image

ONNX_OPSET = 17
# Converted float32 outputs agree with the SavedModel's to this fraction of each output's scale
# (max(1, largest magnitude in the batch)): float32 kernels sum in other orders, so the error
# grows with the values (ONNX logits of ~68 differ by ~1e-4).
PARITY_TOLERANCE = 1e-4
# A calibrated int8 conversion is cached only when its class ids equal the SavedModel's on at
# least this fraction of CHECK_IMAGES training images it was not calibrated on.
INT8_AGREEMENT = 0.98
CALIBRATION_IMAGES = 500  # training images (drawn with seed 0) the int8 activation ranges come from
CHECK_IMAGES = 500  # further training images of the same draw, for INT8_AGREEMENT
PROBE_IMAGES = 16  # generated images (probe_images) each load of a cached conversion is checked on
PROBE_GRID = 8  # each probe image: random colours on an 8 x 8 grid, smoothly up-sampled
# An int8 file passes the probe when its class ids equal the SavedModel's on this fraction of the
# probe images and its scores correlate with the SavedModel's at least this much. Not a bound on
# the difference: int8 files clip scores beyond their calibrated ranges while classes and the
# scores' rise and fall stay; another model's file agrees on neither (a class in ten by chance,
# no correlation).
INT8_PROBE_AGREEMENT = 0.5
INT8_SCORE_CORRELATION = 0.5
FLOAT_OUTPUTS = ("scores", "probabilities", "distance")  # an image model's float outputs (those it has)
RUNTIME_FILE_TYPES = {"onnxruntime": "onnx", "litert": "tflite"}  # zoo.load's runtime -> file type


def available_cores() -> int:
    """The cores this process may run on (its affinity where the platform tells it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# LiteRT runs on one thread unless told; onnxruntime and TensorFlow use every core by default.
LITERT_THREADS = available_cores()


@dataclasses.dataclass(frozen=True)
class Format:
    """One converted form of an artifact (a task lists the ones it converts to: Task.formats)."""
    name: str  # the cache's file prefix and `make formats`' row name
    file_type: str  # "onnx" or "tflite" (the file's suffix)
    precision: str  # float32; int8 (weights and activations, calibrated); int8-dynamic (weights)
    description: str

    @property
    def calibrated(self) -> bool:
        """Needs representative images: its activations' int8 ranges are measured on them."""
        return self.precision == "int8"

    @property
    def runtime(self) -> str:
        return next(runtime for runtime, file_type in RUNTIME_FILE_TYPES.items() if file_type == self.file_type)


FORMATS = {format.name: format for format in (
    Format("onnx", "onnx", "float32", "ONNX float32 (tf2onnx)"),
    Format("onnx_int8", "onnx", "int8", "onnxruntime static quantization (QDQ): int8 weights per channel, int8 "
           "activations calibrated on training images"),
    Format("tflite", "tflite", "float32", "TFLite float32"),
    Format("tflite_int8_dynamic", "tflite", "int8-dynamic", "TFLite dynamic-range: int8 weights, float "
           "activations"),
    Format("tflite_int8", "tflite", "int8", "TFLite full-integer: int8 weights and activations calibrated on "
           "training images; uint8 image in and float outputs, as the SavedModel"),
)}
PRECISIONS = tuple(dict.fromkeys(format.precision for format in FORMATS.values()))  # float32, int8, int8-dynamic


def format_for(file_type: str, precision: str) -> Format:
    """The format of a file type ("onnx", "tflite") in a precision; ValueError naming those offered."""
    for candidate in FORMATS.values():
        if candidate.file_type == file_type and candidate.precision == precision:
            return candidate
    offered = ", ".join(f"{f.file_type} {f.precision}" for f in FORMATS.values())
    raise ValueError(f"no {file_type} conversion in precision {precision!r}; the zoo converts to {offered}")


def converted_dir() -> Path:
    """Where conversions go unless told otherwise: <cache>/converted (zoo.artifact.cache_dir)."""
    return artifact.cache_dir() / "converted"


def _verified(folder: str | os.PathLike, trust: bool = False) -> tuple[Path, dict]:
    """The folder and its card, once its manifest is verified and (unless trust) its graph's
    operations are checked, as zoo.load does before loading it."""
    folder = Path(folder)
    artifact.verify_manifest(folder)
    card = artifact.read_card(folder)
    if not trust:
        artifact.check_operations(folder)
    return folder, card


def convert(folder: str | os.PathLike, format: Format | str, output: str | os.PathLike | None = None,
            calibration: Iterable[np.ndarray] | None = None, trust: bool = False) -> Path:
    """Write an artifact in `format` (a Format or its name) to `output` (default:
    <converted_dir>/<name>/<format>.<file type>), whole or not at all. Image models convert
    serving_default, language models `step` (Task.tflite_signature); calibrated formats need
    `calibration`, uint8 image batches [B, H, W, C] from the training split. trust=True skips
    the operation check, as zoo.load(..., trust=True) does."""
    format = FORMATS[format] if isinstance(format, str) else format
    folder, card = _verified(folder, trust)
    task = tasks.get(card["task"])
    if format.name not in task.formats:
        raise ValueError(f"{card['name']} is a {task.name} model: it converts to {task.formats}, not {format.name}"
                         + (" (ONNX export covers image models; language models: TFLite of the step signature)"
                            if format.file_type == "onnx" else ""))
    if format.calibrated and calibration is None:
        raise ValueError(f"{format.name} is calibrated: pass calibration, uint8 image batches from the training split")
    output = Path(output or converted_dir() / card["name"] / f"{format.name}.{format.file_type}")
    batches = [np.asarray(batch) for batch in calibration] if calibration is not None else []
    with files.replacing(output) as partial:
        if format.file_type == "onnx":
            _write_onnx(folder, partial, format, batches)
        else:
            partial.write_bytes(_tflite_bytes(folder, task.tflite_signature, format, batches))
    return output


def to_onnx(folder: str | os.PathLike, output: str | os.PathLike | None = None, precision: str = "float32",
            calibration: Iterable[np.ndarray] | None = None) -> Path:
    """serving_default of an image artifact -> ONNX with the same named input (uint8 `image`)
    and outputs."""
    return convert(folder, format_for("onnx", precision), output, calibration)


def to_tflite(folder: str | os.PathLike, output: str | os.PathLike | None = None, precision: str = "float32",
              calibration: Iterable[np.ndarray] | None = None) -> Path:
    """Image models: serving_default; language models: the `step` signature (state in and out)."""
    return convert(folder, format_for("tflite", precision), output, calibration)


def _write_onnx(folder: Path, output: Path, format: Format, calibration: list[np.ndarray]) -> None:
    import tf2onnx  # optional dependency (extra `onnx`); slow to import

    saved_model = tf.saved_model.load(str(folder))  # held: the signature's variables live in it
    signature = saved_model.signatures["serving_default"]
    spec = signature.structured_input_signature[1]["image"]
    function = tf.function(lambda image: signature(image=image))
    with tempfile.TemporaryDirectory() as work:
        float_file = output if format.precision == "float32" else Path(work) / "float32.onnx"
        tf2onnx.convert.from_function(function, input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name="image")],
                                      opset=ONNX_OPSET, output_path=str(float_file))
        if format.precision == "float32":
            return
        from onnxruntime import quantization  # optional dependency (extra `onnx`)

        prepared = Path(work) / "prepared.onnx"  # shapes inferred and constants folded, as quantization wants
        quantization.quant_pre_process(str(float_file), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(str(prepared), str(output), _Batches(calibration),
                                     quant_format=quantization.QuantFormat.QDQ, per_channel=True,
                                     activation_type=quantization.QuantType.QInt8,
                                     weight_type=quantization.QuantType.QInt8)


class _Batches:
    """onnxruntime's CalibrationDataReader protocol over uint8 image batches."""

    def __init__(self, batches: list[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch}


def _tflite_bytes(folder: Path, signature: str, format: Format, calibration: list[np.ndarray]) -> bytes:
    converter = tf.lite.TFLiteConverter.from_saved_model(str(folder), signature_keys=[signature])
    if format.precision != "float32":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights
    if format.calibrated:  # and int8 activations, their ranges measured one image at a time
        converter.representative_dataset = lambda: ({"image": batch[index:index + 1]} for batch in calibration
                                                    for index in range(len(batch)))
    return converter.convert()


def open_runner(content: bytes, file_type: str, signature: str) -> Callable[..., dict[str, np.ndarray]]:
    """A converted file's signature as a function: named numpy inputs -> named numpy outputs.
    LiteRT interpreters are not thread-safe, so their calls take turns."""
    if file_type == "onnx":
        import onnxruntime  # optional dependency (extra `onnx`)

        session = onnxruntime.InferenceSession(content, providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        return lambda **inputs: dict(zip(names, session.run(names, inputs)))
    from ai_edge_litert.interpreter import Interpreter  # optional dependency (extra `tflite`)

    runner = Interpreter(model_content=content, num_threads=LITERT_THREADS).get_signature_runner(signature)
    lock = threading.Lock()

    def run(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        with lock:
            return runner(**inputs)
    return run


def _file_name(format: Format, key: str, digest: str) -> str:
    return f"{format.name}-{key}-{digest}.{format.file_type}"


def cached(folder: str | os.PathLike, format: Format | str,
           calibration: Callable[[], Iterable[np.ndarray]] | None = None,
           accept: Callable[[bytes], None] | None = None, rebuild: bool = False, trust: bool = False) -> Path:
    """The conversion of an artifact into `format`, made once per artifact content: cached as
    <converted_dir>/<name>/<format>-<manifest sha256[:16]>-<the file's own sha256>.<type>, so a
    truncated or altered file fails its own digest and is made again (rebuild=True: always), and
    a file made from other artifact content is never picked. `calibration()` gives the calibrated
    formats' images, called only when a conversion is made; `accept(content)` may refuse a new
    conversion (raise) before it is cached. Written whole (zoo.files): concurrent loads each end
    with a whole file."""
    format = FORMATS[format] if isinstance(format, str) else format
    folder, card = _verified(folder, trust)  # card["name"] matches NAME_PATTERN: a safe folder name
    key = artifact.manifest_digest(folder)[:16]
    directory = converted_dir() / card["name"]
    if not rebuild:
        for candidate in sorted(directory.glob(f"{format.name}-{key}-*.{format.file_type}")):
            if candidate.is_file() and candidate.name == _file_name(format, key, artifact.sha256_file(candidate)):
                return candidate
            candidate.unlink(missing_ok=True)  # a damaged conversion of ours: made again below
    with tempfile.TemporaryDirectory() as work:
        made = convert(folder, format, Path(work) / f"{format.name}.{format.file_type}",
                       calibration() if format.calibrated and calibration else None, trust)
        content = made.read_bytes()
    if accept is not None:
        accept(content)
    final = directory / _file_name(format, key, artifact.sha256_bytes(content))
    files.write_atomically(final, content)
    return final


def verified_content(path: Path) -> bytes | None:
    """A cached file's bytes if they still hash to the digest its name records, else None: the
    bytes that are run are the bytes that were checked."""
    content = path.read_bytes()
    return content if path.stem.rsplit("-", 1)[-1] == artifact.sha256_bytes(content) else None


def calibration_images(card: dict, data_dir: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(calibration, check): CALIBRATION_IMAGES and CHECK_IMAGES uint8 images of the artifact's
    training split, one seeded draw (the same every time)."""
    sample = image.training_sample(card["dataset"]["name"], CALIBRATION_IMAGES + CHECK_IMAGES, data_dir)
    return sample[:CALIBRATION_IMAGES], sample[CALIBRATION_IMAGES:]


def batches(images: np.ndarray, size: int = 50) -> list[np.ndarray]:
    return [images[start:start + size] for start in range(0, len(images), size)]


def probe_images(shape: tuple[int, int, int]) -> np.ndarray:
    """PROBE_IMAGES uint8 images [N, H, W, C], the same every time: random colours on a PROBE_GRID
    square grid, up-sampled (bicubic). Smooth, as photographs and digits are: on pixel noise an
    int8 file's activations leave the ranges calibrated on real images, and some int8 files then
    give other classes than the SavedModel on most images."""
    height, width, channels = shape
    grid = np.random.default_rng(0).uniform(0, 255, (PROBE_IMAGES, PROBE_GRID, PROBE_GRID, channels))
    smooth = tf.image.resize(grid.astype(np.float32), (height, width), method="bicubic").numpy()
    return np.clip(np.round(smooth), 0, 255).astype(np.uint8)


def reference_outputs(model: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """The SavedModel's own serving_default on uint8 `images` [N, H, W, C], 100 a call: what a
    conversion is checked against, whichever runtime `model` predicts through now."""
    signature = model.serving_signatures()["serving_default"]
    chunks = [{key: value.numpy() for key, value in signature(image=tf.constant(batch)).items()}
              for batch in batches(images, 100)]
    return {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}


def class_agreement(run: Callable[..., dict], model: Any, images: np.ndarray) -> float:
    """Fraction of `images` whose class id through `run` equals the SavedModel's."""
    expected = reference_outputs(model, images)["class_id"]
    found = np.concatenate([run(image=batch)["class_id"] for batch in batches(images, 100)])
    return float(np.mean(found == expected))


def checked(model: Any, format: Format, data_dir: str | os.PathLike | None = None,
            trust: bool = False) -> tuple[Path, Callable]:
    """An image model's cached conversion and a runner of its serving_default, checked before
    use: its digest (see `cached`), then a probe batch of generated images against the
    SavedModel's signature (float32: `outputs_agree`; int8: `int8_outputs_agree`). A calibrated
    int8 conversion is made from the training split (`calibration_images`) and kept only when
    its class ids equal the SavedModel's on INT8_AGREEMENT of the check images. A cached file
    that fails is deleted and made again, and refused if it still fails."""
    sample = functools.cache(lambda: calibration_images(model.card, data_dir))

    def accept(content: bytes) -> None:
        if format.calibrated:
            agreement = class_agreement(open_runner(content, format.file_type, "serving_default"), model, sample()[1])
            if agreement < INT8_AGREEMENT:
                raise artifact.ArtifactError(
                    f"{model.name}: its {format.name} conversion gives the SavedModel's class on {agreement:.1%} of "
                    f"{CHECK_IMAGES} training images, fewer than {INT8_AGREEMENT:.0%}; use precision='float32'")

    probe = probe_images(model.input_shape)
    expected = reference_outputs(model, probe)
    agree = outputs_agree if format.precision == "float32" else int8_outputs_agree
    for rebuild in (False, True):
        path = cached(model.path, format, lambda: batches(sample()[0]), accept, rebuild=rebuild, trust=trust)
        content = verified_content(path)
        if content is not None:
            run = _runner_if(lambda outputs: agree(outputs, expected), content, format.file_type, probe)
            if run is not None:
                return path, run
        path.unlink(missing_ok=True)  # ours (cached() names it in the cache): never picked again
    raise artifact.ArtifactError(f"{model.path}: its {format.name} conversion does not reproduce the SavedModel's "
                                 "outputs on a probe batch (the file is deleted); use runtime='tensorflow'")


def _runner_if(agree: Callable[[dict], bool], content: bytes, file_type: str,
               probe: np.ndarray) -> Callable[..., dict] | None:
    """A runner of the file's serving_default if its outputs on `probe` pass `agree`; None if they
    fail, or if the runtime cannot run the file (a damaged or planted file, whatever its digest)."""
    try:
        run = open_runner(content, file_type, "serving_default")
        outputs = run(image=probe)
    except ImportError:  # the runtime is not installed: nothing to do with this file
        raise
    except Exception:  # onnxruntime and LiteRT each raise their own kinds for a file they refuse
        return None
    return run if agree(outputs) else None


def use_runtime(model: Any, runtime: str, precision: str = "float32", trust: bool = False) -> Any:
    """Switch a loaded image model (ImageClassifier) to `runtime` ("onnxruntime", "litert") in
    `precision`, on its checked, cached conversion (see `checked`)."""
    if runtime not in RUNTIME_FILE_TYPES:
        raise ValueError(f"runtime must be one of {tuple(RUNTIME_FILE_TYPES)} to run a converted file, got {runtime!r}")
    format = format_for(RUNTIME_FILE_TYPES[runtime], precision)
    _, run = checked(model, format, trust=trust)
    return model.use_runtime(runtime, precision, lambda batch: run(image=batch))


def export_file(model: Any, format: Format, output: str | os.PathLike | None = None,
                data_dir: str | os.PathLike | None = None) -> Path:
    """`python -m zoo convert`: the cached conversion (checked as zoo.load checks it where
    zoo.load runs the model on that runtime; a language model's `step` as converted), copied to
    `output` when given (whole or not at all)."""
    if format.runtime in tasks.get(model.card["task"]).runtimes:
        path, _ = checked(model, format, data_dir)
    else:
        path = cached(model.path, format)
    if output is None:
        return path
    content = verified_content(path)
    if content is None:
        raise artifact.ArtifactError(f"{path}: changed since it was checked (its sha256 no longer matches its name)")
    files.write_atomically(output, content)
    return Path(output)


def outputs_agree(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    """Class ids equal, and each float output within PARITY_TOLERANCE of its own scale."""
    if not same_outputs(outputs, expected) or not np.array_equal(outputs["class_id"], expected["class_id"]):
        return False
    for key in FLOAT_OUTPUTS:
        reference = expected.get(key)
        if reference is not None:
            scale = max(1.0, float(np.abs(reference).max()))
            if not np.all(np.abs(outputs[key] - reference) <= PARITY_TOLERANCE * scale):
                return False
    return True


def int8_outputs_agree(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    """Class ids equal on INT8_PROBE_AGREEMENT of the images, and scores that rise and fall with
    the SavedModel's (Pearson correlation >= INT8_SCORE_CORRELATION)."""
    if not same_outputs(outputs, expected):
        return False
    if np.mean(outputs["class_id"] == expected["class_id"]) < INT8_PROBE_AGREEMENT:
        return False
    found, reference = (np.asarray(scores, np.float64).ravel() for scores in (outputs["scores"], expected["scores"]))
    if np.ptp(found) == 0 or np.ptp(reference) == 0:  # constant scores: no correlation to measure
        return bool(np.array_equal(found, reference))
    return bool(np.corrcoef(found, reference)[0, 1] >= INT8_SCORE_CORRELATION)


def same_outputs(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> bool:
    """The SavedModel's outputs (names and shapes), class ids integers in range, the other
    outputs floats, finite. Class ids are compared by kind, not exact dtype: runtimes may
    narrow int64 to int32."""
    class_id = np.asarray(outputs.get("class_id"))  # a missing output: an object array, refused below
    if class_id.shape != expected["class_id"].shape or class_id.dtype.kind not in "iu":
        return False
    for key in FLOAT_OUTPUTS:
        reference = expected.get(key)
        if reference is None:
            continue
        found = np.asarray(outputs.get(key))
        if found.shape != reference.shape or found.dtype.kind != "f" or not np.all(np.isfinite(found)):
            return False
    return bool(np.all((0 <= class_id) & (class_id < expected["scores"].shape[-1])))
