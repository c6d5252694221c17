"""`gpt-scratch push` as a script, for `python scripts/push_to_hub.py ...` and `accelerate launch scripts/push_to_hub.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["push", *sys.argv[1:]]))
