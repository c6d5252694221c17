"""`gpt-scratch finetune-instructions` as a script, for `python scripts/finetune_instructions.py ...` and `accelerate launch scripts/finetune_instructions.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["finetune-instructions", *sys.argv[1:]]))
