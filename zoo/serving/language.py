"""Language serving: the text-in-graph signatures of a word-level language model's artifact
(next_word = serving_default, score, step), its vocabulary, and the predictor `zoo.load` returns.

    lm = zoo.load("lstm_ptb")
    lm.next_words("the stock market", k=5)   # [(word, probability), ...]
    lm.perplexity("the company said it expects")
    lm.generate("the company said", num_words=30, temperature=0.8, top_k=40, seed=0)

Text rules (the graph's; zoo.data.text.tokenize mirrors them): lower-case; lines, skipping empty
ones; words split on whitespace; unknown words become <unk> (see `unknown_words`); the state
starts at zero and <eos> is fed first.

Vocabulary: the builders are pure and know only `vocab_size`; the word list comes from the data
(`zoo.data.text.build_vocabulary`) and travels with the trained model: `set_vocabulary(model,
words)` attaches it, `archive` writes it to the artifact's assets/vocab.txt (one word per line,
id = line number), and the graph's lookup tables are initialised from that file.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np
import tensorflow as tf

from zoo import metrics
from zoo.artifact import ArtifactError
from zoo.data import common
from zoo.data.text import EOS, UNK, tokenize
from zoo.models.language import ReversibleEmbedding, recurrent_layers, state_size
from zoo.registry import ModelSpec

VOCABULARY_ASSET = "vocab.txt"
TOP_WORDS = 10
# score: logits of at most this many tokens exist at once ([tokens, V] float32: 40 MB at V=10k).
CHUNK_TOKENS = 1024
DEMO_PROMPTS = ("the stock market", "the company said", "in new york")
# Text limits, checked before anything runs in the graph. The whole PTB test file must pass as
# one string (449,945 characters, 82,430 tokens). Scoring ran at ~3,300 tokens/s (lstm_ptb, 2 CPU
# cores shared with a training run): MAX_TOKENS is ~30 s of work.
MAX_CHARACTERS = 500_000
MAX_TOKENS = 100_000  # words and <eos>s, as zoo.data.text.tokenize counts them
# generate feeds the prompt, then each sampled word, one token at a time through `step` (~1,000
# tokens/s in make bench): prompt tokens and num_words are each limited to ~10 s of work.
MAX_GENERATE_TOKENS = 10_000
TEMPERATURE_RANGE = (0.01, 100.0)  # 0.01 is near greedy, 100 near uniform (1e-320 overflowed logits / T)
MAX_SEED = 2**63 - 1


def preprocessing_doc(spec: ModelSpec) -> str:
    """The card's `preprocessing`: the text rules inside the graph."""
    return ("lower-case; split into lines, skipping empty ones; split on whitespace; unknown words -> <unk>; "
            "<eos> fed first, and after each line (inside the graph)")


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
                         "zoo.serving.language.set_vocabulary(model, words) before exporting it")
    return tuple(words)


def write_vocabulary(words: Sequence[str], path: str | os.PathLike) -> str:
    """One word per line, id = line number; returns the path as a string."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{word}\n" for word in words), encoding="utf-8")
    return os.fspath(path)


def read_vocabulary(path: str | os.PathLike) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()


def attach_assets(model: keras.Model, folder: str | os.PathLike) -> keras.Model:
    """The word list that goes with the ids: the artifact's assets/vocab.txt."""
    return set_vocabulary(model, artifact_vocabulary(folder))


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
        self.output_layer: Any = None if self.tied else model.get_layer("logits")
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


def archive(model: keras.Model, spec: ModelSpec, staging_dir: Path) -> keras.export.ExportArchive:
    """The artifact's signatures; the model's vocabulary (see set_vocabulary) goes to
    assets/vocab.txt and initialises the graph's lookup tables."""
    # Written straight into the SavedModel's assets folder: TF copies an asset only when its
    # source and destination paths differ, and both are built from the same staging path.
    vocabulary_file = write_vocabulary(model_vocabulary(model),
                                       os.path.join(os.fspath(staging_dir), "assets", VOCABULARY_ASSET))
    serving = LanguageServing(model, vocabulary_file)
    export_archive = keras.export.ExportArchive()
    # Only the tables are tracked by hand: the endpoints' variables are saved once on their own;
    # track(model) would store every weight a second time (as Keras variables), doubling the size.
    export_archive.track(serving.tables)
    for name, (function, signature) in serving.endpoints().items():
        export_archive.add_endpoint(name, function, signature)
    return export_archive


def signature_doc(spec: ModelSpec, model: keras.Model) -> dict:
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


class LanguageModel:
    """A word-level language model artifact: next_word / score / step signatures."""

    normalizable = False  # MNIST's image preparation (ImageClassifier) does not apply

    def __init__(self, saved_model, card: dict, path: Path):
        self.card = card
        self.path = Path(path)
        self.name = card["name"]
        self._saved_model = saved_model  # keeps the signatures' variables and tables alive
        signatures = saved_model.signatures
        self._next_word, self._score, self._step = (signatures[key] for key in ("next_word", "score", "step"))
        try:
            self.vocabulary = artifact_vocabulary(self.path)
        except (OSError, UnicodeDecodeError) as error:
            raise ArtifactError(f"{self.path}: cannot read assets/{VOCABULARY_ASSET}: {error}") from None
        self._ids = {word: index for index, word in enumerate(self.vocabulary)}
        step_inputs, step_outputs = self._step.structured_input_signature[1], self._step.structured_outputs
        if set(step_inputs) != {"token_id", "state"} or "logits" not in step_outputs:
            raise ArtifactError(f"{self.path}: `step` must map token_id, state -> logits, state; "
                                f"got {sorted(step_inputs)}")
        size = step_outputs["logits"].shape[-1]
        if len(self._ids) != len(self.vocabulary) or len(self.vocabulary) != size or not {UNK, EOS} <= set(self._ids):
            raise ArtifactError(f"{self.path}: assets/{VOCABULARY_ASSET} must hold {size} distinct words including "
                                f"{UNK} and {EOS}; it has {len(self.vocabulary)} lines")
        self.state_size = int(step_inputs["state"].shape[-1])

    def __repr__(self) -> str:
        return f"LanguageModel({self.name!r}, {len(self.vocabulary):,} words, state {self.state_size})"

    def next_words(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """The k most probable words to follow `text`, with their probabilities."""
        _check_text(text)
        k = _check_count("k", k, 1, len(self.vocabulary))
        probabilities = self._next_word(text=tf.constant([text]))["probabilities"][0].numpy()
        top = np.argsort(-probabilities, kind="stable")[:k]
        return [(self.vocabulary[index], float(probabilities[index])) for index in top]

    def log_probability(self, text: str) -> tuple[float, int]:
        """(natural-log probability of the text's tokens, their count); every line ends with <eos>."""
        _check_text(text)
        result = self._score(text=tf.constant([text]))
        return float(result["log_probability"][0]), int(result["token_count"][0])

    def perplexity(self, text: str) -> float:
        """exp(-log_probability / token_count) of `text`, each line ended by <eos>."""
        log_probability, count = self.log_probability(text)
        return math.exp(-log_probability / count)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` (lower-cased) that the model reads as <unk>, first occurrence order."""
        words = _check_text(text, allow_empty=True)
        return list(dict.fromkeys(word for word in words if word not in self._ids))

    def generate(self, prompt: str, num_words: int = 30, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None) -> str:
        """Sample num_words words after `prompt` through the `step` signature, one token at a
        time (same cost per token however long the text). Returns the continuation; a sampled
        <eos> starts a new line. Reproducible for a given seed. Ranges: num_words and the prompt's
        tokens each up to MAX_GENERATE_TOKENS; temperature in [0.01, 100]; top_k None or an int >= 1;
        seed None or an int in [0, 2**63 - 1] (numpy scalars accepted, bools not)."""
        tokens = _check_text(prompt, "prompt")
        if len(tokens) > MAX_GENERATE_TOKENS:  # fed one at a time: [<eos>] + tokens without the last <eos>
            raise ValueError(f"prompt has {len(tokens):,} tokens; generate's limit is "
                             f"MAX_GENERATE_TOKENS = {MAX_GENERATE_TOKENS:,} (it feeds them one at a time)")
        num_words = _check_count("num_words", num_words, 0, MAX_GENERATE_TOKENS)
        temperature = _check_real("temperature", temperature, *TEMPERATURE_RANGE)
        if top_k is not None:  # top_k >= the vocabulary size samples from every word
            top_k = min(_check_count("top_k", top_k, 1, 10**9), len(self.vocabulary))
        if seed is not None:
            seed = _check_count("seed", seed, 0, MAX_SEED, "None or an int")
        unknown = self._ids[UNK]
        context = [EOS] + tokenize(prompt, final_eos=False)
        state = tf.zeros([1, self.state_size])
        for word in context:
            logits, state = self._advance(self._ids.get(word, unknown), state)
        generator = np.random.default_rng(seed)
        words = []
        for _ in range(num_words):
            index = _sample(logits, temperature, top_k, generator)
            words.append(self.vocabulary[index])
            logits, state = self._advance(index, state)
        return "\n".join(" ".join(line.split()) for line in " ".join(words).split(EOS))

    # The REST server's interface (zoo.serving.http): signatures by name, inputs checked per
    # request, then one signature call per (dynamically batched) group of requests.

    def serving_signatures(self) -> dict:
        """Signature name -> the artifact's function: the text signatures (`step`'s state is
        generate's business)."""
        return {"next_word": self._next_word, "serving_default": self._next_word, "score": self._score}

    def prepare(self, signature_name: str, inputs: dict[str, list], normalize: bool = False) -> dict[str, np.ndarray]:
        """A request's `text` column (strings within MAX_CHARACTERS and MAX_TOKENS) -> an object array."""
        if normalize:
            raise ValueError(f"normalize is MNIST's digit preparation; {self.name} takes text")
        texts = inputs["text"]
        total = sum(len(text) for text in texts if isinstance(text, str))
        if total > MAX_CHARACTERS:  # one request's texts together: its cost grows with their length
            raise ValueError(f"the request's texts have {total:,} characters together; the limit is "
                             f"MAX_CHARACTERS = {MAX_CHARACTERS:,}")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"instance {index}: expected a string, got {type(text).__name__}")
            try:
                _check_text(text)
            except ValueError as error:
                raise ValueError(f"instance {index}: {error}") from None
        return {"text": np.array(texts, dtype=object)}

    def run_signature(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One call of the signature on a prepared batch."""
        signature = self.serving_signatures()[signature_name]
        return {key: value.numpy() for key, value in signature(text=tf.constant(inputs["text"], tf.string)).items()}

    def describe(self, inputs: list[str], top: int = 5, normalize: bool = False) -> list[str]:
        """`python -m zoo predict`: the `top` next words after each text, and its unknown words."""
        if normalize:
            raise ValueError(f"--normalize is MNIST's digit preparation; {self.name} takes text")
        lines = []
        for text in inputs:
            words = ", ".join(f"{word} {probability:.3f}" for word, probability in self.next_words(text, k=top))
            lines.append(f"{text!r} -> {words}")
            unknown = self.unknown_words(text)
            if unknown:
                lines.append(f"  (not in the vocabulary, read as <unk>: {' '.join(unknown)})")
        return lines

    def demo(self, data_dir: Path | None = None) -> list[str]:
        """`make demo`: next words and a sampled continuation of a few prompts."""
        lines = []
        for prompt in DEMO_PROMPTS:
            words = ", ".join(f"{word} {probability:.2f}" for word, probability in self.next_words(prompt, k=3))
            text = self.generate(prompt, num_words=12, temperature=0.8, top_k=40, seed=0)
            shown = text.replace("\n", " / ")  # a sampled <eos> ends a line
            lines += [f"  {prompt!r}: next {words}", f"    -> {shown}"]
        return lines

    def evaluate(self, data_dir=None, batch_size: int | None = None) -> dict:
        """Test perplexity on the whole real PTB test split, scored as one string through the
        `score` signature (batch_size is accepted for the common evaluate() interface; unused)."""
        if self.card.get("dataset", {}).get("name") != "ptb":
            raise ValueError(f"{self.name}: evaluate() knows the PTB test split; the card names "
                             f"{self.card.get('dataset')!r}")
        try:
            from zoo.data import ptb  # the data extra (tfds); inference never imports it
        except ImportError as error:
            raise common.missing_data_extra(error, f"evaluate({self.name!r})") from None
        return {"test_perplexity": metrics.perplexity(self._score, ptb.split_text("test", data_dir), "test")}

    def _advance(self, token_id: int, state):
        result = self._step(token_id=tf.constant([token_id], tf.int32), state=state)
        return result["logits"][0].numpy().astype(np.float64), result["state"]


def _sample(logits: np.ndarray, temperature: float, top_k: int | None, generator) -> int:
    scaled = logits / temperature
    if top_k is not None and top_k < len(scaled):
        threshold = np.sort(scaled)[-top_k]
        scaled = np.where(scaled >= threshold, scaled, -np.inf)
    probabilities = np.exp(scaled - scaled.max())
    return int(generator.choice(len(scaled), p=probabilities / probabilities.sum()))


def _check_text(text, name: str = "text", allow_empty: bool = False) -> list[str]:
    """A str within MAX_CHARACTERS and MAX_TOKENS (and with a word, unless allow_empty): its
    tokens (zoo.data.text.tokenize), counted here before anything runs in the graph."""
    if not isinstance(text, str):
        raise TypeError(f"{name} must be a str, got {type(text).__name__}")
    if len(text) > MAX_CHARACTERS:  # checked first: tokenizing costs time in proportion
        raise ValueError(f"{name} has {len(text):,} characters; the limit is MAX_CHARACTERS = {MAX_CHARACTERS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"{name} must be valid Unicode; {error.object[error.start]!r} at position "
                         f"{error.start} is a lone surrogate") from None
    tokens = tokenize(text)
    if not tokens and not allow_empty:
        raise ValueError(f"{name} is empty (no words)")
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"{name} has {len(tokens):,} tokens (words and <eos>s); the limit is "
                         f"MAX_TOKENS = {MAX_TOKENS:,}")
    return tokens


def _check_count(name: str, value, low: int, high: int, kind: str = "an int") -> int:
    """An int (numpy integers too; not a bool) in [low, high]."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {kind} in [{low:,}, {high:,}], got {value}")
    return int(value)


def _check_real(name: str, value, low: float, high: float) -> float:
    """A finite real number (int, float, or numpy scalar; not a bool) in [low, high]."""
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not low <= value <= high:  # also refuses NaN and infinities; no float() overflow for big ints
        raise ValueError(f"{name} must be a finite number in [{low:g}, {high:g}], got {value}")
    return float(value)
