"""What a run was trained on, for `training_summary.json` and the model card: one record per file."""

from __future__ import annotations

from typing import Any

from gpt_scratch.data.corpora import CORPORA, sha256_file
from gpt_scratch.data.pretraining import Source, expand_files


def describe_data(source: Source) -> list[dict[str, Any]]:
    """[{"name", "file", "sha256"}] for each file of `source` (a corpus name, file(s), folder, glob), or for a
    `datasets.Dataset` its name and no file. A known corpus is named as in `CORPORA`, any other file by its stem."""
    if hasattr(source, "column_names"):
        name = getattr(getattr(source, "info", None), "dataset_name", None) or "dataset"
        return [{"name": name, "file": None, "sha256": None}]
    described = []
    for path in expand_files(source):
        name = next((c.name for c in CORPORA.values() if c.filename == path.name), path.stem)
        described.append({"name": name, "file": path.name, "sha256": sha256_file(path)})
    return described
