"""Train -> evaluate on the full test split -> export, for one registered model."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Mapping

import keras
import tensorflow as tf

from training import distribute, loop
from training.recipes import Recipe, resolve
from zoo import registry
from zoo.data.images import dataset_checksums, image_pipeline, load_images
from zoo.evaluation import image_accuracy
from zoo.export import export, signature_doc

EVAL_BATCH = 500


def train(name: str, overrides: Mapping[str, Any] | None = None, data_dir=None,
          destination: Path | None = None, work_dir: Path | None = None,
          strategy: tf.distribute.Strategy | None = None, verbose: int | str = "auto") -> Path | None:
    """Train the registered model `name` and export it; returns the artifact folder (None on a
    multi-worker run's non-chief workers, which only train)."""
    spec = registry.get(name)
    recipe = resolve(spec, overrides)
    keras.utils.set_random_seed(recipe.seed)
    work_dir = Path(work_dir or loop.CHECKPOINT_ROOT / name)
    started = time.perf_counter()
    if spec.task != "image":
        from training.language_task import train_language_model
        return train_language_model(spec, recipe, data_dir, destination, work_dir, strategy, verbose)
    model, metrics, history = train_image_model(spec, recipe, data_dir, work_dir, strategy, verbose)
    card = make_card(spec, recipe, model, metrics, history, time.perf_counter() - started,
                     extra={"distribute": type(strategy).__name__ if strategy else "none"})
    if not distribute.is_chief():
        return None  # in multi-worker training only the chief writes the artifact
    path = export(model, spec, card, destination)
    loop.clear_checkpoints(work_dir)
    return path


def train_image_model(spec, recipe: Recipe, data_dir, work_dir: Path, strategy, verbose):
    if strategy is not None and recipe.optimizer == "perceptron":
        # Its update rule assigns to the weights inside train_step, which the replicated and
        # multi-worker paths bypass (they apply gradients of a loss).
        raise ValueError(f"{spec.name} learns by the perceptron rule on one device; distributed "
                         f"training (got {type(strategy).__name__}) covers gradient-trained models")
    num_classes = len(spec.label_names)

    def one_hot(images, labels):
        return images, tf.one_hot(labels, num_classes)

    train_raw = load_images(spec.dataset, "train", data_dir)
    test_raw = load_images(spec.dataset, "test", data_dir)
    # A resumed run continues with fresh epochs of order and augmentation, not a replay of epoch 1.
    data_seed = recipe.seed + loop.completed_epochs(work_dir)
    train_data = image_pipeline(train_raw, recipe.batch_size, True, recipe.augment, data_seed).map(one_hot)
    test_data = image_pipeline(test_raw, EVAL_BATCH, False)
    steps = loop.steps_for(int(train_raw.cardinality()), recipe.batch_size)
    with (strategy or tf.distribute.get_strategy()).scope():
        model = spec.build()
        compile_image_model(model, recipe, steps)
    if distribute.is_multi_worker(strategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing,
                                                    reduction=None)
        history = distribute.custom_fit(model, loss, train_data.with_options(options), recipe.epochs, steps,
                                        strategy, recipe.batch_size)
        loop.check_finite(model, history, work_dir)
    else:
        history = loop.fit(model, recipe, train_data, test_data.map(one_hot), work_dir, verbose=verbose)

    def classify(images):
        return tf.argmax(model(images, training=False), axis=-1)

    metrics = {
        "test_accuracy": {**image_accuracy(classify, test_data), "split": "test"},
        "train_accuracy": {**image_accuracy(classify, image_pipeline(train_raw, EVAL_BATCH, False)),
                           "split": "train"},
    }
    return model, metrics, history


def compile_image_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    if recipe.optimizer == "perceptron":  # the model's train_step applies the perceptron rule
        from zoo.models.perceptron import perceptron_criterion
        model.compile(loss=perceptron_criterion, metrics=[accuracy])
        return
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)
    # Keras compiles train steps with XLA by default. On this 2-core CPU, with another training run
    # on the cores, XLA steps ran 2x slower than TensorFlow's own (oneDNN) kernels for ResNet-20,
    # cnn_cifar10 and cnn_mnist and 5.8x for mlp_mnist (steps timed alternately in one process;
    # linear_mnist 0.73x, a one-minute run either way). With the cores to itself, ResNet-20's fit
    # epoch took the same time either way (132 s XLA, 134 s without). `make bench` compares them.
    model.compile(optimizer=loop.make_optimizer(recipe, steps_per_epoch), loss=loss, metrics=[accuracy],
                  jit_compile=False)


def make_card(spec, recipe: Recipe, model: keras.Model, metrics: dict, history: dict,
              wall_seconds: float, extra: dict | None = None) -> dict:
    import tensorflow_datasets as tfds

    dataset_card = {"name": spec.dataset, "files_sha256": dataset_files_sha256(spec.dataset)}
    if spec.dataset in tfds.list_builders():
        dataset_card["version"] = str(tfds.builder(spec.dataset).info.version)
    return {
        "name": spec.name,
        "task": spec.task,
        "description": spec.description,
        "metrics": metrics,
        "bar": {"metric": spec.metric, "value": spec.bar},
        "reference": spec.reference,
        "parameter_count": int(model.count_params()),
        "label_names": list(spec.label_names),
        "model_config": _plain(dataclasses.asdict(spec.config)),
        "recipe": _plain(dataclasses.asdict(recipe)),
        "dataset": dataset_card,
        "preprocessing": spec_preprocessing(spec),
        "signatures": signature_doc(spec, model),
        "training": {
            "command": f"make train-{spec.name}",
            "epochs_run": len(history.get("epoch", [])),
            "wall_time_seconds": round(history.get("elapsed_seconds", [wall_seconds])[-1], 1),
            "hardware": loop.hardware_summary(),
            "history": history,
        },
        "versions": loop.library_versions(),
        "created": loop.utc_now(),
        **(extra or {}),
    }


def dataset_files_sha256(name: str) -> dict[str, str]:
    """file name -> sha256 of the official files tfds verifies for this dataset."""
    if name == "ptb":
        from zoo.data.ptb import dataset_checksums as ptb_checksums
        return ptb_checksums()
    return dataset_checksums(name)


def spec_preprocessing(spec) -> str:
    if spec.task == "image":
        config = spec.config
        text = "uint8 pixels -> float32 / 255"
        if getattr(config, "mean", None):
            text += f" -> (x - mean) / std per channel, mean={list(config.mean)}, std={list(config.std)}"
        return text + " (inside the graph)"
    return ("lower-case; split into lines, skipping empty ones; split on whitespace; unknown words -> <unk>; "
            "<eos> fed first, and after each line (inside the graph)")


def _plain(value):
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value
