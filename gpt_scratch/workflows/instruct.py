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
import math
import os
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

from gpt_scratch.data.classification import encode_texts
from gpt_scratch.data.describe import describe_data
from gpt_scratch.data.instructions import (
    custom_collate_fn,
    extract_response,
    format_input,
    load_instruction_data,
    save_responses,
    split_instruction_data,
    tokenize_instruction_data,
)
from gpt_scratch.generation.inference import load_model
from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args, option
from gpt_scratch.tokenization_gpt_scratch import ALPACA_CHAT_TEMPLATE, ENDOFTEXT_ID
from gpt_scratch.training import (
    BOOK_RUNS,
    CausalLMTask,
    TrainingConfig,
    TrainResult,
    add_base_model_arguments,
    add_training_arguments,
    process_state,
    run_folder,
    train,
    training_config_from_args,
    update_summary,
)
from gpt_scratch.workflows.judge import JudgeClient, JudgeResult, generate_model_scores

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
    text after `### Response:`. Prompts are batched with left padding (sorted by length, so little padding);
    a row the batch's shared length budget cut short is continued alone, so the answers equal decoding each
    record one by one (`batch_size=1`).
    """
    model.eval()
    device = next(model.parameters()).device
    context_length = _context_length(model)
    prompts = [format_input(record) for record in records]
    # Encoded as in training; a prompt that fills the context keeps its end, as the book crops
    prompt_ids = [ids[-(context_length - 1) :] for ids in encode_texts(tokenizer, prompts)]
    budgets = [min(max_new_tokens, context_length - len(ids)) for ids in prompt_ids]
    order = sorted(range(len(records)), key=lambda i: len(prompt_ids[i]))
    new_tokens: dict[int, list[int]] = {}
    batches = range(0, len(order), batch_size)
    if progress:
        from tqdm.auto import tqdm

        batches = tqdm(batches, desc="Answering the test set")
    for start in batches:
        rows = order[start : start + batch_size]
        outputs = _generate_left_padded(
            model, [prompt_ids[i] for i in rows], min(budgets[i] for i in rows), device
        )
        for i, out in zip(rows, outputs, strict=True):
            out = _until_eos(out, eos_token_id)
            if len(out) < budgets[i] and (not out or out[-1] != eos_token_id):  # cut short by the batch
                more = _generate_left_padded(model, [prompt_ids[i] + out], budgets[i] - len(out), device)[0]
                out = _until_eos(out + more, eos_token_id)
            new_tokens[i] = out
    responses = []
    for i, prompt in enumerate(prompts):
        ids = [t for t in new_tokens[i] if t != eos_token_id]
        text = prompt + tokenizer.decode(ids, skip_special_tokens=False)
        responses.append(extract_response(text, prompt))
    return responses


def _until_eos(tokens: list[int], eos_token_id: int) -> list[int]:
    """The tokens up to and including the first end-of-text (generate pads finished rows with it)."""
    return tokens[: tokens.index(eos_token_id) + 1] if eos_token_id in tokens else tokens


def _generate_left_padded(
    model: Any, prompts: list[list[int]], max_new_tokens: int, device: torch.device
) -> list[list[int]]:
    """Greedy continuations of token-id prompts of any lengths (left padding + attention mask)."""
    if max_new_tokens <= 0:
        return [[] for _ in prompts]
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), ENDOFTEXT_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=ENDOFTEXT_ID,
        pad_token_id=ENDOFTEXT_ID,
    )
    return out[:, width:].tolist()


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
) -> InstructionResult:
    """Fine-tune `model` (a saved folder, a GPT-2 checkpoint with `from_gpt2`, or a model) on instruction `data`.

    `data`: `alpaca-book`, a .json/.jsonl file or a Dataset (with `options.*_column` as its columns). The split is
    shuffled with `training.seed` (`options.shuffle_split=False`: the book's order). Inputs are cut to
    `options.allowed_max_length` and the model's context. After training, the main process writes
    `instruction-data-with-response.json` for the test split (its first `max_test_responses` records when given),
    and `training_summary.json` gets `test_perplexity` and, with a judge (`judge`, else `options.judge()`), the
    scores.
    """
    training = training or BOOK_TRAINING
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
        model, loaded_tokenizer = load_model(model, from_gpt2=from_gpt2, drop_rate=drop_rate)
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
    messages = [{"role": "system", "content": instruction}, {"role": "user", "content": input}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    prompt_ids = prompt["input_ids"][:, -(_context_length(model) - 1) :]  # the book crops to the context
    budget = min(max_new_tokens, _context_length(model) - prompt_ids.shape[1])
    out = _generate_left_padded(model, prompt_ids.tolist(), budget, next(model.parameters()).device)[0]
    return tokenizer.decode(_until_eos(out, ENDOFTEXT_ID), skip_special_tokens=True).strip()


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
    )
    if process_state().is_main_process:
        m = result.train.summary["metrics"]
        judged = "" if result.judge is None else f", judge: {result.judge.summary()}"
        print(
            f"Done: train loss {m.get('train_loss', float('nan')):.3f}, val loss {m.get('val_loss', float('nan')):.3f}, "
            f"test perplexity {result.perplexity:.3f}{judged}, {result.train.summary['wall_time_s']:.1f} s. "
            f"Saved to {result.train.output_dir}"
        )
    return 0


def add_chat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="a fine-tuned model folder (e.g. a finetune-instructions run)")
    parser.add_argument("--instruction", required=True, help="what to do")
    parser.add_argument("--input", default="", help="the instruction's input, if any")
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer (default: 256)")
    from gpt_scratch.generation.inference import add_quantize_argument

    add_quantize_argument(parser)


def run_chat(args: argparse.Namespace) -> int:
    print(chat(args.folder, args.instruction, args.input, args.max_new_tokens, args.quantize))
    return 0
