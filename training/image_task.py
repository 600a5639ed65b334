"""Image models: train on the tfds split, accuracy on the full test split, export."""
from __future__ import annotations

import time
from pathlib import Path

import keras
import tensorflow as tf

from training import cards, distribute, loop
from training.recipes import Recipe
from zoo import metrics
from zoo.data.images import Affine, image_pipeline, load_images
from zoo.export import export
from zoo.models.perceptron import perceptron_criterion
from zoo.registry import ModelSpec

EVAL_BATCH = 500


def train(spec: ModelSpec, recipe: Recipe, data_dir, destination: Path | None, work_dir: Path,
          strategy: tf.distribute.Strategy | None, verbose) -> Path | None:
    """Train, evaluate and export `spec`; None on a multi-worker run's non-chief workers."""
    started = time.perf_counter()
    model, measured, history = train_image_model(spec, recipe, data_dir, work_dir, strategy, verbose)
    card = cards.make_card(spec, recipe, model, measured, history, time.perf_counter() - started,
                           extra={"distribute": type(strategy).__name__ if strategy else "none"})
    if not distribute.is_chief():
        return None  # in multi-worker training only the chief writes the artifact
    path = export(model, spec, card, destination)
    loop.clear_checkpoints(work_dir)
    return path


def fit_and_measure(spec: ModelSpec, recipe: Recipe, data_dir, work_dir: Path, verbose) -> dict:
    """Train without exporting; the final weights' test and train accuracy."""
    return train_image_model(spec, recipe, data_dir, work_dir, None, verbose)[1]


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
    affine = Affine(recipe.affine_rotation, recipe.affine_translation, recipe.affine_scale)
    train_data = image_pipeline(train_raw, recipe.batch_size, True, recipe.augment, data_seed, affine).map(one_hot)
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

    measured = {
        "test_accuracy": {**metrics.image_accuracy(classify, test_data), "split": "test"},
        "train_accuracy": {**metrics.image_accuracy(classify, image_pipeline(train_raw, EVAL_BATCH, False)),
                           "split": "train"},
    }
    return model, measured, history


def compile_image_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    if recipe.optimizer == "perceptron":  # the model's train_step applies the perceptron rule
        model.compile(loss=perceptron_criterion, metrics=[accuracy])
        return
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)
    # No XLA (Keras' default): on these CPUs its train steps were up to several times slower than
    # TensorFlow's own oneDNN kernels, never faster (README "Recipe notes"; `make bench`).
    model.compile(optimizer=loop.make_optimizer(recipe, steps_per_epoch), loss=loss, metrics=[accuracy],
                  jit_compile=False)
