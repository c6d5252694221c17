"""Pretraining from a prepared (tokenized, memory-mapped) folder: the book's run, exact resume, several processes."""

import json
import signal
import subprocess
import sys
import time

import pytest
from accelerate.state import AcceleratorState
from test_pretrain import REASSOCIATION_ATOL, assert_same_weights, env, run_cli, weights, write_tiny_config

from gpt_scratch.data.prepare import prepare_corpus
from gpt_scratch.data.prepared import PreparedCorpus, RandomWindows
from gpt_scratch.training import TrainingConfig
from gpt_scratch.training import loop as training_module
from gpt_scratch.workflows.pretrain import PretrainOptions, pretrain

from conftest import PROJECT_ROOT
from conftest import tiny_config as conftest_tiny_config


@pytest.fixture(scope="module")
def verdict(tmp_path_factory):
    """The Verdict prepared with the book's 90/10 character split."""
    folder = tmp_path_factory.mktemp("prepared") / "verdict"
    prepare_corpus(["the-verdict"], folder, progress_bar=False)
    return folder


def tiny_config(**overrides):
    """Issue 11's numbers are for width 32, context 32, dropout 0.1."""
    return conftest_tiny_config(**{"emb_dim": 32, "context_length": 32, "drop_rate": 0.1, **overrides})


def options(**overrides) -> PretrainOptions:
    return PretrainOptions(start_context=None, **overrides)


NO_SAMPLE = options()


def config(output_dir, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), num_epochs=1, batch_size=4, eval_freq=100, eval_iter=1,
        final_eval_iter=1, progress_bar=False,
    )  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


def test_sequential_windows_of_a_prepared_folder_train_as_the_books_text(tmp_path, verdict, one_thread):
    """Same windows, same sampler: the same weights as pretraining on the-verdict itself."""
    book = pretrain(
        "the-verdict", config(tmp_path / "book", max_steps=4), NO_SAMPLE, model_config=tiny_config()
    )
    mapped = pretrain(
        str(verdict), config(tmp_path / "mapped", max_steps=4), options(sampling="sequential"),
        model_config=tiny_config(),
    )  # fmt: skip
    assert_same_weights(weights(tmp_path / "book"), weights(tmp_path / "mapped"), 0.0)
    assert book.summary["metrics"]["val_loss"] == mapped.summary["metrics"]["val_loss"]
    assert mapped.summary["hyperparameters"]["train_windows"] == 144  # 4,612 train tokens / 32
    assert mapped.summary["datasets"][0]["sha256"].startswith("b41e41a6")


def test_max_tokens_sets_the_steps_and_random_needs_a_prepared_folder(tmp_path, verdict, one_thread):
    result = pretrain(
        str(verdict),
        config(tmp_path / "run", num_epochs=10),
        options(max_tokens=1000),
        model_config=tiny_config(),
    )
    assert result.summary["steps"] == 8 and result.summary["tokens_seen"] == 8 * 4 * 32  # ceil(1000 / 128)
    assert result.summary["hyperparameters"]["sampling"] == "random"
    with pytest.raises(ValueError, match="needs a prepared folder"):
        pretrain(
            "the-verdict", config(tmp_path / "raw"), options(sampling="random"), model_config=tiny_config()
        )


def test_each_epoch_of_random_windows_draws_other_windows(tmp_path, verdict, one_thread, monkeypatch):
    """nanoGPT draws fresh offsets for every batch: here every epoch draws other windows (a hash of the epoch too),
    while the train loss stays on the first epoch's first windows."""
    read = []
    get = RandomWindows.__getitem__

    def recording(self, i):
        read.append((self.epoch, self.offset(i)))
        return get(self, i)

    monkeypatch.setattr(RandomWindows, "__getitem__", recording)
    result = pretrain(
        str(verdict),
        config(
            tmp_path / "run", num_epochs=2, eval_freq=10, batch_order="seedable"
        ),  # train loss: fixed windows
        NO_SAMPLE,
        model_config=tiny_config(),
    )
    assert result.summary["steps"] == 72  # 144 windows of 32, batch 4, 2 epochs
    first, second = ({o for e, o in read if e == epoch} for epoch in (0, 1))
    assert len(second) > 100 and len(first & second) < 0.1 * len(second)
    # the train loss: the first epoch's windows 0-3 (eval_iter=1 batch), at all 8 evaluations and the final one
    first_windows = PreparedCorpus(verdict).windows("train", 32, "random", seed=123)
    for i in range(4):
        assert read.count((0, first_windows.offset(i))) >= 9


def test_a_run_stopped_after_a_checkpoint_resumes_exactly(tmp_path, verdict, one_thread, monkeypatch):
    """Random windows, dropout, gradient accumulation, cosine schedule; stopped in the 2nd epoch, resumed."""
    flags = dict(
        num_epochs=2, checkpoint_every=6, gradient_accumulation_steps=2, lr_schedule="cosine", warmup_steps=3,
        max_grad_norm=1.0, eval_freq=5,
    )  # fmt: skip
    model = tiny_config()  # drop_rate 0.1
    pretrain(str(verdict), config(tmp_path / "ref", **flags), NO_SAMPLE, model_config=model)

    save = training_module.save_checkpoint

    def save_then_stop(run):
        path = save(run)
        if run.state.step == 24:  # 18 optimizer steps an epoch: 6 steps into the second
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(training_module, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        pretrain(str(verdict), config(tmp_path / "run", **flags), NO_SAMPLE, model_config=tiny_config())
    AcceleratorState._reset_state(reset_partial_state=True)
    monkeypatch.setattr(training_module, "save_checkpoint", save)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    resumed = pretrain(
        str(verdict),
        config(tmp_path / "run", resume=True, **flags),
        NO_SAMPLE,
        model_config=tiny_config(),
    )
    assert resumed.summary["steps"] == 36
    assert_same_weights(weights(tmp_path / "ref"), weights(tmp_path / "run"), atol=1e-6)
    ref = [json.loads(x) for x in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    res = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in res] == pytest.approx([r["train_loss"] for r in ref], abs=1e-6)


def _flags(config_path, verdict, batch_size):
    return [
        str(verdict), "--config", str(config_path), "--max-steps", "6", "--batch-size", str(batch_size),
        "--eval-freq", "100", "--eval-iter", "1", "--final-eval-iter", "1", "--no-progress-bar",
        "--start-context", "", "--sampling", "random", "--batch-order", "seedable",  # what several processes use
    ]  # fmt: skip


@pytest.mark.slow  # two runs, one of two processes (test_pretrain's torchrun test is the default suite's)
def test_two_processes_match_one_process_on_a_prepared_folder(tmp_path, verdict):
    config_path = write_tiny_config(tmp_path, drop_rate=0.0)
    one, two = tmp_path / "one", tmp_path / "two"
    run_cli("-m", "gpt_scratch", "pretrain", *_flags(config_path, verdict, 4), "--output-dir", str(one))
    torchrun = [
        "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29527",
        "-m", "gpt_scratch", "pretrain", *_flags(config_path, verdict, 2), "--output-dir", str(two),
    ]  # fmt: skip
    run_cli(*torchrun)
    assert_same_weights(weights(one), weights(two), atol=REASSOCIATION_ATOL)
    s1 = json.loads((one / "training_summary.json").read_text())
    s2 = json.loads((two / "training_summary.json").read_text())
    assert s1["tokens_seen"] == s2["tokens_seen"] == 6 * 4 * 32


@pytest.mark.slow  # ~2 min on the shared 2-core machine
def test_sigkill_then_resume_on_a_prepared_folder(tmp_path, verdict):
    config_path = write_tiny_config(tmp_path)
    flags = [
        str(verdict),
        "--config",
        str(config_path),
        "--num-epochs",
        "2",
        "--batch-size",
        "8",
        "--checkpoint-every",
        "3",
        "--eval-freq",
        "5",
        "--eval-iter",
        "2",
        "--final-eval-iter",
        "2",
        "--no-progress-bar",
        "--start-context",
        "",
        "--lr-schedule",
        "cosine",
        "--warmup-steps",
        "3",
    ]  # fmt: skip  (144 random windows: 18 steps an epoch, 36 in all)
    reference = tmp_path / "reference"
    run_cli("-m", "gpt_scratch", "pretrain", *flags, "--output-dir", str(reference))
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "tests/slow_pretrain.py", "0.2", *flags, "--output-dir", str(killed)],
        cwd=PROJECT_ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    marker = killed / "checkpoints" / "latest"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if marker.is_file() and marker.read_text().strip() >= "step-000021":
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    run_cli("-m", "gpt_scratch", "pretrain", *flags, "--output-dir", str(killed), "--resume")
    assert_same_weights(weights(reference), weights(killed), atol=1e-6)


def test_a_run_without_validation_reports_no_validation_loss(tmp_path):
    """All the text for training (train_ratio 1.0): the final line names the train loss only, never 'nan'."""
    folder = tmp_path / "all-train"
    prepare_corpus(["the-verdict"], folder, train_ratio=1.0, progress_bar=False)
    config_path = write_tiny_config(tmp_path, drop_rate=0.0)
    result = run_cli(
        "-m", "gpt_scratch", "pretrain", str(folder), "--config", str(config_path), "--max-steps", "2",
        "--batch-size", "2", "--eval-iter", "1", "--final-eval-iter", "1", "--no-progress-bar",
        "--start-context", "", "--output-dir", str(tmp_path / "run"),
    )  # fmt: skip
    done = next(line for line in result.stdout.splitlines() if line.startswith("Done:"))
    assert done.startswith("Done: train loss ") and "val loss" not in done and "nan" not in done
