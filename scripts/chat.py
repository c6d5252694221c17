"""`gpt-scratch chat` as a script, for `python scripts/chat.py ...` and `accelerate launch scripts/chat.py ...`."""

import sys

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["chat", *sys.argv[1:]]))
