"""Language models: truncated-BPTT training on PTB with the state carried across batches,
perplexity through the artifact's `score` signature, export.

Training uses a stateful twin of the registered model (same layers, fixed batch size): the token
stream is cut into `batch_size` parallel streams and batch i+1 continues batch i in every row
(zoo.data.ptb.stream_batches), so each row's state flows on across `sequence_length`-token
windows; gradients stop at window boundaries. The state is zeroed at the start of every epoch
and of every validation pass. The trained weights are then copied into the registered,
batch-agnostic model, which is what gets evaluated and exported.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Mapping, Sequence

import keras
import tensorflow as tf

from training import averaging, cards, loop
from training.recipes import Recipe
from zoo import metrics
from zoo.data import ptb, text
from zoo.export import export
from zoo.models import language
from zoo.registry import ModelSpec
from zoo.serving import language as serving

# Card metric key -> split, in the card's order (the test metric first).
EVALUATED_SPLITS = {"test_perplexity": "test", "validation_perplexity": "validation"}


@tf.custom_gradient
def _token_cross_entropy(labels, logits):
    """labels int [M] in [0, V) (ids of the model's vocabulary), logits float32 [M, V] ->
    -log softmax(logits)[label] [M]. On the CPU TensorFlow's fused kernel for this took twice as
    long for lstm_ptb's logits; these are multi-threaded passes over them."""
    shifted = logits - tf.reduce_max(logits, -1, keepdims=True)
    exponentials = tf.exp(shifted)  # [M, V]
    sums = tf.reduce_sum(exponentials, -1, keepdims=True)  # [M, 1]
    losses = tf.math.log(sums[:, 0]) - tf.gather(shifted, labels, batch_dims=1)  # [M]

    def gradient(upstream):  # [M] -> d/dlogits = (softmax - one_hot(label)) * upstream, [M, V]
        scaled = exponentials * (upstream[:, None] / sums)
        label_entries = tf.stack([tf.range(tf.shape(labels, out_type=labels.dtype)[0]), labels], 1)
        return None, tf.tensor_scatter_nd_sub(scaled, label_entries, upstream)
    return losses, gradient


class TokenCrossEntropy(keras.losses.Loss):
    """keras.losses.SparseCategoricalCrossentropy(from_logits=True) for labels [N, T] and logits
    [N, T, V] (cast to the loss dtype, float32), by _token_cross_entropy on TensorFlow."""

    def __init__(self, name: str = "sparse_categorical_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if keras.backend.backend() != "tensorflow":
            return keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
        vocabulary = y_pred.shape[-1] or tf.shape(y_pred)[-1]
        labels = tf.reshape(tf.cast(y_true, tf.int32), [-1])  # [M]
        losses = _token_cross_entropy(labels, tf.reshape(y_pred, [-1, vocabulary]))
        return tf.reshape(losses, tf.shape(y_pred)[:-1])  # [N, T]


class CarriedState(keras.callbacks.Callback):
    """Zeroes the carried state at every epoch and validation start; logs perplexity =
    exp(mean token cross-entropy) for training and validation."""

    def on_epoch_begin(self, epoch, logs=None):
        language.reset_states(self.model)

    def on_test_begin(self, logs=None):
        language.reset_states(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for loss_key in ("loss", "val_loss"):
            if loss_key in logs:
                logs[loss_key.replace("loss", "perplexity")] = math.exp(min(float(logs[loss_key]), 50.0))


def train(spec: ModelSpec, recipe: Recipe, data_dir, destination: Path | None, work_dir: Path,
          strategy: tf.distribute.Strategy | None, verbose) -> Path:
    """Train the registered language model `spec` on PTB and export it; returns the artifact folder."""
    lines = {split: ptb.load_lines(split, data_dir) for split in ptb.SPLITS}
    return train_on_lines(spec, recipe, lines, destination, work_dir, strategy, verbose)


def fit_and_measure(spec: ModelSpec, recipe: Recipe, data_dir, work_dir: Path, verbose) -> dict:
    """Train without exporting; the final weights' validation perplexity (the test split is
    left alone: paper-schedule runs compare on validation)."""
    lines = {split: ptb.load_lines(split, data_dir) for split in ("train", "validation")}
    model, _ = fit_language_model(spec, recipe, lines, text.build_vocabulary(lines["train"]), work_dir, None, verbose)
    return perplexities(model, {"validation": lines["validation"]}, work_dir)


def train_on_lines(spec, recipe: Recipe, lines: Mapping[str, Sequence[str]], destination: Path | None,
                   work_dir: Path, strategy: tf.distribute.Strategy | None = None, verbose="auto") -> Path:
    """The whole run on given split -> lines (train, validation, test): vocabulary from the
    training lines, fit, perplexities through `score`, card, export, checkpoints removed."""
    started = time.perf_counter()
    vocabulary = text.build_vocabulary(lines["train"])
    model, history = fit_language_model(spec, recipe, lines, vocabulary, work_dir, strategy, verbose)
    measured = perplexities(model, {split: lines[split] for split in EVALUATED_SPLITS.values()}, work_dir)
    card = cards.make_card(spec, recipe, model, measured, history, time.perf_counter() - started,
                           extra=card_extra(spec, vocabulary), destination=destination)
    path = export(model, spec, card, destination)
    loop.clear_checkpoints(work_dir)
    return path


def fit_language_model(spec, recipe: Recipe, lines, vocabulary: list[str], work_dir: Path,
                       strategy, verbose) -> tuple[keras.Model, dict]:
    """Fit the stateful twin; returns the registered model holding its weights, and the history."""
    if len(vocabulary) != spec.config.vocab_size:
        raise ValueError(f"the training split has {len(vocabulary)} words; {spec.name} expects "
                         f"vocab_size={spec.config.vocab_size}")
    strategy = strategy or tf.distribute.get_strategy()
    if strategy.num_replicas_in_sync > 1:
        raise ValueError("language models train on one device: splitting a batch across replicas "
                         "would break the state carried from one batch to the next")
    train_data, validation_data = (
        ptb.stream_batches(text.token_ids(lines[split], vocabulary), recipe.batch_size, recipe.sequence_length)
        for split in ("train", "validation"))
    with strategy.scope():
        twin = compiled_twin(spec, recipe, int(train_data.cardinality()))
    callbacks: list[keras.callbacks.Callback] = [CarriedState()]
    if recipe.averaging == "nt_asgd":
        log_path = Path(work_dir) / loop.LOG_FILE
        callbacks.append(averaging.NonMonotonicTrigger(
            recipe.averaging_patience, lambda: loop.read_history(log_path).get("val_loss", []) if log_path.exists()
            else [], latest_epoch=recipe.averaging_start_epoch))
    history = loop.fit(twin, recipe, train_data.prefetch(tf.data.AUTOTUNE), validation_data, work_dir,
                       verbose=verbose, callbacks=tuple(callbacks))
    model = spec.build()
    model.set_weights(twin.get_weights())  # the same layers in the same order; states are not weights
    return serving.set_vocabulary(model, vocabulary), history


def compiled_twin(spec, recipe: Recipe, steps_per_epoch: int, hoist_inputs: bool = True) -> keras.Model:
    """The stateful training twin of `spec`, compiled with the recipe's optimizer (hoist_inputs:
    see zoo.models.recurrent)."""
    with loop.precision(recipe.precision):
        twin = language.build_stateful(spec.config, recipe.batch_size, spec.name, hoist_inputs)
    twin.compile(optimizer=loop.make_optimizer(recipe, steps_per_epoch),
                 loss=TokenCrossEntropy(), jit_compile=recipe.jit_compile)
    return twin


def perplexities(model: keras.Model, texts: Mapping[str, Sequence[str]], work_dir: Path) -> dict:
    """Card metrics: each split's lines scored as one string by the artifact's `score` function."""
    vocabulary_file = serving.write_vocabulary(serving.model_vocabulary(model), Path(work_dir) / "vocab.txt")
    score = serving.LanguageServing(model, vocabulary_file).functions()["score"]
    return {key: metrics.perplexity(score, text.as_text(texts[split]), split)
            for key, split in EVALUATED_SPLITS.items() if split in texts}


def card_extra(spec, vocabulary: list[str]) -> dict:
    return {
        "state_size": language.state_size(spec.config),
        "vocabulary": {"file": f"assets/{serving.VOCABULARY_ASSET}", "size": len(vocabulary),
                       "order": "training-split frequency, most frequent first; ties by code point",
                       "unknown_word": text.UNK, "end_of_line": text.EOS},
    }
