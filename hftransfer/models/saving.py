"""Save a classifier outside a Trainer in the same format the recipes produce (timm models in timm's Hub layout)."""

from __future__ import annotations

from pathlib import Path

from .timm_layout import fix_timm_config, is_timm_wrapper, timm_state_dict


def save_classifier(model, processor, output_dir: str | Path) -> Path:
    """config.json + model.safetensors (+ processor files): loads with AutoModelFor*.from_pretrained and, for timm
    models, with timm.create_model('hf-hub:...') — what TransferTrainer._save writes."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    state_dict = timm_state_dict(model.state_dict()) if is_timm_wrapper(model) else None
    model.save_pretrained(output_dir, state_dict=state_dict)
    if processor is not None:
        processor.save_pretrained(output_dir)
    if is_timm_wrapper(model):
        fix_timm_config(output_dir)
    return output_dir
