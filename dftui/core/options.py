"""The training options, each declared once.

A training option is a field of ``TrainConfig`` whose metadata holds an :class:`Option`:
its label, help, CLI flag, closed set of choices, bounds and place in the Setup form.
The config's validation, the ``dftui train`` flags and the dashboard's Setup form are all
derived from this one declaration (as harlequin's ``options.py`` renders each option to CLI
and widgets), so adding an option means one field here plus the code that uses it.

This module has no dependencies on the rest of dftui, so the config can import it."""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

# Where an option sits in the Setup form, in this order.
SECTIONS = ("data", "model", "recipe", "hardware", "output")

# What a resumed run does with an option given anew (dftui train --resume RUN --flag V, or
# the Resume dialog): "keep" - the run's own value stands (a changed value would not
# continue the same run), "extend" - may only grow (epochs), "free" - may change without
# changing the result (device, workers, ...).
RESUME_RULES = ("keep", "extend", "free")


@dataclass(frozen=True)
class Option:
    """How one setting is shown and checked. ``name``, ``default`` and ``kind`` are filled
    in from the dataclass field by :func:`options`."""

    label: str
    help: str
    flag: str = ""  # the CLI flag; "" → "--" + the field name with dashes
    choices: tuple[str, ...] = ()  # a closed set of values (strings)
    # A function returning the choices where they live elsewhere (the backbone registry);
    # called lazily so that declaring the option imports nothing.
    choices_from: Callable[[], tuple[str, ...]] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # Whether the minimum itself is allowed (learning rate: > 0, not >= 0).
    minimum_inclusive: bool = True
    section: str = "recipe"
    form: bool = True  # shown in the Setup form
    cli: bool = True  # a `dftui train` flag
    resume: str = "keep"
    # An extra rule for one value: returns why it cannot work, or None.
    rule: Callable[[Any], str | None] | None = None
    # How a choice reads in the form, (value, words) pairs, e.g. ("light", "light:
    # horizontal flip"); a choice not listed reads as its value.
    choice_labels: tuple[tuple[str, str], ...] = ()
    metavar: str = ""  # the CLI's name for the value ("" → argparse's)
    placeholder: str = ""  # the form's grey text in an empty field ("" → "auto" for None)
    # Filled by options():
    name: str = ""
    default: Any = None
    kind: Any = None  # the field's type annotation (resolved)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def all_choices(self) -> tuple[str, ...]:
        return self.choices_from() if self.choices_from is not None else self.choices

    def choice_label(self, value: str) -> str:
        return dict(self.choice_labels).get(value, value)

    @property
    def optional(self) -> bool:
        """None is a value ("chosen for you"): the annotation is ``X | None``."""
        return type(None) in typing.get_args(self.kind) and _is_union(self.kind)

    @property
    def value_type(self) -> type:
        """The type of a value other than None: int, float, str, bool, Path..."""
        if _is_union(self.kind):
            rest = [a for a in typing.get_args(self.kind) if a is not type(None)]
            return rest[0] if len(rest) == 1 else str
        return self.kind if isinstance(self.kind, type) else str

    def to_text(self, value: Any) -> str:
        """``value`` as a person types it ("" for None; 1e-4 rather than 0.0001)."""
        if value is None:
            return ""
        if isinstance(value, float):
            return _short_float(value)
        return str(value)

    def from_text(self, text: str) -> Any:
        """The value a person typed, by the option's type; ValueError naming the option for
        text that is not one (the bounds and rules are :meth:`problem`'s)."""
        text = text.strip()
        kind = self.value_type
        if not text:
            if self.optional:
                return None
            if kind is int:
                raise ValueError(f"{self.label}: enter a whole number")
            if kind is float:
                raise ValueError(f"{self.label}: enter a number")
            if kind is Path:
                raise ValueError(f"{self.label}: enter a path")
            return text
        if kind is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{self.label}: {text!r} is not yes or no")
        if kind is int:
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{self.label}: {text!r} is not a whole number") from None
        if kind is float:
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{self.label}: {text!r} is not a number "
                                 f"(e.g. {self.to_text(self.default) or '0.5'})") from None
        if kind is Path:
            return Path(text).expanduser()
        return text

    def check_text(self, text: str) -> str | None:
        """Why the typed ``text`` cannot be this option's value, or None."""
        try:
            return self.problem(self.from_text(text))
        except ValueError as exc:
            return str(exc)

    def problem(self, value: Any) -> str | None:
        """Why ``value`` cannot be this option's value, or None. Worded for a person, with
        the option's label and no CLI flag: each surface adds its own name for the field."""
        if value is None:
            return None  # None means "chosen for you" for the options that allow it
        choices = self.all_choices()
        if choices and value not in choices:
            return f"unknown {self.label} {value!r}; choose one of: {', '.join(choices)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                if self.minimum is not None and not self.minimum_inclusive:
                    return f"{self.label} must be greater than {_num(self.minimum)} and finite (got {value})"
                return f"{self.label} must be a finite number (got {value})"
            low, high = self.minimum, self.maximum
            below = low is not None and (value < low if self.minimum_inclusive else value <= low)
            if (below or (high is not None and value > high)) and low is not None and high is not None:
                return f"{self.label} must be between {_num(low)} and {_num(high)} (got {_num(value)})"
            if below:
                word = "at least" if self.minimum_inclusive else "greater than"
                return f"{self.label} must be {word} {_num(low)} (got {_num(value)})"  # type: ignore[arg-type]
            if high is not None and value > high:
                return f"{self.label} must be at most {_num(high)} (got {_num(value)})"
        if self.rule is not None:
            why = self.rule(value)
            return f"{self.label}: {why}" if why and not why.startswith(("unknown", self.label)) else why
        return None


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _short_float(value: float) -> str:
    """The shorter of 0.0001 and 1e-4 (how learning rates are written)."""
    plain = f"{value:g}"
    if not math.isfinite(value) or value == 0:
        return plain
    mantissa, exponent = f"{value:e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".")
    short = f"{mantissa}e{int(exponent)}"
    return short if len(short) < len(plain) and float(short) == value else plain


def _is_union(kind: Any) -> bool:
    return typing.get_origin(kind) in (typing.Union, types.UnionType)


def option(default: Any = MISSING, **spec: Any) -> Any:
    """A dataclass field declared as a training option (see :class:`Option`)."""
    return field(default=default, metadata={"option": Option(**spec)})


def options(cls: type) -> tuple[Option, ...]:
    """The options of a config dataclass, in declaration order, with name, default and
    type filled in."""
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("option")
        if opt is None:
            continue
        default = None if f.default is MISSING else f.default
        out.append(dataclasses.replace(opt, name=f.name, default=default, kind=hints[f.name]))
    return tuple(out)


def problems(config: Any) -> list[tuple[Option, str]]:
    """Every option of ``config`` whose value cannot work, with why."""
    out = []
    for opt in options(type(config)):
        why = opt.problem(getattr(config, opt.name))
        if why:
            out.append((opt, why))
    return out


def _same(opt: Option, old: Any, new: Any) -> bool:
    if opt.value_type is Path and old is not None and new is not None:
        # The record holds absolute paths; the user may type a relative one.
        return os.path.abspath(Path(new).expanduser()) == os.path.abspath(Path(old).expanduser())
    return bool(old == new)


class ResumeConflict(ValueError):
    """A value given for a resume that the option's rule refuses; ``option`` says which."""

    def __init__(self, option: Option, message: str) -> None:
        super().__init__(message)
        self.option = option


def resumed(config: Any, given: Mapping[str, Any], done: Mapping[str, Any] | None = None) -> Any:
    """``config`` (a stopped run's settings) with the values ``given`` anew for its resume,
    each by its option's rule (see RESUME_RULES): "free" ones take the new value, "extend"
    ones too but not below what the run has already ``done`` (epochs completed), and "keep"
    ones must not change. Raises ResumeConflict (a ValueError) naming the option by label and
    saying what to do. The one place for the rule: ``dftui train --resume`` and the dashboard
    both come here (through core.runs.resume_config)."""
    by_name = {opt.name: opt for opt in options(type(config))}
    changes: dict[str, Any] = {}
    for name, new in given.items():
        opt = by_name.get(name)
        if opt is None:
            raise ValueError(f"{name!r} is not a training option")
        old = getattr(config, name)
        if _same(opt, old, new):
            continue
        if opt.resume == "keep":
            raise ResumeConflict(
                opt, f"{opt.label} cannot change when a run resumes (it was started with "
                f"{opt.to_text(old) or 'the default'}, not {opt.to_text(new) or 'the default'}): "
                "leave it out to continue the run, or start a new run with it"
            )
        if opt.resume == "extend" and done and name in done and new is not None and new < done[name]:
            raise ResumeConflict(
                opt, f"{opt.label} {opt.to_text(new)} is below the {opt.to_text(done[name])} the run "
                f"has already completed; give {opt.to_text(done[name])} or more"
            )
        changes[name] = new
    return dataclasses.replace(config, **changes) if changes else config
