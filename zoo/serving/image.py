"""Image serving: what users pass (arrays, paths, PIL images) -> a checked uint8 batch, the
artifact's `serving_default` signature, and the predictor `zoo.load` returns for image models.

    model = zoo.load("cnn_mnist")
    result = model.predict(images)   # uint8 [N, H, W, C], [0, 1] floats, PNG/JPEG paths, PIL images
    result.class_id, result.label, result.probabilities
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import math
import os
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont

from zoo import metrics
from zoo.artifact import ArtifactError
from zoo.data import common
from zoo.models.common import describe_views
from zoo.registry import ModelSpec

MAX_BATCH = 256  # images per signature call; larger inputs are processed in chunks


def preprocessing_doc(spec: ModelSpec) -> str:
    """The card's `preprocessing`: what the graph does to the raw pixels."""
    text = "uint8 pixels -> float32 / 255"
    if getattr(spec.config, "mean", None):
        text += f" -> (x - mean) / std per channel, mean={list(spec.config.mean)}, std={list(spec.config.std)}"
    views = describe_views(getattr(spec.config, "tta_level", 0), getattr(spec.config, "views", "mirror"))
    if views:
        text += f" -> test-time views ({views}); scores = log of their weighted mean probability"
    return text + " (inside the graph)"


def attach_assets(model: keras.Model, folder: Path) -> keras.Model:
    """Image models' weights are the whole model: nothing to attach."""
    return model


def archive(model: keras.Model, spec: ModelSpec, staging_dir: Path) -> keras.export.ExportArchive:
    """serving_default(image uint8[N, H, W, C]) -> scores, class_id, and probabilities
    and/or distance as the spec says."""
    height, width, channels = model.input_shape[1:]
    export_archive = keras.export.ExportArchive()
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

    export_archive.add_endpoint("serving_default", serve)
    return export_archive


def signature_doc(spec: ModelSpec, model: keras.Model) -> dict:
    """Human-readable description of the artifact's signatures, for the model card."""
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
        inputs, outputs = self._signature.structured_input_signature[1], self._signature.structured_outputs
        spec = inputs.get("image")
        if set(inputs) != {"image"} or spec.dtype != tf.uint8 or spec.shape.rank != 4 or None in spec.shape[1:]:
            raise ArtifactError(f"{path}: serving_default must take one uint8 input `image` [N, H, W, C], "
                                f"got {inputs}")
        height, width, channels = (int(d) for d in spec.shape[1:])
        self.input_shape = (height, width, channels)
        self.normalizable = self.input_shape == MNIST_SHAPE  # predict(..., normalize=True) applies
        classes = outputs["scores"].shape[-1] if "scores" in outputs and "class_id" in outputs else None
        if classes != len(self.label_names) or not self.label_names:
            raise ArtifactError(f"{path}: the card has {len(self.label_names)} label_names, the graph's `scores` "
                                f"{classes} classes (outputs {sorted(outputs)})")
        self.runtime, self.precision = "tensorflow", "float32"
        self._run = lambda batch: {key: value.numpy() for key, value in self._signature(image=batch).items()}

    def __repr__(self) -> str:
        return (f"ImageClassifier({self.name!r}, input uint8{list(self.input_shape)}, runtime={self.runtime!r}, "
                f"precision={self.precision!r})")

    def use_runtime(self, runtime: str, precision: str, run: Callable[[np.ndarray], dict]) -> "ImageClassifier":
        """Predict through `run` (uint8 batch -> the signature's outputs as numpy arrays) from now
        on: a converted file of this artifact, checked by zoo.convert.use_runtime."""
        self._run = run
        self.runtime, self.precision = runtime, precision
        return self

    def predict(self, images, batch_size: int = MAX_BATCH, normalize: bool = False) -> ImagePredictions:
        """normalize=True (MNIST models): each image is prepared as MNIST's digits were
        (mnist_normalize) instead of resized."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        batch = self._normalized(images) if self._check_normalize(normalize) else \
            to_uint8_batch(images, self.input_shape)
        if len(batch) <= batch_size:  # one call: the common case, kept lean for single-image latency
            merged = self._run(batch)
        else:
            chunks = [self._run(batch[start:start + batch_size]) for start in range(0, len(batch), batch_size)]
            merged = {key: np.concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
        class_id = merged["class_id"]
        return ImagePredictions(class_id, [self.label_names[i] for i in class_id.tolist()], merged["scores"],
                                merged.get("probabilities"), merged.get("distance"))

    def _check_normalize(self, normalize) -> bool:
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize must be True or False, got {normalize!r}")
        if normalize and not self.normalizable:
            raise ValueError(f"normalize=True is MNIST's digit preparation, for {MNIST_SHAPE} inputs; "
                             f"{self.name} takes {self.input_shape}")
        return normalize

    def _normalized(self, images) -> np.ndarray:
        """Files, PIL images, or greyscale arrays of any size: (H, W) or (H, W, 1) one image,
        (N, H, W) or (N, H, W, 1) a batch."""
        if isinstance(images, (list, tuple)) and images and all(_is_file_or_pil(item) for item in images):
            items = list(images)
        elif _is_file_or_pil(images):
            items = [images]
        else:
            array = _as_array(images)
            single = array.ndim == 2 or array.ndim == 3 and array.shape[-1] == 1
            items = [array] if single else list(array)
        if not items:
            raise ValueError("expected at least one image, got an empty batch")
        return np.stack([mnist_normalize(_grey_pixels(item, self.input_shape)) for item in items])

    # The REST server's interface (zoo.serving.http): signatures by name, inputs checked per
    # request, then one signature call per (dynamically batched) group of requests.

    def serving_signatures(self) -> dict:
        """Signature name -> the artifact's function, for what the REST API serves."""
        return {"serving_default": self._signature}

    def prepare(self, signature_name: str, inputs: dict[str, list], normalize: bool = False) -> dict[str, np.ndarray]:
        """A request's `image` column (nested uint8 lists, or {"b64": PNG/JPEG bytes} decoded and
        resized) -> {"image": uint8 [N, H, W, C]}."""
        self._check_normalize(normalize)
        images = []
        for index, item in enumerate(inputs["image"]):
            try:
                if isinstance(item, dict):
                    item = decode_image_bytes(item)
                elif not isinstance(item, (list, np.ndarray)):
                    raise ValueError(f"expected nested lists of uint8 pixels or {{\"b64\": ...}}, "
                                     f"got {type(item).__name__}")
                else:
                    item = _json_pixels(item)
                one = mnist_normalize(_grey_pixels(item, self.input_shape))[None] if normalize else \
                    to_uint8_batch(item, self.input_shape)
                if len(one) != 1:
                    raise ValueError(f"expected one image, got a batch of {len(one)}")
            except (ValueError, TypeError) as error:
                raise ValueError(f"instance {index}: {error}") from None
            images.append(one)
        return {"image": np.concatenate(images)}

    def run_signature(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of the signature on a prepared batch."""
        return self._run(inputs["image"])

    def describe(self, inputs: list[str], top: int = 5, normalize: bool = False) -> list[str]:
        """`python -m zoo predict`: a line per image of PNG/JPEG files or .npy arrays (each image
        of a batch named by file and index). `top` is the language models' option; unused."""
        lines = []
        for item in inputs:
            if item.endswith(".npy"):
                predictions = self.predict(read_npy(item), normalize=normalize)
                names = [item] if len(predictions) == 1 else [f"{item}[{index}]" for index in range(len(predictions))]
            else:
                predictions, names = self.predict([item], normalize=normalize), [item]
            for name, prediction in zip(names, predictions):
                confidence = f" ({prediction.probability:.3f})" if prediction.probability is not None else ""
                lines.append(f"{name}: {prediction.label}{confidence}")
        return lines

    def demo(self, data_dir: Path | None) -> list[str]:
        """`make demo`: digits drawn here (MNIST models), and real test images when data_dir is set."""
        lines = []
        if self.input_shape == (28, 28, 1):
            predictions = self.predict(draw_digits())
            shown = "  ".join(f"{digit}->{p.label}" + (f" {p.probability:.2f}" if p.probability is not None else "")
                              for digit, p in enumerate(predictions))
            correct = sum(p.class_id == digit for digit, p in enumerate(predictions))
            lines += [f"  drawn digits (font, not MNIST): {correct}/10 right", f"    {shown}"]
        else:
            lines.append("  (no self-made inputs for natural images; set DATA_DIR to see real test images)")
        if data_dir is not None:
            images, labels = next(iter(_data(f"demo of {self.name}").load_images(
                self.card["dataset"]["name"], "test", data_dir).batch(8)))
            predictions = self.predict(images.numpy())
            pairs = "  ".join(f"{self.label_names[t]}->{p.label}" for t, p in zip(labels.numpy(), predictions))
            accuracy = self.evaluate(data_dir)["test_accuracy"]
            lines += [f"  real test images (true->predicted): {pairs}",
                      f"  test accuracy on {accuracy['examples']:,} images: {accuracy['value']:.4f}"]
        return lines

    def evaluate(self, data_dir=None, batch_size: int = 500) -> dict:
        """Test accuracy on the full real test split, through this model's runtime."""
        images = _data(f"evaluate({self.name!r})")
        dataset = images.image_pipeline(images.load_images(self.card["dataset"]["name"], "test", data_dir),
                                        batch_size, training=False)
        result = metrics.image_accuracy(lambda images: self._run(images.numpy())["class_id"], dataset)
        return {"test_accuracy": {**result, "split": "test"}}


def training_sample(dataset: str, count: int, data_dir=None, seed: int = 0) -> np.ndarray:
    """`count` images of the dataset's training split drawn at random without replacement with
    `seed`: uint8 [count, H, W, C] (what int8 conversions are calibrated on)."""
    images = _data(f"calibrating an int8 conversion on {dataset}'s training split")
    split, _ = images.load_images(dataset, "train", data_dir).batch(2**31 - 1).get_single_element()  # [N, H, W, C]
    if len(split) < count:
        raise ValueError(f"{dataset}'s training split has {len(split)} images; {count} are needed")
    return split.numpy()[np.random.default_rng(seed).choice(len(split), count, replace=False)]


def _data(what: str):
    """zoo.data.images: the data extra (tfds), which inference never imports."""
    try:
        from zoo.data import images
    except ImportError as error:
        raise common.missing_data_extra(error, what) from None
    return images


# Input conversion.

# Files and PIL images are decoded only up to this size (checked from the header first): 40 MP
# admits 8K frames (33 MP) and 24 MP camera photos, and bounds decoding and conversion to ~0.7 GB
# (measured: at most ~17 bytes a pixel, compositing RGBA or scaling mode F).
MAX_IMAGE_PIXELS = 40_000_000
MAX_NPY_BYTES = 2**30  # a .npy file's array data (1 GiB: 1.3 M MNIST images as uint8)
_WIDE_MODES = ("F", "I", "I;16", "I;16L", "I;16B", "I;16N")  # scaled here, not by PIL's convert
_VIA_RGB = ("CMYK", "YCbCr", "LAB", "HSV")  # taken to L through RGB (PIL has no LAB -> L)
_WARNINGS_LOCK = threading.Lock()


def draw_digits(size: int = 28) -> np.ndarray:
    """The digits 0-9 drawn with PIL's built-in font, MNIST style: white on black, centred
    by mass in a 20x20 box. uint8 [10, size, size, 1]."""
    font = ImageFont.load_default(size=64)
    digits = []
    for digit in range(10):
        canvas = Image.new("L", (96, 96), 0)
        ImageDraw.Draw(canvas).text((48, 48), str(digit), fill=255, font=font, anchor="mm")
        glyph = canvas.crop(canvas.getbbox())
        scale = 20 / max(glyph.size)
        glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                             Image.Resampling.LANCZOS)
        digits.append(_centre_by_mass(np.asarray(glyph), size))  # centre of mass at the centre, as MNIST
    return np.stack(digits)[..., None]


MNIST_SHAPE = (28, 28, 1)


def mnist_normalize(grey: np.ndarray) -> np.ndarray:
    """A greyscale digit of any size (uint8 [H, W]) -> uint8 [28, 28, 1] as MNIST was made: a
    light background is inverted (white digit on black), the digit's bounding box is scaled to fit
    20x20 (aspect kept, antialiased), and its centre of mass is put at the centre of 28x28."""
    if grey.ndim != 2 or grey.dtype != np.uint8 or not grey.size:
        raise ValueError(f"expected a non-empty uint8 greyscale image [H, W], got {grey.dtype} {grey.shape}")
    # The background is the commoner colour along the border: light means a dark digit on paper.
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    if np.median(border) > 127:
        grey = 255 - grey
    ink = grey > 30  # scanner or JPEG noise below this is background
    if not ink.any():
        return np.zeros(MNIST_SHAPE, dtype=np.uint8)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    glyph = Image.fromarray(grey[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    scale = 20 / max(glyph.size)
    glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                         Image.Resampling.LANCZOS)
    return _centre_by_mass(np.asarray(glyph), MNIST_SHAPE[0])[..., None]


def _centre_by_mass(glyph: np.ndarray, size: int) -> np.ndarray:
    pixels = glyph.astype(np.float64)
    total = pixels.sum() or 1.0
    rows, cols = np.indices(pixels.shape)
    top = min(max(0, int(round(size / 2 - (rows * pixels).sum() / total))), size - glyph.shape[0])
    left = min(max(0, int(round(size / 2 - (cols * pixels).sum() / total))), size - glyph.shape[1])
    image = np.zeros((size, size), dtype=np.uint8)
    image[top:top + glyph.shape[0], left:left + glyph.shape[1]] = glyph
    return image


def decode_image_bytes(item: dict) -> Image.Image:
    """TF Serving's binary convention, {"b64": base64 of PNG/JPEG bytes} -> a PIL image (lazy:
    its size is checked against MAX_IMAGE_PIXELS before it is decoded)."""
    if set(item) != {"b64"} or not isinstance(item["b64"], str):
        raise ValueError(f"expected {{\"b64\": \"<base64 PNG/JPEG>\"}}, got an object with keys {sorted(item)}")
    try:
        data = base64.b64decode(item["b64"], validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"b64 is not valid base64: {error}") from None
    return _open_image(io.BytesIO(data), "b64 image")


def _json_pixels(item) -> np.ndarray:
    """Nested JSON lists of integers 0-255 -> uint8 (JSON has no uint8: ints are checked here)."""
    array = _as_array(item)
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind not in "iu" or array.size and (array.min() < 0 or array.max() > 255):
        shown = f"range [{array.min()}, {array.max()}]" if array.dtype.kind in "iuf" and array.size else array.dtype
        raise ValueError(f"expected uint8 pixels (integers 0-255), got {shown}")
    return array.astype(np.uint8)


def _grey_pixels(item, input_shape) -> np.ndarray:
    """A file, PIL image or array (uint8 or [0, 1] float) -> uint8 [H, W] at its own size."""
    if _is_file_or_pil(item):
        pixels = _read_image(item, (*input_shape[:2], 1))
    else:
        pixels = _to_uint8(_as_array(item))
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise ValueError(f"expected a greyscale image (H, W) or (H, W, 1) to normalize, got shape {pixels.shape}")
    return pixels


def _fit(pixels: np.ndarray, input_shape) -> np.ndarray:
    """A decoded image of another size resized to the model's (H, W): PIL's antialiased bilinear
    resize of the whole image, aspect ratio not kept (as Keras' load_img(target_size=...))."""
    height, width = input_shape[:2]
    if pixels.shape[:2] == (height, width):
        return pixels
    return np.asarray(Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR))


def read_npy(path: str) -> np.ndarray:
    """A .npy array (no pickles). Its header is read first: an array that claims more data than
    the file holds, or more than MAX_NPY_BYTES, is refused before numpy allocates it."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(file)
            stored = os.fstat(file.fileno()).st_size - file.tell()
    except Exception as error:  # numpy's header parser raises many types (EOFError, TokenError, ...)
        raise ValueError(f"could not read {path!r} as a .npy image array: {_one_line(error)}") from None
    declared = math.prod(shape) * dtype.itemsize
    if declared > MAX_NPY_BYTES:
        raise ValueError(f"{path!r} holds a {dtype} array of shape {shape} ({declared:,} bytes); the limit "
                         f"is MAX_NPY_BYTES = {MAX_NPY_BYTES:,}")
    if declared > stored:
        raise ValueError(f"{path!r} is truncated: its header declares {declared:,} bytes of data, the file "
                         f"holds {stored:,}")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:  # e.g. pickled (object) data
        raise ValueError(f"could not read {path!r} as a .npy image array: {_one_line(error)}") from None


def to_uint8_batch(images, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Accepts uint8 (0-255) or float ([0, 1]) arrays shaped (H, W), (H, W, C), (N, H, W)
    when C == 1, or (N, H, W, C); an image file path (any format PIL reads), a PIL image, or a
    list of these.

    Files and PIL images: at most MAX_IMAGE_PIXELS pixels, checked from the header before
    decoding starts. Their pixels, by PIL mode:
    - transparency (RGBA, LA, PA, or P/L/RGB with a transparent colour) is composited on white
      first: a transparent background reads as white;
    - 8-bit modes (1, L, P, RGB, CMYK, YCbCr, ...) as PIL converts them to L (C == 1) or RGB;
    - F (32-bit float): [0, 1] floats, scaled to 0-255 as float arrays are;
    - I;16, I;16L, I;16B, I;16N (16-bit): 0-65535, divided by 257 to 0-255;
    - I (32-bit int, what some 16-bit files decode to): likewise 0-65535, divided by 257;
    single-channel F and I modes are repeated to RGB when C == 3."""
    if (type(images) is np.ndarray and images.dtype == np.uint8 and images.shape[1:] == input_shape
            and len(images) and images.flags.c_contiguous):
        return images  # already a checked batch: the single-image latency path
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("expected at least one image, got an empty list")
        if all(_is_file_or_pil(item) for item in images):
            return np.stack([_single(_fit(_read_image(item, input_shape), input_shape), input_shape)
                             for item in images])
    elif _is_file_or_pil(images):
        return _single(_fit(_read_image(images, input_shape), input_shape), input_shape)[None]
    array = _as_array(images)
    return _batch(_to_uint8(array), input_shape)


def _is_file_or_pil(item) -> bool:
    return isinstance(item, (str, os.PathLike, Image.Image))


def _read_image(item, input_shape) -> np.ndarray:
    """A file path or PIL image -> uint8 [H, W] (C == 1) or [H, W, 3]; see to_uint8_batch."""
    if not isinstance(item, (str, os.PathLike)):
        filename = getattr(item, "filename", None)  # set by Image.open
        return _pil_pixels(item, f"PIL image {filename!r}" if filename else "PIL image", input_shape[-1])
    path = Path(item)
    if not path.is_file():
        raise ValueError(f"image file {str(path)!r} does not exist")
    opened = _open_image(path, repr(str(path)))
    with opened:
        return _pil_pixels(opened, repr(str(path)), input_shape[-1])


def _open_image(source, name: str) -> Image.Image:
    """Image.open (the header only). Its decompression-bomb warning (PIL's own, larger limit) is
    made an error; the lock keeps this process-wide filter change to one thread."""
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(source)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"{name} is too large to decode ({' '.join(str(error).split())}); images are "
                         f"decoded only up to MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,} pixels") from None
    except Exception as error:  # PIL raises many types for bad files (SyntaxError, struct.error, ...)
        raise ValueError(f"{name} is not a readable image: {_one_line(error)}") from None


def _pil_pixels(image: Image.Image, name: str, channels: int) -> np.ndarray:
    """A PIL image (lazy or loaded) -> uint8 [H, W] or [H, W, 3], its size checked before decoding."""
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise ValueError(f"{name} is {width}x{height} ({width * height:,} pixels); images are decoded only up "
                         f"to MAX_IMAGE_PIXELS = {MAX_IMAGE_PIXELS:,} pixels")
    try:
        image.load()  # decoding happens here, within the bound just checked
        if image.mode in _WIDE_MODES:
            array = np.asarray(image)  # [H, W] float32, uint16 or int32
        else:
            if image.has_transparency_data:
                rgba = image if image.mode == "RGBA" else image.convert("RGBA")
                image = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
            elif image.mode in _VIA_RGB:
                image = image.convert("RGB")
            return np.asarray(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except Exception as error:  # PIL's decoders raise many types (SyntaxError, EOFError, OSError, ...)
        raise ValueError(f"{name} is not a readable image: {_one_line(error)}") from None
    if image.mode == "F":
        try:
            array = _to_uint8(array)
        except ValueError as error:
            raise ValueError(f"{name} (mode F, 32-bit float): {error}") from None
    else:
        if image.mode == "I" and array.size and (array.min() < 0 or array.max() > 65535):
            raise ValueError(f"{name} (mode I, 32-bit int) is read as 16-bit pixels (0-65535), got range "
                             f"[{array.min()}, {array.max()}]")
        array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(v / 257): 65535 -> 255
    return array if channels == 1 else np.repeat(array[..., None], 3, axis=-1)


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def _as_array(images) -> np.ndarray:
    if isinstance(images, (str, bytes, dict, set)) or images is None:
        raise TypeError(f"expected an image array, path or PIL image, got {type(images).__name__}")
    try:
        array = np.asarray(images)
    except (ValueError, TypeError) as error:
        raise ValueError(f"could not read input as an image array (ragged or non-numeric?): {error}") from None
    if array.dtype == object:
        raise ValueError("expected a numeric image array, got ragged or non-numeric data (dtype object)")
    return array


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not np.all(np.isfinite(array)):
            raise ValueError("image contains NaN or infinite values")
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError(f"float images must have values in [0, 1], got range "
                             f"[{array.min():.4g}, {array.max():.4g}]; pass uint8 for 0-255 pixels")
        scaled = array.astype(np.float64)  # one float64 copy, scaled and rounded in place
        scaled *= 255.0
        return np.round(scaled, out=scaled).astype(np.uint8)
    raise ValueError(f"expected uint8 (0-255) or float ([0, 1]) pixels, got dtype {array.dtype}")


def _single(array: np.ndarray, input_shape) -> np.ndarray:
    height, width, channels = input_shape
    if array.ndim == 2 and channels == 1:
        array = array[..., None]
    if array.shape != (height, width, channels):
        raise ValueError(f"expected an image of shape ({height}, {width}, {channels})"
                         f"{' or (' + str(height) + ', ' + str(width) + ')' if channels == 1 else ''}, "
                         f"got {array.shape}")
    return array


def _batch(array: np.ndarray, input_shape) -> np.ndarray:
    height, width, channels = input_shape
    if array.ndim == 2 or array.ndim == 3 and array.shape == input_shape:
        return _single(array, input_shape)[None]
    if array.ndim == 3 and channels == 1 and array.shape[1:] == (height, width):
        array = array[..., None]  # (N, H, W) greyscale batch
    if array.ndim != 4 or array.shape[1:] != input_shape:
        raise ValueError(f"expected an image of shape {input_shape} or a batch of shape "
                         f"(N, {height}, {width}, {channels}), got an array of shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError(f"expected at least one image, got an empty batch of shape {array.shape}")
    return np.ascontiguousarray(array)
