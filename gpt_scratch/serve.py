"""``gpt-scratch serve``: transformers' own OpenAI-compatible server (``transformers serve``) for a saved folder.

Why not plain ``transformers serve --trust-remote-code FOLDER``: in transformers 5.25 its model loader finds the
class that config.json's ``architectures`` names in the ``transformers`` namespace
(``getattr(transformers, "GPTScratchForCausalLM")``), so every remote-code model fails with ``AttributeError``,
whatever ``--trust-remote-code`` says; only a change inside transformers (loading through the Auto class and the
folder's ``auto_map``) fixes that. Here the server, its endpoints and its generation are transformers' own; the one
difference is the loader of the model's process (a fresh, spawned interpreter), which first makes this package's
classes resolvable by name. A GPT-2 export (``save_gpt2``) needs nothing of this: ``transformers serve EXPORT``.
"""

import argparse
import os
import shlex
from collections.abc import Sequence
from pathlib import Path

from transformers.cli.serving.model_manager import ModelLoader

SERVE_DEFAULT_HOST = "127.0.0.1"  # loopback: reachable from this machine only, unless --host says otherwise


def make_classes_resolvable() -> None:
    """Register the package's classes with the Auto classes and put the models in the ``transformers`` namespace,
    where ``transformers serve`` looks a config's architecture up."""
    import transformers

    import gpt_scratch

    for model_class in (gpt_scratch.GPTScratchForCausalLM, gpt_scratch.GPTScratchModel):
        setattr(transformers, model_class.__name__, model_class)


class GPTScratchModelLoader(ModelLoader):
    """transformers serve's model loader, in a process where gpt_scratch's classes resolve by name.

    The server pickles its loader into the model's spawned process: unpickling this class imports this module
    there, and loading makes the classes resolvable before transformers looks them up.
    """

    def load_model_and_processor(self, *args, **kwargs):
        make_classes_resolvable()
        return super().load_model_and_processor(*args, **kwargs)


def check_model_folder(folder: str | os.PathLike) -> Path:
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{folder}: no config.json (a folder saved by save_pretrained or a training run)"
        )
    if not (folder / "tokenizer_config.json").is_file():
        raise FileNotFoundError(f"{folder}: no tokenizer_config.json (save the tokenizer beside the model)")
    return folder


def serve(
    folder: str | os.PathLike,
    host: str = SERVE_DEFAULT_HOST,
    port: int = 8000,
    serve_args: Sequence[str] = (),
) -> None:
    """Run ``transformers serve FOLDER --host HOST --port PORT [serve_args]`` with the model preloaded, until
    interrupted. ``serve_args`` are transformers serve's own options (``--device``, ``--dtype``, ...)."""
    from transformers.cli import serve as serve_cli
    from transformers.cli.serving import model_manager
    from transformers.cli.transformers import app

    folder = check_model_folder(folder)
    if not serve_cli.is_serve_available():
        raise ImportError(
            "transformers serve needs fastapi, uvicorn and openai: pip install 'transformers[serving]'"
        )
    make_classes_resolvable()
    model_manager.ModelLoader = GPTScratchModelLoader  # what `Serve` builds its loader from
    args = ["serve", str(folder), "--host", host, "--port", str(port), *serve_args]
    app(args=args, prog_name="transformers", standalone_mode=False)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", help="a saved model folder (model and tokenizer, e.g. a finetune-instructions run)"
    )
    parser.add_argument(
        "--host", default=SERVE_DEFAULT_HOST, help=f"listen address (default: {SERVE_DEFAULT_HOST})"
    )
    parser.add_argument("--port", type=int, default=8000, help="listen port (default: 8000)")
    parser.add_argument(
        "--serve-args",
        default="",
        help="options of `transformers serve` itself, quoted (e.g. --serve-args '--device cpu --dtype float32')",
    )


def run(args: argparse.Namespace) -> int:
    print(f"Serving {args.folder} (OpenAI API) at http://{args.host}:{args.port}/v1; Ctrl-C stops")
    serve(args.folder, args.host, args.port, shlex.split(args.serve_args))
    return 0


__all__ = ["make_classes_resolvable", "GPTScratchModelLoader", "serve"]
