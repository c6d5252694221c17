"""`python scripts/push_to_hub.py ARGS` is `gpt-scratch push ARGS`: validate a saved folder and upload it to the Hub.

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("push")())
