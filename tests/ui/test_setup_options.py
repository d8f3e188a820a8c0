"""The Setup form derived from the option table (core/options.py): every option shown in the
form has a widget, its choices are the table's, a bad value shows the option's own problem
(Option.problem, worded with its label), and a new option(...) field reaches the form, the
config it builds and the remembered settings with no form code."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from textual.widgets import Checkbox, Input, Select, Static

from dftui.core.config import TrainConfig
from dftui.core.options import option, options
from dftui.core.runs import config_home
from dftui.ui.app import DftuiApp
from dftui.ui.screens import setup as setup_screen
from dftui.ui.screens.setup import WEIGHTS_OPTIONS, SetupScreen


def errors(screen: SetupScreen) -> str:
    return str(screen.query_one("#field-errors", Static).render())


def widget_id(name: str) -> str:
    return "weights" if name in WEIGHTS_OPTIONS else name


def bad_text(opt) -> str | None:
    """A value outside the option's bounds, as typed."""
    if opt.value_type in (int, float):
        if opt.minimum is not None:
            return str(int(opt.minimum) - 1 if opt.value_type is int else opt.minimum - 1)
        return "not-a-number"
    return None


def select_values(widget: Select) -> list:
    return [value for _, value in widget._options if value is not Select.NULL]  # noqa: SLF001


async def test_every_form_option_has_a_widget_checked_by_its_declaration() -> None:
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        declared = [opt for opt in options(TrainConfig) if opt.form]
        checked = 0
        for opt in declared:
            widget = screen.query_one(f"#{widget_id(opt.name)}")
            if opt.value_type is bool:
                assert isinstance(widget, Checkbox), opt.name
            elif opt.name in ("device", "pretrained"):
                # Lists of their own: the machine's devices; ImageNet / none / a file…
                assert isinstance(widget, Select), opt.name
            elif opt.all_choices():
                assert isinstance(widget, Select), opt.name
                assert select_values(widget) == list(opt.all_choices()), opt.name
            else:
                assert isinstance(widget, Input), opt.name
            text = bad_text(opt)
            if text is None or not isinstance(widget, Input):
                continue
            good = widget.value
            widget.value = text
            await pilot.pause()
            expected = opt.problem(opt.from_text(text)) if text != "not-a-number" else None
            shown = errors(screen)
            assert opt.label in shown, (opt.name, shown)
            if expected:
                assert expected in shown, (opt.name, shown)
            widget.value = good
            await pilot.pause()
            assert errors(screen) == "", (opt.name, errors(screen))
            checked += 1
        assert checked >= 5  # epochs, batch size, learning rate, workers, seed at least


@dataclass(frozen=True)
class WithMore(TrainConfig):
    """A config with options no form code knows about."""

    warm_steps: int = option(3, label="warm steps", help="steps to warm up", minimum=0,
                             maximum=100)
    decay: float = option(0.5, label="decay", help="a rate", minimum=0.0, maximum=1.0)
    curve: str = option("flat", label="curve", help="a closed set", choices=("flat", "steep"),
                        choice_labels=(("steep", "steep: fast at first"),))
    averaged: bool = option(False, label="averaged", help="a yes/no")
    hidden: int = option(1, label="hidden", help="not in the form", form=False)


async def test_a_new_option_reaches_the_form_the_config_and_the_settings(
    monkeypatch, dataset
) -> None:
    monkeypatch.setattr(setup_screen, "TrainConfig", WithMore)
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        assert [opt.name for opt in screen.generic][-4:] == ["warm_steps", "decay", "curve",
                                                             "averaged"]
        assert not screen.query("#hidden")
        steps = screen.query_one("#warm_steps", Input)
        assert steps.value == "3" and screen.query_one("#decay", Input).value == "0.5"
        curve = screen.query_one("#curve", Select)
        assert curve.value == "flat" and select_values(curve) == ["flat", "steep"]
        assert not screen.query_one("#averaged", Checkbox).value
        # Its bounds are checked as it is typed, in the option's words.
        steps.value = "101"
        await pilot.pause()
        assert "warm steps must be between 0 and 100 (got 101)" in errors(screen)
        steps.value = "many"
        await pilot.pause()
        assert "warm steps: 'many' is not a whole number" in errors(screen)
        steps.value = "7"
        screen.query_one("#decay", Input).value = "0.25"
        curve.value = "steep"
        screen.query_one("#averaged", Checkbox).value = True
        screen.query_one("#train_dir", Input).value = str(dataset["train"])
        screen.query_one("#val_dir", Input).value = str(dataset["val"])
        await pilot.pause()
        assert errors(screen) == ""
        config = screen.build_config()
        assert isinstance(config, WithMore)
        assert (config.warm_steps, config.decay, config.curve, config.averaged, config.hidden) == (
            7, 0.25, "steep", True, 1)
        screen.remember()
        saved = app.settings.data["setup"]
        assert (saved["warm_steps"], saved["curve"], saved["averaged"]) == ("7", "steep", True)
    again = DftuiApp(load_torch=False)
    async with again.run_test(size=(80, 24)) as pilot:
        screen = again.screen
        steps, curve = screen.query_one("#warm_steps", Input), screen.query_one("#curve", Select)
        assert (steps.value, curve.value, screen.query_one("#averaged", Checkbox).value) == (
            "7", "steep", True)
        # Defaults (ctrl+r) come from the declaration too.
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert (steps.value, curve.value, screen.query_one("#averaged", Checkbox).value) == (
            "3", "flat", False)


@pytest.mark.parametrize("saved", [
    {"warm_steps": [1], "decay": {"x": 1}, "curve": "wavy", "averaged": "yes"},
    {"warm_steps": True, "curve": 3, "averaged": 1, "unknown_key": "kept aside"},
    {},  # nothing remembered yet (settings of an older version)
])
async def test_remembered_options_are_untrusted(monkeypatch, saved: dict) -> None:
    path = config_home() / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"setup": saved}))
    monkeypatch.setattr(setup_screen, "TrainConfig", WithMore)
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)):
        screen = app.screen
        assert isinstance(screen, SetupScreen)
        assert screen.query_one("#warm_steps", Input).value == "3"
        assert screen.query_one("#curve", Select).value == "flat"
        assert screen.query_one("#averaged", Checkbox).value is False
        assert screen.query_one("#decay", Input).value == "0.5"


async def test_a_remembered_bad_value_is_shown_at_once(monkeypatch) -> None:
    """Kept as typed (nothing the user made is lost) and marked before any edit."""
    path = config_home() / "settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"setup": {"warm_steps": "many", "decay": "2"}}))
    monkeypatch.setattr(setup_screen, "TrainConfig", WithMore)
    app = DftuiApp(load_torch=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert screen.query_one("#warm_steps", Input).value == "many"
        shown = errors(screen)
        assert "warm steps: 'many' is not a whole number" in shown
        assert "decay must be between 0 and 1 (got 2)" in shown


def test_form_rows_fit_80_columns() -> None:
    """Numbers and yes/no side by side pair up; a choice or a path takes a row; the
    declared order is kept."""
    from dftui.ui.option_fields import groups

    named = {o.name: o for o in options(WithMore)}
    order = ["warm_steps", "curve", "decay", "averaged", "train_dir"]
    shapes = [[o.name for o in row] for row in groups(named[n] for n in order)]
    assert shapes == [["warm_steps"], ["curve"], ["decay", "averaged"], ["train_dir"]]


def test_remembered_settings_are_typed_by_the_declarations() -> None:
    """settings.json is untrusted: each option's entry must be of its declared kind (a
    yes/no for a yes/no option), new options included; keys of newer versions are kept."""
    from dftui.ui.settings import sanitize

    data = {"setup": {"compile": "yes", "augment": 3, "epochs": True, "lr": "3e-4", "seed": 7,
                      "overwrite": False, "from_a_newer_version": "x"}}
    problems = sanitize(data)
    assert sorted(p.split(" ")[0] for p in problems) == ["setup.augment", "setup.compile",
                                                        "setup.epochs"]
    assert data["setup"] == {"lr": "3e-4", "seed": 7, "overwrite": False,
                             "from_a_newer_version": "x"}
