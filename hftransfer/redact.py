"""Keep secrets and local paths out of what a run publishes: tokens, the home folder, absolute paths."""

from __future__ import annotations

import dataclasses
import os
import re
from contextlib import contextmanager
from pathlib import Path

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def home() -> str | None:
    """The home folder as text, or None where it is too short to be told apart from other paths ("/")."""
    path = os.path.expanduser("~").rstrip("/")
    return path if len(path) > 1 else None


def home_relative(text: str) -> str:
    """`/home/me/runs/x` -> `~/runs/x`: the path still reads, the user name is gone."""
    prefix = home()
    return text.replace(prefix, "~") if prefix else text


def is_local_path(value: str) -> bool:
    """An existing file/folder, or text shaped like a path (absolute, ~, ./, or more than one slash)."""
    if not value or "\n" in value:
        return False
    if value.startswith(("/", "~", "./", "../")):
        return True
    if any(c.isspace() for c in value):  # free text ("freeze/unfreeze the head"), unless it names a real file
        return _exists(value)
    return value.count("/") > 1 or os.sep in value.replace("/", "") or _exists(value)


def _exists(value: str) -> bool:
    try:
        return Path(value).exists()
    except (OSError, ValueError):
        return False


def is_hub_id(value: str) -> bool:
    """`org/name` that is not also a local folder."""
    return bool(_HUB_ID.match(value)) and not is_local_path(value)


def public_name(value: str) -> str:
    """What a card may show for a name or path: a local path becomes `<basename> (local)`."""
    if is_local_path(value):
        name = Path(value.rstrip("/")).expanduser().name or "folder"
        return f"{name} (local)"
    return value


def public_value(value):
    """`public_name` applied through str values of nested lists/dicts; other values unchanged."""
    if isinstance(value, str):
        return public_name(value)
    if isinstance(value, dict):
        return {k: public_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_value(v) for v in value]
    return value


def scrub(text: str, secrets: list[str | None] = ()) -> str:
    """Last line of defence for published text: drop secrets and write the home folder as ~."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return home_relative(text)


@contextmanager
def redacted_args(args):
    """While `args` is pickled (training_args.bin): no Hub token, and the home folder written as ~ in its paths."""
    saved = {}
    for field in dataclasses.fields(args):
        value = getattr(args, field.name, None)
        if field.name == "hub_token" and value is not None:
            saved[field.name] = value
        elif isinstance(value, str) and home() and home() in value:
            saved[field.name] = value
    for name, value in saved.items():
        setattr(args, name, None if name == "hub_token" else home_relative(value))
    try:
        yield args
    finally:
        for name, value in saved.items():
            setattr(args, name, value)
