"""Word-level language models (SimpleRNN, LSTM, GRU) and their text-in-graph SavedModel signatures.

The Keras model maps token ids int32 [N, T] to next-token logits float32 [N, T, V]. The exported
artifact wraps the same layers (one set of variables) in three signatures that take raw text
(see `LanguageServing`): next_word (= serving_default), score and step.

Vocabulary: the builders are pure and know only `vocab_size`; the word list comes from the data
(`zoo.data.ptb.build_vocabulary`) and travels with the trained model: `set_vocabulary(model,
words)` attaches it, `language_archive` writes it to the artifact's assets/vocab.txt (one word
per line, id = line number), and the graph's lookup tables are initialised from that file.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import keras
import tensorflow as tf
from keras import ops

EOS = "<eos>"
UNK = "<unk>"
CELLS = ("rnn", "lstm", "gru")
VOCABULARY_ASSET = "vocab.txt"
TOP_WORDS = 10
# score: logits of at most this many tokens exist at once ([tokens, V] float32: 40 MB at V=10k).
CHUNK_TOKENS = 1024


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    """Embedding -> num_layers recurrent layers -> logits over the vocabulary.

    dropout is applied to the embeddings, between recurrent layers and before the output layer
    (non-recurrent connections only, as in Zaremba et al. 2014). tie_embeddings reuses the
    embedding matrix as the output layer (Press & Wolf 2017); it needs hidden_units ==
    embedding_dim.
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
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config.dropout!r}")
    if not (isinstance(config.embedding_init_range, float) and config.embedding_init_range > 0):
        raise ValueError(f"embedding_init_range must be a positive float, got {config.embedding_init_range!r}")
    if config.tie_embeddings and config.hidden_units != config.embedding_dim:
        raise ValueError("tie_embeddings needs hidden_units == embedding_dim, got "
                         f"{config.hidden_units} and {config.embedding_dim}")


def state_size(config: LanguageModelConfig) -> int:
    """S of the `step` signature: every layer's state concatenated (LSTM layers have h and c)."""
    return config.num_layers * config.hidden_units * (2 if config.cell == "lstm" else 1)


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
        return ops.matmul(inputs, ops.transpose(self.embeddings)) + self.output_bias  # [..., V]

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


def _recurrent_layer(config: LanguageModelConfig, index: int, stateful: bool) -> keras.layers.RNN:
    options = dict(units=config.hidden_units, return_sequences=True, return_state=True,
                   stateful=stateful, name=f"{config.cell}_{index + 1}")
    if config.cell == "rnn":
        return keras.layers.SimpleRNN(**options)
    # The exported (stateless) model never takes the cuDNN path, so its graph runs anywhere; the
    # stateful training twin may use cuDNN on a GPU (same weights, same maths).
    layer = keras.layers.LSTM if config.cell == "lstm" else keras.layers.GRU
    return layer(**options, use_cudnn="auto" if stateful else False)


def _build_language_model(config: LanguageModelConfig, name: str, batch_size: int | None = None,
                          stateful: bool = False) -> keras.Model:
    """token_ids int32 [N, T] -> logits float32 [N, T, V]. stateful=True (training only) needs a
    fixed batch_size and carries each row's state from one batch to the next."""
    check_config(config)
    if stateful and not batch_size:
        raise ValueError("a stateful model needs a fixed batch_size")
    token_ids = keras.Input(batch_shape=(batch_size, None), dtype="int32", name="token_ids")
    embedding_type = ReversibleEmbedding if config.tie_embeddings else keras.layers.Embedding
    initializer = keras.initializers.RandomUniform(-config.embedding_init_range, config.embedding_init_range)
    embedding = embedding_type(config.vocab_size, config.embedding_dim, embeddings_initializer=initializer,
                               name="embedding")
    x = embedding(token_ids)  # [N, T, E]
    x = keras.layers.Dropout(config.dropout, name="embedding_dropout")(x)
    for index in range(config.num_layers):
        x = _recurrent_layer(config, index, stateful)(x)[0]  # sequence [N, T, H]; states dropped
        x = keras.layers.Dropout(config.dropout, name=f"dropout_{index + 1}")(x)
    if config.tie_embeddings:
        logits = embedding(x, reverse=True)
    else:
        logits = keras.layers.Dense(config.vocab_size, name="logits")(x)  # [N, T, V]
    return keras.Model(token_ids, logits, name=name)


# The registered models: width-d tied embeddings and recurrent layers of the same width.
RNN_PTB_CONFIG = LanguageModelConfig(cell="rnn", embedding_dim=300, hidden_units=300, num_layers=1, dropout=0.5)
LSTM_PTB_CONFIG = LanguageModelConfig(cell="lstm", embedding_dim=256, hidden_units=256, num_layers=2, dropout=0.3)
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


def build_stateful(config: LanguageModelConfig, batch_size: int, name: str) -> keras.Model:
    """The training twin of a registered model: same layers and weights, fixed batch size,
    state carried across batches (reset it with `reset_states`)."""
    return _build_language_model(config, name, batch_size=batch_size, stateful=True)


def reset_states(model: keras.Model) -> None:
    for layer in recurrent_layers(model):
        layer.reset_states()


def recurrent_layers(model: keras.Model) -> list[keras.layers.RNN]:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.RNN)]


def set_vocabulary(model: keras.Model, words: Sequence[str]) -> keras.Model:
    """Attach the word list (id = position) that `language_archive` exports with the model."""
    words = tuple(words)
    vocab_size = model.get_layer("embedding").input_dim
    if len(words) != vocab_size:
        raise ValueError(f"the vocabulary has {len(words)} words, the model {vocab_size} ids")
    if len(set(words)) != len(words) or not all(isinstance(word, str) and word.split() == [word]
                                                for word in words):
        raise ValueError("vocabulary words must be unique non-empty strings without whitespace")
    missing = {EOS, UNK} - set(words)
    if missing:
        raise ValueError(f"the vocabulary lacks {sorted(missing)}")
    model.zoo_vocabulary = words
    return model


def model_vocabulary(model: keras.Model) -> tuple[str, ...]:
    words = getattr(model, "zoo_vocabulary", None)
    if words is None:
        raise ValueError(f"model {model.name!r} has no vocabulary; call "
                         "zoo.models.language.set_vocabulary(model, words) before exporting it")
    return tuple(words)


def write_vocabulary(words: Sequence[str], path: str | os.PathLike) -> str:
    """One word per line, id = line number; returns the path as a string."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{word}\n" for word in words), encoding="utf-8")
    return os.fspath(path)


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def artifact_vocabulary(folder: str | os.PathLike) -> list[str]:
    """The word list an exported artifact carries (assets/vocab.txt)."""
    return read_vocabulary(Path(folder) / "assets" / VOCABULARY_ASSET)


class VocabularyTables(tf.Module):
    """word -> id and id -> word lookup tables, both initialised from the vocabulary file (which
    a SavedModel copies into its assets/ folder)."""

    def __init__(self, vocabulary_file: str, unknown_id: int):
        super().__init__(name="vocabulary")
        # Anonymous tables: a shared table's name would embed the file's absolute staging path.
        self.word_to_id = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            vocabulary_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
            tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER), default_value=unknown_id,
            experimental_is_anonymous=True)
        self.id_to_word = tf.lookup.StaticHashTable(tf.lookup.TextFileInitializer(
            vocabulary_file, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
            tf.string, tf.lookup.TextFileIndex.WHOLE_LINE), default_value=UNK,
            experimental_is_anonymous=True)


class LanguageServing:
    """The artifact's signatures, written over the trained model's own layers.

    Text handling, the same for every text signature: lower-case; split into lines, skipping
    empty ones; split each line on whitespace; unknown words -> <unk>; state starts at zero and
    <eos> is fed first; each line is followed by <eos> (for next_word, not the last line).
    """

    def __init__(self, model: keras.Model, vocabulary_file: str):
        self.embedding = model.get_layer("embedding")
        self.recurrent = recurrent_layers(model)
        self.tied = isinstance(self.embedding, ReversibleEmbedding)
        self.output_layer = None if self.tied else model.get_layer("logits")
        words = read_vocabulary(vocabulary_file)
        self.vocab_size = self.embedding.input_dim
        if len(words) != self.vocab_size or UNK not in words or EOS not in words:
            raise ValueError(f"{vocabulary_file}: expected {self.vocab_size} words including {UNK} and {EOS}")
        self.tables = VocabularyTables(vocabulary_file, words.index(UNK))
        # Per layer, the sizes of its states ([h] or [h, c]).
        self.state_sizes = [[int(size) for size in tf.nest.flatten(layer.cell.state_size)]
                            for layer in self.recurrent]
        self.state_size = sum(sum(sizes) for sizes in self.state_sizes)

    def endpoints(self) -> dict[str, tuple]:
        """name -> (function, input signature), next_word first (it becomes serving_default)."""
        text = [tf.TensorSpec([None], tf.string, name="text")]
        step = [tf.TensorSpec([None], tf.int32, name="token_id"),
                tf.TensorSpec([None, self.state_size], tf.float32, name="state")]
        return {"next_word": (self.next_word, text), "score": (self.score, text), "step": (self.step, step)}

    def functions(self) -> dict[str, tf.types.experimental.GenericFunction]:
        """The endpoints as tf.functions, to call in memory (e.g. to evaluate before export)."""
        return {name: tf.function(function, input_signature=signature, autograph=False)
                for name, (function, signature) in self.endpoints().items()}

    def next_word(self, text):
        """text string[N] -> distribution of the word after each text."""
        ids, lengths = self._token_ids(text)
        lengths = tf.maximum(lengths - 1, 1)  # drop the last line's <eos>; keep the leading one
        states, _ = self._run(ids, lengths)
        logits = self._logits(self._top_output(states))  # [N, V]
        probabilities = tf.nn.softmax(logits, axis=-1)
        top = tf.math.top_k(probabilities, k=min(TOP_WORDS, self.vocab_size))
        return {"probabilities": probabilities,
                "top_words": self.tables.id_to_word.lookup(tf.cast(top.indices, tf.int64)),
                "top_probabilities": top.values}

    def score(self, text):
        """text string[N] -> natural-log probability of every token after the leading <eos>."""
        ids, lengths = self._token_ids(text)
        lengths = lengths - 1  # predicted tokens: all but the leading <eos>
        _, log_probability = self._run(ids[:, :-1], lengths, targets=ids[:, 1:])
        return {"log_probability": tf.cast(log_probability, tf.float32),
                "token_count": tf.cast(lengths, tf.int64)}

    def step(self, token_id, state):
        """One token per text: token_id int32[N], state float32[N, S] -> logits, next state."""
        tf.debugging.assert_less(token_id, self.vocab_size, message="token_id out of range")
        tf.debugging.assert_non_negative(token_id, message="token_id out of range")
        x = self.embedding(token_id)  # [N, E]
        new_states = []
        for layer, layer_states in zip(self.recurrent, self._split_state(state)):
            x, layer_states = layer.cell(x, layer_states, training=False)
            new_states.extend(tf.nest.flatten(layer_states))
        return {"logits": self._logits(x), "state": tf.concat(new_states, axis=-1)}

    def _token_ids(self, text):
        """string[N] -> (int32 [N, L] padded ids: <eos>, then each line's words and <eos>;
        int32 [N] lengths L_n)."""
        # NUL reads as a space: tf.strings.lower would otherwise end the text at the first one.
        text = tf.strings.regex_replace(text, "\\x00", " ")
        lines = tf.strings.split(tf.strings.lower(text, encoding="utf-8"), sep="\n")  # [N, (lines)]
        lines = tf.ragged.boolean_mask(lines, tf.strings.strip(lines) != "")
        words = tf.strings.split(lines + f" {EOS}").merge_dims(1, 2)  # [N, (tokens)]
        leading = tf.fill([tf.shape(text)[0], 1], EOS)
        words = tf.concat([tf.RaggedTensor.from_tensor(leading), words], axis=1)
        ids = words.with_flat_values(tf.cast(self.tables.word_to_id.lookup(words.flat_values), tf.int32))
        return ids.to_tensor(default_value=0), tf.cast(ids.row_lengths(), tf.int32)

    def _run(self, ids, lengths, targets=None):
        """Feed ids [N, T] (position t of text n only while t < lengths[n]) through the layers,
        CHUNK_TOKENS tokens at a time. Returns the final states, and, given targets [N, T], each
        text's summed log-probability of its targets (float64 [N])."""
        batch, steps = tf.shape(ids)[0], tf.shape(ids)[1]
        chunk = tf.maximum(1, CHUNK_TOKENS // tf.maximum(batch, 1))
        states = [tf.zeros([batch, size]) for sizes in self.state_sizes for size in sizes]

        def body(start, states, total):
            window = ids[:, start:start + chunk]  # [N, C]
            mask = (start + tf.range(tf.shape(window)[1]))[None, :] < lengths[:, None]  # [N, C]
            hidden, states = self._layers(window, states, mask)  # [N, C, H]
            if targets is not None:
                log_probabilities = -tf.nn.sparse_softmax_cross_entropy_with_logits(
                    targets[:, start:start + chunk], self._logits(hidden))  # [N, C]
                total += tf.reduce_sum(tf.cast(tf.where(mask, log_probabilities, 0.0), tf.float64), axis=1)
            return start + chunk, states, total

        _, states, total = tf.while_loop(lambda start, *_: start < steps, body,
                                         (tf.constant(0), states, tf.zeros([batch], tf.float64)))
        return states, total

    def _layers(self, window, states, mask):
        """ids [N, C] -> top layer outputs [N, C, H] and the states after each text's last
        unmasked position (masked positions leave the state unchanged)."""
        x = self.embedding(window)
        new_states = []
        for layer, layer_states in zip(self.recurrent, self._split_flat(states)):
            x, *layer_states = layer(x, initial_state=layer_states, mask=mask, training=False)
            new_states.extend(layer_states)
        return tf.identity(x), new_states  # a fresh tensor: drops the Keras mask attached to x

    def _split_flat(self, states):
        groups, index = [], 0
        for sizes in self.state_sizes:
            groups.append(list(states[index:index + len(sizes)]))
            index += len(sizes)
        return groups

    def _split_state(self, state):
        """[N, S] -> per layer, its list of states."""
        flat = tf.split(state, [size for sizes in self.state_sizes for size in sizes], axis=-1)
        return self._split_flat(flat)

    def _top_output(self, states):
        """The last layer's output is its first state (h)."""
        return self._split_flat(states)[-1][0]

    def _logits(self, hidden):
        if self.tied:
            return self.embedding(hidden, reverse=True)
        return self.output_layer(hidden)


def language_archive(model: keras.Model, spec, staging_dir: Path) -> keras.export.ExportArchive:
    """The artifact's signatures; the model's vocabulary (see set_vocabulary) goes to
    assets/vocab.txt and initialises the graph's lookup tables."""
    # Written straight into the SavedModel's assets folder: TF copies an asset only when its
    # source and destination paths differ, and both are built from the same staging path.
    vocabulary_file = write_vocabulary(model_vocabulary(model),
                                       os.path.join(os.fspath(staging_dir), "assets", VOCABULARY_ASSET))
    serving = LanguageServing(model, vocabulary_file)
    archive = keras.export.ExportArchive()
    # Only the tables are tracked by hand: the endpoints' variables are saved once on their own;
    # track(model) would store every weight a second time (as Keras variables), doubling the size.
    archive.track(serving.tables)
    for name, (function, signature) in serving.endpoints().items():
        archive.add_endpoint(name, function, signature)
    return archive


def language_signature_doc(spec, model: keras.Model) -> dict:
    """Human-readable description of the artifact's signatures, for the model card."""
    vocab_size = model.get_layer("embedding").input_dim
    size = state_size(spec.config)
    next_word = {"inputs": {"text": "string[N] (lines of words; the word after the last one is predicted)"},
                 "outputs": {"probabilities": f"float32[N, {vocab_size}] (softmax over assets/vocab.txt ids)",
                             "top_words": f"string[N, {TOP_WORDS}]",
                             "top_probabilities": f"float32[N, {TOP_WORDS}]"}}
    return {
        "next_word": next_word,
        "serving_default": next_word,
        "score": {"inputs": {"text": "string[N] (each string scored on its own; every line ends with <eos>)"},
                  "outputs": {"log_probability": "float32[N] (natural log, summed over the predicted tokens)",
                              "token_count": "int64[N] (predicted tokens: words and <eos>s)"}},
        "step": {"inputs": {"token_id": "int32[N]",
                            "state": f"float32[N, {size}] (all layers' states; zeros start a text)"},
                 "outputs": {"logits": f"float32[N, {vocab_size}]", "state": f"float32[N, {size}]"}},
    }
