"""The one training loop, shared by pretraining (ch. 5), classification (ch. 6) and instruction (ch. 7) fine-tuning.

    task = CausalLMTask(start_context="Every effort moves you")       # or ClassificationTask(), or your own
    config = TrainingConfig(output_dir="runs/x", num_epochs=10, learning_rate=4e-4, weight_decay=0.1)
    result = train(model, train_dataset, val_dataset, config, task, tokenizer)

A file per role, each importing only those below it:

    config.py         TrainingConfig (every knob, one --flag each), the book's runs
    tasks.py          Task: what a batch's loss, metrics and sample are (CausalLMTask, ClassificationTask)
    checkpointing.py  the run folder's lock and atomic checkpoints; TrainState, saved in each
    loaders.py        the batches: map-style datasets through accelerate, streams through StreamLoader
    summary.py        metrics.jsonl/.csv, the plots, training_summary.json and the model card
    loop.py           train = prepare -> fit -> finish, the book's train_model_simple and evaluate_model
"""

from gpt_scratch.training.checkpointing import TrainState, latest_checkpoint
from gpt_scratch.training.config import (
    BOOK_RUNS,
    TrainingConfig,
    add_base_model_arguments,
    add_training_arguments,
    training_config_from_args,
)
from gpt_scratch.training.loaders import StreamLoader
from gpt_scratch.training.loop import (
    Run,
    TrainResult,
    evaluate,
    evaluate_model,
    finish,
    fit,
    lr_lambda,
    prepare,
    process_state,
    run_folder,
    silence_progress_bars,
    train,
)
from gpt_scratch.training.summary import SUMMARY_FILE, format_losses, update_summary, write_summary
from gpt_scratch.training.tasks import CausalLMTask, ClassificationTask, Task

__all__ = [
    "BOOK_RUNS",
    "SUMMARY_FILE",
    "CausalLMTask",
    "ClassificationTask",
    "Run",
    "StreamLoader",
    "Task",
    "TrainResult",
    "TrainState",
    "TrainingConfig",
    "add_base_model_arguments",
    "add_training_arguments",
    "evaluate",
    "evaluate_model",
    "finish",
    "fit",
    "format_losses",
    "latest_checkpoint",
    "lr_lambda",
    "prepare",
    "process_state",
    "run_folder",
    "silence_progress_bars",
    "train",
    "training_config_from_args",
    "update_summary",
    "write_summary",
]
