"""The mistakes a user can make, as exception types of their own.

`train.py` turns exactly these into one line and exit code 2; anything else is a bug and keeps its
traceback. Each also derives from the built-in type Python code would expect (ValueError, OSError, ...),
so `except ValueError` around `create_model` still works.
"""

from __future__ import annotations

from typing import Any


class LitEffnetError(Exception):
    """A user mistake whose message names the culprit (a config key, a path, a file)."""


class ConfigError(LitEffnetError, ValueError):
    """A setting that is unknown, out of range or in conflict with another one."""


class DataError(LitEffnetError, OSError):
    """Input data that cannot be used as configured."""


class DatasetNotFoundError(DataError, FileNotFoundError):
    """A dataset folder is missing or incomplete; the message says where it should be and how to get it."""


class CorruptImageError(DataError):
    """An image file that cannot be decoded; the message names the file."""


class CheckpointError(LitEffnetError, OSError):
    """A checkpoint or weights file that is missing, unreadable or not of this project."""


class WeightsMismatchError(LitEffnetError, ValueError):
    """A readable weights file or module that does not fit the architecture it is loaded into."""


class NonFiniteLossError(LitEffnetError, FloatingPointError):
    """The training loss became NaN or infinite; raised before the weights are touched."""


def refuse_pinned(knob: str, key: str, value: Any) -> None:
    """A knob progressive learning schedules must not also be set as `key`: one of the two would silently lose."""
    if value is not None:
        raise ConfigError(
            f"progressive.{knob} is scheduled and {key} is set ({value}): set one of them "
            f"(a fixed value: progressive.{knob} [{value}, {value}])"
        )
