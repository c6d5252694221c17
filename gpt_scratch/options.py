"""Command-line flags generated from a dataclass, so that each option is written once: its field.

A field's help is ``field(metadata={"help": ...})`` (the key transformers' ``HfArgumentParser`` reads too), its
allowed values ``metadata={"choices": [...]}``, other spellings ``metadata={"aliases": ["--lr"]}``. Field types:
``int``, ``float``, ``str``, ``bool`` (``--flag`` / ``--no-flag``) and ``X | None`` (the word ``none`` gives None).

    @dataclass
    class Options:
        stride: int | None = option(None, "window stride (default: the context length)")

    add_dataclass_arguments(parser, Options, title="data")
    config = dataclass_from_args(TrainingConfig, parser.parse_args())
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import field
from typing import Any, TypeVar

T = TypeVar("T")


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A dataclass field with its default and the help of its flag (`choices`, `aliases` go into metadata too)."""
    return field(default=default, metadata={"help": help, **metadata})


def add_dataclass_arguments(
    parser: argparse.ArgumentParser, cls: type, defaults: Any = None, title: str | None = None
) -> None:
    """Add a ``--field-name`` flag for every field of the dataclass `cls`, defaulting to `defaults`' values."""
    defaults = defaults if defaults is not None else cls()
    group = parser.add_argument_group(title) if title else parser
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        value = getattr(defaults, f.name)
        flags = [f"--{f.name.replace('_', '-')}", *f.metadata.get("aliases", [])]
        help_text = f"{f.metadata.get('help', f.name.replace('_', ' '))} (default: {value})"
        kind, optional = _scalar_type(cls, f.name, hints[f.name])
        if kind is bool:
            action = argparse.BooleanOptionalAction
            group.add_argument(*flags, dest=f.name, action=action, default=value, help=help_text)
            continue
        parse = _none_or(kind) if optional else kind
        choices = f.metadata.get("choices")
        group.add_argument(*flags, dest=f.name, type=parse, default=value, choices=choices, help=help_text)


def dataclass_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The `cls` instance of parsed flags added by `add_dataclass_arguments`."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _scalar_type(cls: type, name: str, hint: Any) -> tuple[type, bool]:
    """(int | float | str | bool, whether None is allowed) of a field's annotation."""
    args = (
        typing.get_args(hint)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union
        else ()
    )
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)] if args else [hint]
    if len(kinds) != 1 or kinds[0] not in (int, float, str, bool):
        raise TypeError(f"{cls.__name__}.{name}: no command-line flag for the type {hint}")
    return kinds[0], optional


def _none_or(kind: type) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse
