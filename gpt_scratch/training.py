"""The one training loop, shared by pretraining (ch. 5), classification (ch. 6) and instruction (ch. 7) fine-tuning.

The book's `train_model_simple` on `accelerate`: the same loop runs on a CPU, a GPU, several GPUs or nodes
(`accelerate launch`, `torchrun`), with mixed precision, gradient accumulation and clipping, and can be killed and
resumed mid-epoch to the same weights. A workflow hands it a model, its datasets and a `Task` that says how to
compute the loss of a batch:

    task = CausalLMTask(start_context="Every effort moves you")       # or ClassificationTask(), or your own
    config = TrainingConfig(output_dir="runs/x", num_epochs=10, learning_rate=4e-4, weight_decay=0.1)
    result = train(model, train_dataset, val_dataset, config, task, tokenizer)

`train` evaluates train and validation loss (and the task's metrics) every `eval_freq` optimizer steps over
`eval_iter` batches, as the book's `evaluate_model`; prints a sample after each epoch; logs to `metrics.jsonl`,
`metrics.csv` and accelerate's trackers; checkpoints atomically (`gpt_scratch.checkpointing`: no pickle, a locked
run folder, a resume that continues the same run or is refused); and at the end writes into `output_dir` the
model and tokenizer (`save_pretrained`), `loss.png` and `training_summary.json` (see `TrainResult.summary`).

Batch order (`batch_order`): "book" (one process) is the book's: plain DataLoaders drawing their shuffle from
torch's global generator at each iteration, the train loss evaluated on the shuffled train loader, dropout from the
same generator, nothing reseeded after the model is made: with the book's initial weights the book's exact batches
and masks. "seedable" (any number of processes; several always use it) is accelerate's seedable sampler and the train
loss of the first unshuffled batches. Both resume exactly: "book" keeps the generator's state in the checkpoint's
trainer_state.json.

Batches: with `collate_fn=None` a dataset is used as is (a `datasets.Dataset` in torch format: equal-length
columns, e.g. the pretraining windows {input_ids, target_ids}); pass a `collate_fn` for padding (ch. 6, 7).
A training set may also be a stream (a torch `IterableDataset` with a JSON-able `state_dict()`, e.g.
`StreamingWindows`): it has no length, so `max_steps` ends the run; see `StreamLoader`.
`batch_size` is per process: the global batch is `batch_size * num_processes * gradient_accumulation_steps`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import csv
import dataclasses
import itertools
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, send_to_device, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gpt_scratch.checkpointing import (  # noqa: F401  (latest_checkpoint: the loop's API too)
    CHECKPOINTS_DIR,
    TRAINER_STATE,
    claim_run_folder,
    latest_checkpoint,
    load_checkpoint,
    release_run_folder,
    save_checkpoint,
)
from gpt_scratch.generation.book import generate_text_simple, text_to_token_ids, token_ids_to_text
from gpt_scratch.generation.fast_generate import generate_fast
from gpt_scratch.hardware import warn_if_slow_bf16
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args, option
from gpt_scratch.plotting import plot_losses, plot_values

SUMMARY_FILE = "training_summary.json"


@dataclass
class TrainingConfig:
    """Every knob of the loop. Defaults are the book's chapter 5 run (batch 2, AdamW lr 4e-4, weight decay 0.1)."""

    output_dir: str = option("runs/train", "run folder: model, tokenizer, logs, plots, checkpoints")
    num_epochs: int = option(10, "passes over the training set", aliases=["--epochs"])
    max_steps: int | None = option(None, "stop after this many optimizer steps, whatever --num-epochs says")
    batch_size: int = option(2, "examples per batch and process")
    eval_batch_size: int | None = option(None, "examples per evaluation batch ('none': --batch-size)")
    learning_rate: float = option(4e-4, "AdamW learning rate (the peak when warming up)", aliases=["--lr"])
    weight_decay: float = option(0.1, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.999, "AdamW beta2")
    lr_schedule: str = option(
        "constant",
        "'constant' or 'cosine' (cosine decay to --min-lr after the warmup, appendix D)",
        choices=["constant", "cosine"],
    )
    warmup_steps: int = option(0, "linear learning-rate warmup from --initial-lr over this many steps")
    warmup_ratio: float | None = option(
        None, "warmup over this share of the run's optimizer steps instead (appendix D: 0.2)"
    )
    initial_lr: float = option(0.0, "the learning rate the warmup starts from (appendix D: 1e-5)")
    min_lr: float = option(0.0, "the learning rate the cosine schedule ends at (appendix D: 1e-5)")
    gradient_accumulation_steps: int = option(1, "batches per optimizer step")
    max_grad_norm: float | None = option(
        None, "clip the gradient norm to this once the warmup is over (appendix D: 1.0; 'none': no clipping)"
    )
    eval_freq: int = option(
        5, "evaluate after the first optimizer step and every this many steps after (as the book)"
    )
    eval_iter: int | None = option(5, "batches per evaluation ('none': the whole loaders)")
    final_eval_iter: int | None = option(None, "batches for the final metrics in the summary ('none': all)")
    seed: int = option(123, "random seed (model initialisation, shuffling, dropout)")
    batch_order: str = option(
        "book",
        "'book': the book's loaders, one process: shuffles and dropout drawn from torch's global generator in "
        "the book's order (the train loss is evaluated on the shuffled train loader, as the book's evaluate_model) "
        "-- the book's exact batches and masks; 'seedable': accelerate's seedable sampler, any number of processes "
        "(several processes always use it), the train loss on the first unshuffled batches",
        choices=["book", "seedable"],
    )
    mixed_precision: str = option(
        "no", "'no', 'bf16' or 'fp16' (fp16 needs a GPU)", choices=["no", "bf16", "fp16"]
    )
    shuffle: bool = option(True, "shuffle the training set each epoch (seeded: resumable)")
    drop_last: bool = option(True, "drop the last incomplete training batch (the book's train_loader)")
    num_workers: int = option(0, "data loader worker processes")
    checkpoint_every: int | None = option(
        None, "save a resumable checkpoint every this many optimizer steps (one is always made at the end)"
    )
    resume: bool = option(False, "continue the run in OUTPUT_DIR from its newest readable checkpoint")
    overwrite: bool = option(False, "replace the run OUTPUT_DIR holds (without it, such a folder is refused)")
    log_with: str | None = option(None, "accelerate tracker, e.g. tensorboard or wandb")
    progress_bar: bool = option(True, "show a tqdm progress bar")

    def __post_init__(self) -> None:
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"TrainingConfig.lr_schedule must be 'constant' or 'cosine', got {self.lr_schedule!r}"
            )
        if self.batch_order not in ("book", "seedable"):
            raise ValueError(
                f"TrainingConfig.batch_order must be 'book' or 'seedable', got {self.batch_order!r}"
            )
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(
                f"TrainingConfig.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}"
            )
        for name in ("num_epochs", "batch_size", "gradient_accumulation_steps", "eval_freq"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainingConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_ratio is not None and not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(
                f"TrainingConfig.warmup_ratio must be in [0, 1) or None, not {self.warmup_ratio}"
            )
        for name in ("max_steps", "eval_iter", "final_eval_iter", "checkpoint_every", "eval_batch_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"TrainingConfig.{name} must be >= 1 or None, got {value}")
        if self.resume and self.overwrite:
            raise ValueError(
                "TrainingConfig: resume (--resume) and overwrite (--overwrite) exclude each other"
            )


# The book's runs, each written once. Chapter 5's are TrainingConfig's defaults; the workflows start from these.
BOOK_RUNS: dict[str, TrainingConfig] = {
    "chapter-5": TrainingConfig(),  # pretraining: 10 epochs, batch 2, lr 4e-4
    "appendix-d": TrainingConfig(  # chapter 5's pretraining with appendix D's schedule, as its notebook runs it
        num_epochs=15,
        learning_rate=1e-3,  # the peak (the book's text printed 5e-4 by mistake, its notebook says)
        lr_schedule="cosine",
        warmup_ratio=0.2,
        initial_lr=1e-5,
        min_lr=1e-5,
        max_grad_norm=1.0,
        eval_iter=1,
    ),
    "chapter-6": TrainingConfig(  # classification fine-tuning
        batch_order="seedable",
        num_epochs=5,
        batch_size=8,
        learning_rate=5e-5,
        weight_decay=0.1,
        eval_freq=50,
    ),
    "chapter-7": TrainingConfig(  # instruction fine-tuning
        output_dir="runs/instruct",
        batch_order="seedable",
        num_epochs=2,
        batch_size=8,
        learning_rate=5e-5,
        weight_decay=0.1,
        eval_freq=5,
    ),
}


# ----------------------------------------------------------------------------------------------------------------
# Tasks: what a batch's loss (and metrics, and a sample) is


class Task:
    """How the loop turns a batch into a loss. Subclass it and override what your workflow needs.

    - `loss(model, batch)`: a scalar tensor to minimise (required).
    - `metrics(model, batch)`: `{name: (numerator, denominator)}`; the loop sums both over batches and processes
      and reports numerator / denominator (accuracy: (correct, examples)). Called with the model in eval mode.
    - `sample(model, tokenizer)`: text printed after each epoch (the model is unwrapped and in eval mode).
    - `num_tokens(batch)`: the tokens a batch feeds the model, for "tokens seen".
    - `derived_metrics(metrics)`: extra final metrics computed from the others (e.g. perplexity).
    """

    name: str = "task"

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def metrics(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[Any, Any]]:
        return {}

    def sample(self, model: torch.nn.Module, tokenizer: Any) -> str | None:
        return None

    def num_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].numel())

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return {}


class CausalLMTask(Task):
    """Next-token prediction on batches of {input_ids, target_ids} with pre-shifted targets (ch. 5 and 7).

    The loss is the book's `calc_loss_batch`: cross-entropy of `model(input_ids).logits` against `target_ids`,
    positions with -100 ignored. The sample is the book's `generate_and_print_sample`: greedy decoding of
    `max_new_tokens` tokens after `start_context` (a prompt formatted by the workflow, for instructions), with a
    KV cache where the context allows (the book re-runs the whole context for each token: the same tokens).
    """

    def __init__(
        self,
        start_context: str | None = "Every effort moves you",
        max_new_tokens: int = 50,
        name: str = "pretraining",
    ):
        self.start_context = start_context
        self.max_new_tokens = max_new_tokens
        self.name = name

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"]).logits  # (B, T, vocab)
        return F.cross_entropy(logits.flatten(0, 1).float(), batch["target_ids"].flatten(), ignore_index=-100)

    def sample(self, model: torch.nn.Module, tokenizer: Any) -> str | None:
        if tokenizer is None or not self.start_context:
            return None
        device = next(model.parameters()).device
        idx = text_to_token_ids(self.start_context, tokenizer).to(device)
        context_length = model.config.context_length
        if isinstance(model, GPTScratchForCausalLM) and idx.shape[1] + self.max_new_tokens <= context_length:
            out = generate_fast(model, idx, self.max_new_tokens)  # the same greedy tokens, with a KV cache
        else:
            out = generate_text_simple(model, idx, self.max_new_tokens, context_size=context_length)
        return token_ids_to_text(out, tokenizer).replace("\n", " ")  # compact print format, as the book

    def derived_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        return {"perplexity": math.exp(min(metrics["val_loss"], 50.0))} if "val_loss" in metrics else {}


class ClassificationTask(Task):
    """Sequence classification on batches of {input_ids, attention_mask?, labels} (ch. 6).

    The loss is the classifier's own (`model(..., labels=labels).loss`, cross-entropy of the last real token's
    logits); the metric is accuracy from the argmax of those logits, as the book's `calc_accuracy_loader`.
    """

    name = "classification"

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return model(
            input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), labels=batch["labels"]
        ).loss

    def metrics(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, tuple[Any, Any]]:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).logits
        correct = (logits.argmax(dim=-1) == batch["labels"]).sum()
        return {"accuracy": (correct, batch["labels"].numel())}


# ----------------------------------------------------------------------------------------------------------------
# State and result


@dataclass
class TrainState:
    """Where a run stands, written as JSON into every checkpoint (transformers' `TrainerState` is the model)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batches_in_epoch: int = 0  # batches of the current epoch already trained on (skipped when resuming)
    tokens_seen: int = 0  # over every process
    wall_time_s: float = 0.0  # time spent training, over every resumed part of the run
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per evaluation
    # batch_order "book": torch's global generator (base64 of its state) at the start of the current epoch (its
    # train-loader iterator drew that epoch's shuffle from there). The generators at the checkpoint itself are in
    # the checkpoint's random-state files (checkpointing), as in every order.
    epoch_rng_state: str | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


@dataclass
class TrainResult:
    """What `train` returns: the trained (unwrapped) model, the metric history and the summary it wrote."""

    model: torch.nn.Module
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    output_dir: Path
    accelerator: Accelerator | None = field(default=None, repr=False)


@dataclass
class Run:
    """What `prepare` sets up for `fit` and `finish`: the accelerate-prepared objects and the state."""

    config: TrainingConfig
    accelerator: Accelerator
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_loader: DataLoader
    train_eval_loader: DataLoader  # the first eval_iter training batches, unshuffled: the same every time
    val_loader: DataLoader | None
    test_loader: DataLoader | None
    steps_per_epoch: int | None  # None: a stream
    total_steps: int
    state: TrainState
    arguments: dict[str, Any] = field(default_factory=dict)  # what the run was asked; a resume must match
    resumes: list[dict[str, Any]] = field(default_factory=list)  # each resume: its step, what changed
    lock: Any = None  # the run folder's lock (checkpointing.claim_run_folder), released by `finish`
    warmup_steps: int = 0  # from warmup_steps or warmup_ratio; clipping starts after it (appendix D)

    @property
    def output_dir(self) -> Path:
        return Path(self.config.output_dir)

    @property
    def streaming(self) -> bool:
        return isinstance(self.train_loader, StreamLoader)


# ----------------------------------------------------------------------------------------------------------------
# The loop: train = prepare -> fit -> finish


def train(
    model: torch.nn.Module,
    train_dataset: Any,
    val_dataset: Any | None,
    config: TrainingConfig,
    task: Task,
    tokenizer: Any = None,
    *,
    test_dataset: Any | None = None,
    collate_fn: Callable | None = None,
    base_model: str | None = None,
    datasets: list[dict[str, Any]] | None = None,
    extra_hyperparameters: dict[str, Any] | None = None,
    optimizer_state: dict[str, dict[str, torch.Tensor]] | None = None,
) -> TrainResult:
    """Train `model` on `train_dataset` with `task`'s loss; see the module docstring for what it writes.

    `test_dataset`, when given, is evaluated once at the end (loss and the task's metrics -> `test_*` in the
    summary). `base_model` and `datasets` ([{"name", "file", "sha256"}]) go into `training_summary.json`,
    `extra_hyperparameters` (e.g. the model preset) into its "hyperparameters". `optimizer_state` ({parameter name:
    AdamW's state}, e.g. the book's moments from `gpt_scratch.convert`) starts AdamW where another trainer left it.
    """
    start_time = time.time()
    hyperparameters = {**dataclasses.asdict(config), **(extra_hyperparameters or {})}
    model_config = getattr(model, "config", None)
    if model_config is not None:
        hyperparameters["model_config"] = model_config.to_diff_dict()
    arguments = {**hyperparameters, "datasets": list(datasets or [])}  # what a resume must match
    if model_config is not None:
        arguments["model_config"] = model_config.to_dict()  # every field, not only those off the defaults
    run = prepare(
        model, train_dataset, val_dataset, config, test_dataset=test_dataset, collate_fn=collate_fn,
        arguments=arguments, optimizer_state=optimizer_state,
    )  # fmt: skip
    hyperparameters["batch_order"] = run.config.batch_order  # the order used (several processes: "seedable")
    try:
        if config.log_with:
            run.accelerator.init_trackers("gpt_scratch", config=_flat_scalars(hyperparameters))
        fit(run, task, tokenizer)
        summary = finish(run, task, tokenizer, hyperparameters, base_model, datasets, start_time)
    finally:
        release_run_folder(run.lock)
    model = run.accelerator.unwrap_model(run.model, keep_fp32_wrapper=False)
    return TrainResult(model, run.state.history, summary, run.output_dir, run.accelerator)


def prepare(
    model: torch.nn.Module,
    train_dataset: Any,
    val_dataset: Any | None,
    config: TrainingConfig,
    *,
    test_dataset: Any | None = None,
    collate_fn: Callable | None = None,
    arguments: dict[str, Any] | None = None,
    optimizer_state: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Run:
    """The accelerator, the loaders, AdamW and the learning-rate schedule; the checkpoint's state when resuming.

    The run folder is locked until `finish` (`checkpointing.claim_run_folder`: a folder that holds a run needs
    `resume` or `overwrite`). `arguments` (the hyperparameters and "datasets"; default: the config's fields) are what
    a resume must match, but for the evaluation, logging and checkpoint settings.
    """
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError(
            "mixed_precision='fp16' needs a GPU (fp16 autocast with a grad scaler); on CPU use 'bf16'"
        )
    output_dir = Path(config.output_dir)
    accelerator = Accelerator(
        cpu=_cpu_only_processes(),
        mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        log_with=config.log_with,
        project_dir=str(output_dir),
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
    )
    if config.mixed_precision == "bf16":
        warn_if_slow_bf16("mixed_precision='bf16' (--mixed-precision bf16)", accelerator.device)
    if config.batch_order == "book" and accelerator.num_processes > 1:
        accelerator.print("batch_order='book' is a one-process order: several processes use 'seedable'")
        config = dataclasses.replace(config, batch_order="seedable")
    lock, checkpoint = claim_run_folder(accelerator, config)
    try:
        run = _prepare(accelerator, model, train_dataset, val_dataset, config, test_dataset, collate_fn)
        run.lock = lock
        parameters = accelerator.unwrap_model(run.model).named_parameters()
        for name, p in parameters:  # AdamW's state from another trainer (the book's model_and_optimizer.pth)
            if p.requires_grad and name in (optimizer_state or {}):
                run.optimizer.state[p] = {
                    k: v if k == "step" else v.to(p.device) for k, v in optimizer_state[name].items()
                }
        run.arguments = {
            **(arguments or dataclasses.asdict(config)),
            "train_examples": len(train_dataset) if hasattr(train_dataset, "__len__") else None,
            "total_steps": run.total_steps,
            "num_processes": accelerator.num_processes,
        }
        if checkpoint is not None:
            try:
                run.state = TrainState(**load_checkpoint(run, checkpoint))
            except TypeError as error:
                raise ValueError(f"{checkpoint / TRAINER_STATE}: {error}") from error
            if run.state.step > run.total_steps:
                raise ValueError(
                    f"{checkpoint} is at step {run.state.step}, past this run's {run.total_steps} steps "
                    "(--max-steps, --num-epochs)"
                )
            changed = "".join(f", {k} {old} -> {new}" for k, (old, new) in run.resumes[-1]["changed"].items())
            accelerator.print(
                f"Resumed from {checkpoint} (step {run.state.step}, epoch {run.state.epoch + 1}){changed}"
            )
        elif config.resume:
            accelerator.print(f"No checkpoint in {output_dir / CHECKPOINTS_DIR}: starting from scratch")
    except BaseException:
        release_run_folder(lock)
        raise
    if accelerator.is_main_process:
        _write_metric_logs(output_dir, run.state.history, rewrite=True)
    return run


def _prepare(accelerator, model, train_dataset, val_dataset, config, test_dataset, collate_fn) -> Run:
    book_order = config.batch_order == "book"
    # "seedable": seeded here, before the loaders are prepared (the sampler takes its seed from here). "book": the
    # caller seeded before making the model (pretrain does), and the loaders draw from where that left off.
    if not book_order:
        set_seed(config.seed)

    # "seedable": each loader has its own generator (making an iterator draws a seed from it, and a draw from
    # torch's global RNG would shift the dropout masks after a resume: the resumed run makes one iterator more).
    # "book": torch's global generator, as the book's loaders; fit() replays its draws when resuming.
    def make_loader(dataset: Any, batch_size: int, **kwargs: Any) -> DataLoader:
        generator = None if book_order else torch.Generator().manual_seed(config.seed)
        return DataLoader(
            _torch_format(dataset),
            batch_size,
            collate_fn=collate_fn,
            num_workers=config.num_workers,
            generator=generator,
            **kwargs,
        )

    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
        betas=(config.adam_beta1, config.adam_beta2),
    )
    if isinstance(train_dataset, torch.utils.data.IterableDataset):  # a stream: see StreamLoader
        model, optimizer = accelerator.prepare(model, optimizer)
        train_loader, train_eval_loader, val_loader = _stream_loaders(
            train_dataset, val_dataset, test_dataset, config, collate_fn, accelerator
        )
        test_loader, steps_per_epoch, total_steps = None, None, config.max_steps
    else:
        model, optimizer, train_loader, train_eval_loader, val_loader, test_loader = _loaders(
            model, optimizer, train_dataset, val_dataset, test_dataset, config, make_loader, accelerator
        )
        steps_per_epoch = math.ceil(len(train_loader) / config.gradient_accumulation_steps)
        total_steps = config.num_epochs * steps_per_epoch
        if config.max_steps is not None:
            total_steps = min(total_steps, config.max_steps)
    warmup_steps = (
        int(config.warmup_ratio * total_steps) if config.warmup_ratio is not None else config.warmup_steps
    )
    # Stepped by hand once per optimizer step (accelerate's prepared scheduler steps num_processes times per step).
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config, total_steps, warmup_steps))
    return Run(
        config, accelerator, model, optimizer, scheduler, train_loader, train_eval_loader, val_loader,
        test_loader, steps_per_epoch, total_steps, TrainState(), warmup_steps=warmup_steps,
    )  # fmt: skip


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


def fit(run: Run, task: Task, tokenizer: Any = None) -> None:
    """The book's `train_model_simple`: for each epoch, for each batch, the loss, backward and an optimizer step;
    every `eval_freq` steps the book's `evaluate_model`; after each epoch a sample. On accelerate: gradient
    accumulation and clipping, a resumed run starts mid-epoch where its checkpoint stopped."""
    config, accelerator, model, state = run.config, run.accelerator, run.model, run.state
    progress = tqdm(
        total=run.total_steps,
        initial=state.step,
        desc="Training",
        disable=not (accelerator.is_main_process and config.progress_bar),
        dynamic_ncols=True,
    )
    write = progress.write if not progress.disable else accelerator.print
    clock = _Clock(state)
    last_checkpoint_step = state.step if config.resume else -1
    local_tokens = 0
    model.train()
    while state.epoch < config.num_epochs and state.step < run.total_steps:
        for batch in _rest_of_epoch(run):
            batch = _on_device(batch, accelerator.device)
            with accelerator.accumulate(model):
                loss = task.loss(model, batch)
                accelerator.backward(loss)
                clip = config.max_grad_norm is not None and state.step >= run.warmup_steps  # as appendix D
                if accelerator.sync_gradients and clip:
                    accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                run.optimizer.step()
                run.optimizer.zero_grad()
            state.batches_in_epoch += 1
            local_tokens += task.num_tokens(batch)
            if not accelerator.sync_gradients:
                continue  # accumulating: no optimizer step yet
            run.scheduler.step()
            state.step += 1
            state.tokens_seen += _sum_over_processes(local_tokens, accelerator)
            local_tokens = 0
            progress.update(1)
            progress.set_postfix(loss=f"{loss.item():.3f}", lr=f"{run.scheduler.get_last_lr()[0]:.2e}")

            if (state.step - 1) % config.eval_freq == 0:  # after the first step, then every eval_freq steps
                write(_format_record(_log_evaluation(run, task, clock)))
            if not run.streaming and state.batches_in_epoch == len(run.train_loader):
                state.epoch, state.batches_in_epoch = state.epoch + 1, 0  # this step ended the epoch
            if config.checkpoint_every and state.step % config.checkpoint_every == 0:
                with clock.paused():
                    save_checkpoint(run)
                last_checkpoint_step = state.step
            if state.step >= run.total_steps:
                break
        else:  # the loader ran out (an epoch that ended without a sync can only be the last partial one)
            if state.batches_in_epoch:
                state.epoch, state.batches_in_epoch = state.epoch + 1, 0
        _print_sample(model, tokenizer, task, accelerator, write)
    progress.close()
    clock.stop()
    if last_checkpoint_step != state.step:
        save_checkpoint(run)


def finish(
    run: Run,
    task: Task,
    tokenizer: Any,
    hyperparameters: dict[str, Any],
    base_model: str | None = None,
    datasets: list[dict[str, Any]] | None = None,
    start_time: float | None = None,
) -> dict[str, Any]:
    """The final metrics (over `final_eval_iter` batches, and the test set), the saved folder, the summary."""
    accelerator, model = run.accelerator, run.model
    final = evaluate_model(run, task, run.config.final_eval_iter)
    if run.test_loader is not None:
        model.eval()
        final |= evaluate(model, run.test_loader, task, accelerator, None, prefix="test_")
    final |= task.derived_metrics(final)
    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    state_dict = accelerator.get_state_dict(model)
    summary = _summary(
        task, base_model, datasets, hyperparameters, final, run.state, unwrapped, run.steps_per_epoch,
        start_time or time.time(),
    )  # fmt: skip
    if run.resumes:
        summary["resumes"] = run.resumes
    if accelerator.is_main_process:
        _save_folder(run.output_dir, unwrapped, state_dict, tokenizer)
        summary["plots"] = _plot_history(run.state.history, run.output_dir)
        write_summary(run.output_dir, summary)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    release_run_folder(run.lock)
    return summary


def _save_folder(output_dir: Path, model: Any, state_dict: dict[str, Any], tokenizer: Any) -> None:
    """save_pretrained the model and tokenizer into a temporary folder, then move each file into `output_dir`.

    training_summary.json goes first and comes back last (`write_summary`): a run killed while saving leaves
    no summary beside a half-written folder, and its final checkpoint to resume from.
    """
    (output_dir / SUMMARY_FILE).unlink(missing_ok=True)
    tmp = output_dir / CHECKPOINTS_DIR / ".tmp-save"  # beside the checkpoints: never uploaded
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, state_dict=state_dict)
    if hasattr(model, "get_base_model"):  # a PEFT model saves its adapter; the card reads the base config
        model.get_base_model().config.save_pretrained(tmp)
    if tokenizer is not None:
        tokenizer.model_max_length = model.config.context_length  # the model's context, not GPT-2's 1024
        tokenizer.save_pretrained(tmp)
    for path in sorted(tmp.iterdir()):
        target = output_dir / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(path, target)
    tmp.rmdir()


def evaluate_model(run: Run, task: Task, num_batches: int | None) -> dict[str, float]:
    """The book's `evaluate_model`: train and validation loss (and the task's metrics) over `num_batches`."""
    run.model.eval()
    results = evaluate(run.model, run.train_eval_loader, task, run.accelerator, num_batches, prefix="train_")
    if run.val_loader is not None:
        results |= evaluate(run.model, run.val_loader, task, run.accelerator, num_batches, prefix="val_")
    run.model.train()
    return results


def _rest_of_epoch(run: Run) -> Any:
    """The current epoch's batches, without those a resumed run already trained on."""
    state = run.state
    if run.streaming:
        return run.train_loader  # endless; a resumed stream continues from the state in the checkpoint
    if hasattr(run.train_loader.dataset, "set_epoch"):  # accelerate skips it when the sampler has one
        run.train_loader.dataset.set_epoch(state.epoch)  # e.g. RandomWindows: fresh windows each epoch
    if run.config.batch_order == "book":
        return _rest_of_book_epoch(run)
    run.train_loader.set_epoch(state.epoch)
    if state.batches_in_epoch:
        return run.accelerator.skip_first_batches(run.train_loader, state.batches_in_epoch)
    return run.train_loader


def _rest_of_book_epoch(run: Run) -> Iterator[Any]:
    """The book's epoch: a fresh iterator of the train loader, which draws the epoch's shuffle from torch's global
    generator. A run resumed mid-epoch replays that draw from the generator state of the epoch's start, skips the
    batches it already trained on, then takes up again the generator state its checkpoint restored."""
    state = run.state
    if not state.batches_in_epoch:
        state.epoch_rng_state = _encode_rng_state(torch.get_rng_state())
        return iter(run.train_loader)
    at_checkpoint = torch.get_rng_state()  # restored from the checkpoint's random states
    torch.set_rng_state(_decode_rng_state(state.epoch_rng_state))
    batches = iter(run.train_loader)
    for _ in range(state.batches_in_epoch):  # the sampler draws its permutation at the first batch
        next(batches)
    torch.set_rng_state(at_checkpoint)
    return batches


def _encode_rng_state(rng_state: torch.Tensor) -> str:
    return base64.b64encode(rng_state.numpy().tobytes()).decode("ascii")


def _decode_rng_state(text: str | None) -> torch.Tensor:
    if text is None:
        raise ValueError("the checkpoint's trainer_state.json lacks batch_order='book''s generator state")
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _on_device(batch: Any, device: torch.device) -> Any:
    """A batch of tensors on `device` (accelerate's prepared loaders place them already; "book" loaders not)."""
    if isinstance(batch, dict):
        return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    return batch


def _log_evaluation(run: Run, task: Task, clock: _Clock) -> dict[str, Any]:
    """Evaluate, append the record to the history, metrics.jsonl/.csv and the trackers; return it."""
    state = run.state
    tokens_per_s = clock.tokens_per_s()
    record = {
        "step": state.step,
        "epoch": state.epoch + 1,
        "tokens_seen": state.tokens_seen,
        "lr": run.scheduler.get_last_lr()[0],
        **evaluate_model(run, task, run.config.eval_iter),
        "tokens_per_s": tokens_per_s,
        "elapsed_s": clock.elapsed(),
    }
    state.history.append(record)
    if run.accelerator.is_main_process:
        _write_metric_logs(run.output_dir, [record])
    if run.config.log_with:
        run.accelerator.log({k: v for k, v in record.items() if k != "step"}, step=state.step)
    clock.new_interval()
    return record


class _Clock:
    """Training time (added to `state.wall_time_s`) and the throughput since the last evaluation."""

    def __init__(self, state: TrainState):
        self.state = state
        self.start = time.time()
        self.interval_start, self.interval_tokens = self.start, state.tokens_seen

    def elapsed(self) -> float:
        return self.state.wall_time_s + time.time() - self.start

    def tokens_per_s(self) -> float:
        seconds = time.time() - self.interval_start
        return (self.state.tokens_seen - self.interval_tokens) / max(seconds, 1e-9)

    def new_interval(self) -> None:
        self.interval_start, self.interval_tokens = time.time(), self.state.tokens_seen

    def stop(self) -> None:
        self.state.wall_time_s += time.time() - self.start
        self.start = time.time()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Bank the time so far into the state (a checkpoint saves it); what follows is not throughput time."""
        self.stop()
        yield
        self.interval_start += time.time() - self.start


def lr_lambda(
    config: TrainingConfig, total_steps: int, warmup_steps: int | None = None
) -> Callable[[int], float]:
    """The learning-rate multiplier of the optimizer step after `step` steps: appendix D's `train_model` schedule,
    a linear warmup from initial_lr over `warmup_steps` (default: config.warmup_steps), then the peak
    (learning_rate) constant or decayed along a cosine to min_lr."""
    peak = config.learning_rate
    warmup = config.warmup_steps if warmup_steps is None else warmup_steps

    def multiplier(step: int) -> float:
        if step < warmup:
            lr = config.initial_lr + step * (peak - config.initial_lr) / warmup
        elif config.lr_schedule == "constant":
            return 1.0
        else:
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            lr = config.min_lr + (peak - config.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return lr / peak if peak else 0.0

    return multiplier


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: DataLoader,
    task: Task,
    accelerator: Accelerator,
    num_batches: int | None = None,
    prefix: str = "",
) -> dict[str, float]:
    """The book's calc_loss_loader (mean batch loss over the first num_batches) plus the task's metrics, summed
    over every process. The caller sets eval mode."""
    totals = torch.zeros(2, device=accelerator.device, dtype=torch.float64)  # loss sum, batches
    metric_totals: dict[str, torch.Tensor] = {}
    for i, batch in enumerate(loader):
        if num_batches is not None and i >= num_batches:
            break
        batch = _on_device(batch, accelerator.device)
        totals += torch.tensor(
            [task.loss(model, batch).item(), 1.0], device=totals.device, dtype=torch.float64
        )
        for name, (num, den) in task.metrics(model, batch).items():
            pair = torch.tensor([float(num), float(den)], device=totals.device, dtype=torch.float64)
            metric_totals[name] = metric_totals.get(name, torch.zeros_like(pair)) + pair
    names = sorted(metric_totals)
    stacked = torch.stack([totals, *(metric_totals[n] for n in names)])
    if accelerator.num_processes > 1:
        stacked = accelerator.reduce(stacked, reduction="sum")
    results = {f"{prefix}loss": (stacked[0, 0] / stacked[0, 1]).item() if stacked[0, 1] else float("nan")}
    for row, name in zip(stacked[1:], names, strict=True):
        results[f"{prefix}{name}"] = (row[0] / row[1]).item() if row[1] else float("nan")
    return results


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


# ----------------------------------------------------------------------------------------------------------------
# Logs, plots, summary


def write_summary(output_dir: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """Write training_summary.json, then the model card when the `hub_card` package offers `write_model_card`."""
    path = Path(output_dir) / SUMMARY_FILE
    tmp = path.with_name(f".{SUMMARY_FILE}.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    os.replace(tmp, path)  # whole or not at all
    try:
        from gpt_scratch.hub.card import write_model_card
    except ImportError:
        return path
    write_model_card(output_dir)
    return path


def update_summary(
    output_dir: str | os.PathLike, metrics: dict[str, Any] | None = None, **fields: Any
) -> dict:
    """Merge metrics measured after `train` (e.g. a judge score) into training_summary.json and re-render."""
    path = Path(output_dir) / SUMMARY_FILE
    summary = json.loads(path.read_text())
    summary["metrics"].update(metrics or {})
    summary.update(fields)
    write_summary(output_dir, summary)
    return summary


def _summary(
    task, base_model, datasets, hyperparameters, final, state: TrainState, model, steps_per_epoch, start
):
    parameters = list(model.parameters())
    return {
        "task": task.name,
        "base_model": base_model,
        "datasets": list(datasets or []),
        "hyperparameters": hyperparameters,
        "metrics": final,
        "tokens_seen": int(state.tokens_seen),
        "steps": int(state.step),
        "epochs": round(state.step / steps_per_epoch, 4) if steps_per_epoch else None,  # None: a stream
        "wall_time_s": round(state.wall_time_s, 3),
        "total_time_s": round(time.time() - start, 3),
        "parameters": {
            "total": sum(p.numel() for p in parameters),
            "trainable": sum(p.numel() for p in parameters if p.requires_grad),
        },
        "plots": [],
    }


def _plot_history(history: list[dict[str, Any]], output_dir: Path) -> list[str]:
    if not history:
        return []
    steps = [r["step"] for r in history]
    tokens = [r["tokens_seen"] for r in history]
    column = lambda key: [r.get(key, float("nan")) for r in history]  # noqa: E731
    plots = [
        plot_losses(steps, tokens, column("train_loss"), column("val_loss"), output_dir / "loss.png").name
    ]
    for key in sorted(history[-1]):
        if key.startswith("train_") and key != "train_loss":
            metric = key.removeprefix("train_")
            path = output_dir / f"{metric}.png"
            plots.append(
                plot_values(steps, tokens, column(key), column(f"val_{metric}"), path, label=metric).name
            )
    return plots


def _write_metric_logs(output_dir: Path, records: list[dict[str, Any]], rewrite: bool = False) -> None:
    """Append records to metrics.jsonl (rewrite=True: replace the file) and rewrite metrics.csv from it."""
    jsonl = output_dir / "metrics.jsonl"
    with jsonl.open("w" if rewrite else "a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
    rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with (output_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def format_losses(metrics: dict[str, float]) -> str:
    """'train loss 1.234, val loss 2.345' for the losses `metrics` has (a run without validation has none)."""
    return ", ".join(
        f"{name} loss {metrics[f'{name}_loss']:.3f}" for name in ("train", "val") if f"{name}_loss" in metrics
    )


def _format_record(r: dict[str, Any]) -> str:
    """The book's line, "Ep 1 (Step 000000): Train loss 9.817, Val loss 9.924", plus tokens and speed."""
    metrics = ", ".join(
        f"{k.replace('_', ' ').capitalize()} {v:.3f}"
        for k, v in r.items()
        if k.startswith(("train_", "val_")) and isinstance(v, float)
    )
    return (
        f"Ep {r['epoch']} (Step {r['step'] - 1:06d}): {metrics}, "
        f"Tokens seen {r['tokens_seen']:,}, {r['tokens_per_s']:,.0f} tokens/s"
    )


def _print_sample(model, tokenizer, task: Task, accelerator: Accelerator, write: Callable) -> None:
    unwrapped = accelerator.unwrap_model(model)
    unwrapped.eval()
    with torch.no_grad(), accelerator.autocast():
        text = task.sample(unwrapped, tokenizer)
    model.train()
    if text is not None:
        write(text)


def run_folder(output_dir: str | None, resume: bool, workflow: str) -> str:
    """The run's folder: `output_dir`, else `runs/<workflow>-<timestamp>`, the same on every process."""
    if output_dir is not None:
        return output_dir
    if resume:
        raise SystemExit(f"gpt-scratch {workflow}: --resume needs --output-dir (the run folder to continue)")
    box = [f"runs/{workflow}-{time.strftime('%Y%m%d-%H%M%S')}"]
    if process_state().num_processes > 1:  # the main process's clock decides
        broadcast_object_list(box, from_process=0)
    return box[0]


def process_state() -> PartialState:
    """accelerate's PartialState, also for `torchrun` on a machine without GPUs (MULTI_CPU over gloo).

    accelerate takes processes started by torchrun for GPU processes unless told `cpu=True`; `accelerate launch
    --multi_gpu` on a CPU-only machine sets that itself. Use this (not a bare PartialState()) before `train`.
    """
    return PartialState(cpu=_cpu_only_processes())


def _cpu_only_processes() -> bool:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    return world_size > 1 and not torch.accelerator.is_available()


def _sum_over_processes(value: int, accelerator: Accelerator) -> int:
    if accelerator.num_processes == 1:
        return int(value)
    return int(accelerator.reduce(torch.tensor(value, device=accelerator.device), reduction="sum").item())


def _first_epoch(dataset: Any) -> Any:
    """A copy that the loop's `set_epoch` leaves at epoch 0 (RandomWindows' train-loss windows stay the same)."""
    return copy.copy(dataset) if hasattr(dataset, "set_epoch") else dataset


def _torch_format(dataset: Any) -> Any:
    """A datasets.Dataset yields tensors; anything else (a torch Dataset, a list) is used as it is."""
    return dataset.with_format("torch") if hasattr(dataset, "with_format") else dataset


def _flat_scalars(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Trackers (TensorBoard's hparams) accept only scalars: flatten nested dicts, stringify the rest."""
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat |= _flat_scalars(v, f"{prefix}{k}.")
        elif isinstance(v, (int, float, str, bool)):
            flat[f"{prefix}{k}"] = v
        elif v is not None:
            flat[f"{prefix}{k}"] = str(v)
    return flat


# ----------------------------------------------------------------------------------------------------------------
# Command-line flags: every TrainingConfig field is one (gpt_scratch.options generates them)


def add_base_model_arguments(parser: Any, book_gpt2: str) -> None:
    """The fine-tuning workflows' starting point: `--model SOURCE` (`--n-heads` where it does not say) or
    `--from-gpt2 PATH_OR_HUB_ID` (one required)."""
    from gpt_scratch.convert import add_model_source_arguments

    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        metavar="SOURCE",
        help="the model to start from: a gpt_scratch folder (e.g. a `gpt-scratch pretrain` run), a GPT-2 folder or "
        "Hub id, the book's .pth, nanoGPT's ckpt.pt (anything `gpt-scratch convert` reads)",
    )
    source.add_argument(
        "--from-gpt2", metavar="PATH_OR_HUB_ID", help=f"a Hugging Face GPT-2 checkpoint (book: {book_gpt2})"
    )
    add_model_source_arguments(parser)


def add_training_arguments(parser: Any, defaults: TrainingConfig | None = None) -> None:
    """Add a --flag for every TrainingConfig field (--num-epochs, --learning-rate, ...) with `defaults`' values."""
    add_dataclass_arguments(parser, TrainingConfig, defaults or TrainingConfig(), title="training")


def training_config_from_args(args: Any) -> TrainingConfig:
    """The TrainingConfig of parsed flags added by `add_training_arguments`."""
    return dataclass_from_args(TrainingConfig, args)
