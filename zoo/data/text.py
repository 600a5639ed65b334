"""The word-level text rules of the language models, the ones their exported graph applies:
lower-case; split into lines, skipping empty ones; split each line on ASCII whitespace; every line
is followed by `<eos>`. Pure Python (no tfds), so serving needs nothing of the data pipeline.

The vocabulary is every type of the (lower-cased) training text plus `<eos>`, ordered by
frequency, most frequent first, ties broken by the word's code-point order; a word's id is its
position. Unknown words map to `<unk>`.
"""
from __future__ import annotations

import collections
import re
from typing import Iterable, Sequence

import numpy as np

EOS = "<eos>"  # ends every line; the exported language models read these two tokens too
UNK = "<unk>"
# The same characters tf.strings.split splits on by default (absl's ASCII whitespace).
_WHITESPACE = re.compile(r"[ \t\n\v\f\r\x00]+")  # the exported graph reads NUL as a space too


def as_text(lines: Iterable[str]) -> str:
    """Lines as the one string a split's perplexity is defined on (joined by newlines)."""
    return "\n".join(lines)


def tokenize(text: str, final_eos: bool = True) -> list[str]:
    """The words of `text` as the exported graph sees them: lower-cased, empty lines skipped,
    `<eos>` after every line (after the last one only if final_eos). No leading `<eos>`."""
    words: list[str] = []
    for line in text.lower().split("\n"):
        line_words = [word for word in _WHITESPACE.split(line) if word]
        if line_words:
            words.extend(line_words + [EOS])
    if words and not final_eos:
        words.pop()
    return words


def build_vocabulary(lines: Iterable[str]) -> list[str]:
    """Every word of the training lines plus `<eos>` (and `<unk>`, if absent), most frequent
    first, ties by code-point order; id = position."""
    counts = collections.Counter(tokenize(as_text(lines)))
    counts.setdefault(EOS, 0)
    counts.setdefault(UNK, 0)
    return sorted(counts, key=lambda word: (-counts[word], word))


def token_ids(lines: Iterable[str], vocabulary: Sequence[str]) -> np.ndarray:
    """int32 [tokens]: the lines' words and `<eos>`s as ids; unknown words -> `<unk>`."""
    index = {word: number for number, word in enumerate(vocabulary)}
    unknown = index[UNK]
    return np.array([index.get(word, unknown) for word in tokenize(as_text(lines))], dtype=np.int32)
