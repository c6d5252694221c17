"""The command line: every verb's module imports and adds its flags; `python -m gpt_scratch` is the same command."""

import argparse
import dataclasses
import importlib
import subprocess
import sys

import pytest

from gpt_scratch.cli import COMMANDS, build_parser
from gpt_scratch.options import add_dataclass_arguments, dataclass_from_args
from gpt_scratch.training import TrainingConfig

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


def test_training_flags_come_from_the_fields():
    parser = argparse.ArgumentParser()
    add_dataclass_arguments(parser, TrainingConfig)
    for f in dataclasses.fields(TrainingConfig):
        assert f.metadata.get("help"), f"TrainingConfig.{f.name} has no help"
    args = parser.parse_args(
        ["--lr", "1e-3", "--max-steps", "none", "--no-shuffle", "--lr-schedule", "cosine"]
    )
    config = dataclass_from_args(TrainingConfig, args)
    assert config == TrainingConfig(learning_rate=1e-3, max_steps=None, shuffle=False, lr_schedule="cosine")
    with pytest.raises(SystemExit):  # not one of the choices
        parser.parse_args(["--mixed-precision", "fp8"])


def test_a_field_without_a_flag_type_is_refused():
    @dataclasses.dataclass
    class Odd:
        sizes: list[int] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="Odd.sizes"):
        add_dataclass_arguments(argparse.ArgumentParser(), Odd)
