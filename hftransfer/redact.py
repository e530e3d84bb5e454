"""Keep secrets and local paths out of what a run publishes: tokens, the home folder, absolute paths, the host name."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
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


def host_name() -> str | None:
    """This machine's name (TensorBoard puts it in `runs/<date>_<host>` and its event file names), if any."""
    name = socket.gethostname().strip()
    return name or None


def without_host(text: str) -> str:
    """The host name, where it stands apart (`runs/Jan01_12-00-00_myhost`), written as `<host>`."""
    name = host_name()
    if not name:
        return text
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", "<host>", text)


def public_path(value: str, root: str | os.PathLike | None = None) -> str:
    """A path as a published record names it: relative to `root` when inside it (`.` for `root` itself), else its
    base name; never the home folder, the folders above `root`, or the host name."""
    path = Path(os.path.abspath(os.path.expanduser(value)))
    if root is not None:
        top = Path(os.path.abspath(os.path.expanduser(str(root))))
        if path == top or top in path.parents:
            return without_host(path.relative_to(top).as_posix())
    return without_host(path.name or ".")


def public_model_id(value: str | None) -> str | None:
    """A base model as an adapter config may name it: a Hub id as it is, a local folder by its base name."""
    if not value or is_hub_id(value) or not is_local_path(value):
        return value
    return public_path(value)


def public_record(value, root: str | os.PathLike | None = None, *, relative_paths: bool = True):
    """Through nested dicts/lists: every str that is a local path (or holds the home folder) made a `public_path`.

    `relative_paths=False` leaves relative paths alone (they name files only against the working directory they were
    written from): only absolute and `~` paths change, so that a record already made public stays as it is.
    """
    if isinstance(value, str):
        holds_home = bool(home()) and home() in value
        if relative_paths:
            is_path = is_local_path(value)
        else:
            is_path = "\n" not in value and (value.startswith("~") or os.path.isabs(value))
        return public_path(value, root) if holds_home or is_path else value
    if isinstance(value, dict):
        return {k: public_record(v, root, relative_paths=relative_paths) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [public_record(v, root, relative_paths=relative_paths) for v in value]
    return value


def training_args_json(args, output_dir: str | os.PathLike, secrets: list[str | None] = ()) -> str:
    """The TrainingArguments as JSON for publishing (instead of the pickled training_args.bin): no token, and every
    path relative to output_dir or reduced to its base name."""
    record = args.to_dict()  # enums as their values; transformers masks `*_token` fields
    for key in record:
        if key.endswith("_token"):
            record[key] = None
    record = public_record(record, output_dir)
    secrets = [*secrets, getattr(args, "hub_token", None)]
    return scrub(json.dumps(record, indent=2, sort_keys=True, default=str), secrets) + "\n"


def public_adapter_files(folder: str | os.PathLike) -> None:
    """peft names the base model by its local path in adapter_config.json and README.md (`base_model`, a
    `base_model:adapter:` tag): rewrite them as a Hub id, or a local folder's base name, after peft saved them
    (the final adapter/ and every checkpoint of a LoRA run).

    (Renaming the base model before peft saves would not do: peft looks the name up, locally or else on the Hub,
    to tell whether the vocabulary changed.) README.md keeps `base_model` metadata only for a Hub id: the Hub
    rejects a commit whose card names anything else there.
    """
    folder = Path(folder)
    config = folder / "adapter_config.json"
    if config.is_file():
        record = json.loads(config.read_text(encoding="utf-8"))
        if record.get("base_model_name_or_path"):
            record["base_model_name_or_path"] = public_model_id(record["base_model_name_or_path"])
            config.write_text(scrub(json.dumps(record, indent=2, sort_keys=True)), encoding="utf-8")
    readme = folder / "README.md"
    if readme.is_file():
        from huggingface_hub import ModelCard

        card = ModelCard.load(readme)
        base = card.data.get("base_model")
        if base is not None and not (isinstance(base, str) and is_hub_id(base)):
            card.data.pop("base_model", None)
            tags = [t for t in card.data.get("tags") or [] if not str(t).startswith("base_model:adapter:")]
            card.data.tags = tags or None
        readme.write_text(scrub(str(card)), encoding="utf-8")


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
