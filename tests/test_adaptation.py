"""Domain-adaptation and regularizer loss components (hftransfer.adaptation)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hftransfer.adaptation import (
    LOSS_COMPONENTS,
    AdaptationContext,
    GradientReversal,
    build_component,
    clipped_unit_mean_weights,
    coral,
    dann_coefficient,
    grad_reverse,
    mmd,
)
from hftransfer.errors import ConfigError

IN_DIM, FEAT_DIM, NUM_CLASSES = 6, 8, 3


def value(t: torch.Tensor) -> float:
    return float(t.detach())


class TinyModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = nn.Linear(IN_DIM, FEAT_DIM)
        self.classifier = nn.Linear(FEAT_DIM, NUM_CLASSES)

    def forward(self, x):
        features = torch.relu(self.backbone(x))
        return features, self.classifier(features)


def make_context(model, progress=0.5, bs=16, bt=12, seed=0, with_target=True):
    g = torch.Generator().manual_seed(seed)
    xs = torch.randn(bs, IN_DIM, generator=g)
    xt = torch.randn(bt, IN_DIM, generator=g) + 0.5
    features, logits = model(torch.cat([xs, xt]))  # one forward over both domains
    features.retain_grad()
    logits.retain_grad()
    return AdaptationContext(
        features_source=features[:bs], features_target=features[bs:] if with_target else None,
        logits_source=logits[:bs], logits_target=logits[bs:] if with_target else None,
        labels_source=torch.randint(0, NUM_CLASSES, (bs,), generator=g),
        progress=progress, model=model,
    ), features, logits


# ---------------------------------------------------------------- standalone math


def test_mmd_near_zero_for_same_distribution_and_grows_with_shift():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 8, generator=g)
    values = []
    for shift in (0.0, 0.5, 1.0, 2.0):
        y = torch.randn(128, 8, generator=g) + shift
        values.append(float(mmd(x, y)))
    assert abs(values[0]) < 0.02
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[-1] > 0.3
    y = torch.randn(128, 8, generator=g)
    assert abs(float(mmd(x, y, unbiased=True))) < 0.01
    assert float(mmd(x, x + 1.0, unbiased=True)) > 0.1


def test_mmd_explicit_bandwidth_matches_hand_computation():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    y = torch.tensor([[0.0, 2.0]])
    k = lambda d2: math.exp(-d2 / 2.0)  # sigma2 = 1, multiplier 1
    expected = (2 * k(0) + 2 * k(1)) / 4 + k(0) - 2 * (k(4) + k(5)) / 2
    assert float(mmd(x, y, multipliers=[1.0], sigma2=1.0)) == pytest.approx(expected, abs=1e-6)


def test_coral_zero_for_equal_covariance_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 5, generator=g)
    assert torch.allclose(coral(x, x + 3.0), torch.tensor(0.0), atol=1e-6)
    scale = torch.tensor([1.0, 2.0, 0.5, 1.0, 3.0])
    assert float(coral(x, torch.randn(64, 5, generator=g) * scale)) > 0.01
    # formula check: ||C_s - C_t||_F^2 / (4 d^2)
    y = torch.randn(64, 5, generator=g) * scale
    expected = (torch.cov(x.T) - torch.cov(y.T)).pow(2).sum() / (4 * 25)
    assert torch.allclose(coral(x, y), expected, rtol=1e-4)


def test_gradient_reversal_is_identity_forward_and_negates_backward():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 3, generator=g, requires_grad=True)
    upstream = torch.randn(4, 3, generator=g)
    for coefficient in (1.0, 0.37):
        x.grad = None
        y = grad_reverse(x, coefficient)
        assert torch.equal(y, x)
        y.backward(upstream)
        assert torch.equal(x.grad, upstream * (-coefficient))
    x.grad = None
    GradientReversal(0.5)(x).backward(upstream)
    assert torch.equal(x.grad, upstream * -0.5)


def test_dann_coefficient_schedule():
    assert dann_coefficient(0.0) == 0.0
    assert dann_coefficient(1.0) == pytest.approx(1.0, abs=1e-4)
    values = [dann_coefficient(p / 10) for p in range(11)]
    assert all(a < b for a, b in zip(values, values[1:]))


# ---------------------------------------------------------------- every registered component


def _build_and_setup(name, **kwargs):
    torch.manual_seed(0)
    model = TinyModel()
    component = build_component(name, **kwargs)
    component.setup(model, feature_dim=FEAT_DIM, num_classes=NUM_CLASSES)
    return model, component


@pytest.mark.parametrize("name", LOSS_COMPONENTS.names())
def test_component_forward_backward_under_bf16_autocast(name):
    model, component = _build_and_setup(name, weight=0.5)
    assert component.name == name
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ctx, features, logits = make_context(model, progress=0.5, with_target=component.needs_target)
        term = component(ctx)
        weights = component.source_loss_weights(ctx)
    assert term.dim() == 0 and term.dtype == torch.float32
    assert torch.isfinite(term)
    if weights is not None:
        assert weights.shape == (16,) and torch.isfinite(weights).all()
    term.backward()
    grads = {"features": features.grad, "logits": logits.grad}
    grads.update({f"model.{n}": p.grad for n, p in model.named_parameters()})
    grads.update({f"component.{n}": p.grad for n, p in component.named_parameters()})
    reached = {k for k, v in grads.items() if v is not None and v.abs().sum() > 0}
    for k, v in grads.items():
        if v is not None:
            assert torch.isfinite(v).all(), k
    expected = {
        "dann": {"features", "component.discriminator.0.weight"},
        "cdan": {"features", "component.discriminator.0.weight"},
        "mmd": {"features"}, "coral": {"features"}, "bss": {"features"},
        "mcc": {"logits"},
        "instance_weighting": {"component.classifier.weight"},
        "l2sp": {"model.classifier.weight"},
    }[name]
    assert expected <= reached, (expected, reached)
    if name == "instance_weighting":  # detached features: the model gets nothing
        assert features.grad is None or features.grad.abs().sum() == 0


@pytest.mark.parametrize("name", [n for n in LOSS_COMPONENTS.names() if LOSS_COMPONENTS.get(n).warmup_ramps_term])
def test_component_weight_and_warmup(name):
    model, component = _build_and_setup(name, weight=2.0, warmup=0.5)
    target = component.needs_target
    ctx, *_ = make_context(model, progress=0.0, with_target=target)
    assert value(component(ctx)) == 0.0
    ctx, *_ = make_context(model, progress=0.25, with_target=target)
    half = component(ctx).detach()
    ctx, *_ = make_context(model, progress=0.9, with_target=target)
    full = component(ctx).detach()
    if float(full) != 0.0:  # l2sp with alpha only can be 0; ramp checked where the loss is nonzero
        assert float(half) == pytest.approx(0.5 * float(full), rel=1e-4, abs=1e-7)
    _, zero_weight = _build_and_setup(name, weight=0.0)
    ctx, *_ = make_context(model, progress=1.0, with_target=target)
    assert value(zero_weight(ctx)) == 0.0


@pytest.mark.parametrize("name", [n for n in LOSS_COMPONENTS.names() if not LOSS_COMPONENTS.get(n).warmup_ramps_term])
def test_warmup_ramps_what_reaches_the_model_while_the_discriminator_learns_at_full_weight(name):
    """DANN, CDAN (the reversed gradient) and instance weighting (the source weights, tested below): the warm-up acts
    on the model's side only; the discriminator's or domain classifier's own loss has its full weight from step 0."""
    for progress, factor in ((0.0, 0.0), (0.25, 0.5), (0.9, 1.0)):
        seen = {}
        for warmup in (0.0, 0.5):
            model, component = _build_and_setup(name, weight=2.0, warmup=warmup)
            ctx, features, _ = make_context(model, progress=progress)
            term = component(ctx)
            term.backward()
            reached = features.grad if features.grad is not None else torch.zeros_like(features)
            seen[warmup] = value(term), reached, [p.grad.clone() for p in component.parameters()]
        (term_full, features_full, own_full), (term_warm, features_warm, own_warm) = seen[0.0], seen[0.5]
        assert term_warm == pytest.approx(term_full, rel=1e-6) and term_full > 0
        assert all(g.abs().sum() > 0 for g in own_warm[:1])  # the first layer of the discriminator learns
        assert all(torch.allclose(a, b, atol=1e-7) for a, b in zip(own_warm, own_full))
        assert torch.allclose(features_warm, factor * features_full, atol=1e-7)
        if name != "instance_weighting" and progress > 0:
            assert features_full.abs().sum() > 0


@pytest.mark.parametrize("name", [n for n in LOSS_COMPONENTS.names() if LOSS_COMPONENTS.get(n).needs_target])
def test_target_components_refuse_missing_target(name):
    model, component = _build_and_setup(name)
    ctx, *_ = make_context(model, with_target=False)
    with pytest.raises(ConfigError):
        component(ctx)


def test_build_component_rejects_unknown_option_and_name():
    with pytest.raises(ConfigError, match="nonsense"):
        build_component("mmd", nonsense=1)
    with pytest.raises(KeyError):
        build_component("no-such-component")


# ---------------------------------------------------------------- component specifics


def test_cdan_randomized_map_and_entropy_conditioning():
    model = TinyModel()
    full = build_component("cdan")
    full.setup(model, feature_dim=FEAT_DIM, num_classes=NUM_CLASSES)
    assert not full.use_random_map and full.discriminator[0].in_features == FEAT_DIM * NUM_CLASSES
    rand = build_component("cdan", max_dim=10, randomized_dim=32, entropy_conditioning=True)
    rand.setup(model, feature_dim=FEAT_DIM, num_classes=NUM_CLASSES)
    assert rand.use_random_map and rand.discriminator[0].in_features == 32
    ctx, features, _ = make_context(model)
    rand(ctx).backward()
    assert features.grad.abs().sum() > 0


def test_instance_weighting_upweights_target_like_source_samples():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(3)
    fs = torch.randn(128, 2, generator=g)
    ft = torch.randn(128, 2, generator=g) + torch.tensor([3.0, 0.0])
    component = build_component("instance_weighting", min_weight=0.5, max_weight=2.0)
    component.setup(None, feature_dim=2)
    ctx = AdaptationContext(features_source=fs, features_target=ft, progress=1.0)
    assert torch.allclose(component.source_loss_weights(ctx), torch.ones(128))  # untrained: uniform
    optimizer = torch.optim.Adam(component.parameters(), lr=0.1)
    first = None
    for _ in range(100):
        optimizer.zero_grad()
        loss = component(ctx)
        first = float(loss.detach()) if first is None else first
        loss.backward()
        optimizer.step()
    assert value(component(ctx).detach()) < first
    weights = component.source_loss_weights(ctx)
    assert weights.mean() == pytest.approx(1.0, abs=1e-4)
    assert weights.min() >= 0.5 - 1e-6 and weights.max() <= 2.0 + 1e-6
    assert weights.max() == pytest.approx(2.0, abs=1e-5)  # the clip is reached here
    order = fs[:, 0].argsort()
    assert weights[order[-32:]].mean() > weights[order[:32]].mean() + 0.5  # closer to target -> larger
    # during warm-up the weights move from uniform towards the estimate
    ramped = build_component("instance_weighting", warmup=0.5, min_weight=0.5, max_weight=2.0)
    ramped.setup(None, feature_dim=2)
    ramped.load_state_dict(component.state_dict())
    ctx0 = AdaptationContext(features_source=fs, features_target=ft, progress=0.0)
    assert torch.allclose(ramped.source_loss_weights(ctx0), torch.ones(128))
    ctx_half = AdaptationContext(features_source=fs, features_target=ft, progress=0.25)
    assert torch.allclose(ramped.source_loss_weights(ctx_half), 1 + 0.5 * (weights - 1), atol=1e-5)


def test_clipped_unit_mean_weights_respect_bounds():
    g = torch.Generator().manual_seed(4)
    log_ratio = torch.randn(50, generator=g) * 4
    w = clipped_unit_mean_weights(log_ratio, 0.1, 10.0)
    assert w.mean() == pytest.approx(1.0, abs=1e-4)
    assert w.min() >= 0.1 - 1e-6 and w.max() <= 10.0 + 1e-5
    assert torch.all((w[1:] - w[:-1]) * (log_ratio[1:] - log_ratio[:-1]) >= -1e-6)  # order kept


def test_l2sp_zero_at_start_positive_after_perturbation():
    torch.manual_seed(0)
    model = TinyModel()
    component = build_component("l2sp", alpha=0.1, beta=0.0)
    component.setup(model)
    assert component._buffer_of.keys() == {"backbone.weight", "backbone.bias"}
    assert not any("_start_" in k for k in component.state_dict())  # snapshot not saved
    assert list(component.parameters()) == []
    ctx = AdaptationContext(model=model)
    assert value(component(ctx)) == 0.0
    with torch.no_grad():
        model.backbone.weight.add_(0.1)
        model.classifier.weight.add_(5.0)  # head is not pulled to its start
    expected = 0.5 * 0.1 * model.backbone.weight.numel() * 0.01
    assert value(component(ctx)) == pytest.approx(expected, rel=1e-4)
    # beta term: L2 on the head; explicit head names override the default
    both = build_component("l2sp", alpha=0.1, beta=0.2)
    both.setup(model, head_param_names={"classifier.weight", "classifier.bias"})
    head_sq = sum(p.pow(2).sum() for p in model.classifier.parameters())
    assert value(both(ctx)) == pytest.approx(value(0.5 * 0.2 * head_sq), rel=1e-4)


def test_bss_is_sum_of_smallest_squared_singular_values():
    g = torch.Generator().manual_seed(5)
    f = torch.randn(10, 6, generator=g)
    component = build_component("bss", weight=1.0, k=2)
    s = torch.linalg.svdvals(f)
    expected = s[-2:].pow(2).sum()
    assert torch.allclose(component(AdaptationContext(features_source=f)), expected, rtol=1e-5)


def test_mcc_low_for_confident_diagonal_predictions():
    confident = torch.eye(4).repeat(8, 1) * 20
    uniform = torch.zeros(32, 4)
    component = build_component("mcc", weight=1.0)  # the loss itself (its default weight is 0.3)
    low = value(component(AdaptationContext(logits_target=confident)))
    high = value(component(AdaptationContext(logits_target=uniform)))
    assert low < 0.01 and high == pytest.approx(0.75, abs=1e-5)  # uniform: (C-1)/C off-diagonal mass
