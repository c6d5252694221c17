"""`python scripts/pretrain.py ARGS` is `gpt-scratch pretrain ARGS`: pretrain a model on a text corpus (chapter 5).

On several GPUs or processes, as transformers' examples run:

    accelerate launch scripts/pretrain.py ARGS
    torchrun --nproc_per_node 2 scripts/pretrain.py ARGS

The verb's own parser and function (`gpt_scratch.cli`); `--help` lists the flags.
"""

from gpt_scratch.cli import main_for

if __name__ == "__main__":
    raise SystemExit(main_for("pretrain")())
