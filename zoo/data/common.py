"""The two directories: the raw-data directory (official files, read-only) and tfds's own."""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow_datasets as tfds

DATA_DIR_VARIABLE = "ZOO_DATA_DIR"


def raw_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The raw-data directory: the argument, else $ZOO_DATA_DIR, else None (download)."""
    value = data_dir if data_dir is not None else os.environ.get(DATA_DIR_VARIABLE) or None
    if value is None:
        return None
    path = Path(value).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"data directory {str(path)!r} (from {'argument' if data_dir else DATA_DIR_VARIABLE})"
                         " does not exist or is not a directory")
    return path


def prepare_builder(builder: tfds.core.DatasetBuilder, dataset: str,
                    data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """download_and_prepare `builder`: offline from <data_dir>/<dataset>/ when a data
    directory is set (tfds still verifies each file's registered checksum), else online."""
    raw = raw_data_dir(data_dir)
    if raw is None:
        builder.download_and_prepare()
        return builder
    manual_dir = raw / dataset
    if not manual_dir.is_dir():
        raise ValueError(f"data directory {str(raw)!r} has no {dataset!r} folder; expected {str(manual_dir)!r}")
    config = tfds.download.DownloadConfig(manual_dir=str(manual_dir), try_download_gcs=False)
    builder.download_and_prepare(download_config=config)
    return builder
