"""A run folder tried as a user would, with mistakes and kills: nothing loaded runs code, nothing is lost unasked,
no resume is silently inexact (issue 12)."""

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from test_training import TINY, windows

from gpt_scratch.cli import main
from gpt_scratch.modeling_gpt_scratch import GPTScratchForCausalLM
from gpt_scratch.training import CausalLMTask, TrainingConfig, train
from gpt_scratch.training import loop as training_module
from gpt_scratch.training.checkpointing import LOCK_FILE

from conftest import TINY_CONFIG, lock_held_by_another_process, tiny_config

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS_PER_EPOCH = 4  # windows(16) in batches of 4


def config(output_dir, **overrides) -> TrainingConfig:
    values = dict(
        output_dir=str(output_dir), num_epochs=1, batch_size=4, learning_rate=5e-3, eval_freq=2, eval_iter=1,
        final_eval_iter=1, progress_bar=False, batch_order="seedable",
    )  # fmt: skip
    return TrainingConfig(**{**values, **overrides})


def run(output_dir, data=None, model_overrides=None, **overrides):
    """A tiny run with dropout (so that the random states matter) on 16 random windows."""
    torch.manual_seed(0)
    model = GPTScratchForCausalLM(tiny_config(**{**TINY, "drop_rate": 0.1, **(model_overrides or {})}))
    data = windows(16) if data is None else data
    return train(model, data, windows(4, seed=1), config(output_dir, **overrides), CausalLMTask(None))


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def assert_same_weights(a, b) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def stop_after_checkpoint(monkeypatch, step: int) -> None:
    """The run stops (as if killed) right after it wrote the checkpoint of `step`."""
    save = training_module.save_checkpoint

    def save_then_stop(r):
        path = save(r)
        if r.state.step == step:
            raise KeyboardInterrupt
        return path

    monkeypatch.setattr(training_module, "save_checkpoint", save_then_stop)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Two epochs (8 steps) uninterrupted: what every exact resume below must end with."""
    out = tmp_path_factory.mktemp("reference") / "run"
    run(out, num_epochs=2)
    return weights(out)


# ---- No checkpoint file may run code ----------------------------------------------------------------------------


class Payload:
    """A pickle that writes `marker` when it is loaded without weights_only."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def test_a_tampered_checkpoint_never_runs_code(tmp_path):
    out = tmp_path / "run"
    run(out)
    checkpoint = out / "checkpoints" / "step-000004"
    marker = tmp_path / "marker"
    payload = tmp_path / "payload.pt"
    torch.save({"state": Payload(marker)}, payload)
    torch.load(payload, weights_only=False)  # the payload is live: unpickled, it writes the marker
    assert marker.read_text() == "ran"
    marker.unlink()

    # accelerate's pickle files (the scheduler's custom_checkpoint_0.pkl was loaded with weights_only=False)
    for name in ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin", "scheduler.bin"):
        (checkpoint / name).write_bytes(payload.read_bytes())
    run(out, num_epochs=2, resume=True)
    assert not marker.exists()

    # each file of the checkpoint in turn replaced by the payload: an error naming it, and nothing runs
    out = tmp_path / "second"
    run(out)
    checkpoint = out / "checkpoints" / "step-000004"
    for path in sorted(p for p in checkpoint.iterdir()):
        original = path.read_bytes()
        path.write_bytes(payload.read_bytes())
        with pytest.raises(ValueError, match=f"{path.name}") as error:
            run(out, num_epochs=2, resume=True)
        assert "no readable checkpoint" in str(error.value) and not marker.exists()
        path.write_bytes(original)
    assert not list(checkpoint.glob("*.pkl")) and not list(checkpoint.glob("*.bin"))


# ---- checkpoints/latest -----------------------------------------------------------------------------------------


def test_latest_names_only_a_step_folder_of_the_runs_own_checkpoints(tmp_path):
    other, mine = tmp_path / "other", tmp_path / "mine"
    run(other, model_overrides={"drop_rate": 0.0})
    run(mine)
    marker = mine / "checkpoints" / "latest"
    stolen = other / "checkpoints" / "step-000004"
    for name in ("../../other/checkpoints/step-000004", str(stolen)):
        marker.write_text(name + "\n")
        with pytest.raises(ValueError, match=r"latest names .*not a step-NNNNNN folder of this run"):
            run(mine, num_epochs=2, resume=True)
    (mine / "checkpoints" / "step-000009").symlink_to(stolen, target_is_directory=True)
    marker.write_text("step-000009\n")
    with pytest.raises(ValueError, match="not a step-NNNNNN folder of this run"):
        run(mine, num_epochs=2, resume=True)


# ---- Never replace a run unasked ----------------------------------------------------------------------------------


def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(tmp_path, monkeypatch):
    out = tmp_path / "run"
    run(out)
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(
        ValueError, match=r"already holds a run \(training_summary.json.*--resume.*--overwrite"
    ):
        run(out)
    assert (out / "model.safetensors").read_bytes() == before
    assert (out / "checkpoints" / "step-000004").is_dir()
    with pytest.raises(ValueError, match="exclude each other"):
        config(out, resume=True, overwrite=True)

    # --overwrite: the old run goes before the new one writes anything; killed while saving its model, the new
    # run leaves no old weights beside its config, and resumes from its final checkpoint
    def killed_while_saving(self, folder, **kwargs):
        (folder / "config.json").parent.mkdir(parents=True, exist_ok=True)
        self.config.save_pretrained(folder)
        raise KeyboardInterrupt

    monkeypatch.setattr(GPTScratchForCausalLM, "save_pretrained", killed_while_saving)
    with pytest.raises(KeyboardInterrupt):
        run(out, overwrite=True, model_overrides={"emb_dim": 16})
    monkeypatch.undo()
    assert not (out / "model.safetensors").exists() and not (out / "config.json").exists()
    assert not (out / "training_summary.json").exists()
    assert [p.name for p in (out / "checkpoints").glob("step-*")] == ["step-000004"]
    run(out, resume=True, model_overrides={"emb_dim": 16})
    saved = json.loads((out / "config.json").read_text())
    assert saved["emb_dim"] == 16 and weights(out)["model.tok_emb.weight"].shape[1] == 16


def test_resume_into_a_finished_folder_without_checkpoints_is_refused(tmp_path):
    out = tmp_path / "run"
    run(out)
    for folder in (out / "checkpoints").glob("step-*"):
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
    with pytest.raises(ValueError, match="holds a run .* but no checkpoint to resume from"):
        run(out, resume=True)
    assert (out / "model.safetensors").is_file()
    run(tmp_path / "new", resume=True)  # an empty folder: --resume starts the run
    assert (tmp_path / "new" / "training_summary.json").is_file()


# ---- An unreadable checkpoint: the previous one, or an error naming the file ---------------------------------


def test_a_corrupt_trainer_state_falls_back_to_the_previous_checkpoint(
    tmp_path, monkeypatch, reference, caplog
):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        run(out, num_epochs=2, checkpoint_every=2)
    monkeypatch.undo()
    root = out / "checkpoints"
    assert sorted(p.name for p in root.glob("step-*")) == ["step-000004", "step-000006"]  # the last two
    bad = root / "step-000006" / "trainer_state.json"
    bad.write_text('{"step": 6, "epo')  # cut short
    with caplog.at_level(logging.WARNING):
        result = run(out, num_epochs=2, checkpoint_every=2, resume=True)
    assert f"{bad}: not valid JSON" in caplog.text and "previous complete checkpoint" in caplog.text
    assert result.summary["resumes"][0]["step"] == 4
    assert_same_weights(weights(out), reference)


def test_no_readable_checkpoint_is_an_error_naming_the_file_and_deletes_nothing(tmp_path):
    out = tmp_path / "run"
    run(out)
    state = out / "checkpoints" / "step-000004" / "trainer_state.json"
    state.unlink()
    with pytest.raises(ValueError, match=f"no readable checkpoint .*{state}: missing"):
        run(out, num_epochs=2, resume=True)
    state.write_text("not json")
    with pytest.raises(ValueError, match=f"{state}: not valid JSON"):
        run(out, num_epochs=2, resume=True)
    assert (out / "checkpoints" / "step-000004" / "model.safetensors").is_file()
    assert (out / "model.safetensors").is_file()


def test_a_missing_or_truncated_rng_state_refuses_the_resume(tmp_path):
    out = tmp_path / "run"
    run(out)
    rng = out / "checkpoints" / "step-000004" / "rng_state_0.safetensors"
    original = rng.read_bytes()
    rng.write_bytes(original[: len(original) // 2])
    with pytest.raises(ValueError, match=f"{rng}: unreadable, truncated or corrupt"):
        run(out, num_epochs=2, resume=True)
    rng.unlink()
    with pytest.raises(ValueError, match=f"{rng}: missing"):
        run(out, num_epochs=2, resume=True)
    rng.write_bytes(original)
    run(out, num_epochs=2, resume=True)


# ---- One run at a time ----------------------------------------------------------------------------------------


def test_a_second_run_into_a_locked_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    lock = out / "checkpoints" / LOCK_FILE
    lock.parent.mkdir(parents=True)
    with lock_held_by_another_process(lock):
        with pytest.raises(ValueError, match=f"{out} is in use by another run .*{lock}"):
            run(out)
        assert not (out / "metrics.jsonl").exists()
    run(out)  # the lock dies with its process
    run(out, num_epochs=2, resume=True)  # and a finished run releases its own


# ---- A resume continues the same run ----------------------------------------------------------------------------


def test_resume_refuses_arguments_that_change_the_run(tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(out, num_epochs=2, checkpoint_every=2)
    monkeypatch.undo()
    refused = [
        (dict(learning_rate=1e-3), r"learning_rate: 0.005 -> 0.001"),
        (dict(batch_size=2, gradient_accumulation_steps=2), r"batch_size: 4 -> 2, gradient_accumulation_steps: 1 -> 2"),
        (dict(seed=7), r"seed: 123 -> 7"),
        (dict(model_overrides={"drop_rate": 0.0}), r"model_config.drop_rate: 0.1 -> 0.0"),
        (dict(data=windows(20)), r"train_examples: 16 -> 20"),
        (dict(lr_schedule="cosine"), r"lr_schedule: 'constant' -> 'cosine'"),
    ]  # fmt: skip
    for changes, listed in refused:
        flags = {"num_epochs": 2, "checkpoint_every": 2, **changes}
        with pytest.raises(ValueError, match=f"arguments that change the run: {listed}"):
            run(out, resume=True, **flags)
    assert (out / "checkpoints" / "step-000002").is_dir()


def test_resume_may_change_what_is_evaluated_and_extend_a_constant_schedule(tmp_path, reference):
    """One epoch, then resumed for a second with other evaluation and checkpoint settings: the two-epoch run."""
    out = tmp_path / "run"
    run(out)  # finished after 4 steps
    result = run(out, resume=True, num_epochs=2, eval_freq=3, checkpoint_every=3, eval_iter=2)
    assert_same_weights(weights(out), reference)
    assert result.summary["steps"] == 8
    assert result.summary["hyperparameters"]["eval_freq"] == 3
    assert result.summary["resumes"] == [
        {
            "step": 4,
            "changed": {
                "checkpoint_every": [None, 3], "eval_freq": [2, 3], "eval_iter": [1, 2], "num_epochs": [1, 2],
                "total_steps": [4, 8],
            },
        }
    ]  # fmt: skip
    # a cosine schedule spans the run: its length cannot change
    cosine = tmp_path / "cosine"
    run(cosine, lr_schedule="cosine")
    with pytest.raises(
        ValueError, match=r"num_epochs: 1 -> 2.*total_steps: 4 -> 8 \(the cosine schedule spans"
    ):
        run(cosine, resume=True, lr_schedule="cosine", num_epochs=2)
    with pytest.raises(ValueError, match="step-000008 is at step 8, past this run's 6 steps"):
        run(out, resume=True, num_epochs=2, max_steps=6)


def test_in_the_books_batch_order_the_evaluation_schedule_is_part_of_the_run(tmp_path):
    """The book's evaluate_model shuffles the train loader from the global generator: more evaluations, other
    batches and dropout masks afterwards. So eval_freq may not change on resume there."""
    out = tmp_path / "book"
    run(out, batch_order="book")
    with pytest.raises(ValueError, match=r"eval_freq: 2 -> 3"):
        run(out, resume=True, batch_order="book", num_epochs=2, eval_freq=3)


# ---- The workflows' command lines -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory, shared):
    """A tiny pretrained model with its tokenizer, as `gpt-scratch pretrain` leaves it."""
    from gpt_scratch.tokenization_gpt_scratch import GPTScratchTokenizer

    folder = tmp_path_factory.mktemp("base")
    torch.manual_seed(0)
    GPTScratchForCausalLM(tiny_config(context_length=128)).save_pretrained(folder)
    GPTScratchTokenizer().save_pretrained(folder)
    return folder


def finished_run(folder):
    folder.mkdir(parents=True)
    (folder / "training_summary.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"old weights")
    return folder


def test_cli_workflows_refuse_a_folder_holding_a_run(tmp_path, base_folder, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Every effort moves you forward. " * 200)
    model_json = tmp_path / "tiny.json"
    model_json.write_text(json.dumps({**TINY_CONFIG, "context_length": 32}))
    table = tmp_path / "table.csv"
    table.write_text("text,label\n" + "".join(f"text number {i},{'ab'[i % 2]}\n" for i in range(40)))
    instructions = tmp_path / "instructions.json"
    record = {"instruction": "Repeat the word.", "input": "cat", "output": "cat"}
    instructions.write_text(json.dumps([record] * 20))
    verbs = {
        "pretrain": ["pretrain", str(corpus), "--config", str(model_json)],
        "finetune-classifier": ["finetune-classifier", str(table), "--model", str(base_folder)],
        "finetune-instructions": ["finetune-instructions", str(instructions), "--model", str(base_folder)],
    }
    for verb, argv in verbs.items():
        out = finished_run(tmp_path / verb)
        flags = ["--output-dir", str(out), "--max-steps", "1", "--no-progress-bar"]
        assert main([*argv, *flags]) == 2
        err = capsys.readouterr().err
        assert f"\ngpt-scratch {verb}: error: {out} already holds a run" in "\n" + err, err
        assert "--resume" in err and "--overwrite" in err and "Traceback" not in err
        assert (out / "model.safetensors").read_bytes() == b"old weights"
        assert main([*argv, *flags, "--resume", "--overwrite"]) == 2
        assert "exclude each other" in capsys.readouterr().err
    out = tmp_path / "pretrain"
    argv = [
        *verbs["pretrain"],
        "--output-dir",
        str(out),
        "--max-steps",
        "1",
        "--no-progress-bar",
        "--overwrite",
    ]
    assert main([*argv, "--start-context", ""]) == 0
    assert json.loads((out / "training_summary.json").read_text())["steps"] == 1
    assert (out / "model.safetensors").read_bytes() != b"old weights"


def test_lock_file_and_checkpoints_stay_out_of_the_saved_model(tmp_path):
    out = tmp_path / "run"
    run(out)
    assert (out / "checkpoints" / LOCK_FILE).exists()
    assert not (out / LOCK_FILE).exists() and not (out / "checkpoints" / ".tmp-save").exists()
    assert sorted(os.listdir(out / "checkpoints" / "step-000004")) == [
        "loop_state.json", "model.safetensors", "optimizer.safetensors", "rng_state_0.safetensors",
        "trainer_state.json",
    ]  # fmt: skip


@pytest.mark.slow  # ~2 min on the shared 2-core machine: three runs of two processes
@pytest.mark.needs_shared
def test_two_processes_resume_each_with_its_own_random_states(tmp_path):
    """torchrun, dropout on: one epoch then resumed for a second equals two epochs; one process cannot resume."""
    from test_pretrain import run_cli, write_tiny_config

    config_path = write_tiny_config(tmp_path)  # drop_rate 0.1: each process draws its own dropout masks
    flags = [
        "--config", str(config_path), "--batch-size", "4", "--eval-freq", "100", "--eval-iter", "1",
        "--final-eval-iter", "1", "--no-progress-bar", "--start-context", "",
    ]  # fmt: skip

    def torchrun(out, *more):
        return run_cli(
            "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29537",
            "-m", "gpt_scratch", "pretrain", *flags, "--output-dir", str(out), *more,
        )  # fmt: skip

    torchrun(tmp_path / "reference", "--num-epochs", "2")
    out = tmp_path / "run"
    torchrun(out, "--num-epochs", "1")
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*/rng_state_*")) == [
        "rng_state_0.safetensors", "rng_state_1.safetensors",
    ]  # fmt: skip
    one = subprocess.run(
        [sys.executable, "-m", "gpt_scratch", "pretrain", *flags, "--output-dir", str(out), "--resume",
         "--num-epochs", "2"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert one.returncode == 2 and "num_processes: 2 -> 1" in one.stderr, one.stderr[-2000:]
    torchrun(out, "--resume", "--num-epochs", "2")
    assert_same_weights(weights(out), weights(tmp_path / "reference"))


# ---- Only the files a run wrote are ever replaced or removed (issue 22) ------------------------------------------


def user_files(folder) -> dict[str, bytes]:
    """A folder of the user's own: names a run also writes, and a folder inside checkpoints/."""
    files = {"README.md": b"# my notes", "config.json": b'{"mine": 1}', "vocab.json": b"{}",
             "checkpoints/other/keep.txt": b"keep me"}  # fmt: skip
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def test_a_folder_holding_the_users_files_is_refused_even_with_overwrite(tmp_path):
    out = tmp_path / "mine"
    files = user_files(out)
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(
            ValueError, match=r"files that gpt-scratch did not write .*README.md.*never replaces"
        ):
            run(out, **flags)
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == set(files)
    assert all((out / name).read_bytes() == data for name, data in files.items())
    assert not (out / "checkpoints" / LOCK_FILE).exists()  # a refused run leaves no lock behind

    fresh = tmp_path / "fresh" / "run"
    (fresh.parent).mkdir()
    (fresh.parent / "keep.txt").write_text("x")
    os.mkdir(fresh)
    (fresh / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        run(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == ["notes.txt"]  # no checkpoints/ folder left either


def test_overwrite_removes_only_the_runs_own_files(tmp_path):
    out = tmp_path / "run"
    run(out)
    manifest = json.loads((out / "checkpoints" / "run_files.json").read_text())["files"]
    assert {"model.safetensors", "config.json", "README.md", "training_summary.json", "metrics.jsonl",
            "loss.png"} <= set(manifest)  # fmt: skip
    assert "checkpoints/step-000004/model.safetensors" not in manifest  # the checkpoints' own structure
    (out / "notes.txt").write_text("mine")
    (out / "checkpoints" / "other").mkdir()
    (out / "checkpoints" / "other" / "keep.txt").write_text("mine")
    with pytest.raises(
        ValueError, match=r"did not write for a run \(checkpoints/other/keep.txt, notes.txt\)"
    ):
        run(out, overwrite=True)
    with pytest.raises(ValueError, match="notes.txt"):
        run(out, num_epochs=2, resume=True)
    assert (out / "model.safetensors").is_file() and (out / "checkpoints" / "step-000004").is_dir()
    (out / "notes.txt").unlink()
    shutil.rmtree(out / "checkpoints" / "other")
    run(out, overwrite=True, model_overrides={"emb_dim": 16})
    assert json.loads((out / "config.json").read_text())["emb_dim"] == 16


def test_a_run_folder_of_an_older_version_without_its_file_list_is_still_recognised(tmp_path):
    out = tmp_path / "run"
    run(out)
    (out / "checkpoints" / "run_files.json").unlink()  # as every run folder written before issue 22
    run(out, num_epochs=2, resume=True)
    (out / "checkpoints" / "run_files.json").unlink()
    (out / "mine.txt").write_text("mine")
    with pytest.raises(ValueError, match="mine.txt"):
        run(out, overwrite=True)
    (out / "mine.txt").unlink()
    run(out, overwrite=True)


def test_a_tampered_trainer_state_is_refused(tmp_path, monkeypatch):
    out = tmp_path / "run"
    stop_after_checkpoint(monkeypatch, 6)
    with pytest.raises(KeyboardInterrupt):
        run(out, num_epochs=2, checkpoint_every=2)
    monkeypatch.undo()
    path = out / "checkpoints" / "step-000006" / "trainer_state.json"
    original = json.loads(path.read_text())
    assert (original["step"], original["epoch"], original["batches_in_epoch"]) == (6, 1, 2)
    for change, problem in [
        ({"step": 5}, "step 5 in the checkpoint of step 6"),
        ({"epoch": 99}, "epoch 99, batch 2 is not where step 6 stands"),
        ({"batches_in_epoch": -3}, "batches_in_epoch -3 is not a count"),
        ({"epoch": 0, "batches_in_epoch": 6}, "epoch 0, batch 6 is not where step 6 stands"),
        ({"tokens_seen": "many"}, "tokens_seen 'many' is not a count"),
    ]:
        path.write_text(json.dumps({**original, **change}))
        with pytest.raises(ValueError, match=f"{path} does not match its checkpoint: .*{problem}"):
            run(out, num_epochs=2, checkpoint_every=2, resume=True)
    path.write_text(json.dumps(original))
    run(out, num_epochs=2, checkpoint_every=2, resume=True)


def test_a_latest_link_to_an_outside_file_is_refused_without_echoing_it(tmp_path):
    out = tmp_path / "run"
    run(out)
    secret = tmp_path / "secret.txt"
    secret.write_text("step-000004 password=hunter2 " * 20)
    marker = out / "checkpoints" / "latest"
    marker.unlink()
    marker.symlink_to(secret)
    with pytest.raises(ValueError, match="latest is a link") as error:
        run(out, num_epochs=2, resume=True)
    assert "hunter2" not in str(error.value)
    marker.unlink()
    marker.write_text("password=hunter2 " * 20)
    with pytest.raises(ValueError, match="names something else") as error:
        run(out, num_epochs=2, resume=True)
    assert "hunter2" not in str(error.value)
