"""Pretraining on a stream (`--dataset parquet --data-files ... --streaming`), offline on parquet files the tests
write: the same training as the prepared folder's sequential windows, exact resume, several processes."""

import itertools
import json
import logging
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from datasets import Dataset
from test_pretrain import REASSOCIATION_ATOL, assert_same_weights, env, run_cli, weights, write_tiny_config

from gpt_scratch.cli import main
from gpt_scratch.data.prepare import load_source_dataset, prepare_corpus
from gpt_scratch.data.prepared import PreparedCorpus
from gpt_scratch.data.streaming import StreamingWindows, text_in_validation
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer
from gpt_scratch.training import CausalLMTask, TrainingConfig, train
from gpt_scratch.training import loop as training_module
from gpt_scratch.training.checkpointing import stream_state_file
from gpt_scratch.workflows.pretrain import PretrainOptions, pretrain

from conftest import PROJECT_ROOT
from conftest import tiny_config as conftest_tiny_config

pytestmark = pytest.mark.needs_shared  # GPT-2's BPE files


def tiny_config(**overrides):
    return conftest_tiny_config(**{"emb_dim": 32, "context_length": 32, "drop_rate": 0.1, **overrides})


@pytest.fixture(scope="module")
def parquet_files(tmp_path_factory):
    """Two parquet files (two shards of the stream: one per process of two) of 60 documents each."""
    folder = tmp_path_factory.mktemp("parquet")
    words = "the a of to in is was he she it that with for as had his her on at by not but one".split()
    rng = random.Random(0)
    for f in range(2):
        rows = [
            f"File {f}, document {i}: " + " ".join(rng.choice(words) for _ in range(8 + i % 20))
            for i in range(60)
        ]
        Dataset.from_dict({"text": rows}).to_parquet(str(folder / f"part-{f}.parquet"))
    return folder


def stream_options(folder, **overrides) -> PretrainOptions:
    values = dict(
        dataset="parquet", data_files=str(folder / "*.parquet"), streaming=True, val_ratio=0.0,
        start_context=None,
    )  # fmt: skip
    return PretrainOptions(**{**values, **overrides})


def config(output_dir, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), batch_size=4, eval_freq=4, eval_iter=2, final_eval_iter=2,
        progress_bar=False, batch_order="seedable",  # the windows compared, not the book's draws
    )  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


def test_a_stream_trains_as_the_prepared_folders_sequential_windows(tmp_path, parquet_files, one_thread):
    """The stream's windows, in order, are the prepared folder's sequential windows: same weights, same losses."""
    prepared = tmp_path / "prepared"
    prepare_corpus(
        None, prepared, dataset="parquet", data_files=[str(parquet_files / "*.parquet")], train_ratio=1.0,
        progress_bar=False,
    )  # fmt: skip
    steps = 12
    mapped = pretrain(
        str(prepared), config(tmp_path / "mapped", max_steps=steps, shuffle=False),
        PretrainOptions(sampling="sequential", start_context=None), model_config=tiny_config(),
    )  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    streamed = pretrain(
        None, config(tmp_path / "streamed", max_steps=steps), stream_options(parquet_files),
        model_config=tiny_config(),
    )  # fmt: skip
    assert steps * 4 < mapped.summary["hyperparameters"]["train_windows"]  # within one pass
    assert_same_weights(weights(tmp_path / "mapped"), weights(tmp_path / "streamed"), 1e-6)
    losses = lambda run: [r["train_loss"] for r in run.history]  # noqa: E731
    assert losses(streamed) == pytest.approx(losses(mapped), abs=1e-6)
    summary = json.loads((tmp_path / "streamed" / "training_summary.json").read_text())
    assert (
        summary["steps"] == steps and summary["tokens_seen"] == steps * 4 * 32 and summary["epochs"] is None
    )
    assert summary["hyperparameters"]["sampling"] == "stream"
    assert summary["datasets"][0]["streaming"] is True
    loaded = GPTScratchForCausalLM.from_pretrained(tmp_path / "streamed")  # a loadable folder
    assert_same_weights(loaded.state_dict(), weights(tmp_path / "streamed"), 0.0)


def test_a_dataset_without_streaming_is_loaded_and_split_as_the_books_text(
    tmp_path, parquet_files, one_thread
):
    prepared = tmp_path / "prepared"
    prepare_corpus(
        None, prepared, dataset="parquet", data_files=[str(parquet_files / "*.parquet")], train_ratio=0.9,
        progress_bar=False,
    )  # fmt: skip
    expected = {s: len(PreparedCorpus(prepared).windows(s, 32)) for s in ("train", "validation")}
    result = pretrain(
        None, config(tmp_path / "run", max_steps=2), stream_options(parquet_files, streaming=False),
        model_config=tiny_config(),
    )  # fmt: skip
    hyper = result.summary["hyperparameters"]
    assert (hyper["train_windows"], hyper["val_windows"]) == (expected["train"], expected["validation"])
    assert result.summary["datasets"][0]["streaming"] is False
    assert result.summary["datasets"][0]["data_files"] == [str(parquet_files / "*.parquet")]


def test_a_streaming_run_needs_a_length_and_a_dataset(tmp_path, parquet_files, capsys):
    with pytest.raises(ValueError, match="--max-steps or --max-tokens"):
        pretrain(None, config(tmp_path / "a"), stream_options(parquet_files), model_config=tiny_config())
    with pytest.raises(ValueError, match="give --dataset"):
        pretrain(
            None,
            config(tmp_path / "b", max_steps=2),
            PretrainOptions(streaming=True),
            model_config=tiny_config(),
        )
    windows = StreamingWindows(
        load_source_dataset("parquet", None, [str(parquet_files / "*.parquet")], "train", streaming=True),
        GPTScratchTokenizer(),
        32,
    )
    with pytest.raises(ValueError, match="max_steps"):
        train(GPTScratchForCausalLM(tiny_config()), windows, None, config(tmp_path / "c"), CausalLMTask(None))
    AcceleratorState._reset_state(reset_partial_state=True)
    with pytest.raises(ValueError, match="num_workers=2 is not supported"):
        train(
            GPTScratchForCausalLM(tiny_config()), windows, None, config(tmp_path / "d", max_steps=2, num_workers=2),
            CausalLMTask(None),
        )  # fmt: skip
    AcceleratorState._reset_state(reset_partial_state=True)
    flags = [
        "pretrain",
        "--dataset",
        "parquet",
        "--data-files",
        str(parquet_files / "*.parquet"),
        "--streaming",
    ]
    assert main([*flags, "--output-dir", str(tmp_path / "e")]) == 2
    assert "error: a stream has no length: give --max-steps or --max-tokens" in capsys.readouterr().err
    assert main([*flags, "the-verdict.txt", "--output-dir", str(tmp_path / "f")]) == 2
    assert "not both" in capsys.readouterr().err


def test_validation_documents_are_held_out_by_a_hash_of_their_text(parquet_files):
    source = load_source_dataset("parquet", None, [str(parquet_files / "*.parquet")], "train", streaming=True)
    texts = [row["text"] for row in source]
    held_out = [t for t in texts if text_in_validation(t, 0.2)]
    assert 0.1 * len(texts) < len(held_out) < 0.3 * len(texts)
    tokenizer = GPTScratchTokenizer()
    for split, expected in (("validation", held_out), ("train", [t for t in texts if t not in held_out])):
        windows = StreamingWindows(source, tokenizer, 32, split=split, val_ratio=0.2)
        ids = [w["input_ids"].tolist() + w["target_ids"][-1:].tolist() for w in windows]
        joined = tokenizer.encode("<|endoftext|>".join(expected), allowed_special={"<|endoftext|>"})
        assert ids == [joined[i : i + 33] for i in range(0, len(joined) - 32, 32)]


def test_a_stream_stopped_after_a_checkpoint_resumes_exactly(
    tmp_path, parquet_files, one_thread, monkeypatch
):
    """Dropout, gradient accumulation, cosine schedule, a validation stream; the run reads the stream more than
    twice over (passes), and is stopped in its second pass."""
    flags = dict(
        max_steps=30, checkpoint_every=5, gradient_accumulation_steps=2, lr_schedule="cosine", warmup_steps=3,
        max_grad_norm=1.0,
    )  # fmt: skip
    options = stream_options(parquet_files, val_ratio=0.1)
    reference = pretrain(None, config(tmp_path / "ref", **flags), options, model_config=tiny_config())
    AcceleratorState._reset_state(reset_partial_state=True)

    save = training_module.save_checkpoint
    passes = {}

    def save_then_stop(run):
        path = save(run)
        stream = json.loads((path / "stream-00000.json").read_text())
        passes[run.state.step] = stream["stream"]["source"]["epoch"]
        if run.state.step == 20:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(training_module, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        pretrain(None, config(tmp_path / "run", **flags), options, model_config=tiny_config())
    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.setattr(training_module, "save_checkpoint", save)
    assert passes[5] == 0 and passes[20] == 1  # stopped in the second pass over the stream
    other = tmp_path / "saved-by-two-processes"
    shutil.copytree(tmp_path / "run", other)
    checkpoint = other / "checkpoints" / "step-000020"
    shutil.copy(stream_state_file(checkpoint, 0), stream_state_file(checkpoint, 1))
    with pytest.raises(ValueError, match="stream states of 2 processes, this run has 1"):
        pretrain(None, config(other, resume=True, **flags), options, model_config=tiny_config())
    AcceleratorState._reset_state(reset_partial_state=True)
    resumed = pretrain(
        None, config(tmp_path / "run", resume=True, **flags), options, model_config=tiny_config()
    )
    assert resumed.summary["steps"] == 30
    assert_same_weights(weights(tmp_path / "ref"), weights(tmp_path / "run"), atol=1e-6)
    ref = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    res = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for key in ("train_loss", "val_loss"):
        assert [r[key] for r in res] == pytest.approx([r[key] for r in ref], abs=1e-6)
    assert reference.summary["metrics"]["val_loss"] == pytest.approx(resumed.summary["metrics"]["val_loss"])


class Interleaved(torch.utils.data.IterableDataset):
    """What two processes train on at a step, in one stream: 2 windows of rank 0's share, then 2 of rank 1's."""

    def __init__(self, parts):
        self.parts = parts

    def __iter__(self):
        iterators = [iter(part) for part in self.parts]
        while True:
            for it in iterators:
                yield from itertools.islice(it, 2)

    def state_dict(self):  # between steps: the next window is rank 0's
        return {"parts": [part.state_dict() for part in self.parts]}

    def load_state_dict(self, state):
        for part, part_state in zip(self.parts, state["parts"], strict=True):
            part.load_state_dict(part_state)


@pytest.mark.slow  # three 2-process runs
def test_two_processes_each_read_their_own_share_and_resume_exactly(tmp_path, parquet_files):
    """2 processes != 1 process by construction: each process reads its own file (split_dataset_by_node), so a
    step's 4 windows are 2 of file 0 and 2 of file 1, not 4 consecutive windows. Checked instead: the shares are
    disjoint; a 2-process run killed after its step-3 checkpoint and resumed ends bit for bit as the same run
    uninterrupted; and one process training on those same windows, 2 of each share a step, ends with the same
    weights up to float reassociation (DDP averages two half-batch gradients)."""
    config_path = write_tiny_config(tmp_path, drop_rate=0.0)

    def flags(output_dir):
        return [
            "--dataset", "parquet", "--data-files", str(parquet_files / "*.parquet"), "--streaming",
            "--val-ratio", "0", "--config", str(config_path), "--max-steps", "6", "--batch-size", "2",
            "--checkpoint-every", "3", "--eval-freq", "100", "--eval-iter", "1", "--final-eval-iter", "1",
            "--no-progress-bar", "--start-context", "", "--output-dir", str(output_dir),
        ]  # fmt: skip

    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29531"]
    two, uninterrupted = tmp_path / "two", tmp_path / "uninterrupted"
    run_cli(*torchrun, "-m", "gpt_scratch", "pretrain", *flags(uninterrupted))
    killed = subprocess.run(
        [sys.executable, *torchrun, "tests/stop_after_checkpoint.py", "3", "pretrain", *flags(two)],
        cwd=PROJECT_ROOT, env=env(), capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert killed.returncode != 0 and (two / "checkpoints" / "step-000003").is_dir(), killed.stderr[-3000:]
    assert not (two / "model.safetensors").exists()
    resumed = run_cli(*torchrun, "-m", "gpt_scratch", "pretrain", *flags(two), "--resume")
    assert "Resumed from" in resumed.stdout + resumed.stderr and "(step 3," in resumed.stdout + resumed.stderr
    checkpoint = two / "checkpoints" / "step-000006"
    states = [json.loads(stream_state_file(checkpoint, r).read_text()) for r in range(2)]
    assert [s["batches"] for s in states] == [6, 6]
    assert_same_weights(weights(uninterrupted), weights(two), atol=0.0)  # the same process count: exact

    tokenizer = GPTScratchTokenizer()
    source = load_source_dataset("parquet", None, [str(parquet_files / "*.parquet")], "train", streaming=True)
    parts = [StreamingWindows(source, tokenizer, 32, rank=r, world_size=2) for r in range(2)]
    shares = [[tuple(w["input_ids"].tolist()) for w in part] for part in parts]
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert len(shares[0]) >= 12 and len(shares[1]) >= 12  # 6 steps of 2 windows, within one pass

    set_seed(123)  # as pretrain does before it makes the model
    model = GPTScratchForCausalLM(tiny_config(drop_rate=0.0))
    one = tmp_path / "one"
    parts = [StreamingWindows(source, tokenizer, 32, rank=r, world_size=2) for r in range(2)]
    train(
        model,
        Interleaved(parts),
        None,
        config(one, max_steps=6, eval_freq=100, eval_iter=1),
        CausalLMTask(None),
    )
    AcceleratorState._reset_state(reset_partial_state=True)
    assert_same_weights(weights(one), weights(two), atol=REASSOCIATION_ATOL)  # see test_pretrain


# ---- Issue 22: a stream resumes only on its own files; no NaN in JSON; no epochs ----------------------------------


def strict_json(text: str):
    def refuse(constant):
        raise ValueError(f"invalid JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_stream_resumes_only_on_the_files_it_started_with(tmp_path, parquet_files, one_thread):
    data = tmp_path / "data"
    shutil.copytree(parquet_files, data)
    options = stream_options(data)
    pretrain(None, config(tmp_path / "run", max_steps=4), options, model_config=tiny_config())
    AcceleratorState._reset_state(reset_partial_state=True)
    original = (data / "part-1.parquet").read_bytes()
    Dataset.from_dict({"text": ["another document entirely"] * 60}).to_parquet(str(data / "part-1.parquet"))
    with pytest.raises(ValueError, match=r"--resume from .*arguments that change the run: datasets"):
        pretrain(
            None, config(tmp_path / "run", max_steps=6, resume=True), options, model_config=tiny_config()
        )
    AcceleratorState._reset_state(reset_partial_state=True)
    (data / "part-1.parquet").write_bytes(original)
    resumed = pretrain(
        None, config(tmp_path / "run", max_steps=6, resume=True), options, model_config=tiny_config()
    )
    assert resumed.summary["steps"] == 6
    files = resumed.summary["datasets"][0]["files"]
    assert [(Path(f["file"]).name, f["bytes"]) for f in files] == [
        (p.name, p.stat().st_size) for p in sorted(data.glob("*.parquet"))
    ]


def test_an_empty_validation_stream_writes_valid_json_and_warns(tmp_path, parquet_files, one_thread, caplog):
    options = stream_options(parquet_files, val_ratio=1e-9)  # no document hashes below it
    with caplog.at_level(logging.WARNING):
        pretrain(None, config(tmp_path / "run", max_steps=2), options, model_config=tiny_config())
    assert "the val set gave no batch to evaluate" in caplog.text
    records = [strict_json(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert records and all(r["val_loss"] is None for r in records)
    summary = strict_json((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["metrics"]["val_loss"] is None and summary["metrics"]["train_loss"] > 0


def test_a_stream_refuses_num_epochs(tmp_path, parquet_files):
    with pytest.raises(ValueError, match="a stream has no epochs"):
        pretrain(
            None, config(tmp_path / "run", max_steps=2, num_epochs=3), stream_options(parquet_files),
            model_config=tiny_config(),
        )  # fmt: skip
    assert not (tmp_path / "run").exists()


HUB_ID = "someone/stories"


@pytest.fixture
def fake_hub(monkeypatch, parquet_files):
    """A Hub dataset id whose main branch is at the commit hub["sha"], read from the local parquet files; hub["loads"]
    lists the revision each load asked for (tests/stand_in_hub.py)."""
    import datasets
    from huggingface_hub import HfApi
    from stand_in_hub import replacements

    hub = {"sha": "a" * 40, "loads": []}
    load_dataset, dataset_info = replacements(
        HUB_ID, parquet_files, lambda revision: hub["sha"] if revision in (None, "main") else revision,
        lambda revision: hub["loads"].append(revision),
    )  # fmt: skip
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    monkeypatch.setattr(HfApi, "dataset_info", dataset_info)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    return hub


def test_a_hub_stream_reads_and_records_one_commit_and_resumes_only_on_it(tmp_path, fake_hub, one_thread):
    """A Hub id is read at the commit its branch names when the run starts; the commit is recorded, and a resume
    after the branch moved is refused until it is given that commit, which it then reads again."""
    first = "a" * 40
    options = PretrainOptions(dataset=HUB_ID, streaming=True, val_ratio=0.0, start_context=None)
    result = pretrain(None, config(tmp_path / "run", max_steps=4), options, model_config=tiny_config())
    assert result.summary["datasets"][0]["revision"] == first
    assert fake_hub["loads"] and set(fake_hub["loads"]) == {first}
    AcceleratorState._reset_state(reset_partial_state=True)

    fake_hub["sha"] = "b" * 40  # a new commit on main
    with pytest.raises(ValueError, match=rf"arguments that change the run: datasets.*'revision': '{first}'"):
        pretrain(
            None, config(tmp_path / "run", max_steps=6, resume=True), options, model_config=tiny_config()
        )
    AcceleratorState._reset_state(reset_partial_state=True)
    pinned = PretrainOptions(**{**options.__dict__, "dataset_revision": first})
    fake_hub["loads"] = []
    resumed = pretrain(
        None, config(tmp_path / "run", max_steps=6, resume=True), pinned, model_config=tiny_config()
    )
    assert resumed.summary["steps"] == 6 and set(fake_hub["loads"]) == {first}


TWO_PROCESSES_ON_A_MOVING_HUB = """
import json, os, sys

import datasets
from huggingface_hub import HfApi

sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
from stand_in_hub import replacements  # noqa: E402

hub_id, parquet_folder, loads_file = sys.argv[1:4]
rank = os.environ["RANK"]


def log_load(revision):
    with open(f"{loads_file}.{rank}", "a") as log:
        log.write(json.dumps(revision) + "\\n")


# each process hears another commit for main, as if the branch moved between their questions
datasets.load_dataset, HfApi.dataset_info = replacements(hub_id, parquet_folder, lambda revision: rank * 40, log_load)
datasets.config.HF_HUB_OFFLINE = False

from gpt_scratch.cli import main  # noqa: E402

sys.exit(main(["pretrain", "--dataset", hub_id, *sys.argv[4:]]))
"""


@pytest.mark.slow  # two processes
def test_two_processes_read_the_main_processs_commit(tmp_path, parquet_files):
    """Each process asks the Hub for the commit; should the branch move between their questions (here each one
    hears another commit), all read, and the run records, the main process's."""
    script = tmp_path / "moving_hub.py"
    script.write_text(TWO_PROCESSES_ON_A_MOVING_HUB)
    config_path = write_tiny_config(tmp_path, drop_rate=0.0)
    flags = [
        "--streaming", "--val-ratio", "0", "--config", str(config_path), "--max-steps", "2", "--batch-size", "2",
        "--eval-freq", "100", "--eval-iter", "1", "--final-eval-iter", "1", "--no-progress-bar",
        "--start-context", "", "--output-dir", str(tmp_path / "run"),
    ]  # fmt: skip
    loads = tmp_path / "loads"
    torchrun = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    run_cli(*torchrun, str(script), HUB_ID, str(parquet_files), str(loads), *flags)
    for rank in (0, 1):
        asked = [json.loads(line) for line in Path(f"{loads}.{rank}").read_text().splitlines()]
        assert asked and set(asked) == {"0" * 40}, (rank, asked)
    summary = json.loads((tmp_path / "run" / "training_summary.json").read_text())
    assert summary["datasets"][0]["revision"] == "0" * 40


def test_prepare_records_the_hub_commit_it_read(tmp_path, fake_hub):
    meta = prepare_corpus(None, tmp_path / "p", GPTScratchTokenizer(), dataset=HUB_ID, val_ratio=0.1,
                          progress_bar=False)  # fmt: skip
    assert meta["sources"][0]["revision"] == "a" * 40 and fake_hub["loads"] == ["a" * 40]


def test_a_dataset_revision_is_resolved_only_for_a_hub_id(monkeypatch, parquet_files):
    import datasets
    from huggingface_hub import HfApi

    from gpt_scratch.data.prepare import resolve_dataset_revision

    with pytest.raises(
        ValueError, match="--dataset-revision is for a Hub dataset id; parquet is a local builder"
    ):
        resolve_dataset_revision("parquet", "v1")
    assert resolve_dataset_revision("parquet", None) is None
    assert resolve_dataset_revision(str(parquet_files), None) is None
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    assert resolve_dataset_revision(HUB_ID, "v1") == "v1"  # offline: nothing to ask, taken as given
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)

    def unreachable(self, repo_id, revision=None, **kwargs):
        raise OSError("network blocked by the test")

    monkeypatch.setattr(HfApi, "dataset_info", unreachable)
    with pytest.raises(ValueError, match=f"{HUB_ID}: cannot resolve revision main on the Hub"):
        resolve_dataset_revision(HUB_ID, None)
