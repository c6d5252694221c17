"""`python scripts/prepare.py ARGS` is `gpt-scratch prepare ARGS`: tokenize a corpus once into shards for pretrain.

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("prepare")())
