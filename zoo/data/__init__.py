"""Datasets through tfds; raw official files come from a data directory when one is set.

Image datasets are declarative entries (`images.IMAGE_DATASETS`); Penn Treebank is the project's
own tfds builder with its word-level text rules (`ptb`).
"""
from __future__ import annotations

from zoo.data import ptb
from zoo.data.common import prepare_builder, raw_data_dir
from zoo.data.images import IMAGE_DATASETS, ImageDataset, image_pipeline, label_names, load_images

__all__ = ["IMAGE_DATASETS", "ImageDataset", "files_sha256", "image_pipeline", "label_names", "load_images",
           "prepare_builder", "ptb", "raw_data_dir"]


def files_sha256(name: str) -> dict[str, str]:
    """file name -> sha256 of the official files the dataset `name` is built from."""
    if name == "ptb":
        return ptb.dataset_checksums()
    if name not in IMAGE_DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {sorted(IMAGE_DATASETS) + ['ptb']}")
    return IMAGE_DATASETS[name].files_sha256()
