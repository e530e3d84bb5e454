"""Named-entity recognition: fine-tune a BERT-style encoder (any AutoModelForTokenClassification checkpoint) to tag
words, scored by entity-level F1 (conlleval's rule: type and every word of an entity must match).

    accelerate launch recipes/token_cls.py        # offline default: MiniLM on WNUT-16 tweets (10 entity types)
    accelerate launch recipes/token_cls.py --dataset conll2003 --max_train_samples 4000
    accelerate launch recipes/token_cls.py --model bert-base-cased --dataset ./ner.conll --output_dir out/ner
    accelerate launch recipes/token_cls.py --strategy linear_probe     # the frozen-feature baseline
"""

from hftransfer.outputs import run_recipe

DEFAULTS = dict(
    model="minilm",
    dataset="wnut16",
    output_dir="outputs/token_cls",
    max_length=128,
    num_train_epochs=5,
    min_train_steps=300,  # small data: at least 300 optimizer steps, as the other recipes' rule
    learning_rate=1e-4,
    warmup_steps=0.1,
    weight_decay=0.01,
    per_device_train_batch_size=16,
    per_device_eval_batch_size=64,
    metric_for_best_model="f1",  # entity F1: word accuracy is mostly the 'O' tag
    logging_steps=50,
)


def parse(argv=None) -> tuple:
    """The command line (flags, --config YAML and DEFAULTS) as the recipe's argument dataclasses."""
    from hftransfer.arguments import ModelArguments, RegularizerArguments, StrategyArguments
    from hftransfer.config import parse_recipe_args
    from hftransfer.tasks.token_classification import TokenDataArguments
    from hftransfer.training_args import TransferTrainingArguments

    return parse_recipe_args(
        (ModelArguments, TokenDataArguments, StrategyArguments, RegularizerArguments, TransferTrainingArguments),
        DEFAULTS, argv,
    )


def build(args: tuple, trainer: bool = True):
    """Data, model, collator and (unless `trainer` is False) the TransferTrainer that main() trains; no file is
    written."""
    import torch
    from transformers import set_seed

    from hftransfer.adaptation import components_from_args
    from hftransfer.recipes import RecipeRun
    from hftransfer.strategies import build_strategy
    from hftransfer.tasks.token_classification import (
        entity_metrics, load_token_classifier, load_token_data, prepare_token_splits, token_collator,
    )
    from hftransfer.trainer import TransferTrainer

    model_args, data_args, strategy_args, regularizer_args, training_args = args
    data = load_token_data(data_args, seed=training_args.seed)
    set_seed(training_args.seed)  # the new head (with --pretrained false, every weight) starts from --seed
    loaded = load_token_classifier(
        model_args.model, data.label_names, pretrained=model_args.pretrained,
        trust_remote_code=model_args.trust_remote_code, pooling=model_args.pooling,
    )
    splits = prepare_token_splits(data, loaded.processor, max_length=data_args.max_length,
                                  label_all_tokens=data_args.label_all_tokens)
    run = RecipeRun(args, data, loaded, splits, collator=token_collator(loaded.processor, on_gpu=torch.cuda.is_available()))
    if trainer:
        run.trainer = TransferTrainer(
            model=loaded.model, args=training_args, train_dataset=splits["train"],
            eval_dataset=splits["validation"], processing_class=loaded.processor,
            strategy=build_strategy(strategy_args), loss_components=components_from_args(regularizer_args),
            data_collator=run.collator, compute_metrics=entity_metrics(data.label_names),
        )
    return run


def main(argv=None):
    from hftransfer.hub import push_run, write_run_card
    from hftransfer.outputs import recipe_output_dir
    from hftransfer.tasks.token_classification import PIPELINE_TASK

    args = parse(argv)
    with recipe_output_dir(args[-1]) as output:  # checked before any data or weights are loaded
        run = build(args)
        run.train_evaluate_save(output.resume_checkpoint)
        write_run_card(run.trainer, run.loaded, run.data, task=PIPELINE_TASK)
    push_run(run.trainer)  # outside the block: a failed push leaves the finished output in place
    return run.trainer


if __name__ == "__main__":
    run_recipe(main)
