"""The command line: every verb's module imports and adds its flags; `python -m gpt_scratch` is the same command."""

import importlib
import subprocess
import sys

import pytest

from gpt_scratch.cli import COMMANDS, build_parser

from conftest import PROJECT_ROOT


@pytest.mark.parametrize("verb", list(COMMANDS))
def test_every_verb_imports_and_adds_its_flags(verb):
    module_name, add_fn, run_fn, _ = COMMANDS[verb]
    module = importlib.import_module(module_name)
    assert callable(getattr(module, add_fn)) and callable(getattr(module, run_fn))
    subparsers = build_parser(verb)._subparsers._group_actions[0]
    assert any(action.option_strings for action in subparsers.choices[verb]._actions if action.dest != "help")


def test_python_dash_m_runs_the_cli():
    result = subprocess.run(
        [sys.executable, "-m", "gpt_scratch", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    for verb in COMMANDS:
        assert verb in result.stdout
