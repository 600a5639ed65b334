"""LanguageModel: zoo.load("lstm_ptb") for word-level language models, over plain tf.saved_model.load.

    lm = zoo.load("lstm_ptb")
    lm.next_words("the stock market", k=5)   # [(word, probability), ...]
    lm.perplexity("the company said it expects")
    lm.generate("the company said", num_words=30, temperature=0.8, top_k=40, seed=0)

Text rules (the graph's; zoo.data.ptb.tokenize mirrors them): lower-case; lines, skipping empty
ones; words split on whitespace; unknown words become <unk> (see `unknown_words`); the state
starts at zero and <eos> is fed first.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import tensorflow as tf

from zoo.data import ptb
from zoo.models.language import artifact_vocabulary

MAX_CHARACTERS = 1_000_000  # longest text the methods accept (the PTB test file has 449,945)


class LanguageModel:
    """A word-level language model artifact: next_word / score / step signatures."""

    def __init__(self, saved_model, card: dict, path: Path):
        self.card = card
        self.path = Path(path)
        self.name = card["name"]
        self._saved_model = saved_model  # keeps the signatures' variables and tables alive
        signatures = saved_model.signatures
        self._next_word, self._score, self._step = (signatures[key] for key in ("next_word", "score", "step"))
        self.vocabulary = artifact_vocabulary(self.path)
        self._ids = {word: index for index, word in enumerate(self.vocabulary)}
        self.state_size = int(self._step.structured_input_signature[1]["state"].shape[-1])

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
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        words = ptb.tokenize(text)
        return list(dict.fromkeys(word for word in words if word not in self._ids))

    def generate(self, prompt: str, num_words: int = 30, temperature: float = 1.0,
                 top_k: int | None = None, seed: int | None = None) -> str:
        """Sample num_words words after `prompt` through the `step` signature, one token at a
        time (same cost per token however long the text). Returns the continuation; a sampled
        <eos> starts a new line. Reproducible for a given seed."""
        _check_text(prompt)
        num_words = _check_count("num_words", num_words, 0, 100_000)
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        if top_k is not None:  # top_k >= the vocabulary size samples from every word
            top_k = min(_check_count("top_k", top_k, 1, 10**9), len(self.vocabulary))
        unknown = self._ids[ptb.UNK]
        context = [ptb.EOS] + ptb.tokenize(prompt, final_eos=False)
        state = tf.zeros([1, self.state_size])
        for word in context:
            logits, state = self._advance(self._ids.get(word, unknown), state)
        generator = np.random.default_rng(seed)
        words = []
        for _ in range(num_words):
            index = _sample(logits, temperature, top_k, generator)
            words.append(self.vocabulary[index])
            logits, state = self._advance(index, state)
        return "\n".join(" ".join(line.split()) for line in " ".join(words).split(ptb.EOS))

    def evaluate(self, data_dir=None, batch_size: int | None = None) -> dict:
        """Test perplexity on the whole real PTB test split, scored as one string through the
        `score` signature (batch_size is accepted for the common evaluate() interface; unused)."""
        return {"test_perplexity": perplexity_metric(self._score, ptb.split_text("test", data_dir), "test")}

    def _advance(self, token_id: int, state):
        result = self._step(token_id=tf.constant([token_id], tf.int32), state=state)
        return result["logits"][0].numpy().astype(np.float64), result["state"]


def perplexity_metric(score, text: str, split: str) -> dict:
    """A card metric: exp(-log_probability / token_count) of `text` scored as one string by a
    `score` function (the artifact's signature, or the same function before export)."""
    result = score(text=tf.constant([text]))
    log_probability, count = float(result["log_probability"][0]), int(result["token_count"][0])
    return {"value": math.exp(-log_probability / count), "split": split, "examples": count}


def _sample(logits: np.ndarray, temperature: float, top_k: int | None, generator) -> int:
    scaled = logits / temperature
    if top_k is not None and top_k < len(scaled):
        threshold = np.sort(scaled)[-top_k]
        scaled = np.where(scaled >= threshold, scaled, -np.inf)
    probabilities = np.exp(scaled - scaled.max())
    return int(generator.choice(len(scaled), p=probabilities / probabilities.sum()))


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if len(text) > MAX_CHARACTERS:
        raise ValueError(f"text has {len(text):,} characters; the limit is {MAX_CHARACTERS:,}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise ValueError(f"text must be valid Unicode; {error.object[error.start]!r} at position "
                         f"{error.start} is a lone surrogate") from None
    if not ptb.tokenize(text):
        raise ValueError("text is empty (no words)")


def _check_count(name: str, value, low: int, high: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high:,}, got {value}")
    return int(value)
