"""Turn what users pass (arrays, paths, PIL images) into a checked uint8 [N, H, W, C] batch."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def to_uint8_batch(images, input_shape: tuple[int, int, int]) -> np.ndarray:
    """Accepts uint8 (0-255) or float ([0, 1]) arrays shaped (H, W), (H, W, C), (N, H, W)
    when C == 1, or (N, H, W, C); a PNG/JPEG path, a PIL image, or a list of these."""
    if (type(images) is np.ndarray and images.dtype == np.uint8 and images.shape[1:] == input_shape
            and len(images) and images.flags.c_contiguous):
        return images  # already a checked batch: the single-image latency path
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("expected at least one image, got an empty list")
        if all(_is_file_or_pil(item) for item in images):
            return np.stack([_single(_read_image(item, input_shape), input_shape) for item in images])
    elif _is_file_or_pil(images):
        return _single(_read_image(images, input_shape), input_shape)[None]
    array = _as_array(images)
    return _batch(_to_uint8(array), input_shape)


def _is_file_or_pil(item) -> bool:
    if isinstance(item, (str, os.PathLike)):
        return True
    return type(item).__module__.startswith("PIL.")


def _read_image(item, input_shape) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise ValueError(f"image file {str(path)!r} does not exist")
        try:
            with Image.open(path) as opened:
                opened.load()
                image = opened.copy()
        except (UnidentifiedImageError, OSError) as error:
            raise ValueError(f"{str(path)!r} is not a readable PNG/JPEG image: {error}") from None
    else:
        image = item
    mode = "L" if input_shape[-1] == 1 else "RGB"
    return np.asarray(image.convert(mode), dtype=np.uint8)


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
        return np.round(array.astype(np.float64) * 255.0).astype(np.uint8)
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
