"""`python scripts/finetune_classifier.py ARGS` is `gpt-scratch finetune-classifier ARGS`: fine-tune a text classifier, e.g. spam (chapter 6).

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("finetune-classifier")())
