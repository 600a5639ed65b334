"""tf.distribute strategies for --distribute."""
from __future__ import annotations

import tensorflow as tf


def make_strategy(kind: str) -> tf.distribute.Strategy | None:
    if kind == "none":
        return None
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"distribute must be none, mirrored or multi_worker, got {kind!r}")
