"""The loop's options: `TrainingConfig` (every knob, one `--flag` each), the book's runs, and the CLI helpers.

Defaults are the book's chapter 5 run; `BOOK_RUNS` holds chapters 5, 6, 7 and appendix D, each written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args, option


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
    final_eval_iter: int | None = option(
        200,
        "batches of each set (train, validation, test) for the final metrics in the summary: the whole sets "
        "when they are smaller, as the book's; 'none': the whole sets however large",
    )
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
