"""Choices remembered between launches: a small JSON file under the user config directory
(``dftui.core.runs.config_home()``; DFTUI_HOME overrides it for tests).

Unknown or malformed content never stops the app: a broken file is set aside as
``settings.json.bad`` and defaults are used."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dftui.core.errors import describe_error
from dftui.core.files import write_text_atomic
from dftui.core.runs import config_home
from dftui.core.untrusted import UntrustedError, json_type, read_json

FILE_NAME = "settings.json"


def settings_path() -> Path:
    return config_home() / FILE_NAME


class Settings:
    """``data`` is a plain dict: {"theme": ..., "setup": {field: value}, "keymap": {id: keys}}."""

    def __init__(self, path: Path, data: dict[str, Any] | None = None) -> None:
        self.path = path
        self.data: dict[str, Any] = data or {}
        self.error: str | None = None

    @classmethod
    def load(cls, path: str | Path | None = None) -> Settings:
        target = Path(path) if path is not None else settings_path()
        settings = cls(target)
        try:
            data = read_json(target)
        except FileNotFoundError:
            return settings
        except UntrustedError as exc:
            settings.error = f"{target} is not valid settings JSON ({exc}); defaults are used"
            try:
                target.replace(target.with_name(target.name + ".bad"))
            except OSError:
                pass
            return settings
        except OSError as exc:
            settings.error = f"cannot read {target}: {describe_error(exc)}"
            return settings
        problems = sanitize(data)
        if problems:
            # Only the bad entries are dropped (the next save leaves them out); the rest of
            # the user's choices stay.
            settings.error = (f"{target}: {'; '.join(problems[:3])}"
                              f"{'; ...' if len(problems) > 3 else ''}; defaults are used for these")
        settings.data = data
        return settings

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.save()

    def save(self) -> None:
        """Write atomically; a failure to save is not worth interrupting the user for."""
        try:
            write_text_atomic(self.path, json.dumps(self.data, indent=2, sort_keys=True))
        except OSError as exc:
            self.error = f"cannot save settings to {self.path}: {describe_error(exc)}"


# What each known entry may hold. The screens read these values straight into widgets
# (a Select given a list, ``x in BACKBONES`` given a list, an Input given a number), so a
# value of another type must never reach them. Other sections belong to their own readers.
_TEXT = (str,)
_TEXT_OR_NUMBER = (str, int, float)
# Setup's entries of its own (not training options); each training option's entry is typed
# from its declaration (see _setup_types), so a new option is covered with no code here.
_SETUP_TYPES: dict[str, tuple[type, ...]] = {
    "weights": _TEXT, "pretrained_path": _TEXT,
}


def _setup_types() -> dict[str, tuple[type, ...]]:
    """What Setup may remember for each key: a yes/no for a yes/no option, a choice (text) for
    a closed set, the typed text (or a number, from older versions) for the rest."""
    from dftui.core.config import TrainConfig
    from dftui.core.options import options

    types: dict[str, tuple[type, ...]] = {}
    for opt in options(TrainConfig):
        if opt.value_type is bool:
            types[opt.name] = (bool,)
        elif opt.all_choices() or opt.value_type not in (int, float):
            types[opt.name] = _TEXT
        else:
            types[opt.name] = _TEXT_OR_NUMBER
    return {**types, **_SETUP_TYPES}


def _bad(value: Any, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool not in allowed
    return not isinstance(value, allowed)


def sanitize(data: dict[str, Any]) -> list[str]:
    """Drop, in place, every known entry of the wrong type; returns what was dropped and why."""
    problems: list[str] = []
    if "theme" in data and _bad(data["theme"], _TEXT):
        problems.append(f"theme should be text, not {json_type(data.pop('theme'))}")
    for section in ("setup", "keymap", "prepare"):
        if section not in data:
            continue
        if not isinstance(data[section], dict):
            problems.append(f"{section} should be an object, not {json_type(data.pop(section))}")
            continue
        values = data[section]
        setup_types = _setup_types() if section == "setup" else {}
        for key in list(values):
            if section == "setup":
                allowed = setup_types.get(key, (str, int, float, bool))
            elif section == "keymap":
                allowed = _TEXT  # binding id -> keys, e.g. "f2,ctrl+s"
            else:
                allowed = _TEXT_OR_NUMBER
            if _bad(values[key], allowed) or values[key] is None:
                problems.append(f"{section}.{key} is {json_type(values.pop(key))}, not usable")
    return problems
