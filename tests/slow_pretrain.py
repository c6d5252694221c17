"""`gpt-scratch pretrain` with a pause in every training step, so a test can kill it mid-run (SIGKILL) after
a checkpoint exists. Usage: python tests/slow_pretrain.py SECONDS_PER_STEP [pretrain flags...]"""

import sys
import time

from gpt_scratch.cli import main
from gpt_scratch.training import CausalLMTask

if __name__ == "__main__":
    pause = float(sys.argv[1])
    loss = CausalLMTask.loss

    def slow_loss(self, model, batch):
        if model.training:
            time.sleep(pause)
        return loss(self, model, batch)

    CausalLMTask.loss = slow_loss
    raise SystemExit(main(["pretrain", *sys.argv[2:]]))
