"""Chapter 2's word-level tokenizers: split text with a regular expression, number the distinct words.

``SimpleTokenizerV1`` knows only the words of the text its vocabulary was built from and raises on any other;
``SimpleTokenizerV2`` adds the book's two special tokens, ``<|unk|>`` for unknown words and ``<|endoftext|>``
between texts. The real tokenizer (GPT-2's byte-pair encoding) is ``gpt_scratch.tokenization_gpt_scratch``.

    vocab = build_vocab(the_verdict, special_tokens=["<|endoftext|>", "<|unk|>"])   # 1,132 entries
    SimpleTokenizerV2(vocab).encode("Hello, do you like tea?")  # [1131, 5, 355, 1126, 628, 975, 10]
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Split on punctuation, double dashes and whitespace, keeping the separators (the capture group) as tokens.
SPLIT_PATTERN = re.compile(r'([,.:;?_!"()\']|--|\s)')
# Decoding joins words with spaces, then removes the space before punctuation.
SPACE_BEFORE_PUNCTUATION = re.compile(r'\s+([,.:;?!"()\'])')

ENDOFTEXT = "<|endoftext|>"
UNK = "<|unk|>"


class UnknownTokenError(KeyError):
    """A word is not in a SimpleTokenizerV1 vocabulary."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


def split_text(text: str) -> list[str]:
    """The book's preprocessing: words and punctuation marks, whitespace dropped."""
    return [item.strip() for item in SPLIT_PATTERN.split(text) if item.strip()]


def build_vocab(text: str, special_tokens: Iterable[str] = ()) -> dict[str, int]:
    """Number the distinct tokens of ``text`` in sorted order, then append ``special_tokens``."""
    all_tokens = sorted(set(split_text(text)))
    all_tokens.extend(token for token in special_tokens if token not in all_tokens)
    return {token: integer for integer, token in enumerate(all_tokens)}


class SimpleTokenizerV1:
    """Word-level tokenizer over a fixed vocabulary (section 2.3)."""

    def __init__(self, vocab: dict[str, int]):
        self.str_to_int = vocab
        self.int_to_str = {i: s for s, i in vocab.items()}

    def encode(self, text: str) -> list[int]:
        ids = []
        for token in split_text(text):
            if token not in self.str_to_int:
                raise UnknownTokenError(
                    f"{token!r} is not in the vocabulary ({len(self.str_to_int)} tokens); "
                    "SimpleTokenizerV2 maps unknown words to <|unk|>"
                )
            ids.append(self.str_to_int[token])
        return ids

    def decode(self, ids: list[int]) -> str:
        text = " ".join(self.int_to_str[i] for i in ids)
        return SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)


class SimpleTokenizerV2(SimpleTokenizerV1):
    """V1 plus ``<|unk|>`` for words outside the vocabulary (section 2.4); the vocabulary must contain it."""

    def __init__(self, vocab: dict[str, int]):
        if UNK not in vocab:
            raise ValueError(
                f"SimpleTokenizerV2 needs {UNK!r} in the vocabulary: build_vocab(text, [{ENDOFTEXT!r}, {UNK!r}])"
            )
        super().__init__(vocab)

    def encode(self, text: str) -> list[int]:
        return [self.str_to_int.get(token, self.str_to_int[UNK]) for token in split_text(text)]
