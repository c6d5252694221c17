"""`gpt-scratch benchmark` as a script, for `python scripts/benchmark.py ...` and `accelerate launch scripts/benchmark.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["benchmark", *sys.argv[1:]]))
