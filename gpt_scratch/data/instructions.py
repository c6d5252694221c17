"""Instruction data in the Alpaca format (chapter 7): records, the prompt, the splits and the book's collate function.

    records = load_instruction_data("alpaca-book")          # 1,100 {instruction, input, output}
    splits = split_instruction_data(records)                # 935 / 55 / 110, the book's split
    dataset = tokenize_instruction_data(splits)             # + input_ids, prompt_length (one datasets map)
    loader = DataLoader(dataset["train"], batch_size=8, collate_fn=partial(custom_collate_fn, allowed_max_length=1024))

`format_input` is the one prompt builder: training texts and inference prompts both start with it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict

from gpt_scratch.data.classification import default_tokenizer, encode_texts
from gpt_scratch.data.corpora import resolve_corpus
from gpt_scratch.tokenization_gpt_scratch import ENDOFTEXT_ID

FIELDS = ("instruction", "input", "output")
RESPONSE_HEADER = "\n\n### Response:\n"


# ---------------------------------------------------------------------------------------------------------------
# Records


def _check_record(record: Any, where: str, columns: dict[str, str]) -> dict[str, str]:
    if not isinstance(record, dict):
        raise ValueError(
            f"{where}: expected an object with {sorted(columns.values())}, got {type(record).__name__}"
        )
    checked = {}
    for field, column in columns.items():
        if column not in record:
            raise ValueError(f"{where}: missing field '{column}' (fields: {sorted(record)})")
        if not isinstance(record[column], str):
            raise ValueError(f"{where}: field '{column}' is {type(record[column]).__name__}, not a string")
        checked[field] = record[column]
    return checked


def load_instruction_data(
    source: str | os.PathLike | Dataset = "alpaca-book",
    *,
    instruction_column: str = "instruction",
    input_column: str = "input",
    output_column: str = "output",
) -> list[dict[str, str]]:
    """Records `{instruction, input, output}` from `alpaca-book`, a .json (list) / .jsonl file, or a Dataset.

    Every record must have the three fields as strings (an empty `input` is fine): otherwise `ValueError`
    naming the file and the record's index (0-based, as in the JSON list).
    """
    columns = {"instruction": instruction_column, "input": input_column, "output": output_column}
    if isinstance(source, Dataset):
        return [_check_record(r, f"<dataset>: record {i}", columns) for i, r in enumerate(source)]

    path = resolve_corpus(source)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        raw = []
        for line_number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    raw.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}: line {line_number}: not valid JSON: {e}") from e
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from e
        if not isinstance(raw, list):
            raise ValueError(f"{path}: expected a JSON list of records, got {type(raw).__name__}")
    if not raw:
        raise ValueError(f"{path}: no records (the file holds an empty list); training needs at least 2")
    return [_check_record(r, f"{path}: record {i}", columns) for i, r in enumerate(raw)]


def split_instruction_data(
    records: Sequence[dict[str, str]],
    train_frac: float = 0.85,
    test_frac: float = 0.10,
    seed: int | None = None,
) -> dict[str, list[dict[str, str]]]:
    """The book's split: first 85% train, next 10% test, the remaining 5% validation (1,100 -> 935/110/55).

    The book keeps the file's order (`seed=None`); a `seed` shuffles the records first.
    """
    records = list(records)
    if seed is not None:
        order = torch.randperm(len(records), generator=torch.Generator().manual_seed(seed)).tolist()
        records = [records[i] for i in order]
    train_end = int(len(records) * train_frac)
    test_end = train_end + int(len(records) * test_frac)
    return {
        "train": records[:train_end],
        "validation": records[test_end:],
        "test": records[train_end:test_end],
    }


# ---------------------------------------------------------------------------------------------------------------
# The prompt


def format_input(entry: dict[str, str]) -> str:
    """The book's Alpaca prompt: instruction, and the input when it is not empty. Used for training and inference."""
    instruction_text = (
        "Below is an instruction that describes a task. "
        "Write a response that appropriately completes the request."
        f"\n\n### Instruction:\n{entry['instruction']}"
    )
    input_text = f"\n\n### Input:\n{entry['input']}" if entry.get("input") else ""
    return instruction_text + input_text


def fit_prompt(
    entry: dict[str, str],
    tokenizer: Any,
    max_tokens: int,
    render: Callable[[dict[str, str]], str] = format_input,
) -> tuple[list[int], int]:
    """Token ids of `render(entry)` in at most `max_tokens`, and how many tokens were cut for that.

    A prompt that does not fit keeps its template (the preamble, `### Instruction:`, `### Input:`, and whatever
    `render` ends with, e.g. `### Response:`): tokens are cut from the start of the longer of the instruction and
    the input (of both once they are as long), so each keeps its end, nearest the answer (the book crops the
    whole prompt from the left, template included).
    """
    ids = encode_texts(tokenizer, [render(entry)])[0]
    full_length, entry = len(ids), dict(entry)
    fields = {
        field: encode_texts(tokenizer, [entry.get(field) or ""])[0] for field in ("instruction", "input")
    }
    while len(ids) > max_tokens:
        longer, shorter = sorted(fields, key=lambda field: len(fields[field]), reverse=True)
        if not fields[longer]:
            raise ValueError(
                f"the prompt's template alone is {len(ids)} tokens, more than the {max_tokens} that fit"
            )
        excess, lead = len(ids) - max_tokens, len(fields[longer]) - len(fields[shorter])
        fields[longer] = fields[longer][min(excess, max(lead, (excess + 1) // 2)) :]
        entry[longer] = tokenizer.decode(fields[longer])
        ids = encode_texts(tokenizer, [render(entry)])[0]
    return ids, full_length - len(ids)


def format_training_text(entry: dict[str, str]) -> str:
    """The full training text: the prompt, `### Response:` and the reference output."""
    return format_input(entry) + RESPONSE_HEADER + entry["output"]


def extract_response(generated_text: str, prompt: str | None = None) -> str:
    """The model's answer: the text after `### Response:` (after `prompt`, when given), up to end-of-text, stripped."""
    if prompt is not None and generated_text.startswith(prompt):
        generated_text = generated_text[len(prompt) :]
    if "### Response:" in generated_text:
        generated_text = generated_text.split("### Response:", 1)[1]
    return generated_text.split("<|endoftext|>", 1)[0].strip()


def save_responses(
    records: Sequence[dict[str, str]],
    responses: Sequence[str],
    path: str | os.PathLike,
    response_key: str = "model_response",
) -> Path:
    """Write the records with each model response under `response_key`, as the book's
    `instruction-data-with-response.json` (a JSON list, indent 4). Returns the path."""
    if len(records) != len(responses):
        raise ValueError(f"{len(records)} records but {len(responses)} responses")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = [{**record, response_key: response} for record, response in zip(records, responses, strict=True)]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=4, ensure_ascii=False)
    return path


# ---------------------------------------------------------------------------------------------------------------
# Tokenizing, once


# Tokenizers that give these the same ids share a cache (tiktoken's gpt2 and GPTScratchTokenizer do)
_PROBE = (
    "Hello, do you like tea? In the sunlit terraces of someunknownPlace.\n\n### Response:\n 42 ünïcödé 日本"
)


def _fingerprint(records: list[dict[str, str]], tokenizer: Any) -> str:
    probe = encode_texts(tokenizer, [_PROBE])[0]
    payload = json.dumps(["instructions-v1", records, probe], sort_keys=True).encode("utf-8")
    return hashlib.sha256(payload).hexdigest()[:16]


def tokenize_instruction_data(
    splits: dict[str, Sequence[dict[str, str]]] | DatasetDict,
    tokenizer: Any = None,
    cache_dir: str | os.PathLike | None = None,
) -> DatasetDict:
    """Add `input_ids` (the full training text) and `prompt_length` (tokens of `format_input`) to every split.

    One batched `datasets.map` per split. With `cache_dir`, the result is cached in an Arrow file named by a hash
    of the records and the tokenizer, so a second run with the same data reads it instead of tokenizing again.
    """
    tokenizer = tokenizer if tokenizer is not None else default_tokenizer()

    def tokenize(batch: dict[str, list[str]]) -> dict[str, list]:
        entries = [
            dict(zip(FIELDS, values, strict=True)) for values in zip(*(batch[f] for f in FIELDS), strict=True)
        ]
        prompts = encode_texts(tokenizer, [format_input(e) for e in entries])
        full = encode_texts(tokenizer, [format_training_text(e) for e in entries])
        return {"input_ids": full, "prompt_length": [len(p) for p in prompts]}

    result = {}
    for split, records in splits.items():
        records = [{f: r[f] for f in FIELDS} for r in records]
        dataset = Dataset.from_list(records) if records else Dataset.from_dict({f: [] for f in FIELDS})
        fingerprint = _fingerprint(records, tokenizer)
        cache_file_name = None
        if cache_dir is not None:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            cache_file_name = str(Path(cache_dir) / f"instructions-{split}-{fingerprint}.arrow")
        result[split] = dataset.map(
            tokenize,
            batched=True,
            cache_file_name=cache_file_name,
            new_fingerprint=fingerprint,
            desc=f"Tokenizing {split}",
        )
    return DatasetDict(result)


def prepare_instruction_data(
    source: str | os.PathLike | Dataset = "alpaca-book",
    *,
    tokenizer: Any = None,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    **columns: str,
) -> DatasetDict:
    """`load_instruction_data` -> `split_instruction_data` -> `tokenize_instruction_data`, in one call."""
    records = load_instruction_data(source, **columns)
    return tokenize_instruction_data(split_instruction_data(records, seed=seed), tokenizer, cache_dir)


def count_cut_responses(split: Dataset, max_length: int) -> int:
    """How many records of a tokenized split keep none of their response once cut to `max_length` tokens (the
    collate function keeps the start of each text: the template, then as much of the answer as fits)."""
    return sum(prompt_length >= max_length for prompt_length in split["prompt_length"])


# ---------------------------------------------------------------------------------------------------------------
# Batches


def custom_collate_fn(
    batch: Sequence[Sequence[int] | dict[str, Any]],
    pad_token_id: int = ENDOFTEXT_ID,
    ignore_index: int = -100,
    allowed_max_length: int | None = None,
    mask_prompt: bool = False,
) -> dict[str, torch.Tensor]:
    """The book's collate function: pad to the longest entry + 1 with `pad_token_id`, targets shifted by one.

    Each item is a list of token ids or a dict with `input_ids` (and `prompt_length`, needed for `mask_prompt`).
    The first padding target stays end-of-text, so the model learns to stop; the rest become `ignore_index`.
    `mask_prompt=True` also ignores the targets inside the prompt. Returns `input_ids` and `target_ids`, (B, T).
    """
    items = [item if isinstance(item, dict) else {"input_ids": item} for item in batch]
    token_lists = [list(map(int, item["input_ids"])) for item in items]
    batch_max_length = max(len(ids) + 1 for ids in token_lists)

    inputs_lst, targets_lst = [], []
    for item, ids in zip(items, token_lists, strict=True):
        padded = ids + [pad_token_id] * (batch_max_length - len(ids))
        inputs = torch.tensor(padded[:-1])
        targets = torch.tensor(padded[1:])
        targets[len(ids) :] = ignore_index  # targets[len(ids) - 1] is the first end-of-text: kept
        if mask_prompt:
            if "prompt_length" not in item:
                raise ValueError(
                    "mask_prompt=True needs items with a 'prompt_length' (see tokenize_instruction_data)"
                )
            targets[: int(item["prompt_length"]) - 1] = ignore_index
        if allowed_max_length is not None:
            inputs = inputs[:allowed_max_length]
            targets = targets[:allowed_max_length]
        inputs_lst.append(inputs)
        targets_lst.append(targets)
    return {"input_ids": torch.stack(inputs_lst), "target_ids": torch.stack(targets_lst)}
