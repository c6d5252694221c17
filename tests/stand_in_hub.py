"""A stand-in for the Hub in the dataset-revision tests (no network here): `HfApi.dataset_info` answers a commit and
`datasets.load_dataset` reads local parquet files for one Hub id, telling `on_load` the revision each load asked
for. `replacements` gives the two functions; the in-process fixture installs them with monkeypatch, the
two-process script (tests/test_pretrain_streaming.py) by assignment."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def replacements(
    hub_id: str,
    parquet_folder: str | Path,
    commit: Callable[[str | None], str],
    on_load: Callable[[str | None], None],
) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """(load_dataset, dataset_info): `commit(revision)` is the commit the Hub names for a revision."""
    import datasets

    real_load = datasets.load_dataset
    files = sorted(str(path) for path in Path(parquet_folder).glob("*.parquet"))

    def load_dataset(path, *args, revision=None, **kwargs):
        if path != hub_id:
            return real_load(path, *args, revision=revision, **kwargs)
        on_load(revision)
        return real_load("parquet", *args, **{**kwargs, "data_files": files})

    def dataset_info(self, repo_id, revision=None, **kwargs):
        assert repo_id == hub_id, repo_id
        return SimpleNamespace(sha=commit(revision))

    return load_dataset, dataset_info
