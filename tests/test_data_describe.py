"""describe_data: the one record of what a run trained on, for every workflow's summary and model card."""

import hashlib

from datasets import Dataset

from gpt_scratch.data.corpora import CORPORA
from gpt_scratch.data.describe import describe_data


def test_each_book_corpus_by_name_with_the_files_sha256(shared):
    for name in ("the-verdict", "sms-spam", "alpaca-book"):
        path = shared / "data" / CORPORA[name].filename
        expected = {"name": name, "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        assert describe_data(name) == [expected]
        assert describe_data(str(path)) == [expected]  # a path to a known corpus keeps the corpus name


def test_files_globs_and_datasets(tmp_path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    records = describe_data(str(tmp_path / "*.txt"))
    assert [(r["name"], r["file"]) for r in records] == [("a", "a.txt"), ("b", "b.txt")]
    assert records[0]["sha256"] == hashlib.sha256(b"first").hexdigest()
    assert describe_data(Dataset.from_dict({"text": ["x"]})) == [
        {"name": "dataset", "file": None, "sha256": None}
    ]
