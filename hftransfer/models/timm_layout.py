"""timm checkpoints inside transformers' TimmWrapper, saved in timm's own Hub layout so both libraries load them."""

from __future__ import annotations

import json
from pathlib import Path

TIMM_PREFIX = "timm_model."


def is_timm_wrapper(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "timm_wrapper"


def set_timm_input_size(model, image_size: int) -> None:
    cfg = dict(model.config.pretrained_cfg)
    if cfg.get("fixed_input_size") and tuple(cfg["input_size"][1:]) != (image_size, image_size):
        from ..errors import ModelLoadError

        raise ModelLoadError(
            f"{model.config.architecture} has a fixed input size {tuple(cfg['input_size'][1:])}; drop --image_size"
        )
    cfg["input_size"] = [3, image_size, image_size]
    model.config.pretrained_cfg = cfg


def timm_image_processor(config):
    from transformers import TimmWrapperImageProcessor

    return TimmWrapperImageProcessor(pretrained_cfg=config.pretrained_cfg)


def timm_state_dict(state_dict: dict) -> dict:
    """Drop TimmWrapper's attribute prefix: timm loads plain keys, and transformers adds the prefix back on load."""
    return {k.removeprefix(TIMM_PREFIX): v for k, v in state_dict.items()}


def fix_timm_config(output_dir: str | Path) -> None:
    """Make config.json loadable by timm.create_model('hf-hub:...') as well as AutoModel.

    TimmWrapperConfig writes `model_args: null`, which timm cannot read, and keeps the pretrained head's class count.
    """
    path = Path(output_dir) / "config.json"
    config = json.loads(path.read_text())
    if config.get("model_args") is None:
        config.pop("model_args", None)
    config.setdefault("pretrained_cfg", {})["num_classes"] = config["num_classes"]
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
