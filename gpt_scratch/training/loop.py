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
`metrics.csv` and accelerate's trackers; checkpoints atomically (`checkpointing`: no pickle, a locked
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
import dataclasses
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DataLoaderConfiguration, broadcast_object_list, set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from gpt_scratch.hardware import warn_if_slow_bf16
from gpt_scratch.training.checkpointing import (
    CHECKPOINTS_DIR,
    TRAINER_STATE,
    TrainState,
    claim_run_folder,
    load_checkpoint,
    release_run_folder,
    save_checkpoint,
)
from gpt_scratch.training.config import TrainingConfig
from gpt_scratch.training.loaders import StreamLoader, _loaders, _on_device, _stream_loaders, _torch_format
from gpt_scratch.training.summary import (
    SUMMARY_FILE,
    _flat_scalars,
    _format_record,
    _plot_history,
    _summary,
    _write_metric_logs,
    write_summary,
)
from gpt_scratch.training.tasks import Task

logger = logging.getLogger(__name__)


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
        final |= evaluate(
            model, run.test_loader, task, accelerator, run.config.final_eval_iter, prefix="test_"
        )
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
    if not stacked[0, 1] and prefix not in _EMPTY_WARNED:
        _EMPTY_WARNED.add(prefix)  # once per set and process: the logs write null for these values
        logger.warning(
            "the %s set gave no batch to evaluate: its loss and metrics are not measured (null)",
            prefix.rstrip("_") or "evaluation",
        )
    results = {f"{prefix}loss": (stacked[0, 0] / stacked[0, 1]).item() if stacked[0, 1] else float("nan")}
    for row, name in zip(stacked[1:], names, strict=True):
        results[f"{prefix}{name}"] = (row[0] / row[1]).item() if row[1] else float("nan")
    return results


_EMPTY_WARNED: set[str] = set()


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


def silence_progress_bars(progress_bar: bool) -> None:
    """progress_bar=False (--no-progress-bar): also datasets' bars (tokenizing, loading) and transformers' (saving
    shards), for the rest of the process, as their own `disable_progress_bars()`; True leaves them as they are."""
    if not progress_bar:
        import datasets
        import transformers

        datasets.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()


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
