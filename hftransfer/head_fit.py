"""Start a new head where a converged linear model would: multinomial logistic regression on the frozen backbone's
features, fitted by full-batch L-BFGS before the first optimizer step.

A few-label run takes a handful of optimizer steps, too few for a randomly initialised head to converge (measured in
issue 14: tweets, 10 labels per class, `linear_probe` 0.447 against 0.524 for scikit-learn's logistic regression on
the same features). The fit minimises what scikit-learn's `LogisticRegression(C=c)` minimises,
    sum_i CE(W x_i + b, y_i) + ||W||^2 / (2 c),
so the head starts at least where that baseline ends.
"""

from __future__ import annotations

import torch
from torch import nn

from .models.groups import capture_pooled_features, trained_head

MAX_FIT_EXAMPLES = 20_000  # full-batch L-BFGS on at most this many cached feature rows


def fit_softmax_regression(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, c: float = 1.0,
                           max_iter: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight [K, D], bias [K]) minimising scikit-learn's logistic-regression objective with C=c: multinomial for
    three classes or more; for two, scikit-learn's binary model (one weight vector w, penalised as ||w||^2 / 2c),
    written as the two-class head [-w/2, w/2], whose softmax is that model's sigmoid. (A two-class softmax fitted
    directly would penalise ||w||^2 / 4c: the regularisation of C = 2c.)"""
    if num_classes == 2:
        weight, bias = _fit_logistic(features, labels.long().eq(1).long() * 2 - 1, 1, c=c, max_iter=max_iter)
        return torch.cat([-weight, weight]) / 2, torch.cat([-bias, bias]) / 2
    return _fit_logistic(features, labels, num_classes, c=c, max_iter=max_iter)


def _fit_logistic(features: torch.Tensor, labels: torch.Tensor, num_classes: int, *, c: float,
                     max_iter: int) -> tuple[torch.Tensor, torch.Tensor]:
    """num_classes 1: binary labels as -1 / +1 and one logit per example (the logistic loss); else softmax."""
    x = features.double()
    y = labels.long()
    weight = torch.zeros(num_classes, x.shape[1], dtype=x.dtype, device=x.device, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=x.dtype, device=x.device, requires_grad=True)
    optimizer = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
                                  tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")
    n = x.shape[0]

    def objective():
        optimizer.zero_grad()
        # divided by n: the same minimiser, better scaled for the line search
        logits = x @ weight.T + bias
        if num_classes == 1:
            loss = nn.functional.softplus(-y * logits[:, 0]).sum() / n
        else:
            loss = nn.functional.cross_entropy(logits, y, reduction="sum") / n
        loss = loss + weight.pow(2).sum() / (2 * c * n)
        loss.backward()
        return loss

    optimizer.step(objective)
    return weight.detach(), bias.detach()


@torch.no_grad()
def head_inputs(trainer, max_examples: int = MAX_FIT_EXAMPLES) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of the labelled training examples as the head sees them at test time (inference mode, no
    augmentation: measured on MNIST-5k 10 per class, fitted on augmented views the head scored 0.710, on plain ones
    the logistic-regression floor's 0.764), gathered from every process. Random states are left as they were, so the
    run trains exactly as it would without this."""
    from .data.vision import unaugmented
    from .trainer import _random_state_kept

    model = trainer.model
    was_training = model.training
    model.eval()
    feats, labels = [], []
    seen = 0
    loader = trainer.get_eval_dataloader(trainer.train_dataset)
    try:
        with _random_state_kept(trainer.args.device), unaugmented(trainer.train_dataset):
            for batch in loader:
                batch = trainer._prepare_inputs(batch)
                y = batch.pop("labels")
                with capture_pooled_features(model) as captured, trainer.autocast_smart_context_manager():
                    model(**batch)
                x = captured[0][: y.shape[0]].float()  # rows past the labels: unlabelled target examples
                if y.dim() > 1:  # a label per position: rows gathered whole (same length on every process)...
                    x = trainer.accelerator.pad_across_processes(x, dim=1)
                    y = trainer.accelerator.pad_across_processes(y, dim=1, pad_index=-100)
                    x, y = trainer.accelerator.gather_for_metrics((x, y))
                    x, y = x[y >= 0], y[y >= 0]  # ...then one row per labelled position
                else:
                    x, y = trainer.accelerator.gather_for_metrics((x.flatten(1), y))
                feats.append(x)
                labels.append(y)
                seen += y.shape[0]
                if seen >= max_examples:
                    break
    finally:
        model.train(was_training)
    return torch.cat(feats)[:max_examples], torch.cat(labels)[:max_examples]


def fit_head(trainer, c: float = 1.0) -> dict | None:
    """Set a linear head to the logistic-regression fit on the training features; returns what was done (for the
    record), or None when the head is not a single linear layer (it keeps its initialisation)."""
    head = trained_head(trainer.accelerator.unwrap_model(trainer.model))
    if not isinstance(head, nn.Linear):
        return None
    features, labels = head_inputs(trainer)
    labelled = labels >= 0
    features, labels = features[labelled], labels[labelled]
    weight, bias = fit_softmax_regression(features, labels, head.out_features, c=c)
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        if head.bias is not None:
            head.bias.copy_(bias.to(head.bias.dtype))
    if trainer.args.world_size > 1:  # identical fits on identical gathered rows; rank 0's copy makes it exact
        for p in head.parameters():
            torch.distributed.broadcast(p.data, src=0)
    accuracy = float(((features.to(weight) @ weight.T + bias).argmax(1) == labels).float().mean())
    return {"examples": int(labels.shape[0]), "c": c, "train_accuracy": round(accuracy, 4)}
