"""tf.distribute for --distribute: mirrored (one machine, all local devices) and multi_worker
(several machines, TF_CONFIG). Keras 3's fit() fails under MultiWorkerMirroredStrategy
(keras-team/keras#20585), so multi-worker training runs the custom loop below instead."""
from __future__ import annotations

import json
import os

import keras
import tensorflow as tf


def make_strategy(kind: str) -> tf.distribute.Strategy | None:
    if kind == "none":
        return None
    if kind == "mirrored":
        return tf.distribute.MirroredStrategy()
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--distribute multi_worker needs the TF_CONFIG environment variable "
                             "(cluster and this process's task); see the README")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"distribute must be none, mirrored or multi_worker, got {kind!r}")


def split_cpu(count: int = 2) -> None:
    """Expose the CPU as `count` logical devices (before TF initialises) so MirroredStrategy
    has several replicas on a one-CPU machine: how the mirrored path is tested here."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)


def is_multi_worker(strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief() -> bool:
    """The chief (or worker 0 when there is none) writes the artifact; the others only train."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    if not task:
        return True
    if "chief" in config.get("cluster", {}):
        return task.get("type") == "chief"
    return task.get("type") == "worker" and task.get("index", 0) == 0


def custom_fit(model: keras.Model, loss: keras.losses.Loss, train_data: tf.data.Dataset, epochs: int,
               steps_per_epoch: int, strategy: tf.distribute.Strategy, global_batch_size: int) -> dict:
    """Synchronous data-parallel training with strategy.run; returns {"epoch", "loss"} history.
    The model must have been built and compiled (optimizer) under strategy.scope()."""
    distributed = strategy.experimental_distribute_dataset(train_data)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            per_example = loss(labels, logits)  # [B_replica]
            scaled = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        gradients = tape.gradient(scaled, model.trainable_variables)
        model.optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return scaled

    @tf.function
    def train_step(iterator):
        per_replica = strategy.run(replica_step, args=next(iterator))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

    history: dict[str, list[float]] = {"epoch": [], "loss": []}
    for epoch in range(epochs):
        iterator = iter(distributed)
        total = 0.0
        for _ in range(steps_per_epoch):
            total += float(train_step(iterator))
        history["epoch"].append(epoch + 1)
        history["loss"].append(total / steps_per_epoch)
        print(f"epoch {epoch + 1}/{epochs} - loss {history['loss'][-1]:.4f}", flush=True)
    return history
