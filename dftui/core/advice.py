"""Ways out of an error, as data. The engine's messages are shared by the CLI and the
dashboard: a message says what went wrong and where; the fixes name the *setting* to change
(a TrainConfig field, a command option) and each surface phrases them its own way (the CLI
as flags, the dashboard as the field or key to use), instead of the core writing
"--pretrained none" into a message a dashboard user cannot type."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# The settings a fix may name. Each surface keeps a phrase for every one of them (a test
# checks it), so no fix ever reaches a user unphrased.
SETTINGS = ("pretrained", "overwrite", "out_dir", "data_out", "force", "device", "precision", "lr")


@dataclass(frozen=True)
class Fix:
    setting: str  # one of SETTINGS
    value: str | None = None  # the value to give it ("none"); None: the user chooses one

    def encode(self) -> str:
        """The form kept in events (a plain string, so event logs stay simple JSON)."""
        return self.setting if self.value is None else f"{self.setting}={self.value}"

    @classmethod
    def decode(cls, text: str) -> Fix | None:
        """None for a setting this version does not know (an event from a newer one)."""
        setting, _, value = text.partition("=")
        if setting not in SETTINGS:
            return None
        return cls(setting, value or None)


def encode_all(fixes: Iterable[Fix]) -> tuple[str, ...]:
    return tuple(f.encode() for f in fixes)


def decode_all(texts: Iterable[str]) -> list[Fix]:
    return [f for f in (Fix.decode(t) for t in texts) if f is not None]


def fixes_of(exc: BaseException) -> tuple[Fix, ...]:
    """The fixes an exception carries (``exc.fixes``), or none."""
    fixes = getattr(exc, "fixes", ())
    return tuple(f for f in fixes if isinstance(f, Fix)) if isinstance(fixes, tuple) else ()
