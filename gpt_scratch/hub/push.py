"""``gpt-scratch push FOLDER REPO_ID``: check a saved folder, then upload it to the Hugging Face Hub.

``validate_folder`` lists everything that would stop a Hub user from loading the folder with
``trust_remote_code=True``: config, safetensors weights consistent with the config, tokenizer files, the
remote-code files named in ``auto_map``, a model card with parseable metadata, no pickle files.
``push_folder`` refuses a folder with problems (uploading nothing), prints the file list on a dry run, and
otherwise is ``HfApi.create_repo`` + ``HfApi.upload_folder``; the token comes from the usual places
(``--token``, ``HF_TOKEN``, ``hf auth login``).

``model.push_to_hub(repo_id)`` works as for every ``PreTrainedModel``: transformers saves the model into a
temporary folder (config.json with ``auto_map``, model.safetensors and, because the classes are registered for the
Auto classes, ``configuration_gpt_scratch.py`` and ``modeling_gpt_scratch.py``) and uploads it with the README.md
card it finds in the repo (or its generic one). Push the whole folder with ``push_folder`` first so the repo holds
the tokenizer and the full card; a later ``model.push_to_hub`` keeps that card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# Never uploaded: intermediate checkpoints (optimizer state, often pickled) and Python caches.
IGNORE_PATTERNS = ["checkpoints", "checkpoints/*", "*/__pycache__/*", "__pycache__/*", "*.pyc", ".DS_Store"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
TOKENIZER_FILES = ("tokenizer_config.json", "vocab.json", "merges.txt", "tokenization_gpt_scratch.py")
AUTO_CLASS_OF = {
    "GPTScratchForCausalLM": "AutoModelForCausalLM",
    "GPTScratchForSequenceClassification": "AutoModelForSequenceClassification",
    "GPTScratchModel": "AutoModel",
}
DEFAULT_COMMIT_MESSAGE = "Upload gpt_scratch model"


class InvalidFolderError(ValueError):
    """A folder that cannot be pushed; ``problems`` lists every reason."""

    def __init__(self, folder: Path, problems: list[str]):
        self.problems = problems
        super().__init__(
            f"{folder} is not ready for the Hub; nothing was uploaded:\n"
            + "\n".join(f"  - {p}" for p in problems)
        )


def files_to_upload(folder: str | Path) -> list[str]:
    """The files ``upload_folder`` would send, relative to ``folder`` (POSIX), with the same pattern rules."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    root = Path(folder)
    paths = [p.relative_to(root).as_posix() for p in sorted(root.glob("**/*")) if p.is_file()]
    return list(filter_repo_objects(paths, ignore_patterns=IGNORE_PATTERNS + DEFAULT_IGNORE_PATTERNS))


def _read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problems.append(f"{path.name} is not valid JSON: {error}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} must hold a JSON object, not {type(data).__name__}")
        return None
    return data


def _check_auto_map(folder: Path, owner: str, auto_map: dict[str, Any], problems: list[str]) -> None:
    """Every ``module.Class`` in ``auto_map`` must be a file of the folder that defines the class."""
    for auto_class, references in auto_map.items():
        for reference in references if isinstance(references, list) else [references]:
            if reference is None:
                continue
            module, _, class_name = str(reference).rpartition(".")
            if "--" in module:  # "repo--module": code that lives in another Hub repo
                continue
            code = folder / f"{module}.py"
            if not code.is_file():
                problems.append(
                    f"{owner} auto_map {auto_class} names {reference}, but {code.name} is missing"
                )
            elif f"class {class_name}(" not in code.read_text(encoding="utf-8"):
                problems.append(f"{owner} auto_map {auto_class}: {code.name} defines no class {class_name}")


def _check_weights(folder: Path, config: dict[str, Any], problems: list[str]) -> None:
    """model.safetensors must open and hold exactly the tensors, with the shapes, that the config implies."""
    import torch
    from safetensors import safe_open

    from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig
    from gpt_scratch.modeling_gpt_scratch import (
        GPTScratchForCausalLM,
        GPTScratchForSequenceClassification,
        GPTScratchModel,
    )

    weights = folder / "model.safetensors"
    if not weights.is_file():
        index = " (sharded checkpoints are not supported here)" if any(folder.glob("*.safetensors")) else ""
        problems.append(f"model.safetensors is missing{index}")
        return
    try:
        with safe_open(str(weights), framework="pt") as f:
            stored = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError for every kind of damage
        problems.append(f"model.safetensors cannot be read: {error}")
        return
    architecture = (config.get("architectures") or [None])[0]
    model_class = {"GPTScratchForCausalLM": GPTScratchForCausalLM, "GPTScratchModel": GPTScratchModel,
                   "GPTScratchForSequenceClassification": GPTScratchForSequenceClassification}.get(architecture)  # fmt: skip
    if model_class is None:
        return  # reported with config.json
    try:
        with torch.device("meta"):  # shapes only, no memory
            model = model_class(GPTScratchConfig.from_dict(dict(config)))
    except Exception as error:
        problems.append(f"config.json does not describe a valid model: {error}")
        return
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    tied = set(getattr(model, "all_tied_weights_keys", None) or {})
    for name in sorted(expected.keys() - stored.keys() - tied):
        problems.append(f"model.safetensors lacks tensor {name} {expected[name]}")
    for name in sorted(stored.keys() - expected.keys()):
        problems.append(f"model.safetensors has unexpected tensor {name} {stored[name]}")
    for name in sorted(stored.keys() & expected.keys()):
        if stored[name] != expected[name]:
            problems.append(
                f"model.safetensors: {name} has shape {stored[name]}, config.json implies {expected[name]}"
            )


def validate_folder(folder: str | Path) -> list[str]:
    """Everything wrong with ``folder`` as a Hub model repository; an empty list when it is ready."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder} is not a folder"]
    problems: list[str] = []

    config = _read_json(folder / "config.json", problems)
    if config is not None:
        if config.get("model_type") != "gpt_scratch":
            problems.append(f"config.json model_type is {config.get('model_type')!r}, expected 'gpt_scratch'")
        architecture = (config.get("architectures") or [None])[0]
        if architecture not in AUTO_CLASS_OF:
            problems.append(
                f"config.json architectures is {config.get('architectures')!r}: no gpt_scratch model class"
            )
        auto_map = config.get("auto_map")
        if not isinstance(auto_map, dict):
            problems.append("config.json has no auto_map: save with the gpt_scratch package imported")
        else:
            # every model class, so that any Auto class loads the folder
            wanted = ["AutoConfig", *AUTO_CLASS_OF.values()]
            problems += [f"config.json auto_map has no {name}" for name in wanted if name not in auto_map]
            _check_auto_map(folder, "config.json", auto_map, problems)
        _check_weights(folder, config, problems)

    tokenizer_config = _read_json(folder / "tokenizer_config.json", problems)
    auto_map = (tokenizer_config or {}).get("auto_map")
    has_auto_map = isinstance(auto_map, dict) and "AutoTokenizer" in auto_map
    if tokenizer_config is not None and not has_auto_map:
        problems.append("tokenizer_config.json has no auto_map for AutoTokenizer")
    if has_auto_map:
        _check_auto_map(folder, "tokenizer_config.json", auto_map, problems)  # reports a missing code file
    for name in TOKENIZER_FILES[1:] if not has_auto_map else TOKENIZER_FILES[1:3]:
        if not (folder / name).is_file():
            problems.append(f"tokenizer file {name} is missing")
    if config is not None and (folder / "vocab.json").is_file():
        vocab = _read_json(folder / "vocab.json", problems)
        if (
            vocab is not None
            and isinstance(config.get("vocab_size"), int)
            and len(vocab) > config["vocab_size"]
        ):
            problems.append(
                f"vocab.json has {len(vocab)} tokens, more than config.json vocab_size {config['vocab_size']}"
            )

    _check_card(folder / "README.md", problems)
    uploaded = files_to_upload(folder)
    problems += [f"{name} is a pickle file (unsafe to load); save weights as safetensors"
                 for name in uploaded if name.endswith(PICKLE_SUFFIXES)]  # fmt: skip
    return problems


def _check_card(readme: Path, problems: list[str]) -> None:
    from huggingface_hub import ModelCard

    if not readme.is_file():
        problems.append(
            "README.md (model card) is missing: push with --write-card, or hub_card.write_model_card"
        )
        return
    try:
        card = ModelCard.load(readme)
    except Exception as error:  # yaml errors, bad model-index: the Hub would reject the card
        problems.append(f"README.md metadata cannot be parsed: {error}")
        return
    if not card.data.to_dict():
        problems.append("README.md has no metadata header (--- yaml ---)")
    elif card.data.library_name != "transformers":
        problems.append(f"README.md library_name is {card.data.library_name!r}, expected 'transformers'")


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    write_card: bool = False,
) -> list[str] | Any:
    """Validate ``folder`` and upload it to the Hub model repository ``repo_id``.

    Raises ``InvalidFolderError`` (uploading nothing) when ``validate_folder`` finds problems. With
    ``dry_run`` it prints and returns the files that would be uploaded. Otherwise it creates the repository if
    needed (``private`` only applies to a new one), creates ``revision`` as a branch if given, uploads, and
    returns the ``CommitInfo``. ``token=None`` uses ``HF_TOKEN`` or the token saved by ``hf auth login``.
    ``write_card`` first (re)writes the folder's README.md with ``hub_card`` for ``repo_id``.
    """
    folder = Path(folder)
    if write_card and (folder / "config.json").is_file():
        from gpt_scratch.hub.card import write_model_card

        write_model_card(folder, repo_id=repo_id)
    problems = validate_folder(folder)
    if problems:
        raise InvalidFolderError(folder, problems)
    files = files_to_upload(folder)
    if dry_run:
        target = f"{repo_id}@{revision}" if revision else repo_id
        print(f"Dry run: would upload {len(files)} files from {folder} to https://huggingface.co/{target}")
        for name in files:
            print(f"  {name}  ({(folder / name).stat().st_size:,} bytes)")
        return files

    from huggingface_hub import HfApi

    api = HfApi(token=token)
    repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
    if revision is not None:
        api.create_branch(repo_id, branch=revision, exist_ok=True)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=folder,
        commit_message=commit_message,
        revision=revision,
        ignore_patterns=list(IGNORE_PATTERNS),  # upload_folder extends the list it is given
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", type=Path, help="a folder saved by a gpt_scratch workflow (save_pretrained)"
    )
    parser.add_argument("repo_id", help="the Hub model repository, e.g. your-name/gpt-scratch-spam")
    parser.add_argument(
        "--private", action="store_true", help="create the repository as private (new repos only)"
    )
    parser.add_argument(
        "--revision", default=None, help="branch to push to (created if missing); default main"
    )
    parser.add_argument("--token", default=None, help="Hub token; default HF_TOKEN or `hf auth login`")
    parser.add_argument("--commit-message", default=DEFAULT_COMMIT_MESSAGE)
    parser.add_argument(
        "--write-card",
        action="store_true",
        help="(re)write README.md from config.json and training_summary.json",
    )
    parser.add_argument("--dry-run", action="store_true", help="validate and list the files; upload nothing")


def run(args: argparse.Namespace) -> int:
    try:
        result = push_folder(
            args.folder,
            args.repo_id,
            private=args.private,
            revision=args.revision,
            token=args.token,
            dry_run=args.dry_run,
            commit_message=args.commit_message,
            write_card=args.write_card,
        )
    except InvalidFolderError as error:
        print(error)
        return 1
    if not args.dry_run:
        print(f"Uploaded {args.folder} to {getattr(result, 'commit_url', None) or args.repo_id}")
    return 0


__all__ = ["InvalidFolderError", "add_arguments", "files_to_upload", "push_folder", "run", "validate_folder"]
