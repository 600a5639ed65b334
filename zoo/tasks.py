"""The one place that maps a task ("image", "language") to its serving code; everything else
asks `get(task)` instead of switching on the task's name."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from zoo.artifact import ArtifactError
from zoo.serving import image, language


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    predictor: Callable[..., Any]  # (saved_model, card, folder) -> what zoo.load returns
    archive: Callable[..., Any]  # (keras model, spec, staging folder) -> keras.export.ExportArchive
    signature_doc: Callable[..., dict]  # (spec, keras model) -> the card's `signatures`
    preprocessing_doc: Callable[..., str]  # (spec) -> the card's `preprocessing`
    attach_assets: Callable[..., Any]  # (keras model, artifact folder): what weights don't hold
    signatures: tuple[str, ...]  # the artifact's signature names
    runtimes: tuple[str, ...]  # zoo.load's runtime= choices: "onnxruntime" and "litert" run conversions
    formats: tuple[str, ...]  # what the artifact converts to (zoo.convert.FORMATS)
    tflite_signature: str  # the signature a TFLite conversion holds
    gallery_widget: str  # the gallery page's live widget (zoo/serving/gallery/<widget>.html)


TASKS = {task.name: task for task in (
    Task("image", image.ImageClassifier, image.archive, image.signature_doc, image.preprocessing_doc,
         image.attach_assets, signatures=("serving_default",), runtimes=("tensorflow", "onnxruntime", "litert"),
         formats=("onnx", "onnx_int8", "tflite", "tflite_int8_dynamic", "tflite_int8"),
         tflite_signature="serving_default", gallery_widget="image_widget"),
    # Text handling needs TensorFlow's string ops: only `step` converts (to TFLite, float32 and
    # dynamic-range int8: its inputs are token ids and states, nothing to calibrate on images).
    Task("language", language.LanguageModel, language.archive, language.signature_doc,
         language.preprocessing_doc, language.attach_assets,
         signatures=("next_word", "serving_default", "score", "step"), runtimes=("tensorflow",),
         formats=("tflite", "tflite_int8_dynamic"),
         tflite_signature="step", gallery_widget="text_widget"),
)}


def get(name: str) -> Task:
    """The task named in a card or a ModelSpec; ArtifactError for an unknown one."""
    if name not in TASKS:
        raise ArtifactError(f"unknown task {name!r}; the zoo serves {tuple(TASKS)}")
    return TASKS[name]
