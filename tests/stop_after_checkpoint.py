"""`gpt-scratch VERB ...` that dies (exit 3, no cleanup, as a kill would) right after the checkpoint of step N is
written, in every process. Usage: [torchrun ...] tests/stop_after_checkpoint.py N VERB [flags...]"""

import os
import sys

from gpt_scratch.cli import main
from gpt_scratch.training import loop as training

if __name__ == "__main__":
    stop_at = int(sys.argv[1])
    save = training.save_checkpoint

    def save_then_die(run):
        path = save(run)  # all processes have written their part
        if run.state.step == stop_at:
            os._exit(3)
        return path

    training.save_checkpoint = save_then_die
    raise SystemExit(main(sys.argv[2:]))
