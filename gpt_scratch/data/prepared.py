"""Pretraining at scale, the reader: a prepared folder (`gpt-scratch prepare`), checked, and its windows.

nanoGPT's `get_batch` on memory-mapped shards, as torch Datasets:

    data = PreparedCorpus("data/mine", tokenizer)                      # refuses another tokenizer / format
    train = data.windows("train", max_length=1024, sampling="random", seed=123)
    val = data.windows("validation", max_length=1024)                  # sequential, stride = max_length
    PreparedCorpus("nanoGPT/data/openwebtext")                        # nanoGPT's train.bin / val.bin, as they are

The windows are map-style torch Datasets whose index -> window is a pure function (sequential: offset
`i * stride`, the book's `GPTDatasetV1`; random: an offset drawn from a counter-based hash of (seed, epoch, i),
nanoGPT's `get_batch`), so the training loop's sampler, accelerate's per-process sharding of the indices, and the exact
resume of a killed run (sampler position in the checkpoint) work on them unchanged. The folder's format: `prepare.py`.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt_scratch.data.prepare import (
    FORMAT,
    FORMAT_VERSION,
    META_FILE,
    _differences,
    splitmix64,
    tokenizer_identity,
)


class PreparedCorpus:
    """A prepared folder, checked: complete, our format version, made with `tokenizer` (when given)."""

    def __init__(self, folder: str | os.PathLike, tokenizer: Any = None):
        self.folder = Path(folder)
        path = self.folder / META_FILE
        if is_nanogpt_folder(self.folder):
            self.meta = nanogpt_meta(self.folder)
            return
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.folder}: not a prepared folder (no {META_FILE}); make one with `gpt-scratch prepare`"
            )
        meta = json.loads(path.read_text())
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path}: format {meta.get('format')!r} version {meta.get('format_version')!r}, but this gpt_scratch "
                f"reads {FORMAT!r} version {FORMAT_VERSION}: prepare the corpus again"
            )
        if not meta.get("complete"):
            raise ValueError(
                f"{self.folder}: the prepare was interrupted; run the same `gpt-scratch prepare` command again to finish it"
            )
        if tokenizer is not None:
            differences = _differences(meta["tokenizer"], tokenizer_identity(tokenizer))
            if differences:
                raise ValueError(
                    f"{self.folder} was prepared with another tokenizer ({'; '.join(differences)}): prepare it again "
                    "with this tokenizer"
                )
        self.meta = meta

    def tokens(self, split: str) -> TokenStream:
        shards = self.meta["splits"][split]["shards"]
        return TokenStream(
            [self.folder / s["file"] for s in shards], [s["tokens"] for s in shards], self.meta["dtype"]
        )

    def num_tokens(self, split: str) -> int:
        return int(self.meta["splits"][split]["tokens"])

    def windows(
        self,
        split: str,
        max_length: int,
        sampling: str = "sequential",
        stride: int | None = None,
        seed: int = 0,
    ) -> torch.utils.data.Dataset:
        stream = self.tokens(split)
        if sampling == "sequential":
            return SequentialWindows(stream, max_length, stride)
        if sampling == "random":
            return RandomWindows(stream, max_length, seed)
        raise ValueError(f"sampling must be 'sequential' or 'random', got {sampling!r}")


class TokenStream:
    """The shards of a split as one sequence of token ids, memory-mapped (opened lazily, in each worker)."""

    def __init__(self, paths: list[Path], counts: list[int], dtype: str):
        for path, count in zip(paths, counts, strict=True):
            expected = count * np.dtype(dtype).itemsize
            if not path.is_file() or path.stat().st_size != expected:
                size = path.stat().st_size if path.is_file() else "missing"
                raise ValueError(
                    f"{path}: {size} bytes, meta.json says {expected}: the prepared folder is damaged"
                )
        self.paths, self.dtype = paths, dtype
        self.starts = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self._maps: list[np.memmap] | None = None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_maps": None}  # DataLoader workers open their own maps

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens [start, start + length) as int64, across shard boundaries."""
        if self._maps is None:
            self._maps = [np.memmap(p, dtype=self.dtype, mode="r") for p in self.paths]
        out = np.empty(length, dtype=np.int64)
        shard = int(np.searchsorted(self.starts, start, side="right")) - 1
        filled = 0
        while filled < length:
            lo = start + filled - int(self.starts[shard])
            chunk = self._maps[shard][lo : lo + length - filled]
            out[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
            shard += 1
        return out


class SequentialWindows(torch.utils.data.Dataset):
    """The book's GPTDatasetV1 on a token stream: window i is tokens [i * stride, i * stride + max_length], the
    inputs all but the last, the targets all but the first; `range(0, len - max_length, stride)` windows."""

    def __init__(self, stream: TokenStream, max_length: int, stride: int | None = None):
        self.stream, self.max_length, self.stride = stream, max_length, stride or max_length
        self.count = len(range(0, len(stream) - max_length, self.stride))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        chunk = torch.from_numpy(self.stream.read(i * self.stride, self.max_length + 1))
        return {"input_ids": chunk[:-1], "target_ids": chunk[1:]}


class RandomWindows(torch.utils.data.Dataset):
    """nanoGPT's random windows: window i of an epoch starts at an offset drawn uniformly from a counter-based hash
    of (seed, epoch, i), so each epoch draws fresh windows (nanoGPT draws them every batch) and a resumed run the
    same ones. `len` is the stream's tokens // max_length (an epoch sees about as many tokens as the corpus has).
    The training loop calls `set_epoch` before each epoch."""

    def __init__(self, stream: TokenStream, max_length: int, seed: int = 0):
        self.stream, self.max_length, self.seed, self.epoch = stream, max_length, seed, 0
        self.offsets = len(stream) - max_length  # offsets 0 .. len - max_length - 1 leave room for the target
        if self.offsets < 1:
            raise ValueError(f"{len(stream)} tokens are too few for one window of {max_length} + 1")
        self.count = max(1, len(stream) // max_length)

    def __len__(self) -> int:
        return self.count

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def offset(self, i: int) -> int:
        return splitmix64(splitmix64((self.seed << 32) ^ self.epoch) ^ i) % self.offsets

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not 0 <= i < self.count:
            raise IndexError(i)
        chunk = torch.from_numpy(self.stream.read(self.offset(i), self.max_length + 1))
        return {"input_ids": chunk[:-1], "target_ids": chunk[1:]}


def is_prepared_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / META_FILE).is_file() or is_nanogpt_folder(path)


# nanoGPT's prepare.py (openwebtext, shakespeare): train.bin and val.bin, uint16 GPT-2 ids, no meta.json
NANOGPT_FILES = {"train": "train.bin", "validation": "val.bin"}


def is_nanogpt_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / "train.bin").is_file() and not (Path(path) / META_FILE).is_file()


def nanogpt_meta(folder: Path) -> dict[str, Any]:
    """The meta.json a nanoGPT data folder lacks: each split one shard of uint16 GPT-2 ids (tiktoken's gpt2, the
    documents joined by <|endoftext|>), memory-mapped as it is. A character-level folder (meta.pkl) is refused."""
    if (folder / "meta.pkl").exists():
        raise ValueError(
            f"{folder}: holds meta.pkl, nanoGPT's character-level vocabulary (e.g. shakespeare_char): its ids are "
            "not GPT-2's; prepare the text with `gpt-scratch prepare` instead"
        )
    splits = {}
    for split, name in NANOGPT_FILES.items():
        size = (folder / name).stat().st_size if (folder / name).is_file() else 0
        if size % 2:
            raise ValueError(f"{folder / name}: {size} bytes, not a whole number of uint16 token ids")
        shards = [{"file": name, "tokens": size // 2}] if size else []
        splits[split] = {"tokens": size // 2, "shards": shards}
    return {
        "format": "nanogpt", "dtype": "uint16", "complete": True, "splits": splits,
        "tokenizer": {"name": "gpt2", "vocab_size": 50257},
        "sources": [{"name": folder.name, "file": "train.bin, val.bin", "sha256": None, "format": "nanoGPT"}],
    }  # fmt: skip


def max_steps_for_tokens(max_tokens: int, tokens_per_step: int) -> int:
    """Optimizer steps that feed at least `max_tokens` tokens."""
    return max(1, math.ceil(max_tokens / tokens_per_step))
