"""Fine-tune a BERT-style encoder (any AutoModelForSequenceClassification checkpoint) on a text classification dataset.

    accelerate launch recipes/text_cls.py         # offline default: MiniLM on tweet sentiment (3 classes)
    accelerate launch recipes/text_cls.py --model bert-base-uncased --dataset ./reviews.csv --output_dir out/bert
    accelerate launch recipes/text_cls.py --config recipes/configs/text_cls_tweets.yaml
    torchrun --nproc_per_node 2 recipes/text_cls.py --max_train_samples 512
"""

from hftransfer.outputs import run_recipe

DEFAULTS = dict(
    model="minilm",
    dataset="tweets",
    output_dir="outputs/text_cls",
    max_length=64,  # tweets are short; longer inputs are truncated
    max_train_samples=20000,  # of 27k: the default run stays well inside 10 minutes on 2 CPU cores
    num_train_epochs=1,
    min_train_steps=200,  # small data: at least 200 optimizer steps, as image_cls.py (README, Strategies)
    learning_rate=5e-5,
    warmup_steps=0.1,
    weight_decay=0.01,
    per_device_train_batch_size=32,
    per_device_eval_batch_size=128,
    train_sampling_strategy="group_by_length",  # batches of similar length: less padding, same data per epoch
    logging_steps=50,
)


def parse(argv=None) -> tuple:
    """The command line (flags, --config YAML and DEFAULTS) as the recipe's argument dataclasses."""
    from hftransfer.arguments import ModelArguments, RegularizerArguments, StrategyArguments, TextDataArguments
    from hftransfer.config import parse_recipe_args
    from hftransfer.training_args import TransferTrainingArguments

    return parse_recipe_args(
        (ModelArguments, TextDataArguments, StrategyArguments, RegularizerArguments, TransferTrainingArguments), DEFAULTS, argv
    )


def build(args: tuple, trainer: bool = True):
    """Data, model, collator and (unless `trainer` is False) the TransferTrainer that main() trains; no file is
    written."""
    from dataclasses import replace

    import torch
    from transformers import set_seed

    from hftransfer.adaptation import components_from_args
    from hftransfer.data import load_data_from_args, prepare_text_splits, text_collator
    from hftransfer.models import load_classifier
    from hftransfer.recipes import RecipeRun
    from hftransfer.strategies import STRATEGIES, build_strategy
    from hftransfer.trainer import TransferTrainer

    model_args, data_args, strategy_args, regularizer_args, training_args = args
    if strategy_args.head_init is None and STRATEGIES.get(strategy_args.strategy).default_head_init == "random":
        # at the encoder's rate a random head cannot reach a converged linear model in a short run, whatever the
        # strategy: a run that --min_train_steps lengthens (small data) starts the head at the logistic-regression
        # fit; a longer one gives the encoder the steps to carry a random head (README, Few labels)
        strategy_args = replace(strategy_args, head_init="fit_if_lengthened")
    data = load_data_from_args(data_args, "text", seed=training_args.seed)
    set_seed(training_args.seed)  # the new head (with --pretrained false, every weight) starts from --seed
    loaded = load_classifier(
        model_args.model, data.label_names, "text", pretrained=model_args.pretrained,
        trust_remote_code=model_args.trust_remote_code, pooling=model_args.pooling,
    )
    splits = prepare_text_splits(data, loaded.processor, max_length=data_args.max_length)
    run = RecipeRun(args, data, loaded, splits, collator=text_collator(loaded.processor, on_gpu=torch.cuda.is_available()))
    if trainer:
        run.trainer = TransferTrainer(
            model=loaded.model, args=training_args, train_dataset=splits["train"],
            eval_dataset=splits["validation"], processing_class=loaded.processor,
            strategy=build_strategy(strategy_args), loss_components=components_from_args(regularizer_args),
            data_collator=run.collator,
        )
    return run


def main(argv=None):
    from hftransfer.hub import push_run, write_run_card
    from hftransfer.outputs import recipe_output_dir

    args = parse(argv)
    with recipe_output_dir(args[-1]) as output:  # checked before any data or weights are loaded
        run = build(args)
        run.train_evaluate_save(output.resume_checkpoint)
        write_run_card(run.trainer, run.loaded, run.data)
    push_run(run.trainer)  # outside the block: a failed push leaves the finished output in place
    return run.trainer


if __name__ == "__main__":
    run_recipe(main)
