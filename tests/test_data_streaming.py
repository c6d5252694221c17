"""Streaming windows (offline: local `text` and `parquet` files the tests write), against the prepared windows."""

import json

import pytest
import tiktoken
from datasets import Dataset

from gpt_scratch.data.prepare import load_source_dataset, prepare_corpus
from gpt_scratch.data.prepared import PreparedCorpus
from gpt_scratch.data.streaming import StreamingWindows
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return GPTScratchTokenizer()


@pytest.fixture(scope="module")
def parquet_files(tmp_path_factory):
    """Two parquet files (two shards of the stream) of 40 documents each."""
    folder = tmp_path_factory.mktemp("parquet")
    paths = []
    for f in range(2):
        rows = [f"File {f}, document {i}: " + "some words of text " * (3 + i % 11) for i in range(40)]
        paths.append(str(folder / f"part-{f}.parquet"))
        Dataset.from_dict({"text": rows}).to_parquet(paths[-1])
    return paths


def stream(files, builder="parquet"):
    return load_source_dataset(builder, None, files, "train", streaming=True)


def as_lists(windows) -> list[list[int]]:
    return [w["input_ids"].tolist() + w["target_ids"][-1:].tolist() for w in windows]


def test_streaming_windows_equal_the_prepared_sequential_windows(tmp_path, tokenizer, parquet_files):
    prepare_corpus(
        None, tmp_path / "p", tokenizer, dataset="parquet", data_files=parquet_files, train_ratio=1.0,
        progress_bar=False,
    )  # fmt: skip
    prepared = PreparedCorpus(tmp_path / "p", tokenizer).windows("train", 32)
    streamed = as_lists(StreamingWindows(stream(parquet_files), tokenizer, 32))
    assert len(streamed) == len(prepared) > 50
    assert streamed == [
        prepared[i]["input_ids"].tolist() + prepared[i]["target_ids"][-1:].tolist()
        for i in range(len(prepared))
    ]


def test_a_stream_resumes_exactly_from_its_state(tokenizer, parquet_files):
    reference = as_lists(StreamingWindows(stream(parquet_files), tokenizer, 32))
    first = StreamingWindows(stream(parquet_files), tokenizer, 32)
    iterator = iter(first)
    seen = as_lists(next(iterator) for _ in range(23))
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint would store
    assert state["buffer"]  # mid-document: tokens read but not yet used
    resumed = StreamingWindows(stream(parquet_files), tokenizer, 32)
    resumed.load_state_dict(state)
    assert seen + as_lists(resumed) == reference


def test_each_process_reads_its_own_shard(tokenizer, parquet_files):
    for rank in range(2):
        split = as_lists(StreamingWindows(stream(parquet_files), tokenizer, 32, rank=rank, world_size=2))
        alone = as_lists(StreamingWindows(stream(parquet_files[rank : rank + 1]), tokenizer, 32))
        assert split == alone and split


def test_the_first_window_needs_only_the_first_documents(tmp_path, tokenizer):
    path = tmp_path / "lines.txt"
    path.write_text("".join(f"Line {i} of a long text file that is streamed.\n" for i in range(20000)))
    windows = StreamingWindows(stream([str(path)], "text"), tokenizer, 32)
    encoded = []
    encode = windows.encode
    windows.encode = lambda text: encoded.append(text) or encode(text)
    first = next(iter(windows))
    gpt2 = tiktoken.get_encoding("gpt2")
    assert len(encoded) <= 5  # of 20,000 lines
    assert (
        first["input_ids"].tolist()
        == (
            gpt2.encode("Line 0 of a long text file that is streamed.")
            + [50256]
            + gpt2.encode("Line 1 of a long text file that is streamed.")
            + [50256]
            + gpt2.encode("Line 2 of a long text file that is streamed.")
        )[:32]
    )


def test_prepare_from_a_stream_splits_documents_by_val_ratio(tmp_path, tokenizer, parquet_files):
    meta = prepare_corpus(
        None, tmp_path / "s", tokenizer, dataset="parquet", data_files=parquet_files, streaming=True,
        val_ratio=0.1, progress_bar=False,
    )  # fmt: skip
    full = prepare_corpus(
        None, tmp_path / "f", tokenizer, dataset="parquet", data_files=parquet_files, val_ratio=0.1,
        progress_bar=False,
    )  # fmt: skip
    for split in ("train", "validation"):
        assert meta["splits"][split]["shards"] == full["splits"][split]["shards"]
    assert 0 < meta["splits"]["validation"]["tokens"] < meta["splits"]["train"]["tokens"]
    with pytest.raises(ValueError, match="with streaming, use val_ratio"):
        prepare_corpus(
            None,
            tmp_path / "x",
            tokenizer,
            dataset="parquet",
            data_files=parquet_files,
            streaming=True,
            train_ratio=0.9,
        )
