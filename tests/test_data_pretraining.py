"""Chapter 2's data pipeline as datasets, checked against the book's numbers and tiktoken."""

import numpy as np
import pytest
import tiktoken
import torch
from datasets import Dataset, DatasetDict
from hypothesis import given, settings
from hypothesis import strategies as st

from gpt_scratch.data.pretraining import (
    build_pretraining_datasets,
    create_dataloader_v1,
    load_documents,
    load_text,
    make_dataloader,
    make_windows,
    split_documents,
    split_long_text,
    tokenize_documents,
)

from conftest import BOOK_IDS, BOOK_TEXT

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files or the book's data, from ../shared

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer(hf_gpt2_tokenizer):
    """The reference: transformers' GPT-2 tokenizer built from the two BPE files of ../shared/tiktoken-cache."""
    return hf_gpt2_tokenizer


@pytest.fixture(scope="module")
def tiktoken_gpt2():
    return tiktoken.get_encoding("gpt2")


@pytest.fixture(scope="module")
def raw_text():
    return load_text("the-verdict")


def book_windows(token_ids, max_length, stride):
    """The book's GPTDatasetV1 loop, verbatim."""
    inputs, targets = [], []
    for i in range(0, len(token_ids) - max_length, stride):
        inputs.append(token_ids[i : i + max_length])
        targets.append(token_ids[i + 1 : i + max_length + 1])
    return inputs, targets


def test_the_verdict_text_and_tokens(raw_text, tokenizer, tiktoken_gpt2):
    assert len(raw_text) == 20479  # the book: "Total number of character: 20479"
    ids = tokenize_documents(Dataset.from_dict({"text": [raw_text]}), tokenizer)
    assert ids.dtype == np.int64
    assert len(ids) == 5145  # the book: 5145 tokens
    assert ids.tolist() == tiktoken_gpt2.encode(raw_text, allowed_special={EOT})


def test_endoftext_is_allowed_in_text(tokenizer):
    ids = tokenize_documents(Dataset.from_dict({"text": [BOOK_TEXT]}), tokenizer)
    assert ids.tolist() == BOOK_IDS


def test_book_chapter2_first_batches(raw_text, tokenizer):
    loader = create_dataloader_v1(raw_text, tokenizer, batch_size=1, max_length=4, stride=1, shuffle=False)
    batches = iter(loader)
    first = next(batches)
    assert first["input_ids"].tolist() == [[40, 367, 2885, 1464]]
    assert first["target_ids"].tolist() == [[367, 2885, 1464, 1807]]
    second = next(batches)
    assert second["input_ids"].tolist() == [[367, 2885, 1464, 1807]]
    assert second["target_ids"].tolist() == [[2885, 1464, 1807, 3619]]

    loader = create_dataloader_v1(raw_text, tokenizer, batch_size=8, max_length=4, stride=4, shuffle=False)
    inputs = next(iter(loader))["input_ids"]
    assert inputs.dtype == torch.long and inputs.shape == (8, 4)
    assert inputs[:3].tolist() == [[40, 367, 2885, 1464], [1807, 3619, 402, 271], [10899, 2138, 257, 7026]]


def test_book_chapter5_split_and_batches(raw_text, tokenizer, tiktoken_gpt2):
    # the book's ch. 5 set-up: context 256, stride = max_length, train_ratio 0.9
    data = build_pretraining_datasets("the-verdict", tokenizer, max_length=256)
    assert isinstance(data, DatasetDict) and list(data) == ["train", "validation"]
    train_loader = make_dataloader(data["train"], batch_size=2, shuffle=True, drop_last=True, seed=123)
    val_loader = make_dataloader(data["validation"], batch_size=2, shuffle=False, drop_last=False)
    assert len(train_loader) == 9 and len(val_loader) == 1  # the book's ch. 5 loaders
    assert sum(b["input_ids"].numel() for b in train_loader) == 4608  # "Training tokens: 4608"
    assert sum(b["input_ids"].numel() for b in val_loader) == 512  # "Validation tokens: 512"
    batch = next(iter(train_loader))
    assert set(batch) == {"input_ids", "target_ids"}
    assert batch["input_ids"].shape == batch["target_ids"].shape == (2, 256)
    assert batch["input_ids"].dtype == batch["target_ids"].dtype == torch.long

    # The same windows as the book's GPTDatasetV1 on the book's split of the text.
    split_idx = int(0.9 * len(raw_text))
    for split, text in [("train", raw_text[:split_idx]), ("validation", raw_text[split_idx:])]:
        inputs, targets = book_windows(tiktoken_gpt2.encode(text, allowed_special={EOT}), 256, 256)
        assert data[split]["input_ids"] == inputs
        assert data[split]["target_ids"] == targets


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=60),
    max_length=st.integers(min_value=1, max_value=12),
    stride=st.integers(min_value=1, max_value=15),
)
def test_make_windows_is_gptdatasetv1(n, max_length, stride):
    token_ids = list(range(1000, 1000 + n))
    inputs, targets = book_windows(token_ids, max_length, stride)
    if not inputs:
        with pytest.raises(ValueError, match=f"{n} tokens are too few for one window"):
            make_windows(token_ids, max_length, stride)
        return
    windows = make_windows(token_ids, max_length, stride)
    assert windows["input_ids"] == inputs
    assert windows["target_ids"] == targets


def test_make_windows_default_stride_and_bad_arguments():
    windows = make_windows(np.arange(9), max_length=4)
    assert windows["input_ids"] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert windows["target_ids"] == [[1, 2, 3, 4], [5, 6, 7, 8]]
    with pytest.raises(ValueError, match="stride must be >= 1"):
        make_windows(np.arange(9), max_length=4, stride=0)
    with pytest.raises(ValueError, match="one flat sequence"):
        make_windows(np.arange(9).reshape(3, 3), max_length=2)


@pytest.fixture
def three_files(tmp_path, raw_text):
    folder = tmp_path / "corpus"
    folder.mkdir()
    texts = [raw_text[:6000], raw_text[6000:13000], raw_text[13000:]]
    for i, text in enumerate(texts):
        (folder / f"part{i}.txt").write_text(text, encoding="utf-8")
    (folder / "notes.md").write_text("not part of the corpus")
    return folder, texts


@pytest.mark.parametrize("train_ratio", [0.9, 0.5, 0.25])
def test_many_files_glob_folder_and_dataset_agree_with_joined_text(
    three_files, tokenizer, tiktoken_gpt2, train_ratio
):
    folder, texts = three_files
    sources = {
        "list": [folder / "part0.txt", str(folder / "part1.txt"), folder / "part2.txt"],
        "glob": str(folder / "part*.txt"),
        "folder": folder,
        "dataset": Dataset.from_dict({"text": texts, "id": [0, 1, 2]}),
    }
    # Reference: the book's pipeline on the texts joined by <|endoftext|> (ch. 2: a token between independent texts).
    joined = EOT.join(texts)
    split_idx = int(train_ratio * len(joined))
    expected = {
        split: book_windows(tiktoken_gpt2.encode(text, allowed_special={EOT}), 64, 48)
        for split, text in [("train", joined[:split_idx]), ("validation", joined[split_idx:])]
    }
    for name, source in sources.items():
        data = build_pretraining_datasets(
            source, tokenizer, max_length=64, stride=48, train_ratio=train_ratio
        )
        for split in ["train", "validation"]:
            assert data[split]["input_ids"] == expected[split][0], (name, split)
            assert data[split]["target_ids"] == expected[split][1], (name, split)


@pytest.mark.parametrize("train_ratio", [0.1, 0.3, 0.5, 0.7, 0.99, 1.0])
def test_split_documents_cuts_the_joined_text(train_ratio):
    texts = ["a" * 10, "b" * 7, "c" * 30, "d" * 3]
    joined = EOT.join(texts)
    split_idx = int(train_ratio * len(joined))
    train, validation = split_documents(Dataset.from_dict({"text": texts}), train_ratio)
    train_text, val_text = EOT.join(train["text"]), EOT.join(validation["text"])
    if train_text + val_text == joined:  # the cut fell inside a document: exactly the book's character split
        assert len(train_text) == split_idx
    else:  # the cut fell on or inside a separator: it moves to the document boundary
        assert train_text + EOT + val_text == joined
        assert split_idx - len(EOT) <= len(train_text) <= split_idx
    if train_ratio == 1.0:
        assert len(validation) == 0


def test_train_ratio_one_has_no_validation(tokenizer):
    data = build_pretraining_datasets("the-verdict", tokenizer, max_length=256, train_ratio=1.0)
    assert list(data) == ["train"]
    assert len(data["train"]) == len(range(0, 5145 - 256, 256))


def test_overlapping_windows_and_default_stride(raw_text, tokenizer, tiktoken_gpt2):
    train_ids = tiktoken_gpt2.encode(raw_text[: int(0.9 * len(raw_text))], allowed_special={EOT})
    overlapping = build_pretraining_datasets("the-verdict", tokenizer, max_length=128, stride=64)["train"]
    assert (overlapping["input_ids"], overlapping["target_ids"]) == book_windows(train_ids, 128, 64)
    assert overlapping[1]["input_ids"][:64] == overlapping[0]["input_ids"][64:]
    default = build_pretraining_datasets("the-verdict", tokenizer, max_length=128)["train"]
    assert (default["input_ids"], default["target_ids"]) == book_windows(train_ids, 128, 128)
    assert (len(overlapping), len(default)) == (71, 36)


def test_tokenization_is_cached(tmp_path, three_files, tokenizer):
    folder, _ = three_files
    cache = tmp_path / "cache"
    first = build_pretraining_datasets(folder, tokenizer, max_length=64, cache_dir=cache)
    files = sorted(p.name for p in cache.iterdir())
    written = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(files) == 2  # train, validation
    assert all(f.startswith("tokens-") and f.endswith(".arrow") for f in files)
    second = build_pretraining_datasets(folder, tokenizer, max_length=64, cache_dir=cache)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == written  # read back, not written again
    assert second["train"]["input_ids"] == first["train"]["input_ids"]
    build_pretraining_datasets(folder, tokenizer, max_length=64, train_ratio=0.5, cache_dir=cache)
    assert len(list(cache.iterdir())) == 4  # a different split is different text: new cache files


def test_make_dataloader_seed_fixes_the_order(tokenizer):
    train = build_pretraining_datasets("the-verdict", tokenizer, max_length=32)["train"]

    def order(seed):
        return torch.cat([b["input_ids"][:, 0] for b in make_dataloader(train, 4, shuffle=True, seed=seed)])

    assert torch.equal(order(123), order(123))
    assert not torch.equal(order(123), order(124))
    assert sorted(order(123).tolist()) == sorted(train["input_ids"][i][0] for i in range(len(train)))
    unshuffled = next(iter(make_dataloader(train, 3)))
    assert unshuffled["input_ids"].tolist() == train["input_ids"][:3]


# ---------------------------------------------------------------------------------------------------------------
# Errors name the file and what is wrong


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError, match=f"{empty}: the file is empty"):
        load_text(empty)
    blank = tmp_path / "blank.txt"
    blank.write_text("  \n\n")
    with pytest.raises(ValueError, match=r"blank.txt: the file is empty \(only whitespace\)"):
        load_text(blank)


def test_not_utf8(tmp_path, tokenizer):
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("Caf\u00e9 au lait".encode("latin-1"))
    with pytest.raises(ValueError, match=r"latin1.txt: not UTF-8 text \(byte 0xe9 at offset 3"):
        load_text(latin1)
    with pytest.raises(ValueError, match="latin1.txt: not UTF-8"):
        build_pretraining_datasets(tmp_path, tokenizer, max_length=4)


def test_corpus_too_short(tmp_path, tokenizer):
    short = tmp_path / "short.txt"
    short.write_text("Every effort moves you forward, one token at a time.")  # 12 tokens
    with pytest.raises(ValueError) as e:
        build_pretraining_datasets(short, tokenizer, max_length=16, train_ratio=0.9)
    message = str(e.value)
    assert str(short) in message and "train split" in message
    assert "has 10 tokens" in message and "max_length=16 needs 17 tokens" in message
    # 8 train tokens make windows of 4, the 4 validation tokens (" at a time.") do not: the error names that split
    with pytest.raises(ValueError, match=r"validation split .* has 4 tokens.*max_length=4 needs 5"):
        build_pretraining_datasets(short, tokenizer, max_length=4, train_ratio=0.8)


def test_the_verdict_too_short_for_gpt2_context(tokenizer):
    with pytest.raises(
        ValueError, match=r"the-verdict.txt: the validation split .* max_length=1024 needs 1025"
    ):
        build_pretraining_datasets("the-verdict", tokenizer, max_length=1024)


def test_missing_sources(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="No files match the pattern"):
        build_pretraining_datasets(str(tmp_path / "*.txt"), tokenizer, max_length=4)
    with pytest.raises(FileNotFoundError, match="holds no \\*.txt files"):
        build_pretraining_datasets(tmp_path, tokenizer, max_length=4)
    with pytest.raises(ValueError, match="Unknown corpus 'no-such-corpus'.*the-verdict"):
        build_pretraining_datasets("no-such-corpus", tokenizer, max_length=4)
    with pytest.raises(ValueError, match="train_ratio must be in"):
        build_pretraining_datasets("the-verdict", tokenizer, max_length=4, train_ratio=0.0)


def test_dataset_source_errors(tokenizer):
    with pytest.raises(ValueError, match="no text column 'text' \\(columns: \\['body'\\]\\)"):
        load_documents(Dataset.from_dict({"body": ["x"]}))
    with pytest.raises(ValueError, match="Row 1 of the dataset has no text"):
        load_documents(Dataset.from_dict({"text": ["x", None]}))
    with pytest.raises(TypeError, match="Pass one split"):
        load_documents(DatasetDict(train=Dataset.from_dict({"text": ["x"]})))
    data = build_pretraining_datasets(
        Dataset.from_dict({"body": [load_text("the-verdict")]}), tokenizer, max_length=256, text_column="body"
    )
    assert (len(data["train"]), len(data["validation"])) == (18, 2)


def test_project_tokenizer_gives_the_same_windows(tokenizer):
    module = pytest.importorskip("gpt_scratch.tokenization_gpt_scratch")
    ours = build_pretraining_datasets("the-verdict", module.GPTScratchTokenizer(), max_length=256)
    reference = build_pretraining_datasets("the-verdict", tokenizer, max_length=256)
    for split in ["train", "validation"]:
        assert ours[split]["input_ids"] == reference[split]["input_ids"]


# ---------------------------------------------------------------------------------------------------------------
# Long texts are tokenized in pieces, exactly


@settings(max_examples=200, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(
            [
                "word",
                " ",
                "\n",
                "\n\n",
                " \n",
                ".",
                "42",
                "caf\u00e9",
                "\u00a0",
                "\t",
                EOT,
                "'s",
                "\x1c",
                "\u2028",
            ]
        ),
        max_size=80,
    ).map("".join),
    chunk_chars=st.integers(min_value=1, max_value=20),
)
def test_split_long_text_keeps_gpt2_tokens(text, chunk_chars, tiktoken_gpt2):
    pieces = split_long_text(text, chunk_chars)
    assert "".join(pieces) == text
    whole = tiktoken_gpt2.encode(text, allowed_special={EOT})
    assert [t for piece in pieces for t in tiktoken_gpt2.encode(piece, allowed_special={EOT})] == whole


def test_split_long_text_cuts_before_newlines(raw_text, tokenizer, tiktoken_gpt2):
    pieces = split_long_text(raw_text, 500)
    assert len(pieces) > 20 and all(p.startswith("\n") and p[1].isalnum() for p in pieces[1:])
    assert "".join(pieces) == raw_text
    assert split_long_text("no newline at all " * 10, 16) == ["no newline at all " * 10]
    ids = tokenize_documents(Dataset.from_dict({"text": [raw_text]}), tokenizer, chunk_chars=200)
    assert ids.tolist() == tiktoken_gpt2.encode(raw_text)
