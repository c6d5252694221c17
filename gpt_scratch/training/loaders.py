"""The loop's batches: map-style datasets through accelerate's loaders, streams through `StreamLoader`.

Map-style (`_loaders`): each process gets its share of the indices (accelerate's seedable sampler), or, with
batch_order "book", plain DataLoaders drawing from torch's global generator. Streams (`StreamLoader`): a training
set with no length (StreamingWindows), read by each process for itself.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import torch
from accelerate import PartialState
from accelerate.utils import send_to_device
from torch.utils.data import DataLoader


def _loaders(model, optimizer, train_dataset, val_dataset, test_dataset, config, make_loader, accelerator):
    """The map-style datasets' loaders, prepared by accelerate (each process gets its share of the indices)."""
    eval_batch_size = config.eval_batch_size or config.batch_size
    train_loader = make_loader(
        train_dataset, config.batch_size, shuffle=config.shuffle, drop_last=config.drop_last
    )
    if len(train_loader) == 0:
        raise ValueError(
            f"The training set ({len(train_dataset)} examples) makes no batch of {config.batch_size}"
            + (" with drop_last=True" if config.drop_last else "")
        )
    # "seedable": the train loss is evaluated on the first eval_iter batches of an unshuffled loader (the same
    # batches every time, no draw from the training loader's random state). "book": on the shuffled train loader.
    book_order = config.batch_order == "book"
    if book_order and eval_batch_size == config.batch_size:
        train_eval_loader = train_loader
    else:
        first = train_dataset if book_order else _first_epoch(train_dataset)
        train_eval_loader = make_loader(first, eval_batch_size, shuffle=book_order)
    val_loader = make_loader(val_dataset, eval_batch_size, shuffle=False) if val_dataset else None
    test_loader = make_loader(test_dataset, eval_batch_size, shuffle=False) if test_dataset else None

    model, optimizer = accelerator.prepare(model, optimizer)
    if not book_order:  # "book" keeps plain DataLoaders: accelerate's wrappers would change the draws
        train_loader, train_eval_loader = accelerator.prepare(train_loader, train_eval_loader)
        val_loader = accelerator.prepare(val_loader) if val_loader is not None else None
        test_loader = accelerator.prepare(test_loader) if test_loader is not None else None
    return model, optimizer, train_loader, train_eval_loader, val_loader, test_loader


def _first_epoch(dataset: Any) -> Any:
    """A copy that the loop's `set_epoch` leaves at epoch 0 (RandomWindows' train-loss windows stay the same)."""
    return copy.copy(dataset) if hasattr(dataset, "set_epoch") else dataset


def _torch_format(dataset: Any) -> Any:
    """A datasets.Dataset yields tensors; anything else (a torch Dataset, a list) is used as it is."""
    return dataset.with_format("torch") if hasattr(dataset, "with_format") else dataset


def _on_device(batch: Any, device: torch.device) -> Any:
    """A batch of tensors on `device` (accelerate's prepared loaders place them already; "book" loaders not)."""
    if isinstance(batch, dict):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


# ----------------------------------------------------------------------------------------------------------------
# Streams: a training set with no length (StreamingWindows), read by each process for itself


class StreamLoader:
    """The batches of a stream on this process's device, pass after pass without end: `max_steps` ends the run.

    A stream reads only this process's share itself (`StreamingWindows` splits it with `split_dataset_by_node`), so
    it is not given to `accelerator.prepare`: for an IterableDataset accelerate either reads the whole stream in
    every process and keeps every num_processes-th batch (`IterableDatasetShard`) or reads it all in the main
    process and sends the batches out (`dispatch_batches`, its default for one). Every process gets a batch at
    every step (a stream that runs out starts its next pass), so all of them reach `max_steps` together. Batches
    are made in this process (no workers) and not fetched ahead, so `state_dict()` stands exactly after the last
    batch; it is saved as JSON in every checkpoint, one file per process.
    """

    def __init__(
        self, dataset: Any, batch_size: int, collate_fn: Callable | None, drop_last: bool, device: Any
    ):
        for method in ("state_dict", "load_state_dict"):
            if not callable(getattr(dataset, method, None)):
                raise TypeError(
                    f"a training stream needs {method}() to be resumable; {type(dataset).__name__} has none"
                )
        self.dataset, self.device, self.batch_size = dataset, device, batch_size
        # its own generator: a new iterator (each pass) draws a seed, and a draw from torch's RNG moves dropout
        generator = torch.Generator().manual_seed(0)
        self.loader = DataLoader(
            dataset, batch_size, collate_fn=collate_fn, drop_last=drop_last, generator=generator
        )
        self.batches = 0  # taken by the loop, over every pass

    def __iter__(self) -> Iterator[Any]:
        empty_passes = 0
        while empty_passes < 2:  # a resumed pass may have no batch left; two empty passes: an empty stream
            empty_passes += 1
            for batch in self.loader:
                empty_passes = 0
                self.batches += 1
                yield send_to_device(batch, self.device)
        raise ValueError(
            f"The training stream of process {PartialState().process_index} makes no batch of {self.batch_size}"
        )

    def state_dict(self) -> dict[str, Any]:
        """Saved as JSON in every checkpoint, one file per process (checkpointing.save_checkpoint)."""
        return {"batches": self.batches, "stream": self.dataset.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.batches = state["batches"]
        self.dataset.load_state_dict(state["stream"])


def _stream_loaders(train_dataset, val_dataset, test_dataset, config, collate_fn, accelerator):
    """The training stream's loader, whose state each process saves with (and loads from) every checkpoint, and
    the evaluation batches: the first max(eval_iter, final_eval_iter) batches of the training stream (read once,
    then the stream is put back at its start) and of the validation stream, the same at every evaluation."""
    if config.max_steps is None:
        raise ValueError("A training stream has no length: give max_steps (--max-steps or --max-tokens)")
    if config.eval_iter is None:
        raise ValueError("With a training stream, eval_iter must be a number of batches, not None (all)")
    if test_dataset is not None:
        raise ValueError("A test set is not supported with a training stream")
    if config.num_workers:
        raise ValueError(
            "A training stream is read in the training process (num_workers=0), where its state is exact: "
            f"num_workers={config.num_workers} is not supported"
        )
    train_loader = StreamLoader(
        train_dataset, config.batch_size, collate_fn, config.drop_last, accelerator.device
    )
    num_batches = max(config.eval_iter, config.final_eval_iter or 0)
    eval_batch_size = config.eval_batch_size or config.batch_size

    def first_batches(dataset: Any) -> list[Any]:
        start = dataset.state_dict() if hasattr(dataset, "state_dict") else None
        windows = list(itertools.islice(iter(dataset), num_batches * eval_batch_size))
        if start is not None:
            dataset.load_state_dict(start)
        loader = DataLoader(windows, eval_batch_size, collate_fn=collate_fn, generator=torch.Generator())
        return [send_to_device(batch, accelerator.device) for batch in loader]

    val_loader = first_batches(val_dataset) if val_dataset is not None else None
    return train_loader, first_batches(train_dataset), val_loader
