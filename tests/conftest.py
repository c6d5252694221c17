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


CLEAN_PYTHON_BOOT = (
    "import sys; sys.path.extend({site_dirs!r}); "  # site-packages without any .pth (no editable gpt_scratch)
    "sys.argv = sys.argv[1:]; exec(compile(open(sys.argv[0]).read(), sys.argv[0], 'exec'))"
)


def run_clean_python(script: str, *args: str, cwd: Path, timeout: int = 300):
    """Run `script` the way a Hub user would: a fresh interpreter where the gpt_scratch package is NOT importable.

    -I ignores PYTHONPATH and the working directory, -S skips the .pth files through which an editable install of
    the package is found; site-packages itself stays (transformers, torch, tiktoken).
    """
    import site
    import subprocess
    import sys

    boot = CLEAN_PYTHON_BOOT.format(site_dirs=site.getsitepackages())
    script_path = Path(cwd) / "_clean_process_script.py"
    script_path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["HF_MODULES_CACHE"] = str(Path(cwd) / "_hf_modules")
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", boot, str(script_path), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
