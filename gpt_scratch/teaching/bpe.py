"""Byte-pair encoding from scratch: learn merges from a text, encode, decode, and load GPT-2's own merges.

BPE starts from the 256 byte values and repeatedly glues the most frequent adjacent pair into a new token.
Encoding replays the learned merges, oldest first, inside each pre-token (a word with its leading space, a
number, a run of punctuation or of whitespace, split off by GPT-2's regular expression). Loaded with GPT-2's
``vocab.json`` + ``merges.txt`` (or the original ``encoder.json`` + ``vocab.bpe``: same formats), it gives
exactly GPT-2's ids, only slower than tiktoken, which does the same in Rust.

    bpe = BytePairTokenizer.train(the_verdict, vocab_size=500)
    bpe.decode(bpe.encode("Hello, world")) == "Hello, world"
    gpt2 = BytePairTokenizer.from_gpt2_files("vocab.json", "merges.txt")
    gpt2.encode("Hello, world")  # [15496, 11, 995]
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable

import regex

# GPT-2's pre-tokenisation: contractions, words, numbers, punctuation runs, whitespace (not the last space
# before a word: that one starts the next pre-token, as in " world").
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


def gpt2_byte_to_char() -> dict[int, str]:
    """GPT-2's files spell each byte as a printable character: printable bytes as themselves, the others
    (control characters, space...) as characters from 256 upwards (the space becomes "Ġ")."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    byte_to_char = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in byte_to_char]
    byte_to_char.update({b: chr(256 + n) for n, b in enumerate(others)})
    return byte_to_char


def merge_pair(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of ``pair`` in ``ids`` (left to right) with ``new_id``."""
    merged, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            merged.append(new_id)
            i += 2
        else:
            merged.append(ids[i])
            i += 1
    return merged


class BytePairTokenizer:
    """A byte-level BPE tokenizer.

    Args:
        vocab: token id -> the bytes it stands for.
        merges: (left id, right id) -> merged id, in the order they were learned (earlier merges apply first).
        byte_ids: the id of each byte value 0..255 (GPT-2 numbers the bytes in its own order).
        special_tokens: text -> id of tokens that are never split, such as ``<|endoftext|>``.
    """

    def __init__(
        self,
        vocab: dict[int, bytes],
        merges: dict[tuple[int, int], int],
        byte_ids: list[int] | None = None,
        special_tokens: dict[str, int] | None = None,
    ):
        self.vocab = vocab
        self.merges = merges
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}  # lower rank = learned earlier
        self.byte_ids = byte_ids if byte_ids is not None else list(range(256))
        self.special_tokens = special_tokens or {}
        self.pattern = regex.compile(GPT2_SPLIT_PATTERN)
        self.cache: dict[str, list[int]] = {}

    # --- learning ---------------------------------------------------------------------------------------------

    @classmethod
    def train(
        cls, text: str, vocab_size: int, special_tokens: Iterable[str] = (ENDOFTEXT,)
    ) -> BytePairTokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``."""
        special_tokens = list(special_tokens)
        num_merges = vocab_size - 256 - len(special_tokens)
        if num_merges < 0:
            raise ValueError(
                f"vocab_size {vocab_size} is below 256 bytes + {len(special_tokens)} special tokens"
            )
        # Count each distinct pre-token once, with its frequency: merges never cross pre-token boundaries.
        words = Counter(regex.findall(GPT2_SPLIT_PATTERN, text))
        sequences = {word: list(word.encode("utf-8")) for word in words}
        vocab = {i: bytes([i]) for i in range(256)}
        merges: dict[tuple[int, int], int] = {}
        for new_id in range(256, 256 + num_merges):
            pair_counts: Counter[tuple[int, int]] = Counter()
            for word, ids in sequences.items():
                for pair in zip(ids, ids[1:], strict=False):
                    pair_counts[pair] += words[word]
            if not pair_counts:
                break  # every pre-token is a single token already
            best = max(pair_counts, key=pair_counts.__getitem__)  # ties: the pair seen first
            merges[best] = new_id
            vocab[new_id] = vocab[best[0]] + vocab[best[1]]
            sequences = {word: merge_pair(ids, best, new_id) for word, ids in sequences.items()}
        next_id = len(vocab)
        specials = {token: next_id + n for n, token in enumerate(special_tokens)}
        vocab.update({i: token.encode("utf-8") for token, i in specials.items()})
        return cls(vocab, merges, special_tokens=specials)

    # --- GPT-2's files ----------------------------------------------------------------------------------------

    @classmethod
    def from_gpt2_files(cls, vocab_path: str, merges_path: str) -> BytePairTokenizer:
        """Load GPT-2's ``vocab.json`` (= ``encoder.json``) and ``merges.txt`` (= ``vocab.bpe``)."""
        char_to_byte = {c: b for b, c in gpt2_byte_to_char().items()}
        with open(vocab_path, encoding="utf-8") as f:
            token_to_id: dict[str, int] = json.load(f)
        special_tokens = {token: i for token, i in token_to_id.items() if token == ENDOFTEXT}
        vocab = {
            i: bytes(char_to_byte[c] for c in token) for token, i in token_to_id.items() if token != ENDOFTEXT
        }
        vocab.update({i: token.encode("utf-8") for token, i in special_tokens.items()})
        byte_ids = [token_to_id[gpt2_byte_to_char()[b]] for b in range(256)]

        merges: dict[tuple[int, int], int] = {}
        with open(merges_path, encoding="utf-8") as f:
            for line_number, line in enumerate(f, start=1):
                if line.startswith("#version") or not line.strip():
                    continue
                left, right = line.rstrip("\n").split(" ")
                try:
                    merges[(token_to_id[left], token_to_id[right])] = token_to_id[left + right]
                except KeyError as error:
                    raise ValueError(
                        f"{merges_path} line {line_number}: {error} is not in {vocab_path}"
                    ) from None
        return cls(vocab, merges, byte_ids=byte_ids, special_tokens=special_tokens)

    # --- encoding and decoding --------------------------------------------------------------------------------

    def encode_chunk(self, chunk: str) -> list[int]:
        """BPE on one pre-token: apply the earliest-learned merge present, again and again."""
        if chunk in self.cache:
            return self.cache[chunk]
        ids = [self.byte_ids[b] for b in chunk.encode("utf-8")]
        while len(ids) >= 2:
            pairs = set(zip(ids, ids[1:], strict=False))
            pair = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if pair not in self.merges:
                break  # no learned merge left to apply
            ids = merge_pair(ids, pair, self.merges[pair])
        self.cache[chunk] = ids
        return ids

    def encode(self, text: str, allowed_special: Iterable[str] = (ENDOFTEXT,)) -> list[int]:
        """Token ids of ``text``; the special tokens in ``allowed_special`` become their own id."""
        specials = [token for token in allowed_special if token in self.special_tokens]
        parts = regex.split("(" + "|".join(map(regex.escape, specials)) + ")", text) if specials else [text]
        ids: list[int] = []
        for part in parts:
            if part in specials:
                ids.append(self.special_tokens[part])
            else:
                for chunk in self.pattern.findall(part):
                    ids.extend(self.encode_chunk(chunk))
        return ids

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.vocab[i] for i in ids).decode("utf-8", errors="replace")

    def __len__(self) -> int:
        return len(self.vocab)
