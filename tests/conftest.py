"""Test set-up: everything offline, the book's data and the GPT-2 BPE files from ../shared."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


SHARED_PATH = Path(os.environ.get("GPT_SCRATCH_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
# ../shared holds the book's data sets and the tiktoken cache; None when it is missing
SHARED = SHARED_PATH if (SHARED_PATH / "data").is_dir() else None
SHARED_MISSING = (
    f"../shared not found at {SHARED_PATH} (set GPT_SCRATCH_SHARED_DIR): "
    "it holds the GPT-2 BPE files and the book's data sets"
)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
if SHARED is not None:
    os.environ["TIKTOKEN_CACHE_DIR"] = str(SHARED / "tiktoken-cache")
    os.environ["GPT_SCRATCH_DATA_DIR"] = str(SHARED / "data")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


SLOW_TEST_TIMEOUT_S = 1800  # full-size models; the default tests get pyproject's --timeout=120


def pytest_collection_modifyitems(config, items):
    """Slow tests get a longer timeout than the default suite's, unless they set their own. Without ../shared,
    the tests that need it (module marker `needs_shared`, or the `shared` fixture) skip with the reason."""
    skip = pytest.mark.skip(reason=SHARED_MISSING)
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))
        if SHARED is None and (
            item.get_closest_marker("needs_shared") or "shared" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared() -> Path:
    if SHARED is None:
        pytest.skip(SHARED_MISSING)
    return SHARED


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models on a shared CPU run several times faster without intra-op threads (use per module)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---- The tiny model of the tests (the role of transformers' GPT2ModelTester) ------------------------------------

TINY_CONFIG = dict(vocab_size=50257, context_length=64, emb_dim=16, n_heads=2, n_layers=2, drop_rate=0.0)


def tiny_config(**overrides):
    """The tests' tiny GPTScratchConfig (GPT-2's vocabulary, 2 layers of width 16), with `overrides`."""
    from gpt_scratch.configuration_gpt_scratch import GPTScratchConfig

    return GPTScratchConfig(**{**TINY_CONFIG, **overrides})


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


# ---- GPT-2 references, from ../shared only ---------------------------------------------------------------------

# ../shared/README.md: the book's sample, encoded with <|endoftext|> allowed as the special token.
BOOK_TEXT = "Hello, do you like tea? <|endoftext|> In the sunlit terraces of someunknownPlace."
BOOK_IDS = [15496, 11, 466, 345, 588, 8887, 30, 220, 50256, 554, 262, 4252, 18250, 8812, 2114, 286, 617, 34680, 27271, 13]  # fmt: skip
# tiktoken caches GPT-2's two BPE files under the sha1 of their address
ENCODER_JSON = "6c7ea1a7e38e3a7f062df639a5b80947f075ffe6"  # encoder.json, what transformers calls vocab.json
VOCAB_BPE = "6d1cbeee0f20b3d9449abfede4726ed8212e3aee"  # vocab.bpe, what transformers calls merges.txt


@pytest.fixture(scope="session")
def gpt2_files(tmp_path_factory, shared) -> Path:
    """A folder with GPT-2's vocab.json + merges.txt (copied from the tiktoken cache), as transformers names them."""
    import shutil

    folder = tmp_path_factory.mktemp("gpt2-files")
    shutil.copy(shared / "tiktoken-cache" / ENCODER_JSON, folder / "vocab.json")
    shutil.copy(shared / "tiktoken-cache" / VOCAB_BPE, folder / "merges.txt")
    return folder


@pytest.fixture(scope="session")
def hf_gpt2_tokenizer(gpt2_files):
    """transformers' own GPT-2 tokenizer on the same vocabulary: the reference our ids are compared with."""
    from transformers import GPT2Tokenizer

    return GPT2Tokenizer.from_pretrained(gpt2_files)


@pytest.fixture
def fresh_accelerate_state():
    """accelerate fixes the mixed precision once per process: a test that asks for another one starts from a
    fresh state (and leaves one), as a new process would."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


@contextlib.contextmanager
def lock_held_by_another_process(lock: Path) -> Iterator[None]:
    """`lock` (a filelock) held by another process for the block; the lock dies with that process after it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from filelock import FileLock; lock = FileLock({str(lock)!r}); lock.acquire(); "
         "print('held', flush=True); import time; time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
