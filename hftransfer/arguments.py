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
    pooling: str = field(
        default="auto",
        metadata={"help": "Text: what the classifier reads. auto: the checkpoint's own pooling where one encoder layer "
                  "expresses it (a sentence-transformers mean pooling on a BERT-family model: built in as one more "
                  "layer, the untrained pooler passing it through at unit norm; the export still loads in "
                  "pipeline()), else the architecture's head; head: the "
                  "architecture's own ([CLS] pooler); checkpoint: the checkpoint's pooling, or an error when it has "
                  "none.", "choices": ["auto", "head", "checkpoint"]},
    )


@dataclass
class DatasetArguments:
    """Where the examples come from and how many: every recipe's data options (classification, token tagging)."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Built-in (digits, mnist5k, tweets, ...; token_cls.py: wnut16, conll2003), Hub dataset id, "
                  "local folder or csv/json/parquet file (token_cls.py: also a CoNLL file)."},
    )
    dataset_config: str | None = field(default=None, metadata={"help": "Hub dataset configuration name."})
    validation_size: float = field(
        default=0.1, metadata={"help": "Fraction (0-1) of train held out if there is no validation split (stratified "
                               "by class for classification)."}
    )
    test_size: float = field(
        default=0.2, metadata={"help": "Fraction (0-1) of train held out if there is no test split (stratified by "
                               "class for classification)."}
    )
    max_train_samples: int | None = field(default=None, metadata={"help": "Use at most N training examples."})
    max_eval_samples: int | None = field(default=None, metadata={"help": "Use at most N validation/test examples."})
    streaming: bool = field(
        default=False, metadata={"help": "Read the train split as a stream (data past one disk; needs --max_steps, "
                                 "and validation and test splits, which are read whole)."},
    )
    class_names: str | None = field(
        default=None, metadata={"help": "With --streaming, the classes (token_cls.py: the tags) in order, "
                                "comma-separated, when the label column is not a ClassLabel (e.g. 'neg,pos')."},
    )


@dataclass
class DataArguments(DatasetArguments):
    label_column: str | None = field(
        default=None,
        metadata={"help": "Label column (default: label/labels/...): strings, or integers 0..N-1, each in train."},
    )
    samples_per_class: int | None = field(
        default=None, metadata={"help": "Few-label setting: N training examples per class (every class needs N)."}
    )


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
class MaxLengthArguments:
    """Every recipe that tokenises text (text_cls.py, token_cls.py, domain_adapt.py) truncates it."""

    max_length: int = field(default=128, metadata={"help": "Truncate each text (token_cls.py: each sentence) to this "
                                                   "many tokens (word pieces)."})


@dataclass
class TextDataArguments(MaxLengthArguments, DataArguments):
    text_column: str | None = field(default=None, metadata={"help": "Text column (default: text/sentence/...)."})
    text_pair_column: str | None = field(
        default=None, metadata={"help": "Second text of a sentence pair (NLI, paraphrase); default: sentence2 when "
                                "the data has sentence1 and sentence2 columns, else none."},
    )


@dataclass
class DomainDataArguments(ImageDataArguments, TextDataArguments):
    """domain_adapt.py takes image or text checkpoints: both families' data options (sizes apply to both domains)."""


def _strategy_arguments() -> type:
    """`--strategy` and every option of every registered strategy's config class, as one flat dataclass for the
    recipes' parser. An option shared by several strategies appears once, with the base config's default (a strategy
    that sets its own default, such as llrd's layer_decay 0.75, gets it when the flag is left unset)."""
    import dataclasses
    import typing

    from .strategies import STRATEGIES, StrategyConfig

    options: dict[str, tuple] = {}
    for config_class in (StrategyConfig, *(STRATEGIES.get(n).config_class for n in STRATEGIES.names())):
        types = typing.get_type_hints(config_class)
        for option in dataclasses.fields(config_class):
            options.setdefault(option.name, (option.name, types[option.name],
                                             field(default=option.default, metadata=dict(option.metadata))))
    names = ", ".join(STRATEGIES.names())
    strategy = ("strategy", str, field(default="full", metadata={"help": f"{names}."}))
    generated = dataclasses.make_dataclass("StrategyArguments", [strategy, *options.values()])
    generated.__module__ = __name__
    generated.__doc__ = "--strategy and its options, from the strategies' config classes (hftransfer.strategies)."
    return generated


StrategyArguments = _strategy_arguments()


@dataclass
class RegularizerArguments:
    regularizer: str | None = field(
        default=None, metadata={"help": "Pull toward the pretrained weights: l2sp, bss, or both comma-separated."}
    )
    regularizer_weight: float | None = field(
        default=None, metadata={"help": "Weight of each regularizer term (default: each one's own: l2sp 1, its "
                                "strength in alpha/beta; bss 0.001, the paper's eta)."},
    )
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
        metadata={"help": "dann, cdan, mmd, coral, mcc, instance_weighting, several of them comma-separated (each "
                  "term is added: cdan,mcc), or source_only. Default: the best measured "
                  "for the model's family in benchmarks/domain_adaptation.py (README): cdan for image models, mcc "
                  "for text."},
    )
    method_weight: float | None = field(
        default=None, metadata={"help": "Weight of the adaptation term (default: the method's own: mcc 0.3, the "
                                "others 1)."},
    )
    method_warmup: float = field(default=0.0, metadata={"help": "Fraction of training over which the weight ramps up."})
    method_options: str | None = field(
        default=None, metadata={"help": "Method options as key=value pairs, e.g. 'hidden_dim=512,gamma=10'; with "
                                "several methods an option goes to each that has it, or name one: 'mcc.temperature=2'."}
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
