"""`gpt-scratch finetune-classifier` as a script, for `python scripts/finetune_classifier.py ...` and `accelerate launch scripts/finetune_classifier.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["finetune-classifier", *sys.argv[1:]]))
