r"""Tokenization and vocabularies for sentence-classification data (Kim 2014).

The tokenizer is ``clean_str`` from Kim's ``CNN_sentence`` code (``process_data.py``):
keep letters, digits and ``( ) , ! ? ' ```, split off clitics (``'s``, ``'ve``,
``n't``, ``'re``, ``'d``, ``'ll``) and punctuation, collapse whitespace, lower-case.
One deliberate difference: Kim's code leaves a backslash in the parenthesis and
question-mark tokens (``\(``, ``\)``, ``\?``, an artefact of its replacement strings);
here they are the plain ``(``, ``)`` and ``?``.
"""

from __future__ import annotations

import collections
import re
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["PAD", "UNK", "build_vocabulary", "clean_str", "encode", "tokenize"]

#: The padding token, id 0.
PAD = "<pad>"
#: The out-of-vocabulary token, id 1.
UNK = "<unk>"

_SUBS = [
    (re.compile(r"[^A-Za-z0-9(),!?'`]"), " "),
    (re.compile(r"'s"), " 's"),
    (re.compile(r"'ve"), " 've"),
    (re.compile(r"n't"), " n't"),
    (re.compile(r"'re"), " 're"),
    (re.compile(r"'d"), " 'd"),
    (re.compile(r"'ll"), " 'll"),
    (re.compile(r","), " , "),
    (re.compile(r"!"), " ! "),
    (re.compile(r"\("), " ( "),
    (re.compile(r"\)"), " ) "),
    (re.compile(r"\?"), " ? "),
    (re.compile(r"\s{2,}"), " "),
]


def clean_str(string: str, lower: bool = True) -> str:
    """Kim (2014)'s ``clean_str`` (see the module docstring for the one difference).

    Args:
      string: a sentence.
      lower: lower-case the result (Kim's default; ``False`` is his ``TREC=True``).

    Returns:
      The cleaned sentence, tokens separated by single spaces.

    Raises:
      TypeError: if ``string`` is not a ``str``.
    """
    if not isinstance(string, str):
        raise TypeError(f"`string` must be a str, got {type(string).__name__}")
    for pattern, repl in _SUBS:
        string = pattern.sub(repl, string)
    string = string.strip()
    return string.lower() if lower else string


def tokenize(string: str) -> list[str]:
    """Splits ``clean_str(string)`` on whitespace.

    Args:
      string: a sentence.

    Returns:
      The list of tokens.
    """
    return clean_str(string).split()


def build_vocabulary(sentences: Iterable[Sequence[str]], min_count: int = 1) -> list[str]:
    """A vocabulary from tokenized sentences: ``[PAD, UNK]`` then by frequency.

    Tokens are ordered by decreasing count, ties alphabetically, so the result does
    not depend on the order of the sentences.

    Args:
      sentences: tokenized sentences (build it on the training split only).
      min_count: the smallest count a token needs to be kept.

    Returns:
      The list of tokens; a token's id is its index (``PAD`` 0, ``UNK`` 1).

    Raises:
      ValueError: if ``min_count`` is not a positive int.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"`min_count` (={min_count!r}) must be a positive int")
    counts = collections.Counter(tok for sent in sentences for tok in sent)
    kept = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
    return [PAD, UNK, *kept]


def encode(
    sentences: Sequence[Sequence[str]], vocabulary: Sequence[str], max_length: int
) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded (with ``PAD`` = 0) or cropped (at the end) to ``max_length``.

    Args:
      sentences: tokenized sentences.
      vocabulary: from :func:`build_vocabulary`; unknown tokens map to ``UNK`` = 1.
      max_length: the padded length.

    Returns:
      ``(ids, lengths)``: int32 arrays of shapes ``(N, max_length)`` and ``(N,)``, the
      lengths counting the tokens kept (at most ``max_length``).

    Raises:
      ValueError: if ``max_length`` is not a positive int, or a sentence is empty (no
        tokens: an empty line, or one that ``clean_str`` empties), naming its index.
    """
    if isinstance(max_length, bool) or not isinstance(max_length, int | np.integer):
        raise ValueError(f"`max_length` (={max_length!r}) must be a positive int")
    if max_length < 1:
        raise ValueError(f"`max_length` (={max_length!r}) must be a positive int")
    index = {tok: i for i, tok in enumerate(vocabulary)}
    unk = index.get(UNK, 1)
    ids = np.zeros((len(sentences), int(max_length)), np.int32)
    lengths = np.zeros((len(sentences),), np.int32)
    for row, sent in enumerate(sentences):
        if isinstance(sent, str):
            raise TypeError(f"`sentences[{row}]` must be a list of tokens, got a str {sent!r}")
        if len(sent) == 0:
            raise ValueError(
                f"`sentences[{row}]` is empty (no tokens); drop empty sentences before "
                "encoding them"
            )
        toks = [index.get(t, unk) for t in sent[:max_length]]
        ids[row, : len(toks)] = toks
        lengths[row] = len(toks)
    return ids, lengths
