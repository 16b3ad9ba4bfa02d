"""One config system: typed dataclasses, each field a CLI flag (``--field-name``), help from metadata.

    @dataclass
    class CollectConfig:
        frames: int = field(default=20000, metadata={"help": "frames to record", "range": (1, None)})

    add_arguments(parser, CollectConfig); cfg = from_args(CollectConfig, parser.parse_args())

A ``range`` (lowest, highest; inclusive, ``None``: unbounded) is checked where the flag is parsed: a value
outside it is refused by argparse (exit code 2, the flag, the value and what is allowed), before any work.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from typing import Any, Callable, TypeVar

T = TypeVar("T")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _scalar_type(tp: Any) -> Any:
    """The scalar type of an annotation, unwrapping ``X | None``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def allowed(tp: type, lo: float | None, hi: float | None) -> str:
    """What a ranged flag accepts, in words: "an integer >= 1", "a number from 0 to 1"."""
    kind = "an integer" if tp is int else "a number"
    if lo is not None and hi is not None:
        return f"{kind} from {lo} to {hi}"
    return f"{kind} >= {lo}" if lo is not None else f"{kind} <= {hi}"


def bounded(tp: type, lo: float | None = None, hi: float | None = None) -> Callable[[str], Any]:
    """An argparse ``type``: parses ``tp`` and refuses values outside [lo, hi] (and NaN / infinity)."""

    def parse(text: str) -> Any:
        try:
            value = tp(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {allowed(tp, lo, hi)}") from None
        if not math.isfinite(value) or (lo is not None and value < lo) or (hi is not None and value > hi):
            raise argparse.ArgumentTypeError(f"{text} is out of range: allowed is {allowed(tp, lo, hi)}")
        return value

    parse.__name__ = tp.__name__
    parse.bounds = (lo, hi)  # type: ignore[attr-defined]  # for tests that walk every ranged flag
    return parse


def add_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """Add one flag per field of dataclass ``cls`` (scalars only; ``only`` those named), defaulting to the field's default."""
    hints = typing.get_type_hints(cls)
    assert only is None or set(only) <= set(hints), f"{cls.__name__} has no field {set(only) - set(hints)}"
    for f in dataclasses.fields(cls):
        if f.name in skip or f.name.startswith("_") or (only is not None and f.name not in only):
            continue
        tp = _scalar_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_text = f.metadata.get("help", "") + f" (default: {default})"
        if tp is bool:
            parser.add_argument(_flag(f.name), action=argparse.BooleanOptionalAction, default=default, help=help_text)
        elif tp in (int, float, str):
            kind = bounded(tp, *f.metadata["range"]) if "range" in f.metadata else tp
            parser.add_argument(_flag(f.name), type=kind, default=default, help=help_text,
                                choices=f.metadata.get("choices"))


def from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from parsed flags (fields without a flag keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
    values.update(overrides)
    return cls(**values)
