"""A run folder's checkpoints, and the rules that keep a run safe: nothing loaded runs code, nothing is lost unasked.

    OUTPUT_DIR/checkpoints/
        step-000012/                 one complete checkpoint (written as .tmp-step-000012, renamed when complete)
            model.safetensors        the weights
            optimizer.safetensors    AdamW's moments; its param_groups as JSON in the file's metadata
            loop_state.json          the learning-rate schedule, the gradient scaler, what the run was asked
            rng_state_0.safetensors  each process's random states: torch (CPU, CUDA), numpy, python's random
            trainer_state.json       the loop's TrainState (step, epoch, batches, history)
        latest                       the name of the newest checkpoint (the two newest are kept)
        run_files.json               every file this package wrote into OUTPUT_DIR for the run
        .lock                        held while a run writes into the folder (the `filelock` package)

No pickle anywhere: tensors go into safetensors, everything else into JSON, so a tampered file is an error, never
code that runs. A run starts with `claim_run_folder`: it takes the lock (a second run into the folder is refused),
refuses to replace a finished or checkpointed run unless asked (`overwrite`), and with `resume` picks the newest
checkpoint that reads back whole (an unreadable one is named; the previous one is used with a warning). Only files
this package wrote for a run (run_files.json lists them) are ever replaced or removed: a folder that holds anything
else is refused, `overwrite` or not.
`load_checkpoint` refuses a resume whose arguments would change the run's trajectory, listing each change.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from filelock import FileLock, Timeout
from safetensors import safe_open
from safetensors.torch import load_model, save_file, save_model

if TYPE_CHECKING:
    from gpt_scratch.training.config import TrainingConfig
    from gpt_scratch.training.loop import Run

logger = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
LATEST_MARKER = "latest"
LOCK_FILE = ".lock"
RUN_MANIFEST = "run_files.json"
TRAINER_STATE = "trainer_state.json"
LOOP_STATE = "loop_state.json"
MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.safetensors"
STEP_FOLDER = re.compile(r"step-\d{6,}")
KEEP_CHECKPOINTS = 2

# A folder holds a run (never replaced unless asked) when it has one of these, or a checkpoint
RUN_FILES = ("training_summary.json", "model.safetensors", "adapter_model.safetensors", "config.json")
# A run folder written before run_files.json existed: the files a run of gpt-scratch wrote at its top level
LEGACY_RUN_FILES = (
    *RUN_FILES, "metrics.jsonl", "metrics.csv", "generation_config.json", "README.md", "tokenizer_config.json",
    "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.json", "chat_template.jinja",
    "adapter_config.json", "instruction-data-with-response.json", "*.png", "*_gpt_scratch.py",
)  # fmt: skip
# Arguments a resume may change: they decide what is evaluated, logged and saved, not the weights' trajectory
MAY_CHANGE_ON_RESUME = {
    "output_dir", "eval_freq", "eval_iter", "final_eval_iter", "eval_batch_size",
    "checkpoint_every", "log_with", "progress_bar", "num_workers", "max_new_tokens",
}  # fmt: skip
# ... and these when the learning-rate schedule does not span the run (constant): a longer or shorter run
RUN_LENGTH = {"num_epochs", "max_steps", "total_steps"}
# How the run was started, and a model configuration's bookkeeping: never compared
NOT_COMPARED = {
    "resume", "overwrite", "transformers_version", "_name_or_path", "architectures", "output_attentions",
    "output_hidden_states", "return_dict", "use_cache",
}  # fmt: skip
# Arguments added since earlier checkpoints were written, with the value every earlier run had
ADDED_ARGUMENTS = {"model_config.gelu_approximate": "tanh", "resume_optimizer": False}


@dataclass
class TrainState:
    """Where a run stands, written as JSON into every checkpoint (transformers' `TrainerState` is the model)."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs completed
    batches_in_epoch: int = 0  # batches of the current epoch already trained on (skipped when resuming)
    tokens_seen: int = 0  # over every process
    wall_time_s: float = 0.0  # time spent training, over every resumed part of the run
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per evaluation
    # batch_order "book": torch's global generator (base64 of its state) at the start of the current epoch (its
    # train-loader iterator drew that epoch's shuffle from there). The generators at the checkpoint itself are in
    # the checkpoint's random-state files (checkpointing), as in every order.
    epoch_rng_state: str | None = None

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> TrainState:
        return cls(**json.loads(path.read_text()))


# ----------------------------------------------------------------------------------------------------------------
# The run folder: lock, refuse, overwrite, pick the checkpoint


def claim_run_folder(accelerator: Accelerator, config: TrainingConfig) -> tuple[FileLock | None, Path | None]:
    """Lock `config.output_dir` for this run and decide how it starts: (the lock, the checkpoint to resume).

    The main process decides, every process gets the answer (or raises the same error):
    - another run holds the folder's lock: an error naming the folder and the lock file;
    - `resume`: the newest readable checkpoint (None: the folder holds no run, start afresh); an error when the
      folder holds a run but no readable checkpoint;
    - not `resume`: a folder that holds a run is an error, unless `overwrite`, which removes that run first.
    Release the lock with `release_run_folder` (`finish` does).
    """
    output_dir = Path(config.output_dir)
    lock: list[FileLock | None] = [None]

    def decide() -> str | None:
        lock_path = output_dir / CHECKPOINTS_DIR / LOCK_FILE
        created = [p for p in (output_dir, lock_path.parent, lock_path) if not p.exists()]
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock[0] = FileLock(lock_path)
        try:
            lock[0].acquire(timeout=0)
        except Timeout:
            lock[0] = None
            raise ValueError(
                f"{output_dir} is in use by another run (it holds the lock {lock_path}); wait for it to end, "
                "or choose another --output-dir"
            ) from None
        try:
            refuse_foreign_files(output_dir, " for a run")
            held = run_contents(output_dir)
            if config.resume:
                checkpoint = readable_checkpoint(output_dir)
                if checkpoint is None and held:
                    raise ValueError(
                        f"{output_dir} holds a run ({', '.join(held)}) but no checkpoint to resume from; pass "
                        "--overwrite instead of --resume to replace it, or choose another --output-dir"
                    )
                record_run_files(output_dir)
                return str(checkpoint) if checkpoint is not None else None
            if held and not config.overwrite:
                raise ValueError(
                    f"{output_dir} already holds a run ({', '.join(held)}): pass --resume to continue it, "
                    "--overwrite to replace it, or choose another --output-dir"
                )
            if held:
                print(f"Overwriting the run in {output_dir} ({', '.join(held)})")
                _remove_run(output_dir)
            record_run_files(output_dir)
            return None
        except BaseException:
            release_run_folder(lock[0])
            if (
                lock_path in created
            ):  # a refused run leaves the folder as it found it: no lock, no empty folders
                lock_path.unlink(missing_ok=True)
                for folder in reversed(created[:-1]):
                    _remove_if_empty(folder)
            raise

    checkpoint = _main_decides(accelerator, decide)
    return lock[0], Path(checkpoint) if checkpoint is not None else None


def release_run_folder(lock: FileLock | None) -> None:
    if lock is not None and lock.is_locked:
        lock.release()


def run_contents(output_dir: str | os.PathLike) -> list[str]:
    """What makes `output_dir` hold a run: its saved model and summary, its checkpoints ([] for none)."""
    output_dir = Path(output_dir)
    held = [name for name in RUN_FILES if (output_dir / name).exists()]
    return held + [f"{CHECKPOINTS_DIR}/{p.name}" for p in _step_folders(output_dir / CHECKPOINTS_DIR)]


def clear_output_folder(output_dir: str | os.PathLike, overwrite: bool) -> None:
    """For a verb that writes a model folder in one go (e.g. `convert`): a folder that holds anything is refused
    unless `overwrite`, which removes the run it holds (as `claim_run_folder` does) before the new files go in; a
    folder holding files gpt-scratch did not write (`foreign_files`) is refused either way."""
    output_dir = Path(output_dir)
    held = sorted(p.name for p in output_dir.iterdir()) if output_dir.is_dir() else []
    if held and not overwrite:
        shown = ", ".join(held[:5]) + (f", ... ({len(held)} entries)" if len(held) > 5 else "")
        raise ValueError(
            f"{output_dir} already holds files ({shown}): pass --overwrite to replace them, or choose another "
            "--output-dir"
        )
    if held:
        refuse_foreign_files(output_dir)
        print(f"Overwriting {output_dir} ({', '.join(run_contents(output_dir)) or 'no run'})")
        checkpoints = output_dir / CHECKPOINTS_DIR
        checkpoints.mkdir(exist_ok=True)
        _remove_run(output_dir)
        if not any(checkpoints.iterdir()):  # (a lock stays: a run may hold it)
            checkpoints.rmdir()


def _remove_run(output_dir: Path) -> None:
    """Remove the previous run's files before a new one writes any: a kill never leaves the two mixed.

    Only the files the run wrote (`foreign_files` is empty by now): the folder's lock stays, and a folder is
    removed only when emptied."""
    ours = sorted(set(_files_in(output_dir)) - {f"{CHECKPOINTS_DIR}/{LOCK_FILE}"}, reverse=True)
    for name in ours:
        (output_dir / name).unlink()
    for name in ours:  # deepest first: step folders, then tracker folders
        parent = (output_dir / name).parent
        while parent != output_dir and parent != output_dir / CHECKPOINTS_DIR and _remove_if_empty(parent):
            parent = parent.parent


def _remove_if_empty(folder: Path) -> bool:
    try:
        folder.rmdir()
        return True
    except OSError:  # not empty, or gone
        return False


def _files_in(output_dir: Path) -> list[str]:
    """Every file under `output_dir` (links included, never followed), as paths relative to it."""
    files = []
    for root, dirs, names in os.walk(output_dir):
        here = Path(root)
        names += [d for d in dirs if (here / d).is_symlink()]
        files += [(here / name).relative_to(output_dir).as_posix() for name in names]
    return sorted(files)


def _ours_by_structure(name: str) -> bool:
    """A path of the checkpoints/ structure itself: step folders (also those a kill left half-written)."""
    parts = name.split("/")
    if parts[0] != CHECKPOINTS_DIR or len(parts) < 2:
        return False
    top = parts[1]
    if len(parts) == 2 and top in (
        LOCK_FILE,
        LATEST_MARKER,
        RUN_MANIFEST,
        f".{LATEST_MARKER}.tmp",
        f".{RUN_MANIFEST}.tmp",
    ):
        return True
    return bool(STEP_FOLDER.fullmatch(top.removeprefix(".tmp-"))) or (len(parts) > 2 and top == ".tmp-save")


def foreign_files(output_dir: str | os.PathLike) -> list[str]:
    """The files in `output_dir` that this package did not write for a run ([] for none).

    Ours: those run_files.json lists and the checkpoints' own structure; in a folder of an older gpt-scratch
    (no run_files.json, but a run's summary or checkpoints), the names such a run wrote at its top level. A saved
    model's folder (config.json, model.safetensors, README.md) is not a run's: its files are foreign."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    manifest = output_dir / CHECKPOINTS_DIR / RUN_MANIFEST
    if manifest.is_file() and not manifest.is_symlink():
        try:
            listed = set(json.loads(manifest.read_text())["files"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
            raise ValueError(f"{manifest}: not the list of a run's files ({error})") from None
        ours = lambda name: name in listed  # noqa: E731
    elif (output_dir / "training_summary.json").is_file() or _step_folders(output_dir / CHECKPOINTS_DIR):
        ours = lambda name: "/" not in name and any(fnmatch(name, p) for p in LEGACY_RUN_FILES)  # noqa: E731
    else:
        ours = lambda name: False  # noqa: E731
    return [name for name in _files_in(output_dir) if not (ours(name) or _ours_by_structure(name))]


def refuse_foreign_files(output_dir: Path, written: str = "") -> None:
    """An error naming the files of `output_dir` that gpt-scratch did not write (`foreign_files`), if any: no run,
    --overwrite or not, may replace or remove them. `written` says what for (" for a run")."""
    foreign = foreign_files(output_dir)
    if foreign:
        shown = ", ".join(foreign[:8]) + (f" and {len(foreign) - 8} more" if len(foreign) > 8 else "")
        raise ValueError(
            f"{output_dir} holds files that gpt-scratch did not write{written} ({shown}); it never replaces or "
            "removes them (not even with --overwrite): choose another --output-dir"
        )


def record_run_files(output_dir: str | os.PathLike) -> None:
    """Write checkpoints/run_files.json: every file now in `output_dir` is the run's (the run folder was claimed
    holding none of anyone else's). Called whenever the run has written files (claim, checkpoint, logs, summary)."""
    output_dir = Path(output_dir)
    root = output_dir / CHECKPOINTS_DIR
    if not root.is_dir():
        return
    files = [name for name in _files_in(output_dir) if not _ours_by_structure(name)]
    tmp = root / f".{RUN_MANIFEST}.tmp"
    tmp.write_text(json.dumps({"files": files}, indent=1) + "\n")
    os.replace(tmp, root / RUN_MANIFEST)


def _main_decides(accelerator: Accelerator, decide: Callable[[], Any]) -> Any:
    """`decide()` on the main process; every process returns its result, or raises its error."""
    box: list[Any] = [None]
    if accelerator.is_main_process:
        try:
            box = [(decide(), None)]
        except Exception as error:
            box = [(None, error)]
    if accelerator.num_processes > 1:
        broadcast_object_list(box, from_process=0)
    result, error = box[0]
    if error is not None:
        raise error
    return result


def _step_folders(root: Path) -> list[Path]:
    """The step-NNNNNN folders of `root`, newest first."""
    if not root.is_dir():
        return []
    steps = [p for p in root.iterdir() if STEP_FOLDER.fullmatch(p.name) and p.is_dir()]
    return sorted(steps, key=lambda p: int(p.name.removeprefix("step-")), reverse=True)


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint in `output_dir`/checkpoints that reads back whole, else None (see readable_checkpoint)."""
    return readable_checkpoint(output_dir)


def readable_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete, readable step folder of the run's own checkpoints/, else None.

    `latest` must name a step folder of this checkpoints/ (never `../` or an absolute path). An unreadable
    checkpoint (a missing, truncated or corrupt file) is skipped with a warning naming the file; when none reads
    back, an error names the files.
    """
    root = Path(output_dir) / CHECKPOINTS_DIR
    _check_latest_marker(root)
    problems = []
    for folder in _step_folders(root):
        problem = checkpoint_problem(folder)
        if problem is None:
            if problems:
                logger.warning(
                    "%s: resuming from the previous complete checkpoint %s", "; ".join(problems), folder
                )
            return folder
        problems.append(problem)
    if problems:
        raise ValueError(
            f"no readable checkpoint in {root}: {'; '.join(problems)} (--overwrite starts the run again)"
        )
    return None


def _check_latest_marker(root: Path) -> None:
    """`latest` is a file of this checkpoints/ naming one of its step folders (its text is never echoed whole:
    a link could point at any file)."""
    marker = root / LATEST_MARKER
    if marker.is_symlink():
        raise ValueError(f"{marker} is a link; a run's `latest` is a file naming one of its step folders")
    if not marker.is_file():
        return
    name = marker.read_text(errors="replace")[:64].strip()
    folder = root / name
    if not STEP_FOLDER.fullmatch(name) or (folder.exists() and folder.resolve().parent != root.resolve()):
        shown = repr(name) if len(name) <= 32 and name.isprintable() else "something else"
        raise ValueError(
            f"{marker} names {shown}, which is not a step-NNNNNN folder of this run's {root}; "
            "a run resumes only its own checkpoints"
        )


def checkpoint_problem(folder: Path) -> str | None:
    """Why the checkpoint `folder` cannot be resumed (naming the file), or None when every file reads back."""
    if folder.is_symlink() or folder.resolve().parent != folder.parent.resolve():
        return f"{folder}: a link to a folder outside this run's checkpoints"
    states = {}
    for name in (TRAINER_STATE, LOOP_STATE):
        path = folder / name
        try:
            states[name] = json.loads(path.read_text())
        except FileNotFoundError:
            return f"{path}: missing" + _legacy_hint(folder)
        except (ValueError, UnicodeDecodeError) as error:
            return f"{path}: not valid JSON ({error})"
        if not isinstance(states[name], dict):
            return f"{path}: not a JSON object"
    processes = states[LOOP_STATE].get("arguments", {}).get("num_processes", 1)
    names = [MODEL_FILE, OPTIMIZER_FILE, *(_rng_file(i) for i in range(processes))]
    for name in names:
        try:
            with safe_open(folder / name, "pt"):
                pass
        except FileNotFoundError:
            return f"{folder / name}: missing" + _legacy_hint(folder)
        except Exception as error:  # safetensors' error for a truncated or corrupt file
            return f"{folder / name}: unreadable, truncated or corrupt ({error})"
    return None


def _legacy_hint(folder: Path) -> str:
    if any(folder.glob("*.pkl")) or (folder / "optimizer.bin").exists():
        return " (a checkpoint of an older gpt-scratch, in pickle files, which are never loaded)"
    return ""


def _rng_file(process_index: int) -> str:
    return f"rng_state_{process_index}.safetensors"


# ----------------------------------------------------------------------------------------------------------------
# Save and load


def save_checkpoint(run: Run) -> Path:
    """Write checkpoints/step-NNNNNN atomically: a crash while writing leaves the previous checkpoints intact.

    Every process writes its random states; the main one the rest, then renames the folder into place, points
    `latest` at it and keeps it and the one before.
    """
    accelerator, state = run.accelerator, run.state
    root = run.output_dir / CHECKPOINTS_DIR
    name = f"step-{state.step:06d}"
    final, tmp = root / name, root / f".tmp-{name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)  # debris of a crash while writing
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    _save_rng_state(tmp / _rng_file(accelerator.process_index))
    if run.streaming:  # where this process's stream stands (StreamLoader)
        stream_state_file(tmp, accelerator.process_index).write_text(
            json.dumps(run.train_loader.state_dict())
        )
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(run.model), str(tmp / MODEL_FILE))
        _save_optimizer(run.optimizer, tmp / OPTIMIZER_FILE)
        scaler = accelerator.scaler
        loop_state = {
            "scheduler": run.scheduler.state_dict(),
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "accelerator_step": accelerator.step,  # gradient accumulation's counter
            "arguments": run.arguments,
            "resumes": run.resumes,
        }
        (tmp / LOOP_STATE).write_text(json.dumps(loop_state, indent=1, default=str))
        state.save(tmp / TRAINER_STATE)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        marker_tmp = root / f".{LATEST_MARKER}.tmp"
        marker_tmp.write_text(name + "\n")
        os.replace(marker_tmp, root / LATEST_MARKER)
        older = [p for p in _step_folders(root) if int(p.name[5:]) < state.step][: KEEP_CHECKPOINTS - 1]
        for folder in _step_folders(root):  # keep this one and the one before; any later is a stale branch
            if folder != final and folder not in older:
                shutil.rmtree(folder, ignore_errors=True)
        record_run_files(run.output_dir)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(run: Run, folder: Path) -> dict[str, Any]:
    """Load model, optimizer, schedule, gradient scaler and this process's random states from `folder`;
    return its trainer_state.json. A resume whose arguments would change the trajectory is refused first."""
    loop_state = json.loads((folder / LOOP_STATE).read_text())
    changes = check_resumable(loop_state.get("arguments", {}), run.arguments, run.config, folder)
    run.resumes = [*loop_state.get("resumes", []), {"step": None, "changed": changes}]
    accelerator = run.accelerator
    _read(folder / MODEL_FILE, lambda p: _load_weights(accelerator.unwrap_model(run.model), p))
    _read(folder / OPTIMIZER_FILE, lambda p: _load_optimizer(run.optimizer, p))
    run.scheduler.load_state_dict(loop_state["scheduler"])
    if accelerator.scaler is not None and loop_state.get("grad_scaler"):
        accelerator.scaler.load_state_dict(loop_state["grad_scaler"])
    accelerator.step = loop_state.get("accelerator_step", 0)
    _read(folder / _rng_file(accelerator.process_index), _load_rng_state)
    if run.streaming:
        _load_stream_state(run, folder)
    state = json.loads((folder / TRAINER_STATE).read_text())
    _check_trainer_state(state, loop_state, run, folder)
    run.resumes[-1]["step"] = state.get("step")
    return state


def _check_trainer_state(state: dict[str, Any], loop_state: dict[str, Any], run: Run, folder: Path) -> None:
    """trainer_state.json against the rest of its checkpoint: the folder's step, the learning-rate schedule's step
    and, for a map-style dataset, the epoch and batch that step falls on. A hand-edited file is refused."""
    counts = {name: state.get(name) for name in ("step", "epoch", "batches_in_epoch", "tokens_seen")}
    problems = [
        f"{name} {value!r} is not a count"
        for name, value in counts.items()
        if not isinstance(value, int) or isinstance(value, bool) or value < 0
    ]
    if not problems:
        step, epoch, batches = counts["step"], counts["epoch"], counts["batches_in_epoch"]
        folder_step = int(folder.name.removeprefix("step-"))
        scheduled = loop_state.get("scheduler", {}).get("last_epoch")
        if step != folder_step:
            problems.append(f"step {step} in the checkpoint of step {folder_step}")
        if step != scheduled:
            problems.append(f"step {step} where the learning-rate schedule took {scheduled} steps")
        if run.steps_per_epoch:  # map-style: the step says which epoch and batch the run stood at
            per_step = run.config.gradient_accumulation_steps
            if (
                batches >= len(run.train_loader)
                or epoch * run.steps_per_epoch + -(-batches // per_step) != step
            ):
                problems.append(
                    f"epoch {epoch}, batch {batches} is not where step {step} stands "
                    f"({run.steps_per_epoch} steps per epoch)"
                )
    if problems:
        raise ValueError(
            f"{folder / TRAINER_STATE} does not match its checkpoint: {'; '.join(problems)} "
            "(edited by hand?); resume from an intact checkpoint, or --overwrite to start again"
        )


def stream_state_file(folder: Path, process_index: int) -> Path:
    return folder / f"stream-{process_index:05d}.json"


def _load_stream_state(run: Run, folder: Path) -> None:
    """This process's place in its stream; a streaming run resumes with the number of processes it started with."""
    accelerator = run.accelerator
    saved = len(list(folder.glob("stream-*.json")))
    path = stream_state_file(folder, accelerator.process_index)
    if saved != accelerator.num_processes or not path.is_file():
        raise ValueError(
            f"{folder} holds the stream states of {saved} processes, this run has {accelerator.num_processes}: "
            "resume a streaming run with the number of processes it was started with"
        )
    _read(path, lambda p: run.train_loader.load_state_dict(json.loads(p.read_text())))


def _read(path: Path, load: Callable[[Path], None]) -> None:
    try:
        load(path)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise ValueError(f"{path}: cannot be loaded ({error})") from error


def check_resumable(
    old: dict[str, Any], new: dict[str, Any], config: TrainingConfig, folder: Path
) -> dict[str, list[Any]]:
    """The changes between a checkpoint's arguments and the resuming run's that may change ({name: [old, new]});
    an error listing each change that would make the run another one (learning rate, batch, data, model...)."""
    before, after = _flat(old), _flat(new)
    before |= {k: v for k, v in ADDED_ARGUMENTS.items() if k not in before and k in after}
    changed = {k: [before.get(k), after.get(k)] for k in sorted(before.keys() | after.keys())
               if before.get(k) != after.get(k)}  # fmt: skip
    allowed = MAY_CHANGE_ON_RESUME | (RUN_LENGTH if config.lr_schedule == "constant" else set())
    if (
        config.batch_order == "book"
    ):  # each evaluation draws the train loader's shuffle from the global generator
        allowed = allowed - {"eval_freq"}
    refused = [k for k in changed if k.split(".")[0] not in allowed]
    if refused:
        listed = ", ".join(f"{k}: {changed[k][0]!r} -> {changed[k][1]!r}" for k in refused)
        span = " (the cosine schedule spans the run's total steps)" if RUN_LENGTH & set(refused) else ""
        raise ValueError(
            f"--resume from {folder} with arguments that change the run: {listed}{span}. Resume with the "
            "checkpoint's values, or start a new run (another --output-dir, or --overwrite)"
        )
    return changed


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys; values as JSON would write them (tuples as lists)."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat |= _flat(value, f"{prefix}{key}.")
        elif key not in NOT_COMPARED:
            flat[f"{prefix}{key}"] = json.loads(json.dumps(value, default=str))
    return flat


def _load_weights(model: torch.nn.Module, path: Path) -> None:
    missing, unexpected = load_model(model, str(path), strict=False, device="cpu")
    if missing or unexpected:
        raise ValueError(f"tensors missing: {sorted(missing)[:5]}, unexpected: {sorted(unexpected)[:5]}")


def _save_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """The optimizer's per-parameter tensors in safetensors, its param_groups and any scalar state as JSON."""
    state_dict = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, per_param in state_dict["state"].items():
        for name, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{name}"] = value
    metadata = {"param_groups": json.dumps(state_dict["param_groups"]), "scalars": json.dumps(scalars)}
    save_file(tensors, str(path), metadata=metadata)


def _load_optimizer(optimizer: torch.optim.Optimizer, path: Path) -> None:
    state: dict[int, dict[str, Any]] = {}
    with safe_open(path, "pt", device="cpu") as f:
        metadata = f.metadata()
        for key in f.keys():  # noqa: SIM118 (safe_open is not a dict)
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = f.get_tensor(key)
    for key, value in json.loads(metadata["scalars"]).items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(metadata["param_groups"])})


def _save_rng_state(path: Path) -> None:
    """This process's random states: torch's CPU and CUDA generators, numpy's and python's."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    kind, key, position, has_gauss, cached_gaussian = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(key.astype(np.int64))
    version, internal, gauss_next = random.getstate()
    tensors["python"] = torch.tensor(internal, dtype=torch.int64)
    metadata = {
        "numpy": json.dumps([kind, int(position), int(has_gauss), float(cached_gaussian)]),
        "python": json.dumps([version, gauss_next]),
    }
    save_file(tensors, str(path), metadata=metadata)


def _load_rng_state(path: Path) -> None:
    with safe_open(path, "pt", device="cpu") as f:
        metadata = f.metadata()
        tensors = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors)) if f"cuda.{i}" in tensors]
    if torch.cuda.is_available() and len(cuda) != torch.cuda.device_count():
        raise ValueError(f"CUDA states of {len(cuda)} devices for {torch.cuda.device_count()} devices")
    kind, position, has_gauss, cached_gaussian = json.loads(metadata["numpy"])
    version, gauss_next = json.loads(metadata["python"])
    torch.set_rng_state(tensors["torch"])
    if cuda:
        torch.cuda.set_rng_state_all(cuda)
    key = tensors["numpy"].numpy().astype(np.uint32)
    np.random.set_state((kind, key, position, has_gauss, cached_gaussian))
    random.setstate((version, tuple(tensors["python"].tolist()), gauss_next))
