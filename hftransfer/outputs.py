"""The output folder's life: refuse to clobber a finished run, and leave nothing finished-looking after a failure."""

from __future__ import annotations

import shutil
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError, HFTransferError

FINISHED_MARKERS = ("model.safetensors", "adapter_model.safetensors", "test_results.json", "all_results.json")


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


@contextmanager
def recipe_output_dir(training_args):
    """Around a recipe's work: check output_dir up front; on failure, remove an output_dir this run created."""
    out = Path(training_args.output_dir)
    existed = out.exists() and any(out.iterdir())
    if existed and not training_args.overwrite_output_dir and not training_args.resume_from_checkpoint:
        finished = [m for m in FINISHED_MARKERS if (out / m).exists()]
        if finished or any(out.glob("checkpoint-*")):
            raise ConfigError(
                f"output_dir {str(out)!r} already holds a run; choose another --output_dir, pass "
                "--overwrite_output_dir true, or --resume_from_checkpoint last"
            )
    if existed and training_args.overwrite_output_dir and _is_main_process():
        shutil.rmtree(out)
        existed = False
    try:
        yield out
    except BaseException:
        if _is_main_process() and not existed and out.exists() and not any(out.glob("checkpoint-*")):
            shutil.rmtree(out, ignore_errors=True)
        raise


def resolve_resume(training_args) -> str | bool | None:
    """'last' (or 'true') -> newest checkpoint in output_dir, as HF's examples do."""
    value = training_args.resume_from_checkpoint
    if value is None or value.lower() in ("", "false", "none"):
        return None
    if value.lower() in ("last", "true"):
        from transformers.trainer_utils import get_last_checkpoint

        last = get_last_checkpoint(training_args.output_dir) if Path(training_args.output_dir).is_dir() else None
        if last is None:
            raise ConfigError(f"no checkpoint to resume from in {training_args.output_dir!r}; drop --resume_from_checkpoint")
        return last
    if not Path(value).is_dir():
        raise ConfigError(f"checkpoint {value!r} does not exist; pass a checkpoint-N folder or 'last'")
    return value


def run_recipe(main) -> None:
    """Entry point wrapper: bad input becomes one line on stderr and exit status 2, not a traceback."""
    try:
        main()
    except HFTransferError as error:
        message = " ".join(str(error).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
