"""`python scripts/finetune_instructions.py ARGS` is `gpt-scratch finetune-instructions ARGS`: instruction fine-tuning, Alpaca format (chapter 7).

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("finetune-instructions")())
