"""The output folder: never a user's file deleted or changed, a failed run leaves the previous output as it was."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, tiny_image_args

from hftransfer.outputs import MARKER, partial_folder, run_recipe


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder, by relative path."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def run(recipe, argv, capsys) -> tuple[int, str]:
    """The recipe as its command line runs it (in-process): exit status and stderr."""
    try:
        run_recipe(lambda: recipe.main(argv))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def user_folder(root: Path) -> Path:
    """A folder of the user's own work: files at the top, in sub-folders, an empty folder and hidden files."""
    root.mkdir(parents=True)
    (root / "notes.txt").write_text("my notes\n")
    (root / "model.safetensors").write_bytes(b"not ours")  # a name this tool also writes
    (root / "data").mkdir()
    (root / "data" / "train.csv").write_text("text,label\nhello,1\n")
    (root / "empty").mkdir()
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_timm_dir):
    """One finished tiny image run (with its checkpoint) that each test copies."""
    from conftest import load_recipe

    out = tmp_path_factory.mktemp("finished") / "run"
    load_recipe("image_cls").main(tiny_image_args(tiny_timm_dir, out))
    return out


def copy_of(run_folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "out"
    shutil.copytree(run_folder, target)
    return target


@pytest.mark.parametrize("extra", [["--overwrite_output_dir", "true"], []], ids=["overwrite", "plain"])
def test_a_folder_of_user_files_is_refused_and_left_as_it_was(image_recipe, tiny_timm_dir, tmp_path, capsys, extra):
    project = user_folder(tmp_path / "project")
    before = snapshot(tmp_path)
    code, err = run(image_recipe, tiny_image_args(tiny_timm_dir, project, *extra), capsys)
    assert code == 2, err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.strip()]
    assert "4 file(s) hftransfer did not write" in err and "'data/train.csv'" in err
    assert snapshot(tmp_path) == before


def test_output_dir_dot_with_overwrite_deletes_nothing(tiny_timm_dir, tmp_path):
    project = user_folder(tmp_path / "project")
    before = snapshot(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "image_cls.py"),
         *tiny_image_args(tiny_timm_dir, ".", "--overwrite_output_dir", "true")],
        capture_output=True, text=True, timeout=300, cwd=project,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


def test_user_folder_survives_a_bad_dataset_with_overwrite(image_recipe, tiny_timm_dir, tmp_path, capsys):
    project = user_folder(tmp_path / "project")
    before = snapshot(tmp_path)
    argv = tiny_image_args(tiny_timm_dir, project, "--overwrite_output_dir", "true", "--dataset", "./no/such/data")
    code, _ = run(image_recipe, argv, capsys)
    assert code == 2
    assert snapshot(tmp_path) == before


def test_finished_run_is_complete_and_marked(finished_run):
    marker = json.loads((finished_run / MARKER).read_text())
    assert marker["status"] == "complete"
    written = {str(p.relative_to(finished_run)) for p in finished_run.rglob("*") if p.is_file() and p.name != MARKER}
    assert set(marker["files"]) == written
    assert {"model.safetensors", "config.json", "test_results.json", "README.md"} <= written
    assert not partial_folder(finished_run).exists()


def test_finished_run_is_not_replaced_without_overwrite(image_recipe, tiny_timm_dir, finished_run, tmp_path, capsys):
    out = copy_of(finished_run, tmp_path)
    before = snapshot(tmp_path)
    code, err = run(image_recipe, tiny_image_args(tiny_timm_dir, out), capsys)
    assert code == 2 and "already holds a finished run" in err
    assert snapshot(tmp_path) == before


def test_failed_overwrite_leaves_the_previous_run_untouched(image_recipe, tiny_timm_dir, finished_run, tmp_path, capsys):
    out = copy_of(finished_run, tmp_path)
    before = snapshot(tmp_path)
    code, _ = run(image_recipe, tiny_image_args(tiny_timm_dir, out, "--overwrite_output_dir", "true",
                                                "--dataset", "./no/such/data"), capsys)
    assert code == 2
    assert snapshot(tmp_path) == before


def test_crash_after_checkpoints_keeps_them_and_the_previous_run(
    image_recipe, tiny_timm_dir, finished_run, tmp_path, capsys, monkeypatch
):
    from hftransfer.trainer import TransferTrainer

    out = copy_of(finished_run, tmp_path)
    before = snapshot(out)
    evaluate = TransferTrainer.evaluate

    def crash_on_test(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        if metric_key_prefix == "test":
            raise RuntimeError("simulated crash after training")
        return evaluate(self, eval_dataset, ignore_keys, metric_key_prefix)

    monkeypatch.setattr(TransferTrainer, "evaluate", crash_on_test)
    with pytest.raises(RuntimeError, match="simulated crash"):
        image_recipe.main(tiny_image_args(tiny_timm_dir, out, "--overwrite_output_dir", "true", "--seed", "1"))
    assert snapshot(out) == before
    partial = partial_folder(out)
    assert any(partial.glob("checkpoint-*/model.safetensors"))
    assert "--resume_from_checkpoint last" in capsys.readouterr().err

    code, err = run(image_recipe, tiny_image_args(tiny_timm_dir, out), capsys)  # neither resume nor overwrite
    assert code == 2 and "interrupted run left checkpoints" in err
    assert snapshot(out) == before


def test_successful_overwrite_replaces_only_the_files_of_the_old_run(image_recipe, tiny_timm_dir, finished_run, tmp_path):
    out = copy_of(finished_run, tmp_path)
    old_model = (out / "model.safetensors").read_bytes()
    (out / "checkpoint-stale-by-hand").mkdir()  # an empty folder is nobody's file: fine to leave or remove
    image_recipe.main(tiny_image_args(tiny_timm_dir, out, "--overwrite_output_dir", "true", "--seed", "1"))
    assert (out / "model.safetensors").read_bytes() != old_model
    assert json.loads((out / MARKER).read_text())["status"] == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no .partial, no .previous left behind


def test_files_dropped_into_a_finished_run_block_its_overwrite(image_recipe, tiny_timm_dir, finished_run, tmp_path, capsys):
    out = copy_of(finished_run, tmp_path)
    (out / "my_analysis.ipynb").write_text("{}")
    before = snapshot(tmp_path)
    code, err = run(image_recipe, tiny_image_args(tiny_timm_dir, out, "--overwrite_output_dir", "true"), capsys)
    assert code == 2 and "'my_analysis.ipynb'" in err
    assert snapshot(tmp_path) == before


def test_resume_last_with_overwrite_resumes_from_the_finished_runs_checkpoint(
    image_recipe, tiny_timm_dir, finished_run, tmp_path
):
    out = copy_of(finished_run, tmp_path)
    (checkpoint,) = out.glob("checkpoint-*")
    steps = int(checkpoint.name.split("-")[1])
    image_recipe.main(tiny_image_args(tiny_timm_dir, out, "--overwrite_output_dir", "true",
                                      "--resume_from_checkpoint", "last", "--num_train_epochs", "2"))
    state = json.loads((out / "trainer_state.json").read_text()) if (out / "trainer_state.json").exists() else None
    checkpoints = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
    assert checkpoints[-1] == 2 * steps, checkpoints  # the second epoch continued from the first one's checkpoint
    train = json.loads((out / "train_results.json").read_text())
    assert train["epoch"] == 2.0
    assert state is None or state["global_step"] == 2 * steps


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return result.returncode == 0


def test_full_disk_leaves_the_previous_run_untouched(image_recipe, tiny_timm_dir, finished_run, tmp_path, capsys):
    disk = tmp_path / "small_disk"
    size = sum(p.stat().st_size for p in finished_run.rglob("*") if p.is_file())
    if not _mount_tmpfs(disk, f"{size * 3 // 2 // 1024}k"):
        pytest.skip("mounting a small tmpfs needs root")
    try:
        out = copy_of(finished_run, disk)  # the old run fills two thirds of the disk: the new one cannot fit
        before = snapshot(out)
        code, err = run(image_recipe, tiny_image_args(tiny_timm_dir, out, "--overwrite_output_dir", "true",
                                                      "--seed", "1"), capsys)
        last = err.strip().splitlines()[-1]  # (in-process, an earlier test's log handler may also complain here)
        assert code == 2 and last.startswith("error: the disk holding") and "is full" in last
        assert snapshot(out) == before
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_replacing_a_run_that_holds_nested_runs_leaves_nothing_behind(tmp_path):
    """hftransfer advise stages its folder and runs recipes into subfolders of it, each staged with its own marker:
    replacing that folder must remove the nested markers too, or the next replacement is refused."""
    from hftransfer.outputs import staged_output

    final = tmp_path / "advice"
    for attempt in range(3):
        with staged_output(final, overwrite=True) as outer:
            with staged_output(outer.partial / "probes" / "0-model") as inner:
                (inner.partial / "config.json").write_text(str(attempt))
            (outer.partial / "advice.json").write_text(str(attempt))
        assert not final.with_name("advice.previous").exists()
    assert (final / "probes" / "0-model" / "config.json").read_text() == "2"


def test_a_parent_folder_created_by_a_concurrent_run_is_shared_not_fatal(tmp_path, monkeypatch):
    """Two runs into sibling folders of a new parent (a benchmark's two jobs): the other run creates the parent
    between this run's check and its mkdir. The run goes on, and a failure of this run leaves the parent, which is not
    its own, in place."""
    from hftransfer.outputs import staged_output

    parent = tmp_path / "runs" / "setting"
    real_mkdir = Path.mkdir

    def other_run_first(self, *args, **kwargs):
        if self == parent and not parent.exists():
            real_mkdir(parent, parents=True)  # what the concurrent run did a moment earlier
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", other_run_first)
    with staged_output(parent / "a") as run_a:
        (run_a.partial / "config.json").write_text("{}")
    assert (parent / "a" / "config.json").is_file()

    shutil.rmtree(tmp_path / "runs")
    with pytest.raises(RuntimeError), staged_output(parent / "b"):
        (parent / "c").mkdir()  # a sibling run's output beside this one
        raise RuntimeError("this run fails")
    assert (parent / "c").is_dir() and not (parent / "b").exists()
