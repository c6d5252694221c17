"""`python scripts/convert.py ARGS` is `gpt-scratch convert ARGS`: the book's .pth or nanoGPT's ckpt.pt in, and back.

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("convert")())
