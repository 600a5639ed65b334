"""tfds's cifar10, also buildable from the extracted official binary batches.

tfds's own builder only takes the archive cifar-10-binary.tar.gz. This subclass has the same
name, version, features, splits and label names (so it prepares the very same dataset), and
when the manual directory holds `cifar-10-batches-bin/` instead, it checks each file's sha256
and reads the batches from there. Otherwise it defers to tfds (archive in the manual
directory, or a normal download).
"""
from __future__ import annotations

import os
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath

from zoo.artifact import sha256_file
from zoo.data.labels import CIFAR10 as LABEL_NAMES

EXTRACTED_FOLDER = "cifar-10-batches-bin"
EXTRACTED_SHA256 = {  # the official binary version's files
    "data_batch_1.bin": "cee916563c9f80d84e3cc88e17fdc0941787f1244f00a67874d45b261883ada5",
    "data_batch_2.bin": "a591ca11fa1708a91ee40f54b3da4784ccd871ecf2137de63f51ada8b3fa57ed",
    "data_batch_3.bin": "bbe8596564c0f86427f876058170b84dac6670ddf06d79402899d93ceea26f67",
    "data_batch_4.bin": "014e562d6e23c72197cc727519169a60359f5eccd8945ad5a09d710285ff4e48",
    "data_batch_5.bin": "755304fc0b379caeae8c14f0dac912fbc7d6cd469eb67a1029a08a39453a9add",
    "test_batch.bin": "8e2eb146ae340b09e24670f29cabc6326dba54da8789dab6768acf480273f65b",
    "batches.meta.txt": "558e74b5e208382e186da55784b4bac2cd52e558448e1b5800990fdb28ed8033",
}


class Cifar10(tfds.image_classification.Cifar10, skip_registration=True):  # type: ignore[call-arg]
    """CIFAR-10 from the archive (tfds) or from the extracted batches (checked here)."""

    def _info(self):
        info = super()._info()
        info.features["label"].names = list(LABEL_NAMES)
        return info

    def _split_generators(self, dl_manager):
        folder = _extracted_folder(dl_manager)
        if folder is None:
            return super()._split_generators(dl_manager)
        verify_extracted(folder)
        info = self._cifar_info
        with epath.Path(folder / "batches.meta.txt").open() as handle:
            names = tuple(name for name in handle.read().split("\n") if name)
        if names != LABEL_NAMES:
            raise ValueError(f"CIFAR-10 {folder / 'batches.meta.txt'} names {names}, expected {LABEL_NAMES}")
        return {
            tfds.Split.TRAIN: self._generate_examples("train_", [str(folder / f) for f in info.train_files]),
            tfds.Split.TEST: self._generate_examples("test_", [str(folder / f) for f in info.test_files]),
        }


def _extracted_folder(dl_manager) -> Path | None:
    manual_dir = getattr(dl_manager, "_manual_dir", None)
    if not manual_dir:
        return None
    folder = Path(os.fspath(manual_dir)) / EXTRACTED_FOLDER
    archive = Path(os.fspath(manual_dir)) / "cifar-10-binary.tar.gz"
    return folder if folder.is_dir() and not archive.exists() else None


def verify_extracted(folder: Path, expected: dict[str, str] = EXTRACTED_SHA256) -> None:
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise ValueError(f"CIFAR-10 file {str(path)!r} is missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ValueError(f"CIFAR-10 file {str(path)!r} has sha256 {actual}, expected {digest}")
