"""The shared training loop with tiny models: schedule, losses, metrics, trackers, checkpoints, plots."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM, GPTScratchForSequenceClassification
from gpt_scratch.plotting import plot_losses
from gpt_scratch.training import (
    CausalLMTask,
    ClassificationTask,
    TrainingConfig,
    TrainState,
    latest_checkpoint,
    lr_lambda,
    train,
)

from conftest import tiny_config

TINY = dict(emb_dim=32, context_length=32, vocab_size=128)  # overrides of conftest.tiny_config


def windows(n: int, seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 128, (n, 17), generator=g)
    return Dataset.from_dict({"input_ids": ids[:, :-1].tolist(), "target_ids": ids[:, 1:].tolist()})


def config(tmp_path, **kw) -> TrainingConfig:
    base = dict(output_dir=str(tmp_path / "run"), num_epochs=1, batch_size=4, eval_freq=2, eval_iter=2,
                final_eval_iter=2, progress_bar=False)  # fmt: skip
    return TrainingConfig(**{**base, **kw})


def test_lr_schedule_warmup_then_cosine_to_min_lr():
    cfg = TrainingConfig(learning_rate=1e-3, min_lr=1e-4, warmup_steps=10, lr_schedule="cosine")
    f = lr_lambda(cfg, total_steps=110)
    # appendix D's warmup: from initial_lr (0 here) by (peak - initial_lr) / warmup_steps a step
    assert f(0) == 0.0 and f(9) == pytest.approx(0.9) and f(10) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.1 + 0.9 * 0.5)  # half way through the decay
    assert f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    assert lr_lambda(TrainingConfig(), 100)(50) == 1.0  # the book's chapter 5: constant


def test_causal_lm_loss_is_the_books_calc_loss_batch():
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(**TINY)).eval()
    batch = {k: torch.tensor(v) for k, v in windows(3)[:].items()}
    logits = model(batch["input_ids"]).logits
    book = F.cross_entropy(logits.flatten(0, 1), batch["target_ids"].flatten())  # calc_loss_batch
    assert CausalLMTask().loss(model, batch).item() == pytest.approx(book.item(), abs=1e-6)
    # transformers' labels= convention shifts inside: same loss on the unshifted sequence
    full = torch.cat([batch["input_ids"], batch["target_ids"][:, -1:]], dim=1)
    assert model(full[:, :-1], labels=full[:, :-1]).loss.item() != 0  # sanity: the model computes a loss
    batch["target_ids"][:, :8] = -100  # masked positions do not count (instruction fine-tuning)
    masked = F.cross_entropy(logits[:, 8:].flatten(0, 1), batch["target_ids"][:, 8:].flatten())
    assert CausalLMTask().loss(model, batch).item() == pytest.approx(masked.item(), abs=1e-6)


def test_train_lowers_the_loss_and_logs_everything(tmp_path):
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(**TINY))
    cfg = config(tmp_path, num_epochs=3, learning_rate=5e-3, log_with="tensorboard", max_grad_norm=1.0,
                 gradient_accumulation_steps=2)  # fmt: skip
    result = train(model, windows(32), windows(8, seed=1), cfg, CausalLMTask(start_context=None))
    out = tmp_path / "run"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 3, 5, 7, 9, 11]  # 8 batches / 2 accumulated = 4 steps an epoch
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 0.3  # memorising 32 random windows
    assert rows[-1]["tokens_seen"] == 11 * 2 * 4 * 16
    assert all(r["tokens_per_s"] > 0 for r in rows)
    assert len((out / "metrics.csv").read_text().splitlines()) == len(rows) + 1
    assert list(out.rglob("events.out.tfevents*")), "tensorboard wrote no event file"
    summary = result.summary
    assert summary["steps"] == 12 and summary["epochs"] == 3.0 and summary["tokens_seen"] == 12 * 8 * 16
    assert summary["metrics"]["perplexity"] == pytest.approx(math.exp(summary["metrics"]["val_loss"]))
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 12
    assert (out / "model.safetensors").is_file() and (out / "loss.png").is_file()
    assert latest_checkpoint(out).name == "step-000012"
    assert [p.name for p in (out / "checkpoints").iterdir() if p.name.startswith("step-")] == ["step-000012"]
    state = TrainState.load(latest_checkpoint(out) / "trainer_state.json")  # plain JSON, no pickle
    assert (state.step, state.epoch, state.batches_in_epoch) == (12, 3, 0) and state.history == result.history


def test_classification_task_reports_accuracy(tmp_path):
    torch.manual_seed(0)
    model = GPTScratchForSequenceClassification(tiny_config(**TINY, num_labels=2))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, 128, (40, 8), generator=g)
    labels = (ids[:, -1] < 64).long()  # learnable from the last token, where the classifier reads
    data = Dataset.from_dict({"input_ids": ids.tolist(), "labels": labels.tolist()})
    cfg = config(
        tmp_path, num_epochs=8, learning_rate=1e-2, weight_decay=0.0, eval_freq=10, final_eval_iter=None
    )
    result = train(model, data, data.select(range(16)), cfg, ClassificationTask(), test_dataset=data)
    m = result.summary["metrics"]
    assert result.summary["task"] == "classification"
    assert {"train_accuracy", "val_accuracy", "test_accuracy", "test_loss"} <= m.keys()
    with torch.no_grad():
        direct = (result.model(ids).logits.argmax(-1) == labels).float().mean().item()  # calc_accuracy_loader
    assert m["test_accuracy"] == pytest.approx(direct) and m["test_accuracy"] > 0.8
    assert (tmp_path / "run" / "accuracy.png").is_file()
    assert result.summary["plots"] == ["loss.png", "accuracy.png"]


def test_checkpoint_keeps_the_previous_one_until_the_new_is_complete(tmp_path):
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(**TINY))
    cfg = config(tmp_path, checkpoint_every=2)
    train(model, windows(16), None, cfg, CausalLMTask(start_context=None))
    root = tmp_path / "run" / "checkpoints"
    assert (root / "latest").read_text().strip() == "step-000004"
    # a crash while writing step 6 leaves a .tmp folder and the marker on step 4
    (root / ".tmp-step-000006").mkdir()
    assert latest_checkpoint(tmp_path / "run") == root / "step-000004"
    # a marker that names a missing folder falls back to the newest complete one
    (root / "latest").write_text("step-000099\n")
    assert latest_checkpoint(tmp_path / "run") == root / "step-000004"


def test_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainingConfig(lr_schedule="linear")
    with pytest.raises(ValueError, match="batch_size"):
        TrainingConfig(batch_size=0)
    if not torch.cuda.is_available():
        model = GPTScratchForCausalLM(tiny_config(**TINY))
        with pytest.raises(ValueError, match="fp16.*GPU"):
            train(model, windows(8), None, config(tmp_path, mixed_precision="fp16"), CausalLMTask())


BF16_SCRIPT = """
import json, math, sys
import torch
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.training import CausalLMTask, TrainingConfig, train
from conftest import tiny_config
from test_training import TINY, windows

torch.manual_seed(0)
model = GPTScratchForCausalLM(tiny_config(**TINY))
cfg = TrainingConfig(output_dir=sys.argv[1], num_epochs=1, batch_size=4, eval_freq=2, eval_iter=2,
                     final_eval_iter=2, progress_bar=False, mixed_precision="bf16")
result = train(model, windows(16), windows(4), cfg, CausalLMTask(None))
print(json.dumps({"val_loss": result.summary["metrics"]["val_loss"],
                  "dtype": str(next(result.model.parameters()).dtype)}))
"""


def test_bf16_mixed_precision_trains_on_cpu(tmp_path):
    # accelerate fixes the precision once per process: bf16 runs in a process of its own
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", BF16_SCRIPT, str(tmp_path / "run")], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    assert math.isfinite(reported["val_loss"])
    assert reported["dtype"] == "torch.float32"  # weights stay fp32, autocast computes bf16


def test_plot_losses_writes_a_png(tmp_path):
    path = plot_losses([1, 2, 3], [10, 20, 30], [3.0, 2.0, 1.0], [3.5, 2.5, 2.0], tmp_path / "l.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="same length"):
        plot_losses([1, 2], [10], [1.0, 2.0], None, tmp_path / "x.png")


def test_the_final_evaluation_is_bounded_by_default_and_whole_when_small(tmp_path):
    """At scale the final metrics read the first 200 batches of each set (issue 22: a 3-step run on a 25 MB folder
    spent 16 minutes on them); the book's sets, smaller than that, are read whole as the book's calc_loss_loader."""

    class Counting(CausalLMTask):
        batches = 0

        def loss(self, model, batch):
            Counting.batches += 1
            return super().loss(model, batch)

    assert TrainingConfig().final_eval_iter == 200
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(**TINY))
    settings = dict(output_dir=str(tmp_path / "big"), batch_size=1, max_steps=1, eval_freq=100, eval_iter=1,
                    progress_bar=False)  # fmt: skip
    train(model, windows(500), windows(300, seed=1), TrainingConfig(**settings), Counting(None))
    # 1 step + 1 evaluation after it (1 batch each of train and validation) + the final 200 + 200
    assert Counting.batches == 1 + 2 + 400
    Counting.batches = 0
    small = {**settings, "output_dir": str(tmp_path / "small")}
    train(model, windows(50), windows(30, seed=1), TrainingConfig(**small), Counting(None))
    assert Counting.batches == 1 + 2 + 50 + 30
