"""The shipped Accelerate config files (GPU machines): each parses with Accelerate's own loader and is headed by its
launch command. On CPU, `accelerate launch` runs one process whatever the file says (its CPU multi-process path is
MPI); CPU DDP goes through torchrun, tested in test_recipes.py and test_loss_scaling.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO

CONFIGS = sorted((REPO / "accelerate_configs").glob("*.yaml"))


def test_the_configs_are_shipped():
    names = {c.stem for c in CONFIGS}
    assert {"single_gpu_bf16", "multi_gpu_ddp_bf16", "multi_node_ddp_bf16", "fsdp_full_shard_bf16",
            "deepspeed_zero2_bf16", "deepspeed_zero3_bf16"} <= names


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.stem)
def test_each_config_parses_and_starts_with_its_launch_command(config: Path):
    from accelerate.commands.config.config_args import load_config_from_file

    parsed = load_config_from_file(str(config))
    first = next(line for line in config.read_text().splitlines() if line.startswith("#") and "accelerate launch" in line)
    assert f"--config_file accelerate_configs/{config.name}" in first
    assert parsed.num_processes >= 1 and parsed.mixed_precision in ("no", "bf16", "fp16")
    if parsed.distributed_type.value == "FSDP":
        assert parsed.fsdp_config["fsdp_version"] == 2
        assert parsed.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # save_pretrained writes whole weights
    if parsed.distributed_type.value == "DEEPSPEED":
        assert parsed.deepspeed_config["zero_stage"] in (2, 3)


def test_a_sharded_run_without_a_gpu_is_refused_before_anything_is_written(tiny_timm_dir, tmp_path):
    """Accelerate sets FSDP up for multi-GPU runs only: launched with the shipped FSDP config on a CPU-only machine,
    the recipe used to train plain DDP copies and finish as if sharded (DeepSpeed ended in a transformers
    traceback). Each process now says why in one line, before any loading, and writes nothing."""
    import os
    import subprocess
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU machine runs FSDP")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    recipe = [str(REPO / "recipes" / "image_cls.py"), "--model", str(tiny_timm_dir), "--output_dir", str(out),
              "--max_steps", "1"]
    launched = subprocess.run(["accelerate", "launch", "--config_file", str(REPO / "accelerate_configs" / "fsdp_full_shard_bf16.yaml"),
                               "--num_processes", "2", *recipe], capture_output=True, text=True, env=env, timeout=600)
    errors = [line for line in launched.stderr.splitlines() if line.startswith("error: ")]
    assert launched.returncode != 0 and len(errors) == 2, launched.stderr[-2000:]
    assert all(line.startswith("error: FSDP was asked for") and "no GPU" in line for line in errors)
    for flag in (["--fsdp", "full_shard"], ["--deepspeed", str(tmp_path / "ds.json")]):
        run = subprocess.run([sys.executable, *recipe, *flag], capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 2 and run.stderr.strip().startswith("error: ") and len(run.stderr.strip().splitlines()) == 1, run.stderr[-2000:]
    assert not out.exists() and not Path(f"{out}.partial").exists()
