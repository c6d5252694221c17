"""GPTScratchTokenizer: GPT-2's byte-pair encoding (tiktoken's ``gpt2``) as a transformers tokenizer.

Chapter 2 of the book encodes text with ``tiktoken.get_encoding("gpt2")``. This class keeps tiktoken doing
the work and adds the transformers surface around it: ``tok(batch, padding=True, return_tensors="pt")``,
``decode``/``batch_decode``, ``save_pretrained``/``from_pretrained`` and ``AutoTokenizer``.

Where the vocabulary comes from:
- ``GPTScratchTokenizer()``: tiktoken's own ``gpt2`` files, downloaded once into its cache
  (``TIKTOKEN_CACHE_DIR`` is honoured). Offline with no cache it raises ``GPT2VocabularyNotFoundError``.
- ``GPTScratchTokenizer.from_pretrained(folder)`` / ``GPTScratchTokenizer(vocab_file=..., merges_file=...)``:
  GPT-2's ``vocab.json`` + ``merges.txt`` (what ``save_pretrained`` writes), read locally, no network.

A saved folder names this class in tokenizer_config.json but lists no code for it (no ``auto_map``): with
gpt_scratch imported ``AutoTokenizer.from_pretrained(folder)`` gives this class; without it, with or without
``trust_remote_code``, transformers falls back to the folder's ``tokenizer.json``, a fast tokenizer with the same
ids and no code to run. This file imports only the standard library, tiktoken, tokenizers and transformers (the
model's code imports it for ``save_gpt2``, so it travels with every saved model).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import tempfile
from collections.abc import Callable
from functools import lru_cache, partial
from typing import Any

import tiktoken
import tiktoken.registry
from tokenizers import AddedToken, Encoding, Tokenizer, decoders, pre_tokenizers
from tokenizers.models import BPE
from transformers.tokenization_python import PythonBackend
from transformers.tokenization_utils_base import BatchEncoding, PaddingStrategy, TruncationStrategy

VOCAB_FILES_NAMES = {
    "vocab_file": "vocab.json",
    "merges_file": "merges.txt",
    "tokenizer_file": "tokenizer.json",
}
ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256

# GPT-2's pre-tokenisation regex, as tiktoken writes it (equivalent to the original, faster).
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# The book's Alpaca prompt (chapter 7) as a chat template. A system message is the instruction and the user message
# after it the input; a user message alone is the instruction (an empty input is left out, as the book does). An
# assistant message is the response, ended by <|endoftext|>, inside a {% generation %} block: the tokens
# return_assistant_tokens_mask (TRL's assistant_only_loss) trains on, as the book's exercise 7.2 masks the prompt.
# The generation prompt is the response marker.
ALPACA_CHAT_TEMPLATE = (
    "{{- 'Below is an instruction that describes a task. Write a response that appropriately completes the request.' -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' or (message['role'] == 'user' and (loop.first or loop.previtem['role'] != 'system')) -%}"
    "{{- '\n\n### Instruction:\n' + message['content'] -}}"
    "{%- elif message['role'] == 'user' and message['content'] -%}"
    "{{- '\n\n### Input:\n' + message['content'] -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- '\n\n### Response:\n' -}}{%- generation -%}{{- message['content'] + eos_token -}}{%- endgeneration -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '\n\n### Response:\n' -}}{%- endif -%}"
)  # fmt: skip

# The two files tiktoken downloads for "gpt2"; it caches each under the sha1 of its address.
TIKTOKEN_GPT2_URLS = {
    "encoder.json (= vocab.json)": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
    "vocab.bpe (= merges.txt)": "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
}
TIKTOKEN_HOST = "openaipublic.blob.core.windows.net"


class GPT2VocabularyNotFoundError(RuntimeError):
    """GPT-2's BPE files are neither in tiktoken's cache nor downloadable (offline), nor given as files."""


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 byte values to printable characters (how vocab.json and merges.txt spell bytes)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = printable[:]
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _tiktoken_cache_dir() -> str:
    """The folder tiktoken caches downloads in (same rule as ``tiktoken.load.read_file_cached``)."""
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _is_offline() -> bool:
    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return any(flag.strip().lower() in {"1", "true", "yes", "on"} for flag in flags)


def _can_reach(host: str, timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _vocabulary_not_found(cache_dir: str, missing: list[str], reason: str) -> GPT2VocabularyNotFoundError:
    cached_names = "\n".join(
        f"    {hashlib.sha1(url.encode()).hexdigest()}  <- {name}, from {url}"
        for name, url in TIKTOKEN_GPT2_URLS.items()
    )
    return GPT2VocabularyNotFoundError(
        f"GPT-2's BPE vocabulary is not available: tiktoken's cache folder {cache_dir!r} lacks {', '.join(missing)} "
        f"and {reason}.\nProvide it in one of these ways:\n"
        f"  1. set TIKTOKEN_CACHE_DIR to a folder holding tiktoken's two cached files:\n{cached_names}\n"
        "  2. load from a folder with GPT-2's vocab.json + merges.txt (e.g. one written by save_pretrained):\n"
        "     GPTScratchTokenizer.from_pretrained(folder) or GPTScratchTokenizer(vocab_file=..., merges_file=...)\n"
        "  3. run once with network access so tiktoken downloads and caches the files."
    )


def load_tiktoken_gpt2() -> tiktoken.Encoding:
    """tiktoken's ``gpt2`` encoding, failing fast with a clear error when it is neither cached nor downloadable."""
    if "gpt2" in tiktoken.registry.ENCODINGS:
        return tiktoken.registry.ENCODINGS["gpt2"]
    cache_dir = _tiktoken_cache_dir()
    missing = [
        name
        for name, url in TIKTOKEN_GPT2_URLS.items()
        if not cache_dir
        or not os.path.exists(os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest()))
    ]
    if missing and _is_offline():
        raise _vocabulary_not_found(
            cache_dir, missing, "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)"
        )
    if missing and not _can_reach(TIKTOKEN_HOST):
        raise _vocabulary_not_found(cache_dir, missing, f"{TIKTOKEN_HOST} cannot be reached to download them")
    try:
        return tiktoken.get_encoding("gpt2")
    except (
        OSError,
        ValueError,
    ) as error:  # requests' network errors are OSErrors; a bad download a ValueError
        raise _vocabulary_not_found(
            cache_dir, missing or ["a valid copy"], f"loading them failed ({error})"
        ) from error


def encoding_from_files(vocab_file: str, merges_file: str) -> tiktoken.Encoding:
    """Build tiktoken's GPT-2 encoding from Hugging Face-style ``vocab.json`` + ``merges.txt``, offline."""
    byte_decoder = {char: byte for byte, char in bytes_to_unicode().items()}
    with open(vocab_file, encoding="utf-8") as f:
        vocab: dict[str, int] = json.load(f)
    if vocab.get(ENDOFTEXT) != ENDOFTEXT_ID:
        raise ValueError(
            f"{vocab_file}: expected GPT-2's {ENDOFTEXT!r} at id {ENDOFTEXT_ID}, got {vocab.get(ENDOFTEXT)}"
        )
    try:
        ranks = {bytes(byte_decoder[c] for c in token): i for token, i in vocab.items() if token != ENDOFTEXT}
    except KeyError as error:
        raise ValueError(f"{vocab_file}: token with character {error} is not GPT-2 byte-level BPE") from None

    # tiktoken merges by rank, so GPT-2's ids must be the merge order: merge line n creates id 256 + n.
    with open(merges_file, encoding="utf-8") as f:
        lines = [line for line in f.read().split("\n") if line and not line.startswith("#version")]
    if len(ranks) != 256 + len(lines):
        raise ValueError(
            f"{vocab_file} has {len(ranks)} BPE tokens but {merges_file} has {len(lines)} merges (+256 bytes)"
        )
    for n, line in enumerate(lines):
        first, second = line.split(" ")
        merged = bytes(byte_decoder[c] for c in first + second)
        if ranks.get(merged) != 256 + n:
            raise ValueError(f"{merges_file}: merge {n + 1} {line!r} is not id {256 + n} in {vocab_file}")
    return tiktoken.Encoding(
        "gpt2-from-files",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: ENDOFTEXT_ID},
    )


def bpe_merges_from_ranks(ranks: dict[bytes, int]) -> list[tuple[str, str]]:
    """GPT-2's merge list, recovered from tiktoken's ranks: the last merge BPE makes on each token's own bytes."""
    byte_encoder = bytes_to_unicode()
    merges: list[tuple[str, str]] = [("", "")] * (len(ranks) - 256)
    for token, rank in ranks.items():
        if rank < 256:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        # Replay BPE on the token's bytes with only older merges: the two parts left are its merge.
        while len(parts) > 2:
            pair_ranks = [ranks.get(a + b, rank) for a, b in zip(parts, parts[1:], strict=False)]
            best = min(range(len(pair_ranks)), key=pair_ranks.__getitem__)
            if pair_ranks[best] >= rank:
                raise ValueError(f"token {token!r} (id {rank}) cannot be built from earlier merges")
            parts[best : best + 2] = [parts[best] + parts[best + 1]]
        first, second = ("".join(byte_encoder[b] for b in p) for p in parts)
        merges[rank - 256] = (first, second)
    return merges


def rust_tokenizer_from_ranks(encoding: tiktoken.Encoding) -> Tokenizer:
    """tiktoken's GPT-2 encoding as a Rust ``tokenizers.Tokenizer``, built as transformers builds GPT-2's fast
    tokenizer (byte-level BPE, GPT-2's pre-tokenisation, ``<|endoftext|>`` special): the same ids, with offsets.
    Each call gives a new tokenizer (a tokenizer's added tokens are its own); the merges are replayed once."""
    return Tokenizer.from_str(_rust_tokenizer_json(encoding))


@lru_cache(maxsize=2)
def _rust_tokenizer_json(encoding: tiktoken.Encoding) -> str:
    byte_encoder = bytes_to_unicode()
    vocab = {"".join(byte_encoder[b] for b in token): i for token, i in encoding._mergeable_ranks.items()}
    vocab[ENDOFTEXT] = ENDOFTEXT_ID
    merges = bpe_merges_from_ranks(encoding._mergeable_ranks)
    rust = Tokenizer(BPE(vocab=vocab, merges=merges, continuing_subword_prefix="", end_of_word_suffix="", fuse_unk=False))  # fmt: skip
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    rust.add_special_tokens([AddedToken(ENDOFTEXT, special=True, normalized=False)])
    return rust.to_str()


class GPTScratchBatchEncoding(BatchEncoding):
    """A BatchEncoding whose fast-tokenizer ``encodings`` (tokens, offsets, words, ``char_to_token``, ...) are made
    by the Rust tokenizer when first asked for, so that encoding ids alone stays at tiktoken's speed."""

    def __init__(self, *args: Any, make_encodings: Callable[[], list[Encoding]] | None = None, **kwargs: Any):
        self._make_encodings = make_encodings
        super().__init__(*args, **kwargs)

    @property
    def _encodings(self) -> list[Encoding] | None:
        if self.__dict__.get("_made_encodings") is None and self.__dict__.get("_make_encodings") is not None:
            self.__dict__["_made_encodings"] = self._make_encodings()
        return self.__dict__.get("_made_encodings")

    @_encodings.setter
    def _encodings(self, value: list[Encoding] | None) -> None:
        self.__dict__["_made_encodings"] = value

    @property
    def is_fast(self) -> bool:
        """Whether encodings can be given (asking does not make them)."""
        return (
            self.__dict__.get("_made_encodings") is not None
            or self.__dict__.get("_make_encodings") is not None
        )

    def __getstate__(
        self,
    ) -> dict[str, Any]:  # encodings made so far travel; the maker (holding the tokenizer) not
        return {"data": self.data, "encodings": self.__dict__.get("_made_encodings")}


class GPTScratchTokenizer(PythonBackend):
    """GPT-2's tokenizer with tiktoken doing the encoding and decoding.

    Ids equal tiktoken's ``gpt2`` (with ``<|endoftext|>`` allowed) and transformers' ``GPT2TokenizerFast``.
    ``<|endoftext|>`` is the end-of-text, beginning-of-text, unknown and (by default, as the book pads with
    50256) padding token. What only a fast tokenizer gives (``encodings``: tokens, offsets, words,
    ``char_to_token``; a ``DecodeStream``) comes from ``_tokenizer``, the same vocabulary as a Rust
    ``tokenizers.Tokenizer``, built on first use and saved as ``tokenizer.json``.

    Args:
        vocab_file: GPT-2's ``vocab.json``; with ``merges_file``, the vocabulary is read from these files.
            Without them, tiktoken's own ``gpt2`` download/cache is used.
        merges_file: GPT-2's ``merges.txt``.
        tokenizer_file: the saved ``tokenizer.json`` (else the Rust tokenizer is built from the ranks).
        errors: how to decode bytes that are not valid UTF-8 (``bytes.decode``'s ``errors``).
    """

    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]
    padding_side = "right"

    def __init__(
        self,
        vocab_file: str | None = None,
        merges_file: str | None = None,
        tokenizer_file: str | None = None,
        errors: str = "replace",
        unk_token: str = ENDOFTEXT,
        bos_token: str = ENDOFTEXT,
        eos_token: str = ENDOFTEXT,
        pad_token: str | None = ENDOFTEXT,
        model_max_length: int = 1024,
        clean_up_tokenization_spaces: bool = False,
        **kwargs: Any,
    ):
        if (vocab_file is None) != (merges_file is None):
            raise ValueError("give both vocab_file (vocab.json) and merges_file (merges.txt), or neither")
        # Folders saved before tokenizer.json listed this file as remote code; saved again, they list none.
        kwargs.pop("auto_map", None)
        self.encoding = encoding_from_files(vocab_file, merges_file) if vocab_file else load_tiktoken_gpt2()
        self.errors = errors
        byte_encoder = bytes_to_unicode()
        # id -> GPT-2's printable spelling of the token's bytes ("Ġthe"), as in vocab.json
        self.decoder_tokens = [""] * self.encoding.n_vocab
        for token_bytes, i in self.encoding._mergeable_ranks.items():
            self.decoder_tokens[i] = "".join(byte_encoder[b] for b in token_bytes)
        self.decoder_tokens[ENDOFTEXT_ID] = ENDOFTEXT
        self.encoder = {token: i for i, token in enumerate(self.decoder_tokens)}
        self.byte_decoder = {char: byte for byte, char in byte_encoder.items()}
        self.tokenizer_file = tokenizer_file
        self._rust_tokenizer: Tokenizer | None = None
        super().__init__(
            errors=errors,
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            model_max_length=model_max_length,
            clean_up_tokenization_spaces=clean_up_tokenization_spaces,
            **kwargs,
        )

    @property
    def _tokenizer(self) -> Tokenizer:
        """The vocabulary as a Rust ``tokenizers.Tokenizer`` (what a fast tokenizer holds), with the added tokens."""
        if self._rust_tokenizer is None:
            if self.tokenizer_file and os.path.isfile(self.tokenizer_file):
                self._rust_tokenizer = Tokenizer.from_file(self.tokenizer_file)
            else:
                self._rust_tokenizer = rust_tokenizer_from_ranks(self.encoding)
        rust = self._rust_tokenizer
        missing = [t for i, t in sorted(self._added_tokens_decoder.items()) if rust.token_to_id(str(t)) != i]
        if missing:
            rust.add_tokens([AddedToken(str(t), special=t.special, normalized=False) for t in missing])
        return rust

    @property
    def backend_tokenizer(self) -> Tokenizer:
        return self._tokenizer

    # --- vocabulary -----------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.encoding.n_vocab

    def get_vocab(self) -> dict[str, int]:
        return {**self.encoder, **self._added_tokens_encoder}

    def _convert_token_to_id(self, token: str) -> int:
        return self.encoder.get(token, self.encoder.get(str(self.unk_token), ENDOFTEXT_ID))

    def _convert_id_to_token(self, index: int) -> str:
        return self.decoder_tokens[index]

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return [self.decoder_tokens[i] for i in self.encoding.encode_ordinary(text)]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        added = self._added_tokens_encoder
        data = b"".join(
            token.encode("utf-8") if token in added else bytes(self.byte_decoder[c] for c in token)
            for token in tokens
        )
        return data.decode("utf-8", errors=self.errors)

    # --- encoding: tiktoken does the work, transformers' generic path only for what tiktoken cannot do ---------

    def _encoder_for(self, split_special_tokens: bool) -> Callable[[str], list[int]]:
        """A function text -> ids that matches what ``tokenize`` + ``convert_tokens_to_ids`` would give."""
        if split_special_tokens:
            return self.encoding.encode_ordinary
        if self._added_tokens_encoder.keys() == {ENDOFTEXT}:  # tiktoken alone: it knows <|endoftext|>
            return partial(self.encoding.encode, allowed_special={ENDOFTEXT}, disallowed_special=())
        # Tokens added by the user: split on them with transformers' trie (handles lstrip/rstrip/single_word).
        return lambda text: self.convert_tokens_to_ids(self.tokenize(text))

    def _encode_plus(
        self,
        text: Any,
        text_pair: Any = None,
        add_special_tokens: bool = True,
        padding_strategy: PaddingStrategy = PaddingStrategy.DO_NOT_PAD,
        truncation_strategy: TruncationStrategy = TruncationStrategy.DO_NOT_TRUNCATE,
        max_length: int | None = None,
        stride: int = 0,
        is_split_into_words: bool = False,
        pad_to_multiple_of: int | None = None,
        padding_side: str | None = None,
        return_tensors: Any = None,
        return_token_type_ids: bool | None = None,
        return_attention_mask: bool | None = None,
        return_overflowing_tokens: bool = False,
        return_special_tokens_mask: bool = False,
        return_length: bool = False,
        verbose: bool = True,
        split_special_tokens: bool | None = None,
        **kwargs: Any,
    ) -> BatchEncoding:
        return_offsets_mapping = kwargs.pop("return_offsets_mapping", False)
        if not kwargs.get("sanitize_control_tokens"):  # apply_chat_template passes False
            kwargs.pop("sanitize_control_tokens", None)
        split_special_tokens = (
            self.split_special_tokens if split_special_tokens is None else split_special_tokens
        )
        batched = isinstance(text, (list, tuple)) and all(isinstance(t, str) for t in text)
        simple = (
            (isinstance(text, str) or batched)
            and text_pair is None
            and not is_split_into_words
            and not return_overflowing_tokens
            and not return_special_tokens_mask
            and not return_token_type_ids
            and not (add_special_tokens and self.special_tokens_pattern not in (None, "none"))
            and not kwargs
        )
        if return_offsets_mapping and not simple:
            raise NotImplementedError(
                "GPTScratchTokenizer gives offsets for plain texts (one or a batch); use the saved tokenizer.json "
                "(AutoTokenizer without the gpt_scratch package, or PreTrainedTokenizerFast.from_pretrained(folder)) for "
                "pairs, pre-split words or overflowing windows"
            )
        if not simple:  # pairs, pre-split words, overflow windows...: transformers' generic path
            return super()._encode_plus(
                text=text,
                text_pair=text_pair,
                add_special_tokens=add_special_tokens,
                padding_strategy=padding_strategy,
                truncation_strategy=truncation_strategy,
                max_length=max_length,
                stride=stride,
                is_split_into_words=is_split_into_words,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_tensors=return_tensors,
                return_token_type_ids=return_token_type_ids,
                return_attention_mask=return_attention_mask,
                return_overflowing_tokens=return_overflowing_tokens,
                return_special_tokens_mask=return_special_tokens_mask,
                return_length=return_length,
                verbose=verbose,
                split_special_tokens=split_special_tokens,
                **kwargs,
            )

        # One text or a batch: a plain loop over tiktoken (faster here than its thread-pool batch encoder).
        texts = list(text) if batched else [text]
        encode = self._encoder_for(split_special_tokens)
        input_ids = [encode(t) for t in texts]
        truncate_to = None
        if truncation_strategy != TruncationStrategy.DO_NOT_TRUNCATE and max_length is not None:
            truncate_to = max_length
            keep = (
                (lambda seq: seq[-max_length:])
                if self.truncation_side == "left"
                else (lambda seq: seq[:max_length])
            )
            input_ids = [keep(ids) for ids in input_ids]
        if verbose and input_ids:
            self._eventual_warn_about_too_long_sequence(max(input_ids, key=len), max_length, verbose)
        if return_attention_mask is None:
            return_attention_mask = "attention_mask" in self.model_input_names

        if padding_strategy == PaddingStrategy.DO_NOT_PAD:
            outputs: dict[str, Any] = {"input_ids": input_ids}
            if return_attention_mask:
                outputs["attention_mask"] = [[1] * len(ids) for ids in input_ids]
        else:
            outputs = self.pad(
                {"input_ids": input_ids},
                padding=padding_strategy.value,
                max_length=max_length,
                pad_to_multiple_of=pad_to_multiple_of,
                padding_side=padding_side,
                return_attention_mask=return_attention_mask,
            ).data
        make_encodings = partial(
            self._rust_encodings,
            texts,
            outputs["input_ids"],
            split_special_tokens=split_special_tokens,
            truncate_to=truncate_to,
            padding_side=padding_side or self.padding_side,
        )
        encodings = None
        if return_offsets_mapping:
            encodings = make_encodings()
            outputs["offset_mapping"] = [e.offsets for e in encodings]
        if return_length:
            outputs["length"] = [len(ids) for ids in outputs["input_ids"]]
        if not batched:
            outputs = {key: value[0] for key, value in outputs.items()}
        batch = GPTScratchBatchEncoding(
            outputs, tensor_type=return_tensors, prepend_batch_axis=not batched, make_encodings=make_encodings
        )
        batch._encodings = encodings
        return batch

    def _rust_encodings(
        self,
        texts: list[str],
        input_ids: list[list[int]],
        split_special_tokens: bool,
        truncate_to: int | None,
        padding_side: str,
    ) -> list[Encoding]:
        """The Rust tokenizer's encodings of ``texts``, truncated and padded as ``input_ids`` (tiktoken's ids) are,
        and checked to hold the very same ids."""
        rust = self._tokenizer
        rust.encode_special_tokens = split_special_tokens
        try:
            encodings = rust.encode_batch(texts, add_special_tokens=False)
        finally:
            rust.encode_special_tokens = False
        for row, (encoding, ids) in enumerate(zip(encodings, input_ids, strict=True)):
            if truncate_to is not None:
                encoding.truncate(truncate_to, direction=self.truncation_side)
            if len(ids) > len(encoding):
                pad_id = self.pad_token_id
                encoding.pad(len(ids), direction=padding_side, pad_id=pad_id, pad_token=str(self.pad_token))
            if encoding.ids != list(ids):
                raise RuntimeError(
                    f"text {row}: the Rust tokenizer's ids differ from tiktoken's ({len(encoding.ids)} vs {len(ids)} "
                    "tokens); its encodings (tokens, offsets, words) would not match the ids"
                )
        return encodings

    # --- decoding -------------------------------------------------------------------------------------------

    def _decode(
        self,
        token_ids: int | list[int],
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
        **kwargs: Any,
    ) -> str:
        ids = [token_ids] if isinstance(token_ids, int) else list(token_ids)
        if skip_special_tokens:
            special = set(self.all_special_ids)
            ids = [i for i in ids if i not in special]
        if not ids or (min(ids) >= 0 and max(ids) < self.encoding.n_vocab):
            text = self.encoding.decode_bytes(ids).decode("utf-8", errors=self.errors)
        else:  # ids of user-added tokens (unknown ids raise IndexError in convert_ids_to_tokens)
            text = self.convert_tokens_to_string(self.convert_ids_to_tokens(ids))
        if clean_up_tokenization_spaces is None:
            clean_up_tokenization_spaces = self.clean_up_tokenization_spaces
        if clean_up_tokenization_spaces:
            text = self.clean_up_tokenization(text)
        return text

    # --- saving ---------------------------------------------------------------------------------------------

    def bpe_merges(self) -> list[tuple[str, str]]:
        """GPT-2's merge list, recovered from the ranks."""
        return bpe_merges_from_ranks(self.encoding._mergeable_ranks)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write GPT-2's ``vocab.json`` and ``merges.txt``, the files transformers' GPT-2 tokenizer reads, and the
        Rust tokenizer as ``tokenizer.json``: ``AutoTokenizer`` without this package loads it as a fast tokenizer."""
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary needs a folder, got {save_directory}")
        prefix = f"{filename_prefix}-" if filename_prefix else ""
        vocab_file = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["vocab_file"])
        merges_file = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["merges_file"])
        with open(vocab_file, "w", encoding="utf-8") as f:
            json.dump(self.encoder, f, ensure_ascii=False)
        with open(merges_file, "w", encoding="utf-8") as f:
            f.write("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in self.bpe_merges()))
        tokenizer_file = os.path.join(save_directory, prefix + VOCAB_FILES_NAMES["tokenizer_file"])
        self._tokenizer.save(tokenizer_file)
        return vocab_file, merges_file, tokenizer_file


def register_auto_tokenizer() -> None:
    """Make ``AutoTokenizer`` use this class, in-process, for any folder whose tokenizer_config names it.

    Registered by class name (what tokenizer_config.json's ``tokenizer_class`` says), not in TOKENIZER_MAPPING:
    transformers 5 treats a config type found in TOKENIZER_MAPPING plus an ``auto_map`` as "remote code only" and
    asks for ``trust_remote_code``, whereas a class known by name counts as explicit local code, as for models.
    """
    from transformers.models.auto.tokenization_auto import REGISTERED_TOKENIZER_CLASSES

    REGISTERED_TOKENIZER_CLASSES[GPTScratchTokenizer.__name__] = GPTScratchTokenizer


__all__ = [
    "GPTScratchTokenizer",
    "GPT2VocabularyNotFoundError",
    "GPTScratchBatchEncoding",
    "rust_tokenizer_from_ranks",
    "register_auto_tokenizer",
]
