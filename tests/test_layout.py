"""The checkout's layout (issue 23): the design card's top level, thin scripts, a card package that knows nothing of
gpt_scratch, and a training package without an import circle."""

import ast
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from gpt_scratch.cli import COMMANDS, build_parser

from conftest import PROJECT_ROOT

TOP_LEVEL = {
    "gpt_scratch", "scripts", "tests", "hub_card", "pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md",
    "BENCHMARK.md", ".ci", ".gitignore", ".pre-commit-config.yaml",
}  # fmt: skip
# scripts/NAME.py -> the verb it runs
SCRIPTS = {
    "pretrain": "pretrain", "prepare": "prepare", "finetune_classifier": "finetune-classifier",
    "finetune_instructions": "finetune-instructions", "generate": "generate", "push_to_hub": "push",
    **({"convert": "convert"} if "convert" in COMMANDS else {}),
}  # fmt: skip
TRAINING_MODULES = ["config", "tasks", "checkpointing", "loaders", "summary", "loop"]


def run_python(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_the_top_level_is_the_design_cards():
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    top = {line.split("/")[0] for line in listed.stdout.splitlines() if line}
    assert top == TOP_LEVEL, f"extra: {sorted(top - TOP_LEVEL)}, missing: {sorted(TOP_LEVEL - top)}"


def test_every_job_has_a_script_and_nothing_else_is_one():
    names = {path.stem for path in (PROJECT_ROOT / "scripts").glob("*.py")}
    assert names == set(SCRIPTS)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_each_script_is_its_verbs_parser(script, monkeypatch, capsys):
    """`python scripts/X.py --help` prints the help of `gpt-scratch VERB`: the verb's own parser, no other. (Run as
    __main__ in this process; test_a_script_fails_like_the_verb runs one in a process of its own.)"""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", [f"scripts/{script}.py", "--help"])
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(PROJECT_ROOT / "scripts" / f"{script}.py"), run_name="__main__")
    assert exited.value.code == 0
    verb = SCRIPTS[script]
    verb_parser = build_parser(verb)._subparsers._group_actions[0].choices[verb]
    assert capsys.readouterr().out == verb_parser.format_help()


def test_a_script_fails_like_the_verb():
    """Bad input: `gpt-scratch VERB: error: ...`, exit 2, no traceback (the CLI's run_verb), from the script too."""
    result = run_python("scripts/generate.py", "no/such/folder/here", "--prompt", "x")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("gpt-scratch generate: error:") and "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", sorted(p.name for p in (PROJECT_ROOT / "scripts" / "benchmarks").glob("*.py"))
)
def test_each_benchmark_script_runs_help(script):
    result = run_python(f"scripts/benchmarks/{script}", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage:"), result.stderr[-3000:]


def imported_modules(path: Path) -> set[str]:
    """The modules a file imports when it runs (imports under `if TYPE_CHECKING:` left out)."""
    tree = ast.parse(path.read_text())
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for node in ast.walk(block)
    }
    names = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_hub_card_imports_nothing_of_gpt_scratch():
    for path in (PROJECT_ROOT / "hub_card").glob("*.py"):
        found = sorted(name for name in imported_modules(path) if name.split(".")[0] == "gpt_scratch")
        assert not found, f"{path.name} imports {found}"
    code = "import sys, hub_card; print(sorted(m for m in sys.modules if m.startswith('gpt_scratch')))"
    result = run_python("-c", code)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_the_training_package_has_no_import_circle():
    """Its modules import one another one way (a graph without a cycle), and each imports alone."""
    package = PROJECT_ROOT / "gpt_scratch" / "training"
    graph = {
        name: {
            other
            for other in TRAINING_MODULES
            if any(
                m.startswith(f"gpt_scratch.training.{other}")
                for m in imported_modules(package / f"{name}.py")
            )
        }
        for name in TRAINING_MODULES
    }
    done: list[str] = []
    while len(done) < len(graph):
        ready = [name for name in graph if name not in done and graph[name] <= set(done)]
        assert ready, f"an import circle among {sorted(set(graph) - set(done))}: {graph}"
        done += ready
    assert (
        set(imported_modules(package / "checkpointing.py")) & {f"gpt_scratch.training.{m}" for m in graph}
        == set()
    )


def test_each_training_module_imports_alone_in_a_fresh_process():
    """Each module first, with nothing of gpt_scratch imported before it (one process: torch stays loaded)."""
    code = (
        "import importlib, sys\n"
        f"for module in {TRAINING_MODULES!r}:\n"
        "    for name in [m for m in sys.modules if m.startswith('gpt_scratch')]:\n"
        "        del sys.modules[name]\n"
        "    importlib.import_module(f'gpt_scratch.training.{module}')\n"
    )
    result = run_python("-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
