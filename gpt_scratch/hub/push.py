"""``gpt-scratch push FOLDER REPO_ID``: check a saved folder, then upload it to the Hugging Face Hub.

``validate_folder`` lists everything that would stop a Hub user from loading the folder with
``trust_remote_code=True``: config, safetensors weights consistent with the config, tokenizer files, the
remote-code files named in ``auto_map``, a model card with parseable metadata, no pickle files.
``plan_upload`` decides, before anything is sent, exactly which files go: the model's files and the run's record
(summary, metric logs, plots), never a link to outside the folder, never ``checkpoints/``; other files are left out
and named (``--include GLOB`` adds them, ``--exclude GLOB`` leaves out any file); a file that looks like a credential
(``.env``, ``token``, ``*.pem``, ``.huggingface/``...) makes the push a refusal unless it is excluded.
``push_folder`` checks the repo id, refuses a folder with problems (uploading nothing), prints the plan on a dry run,
and otherwise is ``HfApi.create_repo`` + ``HfApi.upload_folder`` of exactly the planned files; the token comes from
the usual places (``--token``, ``HF_TOKEN``, ``hf auth login``). A Hub that cannot be reached or refuses the token is
a ``PushError`` whose message says what to do.

``model.push_to_hub(repo_id)`` works as for every ``PreTrainedModel``: transformers saves the model into a
temporary folder (config.json with ``auto_map``, model.safetensors and, because the classes are registered for the
Auto classes, ``configuration_gpt_scratch.py`` and ``modeling_gpt_scratch.py``) and uploads it with the README.md
card it finds in the repo (or its generic one). Push the whole folder with ``push_folder`` first so the repo holds
the tokenizer and the full card; a later ``model.push_to_hub`` keeps that card.
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from gpt_scratch import hub
from hub_card import check_card

# Never uploaded: intermediate checkpoints (optimizer state, often pickled) and Python caches.
IGNORE_PATTERNS = ["checkpoints", "checkpoints/*", "*/__pycache__/*", "__pycache__/*", "*.pyc", ".DS_Store"]
# Uploaded: what a Hub user loads (config, weights, remote code, tokenizer, card) ...
MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "*_gpt_scratch.py",
               "tokenizer_config.json", "tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json",
               "chat_template.jinja", "README.md")  # fmt: skip
# ... and the run's record that the card shows (a pattern's "/" count must match: "*.png" is a top-level plot).
RUN_RECORD_FILES = ("training_summary.json", "metrics.jsonl", "metrics.csv", "*.png",
                    "instruction-data-with-response.json",
                    "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md")  # fmt: skip
# File names and folders that hold secrets: never uploaded, the push is refused until they are excluded.
CREDENTIAL_NAMES = (".env", ".env.*", "*.env", "token", "token.*", "*.token", "*_token", "*_token.txt",
                    ".netrc", "_netrc", ".git-credentials", ".pypirc", ".npmrc", "credentials", "credentials.*",
                    "*.pem", "*.key", "*.p12", "*.pfx", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*")  # fmt: skip
CREDENTIAL_FOLDERS = (".huggingface", ".ssh", ".aws", ".gnupg", ".docker", ".kube")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")
TOKENIZER_FILES = ("tokenizer_config.json", "vocab.json", "merges.txt", "tokenizer.json")
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


class PushError(RuntimeError):
    """The Hub could not be reached or refused the push; the message says what happened and what to do."""


@dataclass
class UploadPlan:
    """The files of a folder, sorted into what ``push`` uploads (``files``, exactly) and what it leaves out.

    Paths are relative to the folder, POSIX. ``outside`` maps each link that leads out of the folder to its target.
    """

    files: list[str] = field(default_factory=list)  # the upload, exactly
    not_needed: list[str] = field(default_factory=list)  # neither the model nor the run's record: left out
    excluded: list[str] = field(default_factory=list)  # left out by an --exclude pattern
    credentials: list[str] = field(default_factory=list)  # look like secrets: the push is refused
    outside: dict[str, str] = field(default_factory=dict)  # links to outside the folder: never uploaded


def _known(path: str, patterns: Sequence[str]) -> bool:
    """``path`` matches one of our patterns at the same depth ("*.png" is a top-level file, not a/b.png)."""
    return any(fnmatchcase(path, p) and path.count("/") == p.count("/") for p in patterns)


def _matches_glob(path: str, patterns: Sequence[str]) -> bool:
    """A user's --include/--exclude pattern, as ``hf upload`` reads it ("*" crosses "/"; "logs/" is a folder)."""
    return any(fnmatchcase(path, p) or fnmatchcase(path, p.rstrip("/") + "/*") for p in patterns)


def _looks_like_credentials(path: str) -> bool:
    *folders, name = path.split("/")
    return _known(name, CREDENTIAL_NAMES) or any(part in CREDENTIAL_FOLDERS for part in folders)


def plan_upload(folder: str | Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> UploadPlan:
    """Sort the files of ``folder`` as ``upload_folder`` lists them (``checkpoints/``, caches and ``.git/`` are
    never listed) into an ``UploadPlan``: links resolving outside the folder are never uploaded; then ``exclude``
    leaves out what it matches; a file that looks like a credential is set apart (``push_folder`` refuses it);
    the model's files, the run's record and what ``include`` matches are uploaded; the rest is left out."""
    from huggingface_hub.utils import filter_repo_objects
    from huggingface_hub.utils._paths import DEFAULT_IGNORE_PATTERNS

    root = Path(folder).expanduser().resolve()
    paths = {p.relative_to(root).as_posix(): p for p in sorted(root.glob("**/*")) if p.is_file()}
    plan = UploadPlan()
    for name in filter_repo_objects(list(paths), ignore_patterns=IGNORE_PATTERNS + DEFAULT_IGNORE_PATTERNS):
        target = paths[name].resolve()
        if not target.is_relative_to(root):
            plan.outside[name] = str(target)
        elif _matches_glob(name, exclude):
            plan.excluded.append(name)
        elif _looks_like_credentials(name):
            plan.credentials.append(name)
        elif _known(name, MODEL_FILES + RUN_RECORD_FILES) or _matches_glob(name, include):
            plan.files.append(name)
        else:
            plan.not_needed.append(name)
    return plan


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


def validate_folder(
    folder: str | Path, include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> list[str]:
    """Everything wrong with ``folder`` as a Hub model repository, uploaded with these ``include``/``exclude``
    patterns (see ``plan_upload``); an empty list when it is ready."""
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

    # A Hub user's AutoTokenizer reads tokenizer.json (a fast tokenizer, no code); a folder saved before it was
    # written instead lists tokenization_gpt_scratch.py in an auto_map, which must then be there.
    tokenizer_config = _read_json(folder / "tokenizer_config.json", problems)
    auto_map = (tokenizer_config or {}).get("auto_map")
    has_auto_map = isinstance(auto_map, dict) and "AutoTokenizer" in auto_map
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

    problems += check_card(folder / "README.md")
    plan = plan_upload(folder, include, exclude)
    problems += [f"{name} is a pickle file (unsafe to load): save weights as safetensors, or --exclude '{name}'"
                 for name in plan.files + plan.not_needed if name.endswith(PICKLE_SUFFIXES)]  # fmt: skip
    problems += [f"{name} looks like a credential (token, key, password file): it is never uploaded; "
                 f"move it out of the folder or leave it out with --exclude '{name}'"
                 for name in plan.credentials]  # fmt: skip
    problems += [f"{name} is excluded, but a Hub user needs it to load the model"
                 for name in plan.excluded if _known(name, MODEL_FILES)]  # fmt: skip
    problems += [f"{name} links to {target}, outside the folder, and is never uploaded: copy the file in instead"
                 for name, target in plan.outside.items() if _known(name, MODEL_FILES)]  # fmt: skip
    return problems


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if huggingface_hub's validator accepts it, else a ``ValueError`` that names it."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"{repo_id!r} is not a Hub repo id (your-name/model-name): {error}") from None
    return repo_id


def _size(path: Path) -> str:
    size, unit = float(path.stat().st_size), "bytes"
    for bigger in ("kB", "MB", "GB", "TB"):
        if size < 1000:
            break
        size, unit = size / 1000, bigger
    return f"{size:,.0f} bytes" if unit == "bytes" else f"{size:,.1f} {unit}"


def _report_left_out(folder: Path, plan: UploadPlan) -> None:
    """Name, on stderr, every file the push leaves out that a user might have meant to send."""
    for name, target in plan.outside.items():
        print(f"warning: not uploaded: {name} links to {target}, outside {folder}", file=sys.stderr)
    if plan.not_needed:
        print(
            "warning: not uploaded, the model does not need them (--include GLOB to upload): "
            + ", ".join(f"{name} ({_size(folder / name)})" for name in plan.not_needed),
            file=sys.stderr,
        )


def _explain(error: Exception, repo_id: str, endpoint: str) -> str:
    """What a failed Hub call means for the user, in one line."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    status = getattr(getattr(error, "response", None), "status_code", None)
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    server = getattr(error, "server_message", None)
    detail += f" ({server.strip()})" if server and server.strip() not in detail else ""
    transport_error = isinstance(error, HfHubHTTPError.__bases__[0]) and status is None  # refused, timed out
    if isinstance(error, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set: unset it to push"
    if status == 401:
        return (
            f"the Hub did not accept the token ({detail}): run `hf auth login`, set HF_TOKEN or pass --token"
        )
    if status == 403:
        return f"the token may not write to {repo_id} ({detail}): use a token with write access to it"
    if transport_error or isinstance(error, (ConnectionError, TimeoutError)):
        return (
            f"cannot reach {endpoint} ({type(error).__name__}: {detail}): check the network (or HF_ENDPOINT)"
        )
    return f"{type(error).__name__}: {detail}"


def push_folder(
    folder: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    token: str | None = None,
    dry_run: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    write_card: bool = False,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> list[str] | Any:
    """Validate ``folder`` and upload the files ``plan_upload`` picks to the Hub model repository ``repo_id``.

    An invalid ``repo_id`` is a ``ValueError``; ``InvalidFolderError`` (uploading nothing) when ``validate_folder``
    finds problems, a file that looks like a credential among them. Files left out (not needed by the model,
    links to outside the folder) are named on stderr. With ``dry_run`` it prints and returns the files that would be
    uploaded. Otherwise it creates the repository if needed (``private`` only applies to a new one), creates
    ``revision`` as a branch if given, uploads exactly the planned files, and returns the ``CommitInfo``; a Hub
    that cannot be reached or refuses is a ``PushError``. ``token=None`` uses ``HF_TOKEN`` or the token saved by
    ``hf auth login``. ``write_card`` first (re)writes the folder's README.md with ``hub_card`` for ``repo_id``.
    """
    check_repo_id(repo_id)
    folder = Path(folder)
    if write_card and (folder / "config.json").is_file():
        hub.write_card(folder, repo_id=repo_id)
    problems = validate_folder(folder, include, exclude)
    if problems:
        raise InvalidFolderError(folder, problems)
    plan = plan_upload(folder, include, exclude)
    _report_left_out(folder, plan)
    if dry_run:
        target = f"{repo_id}@{revision}" if revision else repo_id
        print(
            f"Dry run: would upload {len(plan.files)} files from {folder} to https://huggingface.co/{target}"
        )
        for name in plan.files:
            print(f"  {name}  ({_size(folder / name)})")
        return plan.files

    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(token=token)
    # huggingface_hub's HTTP library (httpx) raises its own errors for a refused connection or a timeout;
    # HfHubHTTPError derives from their base. OSError: no network, HF_HUB_OFFLINE, a token file that cannot be read.
    hub_errors = (HfHubHTTPError.__bases__[0], OSError)
    try:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model").repo_id
        if revision is not None:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    except hub_errors as error:
        reason = _explain(error, repo_id, api.endpoint)
        raise PushError(f"could not create {repo_id} on the Hub, nothing was uploaded: {reason}") from error
    try:
        return api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            commit_message=commit_message,
            revision=revision,
            allow_patterns=[glob.escape(name) for name in plan.files],  # exactly the planned files
        )
    except hub_errors as error:
        reason = _explain(error, repo_id, api.endpoint)
        raise PushError(
            f"the upload to {repo_id} failed (run the push again to finish it): {reason}"
        ) from error


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
    parser.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="also upload files the model does not need that match GLOB (repeatable), e.g. 'notes/*.md'",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="leave out files that match GLOB (repeatable), e.g. '*.csv' or 'logs/'",
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
            include=args.include,
            exclude=args.exclude,
        )
    except InvalidFolderError as error:
        print(error)
        return 1
    if not args.dry_run:
        print(f"Uploaded {args.folder} to {getattr(result, 'commit_url', None) or args.repo_id}")
    return 0


__all__ = [
    "InvalidFolderError",
    "PushError",
    "UploadPlan",
    "add_arguments",
    "check_repo_id",
    "plan_upload",
    "push_folder",
    "run",
    "validate_folder",
]
