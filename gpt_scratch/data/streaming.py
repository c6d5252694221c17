"""Streaming pretraining data: `load_dataset(..., streaming=True)` tokenized on the fly and packed into windows.

    stream = load_source_dataset("HuggingFaceFW/fineweb-edu", "sample-10BT", None, "train", streaming=True)
    windows = StreamingWindows(stream, tokenizer, max_length=1024, rank=rank, world_size=world_size)
    for window in windows: ...                      # {"input_ids": (1024,), "target_ids": (1024,)} LongTensors
    state = windows.state_dict()                    # JSON-able: where the stream is, and the tokens not yet used
    windows.load_state_dict(state)                  # a fresh StreamingWindows continues exactly there

Nothing is tokenized ahead: the first window is ready after the first documents. The documents are joined by the
eos token and cut into the book's stride windows (window i is tokens [i * T, i * T + T], so the last token of a
window is the first of the next), exactly the `SequentialWindows` of the same rows prepared with
`prepare_corpus`. Each process reads its own share of the stream (`split_dataset_by_node`: whole shards, i.e.
files, when their number is a multiple of the processes, else every world_size-th document).

`split="train"` / `split="validation"` with `val_ratio` holds out whole documents picked by a seeded hash of their
text (`text_in_validation`): the same documents whatever the number of processes or the order of the files.
When the stream runs out, a pass has ended: iterating again starts the next pass from the beginning.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import torch

from gpt_scratch.data.prepare import Encoder

SPLIT_SEED = 2357  # `gpt-scratch prepare`'s default --seed


def text_in_validation(text: str, val_ratio: float, seed: int = SPLIT_SEED) -> bool:
    """Whether a document is held out: a seeded 64-bit hash of its text below val_ratio * 2**64."""
    digest = hashlib.blake2b(
        text.encode("utf-8", "surrogatepass"), digest_size=8, key=seed.to_bytes(8, "little")
    )
    return int.from_bytes(digest.digest(), "little") < val_ratio * 2.0**64


class StreamingWindows(torch.utils.data.IterableDataset):
    """Windows of `max_length` tokens from a `datasets.IterableDataset` of texts, resumable with `state_dict`."""

    def __init__(
        self,
        dataset: Any,
        tokenizer: Any,
        max_length: int,
        *,
        text_column: str = "text",
        rank: int = 0,
        world_size: int = 1,
        split: str | None = None,
        val_ratio: float = 0.0,
        seed: int = SPLIT_SEED,
    ):
        from datasets.distributed import split_dataset_by_node

        if split not in (None, "train", "validation"):
            raise ValueError(f"split must be None, 'train' or 'validation', got {split!r}")
        # a new IterableDataset even for one process: loading a state into it leaves `dataset` as it was
        self.dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
        self.max_length, self.text_column = max_length, text_column
        self.split, self.val_ratio, self.seed = split, val_ratio, seed
        self.encode, self.eos = Encoder(tokenizer), tokenizer.eos_token_id
        self._buffer: list[int] = []  # tokens read but not yet past a window
        self._first = True  # no eos before the first document

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        size = self.max_length + 1
        yield from self._windows_in_buffer(size)
        for row in self.dataset:
            text = row[self.text_column]
            if not text or not text.strip("\x00 \t\n\r\x0b\x0c") or not self._in_split(text):
                continue
            if not self._first:
                self._buffer.append(self.eos)
            self._first = False
            self._buffer.extend(self.encode(text))
            yield from self._windows_in_buffer(size)
        # the stream ran out: the next pass starts afresh (a new epoch, so not from a state loaded before)
        self._buffer, self._first = [], True
        self.dataset.set_epoch(self.dataset.epoch + 1)

    def _in_split(self, text: str) -> bool:
        if self.split is None or not self.val_ratio:
            return self.split != "validation"
        return text_in_validation(text, self.val_ratio, self.seed) == (self.split == "validation")

    def _windows_in_buffer(self, size: int) -> Iterator[dict[str, torch.Tensor]]:
        while len(self._buffer) >= size:
            window = torch.tensor(self._buffer[:size], dtype=torch.long)
            del self._buffer[: self.max_length]  # the last token starts the next window
            yield {"input_ids": window[:-1], "target_ids": window[1:]}

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is (the datasets iterable's own state, with its pass as `epoch`: after the last document
        read) and the tokens read but not yet used. Valid between windows when iterated in the main process
        (DataLoader num_workers=0)."""
        return {"source": self.dataset.state_dict(), "buffer": list(self._buffer), "first": self._first}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.set_epoch(state["source"]["epoch"])  # datasets applies a state only in its own epoch
        self.dataset.load_state_dict(state["source"])
        self._buffer, self._first = list(state["buffer"]), state["first"]
