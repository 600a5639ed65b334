"""Predictors over plain tf.saved_model.load: validate input, call the named signature."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np

from zoo.image_input import to_uint8_batch
from zoo.manifest import ArtifactError, verify_manifest
from zoo.registry import EXPORT_ROOT

MAX_BATCH = 256  # images per signature call; larger inputs are processed in chunks


def resolve_artifact(name_or_path: str | os.PathLike) -> Path:
    """A registry name -> exported_models/<name>; anything else is taken as a folder path."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"expected a model name or artifact folder path, got {type(name_or_path).__name__}")
    text = os.fspath(name_or_path)
    from zoo.registry import list_models
    if text in list_models():
        path = EXPORT_ROOT / text
        if not path.is_dir():
            raise ArtifactError(f"model {text!r} is registered but not trained: no artifact at {path}; "
                                f"run `make train-{text}`")
        return path
    path = Path(text)
    if not path.is_dir():
        raise ArtifactError(f"{text!r} is neither a registered model ({', '.join(list_models())}) "
                            "nor an artifact folder")
    return path


def read_card(path: Path) -> dict:
    try:
        card = json.loads((path / "model_card.json").read_text())
        card["task"], card["name"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ArtifactError(f"{path}: not a zoo artifact (model_card.json unreadable or incomplete: "
                            f"{error})") from None
    return card


RUNTIMES = ("tensorflow", "onnxruntime")


def load(name_or_path: str | os.PathLike, runtime: str = "tensorflow"):
    """Verify the manifest, read the card, tf.saved_model.load; an ImageClassifier or LanguageModel.

    runtime="onnxruntime" (image models) runs `predict` on an ONNX conversion of the artifact,
    made on first use and cached under converted/: the same outputs with less per-call overhead.
    """
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")
    path = resolve_artifact(name_or_path)
    verify_manifest(path)
    card = read_card(path)
    task = card["task"]
    if task not in ("image", "language"):
        raise ArtifactError(f"{path}: unknown task {task!r} in model_card.json")
    if task == "language" and runtime != "tensorflow":
        raise ValueError(f"{card['name']} is a language model: its text handling needs TensorFlow, "
                         f"so runtime must be 'tensorflow', got {runtime!r}")
    import tensorflow as tf
    saved_model = tf.saved_model.load(str(path))
    if task == "language":
        from zoo.text import LanguageModel
        return LanguageModel(saved_model, card, path)
    classifier = ImageClassifier(saved_model, card, path)
    return classifier.use_onnxruntime() if runtime == "onnxruntime" else classifier


@dataclasses.dataclass(frozen=True)
class ImagePrediction:
    class_id: int
    label: str
    probability: float | None  # of the predicted class; None for non-probabilistic models
    probabilities: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class ImagePredictions:
    """Batch results: arrays over N images; iterate for one ImagePrediction per image."""
    class_id: np.ndarray  # int64 [N]
    label: list[str]
    scores: np.ndarray  # float32 [N, K]
    probabilities: np.ndarray | None  # float32 [N, K]
    distance: np.ndarray | None  # float32 [N, K], linear models only

    def __len__(self) -> int:
        return len(self.class_id)

    def __getitem__(self, index: int) -> ImagePrediction:
        probabilities = None if self.probabilities is None else self.probabilities[index]
        return ImagePrediction(int(self.class_id[index]), self.label[index],
                               None if probabilities is None else float(probabilities[self.class_id[index]]),
                               probabilities)

    def __iter__(self) -> Iterator[ImagePrediction]:
        return (self[index] for index in range(len(self)))


class ImageClassifier:
    """zoo.load("cnn_mnist"): predict(images) on uint8 or [0, 1] float pixels, paths or PIL images."""

    def __init__(self, saved_model, card: dict, path: Path):
        self.card = card
        self.path = path
        self.name = card["name"]
        self.label_names = list(card["label_names"])
        self._signature = saved_model.signatures["serving_default"]
        self._saved_model = saved_model  # keeps the signature's variables alive
        spec = self._signature.structured_input_signature[1]["image"]
        self.input_shape = tuple(int(d) for d in spec.shape[1:])  # (H, W, C)
        self.runtime = "tensorflow"
        self._run = lambda batch: {key: value.numpy() for key, value in self._signature(image=batch).items()}

    def __repr__(self) -> str:
        return f"ImageClassifier({self.name!r}, input uint8{list(self.input_shape)}, runtime={self.runtime!r})"

    def use_onnxruntime(self) -> "ImageClassifier":
        """Predict through onnxruntime from now on (converting the artifact once, cached)."""
        import onnxruntime
        from zoo.convert import cached_onnx
        session = onnxruntime.InferenceSession(str(cached_onnx(self)), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        self._run = lambda batch: dict(zip(names, session.run(names, {"image": batch})))
        self.runtime = "onnxruntime"
        return self

    def predict(self, images, batch_size: int = MAX_BATCH) -> ImagePredictions:
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        batch = to_uint8_batch(images, self.input_shape)
        if len(batch) <= batch_size:  # one call: the common case, kept lean for single-image latency
            merged = self._run(batch)
        else:
            chunks = [self._run(batch[start:start + batch_size]) for start in range(0, len(batch), batch_size)]
            merged = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
        class_id = merged["class_id"]
        return ImagePredictions(class_id, [self.label_names[i] for i in class_id.tolist()], merged["scores"],
                                merged.get("probabilities"), merged.get("distance"))

    def evaluate(self, data_dir=None, batch_size: int = 500) -> dict:
        """Test accuracy on the full real test split, through this model's runtime."""
        from zoo.data.images import image_pipeline, load_images
        from zoo.evaluation import image_accuracy
        dataset = image_pipeline(load_images(self.card["dataset"]["name"], "test", data_dir),
                                 batch_size, training=False)
        result = image_accuracy(lambda images: self._run(images.numpy())["class_id"], dataset)
        return {"test_accuracy": {**result, "split": "test"}}
