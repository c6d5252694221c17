"""Instruction fine-tuning (chapter 7): a pretrained causal LM + Alpaca records -> the shared loop -> answers.

With only a model it is the book's run: the 1,100 records of `alpaca-book` split 85/5/10, the book's collate
function (allowed_max_length 1024, prompt not masked), AdamW lr 5e-5, weight decay 0.1, 2 epochs, batch size 8,
evaluated every 5 steps over 5 batches, dropout off. After training it answers every test record (greedy, stopping
at end-of-text, up to 256 new tokens), saves them as `instruction-data-with-response.json`, measures the test
perplexity and, given a judge URL, has an LLM score each answer from 0 to 100:

    gpt-scratch finetune-instructions --model runs/pretrain --output-dir runs/instruct
    gpt-scratch finetune-instructions --from-gpt2 openai-community/gpt2-medium --judge-url http://localhost:11434
    gpt-scratch finetune-instructions my_records.jsonl --model runs/pretrain --judge-url http://localhost:8000/v1 \\
        --judge-api openai --judge-model qwen2.5
    accelerate launch -m gpt_scratch finetune-instructions --model runs/pretrain --output-dir runs/instruct
    gpt-scratch chat runs/instruct --instruction "Rewrite the sentence using a simile." --input "The car is fast."

From Python, `finetune_instructions(...)` does the same; `generate_responses`, `perplexity`, `evaluate_with_judge`
and `chat` are the pieces, usable on any saved model.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from accelerate.utils import gather_object, set_seed
from torch.utils.data import DataLoader

from gpt_scratch.data.describe import describe_data
from gpt_scratch.data.instructions import (
    count_cut_responses,
    custom_collate_fn,
    extract_response,
    fit_prompt,
    format_input,
    load_instruction_data,
    save_responses,
    split_instruction_data,
    tokenize_instruction_data,
)
from gpt_scratch.generation.inference import generate_batch, load_model
from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args, option
from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE, ENDOFTEXT_ID
from gpt_scratch.training import (
    BOOK_RUNS,
    CausalLMTask,
    TrainingConfig,
    TrainResult,
    add_base_model_arguments,
    add_training_arguments,
    format_losses,
    process_state,
    run_folder,
    silence_progress_bars,
    train,
    training_config_from_args,
    update_summary,
)
from gpt_scratch.workflows.judge import JudgeClient, JudgeResult, generate_model_scores

logger = logging.getLogger(__name__)

RESPONSES_FILE = "instruction-data-with-response.json"
BOOK_TRAINING = BOOK_RUNS["chapter-7"]  # the book's chapter 7 run


@dataclass
class InstructionResult:
    """What `finetune_instructions` returns: the loop's result, the answered test records and the evaluation."""

    train: TrainResult
    responses: list[dict[str, str]]  # test records + "model_response"
    responses_path: Path | None
    perplexity: float
    judge: JudgeResult | None

    @property
    def model(self) -> torch.nn.Module:
        return self.train.model


# ----------------------------------------------------------------------------------------------------------------
# The model


def set_drop_rate(model: torch.nn.Module, drop_rate: float) -> None:
    """Set every dropout of an already built model (and its config) to `drop_rate`."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = drop_rate
    if hasattr(model, "config"):
        model.config.drop_rate = drop_rate


def _context_length(model: Any) -> int:
    config = model.config
    return int(getattr(config, "context_length", None) or config.max_position_embeddings)


# ----------------------------------------------------------------------------------------------------------------
# Answers: greedy decoding through model.generate, a batch at a time


@torch.no_grad()
def generate_responses(
    model: Any,
    tokenizer: Any,
    records: Sequence[dict[str, str]],
    max_new_tokens: int = 256,
    batch_size: int = 8,
    eos_token_id: int = ENDOFTEXT_ID,
    progress: bool = False,
) -> list[str]:
    """The model's answer to each record: greedy decoding after `format_input(record)`, as the book's chapter 7.

    Each answer stops at end-of-text, after `max_new_tokens`, or when the model's context is full, and is the
    text after `### Response:`. Prompts are decoded in batches with left padding (`generate_batch`), each answer
    equal to decoding its record alone. A prompt longer than the context keeps its template: its instruction and
    input are cut from the left (`fit_prompt`), with a warning.
    """
    model.eval()
    context_length = _context_length(model)
    prompt_ids = [_fit(record, tokenizer, context_length - 1) for record in records]
    budgets = [min(max_new_tokens, context_length - len(ids)) for ids in prompt_ids]
    answers = generate_batch(
        model, prompt_ids, budgets, eos_token_id, batch_size, "Answering the test set" if progress else None
    )
    responses = []
    for ids, answer in zip(prompt_ids, answers, strict=True):
        prompt = tokenizer.decode(ids)
        text = prompt + tokenizer.decode([t for t in answer if t != eos_token_id], skip_special_tokens=False)
        responses.append(extract_response(text, prompt))
    return responses


def _fit(record: dict[str, str], tokenizer: Any, max_tokens: int, render: Any = format_input) -> list[int]:
    """`fit_prompt`, warning when the instruction or input had to be cut."""
    ids, cut = fit_prompt(record, tokenizer, max_tokens, render)
    if cut:
        logger.warning(
            "The prompt of %r is %d tokens, more than the %d that fit the model's context: cut %d tokens from the "
            "start of its input and instruction, keeping the template",
            record["instruction"][:40],
            len(ids) + cut,
            max_tokens,
            cut,
        )
    return ids


# ----------------------------------------------------------------------------------------------------------------
# Perplexity and the judge


@torch.no_grad()
def perplexity(
    model: Any,
    data: Any,
    batch_size: int = 8,
    allowed_max_length: int | None = None,
    mask_prompt: bool = False,
) -> float:
    """exp(mean cross-entropy per target token) over `data`, the targets of training (end-of-text included).

    `data`: a DataLoader of {input_ids, target_ids} batches, or a tokenized split (`tokenize_instruction_data`)
    / lists of token ids, batched here with `custom_collate_fn` (truncated to the model's context at most).
    """
    model.eval()
    device = next(model.parameters()).device
    if isinstance(data, DataLoader):
        loader = data
    else:
        if hasattr(data, "column_names"):
            columns = [c for c in ("input_ids", "prompt_length") if c in data.column_names]
            data = list(data.select_columns(columns))
        limit = min(allowed_max_length or _context_length(model), _context_length(model))
        collate = partial(custom_collate_fn, allowed_max_length=limit, mask_prompt=mask_prompt)
        loader = DataLoader(list(data), batch_size=batch_size, shuffle=False, collate_fn=collate)
    total_loss, total_tokens = 0.0, 0
    for batch in loader:
        targets = batch["target_ids"].to(device)
        logits = model(input_ids=batch["input_ids"].to(device)).logits  # (B, T, vocab)
        total_loss += F.cross_entropy(
            logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum"
        ).item()
        total_tokens += int((targets != -100).sum())
    if total_tokens == 0:
        raise ValueError("perplexity: the data has no target tokens")
    return math.exp(total_loss / total_tokens)


def evaluate_with_judge(
    entries: Sequence[dict[str, str]],
    judge: JudgeClient | Callable[[str], str] | None = None,
    *,
    url: str = "http://localhost:11434",
    model: str = "llama3",
    api: str = "ollama",
    response_key: str = "model_response",
) -> JudgeResult:
    """The book's LLM judge over records with a model response: a score 0-100 for each (None when unscored).

    `judge`: a `JudgeClient` or a function prompt -> answer; else a client for `url`, `model`, `api`. Never
    raises for judge problems (unreachable, no number): those records are counted unscored with the reason.
    """
    judge = judge if judge is not None else JudgeClient(url, model=model, api=api)
    return generate_model_scores(entries, judge, response_key=response_key)


# ----------------------------------------------------------------------------------------------------------------
# The workflow


@dataclass
class InstructOptions:
    """The records, their split and batching, the test answers and the judge; the book's chapter 7 by default.
    Each field is a `gpt-scratch finetune-instructions` flag (the loop's are TrainingConfig's)."""

    drop_rate: float | None = option(
        0.0, "dropout while fine-tuning, the book's 0.0 ('none': the model's own)"
    )
    instruction_column: str = option("instruction", "column of the instruction")
    input_column: str = option("input", "column of the input")
    output_column: str = option("output", "column of the output")
    shuffle_split: bool = option(
        True, "shuffle the records (seeded with --seed) before the 85/5/10 split; off: the file's order"
    )
    allowed_max_length: int | None = option(1024, "cut training inputs to this many tokens")
    mask_prompt: bool = option(False, "no loss on the prompt tokens (the book: off)")
    cache_dir: str | None = option(None, "where to cache the tokenized records")
    max_new_tokens: int = option(256, "tokens per test answer")
    generation_batch_size: int = option(8, "test prompts decoded together")
    max_test_responses: int | None = option(None, "answer only the first N test records ('none': all)")
    judge_url: str | None = option(None, "score the answers with an LLM judge at this URL")
    judge_model: str = option("llama3", "the judge model")
    judge_api: str = option(
        "ollama", "ollama: /api/chat; openai: /v1/chat/completions", choices=["ollama", "openai"]
    )
    judge_timeout: float = option(120.0, "seconds for each judge answer in all, a deadline")

    def judge(self) -> JudgeClient | None:
        """The judge the options name, or None without a judge_url."""
        if self.judge_url is None:
            return None
        return JudgeClient(
            self.judge_url, model=self.judge_model, api=self.judge_api, timeout=self.judge_timeout
        )


def finetune_instructions(
    model: str | os.PathLike | torch.nn.Module,
    data: Any = "alpaca-book",
    training: TrainingConfig | None = None,
    options: InstructOptions | None = None,
    *,
    tokenizer: Any = None,
    from_gpt2: bool = False,
    judge: JudgeClient | Callable[[str], str] | None = None,
    n_heads: int | None = None,
) -> InstructionResult:
    """Fine-tune `model` (a saved folder, a GPT-2 checkpoint with `from_gpt2`, anything `gpt-scratch convert` reads
    with `n_heads` where it does not say, or a model) on instruction `data`.

    `data`: `alpaca-book`, a .json/.jsonl file or a Dataset (with `options.*_column` as its columns). The split is
    shuffled with `training.seed` (`options.shuffle_split=False`: the book's order). Inputs are cut to
    `options.allowed_max_length` and the model's context. After training, the main process writes
    `instruction-data-with-response.json` for the test split (its first `max_test_responses` records when given),
    and `training_summary.json` gets `test_perplexity` and, with a judge (`judge`, else `options.judge()`), the
    scores.
    """
    training = training or BOOK_TRAINING
    silence_progress_bars(training.progress_bar)
    options = options or InstructOptions()
    judge = judge if judge is not None else options.judge()
    drop_rate, allowed_max_length, mask_prompt = (
        options.drop_rate,
        options.allowed_max_length,
        options.mask_prompt,
    )
    split_seed = training.seed if options.shuffle_split else None
    columns = {f"{f}_column": getattr(options, f"{f}_column") for f in ("instruction", "input", "output")}
    records = load_instruction_data(data, **columns)  # bad data fails before the model loads
    splits = split_instruction_data(records, seed=split_seed)
    if not splits["train"]:
        source = data if isinstance(data, (str, os.PathLike)) else "<dataset>"
        raise ValueError(
            f"{source}: {len(records)} record(s), too few: the 85/10/5 train/test/validation split needs at least "
            "2 for one training record"
        )
    if isinstance(model, (str, os.PathLike)):
        base_model = str(model)
        model, loaded_tokenizer = load_model(model, from_gpt2=from_gpt2, drop_rate=drop_rate, n_heads=n_heads)
        tokenizer = tokenizer or loaded_tokenizer
    else:
        base_model = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        if drop_rate is not None:
            set_drop_rate(model, drop_rate)
    if tokenizer is None:
        from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

        tokenizer = GPTScratchTokenizer()
    max_length = min(allowed_max_length or _context_length(model), _context_length(model))
    tokenizer.chat_template = (
        ALPACA_CHAT_TEMPLATE  # saved with the model: apply_chat_template, chat pipelines
    )

    state = process_state()
    with state.main_process_first():  # the main process tokenizes (and fills any cache) first
        tokenized = tokenize_instruction_data(splits, tokenizer, options.cache_dir)
    tokenized = tokenized.select_columns(["input_ids", "prompt_length"])
    if num_cut := count_cut_responses(tokenized["train"], max_length):
        logger.warning(
            "%d of %d training records have a prompt of %d tokens or more, all that is kept of each text "
            "(allowed_max_length and the context): nothing of their responses is trained on",
            num_cut,
            len(tokenized["train"]),
            max_length,
        )
    collate = partial(custom_collate_fn, allowed_max_length=max_length, mask_prompt=mask_prompt)

    set_seed(training.seed)
    first_validation = (splits["validation"] or splits["train"])[0]
    result = train(
        model,
        tokenized["train"],
        tokenized["validation"] if len(tokenized["validation"]) else None,
        training,
        CausalLMTask(start_context=format_input(first_validation), name="instruction"),
        tokenizer,
        test_dataset=tokenized["test"] if len(tokenized["test"]) else None,
        collate_fn=collate,
        base_model=base_model,
        datasets=describe_data(data),
        extra_hyperparameters={
            "split_seed": split_seed,
            "split_sizes": {name: len(split) for name, split in splits.items()},
            "allowed_max_length": max_length,
            "mask_prompt": mask_prompt,
            "drop_rate": drop_rate,
            "max_new_tokens": options.max_new_tokens,
        },
    )

    # Answers for the test split, each process answering its share.
    state = process_state()
    model = result.model.to(state.device).eval()
    test_records = splits["test"][: options.max_test_responses]
    start = time.time()
    with state.split_between_processes(test_records) as share:
        answers = generate_responses(
            model,
            tokenizer,
            share,
            options.max_new_tokens,
            options.generation_batch_size,
            progress=state.is_main_process and training.progress_bar,
        )
    answers = gather_object(answers) if state.num_processes > 1 else answers
    generation_s = time.time() - start
    entries = [
        {**record, "model_response": answer} for record, answer in zip(test_records, answers, strict=True)
    ]

    responses_path, test_perplexity, judged = None, float("nan"), None
    if state.is_main_process:
        output_dir = Path(training.output_dir)
        responses_path = save_responses(test_records, answers, output_dir / RESPONSES_FILE)
        state.print(f"Saved {len(entries)} test answers to {responses_path} ({generation_s:.1f} s)")
        if len(tokenized["test"]):
            test_perplexity = perplexity(
                model, tokenized["test"], training.batch_size, max_length, mask_prompt
            )
            state.print(f"Test perplexity {test_perplexity:.3f}")
        metrics: dict[str, Any] = {"test_perplexity": test_perplexity}
        fields: dict[str, Any] = {"responses_file": RESPONSES_FILE, "generation_s": round(generation_s, 3)}
        if judge is not None:
            judged = evaluate_with_judge(entries, judge)
            state.print(judged.summary())
            metrics |= {
                "judge_average_score": judged.average,
                "judge_num_scored": judged.num_scored,
                "judge_num_unscored": judged.num_unscored,
            }
            fields["judge"] = {**_describe_judge(judge), **judged.to_dict()}
        result.summary = update_summary(output_dir, metrics, **fields)
    state.wait_for_everyone()
    return InstructionResult(result, entries, responses_path, test_perplexity, judged)


def _describe_judge(judge: Any) -> dict[str, Any]:
    if isinstance(judge, JudgeClient):
        return {"url": judge.endpoint, "model": judge.model, "api": judge.api}
    return {"function": getattr(judge, "__name__", type(judge).__name__)}


# ----------------------------------------------------------------------------------------------------------------
# Chat: one instruction from the command line


def chat(
    folder: str | os.PathLike,
    instruction: str,
    input: str = "",
    max_new_tokens: int = 256,
    quantize: str | None = None,
) -> str:
    """The answer of the model saved in `folder` to one instruction (with optional input), greedy;
    `quantize` ("int8", "bf16") as in `gpt_scratch.generation.inference.load_model`.

    The prompt is the folder's chat template (the book's Alpaca prompt ending in `### Response:`), as
    `pipeline("text-generation")` builds it from the messages: the instruction as system, the input as user.
    """
    model, tokenizer = load_model(folder, quantize=quantize)
    tokenizer.chat_template = (
        tokenizer.chat_template or ALPACA_CHAT_TEMPLATE
    )  # folders saved before templates

    def render(entry: dict[str, str]) -> str:
        messages = [
            {"role": "system", "content": entry["instruction"]},
            {"role": "user", "content": entry["input"]},
        ]
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    context_length = _context_length(model)
    prompt_ids = _fit({"instruction": instruction, "input": input}, tokenizer, context_length - 1, render)
    budget = min(max_new_tokens, context_length - len(prompt_ids))
    out = generate_batch(model, [prompt_ids], [budget], ENDOFTEXT_ID)[0]
    return tokenizer.decode(out, skip_special_tokens=True).strip()


# ----------------------------------------------------------------------------------------------------------------
# The `gpt-scratch finetune-instructions` and `gpt-scratch chat` verbs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "data",
        nargs="?",
        default="alpaca-book",
        help="alpaca-book (default), or a .json / .jsonl file of records",
    )
    add_base_model_arguments(parser, book_gpt2="openai-community/gpt2-medium")
    add_dataclass_arguments(parser, InstructOptions, title="data, answers and evaluation")
    add_training_arguments(parser, dataclasses.replace(BOOK_TRAINING, output_dir=None))


def run(args: argparse.Namespace) -> int:
    args.output_dir = run_folder(args.output_dir, args.resume, "instruct")
    result = finetune_instructions(
        args.from_gpt2 or args.model,
        args.data,
        training_config_from_args(args),
        dataclass_from_args(InstructOptions, args),
        from_gpt2=args.from_gpt2 is not None,
        n_heads=args.n_heads,
    )
    if process_state().is_main_process:
        m = result.train.summary["metrics"]
        judged = "" if result.judge is None else f", judge: {result.judge.summary()}"
        print(
            f"Done: {format_losses(m)}, "
            f"test perplexity {result.perplexity:.3f}{judged}, {result.train.summary['wall_time_s']:.1f} s. "
            f"Saved to {result.train.output_dir}"
        )
    return 0


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder",
        help="a fine-tuned model folder (e.g. a finetune-instructions run); with --url, the model the server serves",
    )
    parser.add_argument("--instruction", help="what to do (without --url: required)")
    parser.add_argument("--input", default="", help="the instruction's input, if any")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer (default: 256)")
    parser.add_argument(
        "--url",
        help="an OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1 of gpt-scratch serve): the answer comes "
        "from there; without --instruction, a conversation of the lines typed (exit or end of input stops)",
    )
    from gpt_scratch.generation.inference import add_quantize_argument

    add_quantize_argument(parser)


def run_chat(args: argparse.Namespace) -> int:
    if args.url:
        from gpt_scratch.chat_client import chat_loop, stream_chat_completion

        if args.instruction is None:
            chat_loop(args.url, args.folder, sys.stdin, max_tokens=args.max_new_tokens)
            return 0
        messages = [{"role": "system", "content": args.instruction}]
        messages += [{"role": "user", "content": args.input}] if args.input else []
        for piece in stream_chat_completion(args.url, args.folder, messages, args.max_new_tokens):
            print(piece, end="", flush=True)
        print()
        return 0
    if args.instruction is None:
        raise ValueError(
            "--instruction is required to answer with a model folder (or give --url of a server)"
        )
    print(chat(args.folder, args.instruction, args.input, args.max_new_tokens, args.quantize))
    return 0
