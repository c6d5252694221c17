"""Chapter 6 data: the book's spam splits and padding, other tables, invalid rows, and the offline metric."""

import json
import logging

import evaluate
import numpy as np
import pandas as pd
import pytest
import tiktoken
from datasets import Dataset
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from gpt_scratch.data.classification import (
    create_balanced_dataset,
    encode_texts,
    load_classification_rows,
    prepare_classification_data,
    random_split,
)
from gpt_scratch.metrics import CLASSIFICATION_METRIC_PATH, ClassificationMetric, classification_metrics

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared


@pytest.fixture(scope="module")
def spam():
    return prepare_classification_data("sms-spam")


@pytest.fixture(scope="module")
def book_splits(shared):
    """The book's own pandas code (chapter 6), run on the shared file."""
    df = pd.read_csv(shared / "data" / "SMSSpamCollection", sep="\t", header=None, names=["Label", "Text"])
    num_spam = df[df["Label"] == "spam"].shape[0]
    ham_subset = df[df["Label"] == "ham"].sample(num_spam, random_state=123)
    balanced_df = pd.concat([ham_subset, df[df["Label"] == "spam"]])
    balanced_df["Label"] = balanced_df["Label"].map({"ham": 0, "spam": 1})
    df = balanced_df.sample(frac=1, random_state=123).reset_index(drop=True)
    train_end = int(len(df) * 0.7)
    validation_end = train_end + int(len(df) * 0.1)
    return {"train": df[:train_end], "validation": df[train_end:validation_end], "test": df[validation_end:]}


def test_book_numbers(spam):
    rows, dropped = load_classification_rows("sms-spam")
    assert dropped == 0 and len(rows.texts) == 5572
    assert (rows.labels.count(0), rows.labels.count(1)) == (4825, 747)
    balanced = create_balanced_dataset(rows)
    assert (balanced.labels.count(0), balanced.labels.count(1)) == (747, 747)
    assert {split: len(part.texts) for split, part in random_split(balanced).items()} == {
        "train": 1045,
        "validation": 149,
        "test": 300,
    }
    assert {split: ds.num_rows for split, ds in spam.dataset.items()} == {
        "train": 1045,
        "validation": 149,
        "test": 300,
    }
    assert spam.max_length == 120
    assert spam.label2id == {"ham": 0, "spam": 1} and spam.id2label == {0: "ham", 1: "spam"}
    assert spam.dataset["train"].column_names == ["input_ids", "attention_mask", "labels"]


def test_same_rows_and_tokens_as_the_book(spam, book_splits):
    tokenizer = tiktoken.get_encoding("gpt2")
    for split, frame in book_splits.items():
        ds = spam.dataset[split]
        assert list(ds["labels"]) == frame["Label"].tolist()
        for i in (0, 7, len(frame) - 1):
            ids = tokenizer.encode(frame["Text"].iloc[i])[:120]
            assert ds[i]["input_ids"] == ids + [50256] * (120 - len(ids))
            assert ds[i]["attention_mask"] == [1] * len(ids) + [0] * (120 - len(ids))


def test_padding_and_truncation(spam):
    for ds in spam.dataset.values():
        assert {len(ids) for ids in list(ds["input_ids"])} == {120}
        # padding is 50256 exactly where the mask is 0
        ids, mask = np.array(list(ds["input_ids"])), np.array(list(ds["attention_mask"]))
        assert np.all(ids[mask == 0] == 50256)
    assert max(sum(m) for m in list(spam.dataset["train"]["attention_mask"])) == 120

    short = prepare_classification_data("sms-spam", max_length=16)
    assert short.max_length == 16
    for ds in short.dataset.values():
        assert {len(ids) for ids in list(ds["input_ids"])} == {16}
    assert short.dataset["train"][0]["input_ids"] == spam.dataset["train"][0]["input_ids"][:16]


def test_unbalanced_and_other_seed():
    full = prepare_classification_data("sms-spam", balance=False)
    sizes = [ds.num_rows for ds in full.dataset.values()]
    assert sizes == [int(5572 * 0.7), int(5572 * 0.1), 5572 - int(5572 * 0.7) - int(5572 * 0.1)]
    other = prepare_classification_data("sms-spam", seed=1)
    assert list(other.dataset["test"]["labels"]) != list(full.dataset["test"]["labels"])[:300]
    assert other.dataset["train"][0] != prepare_classification_data("sms-spam").dataset["train"][0]


THREE_CLASSES = [
    {"text": "I love this film", "sentiment": "positive"},
    {"text": "Terrible acting", "sentiment": "negative"},
    {"text": "It was a film", "sentiment": "neutral"},
    {"text": "Great fun", "sentiment": "positive"},
    {"text": "Dull and long", "sentiment": "negative"},
    {"text": "Saw it on Tuesday", "sentiment": "neutral"},
    {"text": "Wonderful", "sentiment": "positive"},
    {"text": "Awful", "sentiment": "negative"},
    {"text": "Exists", "sentiment": "neutral"},
    {"text": "Best of the year", "sentiment": "positive"},
]
LABEL2ID = {"negative": 0, "neutral": 1, "positive": 2}


def write_table(tmp_path, suffix, rows):
    path = tmp_path / f"table{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(rows))
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", "dataset"])
def test_any_table_three_classes(tmp_path, suffix):
    source = (
        Dataset.from_list(THREE_CLASSES)
        if suffix == "dataset"
        else write_table(tmp_path, suffix, THREE_CLASSES)
    )
    data = prepare_classification_data(source, label_column="sentiment", label2id=LABEL2ID, seed=0)
    assert [ds.num_rows for ds in data.dataset.values()] == [7, 1, 2]
    assert data.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    texts = {r["text"]: LABEL2ID[r["sentiment"]] for r in THREE_CLASSES}
    encoded = encode_texts(tiktoken.get_encoding("gpt2"), list(texts))
    # validation and test texts longer than the longest training text are cut to its length
    encodings = {
        tuple(ids[: data.max_length]): label for ids, label in zip(encoded, texts.values(), strict=True)
    }
    seen = 0
    for ds in data.dataset.values():
        for row in ds:
            real = tuple(row["input_ids"][: sum(row["attention_mask"])])
            assert encodings[real] == row["labels"]
            seen += 1
    assert seen == 10


def test_labels_inferred_and_balanced(tmp_path):
    rows = THREE_CLASSES + [{"text": "Superb", "sentiment": "positive"}]
    data = prepare_classification_data(
        write_table(tmp_path, ".csv", rows), label_column="sentiment", balance=True, validation_frac=0.0
    )  # 9 rows: too few for a validation row too
    assert data.label2id == LABEL2ID  # sorted distinct labels
    labels = sum((list(ds["labels"]) for ds in data.dataset.values()), [])
    assert sorted(labels) == [0, 0, 0, 1, 1, 1, 2, 2, 2]  # 5 positive undersampled to 3

    numeric = Dataset.from_dict({"text": ["a", "b", "c", "d"], "label": [1, 0, 1, 3]})
    assert load_classification_rows(numeric)[0].label2id == {"0": 0, "1": 1, "3": 3}


def test_invalid_rows_named_or_dropped(tmp_path, caplog):
    rows = THREE_CLASSES[:4] + [{"text": "  ", "sentiment": "positive"}, {"text": "Fine", "sentiment": "meh"}]
    path = write_table(tmp_path, ".csv", rows)
    with pytest.raises(ValueError, match=r"table\.csv: row 5: empty text .* 'text'.*1 more invalid rows"):
        prepare_classification_data(path, label_column="sentiment", label2id=LABEL2ID)
    with pytest.raises(ValueError, match=r"table\.json: row 5: unknown label 'meh' in column 'sentiment'"):
        prepare_classification_data(
            write_table(tmp_path, ".json", rows[:4] + rows[5:]), label_column="sentiment", label2id=LABEL2ID
        )
    with pytest.raises(KeyError, match="no column 'label'"):
        prepare_classification_data(path)

    with caplog.at_level(logging.WARNING, logger="gpt_scratch.data.classification"):
        data = prepare_classification_data(
            path, label_column="sentiment", label2id=LABEL2ID, drop_invalid=True, validation_frac=0.0
        )  # 4 rows: too few for a validation row too
    assert data.num_dropped == 2 and sum(ds.num_rows for ds in data.dataset.values()) == 4
    assert "dropped 2 invalid rows" in caplog.text


def test_metric_matches_sklearn():
    rng = np.random.default_rng(0)
    references, predictions = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    for positive in (1, 2):
        got = classification_metrics(predictions, references, positive_label=positive)
        assert got["accuracy"] == pytest.approx(accuracy_score(references, predictions))
        kw = {"labels": [positive], "average": "macro", "zero_division": 0}
        assert got["precision"] == pytest.approx(precision_score(references, predictions, **kw))
        assert got["recall"] == pytest.approx(recall_score(references, predictions, **kw))
        assert got["f1"] == pytest.approx(f1_score(references, predictions, **kw))
        assert got["num_examples"] == 200
    got = classification_metrics(predictions, references, num_labels=3)  # three classes: macro and per class
    macro = {"labels": [0, 1, 2], "zero_division": 0}
    assert got["precision_macro"] == pytest.approx(
        precision_score(references, predictions, average="macro", **macro)
    )
    assert got["recall_macro"] == pytest.approx(
        recall_score(references, predictions, average="macro", **macro)
    )
    assert got["f1_macro"] == pytest.approx(f1_score(references, predictions, average="macro", **macro))
    assert got["f1_per_class"] == pytest.approx(
        list(f1_score(references, predictions, average=None, **macro))
    )
    none_predicted = classification_metrics([0, 0], [1, 0])
    assert none_predicted == {"accuracy": 0.5, "precision": 0.0, "recall": 0.0, "f1": 0.0, "num_examples": 2}


def test_metric_loads_offline_with_evaluate():
    metric = evaluate.load(CLASSIFICATION_METRIC_PATH)  # a local file: no Hub, HF_HUB_OFFLINE=1
    assert type(metric).__name__ == "ClassificationMetric"
    for predictions, references in (([1, 0], [1, 1]), ([0, 1], [0, 1])):
        metric.add_batch(predictions=predictions, references=references)
    assert metric.compute() == pytest.approx(
        {"accuracy": 0.75, "precision": 1.0, "recall": 2 / 3, "f1": 0.8, "num_examples": 4}
    )
    direct = ClassificationMetric().compute(predictions=[1, 1, 0], references=[1, 0, 0], positive_label=0)
    assert direct["precision"] == 1.0 and direct["recall"] == 0.5
