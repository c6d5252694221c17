"""Issue 12, tried as a user would: figures that were silently wrong, and mistakes that ended in a misleading
message or a traceback. Each test failed before its fix."""

import json
import logging

import pytest
import torch
from safetensors.torch import load_file

from gpt_scratch.cli import main
from gpt_scratch.data.classification import prepare_classification_data
from gpt_scratch.data.pretraining import load_text
from gpt_scratch.metrics.classification import classification_metrics
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.workflows.classify import ClassifyOptions, finetune_classifier, load_classifier

from conftest import tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------------------------
# Metrics with more than two classes


def test_three_classes_report_macro_and_per_class_figures_computed_by_hand(caplog):
    references = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    predictions = [0, 1, 0, 1, 2, 2, 2, 0, 2, 1]
    # class 0: 3 predicted, 2 right, 3 true -> P 2/3, R 2/3, F1 2/3
    # class 1: 3 predicted, 1 right, 2 true -> P 1/3, R 1/2, F1 2/5
    # class 2: 4 predicted, 3 right, 5 true -> P 3/4, R 3/5, F1 2/3
    m = classification_metrics(predictions, references, num_labels=3)
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["precision_per_class"] == pytest.approx([2 / 3, 1 / 3, 3 / 4])
    assert m["recall_per_class"] == pytest.approx([2 / 3, 1 / 2, 3 / 5])
    assert m["f1_per_class"] == pytest.approx([2 / 3, 2 / 5, 2 / 3])
    assert m["precision_macro"] == pytest.approx((2 / 3 + 1 / 3 + 3 / 4) / 3)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 1 / 2 + 3 / 5) / 3)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3)  # the mean of the F1s, as scikit-learn
    assert "precision" not in m  # no figure of one class chosen by id under the binary name
    # a declared class never seen counts as 0 in the mean
    m4 = classification_metrics(predictions, references, num_labels=4)
    assert m4["f1_macro"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 4)
    # --positive-label has no meaning with three classes: said so, not silently ignored
    from gpt_scratch.workflows.classify import _positive_id

    with caplog.at_level(logging.WARNING):
        _positive_id("good", {"bad": 0, "meh": 1, "good": 2})
    assert "positive_label 'good' is not used with 3 classes" in caplog.text
    # two classes: the binary figures of the positive class, as before
    binary = classification_metrics([1, 0, 1, 1], [1, 1, 0, 1])
    assert (binary["precision"], binary["recall"]) == (pytest.approx(2 / 3), pytest.approx(2 / 3))


# ----------------------------------------------------------------------------------------------------------------
# Classification data: duplicates across splits, too few rows


def _table(path, rows):
    path.write_text("text,label\n" + "".join(f'"{t}",{label}\n' for t, label in rows))
    return path


@pytest.mark.needs_shared
def test_duplicates_in_train_and_test_are_counted_and_dedupe_removes_them(tmp_path, caplog):
    rows = [(f"message number {i}", "ham" if i % 2 else "spam") for i in range(40)]
    rows += rows[:20]  # 20 exact duplicates
    table = _table(tmp_path / "dups.csv", rows)
    with caplog.at_level(logging.WARNING):
        data = prepare_classification_data(table)
    train = {
        (tuple(ids), label)
        for ids, label in zip(
            data.dataset["train"]["input_ids"], data.dataset["train"]["labels"], strict=True
        )
    }
    leaked = {
        split: sum(
            (tuple(ids), label) in train for ids, label in zip(d["input_ids"], d["labels"], strict=True)
        )
        for split, d in data.dataset.items()
        if split != "train"
    }
    assert sum(leaked.values()) > 0 and data.num_duplicates == sum(leaked.values())
    assert (
        f"{leaked['validation']} validation and {leaked['test']} test rows are exact duplicates"
        in caplog.text
    )
    assert "dups.csv" in caplog.text and "--dedupe" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        deduped = prepare_classification_data(table, dedupe=True)
    assert "removed 20 exact duplicate rows" in caplog.text and deduped.num_duplicates == 20
    all_rows = [
        (tuple(ids), label)
        for d in deduped.dataset.values()
        for ids, label in zip(d["input_ids"], d["labels"], strict=True)
    ]
    assert len(all_rows) == len(set(all_rows)) == 40
    assert ClassifyOptions(dedupe=True).dedupe  # the --dedupe flag
    from gpt_scratch.cli import build_parser

    assert (
        build_parser("finetune-classifier")
        .parse_args(["finetune-classifier", "--model", "m", "--dedupe"])
        .dedupe
    )


@pytest.mark.needs_shared
def test_too_few_rows_and_records_are_clear_cli_errors(tmp_path, capsys):
    one_row = _table(tmp_path / "one.csv", [("just one", "spam")])
    assert (
        main(
            [
                "finetune-classifier",
                str(one_row),
                "--model",
                str(tmp_path),
                "--output-dir",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("gpt-scratch finetune-classifier: error: ") and "Traceback" not in err
    assert "one.csv: 1 valid rows, too few" in err and "at least 10" in err

    nine = _table(tmp_path / "nine.csv", [(f"text {i}", "ab"[i % 2]) for i in range(9)])
    with pytest.raises(ValueError, match=r"nine.csv: 9 valid rows, too few: a 70%/10%/20% .* at least 10"):
        prepare_classification_data(nine)
    ten = _table(tmp_path / "ten.csv", [(f"text {i}", "ab"[i % 2]) for i in range(10)])
    assert [len(d) for d in prepare_classification_data(ten).dataset.values()] == [7, 1, 2]
    unbalanced = _table(tmp_path / "unbalanced.csv", [(f"text {i}", "b" if i else "a") for i in range(12)])
    with pytest.raises(ValueError, match=r"unbalanced.csv: 2 rows left after balancing, too few"):
        prepare_classification_data(unbalanced, balance=True)

    GPTScratchForCausalLM(tiny_config()).save_pretrained(tmp_path / "lm")
    capsys.readouterr()
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    argv = [
        "finetune-instructions",
        str(empty),
        "--model",
        str(tmp_path / "lm"),
        "--output-dir",
        str(tmp_path / "i"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpt-scratch finetune-instructions: error: ") and "empty.json: no records" in err
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"instruction": "Say hi.", "input": "", "output": "Hi."}]))
    assert main([*argv[:1], str(one), *argv[2:]]) == 2
    assert "one.json: 1 record(s), too few" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# A model folder whose config does not match its weights


@pytest.fixture
def lm_folder(tmp_path):
    torch.manual_seed(0)
    folder = tmp_path / "lm"
    GPTScratchForCausalLM(tiny_config()).save_pretrained(folder)
    return folder


def test_config_not_matching_the_weights_is_refused_naming_the_tensors(lm_folder, tmp_path, capsys):
    from gpt_scratch.generation.inference import load_model

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes((lm_folder / "model.safetensors").read_bytes())
    config = json.loads((lm_folder / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**config, "emb_dim": 32}))
    pattern = r"bad: config.json does not match the saved weights .*model.tok_emb.weight: \(50257, 16\) in the weights, \(50257, 32\) in config.json"
    with pytest.raises(ValueError, match=pattern):
        load_classifier(bad, {"ham": 0, "spam": 1})
    with pytest.raises(ValueError, match=pattern):
        load_model(bad)
    argv = ["finetune-classifier", "--model", str(bad), "--output-dir", str(tmp_path / "run")]
    assert main(argv) == 2 and "does not match the saved weights" in capsys.readouterr().err


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_expected_new_head_loads_quietly_with_the_saved_backbone(lm_folder, tmp_path):
    saved = load_file(str(lm_folder / "model.safetensors"))
    records = _Records()  # transformers' loggers do not propagate to pytest's caplog
    logging.getLogger("transformers.modeling_utils").addHandler(records)
    try:
        model = load_classifier(lm_folder, {"a": 0, "b": 1, "c": 2})
        model.save_pretrained(tmp_path / "cls")  # a classifier with other labels: a new head again
        assert load_classifier(tmp_path / "cls", {"x": 0, "y": 1}).score.weight.shape == (2, 16)
    finally:
        logging.getLogger("transformers.modeling_utils").removeHandler(records)
    assert records.messages == []  # no load report, no "not sharded" list
    for name, tensor in model.model.state_dict().items():
        assert torch.equal(tensor, saved[f"model.{name}"]), name
    assert model.score.weight.shape == (3, 16)


def test_max_length_beyond_the_context_names_the_value_and_the_context(lm_folder, tmp_path, shared):
    table = _table(tmp_path / "t.csv", [(f"text {i}", "ab"[i % 2]) for i in range(20)])
    with pytest.raises(
        ValueError, match=r"max_length \(--max-length\) is 100, more than the model's context_length of 64"
    ):
        finetune_classifier(lm_folder, table, options=ClassifyOptions(max_length=100))


# ----------------------------------------------------------------------------------------------------------------
# A corpus of NUL bytes


def test_nul_bytes_in_a_corpus_are_warned_about_or_refused(tmp_path, caplog):
    nul = tmp_path / "zeros.txt"
    nul.write_bytes(b"\x00" * 1000 + b"\n \n")
    with pytest.raises(ValueError, match=r"zeros.txt: the file holds only NUL bytes and whitespace"):
        load_text(nul)
    part = tmp_path / "part.txt"
    part.write_bytes(b"Every effort moves you" + b"\x00" * 78)
    with caplog.at_level(logging.WARNING):
        assert load_text(part).startswith("Every effort")
    assert "part.txt: 78 NUL bytes (78.0% of the characters)" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# Generating past the context: the book's generate crops the context from the left


@pytest.mark.needs_shared
@pytest.mark.parametrize("prompt_words", [3, 40])  # a prompt that fits, and one longer than the context
def test_generating_past_the_context_crops_it_as_the_books_generate(prompt_words, tmp_path, capsys):
    from gpt_scratch.generation.book import generate
    from gpt_scratch.generation.fast_generate import generate_fast
    from gpt_scratch.generation.inference import generate_text
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(context_length=16)).eval()
    tokenizer = GPTScratchTokenizer()
    prompt = " ".join(["Every effort moves you"] * prompt_words)[: prompt_words * 6]
    ids = torch.tensor([tokenizer.encode(prompt)])
    book = generate(model, ids, max_new_tokens=40, context_size=16)  # greedy, no end-of-text stop
    assert book.shape[1] == ids.shape[1] + 40
    assert torch.equal(generate_fast(model, ids, 40), book)
    text = generate_text(model, tokenizer, prompt, max_new_tokens=40)
    with_eos = generate(model, ids, max_new_tokens=40, context_size=16, eos_id=50256)
    assert text == tokenizer.decode(with_eos[0].tolist())  # the book stops at end-of-text too

    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    assert main(["generate", str(tmp_path / "lm"), "--prompt", prompt, "--max-new-tokens", "40"]) == 0
    assert capsys.readouterr().out.rstrip("\n") == text
    if prompt_words == 3:  # values generate cannot honour are refused, naming the flag (issue 22)
        for flag, value in (("--max-new-tokens", "-1"), ("--top-k", "0"), ("--top-p", "1.5")):
            assert main(["generate", str(tmp_path / "lm"), flag, value, "--temperature", "1"]) == 2
            assert (
                f"error: {flag.removeprefix('--').replace('-', '_')} ({flag}) must be"
                in capsys.readouterr().err
            )


@pytest.mark.needs_shared
def test_no_progress_bar_silences_every_progress_bar(tmp_path, capfd):
    import datasets
    import transformers

    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config().to_diff_dict()))
    flags = ["--config", str(config), "--max-steps", "1", "--final-eval-iter", "1"]
    try:
        assert main(["pretrain", *flags, "--no-progress-bar", "--output-dir", str(tmp_path / "quiet")]) == 0
        err = capfd.readouterr().err
        assert "it/s" not in err and "examples/s" not in err and "%|" not in err, err
    finally:
        datasets.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()


# ----------------------------------------------------------------------------------------------------------------
# Missing tokenizer files


@pytest.mark.needs_shared
def test_missing_tokenizer_files_are_named(lm_folder, tmp_path, capsys):
    from gpt_scratch.generation.inference import load_model
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    GPTScratchTokenizer().save_pretrained(lm_folder)
    (lm_folder / "merges.txt").unlink()
    with pytest.raises(
        FileNotFoundError, match=r"lm: tokenizer files missing: merges.txt \(GPTScratchTokenizer needs"
    ):
        load_model(lm_folder)
    assert main(["generate", str(lm_folder)]) == 2
    assert "tokenizer files missing: merges.txt" in capsys.readouterr().err

    # A transformers tokenizer whose files are gone: transformers says "install sentencepiece or tiktoken", or
    # builds an empty vocabulary that encodes nothing
    (lm_folder / "vocab.json").unlink()
    (lm_folder / "tokenizer.json").unlink()  # saved beside vocab.json + merges.txt: gone with them
    for tokenizer_class in ("PreTrainedTokenizerFast", "GPT2Tokenizer"):
        config = json.loads((lm_folder / "tokenizer_config.json").read_text())
        config.pop("auto_map", None)
        (lm_folder / "tokenizer_config.json").write_text(
            json.dumps({**config, "tokenizer_class": tokenizer_class})
        )
        with pytest.raises(
            FileNotFoundError, match=r"tokenizer files missing: vocab.json, merges.txt .*tokenizer.json"
        ):
            load_model(lm_folder)


# ----------------------------------------------------------------------------------------------------------------
# Instructions longer than the context keep the Alpaca template


@pytest.mark.needs_shared
def test_a_prompt_longer_than_the_context_keeps_its_template(tmp_path, caplog):
    from gpt_scratch.data.instructions import RESPONSE_HEADER, fit_prompt, format_input
    from gpt_scratch.generation.book import generate
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
    from gpt_scratch.workflows.instruct import chat, generate_responses

    tokenizer = GPTScratchTokenizer()
    entry = {
        "instruction": "Summarize the text " * 30 + "in one line.",
        "input": ("A long story. " * 40).strip(),
        "output": "",
    }
    ids, cut = fit_prompt(entry, tokenizer, 63)
    prompt = tokenizer.decode(ids)
    assert len(ids) <= 63 and cut == len(tokenizer.encode(format_input(entry))) - len(ids) > 0
    assert prompt.startswith("Below is an instruction") and "\n\n### Instruction:\n" in prompt
    assert "in one line.\n\n### Input:\n" in prompt and prompt.endswith(
        "A long story."
    )  # both keep their ends
    chat_ids, _ = fit_prompt(entry, tokenizer, 63, lambda e: format_input(e) + RESPONSE_HEADER)
    chat_prompt = tokenizer.decode(chat_ids)
    assert (
        "### Instruction:" in chat_prompt and chat_prompt.endswith("### Response:\n") and len(chat_ids) <= 63
    )

    # The answers are the book's generate from the fitted prompt, with a warning
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(context_length=64)).eval()
    with caplog.at_level(logging.WARNING):
        [answer] = generate_responses(model, tokenizer, [entry], max_new_tokens=10)
    assert "cut" in caplog.text and "keeping the template" in caplog.text
    book = generate(model, torch.tensor([ids]), 1, 64, eos_id=50256)
    assert answer == tokenizer.decode(book[0, len(ids) :].tolist()).replace("### Response:", "").strip()

    model.save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    book = generate(model, torch.tensor([chat_ids]), 64 - len(chat_ids), 64, eos_id=50256)
    expected = tokenizer.decode(book[0, len(chat_ids) :].tolist()).strip()
    assert chat(tmp_path / "lm", entry["instruction"], entry["input"], max_new_tokens=10) == expected


@pytest.mark.needs_shared
def test_training_records_whose_answer_is_cut_off_are_counted():
    from gpt_scratch.data.instructions import (
        count_cut_responses,
        format_input,
        format_training_text,
        tokenize_instruction_data,
    )
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    tokenizer = GPTScratchTokenizer()
    short = {"instruction": "Say hi.", "input": "", "output": "Hi."}
    long = {"instruction": "Repeat this. " * 30, "input": "", "output": "Done."}
    split = tokenize_instruction_data({"train": [short, long]}, tokenizer)["train"]
    assert count_cut_responses(split, 64) == 1
    # by the texts: the long record's output starts past the 64 tokens kept, the short one's well inside
    for entry, cut in ((short, False), (long, True)):
        response_start = len(tokenizer.encode(format_training_text(entry))) - len(
            tokenizer.encode(entry["output"])
        )
        assert (response_start >= 64) == cut
        assert len(tokenizer.encode(format_input(entry))) >= 64 or not cut
