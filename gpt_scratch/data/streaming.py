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
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from gpt_scratch.data.prepared import Encoder


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
    ):
        if world_size > 1:
            from datasets.distributed import split_dataset_by_node

            dataset = split_dataset_by_node(dataset, rank=rank, world_size=world_size)
        self.dataset, self.max_length, self.text_column = dataset, max_length, text_column
        self.encode, self.eos = Encoder(tokenizer), tokenizer.eos_token_id
        self._buffer: list[int] = []  # tokens read but not yet past a window
        self._first = True  # no eos before the first document

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        size = self.max_length + 1
        yield from self._windows_in_buffer(size)
        for row in self.dataset:
            text = row[self.text_column]
            if not text or not text.strip("\x00 \t\n\r\x0b\x0c"):
                continue
            if not self._first:
                self._buffer.append(self.eos)
            self._first = False
            self._buffer.extend(self.encode(text))
            yield from self._windows_in_buffer(size)
        self._buffer, self._first = [], True  # the stream ran out: a next pass starts afresh

    def _windows_in_buffer(self, size: int) -> Iterator[dict[str, torch.Tensor]]:
        while len(self._buffer) >= size:
            window = torch.tensor(self._buffer[:size], dtype=torch.long)
            del self._buffer[: self.max_length]  # the last token starts the next window
            yield {"input_ids": window[:-1], "target_ids": window[1:]}

    def state_dict(self) -> dict[str, Any]:
        """Where the stream is (the datasets iterable's own state: after the last document read) and the tokens
        read but not yet used. Valid between windows when iterated in the main process (DataLoader num_workers=0)."""
        return {"source": self.dataset.state_dict(), "buffer": list(self._buffer), "first": self._first}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dataset.load_state_dict(state["source"])
        self._buffer, self._first = list(state["buffer"]), state["first"]
