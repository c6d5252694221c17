"""`prepare_corpus` and the memory-mapped windows, checked against tiktoken and the book's in-memory windows."""

import errno
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import tiktoken

from gpt_scratch.data import prepare
from gpt_scratch.data.prepare import prepare_corpus, token_dtype
from gpt_scratch.data.prepared import PreparedCorpus, RandomWindows, SequentialWindows
from gpt_scratch.data.pretraining import build_pretraining_datasets, load_text
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

from conftest import lock_held_by_another_process

EOT = "<|endoftext|>"


@pytest.fixture(scope="module")
def tokenizer():
    return GPTScratchTokenizer()


@pytest.fixture(scope="module")
def gpt2():
    return tiktoken.get_encoding("gpt2")


def encode(gpt2, text: str) -> list[int]:
    """The book's encoding: tiktoken with <|endoftext|> allowed."""
    return gpt2.encode(text, allowed_special={EOT})


@pytest.fixture
def small_pieces(monkeypatch):
    """Read 1 kB at a time and tokenize 2,000 characters a unit: many pieces, units and shards on small texts."""
    monkeypatch.setattr(prepare, "READ_BYTES", 1000)
    return {"unit_chars": 2000, "shard_tokens": 1000}


def shard_ids(folder: Path, split: str) -> np.ndarray:
    meta = json.loads((folder / "meta.json").read_text())
    files = [folder / s["file"] for s in meta["splits"][split]["shards"]]
    arrays = [np.fromfile(f, dtype=meta["dtype"]) for f in files]
    return np.concatenate(arrays).astype(np.int64) if arrays else np.zeros(0, dtype=np.int64)


def shards(meta: dict) -> dict:
    return {split: meta["splits"][split]["shards"] for split in meta["splits"]}


def joined_ids(gpt2, texts: list[str]) -> list[int]:
    ids: list[int] = []
    for i, text in enumerate(texts):
        ids += ([50256] if i else []) + encode(gpt2, text)
    return ids


def test_the_verdict_gives_the_books_windows_and_split(tmp_path, tokenizer, gpt2, small_pieces):
    meta = prepare_corpus(["the-verdict"], tmp_path / "p", tokenizer, progress_bar=False, **small_pieces)
    text = load_text("the-verdict")
    split_idx = int(0.9 * len(text))  # the book's chapter 5 split
    assert shard_ids(tmp_path / "p", "train").tolist() == encode(gpt2, text[:split_idx])
    assert shard_ids(tmp_path / "p", "validation").tolist() == encode(gpt2, text[split_idx:])
    assert meta["dtype"] == "uint16" and meta["tokenizer"]["vocab_size"] == 50257
    shards = meta["splits"]["train"]["shards"]
    assert len(shards) >= 3 and all(
        s["tokens"] >= 1000 for s in shards[:-1]
    )  # 4,612 tokens, shards of >= 1,000
    assert meta["sources"][0]["sha256"].startswith("b41e41a6")
    assert (tmp_path / "p" / "train-000000.bin").stat().st_size == 2 * meta["splits"]["train"]["shards"][0][
        "tokens"
    ]

    # The windows equal the book path's in-memory windows (chapter 5: 256 tokens, stride 256), across shards
    book = build_pretraining_datasets("the-verdict", tokenizer, max_length=256)
    corpus = PreparedCorpus(tmp_path / "p", tokenizer)
    for split in ("train", "validation"):
        windows = corpus.windows(split, 256)
        assert len(windows) == len(book[split])
        for i in range(len(windows)):
            assert windows[i]["input_ids"].tolist() == book[split][i]["input_ids"]
            assert windows[i]["target_ids"].tolist() == book[split][i]["target_ids"]
    overlapping = corpus.windows("train", 32, stride=7)
    ids = shard_ids(tmp_path / "p", "train")
    assert len(overlapping) == len(range(0, len(ids) - 32, 7))
    assert overlapping[100]["input_ids"].tolist() == ids[700:732].tolist()


@pytest.mark.parametrize("train_ratio", [0.1, 0.37, 0.5, 0.61, 0.9, 1.0])
def test_the_book_split_of_many_files_is_exact(tmp_path, tokenizer, gpt2, small_pieces, train_ratio):
    # Lines ending in spaces before a newline + letter: the one place a cut could change GPT-2's tokens.
    texts = [
        "".join(f"Line {i} of file {f}  \nand then\n\n{'word ' * (i % 7)}\n" for i in range(60 + 40 * f))
        for f in range(3)
    ]
    files = []
    for f, text in enumerate(texts):
        files.append(tmp_path / f"{f}.txt")
        files[-1].write_text(text)
    out = tmp_path / f"p{train_ratio}"
    prepare_corpus(
        [str(tmp_path / "*.txt")], out, tokenizer, train_ratio=train_ratio, progress_bar=False, **small_pieces
    )
    joined = EOT.join(texts)
    split_idx = int(train_ratio * len(joined))
    cut = joined.rfind(EOT, 0, split_idx + len(EOT))  # a cut inside a separator moves to the boundary
    if cut != -1 and cut < split_idx < cut + len(EOT):
        split_idx = cut + len(EOT)
    train_text = joined[:split_idx].removesuffix(EOT)
    val_text = joined[split_idx:]
    assert shard_ids(out, "train").tolist() == encode(gpt2, train_text)
    assert shard_ids(out, "validation").tolist() == (encode(gpt2, val_text) if val_text else [])
    if train_ratio == 0.9:  # the same windows as the book path on the same files
        book = build_pretraining_datasets(str(tmp_path / "*.txt"), tokenizer, 16, train_ratio=train_ratio)
        windows = PreparedCorpus(out, tokenizer).windows("train", 16)
        assert len(windows) == len(book["train"])
        assert windows[5]["input_ids"].tolist() == book["train"][5]["input_ids"]


def test_parallel_tokenization_writes_the_same_shards(tmp_path, tokenizer, small_pieces):
    one = prepare_corpus(["the-verdict"], tmp_path / "one", tokenizer, progress_bar=False, **small_pieces)
    two = prepare_corpus(
        ["the-verdict"], tmp_path / "two", tokenizer, num_proc=2, progress_bar=False, **small_pieces
    )
    assert shards(one) == shards(two)
    for shard in one["splits"]["train"]["shards"]:
        assert (tmp_path / "one" / shard["file"]).read_bytes() == (
            tmp_path / "two" / shard["file"]
        ).read_bytes()


def test_val_ratio_picks_whole_documents(tmp_path, tokenizer, gpt2):
    texts = [f"Document number {i}. " * (5 + i % 4) for i in range(200)]
    for i, text in enumerate(texts):
        (tmp_path / f"{i:03d}.txt").write_text(text)
    meta = prepare_corpus(
        [str(tmp_path)], tmp_path / "p", tokenizer, val_ratio=0.1, seed=1, progress_bar=False
    )
    val_docs = [i for i in range(200) if prepare.document_in_validation(i, 0.1, 1)]
    assert 8 <= len(val_docs) <= 35  # about 10% of 200
    assert shard_ids(tmp_path / "p", "validation").tolist() == joined_ids(gpt2, [texts[i] for i in val_docs])
    train_docs = [texts[i] for i in range(200) if i not in val_docs]
    assert shard_ids(tmp_path / "p", "train").tolist() == joined_ids(gpt2, train_docs)
    assert meta["split"] == {"method": "random documents", "val_ratio": 0.1, "seed": 1}


@pytest.fixture
def datasets_bars_restored():
    import datasets

    yield
    datasets.enable_progress_bars()


@pytest.mark.parametrize("builder", ["parquet", "json"])
def test_a_datasets_builder_with_data_files(
    tmp_path, tokenizer, gpt2, builder, capfd, datasets_bars_restored
):
    from datasets import Dataset

    rows = [f"Row {i}: some text about row {i}." for i in range(50)] + [""]  # an empty row is left out
    data = Dataset.from_dict({"content": rows})
    path = tmp_path / f"rows.{builder}"
    data.to_parquet(path) if builder == "parquet" else data.to_json(path)
    capfd.readouterr()
    meta = prepare_corpus(
        None, tmp_path / "p", tokenizer, dataset=builder, data_files=[str(path)], text_column="content",
        train_ratio=1.0, progress_bar=False,
    )  # fmt: skip
    assert "Generating train split" not in capfd.readouterr().err  # no datasets bar under progress_bar=False
    assert shard_ids(tmp_path / "p", "train").tolist() == joined_ids(gpt2, rows[:-1])
    assert meta["splits"]["validation"]["tokens"] == 0
    assert meta["sources"][0]["data_files"][0]["sha256"]
    with pytest.raises(ValueError, match="no column 'text'"):
        prepare_corpus(
            None, tmp_path / "q", tokenizer, dataset=builder, data_files=[str(path)], progress_bar=False
        )


def test_random_windows_are_seeded_slices_of_the_stream(tmp_path, tokenizer, small_pieces):
    prepare_corpus(["the-verdict"], tmp_path / "p", tokenizer, progress_bar=False, **small_pieces)
    corpus = PreparedCorpus(tmp_path / "p", tokenizer)
    ids = shard_ids(tmp_path / "p", "train")
    windows = corpus.windows("train", 64, "random", seed=5)
    assert isinstance(windows, RandomWindows) and len(windows) == len(ids) // 64
    offsets = [windows.offset(i) for i in range(len(windows))]
    assert all(0 <= o <= len(ids) - 65 for o in offsets) and len(set(offsets)) > len(offsets) * 0.9
    for i in (0, 3, len(windows) - 1):
        o = offsets[i]
        assert windows[i]["input_ids"].tolist() == ids[o : o + 64].tolist()
        assert windows[i]["target_ids"].tolist() == ids[o + 1 : o + 65].tolist()
    again = corpus.windows("train", 64, "random", seed=5)
    other = corpus.windows("train", 64, "random", seed=6)
    assert [again.offset(i) for i in range(10)] == offsets[:10] != [other.offset(i) for i in range(10)]
    again.set_epoch(1)  # another epoch: other offsets, the same for the same (seed, epoch)
    second = [again.offset(i) for i in range(len(windows))]
    assert len(set(second) & set(offsets)) < 0.1 * len(offsets)
    again.set_epoch(0)
    assert [again.offset(i) for i in range(len(windows))] == offsets
    assert isinstance(corpus.windows("validation", 64), SequentialWindows)


def test_an_interrupted_prepare_continues_to_the_same_shards(tmp_path, tokenizer, small_pieces, monkeypatch):
    reference = prepare_corpus(
        ["the-verdict"], tmp_path / "ref", tokenizer, progress_bar=False, **small_pieces
    )
    append, calls = prepare._append, []

    def append_then_die(f, ids):
        calls.append(1)
        if len(calls) == 5:  # after the first shard (2 units) is complete, in the middle of the third
            f.write(ids[: len(ids) // 2].tobytes())
            raise KeyboardInterrupt  # what Ctrl-C or a kill does to the writer
        append(f, ids)

    monkeypatch.setattr(prepare, "_append", append_then_die)
    out = tmp_path / "p"
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(["the-verdict"], out, tokenizer, progress_bar=False, **small_pieces)
    meta = json.loads((out / "meta.json").read_text())
    assert not meta["complete"] and len(meta["splits"]["train"]["shards"]) == 2
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train-000000.bin", "train-000001.bin"]
    with pytest.raises(ValueError, match="interrupted.*run the same"):
        PreparedCorpus(out, tokenizer)
    (out / ".train-000002.bin.tmp").write_bytes(b"\x01\x02")  # debris of a SIGKILL while writing
    monkeypatch.setattr(prepare, "_append", append)
    resumed = prepare_corpus(["the-verdict"], out, tokenizer, progress_bar=False, **small_pieces)
    assert shards(resumed) == shards(reference) and resumed["complete"]
    for split in ("train", "validation"):
        assert shard_ids(out, split).tolist() == shard_ids(tmp_path / "ref", split).tolist()
    assert not list(out.glob(".*tmp"))


def test_disk_full_keeps_nothing_half_written(tmp_path, tokenizer, small_pieces, monkeypatch):
    calls = []

    def full_disk(f, ids):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        f.write(ids.tobytes())

    monkeypatch.setattr(prepare, "_append", full_disk)
    out = tmp_path / "p"
    with pytest.raises(OSError, match="disk full while writing .*train-000001.bin.*1 complete shards"):
        prepare_corpus(["the-verdict"], out, tokenizer, progress_bar=False, **small_pieces)
    meta = json.loads((out / "meta.json").read_text())
    assert [s["file"] for s in meta["splits"]["train"]["shards"]] == ["train-000000.bin"]
    assert sorted(p.name for p in out.iterdir()) == ["meta.json", "train-000000.bin"]


def test_not_utf8_empty_and_nul_files(tmp_path, tokenizer, gpt2, caplog, capsys, small_pieces):
    """The offset is right when the bad byte is in the second 1 kB block read (small_pieces)."""
    from gpt_scratch.cli import main

    (tmp_path / "a.txt").write_text("A good file.")
    (tmp_path / "b.txt").write_bytes(b"caf\xc3\xa9 " * 300 + b"bad \xff byte")
    (tmp_path / "c.txt").write_bytes(b"")
    (tmp_path / "d.txt").write_bytes(b"\x00\x00\n\x00")
    with pytest.raises(
        ValueError, match=r"b\.txt: not UTF-8 text \(byte 0xff at offset 1804.*--errors replace"
    ):
        prepare_corpus([str(tmp_path)], tmp_path / "strict", tokenizer, progress_bar=False)
    assert main(["prepare", str(tmp_path), "--output-dir", str(tmp_path / "cli"), "--no-progress-bar"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gpt-scratch prepare: error: ") and "offset 1804" in err

    with caplog.at_level(logging.WARNING):
        prepare_corpus(
            [str(tmp_path)], tmp_path / "skip", tokenizer, errors="skip", train_ratio=1.0, progress_bar=False
        )
    assert shard_ids(tmp_path / "skip", "train").tolist() == encode(gpt2, "A good file.")
    log = caplog.text
    assert (
        "b.txt: not UTF-8" in log
        and "c.txt: empty: skipped" in log
        and "d.txt: only whitespace or NUL" in log
    )

    prepare_corpus(
        [str(tmp_path)],
        tmp_path / "replace",
        tokenizer,
        errors="replace",
        train_ratio=1.0,
        progress_bar=False,
    )
    replaced = (tmp_path / "b.txt").read_bytes().decode("utf-8", errors="replace")
    assert shard_ids(tmp_path / "replace", "train").tolist() == joined_ids(gpt2, ["A good file.", replaced])


def test_a_folder_from_another_tokenizer_or_format_is_refused(tmp_path, tokenizer, gpt2_files):
    prepare_corpus(["the-verdict"], tmp_path / "p", tokenizer, progress_bar=False)
    other = GPTScratchTokenizer(str(gpt2_files / "vocab.json"), str(gpt2_files / "merges.txt"))
    other.add_tokens(["<|im_start|>"], special_tokens=True)
    with pytest.raises(
        ValueError, match=r"another tokenizer \(vocab_size: 50257 there, 50258 here; vocab_sha256"
    ):
        PreparedCorpus(tmp_path / "p", other)
    PreparedCorpus(
        tmp_path / "p", GPTScratchTokenizer(str(gpt2_files / "vocab.json"), str(gpt2_files / "merges.txt"))
    )

    meta = json.loads((tmp_path / "p" / "meta.json").read_text())
    (tmp_path / "p" / "meta.json").write_text(json.dumps({**meta, "format_version": 0}))
    with pytest.raises(
        ValueError, match="version 0, but this gpt_scratch reads 'gpt_scratch.prepared' version 1"
    ):
        PreparedCorpus(tmp_path / "p", tokenizer)
    (tmp_path / "p" / "meta.json").write_text(json.dumps(meta))
    (tmp_path / "p" / "train-000000.bin").write_bytes(b"\x00\x00")
    with pytest.raises(
        ValueError, match="train-000000.bin: 2 bytes, meta.json says 9224: the prepared folder is damaged"
    ):
        PreparedCorpus(tmp_path / "p", tokenizer).windows("train", 16)
    with pytest.raises(FileNotFoundError, match="not a prepared folder"):
        PreparedCorpus(tmp_path, tokenizer)


def test_token_dtype_by_vocabulary_size():
    assert (
        token_dtype(50257) == "uint16" and token_dtype(65536) == "uint16" and token_dtype(65537) == "uint32"
    )


def test_the_generic_tokenizer_path_gives_tiktokens_ids(tmp_path, hf_gpt2_tokenizer, gpt2):
    prepare_corpus(["the-verdict"], tmp_path / "p", hf_gpt2_tokenizer, train_ratio=1.0, progress_bar=False)
    assert shard_ids(tmp_path / "p", "train").tolist() == encode(gpt2, load_text("the-verdict"))


def test_dataloader_workers_read_the_same_windows(tmp_path, tokenizer):
    """The memory maps are not pickled into the workers: each opens its own."""
    import torch

    prepare_corpus(["the-verdict"], tmp_path / "p", tokenizer, progress_bar=False)
    windows = PreparedCorpus(tmp_path / "p", tokenizer).windows("train", 32, "random", seed=3)
    windows[0]  # the main process has opened its maps
    batches = [
        [b["input_ids"] for b in torch.utils.data.DataLoader(windows, batch_size=16, num_workers=workers)]
        for workers in (0, 2)
    ]
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True)) and len(batches[0]) == 9


@pytest.mark.slow  # a real SIGKILL of a prepare in a subprocess
def test_sigkill_during_prepare_then_the_same_command_finishes_it(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    from conftest import PROJECT_ROOT

    text = load_text("the-verdict")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(40):
        (corpus / f"{i:02d}.txt").write_text(f"File {i}.\n" + text * 10)  # 8 MB: 8 units of 1M characters
    args = [str(corpus), "--shard-tokens", "200000", "--no-progress-bar", "--val-ratio", "0.1"]
    command = [sys.executable, "-m", "gpt_scratch.cli", "prepare", *args]
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run(
        [*command, "--output-dir", str(tmp_path / "ref")], env=env, check=True, capture_output=True
    )
    slow = (
        "import sys, time; from gpt_scratch.data import prepare; append = prepare._append; "
        "prepare._append = lambda f, ids: (time.sleep(0.3), append(f, ids)); "
        "from gpt_scratch.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", slow, "prepare", *args, "--output-dir", str(out)], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        meta = out / "meta.json"
        if meta.is_file() and len(json.loads(meta.read_text())["splits"]["train"]["shards"]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the prepare ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not json.loads((out / "meta.json").read_text())["complete"]
    subprocess.run([*command, "--output-dir", str(out)], env=env, check=True, capture_output=True)
    for split in ("train", "validation"):
        assert shard_ids(out, split).tolist() == shard_ids(tmp_path / "ref", split).tolist()
    assert not list(out.glob(".*"))


# ---- Issue 22: one prepare at a time, values that cannot work refused ---------------------------------------------


def test_a_second_prepare_into_the_folder_is_refused_and_touches_nothing(tmp_path, tokenizer, small_pieces):
    out = tmp_path / "p"
    out.mkdir()
    (out / ".train-000000.bin.tmp").write_bytes(b"\x01\x02")  # the first prepare's shard, being written
    lock = out / ".prepare.lock"
    with lock_held_by_another_process(lock):
        with pytest.raises(ValueError, match=f"{out} is being prepared by another run .*{lock}"):
            prepare_corpus(["the-verdict"], out, tokenizer, progress_bar=False, **small_pieces)
        assert (out / ".train-000000.bin.tmp").read_bytes() == b"\x01\x02"
    (out / ".train-000000.bin.tmp").unlink()
    prepare_corpus(["the-verdict"], out, tokenizer, progress_bar=False, **small_pieces)
    assert not lock.exists()  # a finished prepare leaves no lock


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--num-proc", "0", "num_proc (--num-proc) must be a whole number >= 1, got 0"),
        ("--shard-tokens", "-5", "shard_tokens (--shard-tokens) must be a whole number >= 1, got -5"),
        ("--val-ratio", "1.0", "val_ratio (--val-ratio) must be in [0, 1) (0: no validation), got 1.0"),
        ("--train-ratio", "0", "train_ratio (--train-ratio) must be in (0, 1] (1: no validation), got 0.0"),
    ],
)
def test_prepare_refuses_values_that_cannot_work(tmp_path, capsys, flag, value, message):
    from gpt_scratch.cli import main

    out = tmp_path / "p"
    assert main(["prepare", "the-verdict", "--output-dir", str(out), flag, value]) == 2
    assert f"gpt-scratch prepare: error: {message}" in capsys.readouterr().err
    assert not out.exists()  # nothing made, no lock left
