"""`gpt-scratch pretrain` as a script, for `python scripts/pretrain.py ...` and `accelerate launch scripts/pretrain.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["pretrain", *sys.argv[1:]]))
