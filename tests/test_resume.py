"""Resume: --resume_from_checkpoint parsing, choosing the newest complete checkpoint, and kill-and-resume.

The kill-and-resume tests run a recipe's real command line in a child process, SIGKILL it once a checkpoint past the
chosen step is complete, rerun the same command with `--resume_from_checkpoint last`, and require the final weights
(every tensor, bitwise), the strategy record, the card's strategy and the logged losses to equal an uninterrupted
run's. Best-model selection is off, so the final weights are the last step's: a resume that trained differently
cannot pass. The default run keeps a representative subset; `-m slow` runs the whole matrix.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import RECIPES, load_recipe, tiny_image_args, write_text_stream
from hftransfer.checkpoints import (
    MANIFEST, checkpoint_is_complete, find_resume_checkpoint, parse_resume, write_checkpoint_manifest,
)
from hftransfer.errors import ConfigError

# ---------------------------------------------------------------- --resume_from_checkpoint values


@pytest.mark.parametrize("value, expected", [
    (None, None), (False, None), ("false", None), ("False", None), ("no", None), ("0", None), ("none", None),
    ("", None), (" ", None), (0, None),
    (True, "last"), ("true", "last"), ("YES", "last"), ("1", "last"), ("last", "last"), (1, "last"),
    ("out/checkpoint-4", "out/checkpoint-4"), (Path("out/checkpoint-4"), "out/checkpoint-4"),
])
def test_parse_resume(value, expected):
    assert parse_resume(value) == expected


@pytest.mark.parametrize("value", [2.5, ["last"], {"path": "x"}, 7])
def test_parse_resume_rejects_odd_values_in_one_line(value):
    with pytest.raises(ConfigError, match="resume_from_checkpoint") as error:
        parse_resume(value)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("yaml_value, expected", [("false", None), ("no", None), ("true", "last"), ("last", "last"),
                                                   ("''", None), ("null", None)])
def test_yaml_resume_value_goes_through_the_recipe_parser(tmp_path, yaml_value, expected):
    """YAML `resume_from_checkpoint: false` reaches the training arguments as a bool (it crashed on .lower())."""
    from hftransfer.arguments import ImageDataArguments, ModelArguments
    from hftransfer.config import parse_recipe_args
    from hftransfer.training_args import TransferTrainingArguments

    config = tmp_path / "run.yaml"
    config.write_text(f"resume_from_checkpoint: {yaml_value}\n")
    *_, training_args = parse_recipe_args(
        (ModelArguments, ImageDataArguments, TransferTrainingArguments), {"output_dir": str(tmp_path / "out")},
        ["--config", str(config)],
    )
    assert parse_resume(training_args.resume_from_checkpoint) == expected


# ---------------------------------------------------------------- choosing a checkpoint


@pytest.fixture(scope="module")
def tiny_checkpoints(tiny_timm_dir, tmp_path_factory):
    """A tiny in-process run with a checkpoint after each of its 4 steps; tests copy the folder."""
    from test_strategies import make_trainer

    out = tmp_path_factory.mktemp("checkpoints") / "run"
    trainer = make_trainer(tiny_timm_dir, out, "gradual", unfreeze_unit="step", unfreeze_every=2)
    trainer.args.max_steps = 4
    trainer.args.save_strategy = "steps"
    trainer.args.save_steps = 1
    trainer.args.save_total_limit = 10
    trainer.train()
    return out


def copy_run(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def test_every_checkpoint_is_complete_with_a_manifest_listing_its_files(tiny_checkpoints):
    folders = sorted(tiny_checkpoints.glob("checkpoint-*"))
    assert [f.name for f in folders] == [f"checkpoint-{n}" for n in range(1, 5)]
    for folder in folders:
        assert checkpoint_is_complete(folder)
        listed = json.loads((folder / MANIFEST).read_text())["files"]
        assert {"trainer_state.json", "optimizer.pt", "model.safetensors", "rng_state.pth",
                "hftransfer_state.json"} <= set(listed)
        assert set(listed) == {p.name for p in folder.iterdir() if p.name != MANIFEST}


def test_last_skips_truncated_and_unfinished_checkpoints(tiny_checkpoints, tiny_timm_dir, tmp_path, capfd):
    run = copy_run(tiny_checkpoints, tmp_path / "run")
    optimizer = run / "checkpoint-4" / "optimizer.pt"  # disk full while saving: a truncated file
    optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
    (run / "checkpoint-3" / "trainer_state.json").unlink()  # killed before the trainer state was written
    (run / "checkpoint-3" / MANIFEST).unlink()

    chosen = find_resume_checkpoint("last", [tmp_path / "absent.partial", run])
    assert Path(chosen) == run / "checkpoint-2"
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint-4" in err[0] and "checkpoint-3" in err[0] and "truncated" in err[0]

    for bad in ("checkpoint-4", "checkpoint-3"):  # named explicitly: a one-line error, not a traceback
        with pytest.raises(ConfigError, match="incomplete") as error:
            find_resume_checkpoint(str(run / bad), [run])
        assert "\n" not in str(error.value)

    from test_strategies import make_trainer  # the chosen checkpoint resumes

    trainer = make_trainer(tiny_timm_dir, run, "gradual", unfreeze_unit="step", unfreeze_every=2)
    trainer.args.max_steps = 4
    trainer.train(resume_from_checkpoint=chosen)
    assert trainer.state.global_step == 4


def test_last_with_only_incomplete_or_no_checkpoints_is_a_one_line_error(tiny_checkpoints, tmp_path):
    run = copy_run(tiny_checkpoints, tmp_path / "run")
    for folder in run.glob("checkpoint-*"):
        (folder / MANIFEST).unlink()
    with pytest.raises(ConfigError, match="no complete checkpoint") as error:
        find_resume_checkpoint("last", [run])
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match="no checkpoint to resume from"):
        find_resume_checkpoint("last", [tmp_path / "empty.partial", tmp_path / "empty"])
    with pytest.raises(ConfigError, match="does not exist"):
        find_resume_checkpoint(str(tmp_path / "nowhere"), [run])
    assert find_resume_checkpoint(None, [run]) is None


def test_the_first_folder_with_checkpoints_wins(tiny_checkpoints, tmp_path):
    """The staging folder's checkpoints (an interrupted run) come before a finished run's in output_dir."""
    partial = copy_run(tiny_checkpoints, tmp_path / "out.partial")
    final = copy_run(tiny_checkpoints, tmp_path / "out")
    for n in (3, 4):
        (partial / f"checkpoint-{n}" / MANIFEST).unlink()
    assert Path(find_resume_checkpoint("last", [partial, final])) == partial / "checkpoint-2"


def test_plain_transformers_checkpoint_given_explicitly(tiny_checkpoints, tmp_path):
    run = copy_run(tiny_checkpoints, tmp_path / "run")
    plain = run / "checkpoint-2"
    (plain / MANIFEST).unlink()  # as plain transformers writes it
    assert find_resume_checkpoint(str(plain), [run]) == str(plain)
    (plain / "model.safetensors").unlink()
    with pytest.raises(ConfigError, match="no model weights"):
        find_resume_checkpoint(str(plain), [run])
    (run / "checkpoint-1" / MANIFEST).unlink()
    (run / "checkpoint-1" / "trainer_state.json").unlink()
    with pytest.raises(ConfigError, match="trainer_state.json"):
        find_resume_checkpoint(str(run / "checkpoint-1"), [run])


def test_manifest_records_sizes(tmp_path):
    folder = tmp_path / "checkpoint-7"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"x" * 10)
    (folder / "sub" / "b.json").write_text("{}")
    write_checkpoint_manifest(folder)
    assert json.loads((folder / MANIFEST).read_text())["files"] == {"a.bin": 10, "sub/b.json": 2}
    assert checkpoint_is_complete(folder)
    (folder / "a.bin").write_bytes(b"x" * 9)
    assert not checkpoint_is_complete(folder)


def test_checkpoint_is_complete_with_this_tools_files_before_older_ones_are_rotated(tiny_timm_dir, tmp_path,
                                                                                     monkeypatch):
    """Rotation (save_total_limit) runs only once the new checkpoint holds this tool's files and its manifest: a
    kill or a full disk mid-save can never leave only a checkpoint that lacks them."""
    import transformers.trainer
    import transformers.trainer_utils

    from test_strategies import make_trainer

    seen = []
    original = transformers.trainer_utils.rotate_checkpoints

    def recording_rotate(output_dir, *args, **kwargs):
        if not kwargs.get("save_total_limit", args[0] if args else None):
            return original(output_dir, *args, **kwargs)  # deletes nothing
        newest = max(Path(output_dir).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
        seen.append((newest.name, checkpoint_is_complete(newest), (newest / "hftransfer_state.json").is_file()))
        return original(output_dir, *args, **kwargs)

    monkeypatch.setattr(transformers.trainer_utils, "rotate_checkpoints", recording_rotate)
    monkeypatch.setattr(transformers.trainer, "rotate_checkpoints", recording_rotate)
    trainer = make_trainer(tiny_timm_dir, tmp_path / "run", "gradual", unfreeze_unit="step", unfreeze_every=2)
    trainer.args.save_strategy, trainer.args.save_steps, trainer.args.save_total_limit = "steps", 2, 1
    trainer.train()
    assert seen and all(complete and own for _, complete, own in seen), seen
    (kept,) = (tmp_path / "run").glob("checkpoint-*")
    assert kept.name == "checkpoint-6" and checkpoint_is_complete(kept)
    state = json.loads((kept / "hftransfer_state.json").read_text())
    assert [p["start_step"] for p in state["strategy"]["phases"]] == [0, 2, 4]


# ---------------------------------------------------------------- resumed state: strategy phases, loss terms


def test_resume_restores_the_strategy_phases_before_the_checkpoint(tiny_timm_dir, tmp_path):
    from test_strategies import StopAt, make_trainer, snapshot

    def run(out, callbacks=(), resume=None):
        trainer = make_trainer(tiny_timm_dir, out, "gradual", callbacks=callbacks, unfreeze_unit="step",
                               unfreeze_every=2)
        trainer.args.save_strategy, trainer.args.save_steps, trainer.args.logging_steps = "steps", 4, 1
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    uninterrupted = run(tmp_path / "a")
    run(tmp_path / "b", callbacks=[StopAt(4)])
    resumed = run(tmp_path / "c", resume=str(tmp_path / "b" / "checkpoint-4"))
    expected, actual = snapshot(uninterrupted.model), snapshot(resumed.model)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    assert resumed.strategy.phases == uninterrupted.strategy.phases  # [0, 2, 4], not just the resumed one
    assert [p.start_step for p in resumed.strategy.phases] == [0, 2, 4]


# ---------------------------------------------------------------- augmentation keyed to (seed, epoch, row)


def test_augmentation_follows_seed_epoch_and_row_not_workers_batches_or_the_global_random_state(tiny_timm_dir):
    import random

    from torch.utils.data import DataLoader
    from transformers import default_data_collator

    from hftransfer.data import PairedDataset, load_classification_data, prepare_image_splits
    from hftransfer.data.vision import set_augmentation_epoch
    from hftransfer.models import load_classifier

    data = load_classification_data("digits", "image", max_train_samples=24, max_eval_samples=8)
    processor = load_classifier(str(tiny_timm_dir), data.label_names, "image", image_size=32).processor
    train = prepare_image_splits(data, processor, hflip=0.5, crop_scale_min=0.2, verify=False)["train"]

    def pixels(loader) -> torch.Tensor:
        return torch.cat([batch["pixel_values"] for batch in loader])

    set_augmentation_epoch(train, seed=7, epoch=0)
    epoch0 = pixels(DataLoader(train, batch_size=8, collate_fn=default_data_collator))
    states = torch.get_rng_state(), random.getstate()
    assert torch.equal(train[[5, 2]]["pixel_values"][0], epoch0[5])  # whatever batch fetches the row
    assert torch.equal(states[0], torch.get_rng_state()) and states[1] == random.getstate()  # global state untouched
    set_augmentation_epoch(train, seed=7, epoch=1)
    epoch1 = pixels(DataLoader(train, batch_size=8, collate_fn=default_data_collator))
    assert not torch.equal(epoch0, epoch1)  # each epoch augments afresh

    # two persistent loader workers see the epoch the trainer sets between epochs, and augment as the main process
    loader = DataLoader(train, batch_size=8, collate_fn=default_data_collator, num_workers=2, persistent_workers=True)
    set_augmentation_epoch(train, seed=7, epoch=0)
    assert torch.equal(pixels(loader), epoch0)
    set_augmentation_epoch(train, seed=7, epoch=1)
    assert torch.equal(pixels(loader), epoch1)

    # paired domain adaptation: a source row the shorter side repeats within an epoch is augmented afresh
    paired = PairedDataset(train.select(range(4)), train, seed=0)
    paired.set_augmentation_epoch(7, 0)
    items = paired.__getitems__(list(range(8)))
    assert torch.equal(items[0]["source"]["pixel_values"], paired.__getitems__([0])[0]["source"]["pixel_values"])
    assert not torch.equal(items[0]["source"]["pixel_values"], items[4]["source"]["pixel_values"])  # both row 0


# ---------------------------------------------------------------- kill and resume

STEPS_PER_EPOCH, EPOCHS = 3, 3  # 48 examples in batches of 16
SAVE_STEPS = 2  # checkpoints 2, 4 (mid-epoch), 6 (an epoch boundary), 8 (mid-epoch), 9 (the end)
KILLS = {"mid_epoch": (2, {2, 4}), "epoch_boundary": (6, {6})}  # kill once this one is complete; resumable from

COMMON = [
    "--max_train_samples", "48", "--max_eval_samples", "32", "--num_train_epochs", str(EPOCHS),
    "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32", "--dataloader_num_workers", "0",
    "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", str(SAVE_STEPS), "--save_total_limit", "100",
    "--load_best_model_at_end", "false", "--report_to", "none", "--disable_tqdm", "true", "--learning_rate", "3e-3",
    "--min_train_steps", "0",
]
STRATEGY_OPTIONS = {
    "full": ["--strategy", "full"],
    "gradual": ["--strategy", "gradual", "--unfreeze_unit", "step", "--unfreeze_every", "2"],
    "lp_ft": ["--strategy", "lp_ft", "--lp_epochs", "0.5"],  # probing steps 0-1, fine-tuning from step 2
    "lora": ["--strategy", "lora", "--lora_r", "4"],
}
TEXT_STREAM = "<a folder of parquet files, written by the models fixture>"
DA_METHODS = ["dann", "cdan", "mmd", "coral", "mcc", "instance_weighting", "source_only"]
CASES = {
    **{f"image-{s}": ("image_cls", ["--dataset", "digits", "--image_size", "32", *o])
       for s, o in STRATEGY_OPTIONS.items()},
    **{f"text-{s}": ("text_cls", ["--dataset", "tweets", "--max_length", "32", *o])
       for s, o in STRATEGY_OPTIONS.items()},
    **{f"da-{m}": ("domain_adapt", ["--source", "digits", "--target", "mnist5k", "--image_size", "32", "--method", m])
       for m in DA_METHODS},
    # a stream has no epochs: its 3 passes of 3 batches are one endless one, resumed by skipping the batches trained
    "text-stream": ("text_cls", ["--dataset", TEXT_STREAM, "--streaming", "--max_steps", str(STEPS_PER_EPOCH * EPOCHS),
                                 "--class_names", "neg,pos", "--max_length", "32"]),
}
DEFAULT_SUBSET = {("image-full", "mid_epoch"), ("da-dann", "mid_epoch")}
CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
             "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def recipe_command(case: str, models: dict, out: Path) -> list[str]:
    recipe, options = CASES[case]
    options = [str(models["text_stream"]) if option == TEXT_STREAM else option for option in options]
    model = models["text" if recipe == "text_cls" else "image"]
    return [sys.executable, str(RECIPES / f"{recipe}.py"), "--model", str(model), *COMMON, *options,
            "--output_dir", str(out)]


def run_to_end(command: list[str], log: Path) -> str:
    with open(log, "w") as file:
        result = subprocess.run(command, stdout=file, stderr=subprocess.STDOUT, env=CHILD_ENV, cwd=log.parent,
                                timeout=900)
    output = log.read_text()
    assert result.returncode == 0, output[-4000:]
    return output


def checkpoint_folders(out: Path) -> list[Path]:
    """Checkpoints in the output folder and in its `.partial` staging folder, wherever the recipe keeps them."""
    return [*out.glob("checkpoint-*"), *Path(f"{out}.partial").glob("checkpoint-*")]


def step_of(folder: Path) -> int:
    return int(folder.name.split("-")[1])


def run_and_kill(command: list[str], out: Path, log: Path, past_step: int) -> None:
    """Start the recipe, SIGKILL it as soon as a checkpoint at or past `past_step` is complete.

    The child runs in slices of a few milliseconds and is stopped (SIGSTOP) while the filesystem is checked, so it
    cannot race far past the chosen checkpoint however busy the machine is.
    """
    def done() -> bool:
        return any(step_of(f) >= past_step and checkpoint_is_complete(f) for f in checkpoint_folders(out))

    with open(log, "w") as file:
        child = subprocess.Popen(command, stdout=file, stderr=subprocess.STDOUT, env=CHILD_ENV, cwd=log.parent)
        deadline = time.monotonic() + 900
        try:
            while True:
                os.kill(child.pid, signal.SIGSTOP)
                _, status = os.waitpid(child.pid, os.WUNTRACED)
                assert os.WIFSTOPPED(status), f"the run ended before it could be killed:\n{log.read_text()[-3000:]}"
                if done():
                    break
                assert time.monotonic() < deadline, "no checkpoint in time"
                os.kill(child.pid, signal.SIGCONT)
                time.sleep(0.005)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            if child.poll() is None:
                child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL


def final_checkpoint_log(out: Path) -> list[dict]:
    """The training log of the last checkpoint (restored and continued by a resumed run)."""
    last = max(checkpoint_folders(out), key=step_of)
    assert step_of(last) == STEPS_PER_EPOCH * EPOCHS
    history = json.loads((last / "trainer_state.json").read_text())["log_history"]
    return [{k: v for k, v in entry.items() if k.startswith("loss") or k in ("step", "learning_rate", "grad_norm")}
            for entry in history if "loss" in entry]


def load_weights(file: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(file)


@pytest.fixture(scope="module")
def models(tiny_timm_dir, tiny_bert_dir, tmp_path_factory) -> dict:
    stream = write_text_stream(tmp_path_factory.mktemp("stream") / "texts", files=4)
    return {"image": tiny_timm_dir, "text": tiny_bert_dir, "text_stream": stream}


@pytest.fixture(scope="module")
def uninterrupted(models, tmp_path_factory):
    """One uninterrupted run per case, shared by its kill points."""
    runs: dict[str, Path] = {}

    def get(case: str) -> Path:
        if case not in runs:
            work = tmp_path_factory.mktemp(f"reference-{case}")
            run_to_end(recipe_command(case, models, work / "out"), work / "log.txt")
            runs[case] = work / "out"
        return runs[case]

    return get


@pytest.mark.parametrize("case, kill", [
    pytest.param(case, kill, marks=() if (case, kill) in DEFAULT_SUBSET else pytest.mark.slow, id=f"{case}-{kill}")
    for case in CASES for kill in KILLS
])
def test_killed_run_resumes_bitwise(case, kill, models, uninterrupted, tmp_path):
    reference = uninterrupted(case)
    out = tmp_path / "out"
    command = recipe_command(case, models, out)
    past_step, resumable = KILLS[kill]
    run_and_kill(command, out, tmp_path / "killed.txt", past_step)
    resume_from = find_resume_checkpoint("last", [Path(f"{out}.partial"), out])
    resumed_step = step_of(Path(resume_from))
    assert resumed_step in resumable, f"killed too late: resuming from step {resumed_step}"
    assert (resumed_step % STEPS_PER_EPOCH == 0) == (kill == "epoch_boundary")

    output = run_to_end([*command, "--resume_from_checkpoint", "last"], tmp_path / "resumed.txt")
    trained = sum(line.startswith("{'loss'") for line in output.splitlines())
    assert trained == STEPS_PER_EPOCH * EPOCHS - resumed_step, output[-3000:]  # it resumed, not restarted

    weights = ["model.safetensors"] + (["adapter/adapter_model.safetensors"] if case.endswith("lora") else [])
    for name in weights:
        expected, actual = load_weights(reference / name), load_weights(out / name)
        assert expected.keys() == actual.keys()
        differing = [k for k in expected if not torch.equal(expected[k], actual[k])]
        assert not differing, f"{name}: {len(differing)} of {len(expected)} tensors differ: {differing[:5]}"
    assert json.loads((out / "transfer_strategy.json").read_text()) == json.loads(
        (reference / "transfer_strategy.json").read_text())
    card = [json.loads((folder / "card_inputs.json").read_text())["strategy"] for folder in (reference, out)]
    assert card[0] == card[1]
    # every logged loss term, including the first ones after the resume, as the uninterrupted run logged them
    assert final_checkpoint_log(out) == final_checkpoint_log(reference)


# ---------------------------------------------------------------- resume values on a finished run


@pytest.fixture(scope="module")
def finished_image_run(uninterrupted) -> Path:
    return uninterrupted("image-full")


@pytest.mark.parametrize("flag", [["--resume_from_checkpoint", "false"], ["--resume_from_checkpoint", "no"]])
def test_resume_false_does_not_train_over_a_finished_run(finished_image_run, models, flag):
    recipe = load_recipe("image_cls")
    before = (finished_image_run / "model.safetensors").read_bytes()
    with pytest.raises(ConfigError, match="already holds"):
        recipe.main(tiny_image_args(models["image"], finished_image_run, *flag))
    assert (finished_image_run / "model.safetensors").read_bytes() == before


def test_yaml_resume_false_does_not_crash_or_train_over_a_finished_run(finished_image_run, models, tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("resume_from_checkpoint: false\n")
    recipe = load_recipe("image_cls")
    with pytest.raises(ConfigError, match="already holds"):
        recipe.main(["--config", str(config), *tiny_image_args(models["image"], finished_image_run)])


def test_missing_loss_component_state_is_a_one_line_error(uninterrupted, models, tmp_path):
    """A DA checkpoint without loss_components.safetensors (given explicitly, as plain transformers would write
    it) would silently restart the discriminator: a ConfigError instead."""
    import shutil

    source = min((f for f in checkpoint_folders(uninterrupted("da-dann")) if step_of(f) == 4), key=str)
    checkpoint = tmp_path / "checkpoint-4"
    shutil.copytree(source, checkpoint)
    (checkpoint / "loss_components.safetensors").unlink()
    (checkpoint / MANIFEST).unlink()
    recipe = load_recipe("domain_adapt")
    command = recipe_command("da-dann", models, tmp_path / "out")
    with pytest.raises(ConfigError, match="loss_components.safetensors") as error:
        recipe.main([*command[2:], "--resume_from_checkpoint", str(checkpoint)])
    assert "\n" not in str(error.value)
