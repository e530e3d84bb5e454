"""The output folder's life: a run writes into `<output_dir>.partial` and moves it into place only when complete.

Promises (README "Guarantees"):
- nothing this tool did not write is ever deleted or changed: a non-empty folder without this tool's marker is
  refused before any work, and a finished run being replaced loses only the files its own manifest lists;
- a failed or killed run leaves the previous output as it was; its checkpoints stay in `<output_dir>.partial`
  for `--resume_from_checkpoint last`, and a failure before the first checkpoint leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DiskFullError, HFTransferError

logger = logging.getLogger(__name__)

MARKER = ".hftransfer-output.json"  # {"status": "partial" | "complete", "files": [...relative paths]}
PARTIAL_SUFFIX = ".partial"


def read_marker(folder: Path) -> dict | None:
    """This tool's record of a folder it wrote, or None for a folder it did not write."""
    try:
        marker = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) and marker.get("written_by") == "hftransfer" else None


def _write_marker(folder: Path, status: str, files: list[str]) -> None:
    record = {"written_by": "hftransfer", "status": status, "files": files}
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, folder / MARKER)


def _files_below(folder: Path) -> list[str]:
    top_marker = folder / MARKER  # a nested run's marker (advise's probes/) is a file this tool wrote
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p != top_marker)


def foreign_files(folder: Path) -> list[str]:
    """Files in `folder` this tool did not write (all of them for a folder without its marker)."""
    if not folder.is_dir():
        return []
    marker = read_marker(folder)
    written = set(marker.get("files", [])) if marker else set()
    return [f for f in _files_below(folder) if f not in written]


def _delete_written_files(folder: Path, files: list[str]) -> None:
    """Remove exactly the listed files, then the folders left empty; anything else stays."""
    for name in files:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    (folder / MARKER).unlink(missing_ok=True)
    for directory in sorted((p for p in folder.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(directory.iterdir()):
            directory.rmdir()
    if not any(folder.iterdir()):
        folder.rmdir()


def _has_checkpoints(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("checkpoint-*"))


def partial_folder(final: Path) -> Path:
    """`<output_dir>.partial`: the folder a run writes into until it is complete."""
    if final.name in ("", ".", ".."):
        final = final.resolve()
    return final.with_name(final.name + PARTIAL_SUFFIX)


def _shown(path: Path) -> str:
    return repr(str(path))


@dataclass
class StagedOutput:
    final: Path
    partial: Path
    resume_checkpoint: str | None = None
    created_partial: bool = False


def check_output_folder(final: Path, *, overwrite: bool, resume: str | None) -> None:
    """Every refusal, before any work; creates and deletes nothing."""
    from .validation import check_output_dir

    check_output_dir(str(final))  # a file, a path under a file, an unwritable folder
    partial = partial_folder(final)
    foreign = foreign_files(final)
    if foreign:
        listed = ", ".join(repr(f) for f in foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ConfigError(
            f"--output_dir {_shown(final)} holds {len(foreign)} file(s) hftransfer did not write ({listed}); it never "
            "deletes or replaces those; choose a new or empty --output_dir"
        )
    if partial.exists():
        if not partial.is_dir() or read_marker(partial) is None:
            raise ConfigError(
                f"{_shown(partial)} exists and was not written by hftransfer, which writes a run there until it is "
                "complete; move it away or choose another --output_dir"
            )
        if _has_checkpoints(partial) and not overwrite and not resume:
            raise ConfigError(
                f"an interrupted run left checkpoints in {_shown(partial)}; continue it with "
                "--resume_from_checkpoint last, or start afresh with --overwrite_output_dir true"
            )
    marker = read_marker(final) if final.is_dir() else None
    if marker and marker.get("status") == "complete" and not overwrite and not resume:
        raise ConfigError(
            f"--output_dir {_shown(final)} already holds a finished run; choose another --output_dir, pass "
            "--overwrite_output_dir true (the old run is replaced only once the new one finishes), or continue it "
            "with --resume_from_checkpoint last"
        )


def _is_inside(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def _make_folder(folder: Path) -> list[Path]:
    """mkdir -p that returns the folders it created (deepest last), so a failed run can take them back."""
    created = []
    for parent in reversed([folder, *folder.parents]):
        if not parent.exists():
            try:
                parent.mkdir()
            except FileExistsError:
                if parent == folder or not parent.is_dir():
                    raise ConfigError(f"cannot create {_shown(parent)}: it appeared while this run was starting; "
                                      "run again, or choose another --output_dir") from None
                continue  # another run (e.g. a sibling output folder) created it in the meantime: not ours to remove
            except OSError as error:
                raise ConfigError(
                    f"cannot create {_shown(parent)}: {error.strerror}; choose a writable --output_dir"
                ) from None
            created.append(parent)
    return created


@contextmanager
def staged_output(final: str | Path, *, overwrite: bool = False, resume: str | None = None,
                  find_checkpoint=None, is_writer: bool = True, barrier=lambda: None):
    """Yield a StagedOutput whose `partial` folder receives the run; on success move it to `final`.

    `resume` is parse_resume's value ("last", a path, or None); `find_checkpoint(resume, folders)` turns it into a
    checkpoint folder, searching the partial folder first. `is_writer`: this process creates and moves folders
    (transformers' `should_save`); every process runs the checks, and `barrier` keeps them in step.
    """
    final = Path(final)
    check_output_folder(final, overwrite=overwrite, resume=resume)
    partial = partial_folder(final)
    checkpoint = find_checkpoint(resume, [partial, final]) if resume and find_checkpoint else None
    staged = StagedOutput(final, partial, checkpoint)
    barrier()  # every process has checked before the writer changes anything
    created: list[Path] = []
    if is_writer:
        if partial.exists() and not _is_inside(checkpoint, partial):
            shutil.rmtree(partial)  # this tool's own stale partial run: no checkpoint of it is wanted (checked above)
        if not partial.exists():
            created = _make_folder(partial)
            staged.created_partial = True
            _write_marker(partial, "partial", [])
    barrier()
    try:
        yield staged
        barrier()  # every process has written its part
        if is_writer:
            _move_into_place(partial, final)
    except BaseException as error:
        if is_writer:
            _after_failure(staged, created)
        if _disk_full(error, final.parent if final.parent.exists() else Path.cwd()):
            raise DiskFullError(
                f"the disk holding {_shown(final)} is full ({type(error).__name__}: {str(error)[:80]}); free space, "
                "then rerun (with --resume_from_checkpoint last where checkpoints were kept)"
            ) from None
        raise


def _disk_full(error: BaseException, folder: Path) -> bool:
    """ENOSPC, or a writer (torch.save reports only 'iostream error') that failed with the disk now full."""
    import errno

    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    if not isinstance(error, (OSError, RuntimeError)):
        return False
    try:
        return shutil.disk_usage(folder).free < (1 << 20)
    except OSError:
        return False


def _move_into_place(partial: Path, final: Path) -> None:
    _write_marker(partial, "complete", _files_below(partial))
    if final.is_dir() and any(final.iterdir()):
        previous = final.with_name(final.name + ".previous")
        if previous.exists():
            raise ConfigError(f"{_shown(previous)} is in the way of replacing the old run; move it away and rerun")
        os.replace(final, previous)
        os.replace(partial, final)
        old = read_marker(previous) or {}
        _delete_written_files(previous, old.get("files", []))
        if previous.exists():  # files appeared there during the run: they are the user's, so they stay
            logger.warning("kept %s: it holds files hftransfer did not write", previous)
    else:
        os.replace(partial, final)  # a missing or empty final folder


def _after_failure(staged: StagedOutput, created: list[Path]) -> None:
    partial = staged.partial
    if _has_checkpoints(partial):
        print(f"note: checkpoints kept in {partial}; continue with --resume_from_checkpoint last", file=sys.stderr)
        return
    if staged.created_partial and read_marker(partial) is not None:
        shutil.rmtree(partial, ignore_errors=True)  # created by this run, holding nothing worth keeping
        for folder in reversed(created[:-1]):  # parents this run created, if still empty
            try:
                folder.rmdir()
            except OSError:
                break


@contextmanager
def recipe_output_dir(training_args):
    """A recipe's output folder: checked before any work, written as `<output_dir>.partial`, moved when complete.

    Inside the block training_args.output_dir is the partial folder (so Trainer, metrics, card and model all go
    there) and the yielded StagedOutput holds the checkpoint to resume from; afterwards it is the final folder.
    """
    from accelerate import PartialState

    from .checkpoints import find_resume_checkpoint, parse_resume

    final = training_args.output_dir
    state = PartialState()
    resume = parse_resume(training_args.resume_from_checkpoint)
    try:
        with staged_output(
            final, overwrite=training_args.overwrite_output_dir, resume=resume, find_checkpoint=find_resume_checkpoint,
            is_writer=training_args.should_save, barrier=state.wait_for_everyone,
        ) as staged:
            training_args.output_dir = str(staged.partial)
            yield staged
    finally:
        training_args.output_dir = final


def run_recipe(main) -> None:
    """Entry point wrapper: bad input becomes one line on stderr and exit status 2, not a traceback; a finished run
    ends with one line saying where the model went, how well it did and how to load it."""
    try:
        trainer = main()
    except HFTransferError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    if trainer is not None and trainer.is_world_process_zero():
        print(run_summary(trainer.args.output_dir, trainer.model.config), flush=True)


def run_summary(output_dir: str, config) -> str:
    """'done: ...' with the saved folder, its test score (source and target for a DA run; the metric the task's
    registry entry names) and a line that loads it."""
    from .tasks import TASKS, task_of

    task = task_of(config)
    metric, words = TASKS.get(task).summary
    folder = Path(output_dir)
    scores = []
    for split, label in (("test", "test"), ("target_test", "target test")):
        path = folder / f"{split}_results.json"
        if path.is_file():
            value = json.loads(path.read_text()).get(f"{split}_{metric}")
            if value is not None:
                scores.append(f"{label} {words} {value:.4f}")
    return (f"done: model saved in {output_dir}" + (f" ({', '.join(scores)})" if scores else "")
            + f"; load it with transformers.pipeline({task!r}, model={output_dir!r})")
