"""Classification fine-tuning (chapter 6): a pretrained causal LM -> a spam (or any label) classifier.

The book's recipe: the output head over the vocabulary is replaced by a `num_labels` head read at the last
token, every weight is frozen but the last transformer block, the final layer norm and the new head, and the
model is trained with AdamW (lr 5e-5, weight decay 0.1) for 5 epochs in batches of 8, evaluated every 50 steps
over 5 batches. Dropout is 0.0, as the book's BASE_CONFIG. At the end train/validation/test accuracy, and
precision/recall/F1 of the positive class, are computed with `evaluate` and added to the run's summary.

    gpt-scratch finetune-classifier --model runs/pretrain                  # the spam set, the book's settings
    gpt-scratch finetune-classifier --from-gpt2 openai-community/gpt2 --output-dir runs/spam
    gpt-scratch finetune-classifier reviews.csv --text-column review --label-column sentiment --no-balance \\
        --model runs/pretrain --trainable all
    gpt-scratch finetune-classifier --model runs/pretrain --lora-rank 16 --lora-alpha 16   # appendix E
    accelerate launch -m gpt_scratch finetune-classifier --model runs/pretrain

The output folder loads with `AutoModelForSequenceClassification` and `pipeline("text-classification", ...)`;
a LoRA run saves the merged model there and the PEFT adapter in `adapter/`. From Python, `finetune_classifier`
does the same and returns the loop's `TrainResult`; `classify(text, model, tokenizer)` is the book's
`classify_review`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from datasets import Dataset

from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
from gpt_scratch.convert import is_gpt_scratch_folder, load_source
from gpt_scratch.data.classification import ClassificationData, encode_texts, prepare_classification_data
from gpt_scratch.data.describe import describe_data
from gpt_scratch.generation.inference import from_pretrained_checked
from gpt_scratch.metrics.classification import classification_metrics
from gpt_scratch.modeling_gpt_scratch import GPTScratchForSequenceClassification
from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args, option
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import (
    BOOK_RUNS,
    ClassificationTask,
    TrainingConfig,
    TrainResult,
    add_base_model_arguments,
    add_training_arguments,
    process_state,
    run_folder,
    silence_progress_bars,
    train,
    training_config_from_args,
    update_summary,
)

logger = logging.getLogger(__name__)

TRAINABLE = ("head", "last-block", "all")
BOOK_DROP_RATE = 0.0  # chapter 6 fine-tunes GPT-2 without dropout


def book_training_config(**overrides: Any) -> TrainingConfig:
    """Chapter 6's run: AdamW lr 5e-5, weight decay 0.1, 5 epochs, batch 8, eval every 50 steps over 5 batches."""
    return dataclasses.replace(BOOK_RUNS["chapter-6"], **overrides)


# ----------------------------------------------------------------------------------------------------------------
# The model


def load_classifier(
    source: str | os.PathLike,
    label2id: dict[str, int],
    *,
    from_gpt2: bool = False,
    drop_rate: float | None = BOOK_DROP_RATE,
    n_heads: int | None = None,
) -> GPTScratchForSequenceClassification:
    """A classifier with a new `len(label2id)`-way head on the backbone of `source`.

    `source` is a saved gpt_scratch folder (causal LM or classifier), or anything else `gpt-scratch convert` reads
    (`gpt_scratch.convert.load_source`: a GPT-2 folder or Hub id, the book's .pth, nanoGPT's ckpt.pt; `n_heads`
    where it does not say). The head is freshly initialised (seed it with `set_seed` first). `drop_rate=None`
    keeps the model's own dropout.
    """
    id2label = {i: label for label, i in label2id.items()}
    if sorted(id2label) != list(range(len(id2label))):
        raise ValueError(f"label ids must be 0..{len(id2label) - 1}, got {label2id}")
    labels = dict(id2label=id2label, label2id=dict(label2id))  # num_labels follows id2label
    overrides = {} if drop_rate is None else {"drop_rate": drop_rate}
    if from_gpt2 or not is_gpt_scratch_folder(source):
        lm = load_source(source, n_heads=n_heads).model  # a GPT-2 checkpoint, the book's or nanoGPT's weights
        config = GPTScratchConfig.from_dict({**lm.config.to_dict(), **labels, **overrides})
        model = GPTScratchForSequenceClassification(config)
        model.model.load_state_dict(lm.model.state_dict(), strict=True)  # the backbone; `score` stays new
        return model
    # The causal LM's out_head goes unused and `score` is new (a classifier with other labels gets a new one
    # too); any other difference between config.json and the weights is refused, never trained from random.
    return from_pretrained_checked(
        GPTScratchForSequenceClassification,
        source,
        new_tensors=["score."],
        unused_tensors=["out_head."],
        **labels,
        **overrides,
    )


def set_trainable(model: GPTScratchForSequenceClassification, trainable: str = "last-block") -> int:
    """Freeze the model but the parts `trainable` names; returns the number of trainable parameters.

    head: the new output head only; last-block (the book): the last transformer block, the final norm and the
    head; all: every parameter.
    """
    if trainable not in TRAINABLE:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, got {trainable!r}")
    model.requires_grad_(trainable == "all")
    parts = [model.score]
    if trainable == "last-block":
        parts += [model.model.trf_blocks[-1], model.model.final_norm]
    for part in parts:
        part.requires_grad_(True)
    return count_trainable(model)


def count_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------------------
# Prediction and metrics


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, batch_size: int = 8) -> list[int]:
    """Class ids predicted for every row of a dataset of {input_ids, attention_mask}."""
    model.eval()
    device = next(model.parameters()).device
    rows = dataset.with_format("torch", columns=["input_ids", "attention_mask"])
    predictions = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        logits = model(
            input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)
        ).logits
        predictions += logits.argmax(dim=-1).tolist()
    return predictions


def evaluate_classifier(
    model: torch.nn.Module, dataset: Dataset, batch_size: int = 8, positive_label: int = 1
) -> dict[str, Any]:
    """Accuracy, and precision / recall / F1 of `positive_label` (two classes) or their macro averages and
    per-class lists (more classes: `model.config.num_labels`), with the package's `evaluate` metric."""
    num_labels = getattr(model.config, "num_labels", 2)
    return classification_metrics(
        predict(model, dataset, batch_size), dataset["labels"], positive_label, num_labels
    )


@torch.no_grad()
def classify(text: str, model: torch.nn.Module, tokenizer: Any, max_length: int | None = None) -> str:
    """The label name of `text` (the book's `classify_review`): its tokens, cut to `max_length` and the model's
    context length, read at the last token."""
    model.eval()
    context_length = model.config.context_length
    limit = context_length if max_length is None else min(max_length, context_length)
    input_ids = encode_texts(tokenizer, [text])[0][:limit]
    if not input_ids:
        raise ValueError("classify: the text has no tokens")
    device = next(model.parameters()).device
    logits = model(input_ids=torch.tensor([input_ids], device=device)).logits  # (1, num_labels)
    return model.config.id2label[int(logits.argmax(-1))]


# ----------------------------------------------------------------------------------------------------------------
# The workflow


@dataclass
class ClassifyOptions:
    """What to train and on which columns and labels; the book's chapter 6 by default. Each field is a
    `gpt-scratch finetune-classifier` flag (the loop's are TrainingConfig's)."""

    trainable: str = option(
        "last-block",
        "what to train: the new head, the book's last block + final norm + head, or all",
        choices=list(TRAINABLE),
    )
    drop_rate: float | None = option(BOOK_DROP_RATE, "dropout, the book's 0.0 ('none': the model's own)")
    lora_rank: int | None = option(None, "train LoRA adapters of this rank instead (appendix E: 16)")
    lora_alpha: float | None = option(None, "LoRA alpha ('none': the rank)")
    text_column: str | None = option(None, "text column ('none': Text for sms-spam, else text)")
    label_column: str | None = option(None, "label column ('none': Label for sms-spam, else label)")
    labels: str | None = option(None, "comma-separated label names in id order ('none': ham,spam or sorted)")
    balance: bool | None = option(None, "undersample to equal classes (unset: on for sms-spam only)")
    max_length: int | None = option(None, "pad/cut to this many tokens ('none': the longest training text)")
    drop_invalid: bool = option(False, "drop rows with an empty text or unknown label")
    dedupe: bool = option(
        False, "remove exact duplicate rows (text and label) before the split (the book keeps them)"
    )
    positive_label: str | None = option(
        None,
        "with two classes, the class for precision/recall/F1 ('none': id 1); more classes: macro and per class",
    )

    @property
    def label2id(self) -> dict[str, int] | None:
        return {name.strip(): i for i, name in enumerate(self.labels.split(","))} if self.labels else None


def finetune_classifier(
    base_model: str | os.PathLike,
    data: str | os.PathLike | Dataset = "sms-spam",
    training: TrainingConfig | None = None,
    options: ClassifyOptions | None = None,
    *,
    from_gpt2: bool = False,
    tokenizer: Any = None,
    n_heads: int | None = None,
) -> TrainResult:
    """Fine-tune a classifier from `base_model` on `data` with the shared loop; see the module docstring.

    `data` and `options`' data fields go to `prepare_classification_data` (split seeded with `training.seed`).
    `options.lora_rank` trains LoRA adapters (`gpt_scratch.workflows.lora`) instead of the `trainable` parts;
    `options.positive_label` (default: id 1) is the class whose precision / recall / F1 are reported.
    """
    training = training or book_training_config()
    silence_progress_bars(training.progress_bar)
    options = options or ClassifyOptions()
    trainable, lora_rank, lora_alpha, balance = (
        options.trainable,
        options.lora_rank,
        options.lora_alpha,
        options.balance,
    )
    tokenizer = tokenizer or GPTScratchTokenizer()
    prepared = prepare_classification_data(
        data,
        text_column=options.text_column,
        label_column=options.label_column,
        label2id=options.label2id,
        balance=balance,
        seed=training.seed,
        max_length=options.max_length,
        tokenizer=tokenizer,
        drop_invalid=options.drop_invalid,
        dedupe=options.dedupe,
    )
    if prepared.num_dropped:
        print(f"Dropped {prepared.num_dropped} invalid rows of {data}")
    positive_id = _positive_id(options.positive_label, prepared.label2id)

    set_seed(training.seed)  # the book's torch.manual_seed(123) before the new head is made
    model = load_classifier(
        base_model, prepared.label2id, from_gpt2=from_gpt2, drop_rate=options.drop_rate, n_heads=n_heads
    )
    context_length = model.config.context_length
    if options.max_length is not None and options.max_length > context_length:
        raise ValueError(
            f"max_length (--max-length) is {options.max_length}, more than the model's context_length of "
            f"{context_length} ({base_model}); pass at most {context_length}"
        )
    if prepared.max_length > context_length:
        raise ValueError(
            f"{data}: examples are padded to {prepared.max_length} tokens (the longest training text), more than "
            f"the model's context_length of {context_length}; pass max_length={context_length} (--max-length) "
            "to cut them"
        )
    tokenizer.model_max_length = (
        model.config.context_length
    )  # lets pipeline(..., truncation=True) cut long texts
    if lora_rank:
        from gpt_scratch.workflows.lora import add_lora

        model = add_lora(model, lora_rank, lora_alpha)  # the loop saves the base config beside the adapter
    else:
        set_trainable(model, trainable)
    num_trainable = count_trainable(model)
    print(
        f"Trainable parameters: {num_trainable:,} of {sum(p.numel() for p in model.parameters()):,} "
        f"({'LoRA rank ' + str(lora_rank) if lora_rank else trainable})"
    )

    result = train(
        model,
        prepared.dataset["train"],
        prepared.dataset["validation"],
        training,
        ClassificationTask(),
        tokenizer,
        test_dataset=prepared.dataset["test"],
        base_model=str(base_model),
        datasets=describe_data(data),
        extra_hyperparameters={
            "trainable": "lora" if lora_rank else trainable,
            "lora_rank": lora_rank,
            "lora_alpha": (lora_alpha or lora_rank) if lora_rank else None,
            "trainable_parameters": num_trainable,
            "drop_rate": model.config.drop_rate,
            "max_length": prepared.max_length,
            "balance": balance if balance is not None else str(data) == "sms-spam",
            "dedupe": options.dedupe,
            "positive_label": prepared.id2label[positive_id] if len(prepared.label2id) == 2 else None,
            "split_sizes": {split: len(rows) for split, rows in prepared.dataset.items()},
        },
    )
    if not process_state().is_main_process:
        return result
    if lora_rank:
        result.model = _save_lora_run(result.model, result.output_dir)
    metrics = final_metrics(
        result.model, prepared, training.eval_batch_size or training.batch_size, positive_id,
        training.final_eval_iter,
    )  # fmt: skip
    result.summary = update_summary(result.output_dir, metrics)
    for split, name in (("train", "Training"), ("val", "Validation"), ("test", "Test")):
        print(f"{name} accuracy: {metrics[f'{split}_accuracy'] * 100:.2f}%")
    return result


def final_metrics(
    model: torch.nn.Module,
    prepared: ClassificationData,
    batch_size: int = 8,
    positive_label: int = 1,
    max_batches: int | None = None,
) -> dict[str, float]:
    """{train,val,test}_accuracy over the splits (the first `max_batches` batches of each; None: the whole splits,
    as the book's calc_accuracy_loader), and with two classes {split}_{precision,recall,f1} of `positive_label`;
    with more, {split}_{precision,recall,f1}_macro and per class {split}_{metric}[label name]."""
    metrics = {}
    for split, prefix in (("train", "train"), ("validation", "val"), ("test", "test")):
        data = prepared.dataset[split]
        if max_batches is not None and len(data) > max_batches * batch_size:
            data = data.select(range(max_batches * batch_size))
        result = evaluate_classifier(model, data, batch_size, positive_label)
        for name, value in result.items():
            if name.endswith("_per_class"):
                metric = name.removesuffix("_per_class")
                metrics |= {f"{prefix}_{metric}[{prepared.id2label[i]}]": v for i, v in enumerate(value)}
            elif name != "num_examples":
                metrics[f"{prefix}_{name}"] = value
    return metrics


def _positive_id(positive_label: str | int | None, label2id: dict[str, int]) -> int:
    if positive_label is not None and len(label2id) > 2:
        logger.warning(
            "positive_label %r is not used with %d classes: precision, recall and F1 are reported for every "
            "class and as macro averages",
            positive_label,
            len(label2id),
        )
    if positive_label is None:
        return 1 if len(label2id) > 1 else 0
    if str(positive_label) in label2id:
        return label2id[str(positive_label)]
    if isinstance(positive_label, int) and positive_label in label2id.values():
        return positive_label
    raise ValueError(f"positive label {positive_label!r} is not one of the labels {sorted(label2id)}")


def _save_lora_run(model: Any, output_dir: Path) -> torch.nn.Module:
    """Move the adapter the loop saved into output_dir/adapter, and save the merged model in output_dir."""
    from gpt_scratch.workflows.lora import merge_lora

    adapter_dir = output_dir / "adapter"
    model.save_pretrained(adapter_dir)
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        (output_dir / name).unlink(missing_ok=True)
    merged = merge_lora(model)
    merged.save_pretrained(output_dir)
    print(f"LoRA adapter saved to {adapter_dir}, merged model to {output_dir}")
    return merged


# ----------------------------------------------------------------------------------------------------------------
# The `gpt-scratch finetune-classifier` verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        nargs="?",
        default="sms-spam",
        help="sms-spam, or a .csv / .tsv / .json / .jsonl file with a text and a label column (default: sms-spam)",
    )
    add_base_model_arguments(parser.add_argument_group("model"), book_gpt2="openai-community/gpt2")
    add_dataclass_arguments(parser, ClassifyOptions, title="model and data")
    add_training_arguments(parser, book_training_config(output_dir=None))


def run(args: argparse.Namespace) -> int:
    args.output_dir = run_folder(args.output_dir, args.resume, "classifier")
    result = finetune_classifier(
        args.from_gpt2 or args.model,
        args.data,
        training_config_from_args(args),
        dataclass_from_args(ClassifyOptions, args),
        from_gpt2=args.from_gpt2 is not None,
        n_heads=args.n_heads,
    )
    if process_state().is_main_process:
        m = result.summary["metrics"]
        macro = "" if "test_f1" in m else "_macro"  # more than two classes: the macro averages
        print(
            f"Done: test accuracy {m['test_accuracy'] * 100:.2f}%, precision{macro} {m[f'test_precision{macro}']:.3f}, "
            f"recall{macro} {m[f'test_recall{macro}']:.3f}, F1{macro} {m[f'test_f1{macro}']:.3f}, "
            f"{result.summary['wall_time_s']:.1f} s. Saved to {result.output_dir}"
        )
    return 0


def parameter_counts(config: GPTScratchConfig, lora_rank: int = 16, lora_alpha: float = 16) -> dict[str, int]:
    """Trainable parameters of a classifier of `config` for each `--trainable` choice and LoRA (meta device)."""
    from gpt_scratch.workflows.lora import add_lora

    counts = {}
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = GPTScratchForSequenceClassification(config)
        counts["total"] = sum(p.numel() for p in model.parameters())
        for choice in TRAINABLE:
            counts[choice] = set_trainable(model, choice)
        counts["lora"] = count_trainable(add_lora(model, lora_rank, lora_alpha))
    return counts


__all__ = [
    "TRAINABLE",
    "ClassifyOptions",
    "book_training_config",
    "load_classifier",
    "set_trainable",
    "count_trainable",
    "predict",
    "evaluate_classifier",
    "classify",
    "finetune_classifier",
    "final_metrics",
    "describe_data",
    "parameter_counts",
    "add_arguments",
    "run",
]
