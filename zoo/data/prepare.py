"""Preparing a tfds builder: offline from the raw-data directory when one is set, else online."""
from __future__ import annotations

import os
import socket
import urllib.parse

import tensorflow_datasets as tfds
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from zoo.data.common import DATA_DIR_VARIABLE, raw_data_dir


def prepare_builder(builder: tfds.core.DatasetBuilder, dataset: str,
                    data_dir: str | os.PathLike | None = None) -> tfds.core.DatasetBuilder:
    """download_and_prepare `builder`: offline from <data_dir>/<dataset>/ when a data
    directory is set (tfds still verifies each file's registered checksum), else online."""
    raw = raw_data_dir(data_dir)
    config = None
    if raw is None:
        if not builder.is_prepared():
            _check_reachable(builder, dataset)  # tfds would retry an unreachable host for minutes
    else:
        manual_dir = raw / dataset
        if not manual_dir.is_dir():
            raise ValueError(f"data directory {str(raw)!r} has no {dataset!r} folder; expected {str(manual_dir)!r}")
        config = tfds.download.DownloadConfig(manual_dir=str(manual_dir), try_download_gcs=False)
    try:
        builder.download_and_prepare(download_config=config)
    except NonMatchingChecksumError as error:
        raise ValueError(f"{dataset}: a raw file does not match the official checksum tfds registers for it "
                         f"({str(error).splitlines()[0]:.300})") from None
    return builder


def _check_reachable(builder: tfds.core.DatasetBuilder, dataset: str, timeout: float = 5.0) -> None:
    """A one-line error, within `timeout` seconds, when the download source cannot be reached."""
    urls = sorted(builder.url_infos or {})
    # tfds.testing.mock_data replaces download_and_prepare with a no-op: nothing to reach then.
    if not urls or type(builder).download_and_prepare.__module__.startswith("tensorflow_datasets.testing"):
        return
    address = urllib.parse.urlsplit(urls[0])
    try:
        socket.create_connection((address.hostname, address.port or 443), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"{dataset}: no raw-data directory is set ({DATA_DIR_VARIABLE}, or DATA_DIR= for make) and "
                         f"its download source {address.hostname} cannot be reached ({error.strerror or error}); "
                         f"set {DATA_DIR_VARIABLE} to a folder holding {dataset}/ with the official files") from None
