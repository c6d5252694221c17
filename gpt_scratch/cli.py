"""``gpt-scratch``: one command, a verb per workflow. Each verb is a thin layer over a library module.

A verb's module is imported only when that verb runs, so ``gpt-scratch --help`` stays instant.
Each module offers ``add_arguments``-style and ``run``-style functions named in COMMANDS.
"""

import argparse
import importlib
import sys
from collections.abc import Callable

# verb: (module, function adding the verb's flags, function running it, one-line help)
COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "prepare": ("gpt_scratch.data.prepare", "add_arguments", "run", "tokenize a corpus once into shards for pretrain"),
    "pretrain": ("gpt_scratch.workflows.pretrain", "add_arguments", "run", "pretrain a model on a text corpus (chapter 5)"),
    "generate": ("gpt_scratch.generation.inference", "add_arguments", "run", "generate text from a saved model"),
    "finetune-classifier": (
        "gpt_scratch.workflows.classify", "add_arguments", "run", "fine-tune a text classifier, e.g. spam (chapter 6)",
    ),
    "finetune-instructions": (
        "gpt_scratch.workflows.instruct", "add_arguments", "run", "instruction fine-tuning, Alpaca format (chapter 7)",
    ),
    "chat": ("gpt_scratch.workflows.instruct", "add_chat_arguments", "run_chat", "answer an instruction with a saved model, or chat with a server (--url)"),
    "serve": ("gpt_scratch.serve", "add_arguments", "run", "serve a saved model with transformers' OpenAI-compatible server"),
    "convert": (
        "gpt_scratch.convert", "add_arguments", "run", "the book's .pth or nanoGPT's ckpt.pt in as a model folder, and back",
    ),
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


# Errors in what the user gave (a file, a row, a flag): exit 2, as argparse does for a bad flag
USAGE_ERRORS = (ValueError, KeyError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def run_verb(verb: str, run: Callable[[], int | None], debug: bool = False) -> int:
    """Run a verb: `gpt-scratch VERB: error: MESSAGE` on stderr instead of a traceback (unless `debug`).

    Exit status 2 for bad input (USAGE_ERRORS), 1 for any other failure, 130 when interrupted.
    """
    try:
        return run() or 0
    except KeyboardInterrupt:
        print(f"gpt-scratch {verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if debug:
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
        print(f"gpt-scratch {verb}: error: {message or type(error).__name__}", file=sys.stderr)
        if not isinstance(error, USAGE_ERRORS):
            print(
                f"gpt-scratch {verb}: ({type(error).__name__}; --debug shows the traceback)", file=sys.stderr
            )
        return 2 if isinstance(error, USAGE_ERRORS) else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv  # accepted anywhere on the line
    argv = [a for a in argv if a != "--debug"]
    verb = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(verb if verb in COMMANDS else None)
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    args = parser.parse_args(argv)
    module_name, _, run_fn, _ = COMMANDS[args.command]
    return run_verb(args.command, lambda: getattr(importlib.import_module(module_name), run_fn)(args), debug)


def main_for(verb: str) -> Callable[[list[str] | None], int]:
    """`main` for one verb: what `scripts/VERB.py` runs, so `python scripts/pretrain.py ARGS` (and `accelerate
    launch scripts/pretrain.py ARGS`) is `gpt-scratch pretrain ARGS`: the same parser, errors and --debug."""
    if verb not in COMMANDS:
        raise ValueError(f"unknown verb {verb!r}; the verbs: {', '.join(COMMANDS)}")

    def main_verb(argv: list[str] | None = None) -> int:
        return main([verb, *(sys.argv[1:] if argv is None else argv)])

    return main_verb


if __name__ == "__main__":
    raise SystemExit(main())
