"""``python -m gpt_scratch VERB ...``: the ``gpt-scratch`` command as a module.

So launchers that take a module run every verb unchanged:
``accelerate launch -m gpt_scratch pretrain ...``, ``torchrun --nproc_per_node 2 -m gpt_scratch pretrain ...``.
"""

from gpt_scratch.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
