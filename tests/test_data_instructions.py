"""Chapter 7 data: records, the Alpaca prompt, the book's split and collate function, cached tokenization."""

import json
from functools import partial

import pytest
import tiktoken
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from gpt_scratch.data.instructions import (
    custom_collate_fn,
    extract_response,
    format_input,
    format_training_text,
    load_instruction_data,
    prepare_instruction_data,
    save_responses,
    split_instruction_data,
    tokenize_instruction_data,
)

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared

WITH_INPUT = {
    "instruction": "Identify the correct spelling of the following word.",
    "input": "Ocassion",
    "output": "The correct spelling is 'Occasion.'",
}
WITHOUT_INPUT = {
    "instruction": "What is an antonym of 'complicated'?",
    "input": "",
    "output": "An antonym of 'complicated' is 'simple'.",
}


@pytest.fixture(scope="module")
def records():
    return load_instruction_data("alpaca-book")


def test_book_records_and_split(records, shared):
    assert len(records) == 1100
    assert sum(bool(r["input"]) for r in records) == 325
    assert records == json.loads((shared / "data" / "instruction-data.json").read_text())
    assert records[50] == WITH_INPUT  # the book prints this record
    splits = split_instruction_data(records)
    assert {k: len(v) for k, v in splits.items()} == {"train": 935, "validation": 55, "test": 110}
    # the book's order: train first, then test, the last 5% validation
    assert splits["train"] == records[:935]
    assert splits["test"] == records[935:1045]
    assert splits["validation"] == records[1045:]

    shuffled = split_instruction_data(records, seed=123)
    assert {k: len(v) for k, v in shuffled.items()} == {"train": 935, "validation": 55, "test": 110}
    assert shuffled["train"] != splits["train"]
    assert shuffled == split_instruction_data(records, seed=123)
    assert sorted(map(json.dumps, sum(shuffled.values(), []))) == sorted(map(json.dumps, records))


def test_format_input_is_the_books():
    assert format_input(WITH_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nIdentify the correct spelling of the following word."
        "\n\n### Input:\nOcassion"
    )
    assert format_input(WITHOUT_INPUT) == (
        "Below is an instruction that describes a task. Write a response that appropriately completes the request."
        "\n\n### Instruction:\nWhat is an antonym of 'complicated'?"
    )
    assert format_input({"instruction": "Say hi."}) == format_input({"instruction": "Say hi.", "input": ""})
    assert format_training_text(WITHOUT_INPUT) == (
        format_input(WITHOUT_INPUT) + "\n\n### Response:\nAn antonym of 'complicated' is 'simple'."
    )


def test_invalid_records_named(tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([WITH_INPUT, {"instruction": "x", "output": "y"}]))
    with pytest.raises(ValueError, match=r"data\.json: record 1: missing field 'input'"):
        load_instruction_data(path)
    path.write_text(json.dumps([WITH_INPUT, WITHOUT_INPUT, {**WITH_INPUT, "output": 42}]))
    with pytest.raises(ValueError, match=r"data\.json: record 2: field 'output' is int, not a string"):
        load_instruction_data(path)
    path.write_text(json.dumps({"instruction": "x"}))
    with pytest.raises(ValueError, match="expected a JSON list"):
        load_instruction_data(path)
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(json.dumps(WITH_INPUT) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"data\.jsonl: line 2: not valid JSON"):
        load_instruction_data(jsonl)


def test_jsonl_and_dataset_sources(tmp_path):
    jsonl = tmp_path / "data.jsonl"
    jsonl.write_text(json.dumps(WITH_INPUT) + "\n\n" + json.dumps(WITHOUT_INPUT) + "\n")
    assert load_instruction_data(jsonl) == [WITH_INPUT, WITHOUT_INPUT]
    renamed = Dataset.from_list(
        [
            {"prompt": r["instruction"], "context": r["input"], "answer": r["output"]}
            for r in (WITH_INPUT, WITHOUT_INPUT)
        ]
    )
    loaded = load_instruction_data(
        renamed, instruction_column="prompt", input_column="context", output_column="answer"
    )
    assert loaded == [WITH_INPUT, WITHOUT_INPUT]
    with pytest.raises(ValueError, match=r"<dataset>: record 0: missing field 'instruction'"):
        load_instruction_data(renamed)


def test_collate_book_example():
    inputs_1, inputs_2, inputs_3 = [0, 1, 2, 3, 4], [5, 6], [7, 8, 9]
    batch = custom_collate_fn((inputs_1, inputs_2, inputs_3))
    assert batch["input_ids"].tolist() == [
        [0, 1, 2, 3, 4],
        [5, 6, 50256, 50256, 50256],
        [7, 8, 9, 50256, 50256],
    ]
    assert batch["target_ids"].tolist() == [
        [1, 2, 3, 4, 50256],
        [6, 50256, -100, -100, -100],
        [8, 9, 50256, -100, -100],
    ]
    assert batch["input_ids"].dtype == batch["target_ids"].dtype == torch.long

    cut = custom_collate_fn((inputs_1, inputs_2, inputs_3), allowed_max_length=3)
    assert cut["input_ids"].tolist() == [[0, 1, 2], [5, 6, 50256], [7, 8, 9]]
    assert cut["target_ids"].tolist() == [[1, 2, 3], [6, 50256, -100], [8, 9, 50256]]

    masked = custom_collate_fn(
        [{"input_ids": inputs_1, "prompt_length": 3}, {"input_ids": inputs_3, "prompt_length": 2}],
        mask_prompt=True,
    )
    assert masked["target_ids"].tolist() == [[-100, -100, 3, 4, 50256], [-100, 9, 50256, -100, -100]]
    with pytest.raises(ValueError, match="prompt_length"):
        custom_collate_fn([inputs_1], mask_prompt=True)


def test_tokenized_once_and_cached(records, tmp_path):
    splits = split_instruction_data(records)
    first = tokenize_instruction_data(splits, cache_dir=tmp_path)
    assert {k: ds.num_rows for k, ds in first.items()} == {"train": 935, "validation": 55, "test": 110}
    tokenizer = tiktoken.get_encoding("gpt2")
    for i in (0, 50, 934):
        row, entry = first["train"][i], splits["train"][i]
        assert row["input_ids"] == tokenizer.encode(format_training_text(entry))
        assert row["prompt_length"] == len(tokenizer.encode(format_input(entry)))
        assert {k: row[k] for k in ("instruction", "input", "output")} == entry
    cache_files = sorted(p.name for p in tmp_path.glob("*.arrow"))
    assert len(cache_files) == 3 and first["train"].cache_files[0]["filename"].startswith(str(tmp_path))

    class NoTokenizing:  # gives the same ids as gpt2, but must not be asked to tokenize the data again
        def encode_ordinary_batch(self, texts):
            if len(texts) > 1:
                raise AssertionError("tokenized again instead of reading the cache")
            return tokenizer.encode_ordinary_batch(texts)

    again = tokenize_instruction_data(splits, tokenizer=NoTokenizing(), cache_dir=tmp_path)
    assert again["test"][:]["input_ids"] == first["test"][:]["input_ids"]
    assert sorted(p.name for p in tmp_path.glob("*.arrow")) == cache_files

    prepared = prepare_instruction_data("alpaca-book")  # in memory, same result
    assert prepared["validation"][0]["input_ids"] == first["validation"][0]["input_ids"]


def test_dataloader_batches(records):
    dataset = tokenize_instruction_data(split_instruction_data(records[:40]))
    loader = DataLoader(
        dataset["train"],
        batch_size=8,
        shuffle=False,
        collate_fn=partial(custom_collate_fn, allowed_max_length=1024),
    )
    batch = next(iter(loader))
    lengths = [len(ids) for ids in dataset["train"][:8]["input_ids"]]
    assert batch["input_ids"].shape == (8, max(lengths)) == batch["target_ids"].shape
    # every row: its targets are its inputs shifted by one, then one end-of-text, then ignored positions
    for row, n in enumerate(lengths):
        ids = dataset["train"][row]["input_ids"]
        assert batch["target_ids"][row, : n - 1].tolist() == ids[1:]
        assert batch["target_ids"][row, n - 1].item() == 50256
        assert (batch["target_ids"][row, n:] == -100).all()


def test_extract_and_save_responses(tmp_path):
    prompt = format_input(WITHOUT_INPUT)
    generated = prompt + "\n\n### Response:\nThe antonym is 'simple'.\n<|endoftext|>junk"
    assert extract_response(generated) == "The antonym is 'simple'."
    assert extract_response(generated, prompt=prompt) == "The antonym is 'simple'."
    assert extract_response(prompt + " Simple.", prompt=prompt) == "Simple."

    path = save_responses(
        [WITH_INPUT, WITHOUT_INPUT], ["Occasion", "simple"], tmp_path / "out" / "with-response.json"
    )
    saved = json.loads(path.read_text())
    assert saved == [
        {**WITH_INPUT, "model_response": "Occasion"},
        {**WITHOUT_INPUT, "model_response": "simple"},
    ]
    assert path.read_text().startswith('[\n    {\n        "instruction"')  # indent 4, as the book
    with pytest.raises(ValueError, match="2 records but 1 responses"):
        save_responses([WITH_INPUT, WITHOUT_INPUT], ["x"], tmp_path / "bad.json")
