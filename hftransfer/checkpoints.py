"""Which checkpoint to resume from, and when a checkpoint folder is complete.

A checkpoint is complete once its manifest (`hftransfer_checkpoint.json`) exists and every file it lists has the
listed size. TransferTrainer writes the manifest last, after fsyncing every other file of the checkpoint, so a run
killed while saving (or a full disk) leaves a checkpoint without a manifest, which `--resume_from_checkpoint last`
skips. Checkpoints written by plain transformers have no manifest: they are accepted when given explicitly and
they hold trainer_state.json and model weights.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

from .errors import ConfigError

MANIFEST = "hftransfer_checkpoint.json"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")
NO_RESUME = ("", "false", "no", "0", "none")
RESUME_LAST = ("true", "yes", "1", "last")


def parse_resume(value) -> str | None:
    """--resume_from_checkpoint (a string from the command line, a bool/int/string from YAML) -> None, 'last' or a
    checkpoint folder path."""
    if value is None or value is False:
        return None
    if value is True:
        return "last"
    if isinstance(value, int) and value in (0, 1):
        return "last" if value else None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(
            f"--resume_from_checkpoint must be a checkpoint folder, 'last' or false, not {value!r}"
        )
    text = value.strip()
    if text.lower() in NO_RESUME:
        return None
    if text.lower() in RESUME_LAST:
        return "last"
    return text


def _checkpoint_step(folder: Path) -> int | None:
    match = CHECKPOINT_PATTERN.match(folder.name)
    return int(match.group(1)) if match and folder.is_dir() else None


def _checkpoints(folder: Path) -> list[Path]:
    """checkpoint-N folders of `folder`, newest (largest N) first."""
    if not folder.is_dir():
        return []
    found = [(step, path) for path in folder.iterdir() if (step := _checkpoint_step(path)) is not None]
    return [path for _, path in sorted(found, reverse=True)]


def _fsync(path: str | Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:  # e.g. directories on Windows
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_checkpoint_manifest(folder: str | Path) -> None:
    """Mark a fully written checkpoint complete: fsync every file, then write the manifest (name -> size) last."""
    folder = Path(folder)
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST and not path.name.endswith(".tmp"):
            _fsync(path)
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
    for directory in {p.parent for p in folder.rglob("*") if p.is_file()} | {folder}:
        _fsync(directory, directory=True)
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as file:
        file.write(json.dumps({"written_by": "hftransfer", "files": files}, indent=1, sort_keys=True) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, folder / MANIFEST)
    _fsync(folder, directory=True)


def incomplete_reason(folder: str | Path) -> str | None:
    """None for a complete checkpoint, else why it is not (one short phrase)."""
    folder = Path(folder)
    if not folder.is_dir():
        return "it does not exist"
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        files = manifest["files"]
        assert isinstance(files, dict)
    except FileNotFoundError:
        return f"it has no {MANIFEST} (saving it did not finish)"
    except (OSError, ValueError, KeyError, AssertionError):
        return f"its {MANIFEST} is unreadable"
    for name, size in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != size:
            return f"{name} is truncated ({path.stat().st_size} of {size} bytes)"
    return None


def checkpoint_is_complete(folder: str | Path) -> bool:
    return incomplete_reason(folder) is None


def _plain_transformers_problem(folder: Path) -> str | None:
    """A checkpoint without manifest (written by plain transformers): needs trainer_state.json and weights."""
    if not (folder / "trainer_state.json").is_file():
        return "it has no trainer_state.json"
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return "it holds no model weights"
    return None


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def find_resume_checkpoint(value: str | None, folders) -> str | None:
    """parse_resume's value -> the checkpoint folder to resume from (None: no resume).

    'last': the newest complete checkpoint-N of the first of `folders` that holds any checkpoint (incomplete newer
    ones are skipped with one line on stderr); a path: that folder, if it is a complete checkpoint.
    """
    if value is None:
        return None
    if value != "last":
        folder = Path(value)
        if not folder.is_dir():
            raise ConfigError(
                f"checkpoint {value!r} does not exist; pass a checkpoint-N folder, 'last' for the newest one, or false"
            )
        if (folder / MANIFEST).exists():
            reason = incomplete_reason(folder)
        else:
            reason = _plain_transformers_problem(folder)
        if reason:
            raise ConfigError(
                f"checkpoint {value!r} is incomplete: {reason}; pass an earlier checkpoint or "
                "--resume_from_checkpoint last (the newest complete one)"
            )
        return value
    searched = [Path(f) for f in folders]
    for folder in searched:
        candidates = _checkpoints(folder)
        if not candidates:
            continue
        skipped = []
        for candidate in candidates:
            reason = incomplete_reason(candidate)
            if reason is None:
                if skipped and _is_main_process():
                    print(f"warning: skipped incomplete checkpoints {'; '.join(skipped)}; resuming from {candidate}",
                          file=sys.stderr, flush=True)
                return str(candidate)
            skipped.append(f"{candidate.name} ({reason})")
        raise ConfigError(
            f"no complete checkpoint in {str(folder)!r} to resume from ({'; '.join(skipped)}); pass a checkpoint "
            "folder explicitly, or start afresh with --overwrite_output_dir true"
        )
    where = " or ".join(repr(str(f)) for f in searched) or "the output folder"
    raise ConfigError(f"no checkpoint to resume from in {where}; drop --resume_from_checkpoint to start afresh")
