"""Shared pieces of the domain-adaptation and regularizer loss components.

A loss component is an ``nn.Module`` the trainer calls once per training step with an
:class:`AdaptationContext`; it returns a scalar that is already multiplied by its weight and
its warm-up factor, so the trainer only adds it to the task loss. Components that own trainable
sub-networks (domain discriminators, ...) build them in :meth:`LossComponent.setup` and expose them
as ordinary ``nn.Module`` parameters.

Numerics: every component does its kernel / covariance / SVD math in float32 with autocast
switched off locally (see :func:`float32_math`), so the components are safe under
``torch.autocast(..., dtype=torch.bfloat16)``. Nothing in a forward pass reads a value back to
the host (no ``.item()``, no boolean-mask indexing), except what ``torch.linalg`` itself does on
CUDA for the SVD in ``bss``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Iterator

import torch
from torch import Tensor, nn

from hftransfer.errors import ConfigError
from hftransfer.registry import Registry

LOSS_COMPONENTS: Registry[type["LossComponent"]] = Registry("loss component")

_AUTOCAST_DEVICE_TYPES = {"cpu", "cuda", "xpu", "mps", "hpu"}


@dataclass(kw_only=True)
class AdaptationContext:
    """What one training step hands to every loss component.

    Source and target features come from one forward pass over the concatenated batch. Target
    fields are ``None`` in plain fine-tuning (components with ``needs_target = False`` only).
    ``progress`` is the fraction of all training steps done, in [0, 1].
    """

    features_source: Tensor | None = None  # [Bs, D] pooled features
    logits_source: Tensor | None = None  # [Bs, C]
    labels_source: Tensor | None = None  # [Bs]
    features_target: Tensor | None = None  # [Bt, D]
    logits_target: Tensor | None = None  # [Bt, C]
    progress: float = 0.0
    model: nn.Module | None = None


@contextlib.contextmanager
def float32_math(reference: Tensor | torch.device | None) -> Iterator[None]:
    """Switch autocast off for the device of ``reference``; callers cast their inputs with ``.float()``."""
    if isinstance(reference, Tensor):
        device_type = reference.device.type
    elif isinstance(reference, torch.device):
        device_type = reference.type
    else:
        device_type = None
    if device_type in _AUTOCAST_DEVICE_TYPES:
        with torch.autocast(device_type=device_type, enabled=False):
            yield
    else:
        yield


def module_device(module: nn.Module | None) -> torch.device | None:
    """Device of the first parameter (or buffer) of ``module``; None when it has neither."""
    if module is None:
        return None
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    return None


# A discriminator is a new network: it learns at 10x the pretrained backbone's learning rate, TLlib's rule for every
# new module. Measured (MNIST-5k -> digits, seed 0, image defaults): DANN's discriminator at the backbone's rate was
# fooled all run (its loss 0.6-0.8, above ln 2) while a logistic regression told the domains apart from the features
# at 0.98, and DANN stayed level with source-only (0.747 against 0.769); at 10x it reached 0.858. CDAN measured
# better at 1x and defaults to lr_scale 0.1 (hftransfer.adaptation.cdan).
DISCRIMINATOR_LR_SCALE = 10.0


def warmup_factor(progress: float, warmup: float) -> float:
    """Linear ramp from 0 at progress 0 to 1 at progress ``warmup`` (1 throughout when warmup <= 0)."""
    if warmup <= 0:
        return 1.0
    return min(max(float(progress) / warmup, 0.0), 1.0)


@dataclass
class ComponentConfig:
    """The options every loss component takes; a component with options of its own registers a subclass as its
    `config_class`. `--method_options` / `--regularizer_options` are read as its fields (typed by their annotations),
    every field becomes an attribute of the component, and the model card records them all."""

    weight: float = field(default=1.0, metadata={"help": "multiplies the term (set by --method_weight / --regularizer_weight)"})
    warmup: float = field(default=0.0, metadata={"help": "fraction of training over which the weight ramps up from 0"})

    def __post_init__(self):
        if self.weight < 0:
            raise ConfigError(f"weight must be >= 0, got {self.weight}")
        if not 0.0 <= self.warmup <= 1.0:
            raise ConfigError(f"warmup is a fraction of training in [0, 1], got {self.warmup}")


class LossComponent(nn.Module):
    """Base class: subclasses set ``name`` and ``needs_target`` and implement :meth:`loss`.

    ``weight`` multiplies the term; ``warmup`` is the fraction of training over which the weight
    ramps linearly up from 0 (0 = full weight from the first step). While the effective weight is
    0 the component's loss is not computed at all and a constant 0 is returned.

    A component whose term trains a network of its own (a domain discriminator or classifier) sets
    ``warmup_ramps_term = False``: its term keeps the full ``weight`` from the first step, so that
    network learns from step 0, and the warm-up ramps only what reaches the model (the reversed
    gradient, the source-loss weights).
    """

    name: ClassVar[str] = "loss_component"
    config_class: ClassVar[type[ComponentConfig]] = ComponentConfig
    needs_target: ClassVar[bool] = True
    warmup_ramps_term: ClassVar[bool] = True
    lr_scale: float = 1.0  # learning rate of the component's own parameters, relative to DISCRIMINATOR_LR_SCALE's

    def __init__(self, config: ComponentConfig | None = None, **options: Any):
        super().__init__()
        if config is None:
            known = [f.name for f in fields(self.config_class)]
            unknown = sorted(set(options) - set(known))
            if unknown:
                raise ConfigError(f"loss component {self.name!r} got unknown option(s) {', '.join(unknown)}; its "
                                  f"options are: {', '.join(known)}")
            try:
                config = self.config_class(**options)
            except ConfigError as error:  # a config's checks do not know which component it belongs to
                raise ConfigError(f"{self.name}: {error}") from None
        elif options:
            raise TypeError("pass either a config or options, not both")
        self.config = config
        for option in fields(config):
            setattr(self, option.name, getattr(config, option.name))

    def describe(self) -> dict:
        """Every option as the run used it (a default resolved at setup, such as the reversal strength, included)."""
        info = {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self.config)}}
        if getattr(self, "confused_loss", None) is not None:  # where the logged term (weight x loss) sits when the
            info["confused_loss"] = round(self.confused_loss * self.weight, 6)  # domains are confused
        return info

    # -- hooks ---------------------------------------------------------------------------------
    def setup(
        self,
        model: nn.Module | None = None,
        feature_dim: int | None = None,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Called once before training: build sub-networks (moved to the model's device)."""

    def loss(self, ctx: AdaptationContext) -> Tensor:
        """The unweighted loss: a float32 scalar tensor."""
        raise NotImplementedError

    def source_loss_weights(self, ctx: AdaptationContext) -> Tensor | None:
        """Per-sample weights [Bs] for the source task loss (mean 1), or None for uniform weighting."""
        return None

    # -- plumbing ------------------------------------------------------------------------------
    def scale(self, progress: float) -> float:
        """weight * warm-up factor at this point of training."""
        return self.weight * warmup_factor(progress, self.warmup)

    def term_scale(self, progress: float) -> float:
        """What the term is multiplied by: :meth:`scale`, or the bare weight where the warm-up acts elsewhere."""
        return self.scale(progress) if self.warmup_ramps_term else self.weight

    def forward(self, ctx: AdaptationContext) -> Tensor:
        self.check_context(ctx)
        scale = self.term_scale(ctx.progress)
        if scale == 0.0:
            return self._zero(ctx)
        return self.loss(ctx) * scale

    def check_context(self, ctx: AdaptationContext) -> None:
        if self.needs_target and ctx.features_target is None and ctx.logits_target is None:
            raise ConfigError(
                f"loss component {self.name!r} needs unlabeled target-domain data; "
                "give the recipe a target dataset or drop the component"
            )

    def _zero(self, ctx: AdaptationContext) -> Tensor:
        for tensor in (ctx.features_source, ctx.logits_source, ctx.features_target, ctx.logits_target):
            if tensor is not None:
                return tensor.new_zeros((), dtype=torch.float32)
        device = module_device(ctx.model) or module_device(self)
        return torch.zeros((), dtype=torch.float32, device=device)

    def _require(self, ctx: AdaptationContext, *names: str) -> list[Tensor]:
        values = []
        for name in names:
            value = getattr(ctx, name)
            if value is None:
                raise ConfigError(f"loss component {self.name!r} needs ctx.{name}, which the trainer did not give")
            values.append(value)
        return values

    def _require_setup(self, built: bool, what: str) -> None:
        if not built:
            raise ConfigError(
                f"loss component {self.name!r} has no {what} yet; call setup(model, feature_dim, num_classes) before training"
            )

    def extra_repr(self) -> str:
        return f"weight={self.weight}, warmup={self.warmup}"


def default_reversal_strength(model: nn.Module | None) -> float:
    """The gradient reversal's full strength when none is given: 1 for vision backbones (DANN, TLlib), 0.1 for text
    encoders. Measured at the first step (digits/MNIST, tweets/Rotten Tomatoes): the reversed gradient's norm over the
    backbone is 0.31x the task gradient's on EfficientNet-Lite0 and 5.0x on MiniLM (a binary task's small loss
    gradient against features of small spread, which the discriminator's BatchNorm scales up); at 1, DANN left
    MiniLM's task loss at ln 2 for a whole epoch (source test 0.73 against 0.86 without it), at 0.1 it kept 0.86."""
    return 0.1 if _is_text_model(model) else 1.0


def default_dann_lr_scale(model: nn.Module | None) -> float:
    """DANN's discriminator rate when none is given (``lr_scale``, of DISCRIMINATOR_LR_SCALE's 10x): 10x the backbone
    for vision backbones, 1x (as CDAN's everywhere) for text encoders. Measured on tweets -> Rotten Tomatoes (MiniLM,
    200 steps, seeds 0-2): at 10x the discriminator loss swung between 0.14 and 2.5 and the target's predicted
    positive rate with it (seed 1: 20% against 55% true, accuracy 0.594); at 1x it stayed near ln 2 (0.60-1.24) and
    target accuracy was 0.696 / 0.730 / 0.706 against 0.706 / 0.594 / 0.710 (source-only 0.666 / 0.682 / 0.694)."""
    return 0.1 if _is_text_model(model) else 1.0


def _is_text_model(model: nn.Module | None) -> bool:
    from hftransfer.models.loading import modality_of

    config = getattr(model, "config", None)
    return config is not None and modality_of(config) == "text"


def domain_discriminator(in_dim: int, hidden_dim: int, num_layers: int = 2, batch_norm: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """MLP ``in_dim -> hidden_dim x num_layers -> 1`` giving one domain logit (source = 1)."""
    if num_layers < 1 or hidden_dim < 1:
        raise ConfigError(f"discriminator needs num_layers >= 1 and hidden_dim >= 1, got {num_layers}, {hidden_dim}")
    layers: list[nn.Module] = []
    dim = in_dim
    for _ in range(num_layers):
        layers.append(nn.Linear(dim, hidden_dim))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers.append(nn.ReLU(inplace=True))
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        dim = hidden_dim
    layers.append(nn.Linear(dim, 1))
    return nn.Sequential(*layers)


def balanced_domain_bce(logits_source: Tensor, logits_target: Tensor,
                        weights_source: Tensor | None = None, weights_target: Tensor | None = None) -> Tensor:
    """Mean of the source-side and target-side BCE (source label 1, target label 0), in float32."""
    ls = logits_source.float().reshape(-1)
    lt = logits_target.float().reshape(-1)
    with float32_math(ls):
        bce_s = nn.functional.binary_cross_entropy_with_logits(ls, torch.ones_like(ls), reduction="none")
        bce_t = nn.functional.binary_cross_entropy_with_logits(lt, torch.zeros_like(lt), reduction="none")
        if weights_source is not None:
            bce_s = bce_s * weights_source.float().reshape(-1)
        if weights_target is not None:
            bce_t = bce_t * weights_target.float().reshape(-1)
        return 0.5 * (bce_s.mean() + bce_t.mean())
