"""The event schema: one module, one type table, and every event rebuilt from its record."""

from __future__ import annotations

import dataclasses
import importlib
import json
import types
import typing
from collections import Counter
from typing import Any

import pytest

from dftui.core import events as E
from dftui.core.events import EVENT_TYPES, Event, EventError, event_from_dict


def _sample(hint: Any) -> Any:
    """A value of the annotated type (a non-default one, so a dropped field would show)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _sample(next(a for a in args if a is not type(None)))
    if origin is Counter:
        return Counter({"train/real": 2, "val/fake": 1})
    if origin is dict or hint is dict:
        return {"a": _sample(args[1]) if args else 1}
    if origin is list:
        return [_sample(args[0]), _sample(args[0])]
    if origin is tuple:
        return (_sample(args[0]),)
    if dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return hint(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(hint) if f.init})
    return {str: "text", int: 7, float: 0.25, bool: True, Any: "any"}[hint]


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_every_event_is_declared_in_the_schema_module_and_its_table() -> None:
    # The engines that emit events, imported so that any event class they define exists.
    for module in ("train", "prepare", "prepare_folder", "evaluate", "background", "backbones"):
        importlib.import_module(f"dftui.core.{module}")
    events = {c for c in _all_subclasses(Event) if c.__module__.startswith("dftui.")}
    assert {c.__module__ for c in events} == {"dftui.core.events"}
    assert events == set(EVENT_TYPES.values())
    assert all(kind == cls.kind for kind, cls in EVENT_TYPES.items())
    # The old import paths still work (the engines re-export what they emit).
    from dftui.core.evaluate import EvalProgress
    from dftui.core.prepare import PrepareFinished, SplitSummary
    from dftui.core.prepare_folder import FolderSummary

    assert (EvalProgress, PrepareFinished, SplitSummary, FolderSummary) == (
        E.EvalProgress, E.PrepareFinished, E.SplitSummary, E.FolderSummary)


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_every_event_survives_its_json_record(cls: type[Event]) -> None:
    hints = typing.get_type_hints(cls)
    event = cls(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls)})
    record = json.loads(json.dumps(event.to_dict()))
    assert record["event"] == cls.kind
    assert event_from_dict(record) == event
    # A newer version's extra fields are ignored.
    assert event_from_dict({**record, "added_later": [1, 2]}) == event


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_an_older_record_replays_and_a_missing_required_field_is_named(cls: type[Event]) -> None:
    hints = typing.get_type_hints(cls)
    required = [f for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    # A record written before the fields with defaults existed: they take their defaults.
    event = cls(**{f.name: _sample(hints[f.name]) for f in dataclasses.fields(cls)})
    names = {"event"} | {f.name for f in required}
    old = {k: v for k, v in json.loads(json.dumps(event.to_dict())).items() if k in names}
    rebuilt = event_from_dict(old)
    for f in dataclasses.fields(cls):
        if f not in required:
            expected = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            assert getattr(rebuilt, f.name) == expected
    for f in required:
        with pytest.raises(EventError, match=f"{cls.kind} event without its '{f.name}' field"):
            event_from_dict({k: v for k, v in old.items() if k != f.name})


def test_nested_records_are_type_checked_with_the_field_path() -> None:
    record = json.loads(
        json.dumps(E.SplitFinished(summary=E.SplitSummary("train", "/o")).to_dict())
    )
    record["summary"]["written"] = "many"
    with pytest.raises(EventError, match="split_finished event: summary.written"):
        event_from_dict(record)
    del record["summary"]["split"]
    record["summary"]["written"] = 1
    with pytest.raises(EventError, match="summary.split"):
        event_from_dict(record)
    record = E.FolderFinished(summary=E.FolderSummary(crops=Counter({"train/real": 3}))).to_dict()
    assert record["summary"]["crops"] == {"train/real": 3}  # a Counter is written as counts
    record["summary"]["crops"] = {"train/real": "3"}
    with pytest.raises(EventError, match=r"summary.crops.train/real"):
        event_from_dict(json.loads(json.dumps(record)))
