"""`--pooling checkpoint`: a sentence-transformers checkpoint's mean pooling built into the classifier as one more
encoder layer, so that the exported model is still a plain `BertForSequenceClassification` (loads in `pipeline()`
with no custom code) while its head reads the pooling the checkpoint was trained with instead of the [CLS] token.

The added layer's queries and keys are zero, so every position attends evenly to the attended tokens (padding
masked) and, with identity values, reads their mean. The output projection scales that mean by POOL_SCALE, so the
position's own state (the residual) is a 1/POOL_SCALE part of the sum, and LayerNorm (weight 1, bias 0) turns it into
LayerNorm(mean); the feed-forward block adds nothing. The [CLS] state the pooler reads is then the layer-normalised
mean of the token states (cosine 0.9999999 on MiniLM; tests/test_pooling_layer.py). Being LayerNorm'd, it is the same
for a mean scaled by sqrt(length) (sentence-transformers' mean_sqrt_len). In training the layer keeps BERT's dropout:
tokens dropped from the mean and dimensions from the result, a dropout on the pooled features; evaluation is exact.

The pooler (dense + tanh) that the head reads was never trained by the sentence objective: sentence-transformers does
not use it (all-MiniLM-L6-v2's bias is still exactly zero, as initialised, and its weights, of std 0.009 against
BERT's initial 0.02, have singular values from 0.35 down to 0.0001: a lossy random projection). So the layer also
sets it to pass the pooled embedding through at unit norm, as a checkpoint's Normalize module would: dense = I /
sqrt(d) and no bias, and LayerNorm's output (weight 1, bias 0) has norm sqrt(d), so tanh reads a unit vector, where
it is nearly linear.
Measured (MiniLM, 2,000 tweets, seeds 0-2; benchmarks/few_label.py's tweets-2000 row): logistic regression on the
frozen features a new head reads 0.719 with the layer and the unit-norm pass-through, 0.703 with the layer and the
checkpoint's pooler, 0.673 on the [CLS] pooler, 0.699 on the sentence-transformers mean; `full` fine-tuning 0.752,
0.751 and 0.739 respectively.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import ModelLoadError

POOL_SCALE = 1000.0  # the residual's share is 1/1000; token states up to ~65 stay inside fp16's range
MEAN_POOLING_FAMILIES = ("bert",)  # post-LayerNorm layers with query/key/value, output and feed-forward as BertLayer


def append_mean_pooling_layer(model: nn.Module) -> None:
    """One encoder layer more on top of `model`'s (a BERT-family classifier), whose [CLS] output is
    LayerNorm(mean of the previous layer's attended token states); config.num_hidden_layers follows."""
    if model.config.model_type not in MEAN_POOLING_FAMILIES:
        raise ModelLoadError(f"--pooling checkpoint builds mean pooling into {'/'.join(MEAN_POOLING_FAMILIES)} models "
                             f"only, and this is a {model.config.model_type!r} model; drop --pooling")
    layers = model.base_model.encoder.layer
    layer = copy.deepcopy(layers[-1])
    hidden = model.config.hidden_size
    with torch.no_grad():
        attention = layer.attention
        for linear in (attention.self.query, attention.self.key):
            linear.weight.zero_()
            linear.bias.zero_()
        attention.self.value.weight.copy_(torch.eye(hidden))
        attention.self.value.bias.zero_()
        attention.output.dense.weight.copy_(POOL_SCALE * torch.eye(hidden))
        attention.output.dense.bias.zero_()
        layer.output.dense.weight.zero_()
        layer.output.dense.bias.zero_()
        for norm in (attention.output.LayerNorm, layer.output.LayerNorm):
            norm.weight.fill_(1.0)
            norm.bias.zero_()
    layers.append(layer)
    pooler = getattr(model.base_model, "pooler", None)
    if pooler is not None:
        with torch.no_grad():
            pooler.dense.weight.copy_(torch.eye(hidden) / hidden**0.5)
            pooler.dense.bias.zero_()
    model.config.num_hidden_layers = len(layers)
    model.config.hftransfer_pooling_layer = len(layers) - 1  # saved in config.json: the card and a reader can tell


def build_checkpoint_pooling(model: nn.Module, source: str, required: bool = True) -> None:
    """The checkpoint's sentence-transformers pooling, where a layer can express it. `required` (`--pooling
    checkpoint`): anything else is a load error; otherwise (`--pooling auto`) the model keeps its own head."""
    from .groups import _saved_pooling

    mode = _saved_pooling(source)
    if mode == "mean" and (required or model.config.model_type in MEAN_POOLING_FAMILIES):
        append_mean_pooling_layer(model)
    elif not required or mode == "cls":  # 'cls': the head already reads the [CLS] token
        return
    elif mode == "head":
        raise ModelLoadError("--pooling checkpoint reads a sentence-transformers pooling config (modules.json), and "
                             "this model has none; drop --pooling")
    else:
        raise ModelLoadError(f"--pooling checkpoint: the checkpoint pools by {mode!r}, which no encoder layer "
                             "expresses (mean and cls only); drop --pooling")
