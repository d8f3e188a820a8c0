"""Choices remembered between launches: a small JSON file under the user config directory
(``dftui.core.runs.config_home()``; DFTUI_HOME overrides it for tests).

Unknown or malformed content never stops the app: a broken file is set aside as
``settings.json.bad`` and defaults are used."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dftui.core.runs import config_home

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
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            return settings
        except OSError as exc:
            settings.error = f"cannot read {target}: {exc.strerror or exc}"
            return settings
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
        except ValueError as exc:
            settings.error = f"{target} is not valid settings JSON ({exc}); defaults are used"
            try:
                target.replace(target.with_name(target.name + ".bad"))
            except OSError:
                pass
            return settings
        settings.data = data
        return settings

    def update(self, **values: Any) -> None:
        self.data.update(values)
        self.save()

    def save(self) -> None:
        """Write atomically; a failure to save is not worth interrupting the user for."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError as exc:
            self.error = f"cannot save settings to {self.path}: {exc.strerror or exc}"
