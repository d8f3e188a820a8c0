"""Form widgets derived from the option table (core/options.py), for the options a screen
does not lay out by hand: a Select for a closed set of choices, a tick box for a yes/no,
an Input for a number, a path or text. A new ``option(...)`` field of TrainConfig appears
in Setup through these, with no form code of its own.

Each widget's id is the option's name; what it holds is read back with :func:`read_value`
(typed, for the config) and :func:`saved_value` (plain JSON, for the remembered settings)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Checkbox, Input, Label, Select, Static

from dftui.core.options import SECTIONS, Option
from dftui.ui.widgets.tickbox import TickBox

OPTION_CLASS = "option-field"  # every derived widget carries it


def title(opt: Option) -> str:
    """The form's label: the option's, capitalised ("learning rate" → "Learning rate")."""
    return opt.label[:1].upper() + opt.label[1:]


def is_short(opt: Option) -> bool:
    """A number or a yes/no: two fit on one row of an 80-column form."""
    return opt.value_type in (int, float, bool) and not opt.all_choices()


def is_text(opt: Option) -> bool:
    """Shown as an Input (its text is checked as it is typed)."""
    return opt.value_type is not bool and not opt.all_choices()


def _restored(opt: Option, saved: Any) -> Any:
    """The remembered value when it can be this option's (settings are untrusted), else
    the declared default."""
    choices = opt.all_choices()
    if opt.value_type is bool:
        return saved if isinstance(saved, bool) else bool(opt.default)
    if choices:
        return saved if saved in choices else opt.default
    if isinstance(saved, (str, int, float)) and not isinstance(saved, bool):
        return str(saved)
    return opt.to_text(opt.default)


def widget_for(opt: Option, saved: Any = None) -> Widget:
    value = _restored(opt, saved)
    choices = opt.all_choices()
    if opt.value_type is bool:
        return TickBox("", value, id=opt.name, compact=True, classes=OPTION_CLASS, tooltip=opt.help)
    if choices:
        return Select([(opt.choice_label(c), c) for c in choices],
                      value=value if value in choices else Select.NULL,
                      allow_blank=opt.optional or value not in choices, prompt="auto",
                      id=opt.name, compact=True, classes=OPTION_CLASS, tooltip=opt.help)
    classes = f"{OPTION_CLASS} short" if is_short(opt) else OPTION_CLASS
    field = Input(value, id=opt.name, compact=True, classes=classes,
                  placeholder=opt.placeholder or ("auto" if opt.default is None else ""))
    field.tooltip = opt.help
    return field


def groups(opts: Iterable[Option]) -> list[list[Option]]:
    """The options by row, in their declared order: a choice or a path takes a row, two
    numbers or yes/no side by side share one."""
    out: list[list[Option]] = []
    pending: list[Option] = []
    for opt in opts:
        if not is_short(opt):
            if pending:
                out.append(pending)
                pending = []
            out.append([opt])
            continue
        pending.append(opt)
        if len(pending) == 2:
            out.append(pending)
            pending = []
    if pending:
        out.append(pending)
    return out


def rows(opts: Iterable[Option], saved: dict[str, Any]) -> Iterator[Widget]:
    """The options' rows (see :func:`groups`) under a heading per section, each field's
    label then its widget."""
    by_section: dict[str, list[Option]] = {}
    for opt in opts:
        by_section.setdefault(opt.section, []).append(opt)
    order = [s for s in SECTIONS if s in by_section] + [s for s in by_section if s not in SECTIONS]
    for section in order:
        yield Static(section.capitalize(), classes="option-section")
        for group in groups(by_section[section]):
            children: list[Widget] = []
            for i, opt in enumerate(group):
                label = Label(title(opt), classes="option-label2" if i else "option-label")
                label.tooltip = opt.help
                children.append(label)
                children.append(widget_for(opt, saved.get(opt.name)))
            yield Horizontal(*children, classes="row")


def read_value(opt: Option, widget: Widget) -> Any:
    """The typed value the widget holds; ValueError naming the option for text that is not
    one (bounds and rules are ``opt.problem``'s)."""
    if isinstance(widget, Checkbox):
        return widget.value
    if isinstance(widget, Select):
        return None if widget.value is Select.NULL else widget.value
    if isinstance(widget, Input):
        return opt.from_text(widget.value)
    raise TypeError(f"no value in a {type(widget).__name__}")


def saved_value(widget: Widget) -> Any:
    """What to remember of the widget: plain JSON (never None, which settings refuse)."""
    if isinstance(widget, Checkbox):
        return widget.value
    if isinstance(widget, Select):
        return "" if widget.value is Select.NULL else widget.value
    if isinstance(widget, Input):
        return widget.value
    return ""


def reset(opt: Option, widget: Widget) -> None:
    """Back to the declared default."""
    if isinstance(widget, Checkbox):
        widget.value = bool(opt.default)
    elif isinstance(widget, Select):
        widget.value = opt.default if opt.default in opt.all_choices() else Select.NULL
    elif isinstance(widget, Input):
        widget.value = opt.to_text(opt.default)


def text_default(opt: Option) -> str:
    """The default as the form's text shows it (paths as typed, 1e-4 for a rate)."""
    default = opt.default
    return str(default) if isinstance(default, Path) else opt.to_text(default)
