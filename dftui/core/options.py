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
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field
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
    # Filled by options():
    name: str = ""
    default: Any = None
    kind: Any = None  # the field's type annotation (resolved)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    def all_choices(self) -> tuple[str, ...]:
        return self.choices_from() if self.choices_from is not None else self.choices

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
