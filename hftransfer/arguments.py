"""Recipe arguments: what to load and how to prepare it. Training knobs live in TransferTrainingArguments."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelArguments:
    model: str = field(
        default="efficientnet_lite0",
        metadata={"help": "Built-in alias (efficientnet_lite0, minilm), Hub id (timm/resnet50.a1_in1k) or local folder."},
    )
    pretrained: bool = field(
        default=True, metadata={"help": "false: same architecture from random init (the transfer-vs-scratch baseline)."}
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the checkpoint."})


@dataclass
class DataArguments:
    dataset: str | None = field(
        default=None,
        metadata={"help": "Built-in (digits, mnist5k, tweets, ...), Hub dataset id, local folder or csv/json/parquet file."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    label_column: str | None = field(
        default=None,
        metadata={"help": "Label column (default: label/labels/...): strings, or integers 0..N-1, each in train."},
    )
    validation_size: float = field(
        default=0.1, metadata={"help": "Fraction (0-1) of train held out, stratified, if there is no validation split."}
    )
    test_size: float = field(
        default=0.2, metadata={"help": "Fraction (0-1) of train held out, stratified, if there is no test split."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most N training examples."})
    samples_per_class: int | None = field(
        default=None, metadata={"help": "Few-label setting: N training examples per class (every class needs N)."}
    )
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most N validation/test examples."})


@dataclass
class ImageDataArguments(DataArguments):
    image_column: str | None = field(default=None, metadata={"help": "Image column (default: the first Image feature)."})
    image_size: int | None = field(
        default=None, metadata={"help": "Train and save at this input size instead of the checkpoint's (faster on CPU)."}
    )
    hflip: float | None = field(
        default=None, metadata={"help": "Horizontal flip probability; default 0.5, 0 for data where flips change labels."}
    )
    crop_scale_min: float = field(default=0.5, metadata={"help": "Smallest random-resized-crop area fraction."})
    verify_images: bool = field(default=True, metadata={"help": "Decode every image once before training."})


@dataclass
class TextDataArguments(DataArguments):
    text_column: str | None = field(default=None, metadata={"help": "Text column (default: text/sentence/...)."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text of a sentence pair (NLI, paraphrase); default: sentence2 when "
                                "the data has sentence1 and sentence2 columns, else none."},
    )
    max_length: int = field(default=128, metadata={"help": "Truncate texts to this many tokens."})


@dataclass
class DomainDataArguments(ImageDataArguments, TextDataArguments):
    """domain_adapt.py takes image or text checkpoints: both families' data options (sizes apply to both domains)."""


@dataclass
class StrategyArguments:
    strategy: str = field(
        default="full", metadata={"help": "full, linear_probe, gradual, llrd, lp_ft, bitfit, lora or setfit."}
    )
    head_lr_scale: float = field(default=1.0, metadata={"help": "LR multiplier of the new head (e.g. 10)."})
    norm_statistics: str | None = field(
        default=None,
        metadata={"help": "BatchNorm running statistics of trained layers: 'update' or 'pretrained' (kept in "
                  "inference mode throughout, as Keras's fine-tuning guide advises). Default: 'pretrained' for "
                  "lp_ft and bitfit, 'update' otherwise."},
    )
    layer_decay: float | None = field(
        default=None, metadata={"help": "Layer-wise LR decay per group from the head (llrd default 0.75; composes)."}
    )
    head_init: str | None = field(
        default=None,
        metadata={"help": "How the new head starts: 'fit' (multinomial logistic regression on the frozen backbone's "
                  "features, by L-BFGS, before the first step) or 'random'. Default: 'fit' for linear_probe and lp_ft, "
                  "'random' otherwise."},
    )
    head_fit_c: float = field(
        default=1.0, metadata={"help": "head_init fit: inverse L2 strength, as scikit-learn LogisticRegression's C."}
    )
    freeze_groups: int = field(
        default=0,
        metadata={"help": "Keep the first N layer groups (from the input; never the head) frozen for the whole run, with "
                  "any strategy. A finished run's card suggests N from how far each group moved."},
    )
    unfreeze_every: float | None = field(
        default=None, metadata={"help": "gradual: unfreeze one more group every N units (default: the groups join at "
                                "even steps over the first half of the run, so all of them train for its second half)."},
    )
    unfreeze_unit: str = field(default="epoch", metadata={"help": "gradual: 'epoch' or 'step'."})
    groups_per_phase: int = field(default=1, metadata={"help": "gradual: groups unfrozen at each phase change."})
    lp_epochs: float | None = field(
        default=None, metadata={"help": "lp_ft: epochs of linear probing before fine-tuning (default: none after a "
                                "fitted head, whose fit is the probe, as in LP-FT; the first half of the run after a "
                                "random one)."},
    )
    ft_lr_scale: float = field(default=0.1, metadata={"help": "lp_ft: LR multiplier of the fine-tuning phase."})
    bitfit_norms: bool = field(default=True, metadata={"help": "bitfit: also train normalisation weights."})
    setfit_iterations: int = field(
        default=20, metadata={"help": "setfit: passes over the labelled examples that make contrastive pairs (each "
                              "example: one same-class and one other-class partner per pass)."}
    )
    setfit_max_pairs: int = field(default=20000, metadata={"help": "setfit: at most this many contrastive pairs."})
    lora_r: int = field(default=8, metadata={"help": "lora: adapter rank."})
    lora_alpha: int = field(default=16, metadata={"help": "lora: scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "lora: adapter dropout."})
    lora_target: str | None = field(
        default=None, metadata={"help": "lora: comma-separated module names (default: backbone linears/1x1 convs)."}
    )


@dataclass
class RegularizerArguments:
    regularizer: str | None = field(
        default=None, metadata={"help": "Pull toward the pretrained weights: l2sp, bss, or both comma-separated."}
    )
    regularizer_weight: float = field(default=1.0, metadata={"help": "Weight of each regularizer term."})
    regularizer_options: str | None = field(
        default=None, metadata={"help": "Component options as key=value pairs, e.g. 'alpha=0.01,beta=0.01'."}
    )


@dataclass
class AdaptationArguments(RegularizerArguments):
    source: str = field(default="digits", metadata={"help": "Labelled source dataset (any --dataset form)."})
    target: str = field(
        default="mnist5k", metadata={"help": "Target dataset; its training labels are never used (test labels report)."}
    )
    method: str = field(
        default="dann",
        metadata={"help": "dann, cdan, mmd, coral, mcc, instance_weighting, or source_only. Default: the best measured "
                  "for the model's family in benchmarks/domain_adaptation.py (README): cdan for image models, dann "
                  "for text."},
    )
    method_weight: float = field(default=1.0, metadata={"help": "Weight of the adaptation term."})
    method_warmup: float = field(default=0.0, metadata={"help": "Fraction of training over which the weight ramps up."})
    method_options: str | None = field(
        default=None, metadata={"help": "Method options as key=value pairs, e.g. 'hidden_dim=512,gamma=10'."}
    )
    shift_samples: int = field(
        default=500,
        metadata={"help": "Examples per domain for the domain shift measured before training (proxy A-distance and MMD "
                  "on the frozen features, as `hftransfer shift`; in the card and domain_shift.json); 0 skips it."},
    )
    select_on: str = field(
        default="source",
        metadata={"help": "Checkpoint selection: 'source' validation, or 'target' (needs a labelled target validation split)."},
    )
