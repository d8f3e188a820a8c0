"""Reading files that another process, an older version or a person wrote (run records,
weights metadata, events, settings, evaluation records).

Every such file is untrusted input: it may be cut short, hand-edited, nested absurdly deep,
huge, of the wrong top-level type, or hold fields of the wrong type. The readers here turn
each of those into an ``UntrustedError`` whose message is the reason a user can read, so the
caller can show the entry as damaged and go on with everything else."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import stat
import types
import typing
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from dftui.core.errors import describe_error

_T = TypeVar("_T")

MAX_JSON_BYTES = 16 * 1024 * 1024  # records and metadata are kilobytes; more is not ours
MAX_INT = 2**53  # integers beyond what a float holds exactly are not counts we wrote


class UntrustedError(ValueError):
    """A file or field that cannot be used; the message says why, for the user."""


class MissingField(UntrustedError):
    """A record without a field that has no default; ``path`` names it (``summary.split``)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"without its {path!r} field")
        self.path = path


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` that reports every way a text can fail as an UntrustedError (deep
    nesting raises RecursionError, which is not a ValueError)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UntrustedError("it is nested too deeply to be a file dftui wrote") from None
    except UnicodeDecodeError:
        raise UntrustedError("it is not UTF-8 text") from None
    except ValueError as exc:
        raise UntrustedError(f"it is not valid JSON ({str(exc)[:120]})") from None


def read_text(path: str | Path, max_bytes: int = MAX_JSON_BYTES) -> str:
    """The text of a regular file, refusing FIFOs and devices (a read could block forever or
    never end) and files larger than ``max_bytes``. FileNotFoundError passes through, so
    callers can tell "missing" from "damaged"; other failures are UntrustedError."""
    path = Path(path)
    try:
        # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise UntrustedError(f"it cannot be read ({describe_error(exc)})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedError("it is not a regular file")
        if info.st_size > max_bytes:
            raise UntrustedError(f"it is too large ({info.st_size:,} bytes) to be a file dftui wrote")
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(max_bytes + 1)  # it may have grown since fstat
    except OSError as exc:
        raise UntrustedError(f"it cannot be read ({describe_error(exc)})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise UntrustedError(f"it is too large (over {max_bytes:,} bytes) to be a file dftui wrote")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UntrustedError("it is not UTF-8 text") from None


def read_json(path: str | Path, expect: type | None = dict, max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file that something else wrote. Raises FileNotFoundError when it is
    missing and UntrustedError (with the reason) when it is damaged or, with ``expect``,
    of the wrong top-level type."""
    data = parse_json(read_text(path, max_bytes))
    if expect is not None and not isinstance(data, expect):
        raise UntrustedError(
            f"its top level is {json_type(data)}, not {_TYPE_NAMES.get(expect, expect.__name__)}"
        )
    return data


_TYPE_NAMES: dict[type, str] = {
    dict: "an object",
    list: "a list",
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
}


def json_type(value: Any) -> str:
    """What a JSON value is, for messages ("a list", "null", ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true or false"
    for kind, name in _TYPE_NAMES.items():
        if isinstance(value, kind):
            return name
    return type(value).__name__


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, (dict, list)) else json_type(value)
    return text if len(text) <= 40 else text[:39] + "…"


def check_str(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise UntrustedError(f"{name} should be text, not {_show(value)}")
    return value


def check_int(value: Any, name: str, minimum: int | None = None) -> int:
    """An integer (a float with no fraction, as other JSON writers make, is accepted)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or abs(value) > MAX_INT:
        raise UntrustedError(f"{name} should be a whole number, not {_show(value)}")
    if minimum is not None and value < minimum:
        raise UntrustedError(f"{name} should be at least {minimum}, not {value}")
    return value


def check_float(value: Any, name: str) -> float:
    """A finite number (ints are accepted; true/false, NaN and infinities are not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UntrustedError(f"{name} should be a number, not {_show(value)}")
    try:
        out = float(value)
    except OverflowError:
        raise UntrustedError(f"{name} is out of range") from None
    if not math.isfinite(out):
        raise UntrustedError(f"{name} should be a finite number, not {_show(value)}")
    return out


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise UntrustedError(f"{name} should be true or false, not {_show(value)}")
    return value


def check_typed(value: Any, hint: Any, name: str) -> Any:
    """``value`` if it is of the annotated type: str, int, float, bool, Path (from text),
    dict[str, X], Counter[str] and list[X], tuple[X, ...] (from a list), X | None and
    dataclasses (from an object, see ``check_dataclass``); else UntrustedError naming the
    field."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return check_dataclass(value, hint, name)
    origin = typing.get_origin(hint)
    if origin is Counter:
        return Counter(check_typed(value, dict[str, int], name))
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return check_typed(value, inner[0], name)
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise UntrustedError(f"{name} should be an object, not {_show(value)}")
        args = typing.get_args(hint)
        if not args or args[1] is Any:
            return value
        return {str(k): check_typed(v, args[1], f"{name}.{k}") for k, v in value.items()}
    if origin is list or hint is list:
        if not isinstance(value, list):
            raise UntrustedError(f"{name} should be a list, not {_show(value)}")
        args = typing.get_args(hint)
        if not args or args[0] is Any:
            return value
        return [check_typed(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
    if origin is tuple or hint is tuple:
        # JSON has no tuples: a tuple field is written as a list.
        if not isinstance(value, (list, tuple)):
            raise UntrustedError(f"{name} should be a list, not {_show(value)}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            if args[0] is Any:
                return tuple(value)
            return tuple(check_typed(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if args and len(args) != len(value):
            raise UntrustedError(f"{name} should hold {len(args)} items, not {len(value)}")
        if not args:
            return tuple(value)
        return tuple(check_typed(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
    if hint is Path:
        text = check_str(value, name)
        if not text or "\0" in text:
            raise UntrustedError(f"{name} should be a folder or file path, not {_show(value)}")
        return Path(text)
    if hint is Any:
        return value
    checker = _CHECKS.get(hint)
    if checker is None:  # a type this reader does not know: refuse rather than guess
        raise UntrustedError(f"{name} has a type this version cannot check")
    return checker(value, name)


def check_dataclass(value: Any, cls: type[_T], name: str = "") -> _T:
    """An instance of the dataclass ``cls`` from a JSON object, every field type-checked
    (``name`` is the object's place in its record, "" for the record itself). Keys the
    class does not have are ignored (a newer version may add some); a missing field takes
    its default, and one without a default raises ``MissingField``."""
    if not isinstance(value, dict):
        raise UntrustedError(f"{name or 'the record'} should be an object, not {_show(value)}")
    hints = _field_types(cls)
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init:
            continue
        path = f"{name}.{f.name}" if name else f.name
        if f.name not in value:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MissingField(path)
            continue
        kwargs[f.name] = check_typed(value[f.name], hints[f.name], path)
    return cls(**kwargs)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


class Fields:
    """Typed reads of one untrusted JSON object. A missing or null field gives the default;
    a field of the wrong type gives the default too and its reason is kept in ``problems``,
    so a reader can show what it could read and say what it could not."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def _get(self, key: str, check: Any, default: Any, **kw: Any) -> Any:
        value = self.data.get(key)
        if value is None:
            return default
        try:
            return check(value, key, **kw)
        except UntrustedError as exc:
            self.problems.append(str(exc))
            return default

    def str(self, key: str, default: Any = "") -> Any:
        return self._get(key, check_str, default)

    def int(self, key: str, default: Any = None, minimum: int | None = None) -> Any:
        return self._get(key, check_int, default, minimum=minimum)

    def float(self, key: str, default: Any = None) -> Any:
        return self._get(key, check_float, default)

    def bool(self, key: str, default: Any = None) -> Any:
        return self._get(key, check_bool, default)


_CHECKS: dict[Any, Callable[[Any, str], Any]] = {
    str: check_str,
    int: check_int,
    float: check_float,
    bool: check_bool,
}
