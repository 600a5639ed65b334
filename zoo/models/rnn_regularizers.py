"""Regularisers for recurrent language models (Merity et al. 2017, AWD-LSTM), as Keras layers.

Each acts only when called with training=True and adds no weights, so a model built with them
has the same weights, and the same inference graph, as one built without.

- `WeightDropLSTM` / `WeightDropGRU` / `WeightDropSimpleRNN`: DropConnect on the recurrent
  kernel. One mask is drawn per call (a batch of BPTT windows) and used at every time step and
  for every row, as AWD-LSTM does; the input kernel and the recurrent state are untouched.
- `locked_dropout`: ordinary dropout with noise_shape [N, 1, D], one mask per sequence
  (variational dropout, Gal & Ghahramani 2016).
- `EmbeddingDropout`: whole words dropped: every occurrence of a dropped word in the batch gets
  a zero vector, the kept ones are scaled by 1 / (1 - rate).
- `ActivationPenalty`: AR, alpha * mean(dropped output^2), and TAR,
  beta * mean((h_t - h_{t-1})^2) over the undropped output, added as model losses.
"""
from __future__ import annotations

import keras
from keras import ops

from zoo.models import recurrent


class _WeightDrop(keras.layers.RNN):
    """Put before a recurrent layer whose cell has a `recurrent_kernel` [H, G*H] (LSTM, GRU,
    SimpleRNN; zoo.models.recurrent's hoisted ones) in the bases: its call runs theirs with the
    recurrent kernel dropped."""

    def __init__(self, units, weight_drop: float = 0.0, weight_drop_seed: int | None = None, **kwargs):
        super().__init__(units, **kwargs)  # the keras layer after this class in the bases
        if not 0.0 <= weight_drop < 1.0:
            raise ValueError(f"weight_drop must be in [0, 1), got {weight_drop!r}")
        self.weight_drop = weight_drop
        self.weight_drop_seed = weight_drop_seed
        self.seed_generator = keras.random.SeedGenerator(weight_drop_seed)

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if not training or not self.weight_drop:
            return super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        cell = self.cell
        kernel = cell.recurrent_kernel
        # In the compute dtype, as the cell would read the variable (bfloat16 under mixed precision).
        dropped = keras.random.dropout(ops.cast(kernel, cell.compute_dtype), self.weight_drop, seed=self.seed_generator)
        # The cell reads self.recurrent_kernel at every step: for this call it reads the dropped
        # tensor (gradients reach the variable through it). object.__setattr__ keeps Keras'
        # variable tracking out of it, and the variable goes back whatever happens.
        object.__setattr__(cell, "recurrent_kernel", dropped)
        try:
            return super().call(sequences, initial_state=initial_state, mask=mask, training=training)
        finally:
            object.__setattr__(cell, "recurrent_kernel", kernel)

    def get_config(self):
        return {**super().get_config(), "weight_drop": self.weight_drop, "weight_drop_seed": self.weight_drop_seed}


@keras.saving.register_keras_serializable(package="zoo")
class WeightDropLSTM(_WeightDrop, recurrent.LSTM):
    """keras.layers.LSTM with DropConnect on its recurrent kernel in training."""


@keras.saving.register_keras_serializable(package="zoo")
class WeightDropGRU(_WeightDrop, recurrent.GRU):
    """keras.layers.GRU with DropConnect on its recurrent kernel in training."""


@keras.saving.register_keras_serializable(package="zoo")
class WeightDropSimpleRNN(_WeightDrop, recurrent.SimpleRNN):
    """keras.layers.SimpleRNN with DropConnect on its recurrent kernel in training."""


WEIGHT_DROP_LAYERS = {"lstm": WeightDropLSTM, "gru": WeightDropGRU, "rnn": WeightDropSimpleRNN}


def locked_dropout(rate: float, width: int, name: str) -> keras.layers.Dropout:
    """Dropout on [N, T, width] with one mask per sequence, shared by its time steps."""
    return keras.layers.Dropout(rate, noise_shape=(None, 1, width), name=name)


@keras.saving.register_keras_serializable(package="zoo")
class EmbeddingDropout(keras.layers.Layer):
    """[token_ids int [N, T], embedded [N, T, E]] -> embedded with whole words dropped (training)."""

    def __init__(self, vocab_size: int, rate: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"embedding dropout rate must be in [0, 1), got {rate!r}")
        self.vocab_size, self.rate, self.seed = vocab_size, rate, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        token_ids, embedded = inputs
        if not training or not self.rate:
            return embedded
        keep = keras.random.dropout(ops.ones((self.vocab_size,), dtype=embedded.dtype), self.rate,
                                    seed=self.seed_generator)  # [V]: 0 or 1 / (1 - rate)
        return embedded * ops.expand_dims(ops.take(keep, token_ids), -1)  # [N, T, E]

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="zoo")
class ActivationPenalty(keras.layers.Layer):
    """[raw [N, T, H], dropped [N, T, H]] -> dropped; in training adds
    alpha * mean(dropped^2) (AR) + beta * mean((raw_t - raw_{t-1})^2) (TAR) to the model's losses."""

    def __init__(self, alpha: float = 0.0, beta: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if alpha < 0 or beta < 0:
            raise ValueError(f"activation penalties must be >= 0, got alpha={alpha!r}, beta={beta!r}")
        self.alpha, self.beta = alpha, beta

    def call(self, inputs, training=False):
        raw, dropped = inputs
        if training:
            self.add_loss(penalties(raw, dropped, self.alpha, self.beta))
        return dropped

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        return {**super().get_config(), "alpha": self.alpha, "beta": self.beta}


def penalties(raw, dropped, alpha: float, beta: float):
    """AR + TAR for one batch (a float32 scalar: Keras adds it to the float32 loss, also when the
    activations are bfloat16 under mixed precision)."""
    raw, dropped = ops.cast(raw, "float32"), ops.cast(dropped, "float32")
    total = ops.convert_to_tensor(0.0, dtype="float32")
    if alpha:
        total = total + alpha * ops.mean(ops.square(dropped))
    if beta:
        # raw[:, 1:] - raw[:, :-1] as slices: TensorFlow's strided slice (and its gradient) of a
        # middle axis cost ~10% of lstm_ptb's train step on the CPU, its plain slice a fifth of that.
        n, t, h = ops.shape(raw)
        later, earlier = ops.slice(raw, (0, 1, 0), (n, t - 1, h)), ops.slice(raw, (0, 0, 0), (n, t - 1, h))
        total = total + beta * ops.mean(ops.square(later - earlier))  # [N, T - 1, H] differences
    return total
