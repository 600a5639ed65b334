"""Image datasets through tfds, as (uint8 image [H, W, C], int64 label) pairs.

Each dataset is one declarative `ImageDataset` entry in IMAGE_DATASETS: adding a dataset is
adding an entry (and, where tfds's own builder does not fit the raw files, a builder subclass).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Mapping

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data import cifar10
from zoo.data.labels import LABEL_NAMES
from zoo.data.prepare import prepare_builder

_MAX_EXAMPLES = 2**31 - 1  # a batch size that takes a whole split


@dataclasses.dataclass(frozen=True)
class ImageDataset:
    """One image dataset: its tfds builder, the label names (from the dataset's own metadata,
    so they are known without preparing the data) and the official files' sha256."""

    name: str
    builder: Callable[[], tfds.core.DatasetBuilder]
    label_names: tuple[str, ...]
    # Files accepted besides the ones tfds registers for the builder (file name -> sha256).
    extra_files_sha256: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def files_sha256(self) -> dict[str, str]:
        """file name -> sha256 of every official file the dataset is built from."""
        builder = self.builder()
        checksums = {info.filename or url.rsplit("/", 1)[-1]: info.checksum
                     for url, info in sorted((builder.url_infos or {}).items())}
        return {**checksums, **self.extra_files_sha256}


IMAGE_DATASETS = {dataset.name: dataset for dataset in (
    ImageDataset("mnist", lambda: tfds.builder("mnist", try_gcs=False), label_names=LABEL_NAMES["mnist"]),
    ImageDataset("cifar10", cifar10.Cifar10, label_names=LABEL_NAMES["cifar10"],  # also from extracted batches
                 extra_files_sha256={f"{cifar10.EXTRACTED_FOLDER}/{file}": digest
                                     for file, digest in cifar10.EXTRACTED_SHA256.items()}),
)}


def image_dataset(name: str) -> ImageDataset:
    if name not in IMAGE_DATASETS:
        raise ValueError(f"image dataset must be one of {tuple(IMAGE_DATASETS)}, got {name!r}")
    return IMAGE_DATASETS[name]


def load_images(name: str, split: str, data_dir: str | os.PathLike | None = None) -> tf.data.Dataset:
    """The tfds split as an unbatched dataset of (image uint8 [H, W, C], label int64)."""
    builder = prepare_builder(image_dataset(name).builder(), name, data_dir)
    return builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)


def label_names(name: str) -> tuple[str, ...]:
    """The label names in the dataset builder's metadata (no data is prepared)."""
    return tuple(image_dataset(name).builder().info.features["label"].names)


@dataclasses.dataclass(frozen=True)
class Affine:
    """The 'affine' augmentation's ranges, each drawn uniformly per image: rotation in degrees,
    translation in pixels (each axis), scale as a fraction around 1; with elastic_alpha > 0, also
    an elastic distortion (Simard et al. 2003): a displacement field of uniform noise in [-1, 1]
    per pixel and axis, smoothed by a Gaussian of elastic_sigma pixels, times elastic_alpha."""
    rotation: float = 15.0
    translation: float = 3.0
    scale: float = 0.1
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0

    def __post_init__(self):
        if not (np.isfinite(self.elastic_alpha) and self.elastic_alpha >= 0):
            raise ValueError(f"elastic_alpha must be a finite number >= 0, got {self.elastic_alpha!r}")
        if not (np.isfinite(self.elastic_sigma) and self.elastic_sigma > 0):
            raise ValueError(f"elastic_sigma must be a finite number > 0, got {self.elastic_sigma!r}")


def image_pipeline(dataset: tf.data.Dataset, batch_size: int, training: bool,
                   augment: str = "none", seed: int | None = None, affine: Affine = Affine()) -> tf.data.Dataset:
    """Batches of (uint8 images [B, H, W, C], labels [B]); images stay uint8 until the model.

    Evaluation: cache, batch, prefetch (every example, in order). Training: the split is held in
    memory and each pass (epoch) draws a new permutation of it and new augmentations, with full
    batches only; the same seed gives the same sequence of epochs, so a resumed run passes an
    offset seed to continue with fresh epochs rather than replay the first one."""
    augmenter = _augmenter(augment, affine)  # an unknown kind fails here, before any work
    if not training:
        return dataset.cache().batch(batch_size).prefetch(tf.data.AUTOTUNE)
    images, labels = dataset.batch(_MAX_EXAMPLES).get_single_element()  # [N, H, W, C], [N]
    count = int(images.shape[0])
    if count < batch_size:
        raise ValueError(f"training needs at least one full batch ({batch_size} examples), got {count}")
    steps = count // batch_size
    # One gather per batch from a permutation of the whole split, instead of tf.data's
    # per-element shuffle buffer (which held linear_mnist's pipeline to 4.5x its training rate).
    # Seeds come from a stream re-drawn every pass: plain tf.random ops in a map would restart
    # with each pass and repeat epoch 1's draws position by position.
    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(steps + 1).take(1)

    def epoch(epoch_seeds):  # [steps + 1] -> ([steps, B] example indices, [steps] batch seeds)
        order = tf.random.experimental.stateless_shuffle(tf.range(count), tf.stack([epoch_seeds[0], 0]))
        return tf.reshape(order[:steps * batch_size], [steps, batch_size]), epoch_seeds[1:]

    def batch(indices, batch_seed):
        return augmenter((tf.gather(images, indices), tf.gather(labels, indices)), batch_seed)

    batches = seeds.map(epoch).unbatch()
    return batches.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


AUGMENTATIONS = ("none", "shift", "flip_crop", "affine")
# Augmentations that need each batch's epoch: drawn by alternating_flip_pipeline, not image_pipeline.
EPOCH_AUGMENTATIONS = ("alternating_flip_translate",)


def _augmenter(kind: str, affine: Affine = Affine()):
    """Augmentation of a uint8 batch [B, H, W, C], drawn per image: 'shift' (pad 2, random
    crop) for digits, 'flip_crop' (pad 4, random crop, horizontal flip) for natural images,
    'affine' (rotation, scale and sub-pixel translation about the centre, and the elastic
    distortion its Affine sets, bilinear, zeros outside) for digits."""
    if kind == "none":
        return lambda batch_data, seed: batch_data
    if kind not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {AUGMENTATIONS}, got {kind!r}")
    if kind == "affine":
        return lambda batch_data, seed: (random_affine(batch_data[0], seed, affine), batch_data[1])
    padding = 2 if kind == "shift" else 4

    def augment(batch_data, seed):
        images, labels = batch_data
        images = _translate(images, padding, tf.stack([seed, 0]), tf.stack([seed, 1]))
        if kind == "flip_crop":
            flip = tf.random.stateless_uniform([tf.shape(images)[0], 1, 1, 1], tf.stack([seed, 2])) < 0.5
            images = tf.where(flip, tf.reverse(images, axis=[2]), images)
        return images, labels

    return augment


def affine_transforms(angles, scales, shifts, height: int, width: int):
    """[B, 8] projective transforms (output pixel -> input pixel, as ImageProjectiveTransformV3
    reads them) of a rotation by `angles` (radians, [B]) and scaling by `scales` ([B]) about the
    image centre, then a translation by `shifts` ([B, 2], x and y in pixels)."""
    center_x, center_y = (width - 1) / 2, (height - 1) / 2
    cos, sin = tf.cos(angles) / scales, tf.sin(angles) / scales
    target_x, target_y = center_x + shifts[:, 0], center_y + shifts[:, 1]
    zeros = tf.zeros_like(angles)
    return tf.stack([cos, sin, center_x - cos * target_x - sin * target_y,
                     -sin, cos, center_y + sin * target_x - cos * target_y, zeros, zeros], axis=1)


def random_affine(images, seed, affine: Affine = Affine()):
    """uint8 [B, H, W, C] -> the same, each image rotated, scaled and translated at random (and
    elastically distorted, with affine.elastic_alpha > 0)."""
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]

    def uniform(shape, stream, limit):
        return tf.random.stateless_uniform(shape, tf.stack([seed, stream]), -limit, limit)

    angles = uniform([batch], 0, affine.rotation * np.pi / 180)
    transforms = affine_transforms(angles, 1.0 + uniform([batch], 1, affine.scale),
                                   uniform([batch, 2], 2, affine.translation), height, width)
    if affine.elastic_alpha > 0:
        displacements = elastic_displacements(tf.shape(images)[:3], tf.stack([seed, 3]),
                                              affine.elastic_alpha, affine.elastic_sigma)
        moved = warp(tf.cast(images, tf.float32), transforms, displacements)
    else:
        moved = tf.raw_ops.ImageProjectiveTransformV3(
            images=tf.cast(images, tf.float32), transforms=transforms, output_shape=tf.shape(images)[1:3],
            fill_value=0.0, interpolation="BILINEAR", fill_mode="CONSTANT")
    return tf.cast(tf.clip_by_value(tf.round(moved), 0, 255), tf.uint8)


def elastic_displacements(shape, seed, alpha: float, sigma: float):
    """[B, H, W, 2] pixel displacements (x, y) for `shape` [B, H, W]: uniform noise in [-1, 1]
    smoothed by a normalised Gaussian of `sigma` pixels (zeros beyond the border), times `alpha`."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma**2))
    taps = tf.constant(taps / taps.sum(), tf.float32)
    noise = tf.random.stateless_uniform(tf.concat([shape, [2]], 0), seed, -1.0, 1.0)  # [B, H, W, 2]
    # Separable blur, each axis a depthwise convolution over the two channels (x and y).
    rows = tf.tile(tf.reshape(taps, [-1, 1, 1, 1]), [1, 1, 2, 1])  # [2r+1, 1, 2, 1]
    smooth = tf.nn.depthwise_conv2d(noise, rows, [1, 1, 1, 1], "SAME")
    smooth = tf.nn.depthwise_conv2d(smooth, tf.transpose(rows, [1, 0, 2, 3]), [1, 1, 1, 1], "SAME")
    return alpha * smooth


def warp(images, transforms, displacements):
    """float [B, H, W, C] -> the same, output pixel (x, y) read bilinearly (zeros outside) at the
    input point that `transforms` ([B, 8], as affine_transforms: affine, entries 6 and 7 zero, so
    only 0-5 are read) maps (x + dx, y + dy) to, with (dx, dy) = `displacements` [B, H, W, 2]."""
    height, width = images.shape[1], images.shape[2]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    px, py = x + displacements[..., 0], y + displacements[..., 1]  # [B, H, W] each
    a = transforms[:, :, None, None]  # [B, 8, 1, 1]
    source_x = a[:, 0] * px + a[:, 1] * py + a[:, 2]
    source_y = a[:, 3] * px + a[:, 4] * py + a[:, 5]
    # A one-pixel ring of zeros, and corners clipped into it, so points outside read zero.
    padded = tf.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]])
    flat = tf.reshape(padded, [tf.shape(images)[0], (height + 2) * (width + 2), images.shape[3]])  # [B, P, C]
    left, top = tf.floor(source_x), tf.floor(source_y)  # [B, H, W]
    wx, wy = (source_x - left)[..., None], (source_y - top)[..., None]  # [B, H, W, 1]

    def read(column, row):  # [B, H, W] pixel coordinates -> [B, H, W, C]
        column = tf.cast(tf.clip_by_value(column, -1, width), tf.int32) + 1
        row = tf.cast(tf.clip_by_value(row, -1, height), tf.int32) + 1
        return tf.gather(flat, row * (width + 2) + column, batch_dims=1)

    return ((read(left, top) * (1 - wx) + read(left + 1, top) * wx) * (1 - wy)
            + (read(left, top + 1) * (1 - wx) + read(left + 1, top + 1) * wx) * wy)


def _translate(images, padding: int, top_seed, left_seed, mode: str = "CONSTANT"):
    """Each image of [B, H, W, C] translated by up to `padding` pixels each way, drawn per image:
    a random crop of the padded image (zeros, or mode="REFLECT")."""
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]], mode=mode)
    # Per image, the crop's top-left corner.
    top, left = (tf.random.stateless_uniform([batch, 1], seed, 0, 2 * padding + 1, dtype=tf.int32)
                 for seed in (top_seed, left_seed))
    rows = tf.gather(padded, top + tf.range(height)[None, :], axis=1, batch_dims=1)  # [B, H, W+2p, C]
    return tf.gather(rows, left + tf.range(width)[None, :], axis=2, batch_dims=1)  # [B, H, W, C]


def alternating_flip_pipeline(dataset: tf.data.Dataset, batch_size: int, seed: int, first_epoch: int,
                              epochs: int, padding: int = 2) -> tf.data.Dataset:
    """Epochs first_epoch..epochs-1 as one stream of batches of (uint8 images, labels), for fit
    with steps_per_epoch (one iterator across epochs). airbench94's augmentation: alternating
    flips (each image's mirroring is drawn once per run, then every image is mirrored on odd
    epochs, so each is seen both ways in every two epochs) and a random translation by up to
    `padding` pixels of the reflect-padded image, drawn per image and epoch. Epoch e's order and
    draws depend on (seed, e) alone, so a resumed run continues exactly where it stopped."""
    images, labels = dataset.batch(_MAX_EXAMPLES).get_single_element()  # [N, H, W, C], [N]
    count = int(images.shape[0])
    if count < batch_size:
        raise ValueError(f"training needs at least one full batch ({batch_size} examples), got {count}")
    steps = count // batch_size
    run_key = tf.constant([seed, 0], tf.int64)
    mirrored = tf.random.stateless_uniform([count], run_key) < 0.5  # each image's state on even epochs

    def epoch(index):  # -> ([steps, B] example indices, [steps, 2] batch keys, epoch), per batch
        key = tf.random.experimental.stateless_fold_in(run_key, index + 1)
        order_key, batch_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
        order = tf.random.experimental.stateless_shuffle(tf.range(count), order_key)
        indices = tf.reshape(order[:steps * batch_size], [steps, batch_size])
        keys = tf.random.experimental.stateless_split(batch_key, steps * 2)
        return tf.data.Dataset.from_tensor_slices((indices, tf.reshape(keys, [steps, 2, 2]),
                                                   tf.fill([steps], index)))

    def batch(indices, keys, index):
        flip = tf.math.logical_xor(tf.gather(mirrored, indices), index % 2 == 1)[:, None, None, None]
        shifted = _translate(tf.gather(images, indices), padding, keys[0], keys[1], mode="REFLECT")
        return tf.where(flip, tf.reverse(shifted, axis=[2]), shifted), tf.gather(labels, indices)

    batches = tf.data.Dataset.range(first_epoch, epochs).flat_map(epoch)
    return batches.map(batch, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
