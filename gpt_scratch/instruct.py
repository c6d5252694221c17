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
    accelerate launch scripts/finetune_instructions.py --model runs/pretrain --output-dir runs/instruct
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
from gpt_scratch.data.corpora import resolve_corpus, sha256_file
from gpt_scratch.data.instructions import (
    custom_collate_fn,
    extract_response,
    format_input,
    load_instruction_data,
    save_responses,
    split_instruction_data,
    tokenize_instruction_data,
)
from gpt_scratch.judge import JudgeClient, JudgeResult, generate_model_scores
from gpt_scratch.training import (
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

RESPONSES_FILE = "instruction-data-with-response.json"
END_OF_TEXT_ID = 50256
# The book's chapter 7 run (the loop's other defaults are the book's too: eval_iter 5, seed 123).
BOOK_TRAINING = TrainingConfig(
    output_dir="runs/instruct", num_epochs=2, batch_size=8, learning_rate=5e-5, weight_decay=0.1, eval_freq=5
)


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


def load_base_model(
    source: str | os.PathLike, from_gpt2: bool = False, drop_rate: float | None = None
) -> tuple[Any, Any]:
    """A pretrained causal LM and its tokenizer: a folder written by `save_pretrained`, or with `from_gpt2` a
    Hugging Face GPT-2 checkpoint (folder or Hub id, e.g. `openai-community/gpt2-medium`, the book's model)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import gpt_scratch  # noqa: F401  (registers gpt_scratch with the Auto classes)
    from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    overrides = {} if drop_rate is None else {"drop_rate": drop_rate}
    if from_gpt2:
        return GPTScratchForCausalLM.from_gpt2(source, **overrides), GPTScratchTokenizer()
    folder = Path(source)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no config.json here; give a folder written by save_pretrained "
            "(e.g. a `gpt-scratch pretrain` run), or a GPT-2 checkpoint with --from-gpt2"
        )
    model = AutoModelForCausalLM.from_pretrained(folder, **overrides)
    has_tokenizer = any((folder / name).is_file() for name in ("tokenizer_config.json", "vocab.json"))
    return model, AutoTokenizer.from_pretrained(folder) if has_tokenizer else GPTScratchTokenizer()


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
    eos_token_id: int = END_OF_TEXT_ID,
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
    input_ids = torch.full((len(prompts), width), END_OF_TEXT_ID, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, ids in enumerate(prompts):
        input_ids[row, width - len(ids) :] = torch.tensor(ids)
        attention_mask[row, width - len(ids) :] = 1
    out = model.generate(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=END_OF_TEXT_ID,
        pad_token_id=END_OF_TEXT_ID,
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


def finetune_instructions(
    model: str | os.PathLike | torch.nn.Module,
    data: Any = "alpaca-book",
    training: TrainingConfig | None = None,
    *,
    tokenizer: Any = None,
    from_gpt2: bool = False,
    drop_rate: float | None = 0.0,
    split_seed: int | None = 123,
    allowed_max_length: int | None = 1024,
    mask_prompt: bool = False,
    max_new_tokens: int = 256,
    generation_batch_size: int = 8,
    max_test_responses: int | None = None,
    judge: JudgeClient | Callable[[str], str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    columns: dict[str, str] | None = None,
) -> InstructionResult:
    """Fine-tune `model` (a saved folder, a GPT-2 checkpoint with `from_gpt2`, or a model) on instruction `data`.

    `data`: `alpaca-book`, a .json/.jsonl file or a Dataset (`columns`: {"instruction_column": ..., ...}).
    The split is shuffled with `split_seed` (None: the book's order). Inputs are cut to `allowed_max_length`
    and the model's context. `drop_rate` 0.0 is the book's (None: keep the model's). After training, the main
    process writes `instruction-data-with-response.json` for the test split (its first `max_test_responses`
    records when given), and `training_summary.json` gets `test_perplexity` and, with a `judge`, the scores.
    """
    training = training or BOOK_TRAINING
    if isinstance(model, (str, os.PathLike)):
        base_model = str(model)
        model, loaded_tokenizer = load_base_model(model, from_gpt2=from_gpt2, drop_rate=drop_rate)
        tokenizer = tokenizer or loaded_tokenizer
    else:
        base_model = getattr(getattr(model, "config", None), "_name_or_path", None) or None
        if drop_rate is not None:
            set_drop_rate(model, drop_rate)
    if tokenizer is None:
        from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

        tokenizer = GPTScratchTokenizer()
    max_length = min(allowed_max_length or _context_length(model), _context_length(model))

    state = process_state()
    records = load_instruction_data(data, **(columns or {}))
    splits = split_instruction_data(records, seed=split_seed)
    with state.main_process_first():  # the main process tokenizes (and fills any cache) first
        tokenized = tokenize_instruction_data(splits, tokenizer, cache_dir)
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
            "max_new_tokens": max_new_tokens,
        },
    )

    # Answers for the test split, each process answering its share.
    state = process_state()  # again: a single-process train() resets the state when it ends
    model = result.model.to(state.device).eval()
    test_records = splits["test"][:max_test_responses]
    start = time.time()
    with state.split_between_processes(test_records) as share:
        answers = generate_responses(
            model,
            tokenizer,
            share,
            max_new_tokens,
            generation_batch_size,
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


def describe_data(data: Any) -> list[dict[str, Any]]:
    """[{"name", "file", "sha256"}] of the instruction data."""
    if hasattr(data, "column_names"):
        return [{"name": "dataset", "file": None, "sha256": None}]
    path = resolve_corpus(data)
    name = str(data) if not Path(str(data)).exists() else path.stem
    return [{"name": name, "file": path.name, "sha256": sha256_file(path)}]


def _describe_judge(judge: Any) -> dict[str, Any]:
    if isinstance(judge, JudgeClient):
        return {"url": judge.endpoint, "model": judge.model, "api": judge.api}
    return {"function": getattr(judge, "__name__", type(judge).__name__)}


# ----------------------------------------------------------------------------------------------------------------
# Chat: one instruction from the command line


def chat(folder: str | os.PathLike, instruction: str, input: str = "", max_new_tokens: int = 256) -> str:
    """The answer of the model saved in `folder` to one instruction (with optional input), greedy."""
    from gpt_scratch.inference import load

    model, tokenizer = load(folder)
    record = {"instruction": instruction, "input": input, "output": ""}
    return generate_responses(model, tokenizer, [record], max_new_tokens=max_new_tokens)[0]


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
    parser.add_argument(
        "--drop-rate", type=float, default=0.0, help="dropout while fine-tuning (default: 0.0, the book's)"
    )
    data = parser.add_argument_group("data")
    for field in ("instruction", "input", "output"):
        data.add_argument(
            f"--{field}-column", default=field, help=f"column of the {field} (default: {field})"
        )
    data.add_argument(
        "--no-shuffle-split",
        action="store_true",
        help="split in the file's order, as the book (default: shuffled with --seed)",
    )
    data.add_argument(
        "--allowed-max-length", type=int, default=1024, help="cut training inputs to this (default: 1024)"
    )
    data.add_argument(
        "--mask-prompt", action="store_true", help="no loss on the prompt tokens (default: off, as the book)"
    )
    data.add_argument("--cache-dir", default=None, help="where to cache the tokenized records")
    answers = parser.add_argument_group("answers and evaluation")
    answers.add_argument(
        "--max-new-tokens", type=int, default=256, help="tokens per test answer (default: 256)"
    )
    answers.add_argument(
        "--generation-batch-size", type=int, default=8, help="test prompts decoded together (default: 8)"
    )
    answers.add_argument(
        "--max-test-responses", type=int, default=None, help="answer only the first N test records"
    )
    answers.add_argument("--judge-url", default=None, help="score the answers with an LLM judge at this URL")
    answers.add_argument("--judge-model", default="llama3", help="the judge model (default: llama3)")
    answers.add_argument(
        "--judge-api",
        default="ollama",
        choices=["ollama", "openai"],
        help="ollama: /api/chat (default); openai: /v1/chat/completions",
    )
    answers.add_argument(
        "--judge-timeout",
        type=float,
        default=120.0,
        help="seconds for each judge answer in all, a deadline (default: 120)",
    )
    add_training_arguments(parser, dataclasses.replace(BOOK_TRAINING, output_dir=None))


def run(args: argparse.Namespace) -> int:
    args.output_dir = run_folder(args.output_dir, args.resume, "instruct")
    training = training_config_from_args(args)
    judge = (
        JudgeClient(args.judge_url, model=args.judge_model, api=args.judge_api, timeout=args.judge_timeout)
        if args.judge_url
        else None
    )
    result = finetune_instructions(
        args.from_gpt2 or args.model,
        args.data,
        training,
        from_gpt2=args.from_gpt2 is not None,
        drop_rate=args.drop_rate,
        split_seed=None if args.no_shuffle_split else training.seed,
        allowed_max_length=args.allowed_max_length,
        mask_prompt=args.mask_prompt,
        max_new_tokens=args.max_new_tokens,
        generation_batch_size=args.generation_batch_size,
        max_test_responses=args.max_test_responses,
        judge=judge,
        cache_dir=args.cache_dir,
        columns={f"{f}_column": getattr(args, f"{f}_column") for f in ("instruction", "input", "output")},
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


def run_chat(args: argparse.Namespace) -> int:
    print(chat(args.folder, args.instruction, args.input, args.max_new_tokens))
    return 0
