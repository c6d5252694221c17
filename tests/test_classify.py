"""Classification fine-tuning (ch. 6) with a tiny model: trainable parts, the saved folder, pipeline, GPT-2 import."""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
from gpt_scratch.data.classification import SPAM_LABEL2ID, prepare_classification_data
from gpt_scratch.metrics.classification import classification_metrics
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchForSequenceClassification
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import TrainingConfig
from gpt_scratch.workflows.classify import (
    ClassifyOptions,
    classify,
    evaluate_classifier,
    finetune_classifier,
    load_classifier,
    parameter_counts,
    predict,
    set_trainable,
)

from conftest import PROJECT_ROOT, TINY_CONFIG, tiny_config

# vocab 50257 for the real tokenizer; context 128 holds the spam set's longest training text (120 tokens)
TINY = dict(context_length=128, drop_rate=0.1)  # overrides of conftest.tiny_config


def tiny_training(output_dir, **overrides) -> TrainingConfig:
    fast = dict(
        output_dir=str(output_dir),
        num_epochs=1,
        max_steps=4,
        batch_size=8,
        learning_rate=5e-3,
        eval_freq=2,
        eval_iter=1,
        final_eval_iter=1,
        progress_bar=False,
    )
    return TrainingConfig(**{**fast, **overrides})


pytestmark = [pytest.mark.needs_shared, pytest.mark.usefixtures("one_thread")]  # needs ../shared


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("lm")
    torch.manual_seed(0)
    GPTScratchForCausalLM(tiny_config(**TINY)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def spam_run(lm_folder, tmp_path_factory):
    """One short book-style run (last block + final norm + head) on the spam set, inspected by several tests."""
    out = tmp_path_factory.mktemp("spam") / "run"
    result = finetune_classifier(lm_folder, "sms-spam", tiny_training(out, final_eval_iter=20))
    return result, out


def test_trainable_parts_of_gpt2_small_match_the_book_and_transformers():
    import transformers

    counts = parameter_counts(GPTScratchConfig.from_preset("gpt2-small", num_labels=2))
    with torch.device("meta"):
        backbone = sum(p.numel() for p in transformers.GPT2Model(transformers.GPT2Config()).parameters())
    head = 768 * 2 + 2
    assert counts["head"] == head
    # the book's ch. 6: one block (7,087,872) + final norm (1,536) + the new head
    assert counts["last-block"] == 7_087_872 + 2 * 768 + head == 7_090_946
    assert counts["all"] == counts["total"] == backbone + head == 124_441_346


def test_set_trainable_on_a_tiny_model():
    model = GPTScratchForSequenceClassification(tiny_config(**TINY, num_labels=3))
    d = model.config.emb_dim
    block = sum(p.numel() for p in model.model.trf_blocks[-1].parameters())
    assert set_trainable(model, "head") == d * 3 + 3
    assert set_trainable(model, "last-block") == block + 2 * d + d * 3 + 3
    assert set_trainable(model, "all") == sum(p.numel() for p in model.parameters())
    set_trainable(model, "last-block")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        n
        for n, _ in model.named_parameters()
        if n.startswith(("model.trf_blocks.1.", "model.final_norm.", "score."))
    }
    with pytest.raises(ValueError, match="head, last-block, all"):
        set_trainable(model, "everything")


def test_spam_run_writes_summary_metrics_plots_and_trains_only_the_last_block(spam_run, lm_folder):
    result, out = spam_run
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["task"] == "classification" and summary["steps"] == 4
    hp = summary["hyperparameters"]
    assert hp["split_sizes"] == {"train": 1045, "validation": 149, "test": 300}  # the book's split
    assert hp["max_length"] == 120 and hp["trainable"] == "last-block" and hp["positive_label"] == "spam"
    # final metrics: the evaluate metric over the first final_eval_iter (20) batches of 8 of each split (validation,
    # 149 rows, whole), recomputed here from the model's predictions
    data = prepare_classification_data("sms-spam")
    model = result.model
    for split, prefix in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = data.dataset[split].select(range(min(160, len(data.dataset[split]))))
        expected = classification_metrics(predict(model, rows), rows["labels"])
        for metric in ("accuracy", "precision", "recall", "f1"):
            assert summary["metrics"][f"{prefix}_{metric}"] == pytest.approx(expected[metric])
    assert {"loss.png", "accuracy.png"} <= set(summary["plots"])
    assert (out / "loss.png").is_file() and (out / "accuracy.png").is_file()
    assert [r["step"] for r in result.history] == [1, 3]  # evaluated after the first step and every eval_freq
    assert all({"train_loss", "train_accuracy", "val_loss", "val_accuracy"} <= set(r) for r in result.history)

    # frozen parts are bit-identical to the pretrained LM; the last block moved
    before, after = load_file(str(lm_folder / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert torch.equal(before["model.tok_emb.weight"], after["model.tok_emb.weight"])
    assert torch.equal(
        before["model.trf_blocks.0.att.qkv.weight"], after["model.trf_blocks.0.att.qkv.weight"]
    )
    assert not torch.equal(
        before["model.trf_blocks.1.ff.layers.0.weight"], after["model.trf_blocks.1.ff.layers.0.weight"]
    )
    assert "out_head.weight" not in after and after["score.weight"].shape == (2, TINY_CONFIG["emb_dim"])


def test_saved_folder_loads_with_auto_class_and_pipeline_returns_label_names(spam_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    import gpt_scratch  # noqa: F401  (registers the Auto classes)

    result, out = spam_run
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert type(model).__name__ == "GPTScratchForSequenceClassification"
    assert model.config.id2label == {0: "ham", 1: "spam"} and model.config.label2id == SPAM_LABEL2ID
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = [
        "You are a winner you have been specially selected to receive $1000 cash or a $2000 award.",
        "Hey, just wanted to check if we're still on for dinner tonight? Let me know!",
    ]
    classifier = pipeline("text-classification", model=str(out), tokenizer=tokenizer)
    outputs = classifier(texts)
    assert all(o["label"] in ("ham", "spam") and 0.5 <= o["score"] <= 1.0 for o in outputs)
    assert [o["label"] for o in outputs] == [classify(t, model, tokenizer) for t in texts]
    # the pipeline's score is the softmax of the model's logits at the last token
    logits = model(**tokenizer(texts[:1], return_tensors="pt")).logits
    assert outputs[0]["score"] == pytest.approx(torch.softmax(logits, -1).max().item(), abs=1e-5)


def test_classify_is_the_books_classify_review(spam_run):
    result, _ = spam_run
    model, tokenizer = result.model.eval(), GPTScratchTokenizer()
    text = "Hey, just wanted to check if we're still on for dinner tonight? Let me know!"
    # the book pads to max_length with 50256; with the attention mask the last real token's logits decide
    ids = tokenizer.encode(text)
    padded = torch.tensor([ids + [50256] * (120 - len(ids))])
    mask = torch.tensor([[1] * len(ids) + [0] * (120 - len(ids))])
    with torch.no_grad():
        expected = model(input_ids=padded, attention_mask=mask).logits.argmax(-1).item()
    assert classify(text, model, tokenizer, max_length=120) == model.config.id2label[expected]
    long_text = "free prize " * 200  # cut to the context length instead of failing
    assert classify(long_text, model, tokenizer) in ("ham", "spam")


def test_other_table_with_flags(tmp_path, lm_folder):
    """A CSV with its own column names, three classes, an invalid row dropped, no balancing, a given max_length."""
    rows = ["review,sentiment"]
    words = {"good": "great lovely fine", "bad": "awful terrible poor", "meh": "okay average plain"}
    for i in range(30):
        label = list(words)[i % 3]
        rows.append(f'"{words[label]} film number {i}",{label}')
    rows.append('"",good')  # empty text
    rows.append('"a film",unknown')  # unknown label once label2id is given
    csv = tmp_path / "reviews.csv"
    csv.write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match="row 31: empty text"):
        finetune_classifier(
            lm_folder,
            csv,
            tiny_training(tmp_path / "x"),
            ClassifyOptions(text_column="review", label_column="sentiment"),
        )

    result = finetune_classifier(
        lm_folder,
        csv,
        tiny_training(tmp_path / "run", max_steps=2),
        ClassifyOptions(
            text_column="review",
            label_column="sentiment",
            labels="bad,meh,good",
            balance=False,
            max_length=6,
            drop_invalid=True,
            positive_label="good",
            trainable="all",
        ),
    )
    summary = result.summary
    assert summary["hyperparameters"]["split_sizes"] == {"train": 21, "validation": 3, "test": 6}
    assert summary["hyperparameters"]["max_length"] == 6
    assert summary["hyperparameters"]["positive_label"] is None  # three classes: every class, and macro
    assert result.model.config.id2label == {0: "bad", 1: "meh", 2: "good"}
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"]
    # Three classes: macro averages and per-class figures named by label, never one class's under "test_f1"
    metrics = summary["metrics"]
    assert "test_f1" not in metrics and "test_precision" not in metrics
    data = prepare_classification_data(
        csv, text_column="review", label_column="sentiment", label2id={"bad": 0, "meh": 1, "good": 2},
        max_length=6, drop_invalid=True,
    )  # fmt: skip
    for split, prefix in (("validation", "val"), ("test", "test")):
        predicted, true = predict(result.model, data.dataset[split]), data.dataset[split]["labels"]
        f1s = []
        for label_id, name in enumerate(("bad", "meh", "good")):  # by hand: one class against the rest
            tp = sum(p == t == label_id for p, t in zip(predicted, true, strict=True))
            precision = tp / predicted.count(label_id) if predicted.count(label_id) else 0.0
            recall = tp / true.count(label_id) if true.count(label_id) else 0.0
            f1s.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
            assert metrics[f"{prefix}_precision[{name}]"] == pytest.approx(precision)
            assert metrics[f"{prefix}_recall[{name}]"] == pytest.approx(recall)
            assert metrics[f"{prefix}_f1[{name}]"] == pytest.approx(f1s[-1])
        assert metrics[f"{prefix}_f1_macro"] == pytest.approx(sum(f1s) / 3)


def test_texts_longer_than_the_context_need_max_length(tmp_path):
    folder = tmp_path / "lm32"
    GPTScratchForCausalLM(tiny_config(**{**TINY, "context_length": 32})).save_pretrained(folder)
    with pytest.raises(ValueError, match=r"padded to 120 tokens.*context_length of 32.*--max-length"):
        finetune_classifier(folder, "sms-spam", tiny_training(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match="nowhere: no such file or folder"):
        load_classifier(tmp_path / "nowhere", SPAM_LABEL2ID)


def test_gpt2_import_path_and_cli(tmp_path):
    """A randomly initialised transformers GPT-2 -> `finetune-classifier --from-gpt2 FOLDER` -> a classifier."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    from gpt_scratch.cli import main

    torch.manual_seed(0)
    gpt2_config = GPT2Config(n_embd=16, n_layer=2, n_head=2, n_positions=128)
    GPT2LMHeadModel(gpt2_config).save_pretrained(tmp_path / "gpt2")

    # the backbone of the classifier is GPT-2's: same hidden states at the pooled (last real) token
    model = load_classifier(tmp_path / "gpt2", SPAM_LABEL2ID, from_gpt2=True).eval()
    reference = GPT2Model.from_pretrained(tmp_path / "gpt2").eval()
    ids = torch.tensor([[464, 3290, 318, 257, 50256, 50256], [15496, 11, 995, 0, 1049, 13]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    with torch.no_grad():
        hidden = reference(input_ids=ids, attention_mask=mask).last_hidden_state
        expected = model.score(hidden[torch.arange(2), torch.tensor([3, 5])])
        torch.testing.assert_close(
            model(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5, rtol=1e-4
        )
    assert model.config.drop_rate == 0.0 and model.config.id2label == {0: "ham", 1: "spam"}

    out = tmp_path / "run"
    argv = ["finetune-classifier", "--from-gpt2", str(tmp_path / "gpt2"), "--output-dir", str(out), "--max-steps", "2",
            "--eval-freq", "1", "--eval-iter", "1", "--final-eval-iter", "1", "--no-progress-bar", "--trainable", "head"]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["base_model"] == str(tmp_path / "gpt2")
    assert summary["parameters"]["trainable"] == 16 * 2 + 2
    assert summary["datasets"][0]["name"] == "sms-spam" and len(summary["datasets"][0]["sha256"]) == 64
    assert {
        "train_accuracy",
        "val_accuracy",
        "test_accuracy",
        "test_precision",
        "test_recall",
        "test_f1",
    } <= set(summary["metrics"])
    assert evaluate_classifier(  # --final-eval-iter 1: the first batch of 8 of the test split
        GPTScratchForSequenceClassification.from_pretrained(out),
        prepare_classification_data("sms-spam").dataset["test"].select(range(8)),
    )["accuracy"] == pytest.approx(summary["metrics"]["test_accuracy"])


def test_cli_defaults_are_the_books():
    from gpt_scratch.cli import build_parser

    args = build_parser("finetune-classifier").parse_args(["finetune-classifier", "--model", "x"])
    assert (args.data, args.trainable, args.drop_rate, args.lora_rank) == (
        "sms-spam",
        "last-block",
        0.0,
        None,
    )
    assert (args.learning_rate, args.weight_decay, args.num_epochs, args.batch_size) == (5e-5, 0.1, 5, 8)
    assert (args.eval_freq, args.eval_iter, args.seed) == (50, 5, 123)
    with pytest.raises(SystemExit):  # a model source is required
        build_parser("finetune-classifier").parse_args(["finetune-classifier"])


@pytest.mark.slow
def test_accelerate_launch_two_processes(tmp_path, lm_folder):
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "-m", "gpt_scratch", "finetune-classifier", "--model", str(lm_folder), "--output-dir", str(out),
               "--max-steps", "3", "--eval-freq", "1", "--eval-iter", "1", "--no-progress-bar"]  # fmt: skip
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["steps"] == 3 and 0.0 <= summary["metrics"]["test_accuracy"] <= 1.0
    assert result.stdout.count("Test accuracy:") == 1  # printed by the main process only
