"""`python scripts/generate.py ARGS` is `gpt-scratch generate ARGS`: generate text from a saved model.

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("generate")())
