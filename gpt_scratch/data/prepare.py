"""Pretraining at scale, the writer: tokenize a corpus once into token shards on disk (`gpt-scratch prepare`).

nanoGPT's `prepare.py` and llm.c's `fineweb.py`, as a library (the reader, `prepared.py`, memory-maps the shards):

    prepare_corpus(["corpus/*.txt"], "data/mine", tokenizer)          # or dataset="HuggingFaceFW/fineweb-edu", ...
    data = PreparedCorpus("data/mine", tokenizer)                      # gpt_scratch.data.prepared

The folder holds `meta.json` (format version, tokenizer, dtype, sources with their sha256, the split, and the
token count of every shard) and `train-000000.bin`, `validation-000000.bin`, ...: raw little-endian uint16 token ids
(uint32 for vocabularies of 65,536 or more), the documents of a split joined by the eos token, as the book joins
its texts. A shard is written under a temporary name and renamed when complete, and only then listed in
meta.json: an interrupted prepare (killed, disk full) leaves no shard that is trusted, and running the same
command again continues after the last listed shard. Memory stays bounded: text is read ~1 MB at a time and
tokens go straight to the open shard file.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import errno
import hashlib
import json
import logging
import multiprocessing
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from gpt_scratch.data.corpora import CORPORA
from gpt_scratch.data.pretraining import _SAFE_CUT, END_OF_TEXT, book_split_point, expand_files

logger = logging.getLogger(__name__)

FORMAT = "gpt_scratch.prepared"
FORMAT_VERSION = 1
META_FILE = "meta.json"
PREPARE_LOCK = ".prepare.lock"  # held while a prepare writes into the folder
SPLITS = ("train", "validation")
READ_BYTES = 1 << 20  # bytes read from a file at a time
UNIT_CHARS = 1 << 20  # characters per unit of tokenization work (~250k GPT-2 tokens)
DEFAULT_SHARD_TOKENS = 100_000_000  # llm.c's shard size: 200 MB of uint16
NUL_AND_SPACE = b"\x00 \t\n\r\x0b\x0c"


# ----------------------------------------------------------------------------------------------------------------
# The tokenizer: what identifies it, and a picklable text -> ids function for the worker processes


def tokenizer_identity(tokenizer: Any) -> dict[str, Any]:
    """What a prepared folder records of its tokenizer; another tokenizer must match it field by field."""
    vocab = tokenizer.get_vocab()
    digest = hashlib.sha256(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode()).hexdigest()
    return {
        "class": type(tokenizer).__name__,
        "vocab_size": len(vocab),
        "vocab_sha256": digest,
        "eos_token": tokenizer.eos_token,
        "eos_token_id": tokenizer.eos_token_id,
    }


class Encoder:
    """text -> token ids as the book encodes (`<|endoftext|>` in a text is the special token), fast for tiktoken."""

    def __init__(self, tokenizer: Any):
        import tiktoken

        encoding = getattr(tokenizer, "encoding", None)
        added = set(getattr(tokenizer, "_added_tokens_encoder", {}))
        if isinstance(encoding, tiktoken.Encoding) and added <= {END_OF_TEXT}:
            self.encoding, self.tokenizer = encoding, None  # tiktoken alone, the tokenizer's own fast path
        else:
            self.encoding, self.tokenizer = None, tokenizer

    def __call__(self, text: str) -> list[int]:
        if self.encoding is not None:
            return self.encoding.encode(text, allowed_special={END_OF_TEXT}, disallowed_special=())
        return self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]

    def to_numpy(self, text: str) -> np.ndarray:
        """The same ids as an array (tiktoken >= 0.8 writes them straight into one: no Python list)."""
        if self.encoding is not None and hasattr(self.encoding, "encode_to_numpy"):
            return self.encoding.encode_to_numpy(text, allowed_special={END_OF_TEXT}, disallowed_special=())
        return np.asarray(self(text), dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------------
# Sources: files (scanned first: sha256, characters, bad UTF-8, empty) or a `datasets` dataset


@dataclass
class FileDocument:
    path: Path
    name: str
    sha256: str
    chars: int
    size: int


def scan_file(path: Path, errors: str = "strict") -> FileDocument | None:
    """sha256, character count and checks of one file, reading it 1 MB at a time.

    Not UTF-8: `errors="strict"` raises naming the file and the byte offset, "replace" decodes with U+FFFD,
    "skip" warns and returns None. Empty, whitespace-only or NUL-only files are warned about and return None.
    """
    digest, decoder = (
        hashlib.sha256(),
        codecs.getincrementaldecoder("utf-8")("replace" if errors == "replace" else "strict"),
    )
    chars, offset, blank = 0, 0, True
    with open(path, "rb") as f:
        while block := f.read(READ_BYTES):
            digest.update(block)
            blank = blank and not block.strip(NUL_AND_SPACE)
            try:
                chars += len(decoder.decode(block))
            except UnicodeDecodeError as e:
                at = offset - len(decoder.getstate()[0]) + e.start  # the decoder's pending bytes came first
                message = (
                    f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {at} cannot be decoded: "
                    f"{e.reason})"
                )
                if errors == "skip":
                    logger.warning("%s: skipped", message)
                    return None
                raise ValueError(
                    f"{message}. Pass --errors replace (U+FFFD) or --errors skip (leave the file out)"
                ) from None
            offset += len(block)
        try:
            chars += len(decoder.decode(b"", final=True))
        except UnicodeDecodeError as e:
            if errors == "skip":
                logger.warning(
                    "%s: truncated UTF-8 at the end (offset %d): skipped",
                    path,
                    offset - len(e.object) + e.start,
                )
                return None
            raise ValueError(
                f"{path}: not UTF-8 text (the file ends inside a character at offset {offset - len(e.object) + e.start}). "
                "Pass --errors replace or --errors skip"
            ) from None
    if blank:
        logger.warning("%s: %s: skipped", path, "empty" if offset == 0 else "only whitespace or NUL bytes")
        return None
    name = next((c.name for c in CORPORA.values() if c.filename == path.name), path.stem)
    return FileDocument(path, name, digest.hexdigest(), chars, offset)


def read_pieces(path: Path, errors: str, start_char: int = 0, stop_char: int | None = None) -> Iterator[str]:
    """The text of a file, characters [start_char, stop_char), in pieces of about 1 MB that GPT-2's BPE tokenizes
    exactly as the whole: cut before a newline followed by a letter or digit (`split_long_text`'s rule).

    A piece that `stop_char` truncates is joined to the piece before it (its cut would no longer be followed by
    the letter), so the pieces of the book's train text `text[:split_idx]` tokenize exactly as that text.
    """
    decoder = codecs.getincrementaldecoder("utf-8")("replace" if errors == "replace" else "strict")
    pending, position, held = "", 0, None  # position: characters of the file before `pending`
    with open(path, "rb") as f:
        while True:
            block = f.read(READ_BYTES)
            pending += decoder.decode(block, final=not block)
            cut = _last_safe_cut(pending) if block else len(pending)
            if cut > 0:
                piece, pending = pending[:cut], pending[cut:]
                lo = max(start_char - position, 0)
                hi = len(piece) if stop_char is None else min(stop_char - position, len(piece))
                position += cut
                if hi < len(piece):  # the last piece, truncated
                    if lo < hi:
                        held = (held or "") + piece[lo:hi]
                    break
                if lo < hi:
                    if held is not None:
                        yield held
                    held = piece[lo:hi]
            if not block:
                break
    if held:
        yield held


def _last_safe_cut(text: str) -> int:
    cut = len(text) - 1
    while (cut := text.rfind("\n", 0, cut)) > 0:
        if _SAFE_CUT.match(text, cut):
            return cut
    return 0


def load_source_dataset(
    dataset: str,
    config: str | None,
    data_files: Sequence[str] | None,
    split: str,
    streaming: bool = False,
    revision: str | None = None,
) -> Any:
    """`datasets.load_dataset(dataset, config, data_files=..., split=split, revision=...)`: a Hub id (at
    `revision`, see `resolve_dataset_revision`) or a local builder (`text`, `json`, `parquet`, `csv`) with
    `data_files`."""
    import datasets

    files = _expand_data_files(data_files)
    return datasets.load_dataset(
        dataset, config, data_files=files, split=split, streaming=streaming, revision=revision
    )


DATASET_REVISION_HELP = (
    "a Hub dataset's branch, tag or commit (default: main); the commit it names is recorded, and read again by a "
    "resumed run"
)


def resolve_dataset_revision(dataset: str, revision: str | None) -> str | None:
    """The commit that a Hub dataset's `revision` (a branch, tag or commit; default: its main branch) names now:
    a run records it and reads that commit, so that a resume reads the same files, or is refused when the branch
    has moved (give the recorded commit as the revision to continue). None for a local builder (`parquet`,
    `json`, ...) or folder, whose files are fingerprinted instead. Offline (HF_HUB_OFFLINE) nothing can be asked:
    the revision is returned as given."""
    import datasets
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    if dataset in _PACKAGED_DATASETS_MODULES or Path(dataset).exists():
        if revision is not None:
            raise ValueError(
                f"--dataset-revision is for a Hub dataset id; {dataset} is a local builder or folder"
            )
        return None
    if datasets.config.HF_HUB_OFFLINE:
        return revision
    from huggingface_hub import HfApi

    try:
        return HfApi().dataset_info(dataset, revision=revision).sha
    except OSError as error:  # huggingface_hub's HTTP and connection errors are OSErrors
        raise ValueError(
            f"{dataset}: cannot resolve revision {revision or 'main'} on the Hub ({type(error).__name__}: {error})"
        ) from None


def _expand_data_files(data_files: Sequence[str] | None) -> list[str] | None:
    if not data_files:
        return None
    return [
        str(f)
        for pattern in data_files
        for f in expand_files(pattern if any(c in pattern for c in "*?[") else [pattern])
    ]


# ----------------------------------------------------------------------------------------------------------------
# The split into train and validation, and the stream of text each split tokenizes


def document_in_validation(index: int, val_ratio: float, seed: int) -> bool:
    """nanoGPT's random document split, by a hash of the document's index (deterministic, streamable)."""
    return splitmix64(seed * 0x9E3779B97F4A7C15 + index) < val_ratio * 2.0**64


def splitmix64(x: int) -> int:
    """A counter-based generator: a well-mixed 64-bit number from any integer (Steele et al.'s SplitMix64)."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class SplitPlan:
    """Which text goes to which split. `train_ratio`: the book's character split of the documents joined by the
    eos text (exactly `split_documents`); `val_ratio`: whole documents picked by a seeded hash."""

    def __init__(
        self,
        lengths: Sequence[int] | None,
        train_ratio: float | None,
        val_ratio: float | None,
        seed: int,
        separator: str = END_OF_TEXT,
    ):
        if (train_ratio is None) == (val_ratio is None):
            raise ValueError(
                "give one of train_ratio (the book's character split) or val_ratio (random documents)"
            )
        self.val_ratio, self.seed, self.cut = val_ratio, seed, None
        if train_ratio is not None:
            if lengths is None:
                raise ValueError("the book's character split needs the documents' lengths")
            self.cut = book_split_point(np.asarray(lengths), train_ratio, len(separator))  # (doc, char)

    def ranges(self, index: int, length: int) -> dict[str, tuple[int, int]]:
        """{split: (start_char, stop_char)} of document `index`."""
        if self.cut is None:
            split = "validation" if document_in_validation(index, self.val_ratio, self.seed) else "train"
            return {split: (0, length)}
        doc, char = self.cut
        if index < doc:
            return {"train": (0, length)}
        if index > doc:
            return {"validation": (0, length)}
        parts = {"train": (0, char), "validation": (char, length)}
        return {s: r for s, r in parts.items() if r[0] < r[1]}

    def describe(self, train_ratio: float | None) -> dict[str, Any]:
        if self.cut is None:
            return {"method": "random documents", "val_ratio": self.val_ratio, "seed": self.seed}
        return {"method": "the book's character split", "train_ratio": train_ratio}


def _units(segments: Iterator[tuple[str, bool]], unit_chars: int) -> Iterator[list[tuple[str, bool]]]:
    """Group (text, separator_before) segments into units of about unit_chars characters."""
    unit, size = [], 0
    for text, separator_before in segments:
        unit.append((text, separator_before))
        size += len(text)
        if size >= unit_chars:
            yield unit
            unit, size = [], 0
    if unit:
        yield unit


def _file_segments(
    files: list[FileDocument], plan: SplitPlan, split: str, errors: str
) -> Iterator[tuple[str, bool]]:
    """(text, separator_before) of the split's part of every file: the eos token goes between documents."""
    first = True
    for index, doc in enumerate(files):
        span = plan.ranges(index, doc.chars).get(split)
        if span is None:
            continue
        separator = not first
        for piece in read_pieces(doc.path, errors, *span):
            yield piece, separator
            separator = False
        first = False


def _dataset_segments(dataset: Any, column: str, plan: SplitPlan, split: str) -> Iterator[tuple[str, bool]]:
    first, batch_rows = True, 1000
    for start in range(0, len(dataset), batch_rows):
        texts = dataset[start : start + batch_rows][column]
        for offset, text in enumerate(texts):
            if not text or not text.strip("\x00 \t\n\r\x0b\x0c"):
                continue  # an empty row: nothing to learn from, and no separator for it
            span = plan.ranges(start + offset, len(text)).get(split)
            if span is None:
                continue
            yield text[span[0] : span[1]], not first
            first = False


def _stream_segments(stream: Any, column: str, plan: SplitPlan, split: str) -> Iterator[tuple[str, bool]]:
    first = True
    for index, row in enumerate(stream):
        text = row[column]
        if not text or not text.strip("\x00 \t\n\r\x0b\x0c"):
            continue
        if split in plan.ranges(index, len(text)):
            yield text, not first
            first = False


def _tokenize_unit(unit: list[tuple[str, bool]]) -> np.ndarray:
    encode, eos, dtype = _WORKER["encode"], _WORKER["eos"], _WORKER["dtype"]
    parts: list[np.ndarray] = []
    for text, separator_before in unit:
        if separator_before:
            parts.append(np.array([eos], dtype=dtype))
        parts.append(encode.to_numpy(text).astype(dtype, copy=False))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)


_WORKER: dict[str, Any] = {}


def _init_worker(encode: Encoder, eos: int, dtype: str) -> None:
    _WORKER.update(encode=encode, eos=eos, dtype=np.dtype(dtype))


def _tokenized(units: Iterator[list], num_proc: int) -> Iterator[np.ndarray]:
    """Token arrays of the units in order, `num_proc` processes at a time, at most 2 units in flight per process."""
    if num_proc <= 1:
        yield from map(_tokenize_unit, units)
        return
    method = "fork" if sys.platform == "linux" else "spawn"
    context = multiprocessing.get_context(method)
    with context.Pool(
        num_proc, _init_worker, (_WORKER["encode"], _WORKER["eos"], str(_WORKER["dtype"]))
    ) as pool:
        in_flight = []
        for unit in units:
            in_flight.append(pool.apply_async(_tokenize_unit, (unit,)))
            if len(in_flight) >= 2 * num_proc:
                yield in_flight.pop(0).get()
        for result in in_flight:
            yield result.get()


# ----------------------------------------------------------------------------------------------------------------
# Writing: shards under a temporary name, renamed when complete, then listed in meta.json


def _append(f: Any, ids: np.ndarray) -> None:
    f.write(ids.tobytes())


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(json.dumps(data, indent=1) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def token_dtype(vocab_size: int) -> str:
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def prepare_corpus(
    sources: Sequence[str | os.PathLike] | None,
    output_dir: str | os.PathLike,
    tokenizer: Any = None,
    *,
    dataset: str | None = None,
    dataset_config: str | None = None,
    data_files: Sequence[str] | None = None,
    dataset_split: str = "train",
    dataset_revision: str | None = None,
    text_column: str = "text",
    streaming: bool = False,
    train_ratio: float | None = None,
    val_ratio: float | None = None,
    seed: int = 2357,
    num_proc: int = 1,
    errors: str = "strict",
    shard_tokens: int = DEFAULT_SHARD_TOKENS,
    unit_chars: int = UNIT_CHARS,
    progress_bar: bool = True,
) -> dict[str, Any]:
    """Tokenize files (`sources`: corpus names, files, folders of *.txt, globs) or a `datasets` dataset (`dataset`:
    a Hub id with `dataset_config`, or `text`/`json`/`parquet` with `data_files`) into `output_dir`; returns meta.
    A Hub id is read at the commit `dataset_revision` names now (default: its main branch), recorded in meta.

    Validation: `train_ratio` (the book's character split; the default, 0.9, when neither is given) or
    `val_ratio` (random whole documents, seeded). Running it again with the same arguments continues an
    interrupted prepare, and returns at once when the folder is complete; other arguments are refused.
    `streaming=True` reads the dataset with `load_dataset(..., streaming=True)` (nothing downloaded ahead; needs
    `val_ratio`; continuing an interrupted prepare reads the stream again up to where it stopped).
    """
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    if errors not in ("strict", "replace", "skip"):
        raise ValueError(f"errors must be 'strict', 'replace' or 'skip', got {errors!r}")
    if bool(sources) == bool(dataset):
        raise ValueError("give either files (sources) or a dataset, not both and not neither")
    if streaming and val_ratio is None:
        if train_ratio is not None:
            raise ValueError(
                "the book's character split needs the length of the whole text: with streaming, use val_ratio"
            )
        val_ratio = 0.0005  # nanoGPT's OpenWebText split
    if train_ratio is None and val_ratio is None:
        train_ratio = 0.9
    if train_ratio is not None and not 0.0 < train_ratio <= 1.0:
        raise ValueError(
            f"train_ratio (--train-ratio) must be in (0, 1] (1: no validation), got {train_ratio}"
        )
    if val_ratio is not None and not 0.0 <= val_ratio < 1.0:
        raise ValueError(f"val_ratio (--val-ratio) must be in [0, 1) (0: no validation), got {val_ratio}")
    for name, value in (("num_proc", num_proc), ("shard_tokens", shard_tokens), ("unit_chars", unit_chars)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(
                f"{name} (--{name.replace('_', '-')}) must be a whole number >= 1, got {value!r}"
            )
    if not progress_bar:  # datasets' loading bars too, as --no-progress-bar does for training
        import datasets

        datasets.disable_progress_bars()
    revision = resolve_dataset_revision(dataset, dataset_revision) if dataset else None
    tokenizer = tokenizer or GPTScratchTokenizer()
    identity = tokenizer_identity(tokenizer)
    output = Path(output_dir)

    if sources:
        files = [doc for path in expand_files(list(sources)) if (doc := scan_file(path, errors)) is not None]
        if not files:
            raise ValueError(f"No text to prepare: every file of {list(map(str, sources))} was skipped")
        plan = SplitPlan([d.chars for d in files], train_ratio, val_ratio, seed, identity["eos_token"])
        described = [
            {"name": d.name, "file": str(d.path), "sha256": d.sha256, "bytes": d.size} for d in files
        ]
        segments = lambda split: _file_segments(files, plan, split, errors)  # noqa: E731
    elif streaming:
        stream = load_source_dataset(
            dataset, dataset_config, data_files, dataset_split, streaming=True, revision=revision
        )
        plan = SplitPlan(None, None, val_ratio, seed)
        described = [
            _describe_dataset(
                dataset, dataset_config, dataset_split, text_column, data_files, None, None, revision
            )
        ]
        segments = lambda split: _stream_segments(stream, text_column, plan, split)  # noqa: E731
    else:
        data = load_source_dataset(dataset, dataset_config, data_files, dataset_split, revision=revision)
        if text_column not in data.column_names:
            raise ValueError(
                f"The dataset {dataset} has no column '{text_column}' (columns: {data.column_names})"
            )
        data = data.select_columns([text_column])
        lengths = None
        if train_ratio is not None:
            import pyarrow.compute as pc

            column = data.with_format("arrow")[text_column]
            lengths = pc.fill_null(pc.utf8_length(column), 0).to_numpy(zero_copy_only=False)
        plan = SplitPlan(lengths, train_ratio, val_ratio, seed, identity["eos_token"])
        described = [
            _describe_dataset(
                dataset,
                dataset_config,
                dataset_split,
                text_column,
                data_files,
                len(data),
                data._fingerprint,
                revision,
            )
        ]
        segments = lambda split: _dataset_segments(data, text_column, plan, split)  # noqa: E731

    settings = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tokenizer": identity,
        "dtype": token_dtype(identity["vocab_size"]),
        "sources": described,
        "split": plan.describe(train_ratio),
        "errors": errors,
        "shard_tokens": shard_tokens,
        "unit_chars": unit_chars,
    }
    with _one_prepare_at_a_time(output):
        meta = _start_or_continue(output, settings)
        if meta["complete"]:
            logger.info("%s is already prepared", output)
            return meta
        _init_worker(Encoder(tokenizer), identity["eos_token_id"], settings["dtype"])
        for split in SPLITS:
            if not meta["splits"][split]["complete"]:
                _prepare_split(output, meta, split, segments(split), num_proc, progress_bar)
        meta["complete"] = True
        _write_json_atomic(output / META_FILE, meta)
        return meta


@contextlib.contextmanager
def _one_prepare_at_a_time(output: Path) -> Iterator[None]:
    """Hold OUTPUT/.prepare.lock while preparing: a second prepare into the folder is refused (the temporary shards
    it would clear up are the first one's). The lock file goes when the prepare ends, done, refused or killed
    by an exception (removed while still held), and a folder made for a prepare that wrote nothing goes too."""
    created = not output.exists()
    output.mkdir(parents=True, exist_ok=True)
    lock_path = output / PREPARE_LOCK
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise ValueError(
            f"{output} is being prepared by another run (it holds the lock {lock_path}); wait for it to end, "
            "or choose another --output-dir"
        ) from None
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        lock.release()
        if created and not any(output.iterdir()):
            output.rmdir()


def _describe_dataset(
    dataset, config, split, column, data_files, rows, fingerprint, revision
) -> dict[str, Any]:
    files = _expand_data_files(data_files) or []
    return {
        "name": dataset if config is None else f"{dataset} ({config})",
        "dataset": dataset,
        "config": config,
        **({"revision": revision} if revision else {}),  # a Hub id's commit (local files: their sha256)
        "split": split,
        "column": column,
        "rows": rows,
        "fingerprint": fingerprint,
        "data_files": [{"file": f, "sha256": _sha256(f)} for f in files],
    }


def _sha256(path: str) -> str:
    from gpt_scratch.data.corpora import sha256_file

    return sha256_file(path)


def _start_or_continue(output: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """A new meta.json, or the existing one when it was made with the same settings (else a clear refusal)."""
    path = output / META_FILE
    if path.is_file():
        meta = json.loads(path.read_text())
        differences = _differences({k: meta.get(k) for k in settings}, settings)
        if differences:
            raise ValueError(
                f"{output} was prepared with other settings ({'; '.join(differences)}). Use another --output-dir, "
                "or delete the folder to prepare it again."
            )
        for split in SPLITS:  # what a killed run left: temporary files, shards not listed in meta.json
            listed = {s["file"] for s in meta["splits"][split]["shards"]}
            for stray in [*output.glob(f".{split}-*.tmp"), *output.glob(f"{split}-*.bin")]:
                if stray.name not in listed:
                    stray.unlink()
        if not meta["complete"]:
            logger.info("%s: continuing an interrupted prepare", output)
        return meta
    if output.exists() and any(p.name != PREPARE_LOCK for p in output.iterdir()):
        raise FileExistsError(
            f"{output} exists and is not a prepared folder (no {META_FILE}): choose an empty folder"
        )
    output.mkdir(parents=True, exist_ok=True)
    meta = {
        **settings,
        "complete": False,
        "splits": {s: {"complete": False, "tokens": 0, "shards": []} for s in SPLITS},
    }
    _write_json_atomic(path, meta)
    return meta


def _differences(found: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in expected:
        a, b = found.get(key), expected[key]
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {_short(a)} there, {_short(b)} here")
    return out


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _prepare_split(
    output: Path,
    meta: dict[str, Any],
    split: str,
    segments: Iterator[tuple[str, bool]],
    num_proc: int,
    progress_bar: bool,
) -> None:
    record = meta["splits"][split]
    shard_tokens = meta["shard_tokens"]
    done_units = record["shards"][-1]["units_end"] if record["shards"] else 0
    units = _units(segments, meta["unit_chars"])
    skipped = sum(1 for _ in zip(range(done_units), units, strict=False))  # read again, not tokenized
    if skipped < done_units:
        raise ValueError(f"{output}: the sources are shorter than when the prepare began; delete the folder")

    progress = tqdm(
        desc=f"Tokenizing {split}",
        unit="B",
        unit_scale=True,
        disable=not progress_bar,
        dynamic_ncols=True,
    )
    sizes = []  # characters of each unit in flight, for the progress bar

    def counted(units_iter):
        for unit in units_iter:
            sizes.append(sum(len(t) for t, _ in unit))
            yield unit

    unit_index, shard, tokens_in_shard, start = done_units, None, 0, time.time()
    try:
        for ids in _tokenized(counted(units), num_proc):
            if shard is None:
                index = len(record["shards"])
                name = f"{split}-{index:06d}.bin"
                tmp = output / f".{name}.tmp"
                shard = open(tmp, "wb")  # noqa: SIM115 (closed below, or removed on an error)
            _append(shard, ids)
            tokens_in_shard += len(ids)
            unit_index += 1
            progress.update(sizes.pop(0))
            progress.set_postfix(tokens=f"{record['tokens'] + tokens_in_shard:,}", refresh=False)
            if tokens_in_shard >= shard_tokens:
                _finish_shard(output, meta, record, shard, tmp, name, tokens_in_shard, unit_index)
                shard, tokens_in_shard = None, 0
        if shard is not None:
            _finish_shard(output, meta, record, shard, tmp, name, tokens_in_shard, unit_index)
            shard = None
    except OSError as e:
        if shard is not None:
            shard.close()
            tmp.unlink(missing_ok=True)
        if e.errno == errno.ENOSPC:
            raise OSError(
                e.errno,
                f"disk full while writing {output / name}: the unfinished shard was removed; the "
                f"{len(record['shards'])} complete shards of {split} are kept. Free space and run the same "
                "command again to continue.",
            ) from e
        raise
    except BaseException:
        if shard is not None:
            shard.close()
            tmp.unlink(missing_ok=True)
        raise
    finally:
        progress.close()
    seconds = time.time() - start
    record["complete"] = True
    record["seconds"] = round(record.get("seconds", 0.0) + seconds, 3)  # reading, tokenizing, writing
    _write_json_atomic(output / META_FILE, meta)
    logger.info(
        "%s: %s tokens in %d shards (%.1f s)", split, f"{record['tokens']:,}", len(record["shards"]), seconds
    )


def _finish_shard(output, meta, record, shard, tmp, name, tokens, units_end) -> None:
    shard.flush()
    os.fsync(shard.fileno())
    shard.close()
    os.replace(tmp, output / name)
    record["shards"].append({"file": name, "tokens": int(tokens), "units_end": units_end})
    record["tokens"] += int(tokens)
    _write_json_atomic(output / META_FILE, meta)


# ----------------------------------------------------------------------------------------------------------------
# The `gpt-scratch prepare` verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sources", nargs="*", help="corpus name (the-verdict), text file(s), folder of *.txt or glob"
    )
    parser.add_argument(
        "--output-dir", required=True, help="the prepared folder (created; an interrupted one continues)"
    )
    data = parser.add_argument_group("datasets source (instead of files)")
    data.add_argument("--dataset", help="a Hub dataset id, or a local builder: text, json, parquet, csv")
    data.add_argument("--dataset-config", default=None, help="the dataset's configuration (e.g. sample-10BT)")
    data.add_argument("--dataset-revision", default=None, help=DATASET_REVISION_HELP)
    data.add_argument("--data-files", nargs="+", default=None, help="files or globs for a local builder")
    data.add_argument("--dataset-split", default="train", help="the dataset's split to read (default: train)")
    data.add_argument("--text-column", default="text", help="the column holding the text (default: text)")
    data.add_argument(
        "--streaming", action="store_true", help="stream the dataset instead of downloading it first"
    )
    split = parser.add_mutually_exclusive_group()
    split.add_argument(
        "--train-ratio", type=float, default=None, help="the book's character split (default: 0.9)"
    )
    split.add_argument(
        "--val-ratio", type=float, default=None, help="validation share of random whole documents"
    )
    parser.add_argument(
        "--seed", type=int, default=2357, help="seed of the random document split (default: 2357)"
    )
    parser.add_argument("--num-proc", type=int, default=1, help="tokenizing processes (default: 1)")
    parser.add_argument(
        "--errors",
        choices=["strict", "replace", "skip"],
        default="strict",
        help="a file that is not UTF-8: stop, decode with U+FFFD, or leave it out",
    )
    parser.add_argument(
        "--shard-tokens",
        type=int,
        default=DEFAULT_SHARD_TOKENS,
        help=f"tokens per shard (default: {DEFAULT_SHARD_TOKENS:,})",
    )
    parser.add_argument("--no-progress-bar", dest="progress_bar", action="store_false")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(message)s")
    meta = prepare_corpus(
        args.sources,
        args.output_dir,
        dataset=args.dataset,
        dataset_config=args.dataset_config,
        dataset_revision=args.dataset_revision,
        data_files=args.data_files,
        dataset_split=args.dataset_split,
        text_column=args.text_column,
        streaming=args.streaming,
        train_ratio=args.train_ratio,
        val_ratio=args.val_ratio,
        seed=args.seed,
        num_proc=args.num_proc,
        errors=args.errors,
        shard_tokens=args.shard_tokens,
        progress_bar=args.progress_bar,
    )
    counts = ", ".join(f"{s} {meta['splits'][s]['tokens']:,} tokens" for s in SPLITS)
    print(f"Prepared {args.output_dir}: {counts} ({meta['dtype']})")
    return 0
