"""The stylesheet rule (stated at the top of dftui/ui/app.tcss):
widgets carry their own DEFAULT_CSS; screens have none, their layout is in app.tcss; app.tcss
does not style our widgets by their type. DEFAULT_CSS always yields to the app stylesheet, so
a screen rule left in DEFAULT_CSS can silently lose to a general rule of app.tcss (two did:
Prepare's progress bar width and the folder picker's height never applied)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

from textual.screen import Screen
from textual.widget import Widget

import dftui.ui
import dftui.ui.screens
import dftui.ui.widgets

APP_TCSS = Path(dftui.ui.__file__).with_name("app.tcss")


def _classes() -> list[type]:
    found = []
    for package in (dftui.ui.screens, dftui.ui.widgets):
        for info in pkgutil.iter_modules(package.__path__):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            found += [cls for cls in vars(module).values()
                      if inspect.isclass(cls) and cls.__module__ == module.__name__
                      and issubclass(cls, Widget)]
    return found


def test_screens_have_no_default_css() -> None:
    offenders = [f"{cls.__module__}.{cls.__name__}" for cls in _classes()
                 if issubclass(cls, Screen) and "DEFAULT_CSS" in cls.__dict__]
    assert not offenders, f"move their rules to {APP_TCSS.name} (a section per screen): {offenders}"


def test_app_stylesheet_does_not_style_our_widgets_by_type() -> None:
    ours = {cls.__name__ for cls in _classes() if not issubclass(cls, Screen)}
    css = re.sub(r"/\*.*?\*/", "", APP_TCSS.read_text(), flags=re.S)
    selectors = " ".join(re.findall(r"([^{}]+)\{", css))
    named = set(re.findall(r"(?<![#.\w-])([A-Z]\w*)", selectors)) & ours
    assert not named, f"style these in their own DEFAULT_CSS, not in {APP_TCSS.name}: {sorted(named)}"


def test_the_rule_is_stated_where_it_is_kept() -> None:
    assert "THE RULE" in APP_TCSS.read_text()
