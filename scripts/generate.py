"""`gpt-scratch generate` as a script, for `python scripts/generate.py ...` and `accelerate launch scripts/generate.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["generate", *sys.argv[1:]]))
