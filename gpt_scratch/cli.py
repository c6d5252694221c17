"""``gpt-scratch``: one command, a verb per workflow. Each verb is a thin layer over a library module.

A verb's module is imported only when that verb runs, so ``gpt-scratch --help`` stays instant.
Each module offers ``add_arguments``-style and ``run``-style functions named in COMMANDS.
"""

import argparse
import importlib
import sys

# verb: (module, function adding the verb's flags, function running it, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "prepare": ("gpt_scratch.data.prepared", "add_arguments", "run", "tokenize a corpus once into shards for pretrain"),
    "pretrain": ("gpt_scratch.workflows.pretrain", "add_arguments", "run", "pretrain a model on a text corpus (chapter 5)"),
    "generate": ("gpt_scratch.generation.inference", "add_arguments", "run", "generate text from a saved model"),
    "finetune-classifier": (
        "gpt_scratch.workflows.classify", "add_arguments", "run", "fine-tune a text classifier, e.g. spam (chapter 6)",
    ),
    "finetune-instructions": (
        "gpt_scratch.workflows.instruct", "add_arguments", "run", "instruction fine-tuning, Alpaca format (chapter 7)",
    ),
    "chat": ("gpt_scratch.workflows.instruct", "add_chat_arguments", "run_chat", "answer one instruction with a saved model"),
    "push": ("gpt_scratch.hub.push", "add_arguments", "run", "validate a saved folder and upload it to the Hub"),
}  # fmt: skip


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpt-scratch", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, add_fn, _, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == verb:
            getattr(importlib.import_module(module_name), add_fn)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    verb = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(verb if verb in COMMANDS else None).parse_args(argv)
    module_name, _, run_fn, _ = COMMANDS[args.command]
    return getattr(importlib.import_module(module_name), run_fn)(args) or 0


if __name__ == "__main__":
    raise SystemExit(main())
