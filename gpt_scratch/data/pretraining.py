"""Chapter 2 of the book as `datasets`: text -> token ids -> fixed-length input/target windows.

The book's `GPTDatasetV1` tokenizes one text and slides a window of `max_length` tokens over it with `stride`;
the targets are the inputs shifted by one token. Chapter 5 splits the text 90/10 on characters *before*
windowing, so no window straddles train and validation. We do the same, at any scale:

    source (corpus name, file, files, glob, folder, or a datasets.Dataset with a text column)
      -> documents: a Dataset with one text per row (a file, or a row of the source dataset)
      -> split on characters of the documents joined by the separator (`<|endoftext|>`), as the book splits
      -> tokenize with a batched `map` (cached by datasets; long texts in exact pieces), join with the
         separator's token ids
      -> windows: Dataset {input_ids, target_ids}, each a list of `max_length` int64

`make_dataloader` turns a windows dataset into the torch DataLoader of {input_ids, target_ids} LongTensor batches
that the training loop consumes.
"""

from __future__ import annotations

import glob
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, DatasetDict, concatenate_datasets
from datasets.fingerprint import Hasher

from gpt_scratch.data.corpora import resolve_corpus

logger = logging.getLogger(__name__)

END_OF_TEXT = "<|endoftext|>"

Source = str | os.PathLike | Sequence[str | os.PathLike] | Dataset


# ----------------------------------------------------------------------------------------------------------------
# Reading text


def load_text(source: str | os.PathLike) -> str:
    """The text of one file, or of a known corpus by name (`the-verdict`), checked: UTF-8 and not empty."""
    path = resolve_corpus(source)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{path}: not UTF-8 text (byte {data[e.start]:#04x} at offset {e.start} cannot be decoded: {e.reason})"
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty" + (" (only whitespace)" if text else ""))
    if not text.replace("\x00", "").strip():
        raise ValueError(f"{path}: the file holds only NUL bytes and whitespace, no text to train on")
    if num_nul := text.count("\x00"):
        logger.warning(
            "%s: %d NUL bytes (%.1f%% of the characters); is it a binary or damaged file? They are trained on as text",
            path,
            num_nul,
            100 * num_nul / len(text),
        )
    return text


def expand_files(source: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """The files a source names: a corpus name or path, a folder (its *.txt), a glob pattern, or a list of those."""
    if isinstance(source, (list, tuple)):
        files = [f for item in source for f in expand_files(item)]
        if not files:
            raise ValueError("No files given: the list of sources is empty")
        return files
    name = os.fspath(source)
    if any(ch in name for ch in "*?["):
        files = sorted(
            Path(p) for p in glob.glob(os.path.expanduser(name), recursive=True) if Path(p).is_file()
        )
        if not files:
            raise FileNotFoundError(f"No files match the pattern '{name}'")
        return files
    path = Path(name).expanduser()
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise FileNotFoundError(f"{path}: the folder holds no *.txt files")
        return files
    return [resolve_corpus(name)]


def load_documents(source: Source, text_column: str = "text") -> tuple[Dataset, str]:
    """A Dataset with one text per row (column `text_column`) and a short description of where it came from."""
    if isinstance(source, DatasetDict):
        raise TypeError(f"Pass one split of the DatasetDict, e.g. source['train'] (it has {list(source)})")
    if isinstance(source, Dataset):
        if text_column not in source.column_names:
            raise ValueError(
                f"The dataset has no text column '{text_column}' (columns: {source.column_names})"
            )
        lengths = pc.utf8_length(_column(source, text_column))
        if lengths.null_count:
            row = pc.index(pc.is_null(lengths), True).as_py()
            raise ValueError(f"Row {row} of the dataset has no text: column '{text_column}' is None")
        return source.select_columns([text_column]), f"the dataset's column '{text_column}'"
    if not isinstance(source, (str, os.PathLike, list, tuple)):
        raise TypeError(
            f"Unsupported source {type(source).__name__}: give a corpus name, path(s), glob or Dataset"
        )
    files = expand_files(source)
    documents = Dataset.from_dict({text_column: [load_text(f) for f in files]})
    described = str(files[0]) if len(files) == 1 else f"{len(files)} files ({files[0]}, ...)"
    return documents, described


# ----------------------------------------------------------------------------------------------------------------
# Train/validation split, on characters, before tokenization (book ch. 5)


def split_documents(
    documents: Dataset, train_ratio: float = 0.9, separator: str = END_OF_TEXT, text_column: str = "text"
) -> tuple[Dataset, Dataset]:
    """Split like the book, `split_idx = int(train_ratio * len(text_data))`, on the documents joined by `separator`.

    For a single document this is exactly the book's `text_data[:split_idx]` / `text_data[split_idx:]`. With many
    documents only the one the cut falls in is cut; a cut inside a separator moves to the document boundary.
    Returns (train, validation) documents; validation is empty when train_ratio is 1.
    """
    if not 0.0 < train_ratio <= 1.0:
        raise ValueError(f"train_ratio must be in (0, 1], got {train_ratio}")
    lengths = pc.utf8_length(_column(documents, text_column)).to_numpy(zero_copy_only=False)
    k, offset = book_split_point(lengths, train_ratio, len(separator))
    n = len(documents)
    if offset == 0:
        return _rows(documents, 0, k), _rows(documents, k, n)
    text = documents[k][text_column]
    features = documents.features
    head = Dataset.from_dict({text_column: [text[:offset]]}, features=features)
    tail = Dataset.from_dict({text_column: [text[offset:]]}, features=features)
    train = concatenate_datasets([_rows(documents, 0, k), head])
    validation = concatenate_datasets([tail, _rows(documents, k + 1, len(documents))])
    return train, validation


def book_split_point(lengths: np.ndarray, train_ratio: float, separator_length: int) -> tuple[int, int]:
    """Where the book's `split_idx = int(train_ratio * len(text))` falls in documents of `lengths` characters
    joined by a separator of `separator_length`: (k, offset), train = documents [0, k) + the first `offset`
    characters of document k. A cut inside a separator moves to the document boundary (offset 0)."""
    starts = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64) + separator_length)])
    total = int(starts[-1]) - separator_length
    split_idx = int(train_ratio * total)
    k = int(np.searchsorted(starts, split_idx, side="right")) - 1  # the document (or its separator) cut
    if (
        k >= len(lengths) or split_idx - starts[k] >= lengths[k]
    ):  # at the very end, or in the separator after k
        return k + 1, 0
    return k, int(split_idx - starts[k])


def _rows(dataset: Dataset, start: int, stop: int) -> Dataset:
    stop = min(stop, len(dataset))
    return dataset.select(range(start, stop)) if start < stop else dataset.select([])


def _column(dataset: Dataset, column: str) -> pa.ChunkedArray:
    return dataset.with_format("arrow")[column]


# ----------------------------------------------------------------------------------------------------------------
# Tokenization and windows


def split_long_text(text: str, chunk_chars: int) -> list[str]:
    """Cut a long text into pieces of about `chunk_chars` characters where GPT-2's byte-level BPE tokenizes the
    pieces exactly as the whole: just before a newline that is followed by a letter or digit ("said.\n\n|\nThe").

    GPT-2's pre-tokenizer always makes such a newline a piece of its own (it never joins the next word, and a
    run of whitespace before it is a piece without it), so `encode(a) + encode(b) == encode(a + b)`. (Not before
    other characters: a special token like `<|endoftext|>` after the newline would end the run of whitespace.) This keeps
    the tokenization of big files (one row of many MB) parallel and its memory bounded. A text with no such
    newline stays whole.
    """
    pieces, start = [], 0
    while len(text) - start > chunk_chars:
        cut = text.rfind("\n", start + 1, start + chunk_chars)
        while cut > start and not text[cut + 1].isalnum():
            cut = text.rfind("\n", start + 1, cut)
        if cut <= start:  # no place to cut in this stretch: take the first one after it
            match = _SAFE_CUT.search(text, start + chunk_chars)
            if match is None:
                break
            cut = match.start()
        pieces.append(text[start:cut])
        start = cut
    pieces.append(text[start:])
    return pieces


_SAFE_CUT = re.compile(r"\n(?=[^\W_])")  # a newline before a letter or digit
_CHARS_PER_CALL = 1 << 21  # ~2M characters per tokenizer call: ~0.5M tokens, a few hundred MB at most


def tokenize_documents(
    documents: Dataset,
    tokenizer,
    separator: str = END_OF_TEXT,
    text_column: str = "text",
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    chunk_chars: int | None = 1 << 16,
) -> np.ndarray:
    """All documents' token ids, joined by the separator's ids, as one int64 array.

    Like the book's `tokenizer.encode(text, allowed_special={"<|endoftext|>"})`: no special tokens are added, and
    `<|endoftext|>` inside a text is the special token 50256 (transformers tokenizers match special tokens in the
    text). Long texts are tokenized in pieces of about `chunk_chars` characters (`split_long_text`; exact for
    GPT-2's byte-level BPE; None tokenizes each text whole). The batched `map` is cached by datasets next to a
    file-backed dataset, or in `cache_dir` when given (keyed by the documents and the tokenizer).
    """
    if len(documents) == 0:
        return np.zeros(0, dtype=np.int64)
    separator_ids = tokenizer(separator, add_special_tokens=False)["input_ids"] if separator else []

    def encode(texts: list[str]) -> list[list[int]]:
        encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, verbose=False)
        return encoded["input_ids"]

    def tokenize(batch):
        texts = batch[text_column]
        rows: list[list[int]] = [[] for _ in texts]
        pieces: list[tuple[int, str]] = []  # (row, piece), tokenized together a few MB at a time
        for i, text in enumerate(texts):
            for piece in split_long_text(text, chunk_chars) if chunk_chars else [text]:
                pieces.append((i, piece))
        start = 0
        while start < len(pieces):
            stop, size = start, 0
            while stop < len(pieces) and (stop == start or size + len(pieces[stop][1]) <= _CHARS_PER_CALL):
                size += len(pieces[stop][1])
                stop += 1
            group = pieces[start:stop]
            for (i, _), ids in zip(group, encode([piece for _, piece in group]), strict=True):
                rows[i].extend(ids)
            start = stop
        return {"input_ids": [np.asarray(row + separator_ids, dtype=np.int64) for row in rows]}

    cache_file_name = None
    if cache_dir is not None:
        fingerprint = Hasher.hash(
            [documents._fingerprint, Hasher.hash(tokenizer), separator_ids, text_column, chunk_chars]
        )
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        cache_file_name = str(Path(cache_dir) / f"tokens-{fingerprint}.arrow")
    tokenized = documents.map(
        tokenize,
        batched=True,
        remove_columns=documents.column_names,
        cache_file_name=cache_file_name,
        num_proc=num_proc,
        desc="Tokenizing",
    )
    column = _column(tokenized, "input_ids")
    ids = np.concatenate([chunk.flatten().to_numpy(zero_copy_only=False) for chunk in column.chunks])
    ids = ids[: len(ids) - len(separator_ids)]  # no separator after the last text
    return ids.astype(np.int64, copy=False)


def num_windows(num_tokens: int, max_length: int, stride: int) -> int:
    """How many windows the book's `range(0, len(token_ids) - max_length, stride)` makes."""
    return len(range(0, num_tokens - max_length, stride))


def make_windows(
    token_ids: Sequence[int] | np.ndarray, max_length: int, stride: int | None = None
) -> Dataset:
    """The book's GPTDatasetV1 as a Dataset: `input_ids = token_ids[i:i + max_length]`, `target_ids` shifted by one,
    for i in `range(0, len(token_ids) - max_length, stride)`. A window needs `max_length + 1` tokens."""
    stride = max_length if stride is None else stride
    if max_length < 1 or stride < 1:
        raise ValueError(f"max_length and stride must be >= 1, got max_length={max_length}, stride={stride}")
    ids = np.asarray(token_ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"token_ids must be one flat sequence, got shape {ids.shape}")
    n = num_windows(len(ids), max_length, stride)
    if n == 0:
        raise ValueError(
            f"{len(ids)} tokens are too few for one window: max_length={max_length} needs {max_length + 1}"
        )
    chunks = ids[np.arange(n)[:, None] * stride + np.arange(max_length + 1)]  # (n, max_length + 1)
    inputs = np.ascontiguousarray(chunks[:, :-1]).ravel()
    targets = np.ascontiguousarray(chunks[:, 1:]).ravel()
    return Dataset.from_dict(
        {
            "input_ids": pa.FixedSizeListArray.from_arrays(pa.array(inputs), max_length),
            "target_ids": pa.FixedSizeListArray.from_arrays(pa.array(targets), max_length),
        }
    )


def build_pretraining_datasets(
    source: Source,
    tokenizer,
    max_length: int,
    stride: int | None = None,
    train_ratio: float = 0.9,
    *,
    text_column: str = "text",
    separator: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    num_proc: int | None = None,
    chunk_chars: int | None = 1 << 16,
) -> DatasetDict:
    """Train and validation windows from a text source, as the book's chapter 5 builds its loaders.

    `source`: a known corpus name (`the-verdict`), a file, a folder (its *.txt), a glob, a list of these, or a
    `datasets.Dataset` with a `text_column`. Documents are joined with `separator` (default: the tokenizer's
    eos token, else `<|endoftext|>`). `stride` defaults to `max_length` (the book's chapter 5 set-up).
    `cache_dir`, `num_proc`, `chunk_chars`: see `tokenize_documents` (chunk_chars=None for a tokenizer that is not
    GPT-2's byte-level BPE). Returns DatasetDict(train=..., validation=...); no "validation" when train_ratio is 1.
    """
    stride = max_length if stride is None else stride
    if separator is None:
        separator = getattr(tokenizer, "eos_token", None) or END_OF_TEXT
    documents, described = load_documents(source, text_column)
    train, validation = split_documents(documents, train_ratio, separator, text_column)
    splits = {"train": train, "validation": validation}
    if train_ratio == 1.0:
        del splits["validation"]
    windows = {}
    for split, docs in splits.items():
        ids = tokenize_documents(docs, tokenizer, separator, text_column, cache_dir, num_proc, chunk_chars)
        if num_windows(len(ids), max_length, stride) == 0:
            raise ValueError(
                f"{described}: the {split} split (train_ratio={train_ratio}) has {len(ids)} tokens, too few for one "
                f"window: max_length={max_length} needs {max_length + 1} tokens. Use a longer text, a smaller "
                f"max_length (context length), or a different train_ratio."
            )
        windows[split] = make_windows(ids, max_length, stride)
    return DatasetDict(windows)


# ----------------------------------------------------------------------------------------------------------------
# Batches


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    seed: int | None = None,
    num_workers: int = 0,
) -> torch.utils.data.DataLoader:
    """A DataLoader of {"input_ids": LongTensor (B, T), "target_ids": LongTensor (B, T)} batches.

    `seed` fixes the shuffle order with the DataLoader's own generator (otherwise torch's global RNG, as the book).
    Works for any dataset whose columns are equal-length int lists (the classification and instruction
    workflows pass their own collate through a DataLoader of their own when they need padding).
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.utils.data.DataLoader(
        dataset.with_format("torch"),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        generator=generator,
        num_workers=num_workers,
    )


def create_dataloader_v1(
    txt: str,
    tokenizer,
    batch_size: int = 4,
    max_length: int = 256,
    stride: int = 128,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    seed: int | None = None,
) -> torch.utils.data.DataLoader:
    """The book's `create_dataloader_v1` (ch. 2): one text in memory -> a DataLoader of windows."""
    ids = tokenize_documents(Dataset.from_dict({"text": [txt]}), tokenizer)
    return make_dataloader(
        make_windows(ids, max_length, stride), batch_size, shuffle, drop_last, seed, num_workers
    )
