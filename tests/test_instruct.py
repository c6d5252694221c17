"""Instruction fine-tuning (ch. 7) with a tiny model: answers equal the book's one-by-one decoding, perplexity
equals transformers' loss, and the whole workflow (library and CLI) with a judge served on 127.0.0.1."""

import json
import math
import re
from functools import partial

import pytest
import torch
from test_judge import send, serve, unused_port

from gpt_scratch.cli import main as cli_main
from gpt_scratch.data.instructions import (
    RESPONSE_HEADER,
    custom_collate_fn,
    format_input,
    format_training_text,
    load_instruction_data,
)
from gpt_scratch.generation.book import generate, text_to_token_ids, token_ids_to_text
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import TrainingConfig
from gpt_scratch.workflows.instruct import (
    BOOK_TRAINING,
    RESPONSES_FILE,
    InstructOptions,
    chat,
    evaluate_with_judge,
    finetune_instructions,
    generate_responses,
    perplexity,
)
from gpt_scratch.workflows.judge import JudgeClient

from conftest import tiny_config

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared


def tiny_model(context_length: int = 128, seed: int = 123) -> GPTScratchForCausalLM:
    torch.manual_seed(seed)
    return GPTScratchForCausalLM(tiny_config(context_length=context_length)).eval()


@pytest.fixture(scope="module")
def tokenizer():
    return GPTScratchTokenizer()


@pytest.fixture(scope="module")
def records():
    return load_instruction_data("alpaca-book")


def book_answer(model, tokenizer, entry, max_new_tokens, response_marker=False):
    """Chapter 7's loop: generate(..., eos_id=50256) one record at a time, the text after the prompt (which ends
    in `### Response:` with `response_marker`, as the chat template's generation prompt)."""
    input_text = format_input(entry) + (RESPONSE_HEADER if response_marker else "")
    idx = text_to_token_ids(input_text, tokenizer)
    token_ids = generate(model, idx, max_new_tokens, model.config.context_length, eos_id=50256)
    generated_text = token_ids_to_text(token_ids, tokenizer)
    return generated_text[len(input_text) :].replace("### Response:", "").strip()


def test_book_defaults():
    assert (BOOK_TRAINING.learning_rate, BOOK_TRAINING.weight_decay) == (5e-5, 0.1)
    assert (BOOK_TRAINING.num_epochs, BOOK_TRAINING.batch_size) == (2, 8)
    assert (BOOK_TRAINING.eval_freq, BOOK_TRAINING.eval_iter) == (5, 5)


def test_batched_answers_equal_the_books_one_by_one_decoding(tokenizer, records):
    # Context 64: prompts of 31-48 tokens leave 16-33 new tokens, so batch rows are cut short by the longest
    # prompt and continued alone. End-of-text is made to replace the random model's favourite token, so some
    # answers stop early and some run until the context is full.
    model = tiny_model(context_length=64)
    entries = records[:8]
    with torch.no_grad():
        model.out_head.weight[50256] = 1.05 * model.out_head.weight[41520]
    budgets = [64 - len(tokenizer.encode(format_input(e))) for e in entries]
    batched = generate_responses(model, tokenizer, entries, max_new_tokens=300, batch_size=4)
    expected = [book_answer(model, tokenizer, e, n) for e, n in zip(entries, budgets, strict=True)]
    assert batched == expected
    assert generate_responses(model, tokenizer, entries, max_new_tokens=300, batch_size=1) == expected
    lengths = [len(tokenizer.encode(a)) for a in batched]
    assert any(n < b - 2 for n, b in zip(lengths, budgets, strict=True)), "no answer stopped at end-of-text"
    assert any(n >= b - 1 for n, b in zip(lengths, budgets, strict=True)), "every answer stopped early"
    assert "" in batched  # one answer is end-of-text at once

    # max_new_tokens, not the context, ends the answers here
    short = generate_responses(model, tokenizer, entries[:3], max_new_tokens=5, batch_size=3)
    assert short == [book_answer(model, tokenizer, e, 5) for e in entries[:3]]


def test_perplexity_is_the_token_mean_of_transformers_loss(tokenizer, records):
    model = tiny_model()
    ids = [tokenizer.encode(format_input(r)) for r in records[:3]]
    # One record: the training targets are the text shifted by one, then end-of-text: transformers' loss of
    # the text + end-of-text.
    with_eos = torch.tensor([ids[0] + [50256]])
    reference = model(input_ids=with_eos, labels=with_eos).loss.item()
    assert perplexity(model, [ids[0]]) == pytest.approx(math.exp(reference), rel=1e-5)
    # Several records of different lengths, padded in batches of 2: the mean over all target tokens
    nll, count = 0.0, 0
    for row in ids:
        t = torch.tensor([row + [50256]])
        nll += model(input_ids=t, labels=t).loss.item() * len(row)
        count += len(row)
    assert perplexity(model, ids, batch_size=2) == pytest.approx(math.exp(nll / count), rel=1e-5)
    loader = torch.utils.data.DataLoader(ids, batch_size=3, collate_fn=partial(custom_collate_fn))
    assert perplexity(model, loader) == pytest.approx(math.exp(nll / count), rel=1e-5)


def test_evaluate_with_judge_takes_a_function():
    entries = [{"instruction": "Say hi.", "input": "", "output": "Hi.", "model_response": "Hi."}] * 2
    result = evaluate_with_judge(entries, lambda prompt: "I would say 85.")
    assert result.scores == [85, 85] and result.average == 85


# ----------------------------------------------------------------------------------------------------------------
# The workflow


def judge_ollama(handler, request):
    """Ollama's /api/chat: 90 when the model's answer is the reference, else 30; no number for one record."""
    prompt = request["messages"][0]["content"]
    if "Name the author" in prompt:  # a record the judge answers without a number
        answer = "I cannot judge this."
    else:
        response = re.search(r"score the model response `(.*)` on a scale", prompt, re.S).group(1)
        reference = re.search(r"and correct output `(.*)`, score", prompt, re.S).group(1)
        answer = "90" if response == reference else "30"
    line = {"model": request["model"], "message": {"role": "assistant", "content": answer}, "done": True}
    send(handler, (json.dumps(line) + "\n").encode(), content_type="application/x-ndjson")


SUBSET = 20  # 17 train / 1 validation / 2 test


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, tokenizer):
    """A 'pretrained' tiny model saved with its tokenizer, as `gpt-scratch pretrain` leaves it."""
    folder = tmp_path_factory.mktemp("base")
    tiny_model(context_length=256).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def data_file(tmp_path_factory, records):
    path = tmp_path_factory.mktemp("data") / "subset.json"
    subset = records[:SUBSET]
    # Record 13 lands in the test split with split_seed=123 (torch.randperm(20) with seed 123: test = [13, 3])
    subset[13] = {
        "instruction": "Name the author of 'Pride and Prejudice'.",
        "input": "",
        "output": "Jane Austen.",
    }
    path.write_text(json.dumps(subset))
    return path


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory, base_folder, data_file):
    out = tmp_path_factory.mktemp("instruct")
    training = TrainingConfig(
        output_dir=str(out),
        num_epochs=2,
        batch_size=4,
        learning_rate=5e-3,
        eval_freq=2,
        eval_iter=2,
        progress_bar=False,
    )
    with serve(judge_ollama) as (url, requests):
        result = finetune_instructions(
            base_folder, data_file, training, InstructOptions(max_new_tokens=16), judge=JudgeClient(url)
        )
    return result, out, requests


def test_workflow_trains_answers_and_judges(finetuned, tokenizer, data_file):
    result, out, requests = finetuned
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["task"] == "instruction"
    assert summary["steps"] == 8  # 17 records -> 4 batches of 4 (last one dropped) x 2 epochs
    assert summary["hyperparameters"]["split_sizes"] == {"train": 17, "validation": 1, "test": 2}
    assert summary["hyperparameters"]["learning_rate"] == 5e-3
    assert summary["datasets"][0]["file"] == "subset.json"
    assert (out / "loss.png").is_file() and (out / "model.safetensors").is_file()
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [1, 3, 5, 7]
    assert history[-1]["train_loss"] < history[0]["train_loss"]

    # The answers: the test records, each with the model's answer, as the book saves them
    saved = json.loads((out / RESPONSES_FILE).read_text())
    assert len(saved) == 2 and saved == result.responses
    assert all(set(e) == {"instruction", "input", "output", "model_response"} for e in saved)
    subset = json.loads(data_file.read_text())
    assert all(any(e["instruction"] == r["instruction"] for r in subset) for e in saved)
    model = result.model.eval()
    assert [e["model_response"] for e in saved] == [book_answer(model, tokenizer, e, 16) for e in saved]

    # Perplexity over the 2 test records, and the judge's scores in the summary
    metrics = summary["metrics"]
    assert metrics["test_perplexity"] == pytest.approx(result.perplexity)
    assert 1 < result.perplexity < 50257 * 2
    assert (
        len(requests) == 2 and requests[0]["path"] == "/api/chat" and requests[0]["body"]["model"] == "llama3"
    )
    expected = [None if "Name the author" in e["instruction"] else 30 for e in saved]
    assert expected[0] is None  # the judge's answer without a number is counted, not fatal
    assert result.judge.scores == expected
    assert metrics["judge_num_scored"] == sum(s is not None for s in expected)
    assert metrics["judge_num_unscored"] == expected.count(None)
    assert summary["judge"]["scores"] == expected and summary["judge"]["api"] == "ollama"


def test_saved_model_generates_with_transformers(finetuned, tokenizer):
    from transformers import AutoModelForCausalLM, pipeline

    import gpt_scratch  # noqa: F401  (registers the Auto classes)

    _, out, _ = finetuned
    prompt = format_input({"instruction": "Convert 45 kilometers to meters.", "input": ""})
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    generated = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=50256)
    book = generate(model, ids, 8, model.config.context_length)
    assert generated[0].tolist() == book[0].tolist()[: generated.shape[1]]  # generate stops at end-of-text
    text = pipeline("text-generation", model=out)(prompt, max_new_tokens=8, do_sample=False)[0]
    assert text["generated_text"] == tokenizer.decode(generated[0])


def test_chat_cli_answers_with_the_chat_template(finetuned, tokenizer, capsys):
    result, out, _ = finetuned
    model = result.model.eval()
    entry = result.responses[0]
    answer = chat(out, entry["instruction"], entry["input"], max_new_tokens=16)
    assert answer == book_answer(model, tokenizer, entry, 16, response_marker=True)
    assert cli_main(["chat", str(out), "--instruction", "Say hi.", "--max-new-tokens", "8"]) == 0
    printed = capsys.readouterr().out.strip()
    entry = {"instruction": "Say hi.", "input": ""}
    assert printed == book_answer(model, tokenizer, entry, 8, response_marker=True)


def test_saved_chat_template_is_the_books_prompt_and_drives_chat_pipelines(finetuned):
    from transformers import AutoTokenizer, pipeline

    import gpt_scratch  # noqa: F401  (registers the Auto classes)

    result, out, _ = finetuned
    saved = AutoTokenizer.from_pretrained(out)
    entry = {
        "instruction": "Rewrite the sentence using a simile.",
        "input": "The car is fast.",
        "output": "Fast.",
    }
    messages = [
        {"role": "system", "content": entry["instruction"]},
        {"role": "user", "content": entry["input"]},
    ]
    prompt = saved.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt == format_input(entry) + RESPONSE_HEADER
    alone = [{"role": "user", "content": "Say hi."}]
    assert saved.apply_chat_template(alone, add_generation_prompt=True, tokenize=False) == (
        format_input({"instruction": "Say hi.", "input": ""}) + RESPONSE_HEADER
    )
    answered = messages + [{"role": "assistant", "content": entry["output"]}]
    assert (
        saved.apply_chat_template(answered, tokenize=False) == format_training_text(entry) + "<|endoftext|>"
    )
    reply = pipeline("text-generation", model=str(out))(messages, max_new_tokens=8, do_sample=False)
    assert reply[0]["generated_text"][-1]["role"] == "assistant"
    expected = chat(out, entry["instruction"], entry["input"], max_new_tokens=8)
    assert reply[0]["generated_text"][-1]["content"].strip() == expected


def test_cli_with_an_unreachable_judge_finishes_and_counts_unscored(tmp_path, base_folder, data_file, capsys):
    out = tmp_path / "cli"
    url = f"http://127.0.0.1:{unused_port()}"
    args = ["finetune-instructions", str(data_file), "--model", str(base_folder), "--output-dir", str(out)]
    args += ["--max-steps", "2", "--batch-size", "4", "--max-new-tokens", "4", "--no-progress-bar"]
    args += ["--judge-url", url, "--judge-api", "openai", "--judge-timeout", "5", "--no-shuffle-split"]
    assert cli_main(args) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 2
    assert summary["hyperparameters"]["split_seed"] is None and summary["hyperparameters"]["drop_rate"] == 0.0
    assert summary["metrics"]["judge_num_unscored"] == 2 and summary["metrics"]["judge_num_scored"] == 0
    assert "cannot reach the judge" in summary["judge"]["reasons"]["0"]
    saved = json.loads((out / RESPONSES_FILE).read_text())
    assert [e["instruction"] for e in saved] == [
        r["instruction"] for r in json.loads(data_file.read_text())[17:19]
    ]
    printed = capsys.readouterr().out
    assert "Scored 0 of 2 records" in printed and "test perplexity" in printed
