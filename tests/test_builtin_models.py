"""The bundled ImageNet checkpoints carry ImageNet weights after conversion, through every loading path."""

from __future__ import annotations

import pytest

CHINA_TEMPLE = {442, 483, 498, 663, 698, 832}  # bell cote, castle, cinema, monastery, palace, stupa


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite2"])
def test_builtin_efficientnet_names_a_real_photo(name):
    import timm
    import torch
    from PIL import Image
    from sklearn.datasets import load_sample_images
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    from hftransfer.models import resolve_model_source

    folder = resolve_model_source(name)
    photo = Image.fromarray(load_sample_images().images[0])  # scikit-learn's china.jpg: a temple's roofs
    processor = AutoImageProcessor.from_pretrained(folder)
    pixels = processor(photo, return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        through_transformers = AutoModelForImageClassification.from_pretrained(folder).eval()(pixel_values=pixels).logits
        # without pretrained=True timm builds the architecture from config.json and leaves the weights random
        through_timm = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()(pixels)
    top5 = set(through_transformers.topk(5).indices[0].tolist())
    assert top5 & CHINA_TEMPLE, top5
    assert torch.allclose(through_transformers, through_timm, atol=1e-4)
