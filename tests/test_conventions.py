"""House rules that a reviewer would otherwise have to remember, checked on the tests' source."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from dftui.core import events

TESTS = Path(__file__).parent
EVENT_NAMES = {
    name for name, cls in vars(events).items()
    if inspect.isclass(cls) and issubclass(cls, events.Event) and cls is not events.Event
}


def test_tests_build_events_with_keyword_arguments() -> None:
    """``EpochEnd(epoch=1, ...)``, never ``EpochEnd(1, 3, 0.5, ...)``: with positions, a field
    added to or reordered in an event shifts every value of every test silently."""
    assert {"EpochEnd", "RunStarted", "LogMessage"} <= EVENT_NAMES
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in EVENT_NAMES:
                found.append(f"{path.relative_to(TESTS)}:{node.lineno} {name}")
    assert not found, "events built with positional arguments:\n" + "\n".join(found)
