"""Pretraining (chapter 5): a text corpus -> windows -> the shared training loop -> a saved model folder.

With no arguments it is the book's chapter 5 run: `GPT_CONFIG_124M` with a context of 256 tokens, trained on
"The Verdict" for 10 epochs, batch size 2, AdamW (lr 4e-4, weight decay 0.1), evaluated every 5 steps over 5
batches, a 90/10 train/validation split, seed 123, and the sample "Every effort moves you" after each epoch --
from the book's initial weights (`initializer_style="book"`), with its batch order and dropout masks
(`batch_order="book"`): the book's log, line for line.

    gpt-scratch pretrain                                   # the book's run
    gpt-scratch pretrain --book-run appendix-d             # the same with appendix D's warmup, cosine, clipping
    gpt-scratch pretrain 'corpus/*.txt' --preset gpt2-small --context-length 1024 --output-dir runs/mine
    gpt-scratch pretrain 'corpus/*.txt' --model model.pth          # continue from the book's (or nanoGPT's) weights
    gpt-scratch pretrain data/openwebtext --model out/ckpt.pt      # nanoGPT's train.bin / val.bin, read as they are
    gpt-scratch pretrain --dataset HuggingFaceFW/fineweb-edu --dataset-config sample-10BT --streaming --max-tokens 1000000000
    accelerate launch --multi_gpu --num_processes 2 -m gpt_scratch pretrain --output-dir runs/ddp
    torchrun --nproc_per_node 2 -m gpt_scratch pretrain --output-dir runs/ddp

From Python, `pretrain(...)` does the same and returns the loop's `TrainResult`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accelerate.utils import broadcast_object_list, set_seed

from gpt_scratch.configuration_gpt_scratch import PRESETS, GPTScratchConfig
from gpt_scratch.convert import LoadedModel, add_model_source_arguments
from gpt_scratch.data.corpora import file_fingerprint
from gpt_scratch.data.describe import describe_data
from gpt_scratch.data.prepare import (
    DATASET_REVISION_HELP,
    _expand_data_files,
    load_source_dataset,
    resolve_dataset_revision,
)
from gpt_scratch.data.prepared import PreparedCorpus, is_prepared_folder, max_steps_for_tokens
from gpt_scratch.data.pretraining import Source, build_pretraining_datasets
from gpt_scratch.data.streaming import StreamingWindows
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args, option
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import (
    BOOK_RUNS,
    CausalLMTask,
    TrainingConfig,
    TrainResult,
    add_training_arguments,
    format_losses,
    process_state,
    run_folder,
    silence_progress_bars,
    train,
    training_config_from_args,
)

BOOK_PRESET = "GPT_CONFIG_124M"
BOOK_CONTEXT_LENGTH = 256
START_CONTEXT = "Every effort moves you"


@dataclass
class PretrainOptions:
    """How the corpus becomes windows and what is sampled after each epoch; the book's chapter 5 by default.
    Each field is a `gpt-scratch pretrain` flag (the model and the loop have their own: GPTScratchConfig and
    TrainingConfig)."""

    stride: int | None = option(None, "window stride ('none': the context length)")
    train_ratio: float = option(0.9, "train share of the text")
    text_column: str = option("text", "the text column of a datasets.Dataset corpus")
    cache_dir: str | None = option(None, "where to cache the tokenized corpus")
    start_context: str | None = option(START_CONTEXT, "prompt of the sample after each epoch ('': no sample)")
    max_new_tokens: int = option(50, "tokens of that sample")
    sampling: str | None = option(
        None,
        "windows: 'random' offsets (nanoGPT; the default for a prepared folder) or the book's 'sequential' stride windows",
        choices=["random", "sequential"],
    )
    max_tokens: int | None = option(
        None, "stop after this many training tokens (all processes); drives the schedule"
    )
    dataset: str | None = option(
        None, "a datasets source instead of CORPUS: a Hub id, or a local builder (text, json, parquet, csv)"
    )
    dataset_config: str | None = option(None, "the dataset's configuration (e.g. sample-10BT)")
    dataset_revision: str | None = option(None, DATASET_REVISION_HELP)
    data_files: str | None = option(None, "files or a glob for a local builder (--dataset parquet)")
    dataset_split: str = option("train", "the dataset's split to read")
    streaming: bool = option(
        False,
        "stream --dataset (load_dataset streaming=True): tokenized on the fly, needs --max-steps/--max-tokens",
    )
    val_ratio: float = option(
        0.005, "streaming: validation share of whole documents, picked by a hash of their text"
    )


def pretrain(
    corpus: Source | None = "the-verdict",
    training: TrainingConfig | None = None,
    options: PretrainOptions | None = None,
    *,
    model_config: GPTScratchConfig | None = None,
    preset: str | None = None,
    context_length: int | None = None,
    tokenizer: Any = None,
    base_model: str | os.PathLike | None = None,
    n_heads: int | None = None,
    drop_rate: float | None = None,
    resume_optimizer: bool = False,
) -> TrainResult:
    """Pretrain a fresh model (or `base_model`'s) on `corpus` (a corpus name, file(s), folder, glob, a
    datasets.Dataset, or a folder made by `prepare_corpus` or nanoGPT's prepare.py, whose shards are memory-mapped),
    or on `options.dataset` (`load_dataset`; with `options.streaming`, read as a stream: see `streaming_datasets`).

    `sampling`: "sequential" (the book's stride windows, shuffled each epoch) or "random" (nanoGPT's random
    windows; the default for a prepared folder, which alone offers it). `max_tokens` caps the run (and the
    learning-rate schedule) at the optimizer steps that feed that many tokens over all processes.

    The model is `model_config` if given, else `preset`'s (default GPT_CONFIG_124M) with the book's context of
    256 tokens; `context_length` overrides either. `preset` is recorded in the summary. With `base_model` (anything
    `gpt-scratch convert` reads: a folder, a GPT-2 id, the book's .pth, nanoGPT's ckpt.pt; `n_heads` where the
    file does not say) pretraining continues from its weights, at its own configuration and context, and it is the
    run's base model in the summary and the card; `resume_optimizer` starts AdamW from the moments of the book's
    `model_and_optimizer.pth` (its own learning rate and weight decay are `training`'s). `drop_rate` overrides the
    model's dropout.
    Windows are `context_length` tokens with `options.stride` (default: context_length), targets shifted by one.
    """
    training = training or TrainingConfig()
    silence_progress_bars(training.progress_bar)
    options = options or PretrainOptions()
    if options.dataset is not None:  # a Hub id: the commit its revision names now, read and recorded
        options = dataclasses.replace(options, dataset_revision=dataset_commit(options))
    tokenizer = tokenizer or GPTScratchTokenizer()
    model, optimizer_state = None, None
    if base_model is not None:
        loaded = load_base_model(base_model, n_heads, drop_rate, model_config, preset, context_length)
        model, model_config, context_length = loaded.model, loaded.model.config, None
        if resume_optimizer and not loaded.optimizer_state:
            raise ValueError(
                f"{base_model}: no AdamW state to resume (the book's model_and_optimizer.pth holds one)"
            )
        optimizer_state = loaded.optimizer_state if resume_optimizer else None
    elif resume_optimizer:
        raise ValueError(
            "resume_optimizer (--resume-optimizer) needs a base model (--model model_and_optimizer.pth)"
        )
    if model_config is None:
        preset = preset or BOOK_PRESET
        model_config = GPTScratchConfig.from_preset(
            preset, context_length=BOOK_CONTEXT_LENGTH, initializer_style=default_initializer_style(preset)
        )
    if context_length is not None:
        model_config.context_length = context_length
    if drop_rate is not None:
        model_config.drop_rate = drop_rate
    if options.max_tokens is not None:
        tokens_per_step = (
            training.batch_size
            * process_state().num_processes
            * training.gradient_accumulation_steps
            * model_config.context_length
        )
        steps = max_steps_for_tokens(options.max_tokens, tokens_per_step)
        training = dataclasses.replace(training, max_steps=min(steps, training.max_steps or steps))
    sampling = options.sampling
    if options.dataset is not None and corpus not in (None, "the-verdict"):
        raise ValueError(f"give a corpus ({corpus}) or a dataset ({options.dataset}), not both")
    if corpus is None and options.dataset is None and not options.streaming:
        raise ValueError("give a corpus or options.dataset")
    if options.dataset is not None and not options.streaming:
        corpus = load_source_dataset(
            options.dataset, options.dataset_config, _files(options), options.dataset_split,
            revision=options.dataset_revision,
        )  # fmt: skip
    if options.streaming:
        if training.num_epochs != TrainingConfig.num_epochs:
            raise ValueError(
                f"a stream has no epochs (num_epochs={training.num_epochs}, --num-epochs): its length is "
                "--max-steps or --max-tokens"
            )
        splits = streaming_datasets(options, tokenizer, model_config.context_length, training)
    elif isinstance(corpus, (str, os.PathLike)) and is_prepared_folder(corpus):
        prepared = PreparedCorpus(corpus, tokenizer)
        if prepared.meta["tokenizer"]["vocab_size"] > model_config.vocab_size:
            raise ValueError(
                f"{corpus} holds ids of a {prepared.meta['tokenizer']['vocab_size']}-token vocabulary; the model's "
                f"vocab_size is {model_config.vocab_size}"
            )
        sampling = sampling or "random"
        splits = {
            "train": prepared.windows(
                "train", model_config.context_length, sampling, options.stride, seed=training.seed
            )
        }
        validation = prepared.windows("validation", model_config.context_length)
        if len(validation):
            splits["validation"] = validation
        described = prepared.meta["sources"]
    else:
        if sampling not in (None, "sequential"):
            raise ValueError(
                f"sampling={sampling!r} needs a prepared folder (`gpt-scratch prepare`); a raw corpus is "
                "windowed sequentially"
            )
        with process_state().main_process_first():  # the main process tokenizes (and fills any cache) first
            splits = build_pretraining_datasets(
                corpus,
                tokenizer,
                max_length=model_config.context_length,
                stride=options.stride,
                train_ratio=options.train_ratio,
                text_column=options.text_column,
                cache_dir=options.cache_dir,
            )
        described = describe_data(corpus)
    if options.dataset is not None:
        described = [describe_dataset_source(options)]
    set_seed(training.seed)  # the book's torch.manual_seed(123) before the model is made
    model = model or GPTScratchForCausalLM(model_config)
    return train(
        model,
        splits["train"],
        splits.get("validation"),
        training,
        CausalLMTask(start_context=options.start_context, max_new_tokens=options.max_new_tokens),
        tokenizer,
        base_model=None if base_model is None else str(base_model),
        datasets=described,
        optimizer_state=optimizer_state,
        extra_hyperparameters={
            "preset": preset,
            "resume_optimizer": resume_optimizer,
            "context_length": model_config.context_length,
            "stride": options.stride or model_config.context_length,
            "train_ratio": options.train_ratio,
            "sampling": "stream" if options.streaming else sampling or "sequential",
            "train_windows": None if options.streaming else len(splits["train"]),
            "val_windows": (
                None if options.streaming else len(splits["validation"]) if "validation" in splits else 0
            ),
        },
    )


def load_base_model(
    source: str | os.PathLike,
    n_heads: int | None,
    drop_rate: float | None,
    model_config: GPTScratchConfig | None = None,
    preset: str | None = None,
    context_length: int | None = None,
) -> LoadedModel:
    """The causal LM of `source` (`gpt_scratch.convert.load_source`), to continue pretraining; its configuration is
    the source's: another one, or another context, is an error."""
    from gpt_scratch.convert import load_source

    if model_config is not None or preset is not None:
        raise ValueError(
            f"give a base model ({source}) or a model configuration (a preset, a config), not both"
        )
    loaded = load_source(source, n_heads=n_heads, **({} if drop_rate is None else {"drop_rate": drop_rate}))
    model = loaded.model
    if not isinstance(model, GPTScratchForCausalLM):
        raise ValueError(f"{source}: a {type(model).__name__}; pretraining continues a causal language model")
    if context_length not in (None, model.config.context_length):
        raise ValueError(
            f"{source} has a context of {model.config.context_length} tokens; --context-length {context_length} "
            "would change the model (leave it out)"
        )
    model.train()
    return loaded


def streaming_datasets(
    options: PretrainOptions, tokenizer: Any, context_length: int, training: TrainingConfig
) -> dict[str, StreamingWindows]:
    """{"train": ..., "validation": ...} streams of `options.dataset` for this process (its share of the documents).

    Validation holds the documents whose text hashes below `options.val_ratio` (the same ones whatever the number
    of processes); the loop evaluates the first eval_iter batches of it. None is downloaded or tokenized ahead.
    """
    if options.dataset is None:
        raise ValueError(
            "streaming reads a datasets source: give --dataset (a Hub id, or parquet/text/json with --data-files)"
        )
    if training.max_steps is None:
        raise ValueError("a stream has no length: give --max-steps or --max-tokens")
    if options.stride not in (None, context_length):
        raise ValueError(
            f"streaming windows have the stride of the context ({context_length}), not {options.stride}"
        )
    if options.sampling not in (None, "sequential"):
        raise ValueError(f"sampling={options.sampling!r} needs a prepared folder; a stream is read in order")
    if not 0.0 <= options.val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in [0, 1), got {options.val_ratio}")
    state = process_state()

    def windows(split: str) -> StreamingWindows:
        source = load_source_dataset(
            options.dataset, options.dataset_config, _files(options), options.dataset_split, streaming=True,
            revision=options.dataset_revision,
        )  # fmt: skip
        if source.column_names is not None and options.text_column not in source.column_names:
            raise ValueError(
                f"The dataset {options.dataset} has no column '{options.text_column}' (columns: {source.column_names})"
            )
        return StreamingWindows(
            source, tokenizer, context_length, text_column=options.text_column, rank=state.process_index,
            world_size=state.num_processes, split=split, val_ratio=options.val_ratio,
        )  # fmt: skip

    splits = {"train": windows("train")}
    if options.val_ratio:
        splits["validation"] = windows("validation")
    return splits


def dataset_commit(options: PretrainOptions) -> str | None:
    """The commit every process reads `options.dataset` at (see `resolve_dataset_revision`): each process asks, and
    the main process's answer is the one taken, so a branch that moves between two questions cannot split them."""
    commit = [resolve_dataset_revision(options.dataset, options.dataset_revision)]
    if process_state().num_processes > 1:
        broadcast_object_list(commit, from_process=0)
    return commit[0]


def describe_dataset_source(options: PretrainOptions) -> dict[str, Any]:
    name = (
        options.dataset if options.dataset_config is None else f"{options.dataset} ({options.dataset_config})"
    )
    return {
        "name": name,
        "dataset": options.dataset,
        "config": options.dataset_config,
        # a Hub id's commit (a resume reads it again, or is refused when the branch moved); local files by content:
        **({"revision": options.dataset_revision} if options.dataset_revision else {}),
        "split": options.dataset_split,
        "data_files": _files(options),
        # local files by size and content: a resumed run refuses files that changed under it
        "files": [file_fingerprint(f) for f in _expand_data_files(_files(options)) or []],
        "streaming": options.streaming,
        "val_ratio": options.val_ratio if options.streaming else None,
    }


def _files(options: PretrainOptions) -> list[str] | None:
    return [options.data_files] if options.data_files else None


def default_initializer_style(preset: str) -> str:
    """The book's run initialises as the book (PyTorch's defaults); GPT-2's sizes as GPT-2."""
    return "book" if preset == BOOK_PRESET else "gpt2"


# ----------------------------------------------------------------------------------------------------------------
# The `gpt-scratch pretrain` verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "corpus",
        nargs="*",
        default=["the-verdict"],
        help="corpus name (the-verdict), text file(s), folder of *.txt, glob, a folder made by "
        "`gpt-scratch prepare`, or nanoGPT's data folder (train.bin, val.bin) (default: the-verdict)",
    )
    model = parser.add_argument_group("model")
    source = model.add_mutually_exclusive_group()
    source.add_argument(
        "--preset", default=BOOK_PRESET, choices=list(PRESETS), help=f"model size (default: {BOOK_PRESET})"
    )
    source.add_argument("--config", help="model configuration: a JSON file or a folder with config.json")
    source.add_argument(
        "--model",
        metavar="SOURCE",
        help="continue pretraining from these weights: a gpt_scratch or GPT-2 folder, a Hub id, the book's .pth, "
        "nanoGPT's ckpt.pt (anything `gpt-scratch convert` reads)",
    )
    add_model_source_arguments(model)
    model.add_argument(
        "--resume-optimizer",
        action="store_true",
        help="with --model model_and_optimizer.pth: start AdamW from the book's moments (the learning rate and "
        "weight decay are the flags')",
    )
    model.add_argument(
        "--context-length",
        type=int,
        default=None,
        help=f"context length (default: {BOOK_CONTEXT_LENGTH} with a preset, the config's own with --config)",
    )
    model.add_argument(
        "--drop-rate", type=float, default=None, help="dropout rate (default: the preset's, 0.1)"
    )
    model.add_argument(
        "--initializer-style",
        choices=["book", "gpt2"],
        default=None,
        help=f"weight initialisation: 'book' (PyTorch's defaults in the book's order: the book's weights under its "
        f"seed) or 'gpt2' (default: book with {BOOK_PRESET}, gpt2 with GPT-2's presets, the config's own with --config)",
    )
    add_dataclass_arguments(parser, PretrainOptions, title="data and sample")
    parser.add_argument(
        "--book-run",
        choices=PRETRAINING_RUNS,
        default="chapter-5",
        help="the book's run whose training settings are the defaults: 'chapter-5' (10 epochs, lr 4e-4) or "
        "'appendix-d' (15 epochs, 20%% linear warmup from 1e-5 to 1e-3, cosine decay to 1e-5, gradient clipping "
        "1.0 after the warmup, eval over 1 batch); the flags below win (default: chapter-5)",
    )
    add_training_arguments(parser, TrainingConfig(output_dir=None))


PRETRAINING_RUNS = ["chapter-5", "appendix-d"]


def book_run_training(name: str, flags: TrainingConfig) -> TrainingConfig:
    """BOOK_RUNS[name], with every setting the flags changed from chapter 5's default taken from the flags."""
    chapter_5 = TrainingConfig()
    changed = {
        f.name: getattr(flags, f.name)
        for f in dataclasses.fields(TrainingConfig)
        if getattr(flags, f.name) != getattr(chapter_5, f.name)
    }
    return dataclasses.replace(BOOK_RUNS[name], **changed)


def run(args: argparse.Namespace) -> int:
    args.output_dir = run_folder(args.output_dir, args.resume, "pretrain")
    training = book_run_training(args.book_run, training_config_from_args(args))
    if args.model:
        model_config, context_length = None, args.context_length
    elif args.config:
        path = Path(args.config)
        model_config = (
            GPTScratchConfig.from_pretrained(path)
            if path.is_dir()
            else GPTScratchConfig(**json.loads(path.read_text()))
        )
        context_length = args.context_length
    else:
        model_config = GPTScratchConfig.from_preset(
            args.preset, initializer_style=default_initializer_style(args.preset)
        )
        context_length = args.context_length or BOOK_CONTEXT_LENGTH
    if args.initializer_style is not None and model_config is not None:
        model_config.initializer_style = args.initializer_style
    corpus = args.corpus[0] if len(args.corpus) == 1 else args.corpus
    result = pretrain(
        corpus,
        training,
        dataclass_from_args(PretrainOptions, args),
        model_config=model_config,
        preset=None if args.config or args.model else args.preset,
        context_length=context_length,
        base_model=args.model,
        n_heads=args.n_heads,
        drop_rate=args.drop_rate,
        resume_optimizer=args.resume_optimizer,
    )
    if process_state().is_main_process:
        m = result.summary["metrics"]
        print(
            f"Done: {format_losses(m)}, "
            f"{result.summary['tokens_seen']:,} tokens seen, {result.summary['wall_time_s']:.1f} s. Saved to {result.output_dir}"
        )
    return 0
