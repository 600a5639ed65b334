"""Image models: train on the tfds split, accuracy on the full test split, export."""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import keras
import tensorflow as tf

from training import airbench, cards, distribute, loop
from training.bench.flops import forward_flops
from training.recipes import HOLDOUT_EXAMPLES, Recipe
from zoo import metrics
from zoo.data.images import alternating_flip_pipeline, image_pipeline, load_images
from zoo.export import export
from zoo.models.perceptron import perceptron_criterion
from zoo.registry import ModelSpec

EVAL_BATCH = 500
# The card's account of when the test split was read (recipe.validation; holdout runs are not exported).
EVALUATION = {"test": "the test split every epoch (per-epoch validation) and after training",
              "none": "the test split once, after training (choices: python -m training.ablation, on the "
                      "last 5,000 training images: reports/ablation/)"}


def train(spec: ModelSpec, recipe: Recipe, data_dir, destination: Path | None, work_dir: Path,
          strategy: tf.distribute.Strategy | None, verbose) -> Path | None:
    """Train, evaluate and export `spec`; None on a multi-worker run's non-chief workers."""
    if recipe.validation == "holdout":
        raise ValueError("validation=holdout trains on part of the training split for choosing a recipe and "
                         "never reads the test split, so it is not exported: run it with python -m training.ablation")
    started = time.perf_counter()
    model, measured, history, compute = train_image_model(spec, recipe, data_dir, work_dir, strategy, verbose)
    card = cards.make_card(spec, recipe, model, measured, history, time.perf_counter() - started,
                           extra={"distribute": type(strategy).__name__ if strategy else "none",
                                  "training_flops": compute, "evaluation": EVALUATION[recipe.validation]},
                           destination=destination)
    if not distribute.is_chief():
        return None  # in multi-worker training only the chief writes the artifact
    path = export(model, spec, card, destination)
    loop.clear_checkpoints(work_dir)
    return path


def fit_and_measure(spec: ModelSpec, recipe: Recipe, data_dir, work_dir: Path, verbose) -> dict:
    """Train without exporting; the final weights' test (or holdout) and train accuracy."""
    return train_image_model(spec, recipe, data_dir, work_dir, None, verbose)[1]


def train_image_model(spec, recipe: Recipe, data_dir, work_dir: Path, strategy, verbose):
    """(the model to export, its metrics, the history, the training compute). A model whose config
    has test-time augmentation (tta_level) trains without it, and a mixed-precision recipe trains in
    bfloat16; the exported model, float32 with its views, gets the weights."""
    if strategy is not None and recipe.optimizer == "perceptron":
        # Its update rule assigns to the weights inside train_step, which the replicated and
        # multi-worker paths bypass (they apply gradients of a loss).
        raise ValueError(f"{spec.name} learns by the perceptron rule on one device; distributed "
                         f"training (got {type(strategy).__name__}) covers gradient-trained models")
    if strategy is not None and _needs_single_process(recipe):
        raise ValueError(f"{spec.name}'s recipe acts between steps (lookahead, whitening, alternating flips), "
                         f"which distributed training (got {type(strategy).__name__}) does not run")
    num_classes = len(spec.label_names)

    def one_hot(images, labels):
        return images, tf.one_hot(labels, num_classes)

    train_raw, validation_raw, validation_split = _splits(spec, recipe, data_dir)
    train_count = int(train_raw.cardinality())
    steps = loop.steps_for(train_count, recipe.batch_size)
    completed = loop.completed_epochs(work_dir)
    if recipe.augment == "alternating_flip_translate":  # needs each batch's epoch: one stream for the run
        train_data = alternating_flip_pipeline(train_raw, recipe.batch_size, recipe.seed, completed, recipe.epochs)
        steps_per_epoch: int | None = steps
    else:
        # A resumed run continues with fresh epochs of order and augmentation, not a replay of epoch 1.
        train_data = image_pipeline(train_raw, recipe.batch_size, True, recipe.augment, recipe.seed + completed,
                                    recipe.affine())
        steps_per_epoch = None
    train_data = train_data.map(one_hot)
    validation_data = image_pipeline(validation_raw, EVAL_BATCH, False)
    tta_level = getattr(spec.config, "tta_level", 0)
    with (strategy or tf.distribute.get_strategy()).scope(), loop.precision(recipe.precision):
        model = spec.build(dataclasses.replace(spec.config, tta_level=0) if tta_level else spec.config)
        compile_image_model(model, recipe, steps)
    if completed == 0 and airbench.whitening_layers(model):
        airbench.init_whitening(model, next(iter(train_raw.take(airbench.WHITENING_IMAGES).batch(
            airbench.WHITENING_IMAGES)))[0].numpy())
    if distribute.is_multi_worker(strategy):
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing,
                                                    reduction=None)
        history = distribute.custom_fit(model, loss, train_data.with_options(options), recipe.epochs, steps,
                                        strategy, recipe.batch_size)
        loop.check_finite(model, history, work_dir)
    else:
        validation = None if recipe.validation == "none" else validation_data.map(one_hot)
        history = loop.fit(model, recipe, train_data, validation, work_dir, steps_per_epoch=steps_per_epoch,
                           verbose=verbose, callbacks=_callbacks(recipe, steps))
    trained, final = model, model
    if tta_level or recipe.precision != "float32":  # the exported model: float32, with its views
        final = spec.build()
        final.set_weights(model.get_weights())

    def classify(network):
        return lambda images: tf.argmax(network(images, training=False), axis=-1)

    measured = {f"{validation_split}_accuracy": {**metrics.image_accuracy(classify(final), validation_data),
                                                 "split": validation_split}}
    if tta_level:
        measured[f"{validation_split}_accuracy_without_tta"] = {
            **metrics.image_accuracy(classify(trained), validation_data), "split": validation_split}
    measured["train_accuracy"] = {**metrics.image_accuracy(classify(trained), image_pipeline(
        train_raw, EVAL_BATCH, False)), "split": "train"}
    return final, measured, history, training_flops(trained, history, steps * recipe.batch_size)


def _splits(spec, recipe: Recipe, data_dir):
    """(training data, evaluation data, its split name): the test split, or for validation=holdout
    the last HOLDOUT_EXAMPLES training images (the test split is then never read)."""
    train_raw = load_images(spec.dataset, "train", data_dir)
    if recipe.validation != "holdout":
        return train_raw, load_images(spec.dataset, "test", data_dir), "test"
    count = int(train_raw.cardinality())
    if count <= HOLDOUT_EXAMPLES:
        raise ValueError(f"validation=holdout needs more than {HOLDOUT_EXAMPLES} training examples, got {count}")
    return train_raw.take(count - HOLDOUT_EXAMPLES), train_raw.skip(count - HOLDOUT_EXAMPLES), "validation"


def _needs_single_process(recipe: Recipe) -> bool:
    return bool(recipe.lookahead_every or recipe.freeze_whitening_bias_after
                or recipe.augment == "alternating_flip_translate")


def _callbacks(recipe: Recipe, steps_per_epoch: int) -> tuple[keras.callbacks.Callback, ...]:
    callbacks: list[keras.callbacks.Callback] = []
    if recipe.freeze_whitening_bias_after:
        callbacks.append(airbench.FreezeWhiteningBias(recipe.freeze_whitening_bias_after))
    if recipe.lookahead_every:
        callbacks.append(airbench.Lookahead(recipe.lookahead_every, recipe.epochs * steps_per_epoch))
    return tuple(callbacks)


def training_flops(model: keras.Model, history: dict, examples_per_epoch: int) -> dict:
    """Training compute as the bench counts it: 3 x the forward FLOPs of one view per example
    (forward and two backward matmuls), times the examples the epochs run saw."""
    epochs = len(history.get("epoch", []))
    per_example = 3 * forward_flops(model)
    return {"total": float(per_example * examples_per_epoch * epochs), "per_example": per_example,
            "examples_seen": examples_per_epoch * epochs}


def compile_image_model(model: keras.Model, recipe: Recipe, steps_per_epoch: int) -> None:
    accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    if recipe.optimizer == "perceptron":  # the model's train_step applies the perceptron rule
        model.compile(loss=perceptron_criterion, metrics=[accuracy])
        return
    loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=recipe.label_smoothing)
    # XLA only where the recipe asks (no image recipe does): on these CPUs its image train steps were
    # up to several times slower than TensorFlow's own oneDNN kernels, never faster (README "Recipe
    # notes"; `make bench`).
    model.compile(optimizer=loop.make_optimizer(recipe, steps_per_epoch), loss=loss, metrics=[accuracy],
                  jit_compile=recipe.jit_compile)
