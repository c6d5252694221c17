"""Test set-up: everything offline, the book's data and the GPT-2 BPE files from ../shared."""

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The one place tests locate ../shared (the book's data sets and the tiktoken cache)."""
    path = Path(os.environ.get("GPT_SCRATCH_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
    if not (path / "data").is_dir():
        raise RuntimeError(f"../shared not found at {path}: set GPT_SCRATCH_SHARED_DIR")
    return path


SHARED = shared_dir()
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED / "tiktoken-cache")
os.environ["GPT_SCRATCH_DATA_DIR"] = str(SHARED / "data")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED
