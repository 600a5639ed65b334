"""Word-level language models (SimpleRNN, LSTM, GRU): token ids int32 [N, T] -> next-token
logits float32 [N, T, V]. The exported artifact's text signatures over the same layers are in
zoo.serving.language.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import keras
from keras import ops

from zoo.models.recurrent import HOISTED_LAYERS
from zoo.models.rnn_regularizers import WEIGHT_DROP_LAYERS, ActivationPenalty, EmbeddingDropout, locked_dropout

CELLS = ("rnn", "lstm", "gru")


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    """Embedding -> num_layers recurrent layers -> logits over the vocabulary.

    dropout is applied between recurrent layers and before the output layer, input_dropout
    (default: dropout) to the embeddings: non-recurrent connections only, as in Zaremba et al.
    2014. tie_embeddings reuses the embedding matrix as the output layer (Press & Wolf 2017); it
    needs hidden_units == embedding_dim.

    AWD-LSTM's regularisers (zoo.models.rnn_regularizers; all off by default, none adds a weight
    or acts at inference): locked_dropout draws those dropout masks once per sequence;
    embedding_dropout drops whole words; weight_drop is DropConnect on the recurrent kernels;
    activation_penalty (AR, alpha) and temporal_activation_penalty (TAR, beta) penalise the last
    layer's outputs.
    """

    cell: str = "lstm"  # rnn | lstm | gru
    vocab_size: int = 10_000
    embedding_dim: int = 256
    hidden_units: int = 256
    num_layers: int = 2
    dropout: float = 0.3
    tie_embeddings: bool = True
    # Embeddings start uniform in [-r, r]. Keras' default (0.05) feeds the first recurrent layer
    # such small inputs that a 2-layer model lingers near the unigram distribution for an epoch.
    embedding_init_range: float = 0.1
    input_dropout: float | None = None
    locked_dropout: bool = False
    embedding_dropout: float = 0.0
    weight_drop: float = 0.0
    activation_penalty: float = 0.0
    temporal_activation_penalty: float = 0.0


def check_config(config: LanguageModelConfig) -> None:
    if not isinstance(config, LanguageModelConfig):
        raise TypeError(f"expected a LanguageModelConfig, got {type(config).__name__}")
    if config.cell not in CELLS:
        raise ValueError(f"cell must be one of {CELLS}, got {config.cell!r}")
    for field in ("vocab_size", "embedding_dim", "hidden_units", "num_layers"):
        value = getattr(config, field)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{field} must be a positive int, got {value!r}")
    if config.vocab_size < 2:
        raise ValueError(f"vocab_size must be at least 2 (<unk> and <eos>), got {config.vocab_size}")
    for field in ("dropout", "embedding_dropout", "weight_drop") + (("input_dropout",) if config.input_dropout
                                                                    is not None else ()):
        value = getattr(config, field)
        if not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
            raise ValueError(f"{field} must be in [0, 1), got {value!r}")
    for field in ("activation_penalty", "temporal_activation_penalty"):
        value = getattr(config, field)
        if not (isinstance(value, (int, float)) and value >= 0):
            raise ValueError(f"{field} must be a number >= 0, got {value!r}")
    if not isinstance(config.locked_dropout, bool):
        raise ValueError(f"locked_dropout must be True or False, got {config.locked_dropout!r}")
    if not (isinstance(config.embedding_init_range, float) and config.embedding_init_range > 0):
        raise ValueError(f"embedding_init_range must be a positive float, got {config.embedding_init_range!r}")
    if config.tie_embeddings and config.hidden_units != config.embedding_dim:
        raise ValueError("tie_embeddings needs hidden_units == embedding_dim, got "
                         f"{config.hidden_units} and {config.embedding_dim}")


def state_size(config: LanguageModelConfig) -> int:
    """S of the `step` signature: every layer's state concatenated (LSTM layers have h and c)."""
    return config.num_layers * config.hidden_units * (2 if config.cell == "lstm" else 1)


@keras.saving.register_keras_serializable(package="zoo")  # so .keras files of zoo models load
class ReversibleEmbedding(keras.layers.Embedding):
    """An embedding whose matrix [V, E] also maps vectors back to logits: call(x, reverse=True)
    gives x @ embeddings^T + output_bias, so input and output embeddings are tied."""

    def build(self, input_shape=None):
        if self.built:
            return
        super().build(input_shape)
        self.output_bias = self.add_weight(shape=(self.input_dim,), initializer="zeros", name="output_bias")

    def call(self, inputs, reverse: bool = False):
        if not reverse:
            return super().call(inputs)
        if keras.backend.backend() != "tensorflow":
            return ops.matmul(inputs, ops.transpose(self.embeddings)) + self.output_bias  # [..., V]
        import tensorflow as tf

        # The variables as read in a call (in the compute dtype under mixed precision) and the
        # logits' dtype, as ops.matmul(inputs, ops.transpose(embeddings)) + bias would give.
        # [M, E] x [V, E]^T as one matmul reading the matrix transposed: its gradient comes out
        # [V, E], where ops.transpose's would be [E, V] and then transposed (a 12.8 MB copy in
        # each of lstm_ptb's train steps).
        embeddings, bias = ops.convert_to_tensor(self.embeddings), ops.convert_to_tensor(self.output_bias)
        dtype = keras.backend.result_type(inputs.dtype, embeddings.dtype, bias.dtype)
        flat = tf.reshape(ops.cast(inputs, dtype), [-1, inputs.shape[-1]])  # [M, E]
        logits = tf.matmul(flat, ops.cast(embeddings, dtype), transpose_b=True)  # [M, V]
        logits = tf.nn.bias_add(logits, ops.cast(bias, dtype))
        logits = tf.reshape(logits, tf.concat([tf.shape(inputs)[:-1], [self.input_dim]], 0))
        logits.set_shape([*inputs.shape[:-1], self.input_dim])
        return logits  # [..., V]

    # keras.layers.Embedding saves only its matrix; save and load every variable (matrix, then
    # output bias) the generic way, so .weights.h5 files and checkpoints keep the bias.
    def save_own_variables(self, store):
        keras.layers.Layer.save_own_variables(self, store)

    def load_own_variables(self, store):
        keras.layers.Layer.load_own_variables(self, store)

    def compute_output_spec(self, inputs, reverse: bool = False):
        if not reverse:
            return super().compute_output_spec(inputs)
        return keras.KerasTensor((*inputs.shape[:-1], self.input_dim), dtype=self.compute_dtype)


def _recurrent_layer(config: LanguageModelConfig, index: int, stateful: bool,
                     hoist_inputs: bool = True) -> keras.layers.RNN:
    options: dict[str, Any] = dict(units=config.hidden_units, return_sequences=True, return_state=True,
                                   stateful=stateful, hoist_inputs=hoist_inputs, name=f"{config.cell}_{index + 1}")
    if config.weight_drop:
        options["weight_drop"] = config.weight_drop
    layer = (WEIGHT_DROP_LAYERS if config.weight_drop else HOISTED_LAYERS)[config.cell]
    if config.cell == "rnn":
        return layer(**options)
    # The exported (stateless) model never takes the cuDNN path, so its graph runs anywhere; the
    # stateful training twin may use cuDNN on a GPU (same weights, same maths), unless weight drop
    # needs the cell run step by step.
    return layer(**options, use_cudnn="auto" if stateful and not config.weight_drop else False)


def _dropout(config: LanguageModelConfig, rate: float, width: int, name: str) -> keras.layers.Dropout:
    return locked_dropout(rate, width, name) if config.locked_dropout else keras.layers.Dropout(rate, name=name)


def _build_language_model(config: LanguageModelConfig, name: str, batch_size: int | None = None,
                          stateful: bool = False, hoist_inputs: bool = True) -> keras.Model:
    """token_ids int32 [N, T] -> logits float32 [N, T, V]. stateful=True (training only) needs a
    fixed batch_size and carries each row's state from one batch to the next. hoist_inputs=False
    runs Keras' own recurrent loop (zoo.models.recurrent)."""
    check_config(config)
    if stateful and not batch_size:
        raise ValueError("a stateful model needs a fixed batch_size")
    token_ids = keras.Input(batch_shape=(batch_size, None), dtype="int32", name="token_ids")
    embedding_type = ReversibleEmbedding if config.tie_embeddings else keras.layers.Embedding
    initializer = keras.initializers.RandomUniform(-config.embedding_init_range, config.embedding_init_range)
    embedding = embedding_type(config.vocab_size, config.embedding_dim, embeddings_initializer=initializer,
                               name="embedding")
    x = embedding(token_ids)  # [N, T, E]
    if config.embedding_dropout:
        x = EmbeddingDropout(config.vocab_size, config.embedding_dropout, name="word_dropout")([token_ids, x])
    input_dropout = config.dropout if config.input_dropout is None else config.input_dropout
    x = _dropout(config, input_dropout, config.embedding_dim, "embedding_dropout")(x)
    for index in range(config.num_layers):
        raw = _recurrent_layer(config, index, stateful, hoist_inputs)(x)[0]  # sequence [N, T, H]; states dropped
        x = _dropout(config, config.dropout, config.hidden_units, f"dropout_{index + 1}")(raw)
    if config.activation_penalty or config.temporal_activation_penalty:
        x = ActivationPenalty(config.activation_penalty, config.temporal_activation_penalty,
                              name="activation_penalty")([raw, x])
    if config.tie_embeddings:
        logits = embedding(x, reverse=True)
    else:
        logits = keras.layers.Dense(config.vocab_size, name="logits")(x)  # [N, T, V]
    return keras.Model(token_ids, logits, name=name)


# The registered models: width-d tied embeddings and recurrent layers of the same width.
RNN_PTB_CONFIG = LanguageModelConfig(cell="rnn", embedding_dim=300, hidden_units=300, num_layers=1, dropout=0.5)
# lstm_ptb: AWD-LSTM's regularisers (Merity et al. 2017) at 2x320, under 5M parameters.
LSTM_PTB_CONFIG = LanguageModelConfig(cell="lstm", embedding_dim=320, hidden_units=320, num_layers=2, dropout=0.3,
                                      input_dropout=0.4, locked_dropout=True, embedding_dropout=0.1,
                                      weight_drop=0.3, activation_penalty=2.0, temporal_activation_penalty=1.0)
GRU_PTB_CONFIG = LanguageModelConfig(cell="gru", embedding_dim=256, hidden_units=256, num_layers=2, dropout=0.3)


def _check_cell(config: LanguageModelConfig, cell: str) -> None:
    if isinstance(config, LanguageModelConfig) and config.cell != cell:
        raise ValueError(f"this builder makes {cell!r} models, got a config with cell={config.cell!r}")


def build_rnn_ptb(config: LanguageModelConfig = RNN_PTB_CONFIG) -> keras.Model:
    """SimpleRNN (Elman) language model."""
    _check_cell(config, "rnn")
    return _build_language_model(config, "rnn_ptb")


def build_lstm_ptb(config: LanguageModelConfig = LSTM_PTB_CONFIG) -> keras.Model:
    """LSTM language model."""
    _check_cell(config, "lstm")
    return _build_language_model(config, "lstm_ptb")


def build_gru_ptb(config: LanguageModelConfig = GRU_PTB_CONFIG) -> keras.Model:
    """GRU language model."""
    _check_cell(config, "gru")
    return _build_language_model(config, "gru_ptb")


def build_stateful(config: LanguageModelConfig, batch_size: int, name: str, hoist_inputs: bool = True) -> keras.Model:
    """The training twin of a registered model: same layers and weights, fixed batch size,
    state carried across batches (reset it with `reset_states`)."""
    return _build_language_model(config, name, batch_size=batch_size, stateful=True, hoist_inputs=hoist_inputs)


def reset_states(model: keras.Model) -> None:
    for layer in recurrent_layers(model):
        layer.reset_states()


def recurrent_layers(model: keras.Model) -> list[keras.layers.RNN]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]
