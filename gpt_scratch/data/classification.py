"""Text classification data (chapter 6): the SMS spam set, or any table with a text and a label column.

The book's preparation, step by step:

1. read the rows (`load_classification_rows`): `sms-spam` by name, a CSV / TSV / JSON / JSONL file, or a
   `datasets.Dataset`; labels become class ids through `label2id` (spam set: ham -> 0, spam -> 1);
2. `create_balanced_dataset`: undersample every class to the size of the smallest (book: 747 ham + 747 spam);
3. `random_split`: shuffle with a seed and cut 70/10/20 into train/validation/test (book: 1045/149/300);
4. tokenize and pad with 50256 to the longest training text, or to a given `max_length` (longer texts are cut);
   validation and test are padded or cut to that same length (book: 120 tokens).

`prepare_classification_data` runs all four and returns a `ClassificationData`: a `datasets.DatasetDict` with
`input_ids`, `attention_mask` (1 on real tokens) and `labels`, plus the `max_length` it used. Balancing and
shuffling draw exactly as the book's pandas calls do (`df.sample(..., random_state=123)`), so the splits are
the book's own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from gpt_scratch.data.corpora import resolve_corpus
from gpt_scratch.tokenization_gpt_scratch import ENDOFTEXT_ID

logger = logging.getLogger(__name__)

SPAM_LABEL2ID = {"ham": 0, "spam": 1}
PAD_TOKEN_ID = ENDOFTEXT_ID  # <|endoftext|>, the book's padding token


@dataclass
class ClassificationRows:
    """Texts and class ids read from one source, before balancing and splitting."""

    texts: list[str]
    labels: list[int]
    label2id: dict[str, int]
    source: str  # for messages: the file, or "<dataset>"

    @property
    def id2label(self) -> dict[int, str]:
        return {i: label for label, i in self.label2id.items()}


@dataclass
class ClassificationData:
    """The tokenized splits and what a model needs to know about them."""

    dataset: DatasetDict  # train / validation / test: input_ids, attention_mask, labels
    max_length: int  # every row of every split is padded or cut to this many tokens
    label2id: dict[str, int]
    num_dropped: int = 0  # invalid rows dropped (drop_invalid=True)
    num_duplicates: int = (
        0  # exact duplicate rows: removed (dedupe=True), else found in train and another split
    )
    id2label: dict[int, str] = field(init=False)

    def __post_init__(self) -> None:
        self.id2label = {i: label for label, i in self.label2id.items()}


def default_tokenizer() -> Any:
    """The package's GPT-2 tokenizer: tiktoken's `gpt2` encoding under the transformers API."""
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    return GPTScratchTokenizer()


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text with a tiktoken `Encoding` or a `transformers` tokenizer.

    Data is plain text: nothing is added, and a literal `<|endoftext|>` in it is encoded as text, not as the
    special token (tiktoken's `encode_ordinary`).
    """
    if hasattr(tokenizer, "encode_ordinary_batch"):  # tiktoken, as the book encodes
        return tokenizer.encode_ordinary_batch(list(texts))
    return tokenizer(list(texts), add_special_tokens=False, split_special_tokens=True)["input_ids"]


# ---------------------------------------------------------------------------------------------------------------
# 1. Reading


def _read_table(
    source: str | os.PathLike | Dataset, text_column: str, label_column: str
) -> tuple[list, list, str]:
    """Raw text and label values of every row, and a name for the source."""
    if isinstance(source, Dataset):
        for column in (text_column, label_column):
            if column not in source.column_names:
                raise KeyError(f"<dataset>: no column '{column}' (columns: {source.column_names})")
        return list(source[text_column]), list(source[label_column]), "<dataset>"

    import pandas as pd  # a dependency of datasets; read_csv is how the book reads the spam set

    path = resolve_corpus(source)
    try:
        if str(source) == "sms-spam":  # label<TAB>text, no header: the book's pd.read_csv call
            frame = pd.read_csv(path, sep="\t", header=None, names=[label_column, text_column])
        elif path.suffix.lower() == ".csv":
            frame = pd.read_csv(path)
        elif path.suffix.lower() in (".tsv", ".tab"):
            frame = pd.read_csv(path, sep="\t")
        else:
            frame = None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        # pandas: "Error tokenizing data. C error: Expected 2 fields in line 5, saw 3"
        detail = str(e).strip().split("C error: ")[-1]
        line = re.search(r"line (\d+)", detail)
        where = f"line {line.group(1)}: " if line else ""
        raise ValueError(f"{path}: {where}{detail}") from None
    if frame is None and path.suffix.lower() in (".json", ".jsonl"):
        frame = pd.DataFrame(_read_json_records(path))
    elif frame is None:
        raise ValueError(f"{path}: unknown table format '{path.suffix}' (use .csv, .tsv, .json or .jsonl)")
    for column in (text_column, label_column):
        if column not in frame.columns:
            raise KeyError(f"{path}: no column '{column}' (columns: {list(frame.columns)})")
    return frame[text_column].tolist(), frame[label_column].tolist(), str(path)


def _read_json_records(path: Path) -> list[dict]:
    """A JSON list of objects, or JSON lines: one object a line."""
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        records = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {line_number}: not valid JSON: {e}") from e
        return records
    records = json.loads(text)
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(records).__name__}")
    return records


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label_key(value: Any) -> str:
    """Labels are matched by their text: 'spam', or '1' for a numeric label column."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def load_classification_rows(
    source: str | os.PathLike | Dataset = "sms-spam",
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label2id: dict[str, int] | None = None,
    drop_invalid: bool = False,
    min_rows: int = 1,
    needs: str = "",
) -> tuple[ClassificationRows, int]:
    """Texts and class ids of `source`, and how many invalid rows were dropped.

    `source`: `"sms-spam"`, a path to a .csv / .tsv (header row) / .json / .jsonl file, or a `datasets.Dataset`.
    Columns default to `Text` / `Label` for the spam set and `text` / `label` otherwise. `label2id` defaults to
    ham -> 0, spam -> 1 for the spam set, otherwise to the sorted distinct labels (identity for integer labels).
    A row with an empty text or a label not in `label2id` raises `ValueError` naming the source and the row
    (1-based, header not counted); with `drop_invalid=True` such rows are dropped and counted instead. Fewer than
    `min_rows` valid rows (what for: `needs`), or fewer than two classes, is a `ValueError` naming the source.
    """
    is_spam = isinstance(source, str) and source == "sms-spam"
    text_column = text_column or ("Text" if is_spam else "text")
    label_column = label_column or ("Label" if is_spam else "label")
    raw_texts, raw_labels, name = _read_table(source, text_column, label_column)

    if label2id is None and is_spam:
        label2id = dict(SPAM_LABEL2ID)
    elif label2id is None:
        keys = {_label_key(v) for v in raw_labels if not _is_missing(v) and str(v).strip()}
        if keys and all(k.lstrip("-").isdigit() for k in keys):
            label2id = {k: int(k) for k in sorted(keys, key=int)}
        else:
            label2id = {k: i for i, k in enumerate(sorted(keys))}
    label2id = {str(k): int(v) for k, v in label2id.items()}

    texts, labels, problems = [], [], []
    for row, (text, label) in enumerate(zip(raw_texts, raw_labels, strict=True), start=1):
        if _is_missing(text) or not str(text).strip():
            problems.append(f"{name}: row {row}: empty text {text!r} in column '{text_column}'")
        elif _is_missing(label) or _label_key(label) not in label2id:
            problems.append(
                f"{name}: row {row}: unknown label {label!r} in column '{label_column}' "
                f"(known: {sorted(label2id)})"
            )
        else:
            texts.append(str(text))
            labels.append(label2id[_label_key(label)])
    if problems and not drop_invalid:
        more = f" (and {len(problems) - 1} more invalid rows)" if len(problems) > 1 else ""
        raise ValueError(problems[0] + more + "; pass drop_invalid=True to drop them")
    if problems:
        logger.warning("%s: dropped %d invalid rows, e.g. %s", name, len(problems), problems[0])
    if len(texts) < min_rows:
        raise ValueError(
            f"{name}: {len(texts)} valid rows, too few: {needs or 'a classifier needs'} at least {min_rows}"
        )
    present = sorted({_label_key(v) for v in raw_labels if not _is_missing(v)} & set(label2id))
    if len(label2id) < 2 or len(present) < 2:
        raise ValueError(
            f"{name}: a classifier needs at least two classes, the rows hold {present} "
            f"(labels: {sorted(label2id)}); check the label column '{label_column}'"
        )
    return ClassificationRows(texts, labels, label2id, name), len(problems)


def drop_duplicates(rows: ClassificationRows) -> tuple[ClassificationRows, int]:
    """`rows` without exact duplicates (same text and label; the first is kept), and how many were removed."""
    first_index: dict[tuple[str, int], int] = {}
    for i, row in enumerate(zip(rows.texts, rows.labels, strict=True)):
        first_index.setdefault(row, i)
    keep = sorted(first_index.values())
    deduped = ClassificationRows(
        [rows.texts[i] for i in keep], [rows.labels[i] for i in keep], rows.label2id, rows.source
    )
    return deduped, len(rows.texts) - len(keep)


def count_leaked_duplicates(splits: dict[str, ClassificationRows]) -> dict[str, int]:
    """For validation and test: how many of their rows are exact duplicates (text and label) of a training row."""
    train = set(zip(splits["train"].texts, splits["train"].labels, strict=True))
    return {
        split: sum(row in train for row in zip(part.texts, part.labels, strict=True))
        for split, part in splits.items()
        if split != "train"
    }


# ---------------------------------------------------------------------------------------------------------------
# 2-3. Balancing and splitting, drawing as the book's pandas calls draw


def _sample_indices(n: int, size: int, seed: int) -> np.ndarray:
    # `df.sample(size, random_state=seed)` is exactly this draw
    return np.random.RandomState(seed).choice(n, size=size, replace=False)


def create_balanced_dataset(rows: ClassificationRows, seed: int = 123) -> ClassificationRows:
    """Undersample every class to the size of the smallest one; classes in id order (book: ham first)."""
    labels = np.asarray(rows.labels)
    class_ids = sorted(set(rows.labels))
    smallest = min(int(np.sum(labels == c)) for c in class_ids)
    keep = []
    for c in class_ids:
        members = np.flatnonzero(labels == c)
        keep.extend(
            members[_sample_indices(len(members), smallest, seed)] if len(members) > smallest else members
        )
    return ClassificationRows(
        [rows.texts[i] for i in keep], [rows.labels[i] for i in keep], rows.label2id, rows.source
    )


def min_split_rows(train_frac: float = 0.7, validation_frac: float = 0.1) -> int:
    """The fewest rows for which `random_split` gives train, test and (when `validation_frac` > 0) validation a row."""
    for n in range(2, 100_000):
        train, validation = int(n * train_frac), int(n * validation_frac)
        if train >= 1 and (validation >= 1 or validation_frac == 0) and n - train - validation >= 1:
            return n
    raise ValueError(
        f"no split gives every part a row with train_frac={train_frac}, validation_frac={validation_frac}"
    )


def random_split(
    rows: ClassificationRows, train_frac: float = 0.7, validation_frac: float = 0.1, seed: int = 123
) -> dict[str, ClassificationRows]:
    """Shuffle with `seed`, then the first `train_frac` is train, the next `validation_frac` validation, the rest test."""
    order = _sample_indices(len(rows.texts), len(rows.texts), seed)
    train_end = int(len(order) * train_frac)
    validation_end = train_end + int(len(order) * validation_frac)
    parts = {
        "train": order[:train_end],
        "validation": order[train_end:validation_end],
        "test": order[validation_end:],
    }
    return {
        split: ClassificationRows(
            [rows.texts[i] for i in idx], [rows.labels[i] for i in idx], rows.label2id, rows.source
        )
        for split, idx in parts.items()
    }


# ---------------------------------------------------------------------------------------------------------------
# 4. Tokenizing and padding


def pad_to_length(
    token_ids: list[int], max_length: int, pad_token_id: int = PAD_TOKEN_ID
) -> tuple[list[int], list[int]]:
    """`token_ids` cut or padded to `max_length`, and its attention mask (1 on real tokens)."""
    token_ids = token_ids[:max_length]
    padding = max_length - len(token_ids)
    return token_ids + [pad_token_id] * padding, [1] * len(token_ids) + [0] * padding


def prepare_classification_data(
    source: str | os.PathLike | Dataset = "sms-spam",
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    label2id: dict[str, int] | None = None,
    balance: bool | None = None,
    seed: int = 123,
    train_frac: float = 0.7,
    validation_frac: float = 0.1,
    max_length: int | None = None,
    pad_token_id: int = PAD_TOKEN_ID,
    tokenizer: Any = None,
    drop_invalid: bool = False,
    dedupe: bool = False,
) -> ClassificationData:
    """The book's chapter 6 data: read, balance (default: only for `sms-spam`), split, tokenize and pad.

    Exact duplicate rows (same text and label) that land in train and in validation or test are counted and
    warned about; `dedupe=True` removes every duplicate before balancing and splitting (the book keeps them).

    `max_length=None` pads to the longest training text (book: 120); a given `max_length` cuts longer texts.
    Validation and test are always padded or cut to the same length as train. `tokenizer`: a `transformers`
    tokenizer or a tiktoken encoding (default: `default_tokenizer()`).
    """
    min_rows = min_split_rows(train_frac, validation_frac)
    needs = f"a {train_frac:.0%}/{validation_frac:.0%}/{1 - train_frac - validation_frac:.0%} train/validation/test split needs"
    rows, num_dropped = load_classification_rows(
        source,
        text_column=text_column,
        label_column=label_column,
        label2id=label2id,
        drop_invalid=drop_invalid,
        min_rows=min_rows,
        needs=needs,
    )
    if dedupe:
        rows, num_duplicates = drop_duplicates(rows)
        if num_duplicates:
            logger.warning("%s: removed %d exact duplicate rows (dedupe)", rows.source, num_duplicates)
    if balance is None:
        balance = isinstance(source, str) and source == "sms-spam"
    if balance:
        rows = create_balanced_dataset(rows, seed=seed)
    if len(rows.texts) < min_rows:
        steps = " and ".join(
            step for step, done in (("removing duplicates", dedupe), ("balancing", balance)) if done
        )
        raise ValueError(
            f"{rows.source}: {len(rows.texts)} rows left after {steps}, too few: {needs} at least {min_rows}"
        )
    splits = random_split(rows, train_frac, validation_frac, seed=seed)
    if not dedupe:
        leaked = count_leaked_duplicates(splits)
        num_duplicates = sum(leaked.values())
        if num_duplicates:
            logger.warning(
                "%s: %d validation and %d test rows are exact duplicates (text and label) of training rows, so "
                "those figures overstate the model; pass dedupe=True (--dedupe) to remove duplicates before the split",
                rows.source,
                leaked["validation"],
                leaked["test"],
            )

    tokenizer = tokenizer if tokenizer is not None else default_tokenizer()
    encoded = {split: encode_texts(tokenizer, part.texts) for split, part in splits.items()}
    if max_length is None:
        max_length = max(len(ids) for ids in encoded["train"])

    columns = {}
    for split, part in splits.items():
        padded = [pad_to_length(ids, max_length, pad_token_id) for ids in encoded[split]]
        columns[split] = Dataset.from_dict(
            {
                "input_ids": [ids for ids, _ in padded],
                "attention_mask": [mask for _, mask in padded],
                "labels": part.labels,
            }
        )
    return ClassificationData(DatasetDict(columns), max_length, rows.label2id, num_dropped, num_duplicates)
