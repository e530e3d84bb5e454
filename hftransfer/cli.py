"""The `hftransfer` console command: one small function per subcommand, listed in COMMANDS.

    hftransfer push outputs/image_cls --repo-id me/effnet-digits [--private] [--token hf_...]
    hftransfer card outputs/image_cls [--repo-id me/effnet-digits]
    hftransfer rank --models efficientnet_lite0 ./my-ckpt --dataset digits --max-samples 500 --output ranking.json
    hftransfer interpolate --pretrained efficientnet_lite0 --finetuned outputs/image_cls --eval mnist5k digits
    hftransfer compare --recipe recipes/image_cls.py --seeds 0 1 2 --max_train_samples 500 --output_dir out/cmp
    hftransfer shift --model efficientnet_lite0 --source digits --target mnist5k --image_size 64
    hftransfer advise --models efficientnet_lite0 efficientnet_lite2 --dataset mnist5k --samples_per_class 50

Adding a subcommand: write `name(args)` and `_name_arguments(parser)`, add one line to COMMANDS.
"""

from __future__ import annotations

import argparse
import sys

from .errors import HFTransferError


def _push_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", help="A finished recipe's output folder.")
    parser.add_argument("--repo-id", required=True, help="Model repo to create or update: namespace/name.")
    parser.add_argument("--private", action="store_true", help="Create the repo private (no effect if it exists).")
    parser.add_argument("--token", help="Hub write token (default: HF_TOKEN or `hf auth login`).")
    parser.add_argument("--message", help="Commit message.")


def push(args: argparse.Namespace) -> None:
    """Upload an output folder (model, card, metrics; not checkpoints) to the Hub in one commit."""
    from .hub import push_output

    print(push_output(args.output_dir, args.repo_id, private=args.private, token=args.token, commit_message=args.message))


def _card_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("output_dir", help="A finished recipe's output folder.")
    parser.add_argument("--repo-id", help="Repo id for the card's usage snippets.")
    parser.add_argument("--template", help="A Jinja card template to use instead of the built-in one.")


def card(args: argparse.Namespace) -> None:
    """Re-render README.md (and training_curves.png) from the run's card_inputs.json and results files."""
    from .hub import render_card

    print(render_card(args.output_dir, repo_id=args.repo_id, template_path=args.template))


def _rank_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True, help="Candidate checkpoints: built-ins, Hub ids or folders.")
    parser.add_argument("--dataset", required=True, help="Target dataset: built-in, Hub id, folder or file.")
    parser.add_argument("--split", default="train", help="Split to score on (default: train).")
    parser.add_argument("--max-samples", "--max_samples", type=int, dest="max_samples", help="Score a random subset.")
    parser.add_argument("--image_size", "--image-size", type=int, dest="image_size", help="Input size for timm models.")
    parser.add_argument("--batch_size", "--batch-size", type=int, dest="batch_size", default=64)
    parser.add_argument("--seed", type=int, default=0, help="Seed of the --max-samples subset.")
    parser.add_argument("--output", default="ranking.json", help="JSON file for the scores (default: ranking.json).")


def rank(args: argparse.Namespace) -> None:
    """Rank candidate checkpoints for a dataset by transferability scores (LogME, H-score, LEEP, NCE)."""
    from .selection import format_ranking_table, rank_checkpoints

    result = rank_checkpoints(
        args.models, args.dataset, split=args.split, max_samples=args.max_samples, batch_size=args.batch_size,
        image_size=args.image_size, seed=args.seed, output=args.output,
    )
    print(format_ranking_table(result))
    print(f"wrote {args.output}")


def _interpolate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pretrained", required=True, help="The checkpoint the fine-tuned model started from.")
    parser.add_argument("--finetuned", required=True, help="A fine-tuned output folder.")
    parser.add_argument("--alphas", nargs="+", type=float, default=[0, 0.25, 0.5, 0.75, 1.0],
                        help="Mixing weights: 0 = pretrained backbone, 1 = fine-tuned.")
    parser.add_argument("--eval", nargs="+", required=True, dest="eval_datasets", help="Datasets to evaluate on (test split).")
    parser.add_argument("--select-on", "--select_on", dest="select_on",
                        help="Eval dataset whose validation split picks alpha (default: the first --eval).")
    parser.add_argument("--metric", default="accuracy", help="Metric to pick alpha by (default: accuracy).")
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", default="outputs/interpolation",
                        help="Where the chosen model, interpolation.json and interpolation.png go.")
    parser.add_argument("--max_eval_samples", "--max-eval-samples", type=int, dest="max_eval_samples")
    parser.add_argument("--batch_size", "--batch-size", type=int, dest="batch_size", default=128)
    parser.add_argument("--seed", type=int, default=42, help="Seed of the train/validation/test split (recipes: 42).")
    parser.add_argument("--overwrite_output_dir", "--overwrite-output-dir", dest="overwrite", action="store_true",
                        help="Replace an earlier interpolation in --output_dir (only once the new one is complete).")


def interpolate(args: argparse.Namespace) -> None:
    """WiSE-FT: evaluate pretrained/fine-tuned weight interpolations and save the best one."""
    from .weights import interpolate as run_interpolation

    run_interpolation(
        args.pretrained, args.finetuned, args.alphas, args.eval_datasets, output_dir=args.output_dir,
        select_on=args.select_on, metric=args.metric, batch_size=args.batch_size,
        max_eval_samples=args.max_eval_samples, seed=args.seed, overwrite=args.overwrite,
    )
    print(f"wrote {args.output_dir}")


def _compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="Recipe file, e.g. recipes/image_cls.py.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="Seeds; each runs both starts.")
    parser.add_argument("--metric", default="accuracy", help="Test metric to compare (default: accuracy).")
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", default="outputs/compare",
                        help="One subfolder per run, plus comparison.json and learning_curves.png.")
    parser.add_argument("--samples_per_class", "--samples-per-class", dest="samples_per_class", nargs="+", type=int,
                        help="Labelled examples per class; several counts (e.g. 5 10 50) draw the label-efficiency "
                             "curve (label_efficiency.json/.png, a verdict per count and the crossing point).")
    parser.set_defaults(passes_unknown_args=True)  # every other flag goes to the recipe


def compare(args: argparse.Namespace) -> None:
    """Transfer vs scratch: run a recipe from the pretrained start and from random init, per seed."""
    from .compare import compare_label_counts, compare_transfer, load_recipe_main

    extra = [a for a in getattr(args, "unknown_args", []) if a != "--"]
    counts = args.samples_per_class or []
    if len(counts) > 1:
        compare_label_counts(load_recipe_main(args.recipe), extra, args.seeds, counts, output_dir=args.output_dir,
                             metric=args.metric)
        return
    if counts:
        extra += ["--samples_per_class", str(counts[0])]
    compare_transfer(load_recipe_main(args.recipe), extra, args.seeds, output_dir=args.output_dir, metric=args.metric)


def _shift_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="Checkpoint whose frozen features compare the domains.")
    parser.add_argument("--source", required=True, help="Source dataset: built-in, Hub id, folder or file.")
    parser.add_argument("--target", required=True, help="Target dataset (its labels are not read).")
    parser.add_argument("--source-split", "--source_split", dest="source_split", default="train")
    parser.add_argument("--target-split", "--target_split", dest="target_split", default="train")
    parser.add_argument("--max-samples", "--max_samples", type=int, dest="max_samples", default=1000,
                        help="Examples of each domain (a seeded random subset; default 1000).")
    parser.add_argument("--image_size", "--image-size", type=int, dest="image_size", help="Input size for timm models.")
    parser.add_argument("--batch_size", "--batch-size", type=int, dest="batch_size", default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="shift.json", help="JSON file for the result (default: shift.json).")


def shift(args: argparse.Namespace) -> None:
    """Measure the source -> target domain shift (proxy A-distance, MMD) and say whether adaptation is worth trying."""
    from .shift import domain_shift, format_shift

    result = domain_shift(args.model, args.source, args.target, source_split=args.source_split,
                          target_split=args.target_split, max_samples=args.max_samples, image_size=args.image_size,
                          batch_size=args.batch_size, seed=args.seed, output=args.output)
    print(format_shift(result))
    print(f"wrote {args.output}")


def _advise_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", nargs="+", required=True, help="Candidate checkpoints: built-ins, Hub ids or folders.")
    parser.add_argument("--dataset", required=True, help="Labelled dataset: built-in, Hub id, folder or file.")
    parser.add_argument("--target", help="Unlabelled target domain: measure the shift and say whether to adapt.")
    parser.add_argument("--recipe", help="Recipe for the short fine-tunes (default: recipes/image_cls.py or "
                                         "recipes/text_cls.py, by the first model's modality). Every flag advise does "
                                         "not know goes to the recipe, e.g. --num_train_epochs 8 --learning_rate 1e-3.")
    parser.add_argument("--samples_per_class", "--samples-per-class", dest="samples_per_class", type=int)
    parser.add_argument("--max_train_samples", "--max-train-samples", dest="max_train_samples", type=int)
    parser.add_argument("--image_size", "--image-size", dest="image_size", type=int, help="Input size for every timm model.")
    parser.add_argument("--image_sizes", "--image-sizes", dest="image_sizes", nargs="+", type=int,
                        help="One input size per --models entry (the same checkpoint may be tried at two sizes).")
    parser.add_argument("--probe_top", "--probe-top", dest="probe_top", type=int, default=3,
                        help="Candidates that get a short fine-tune (default 3).")
    parser.add_argument("--probe_steps", "--probe-steps", dest="probe_steps", type=int, default=20,
                        help="Optimizer steps of each short fine-tune (default 20).")
    parser.add_argument("--max_samples", "--max-samples", dest="max_samples", type=int, default=1000,
                        help="Examples per split for scores and linear probes (default 1000).")
    parser.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42, help="Seed of the data split and the runs (recipes: 42).")
    parser.add_argument("--output_dir", "--output-dir", dest="output_dir", default="outputs/advise")
    parser.add_argument("--overwrite_output_dir", "--overwrite-output-dir", dest="overwrite", action="store_true",
                        help="Replace an earlier advice in --output_dir (only once the new one is complete).")
    parser.add_argument("--launch", action="store_true", help="Then run the recommended recipe with the full budget.")
    parser.set_defaults(passes_unknown_args=True)  # every other flag goes to the recipe


def advise(args: argparse.Namespace) -> None:
    """Recommend a checkpoint and a strategy from scores, linear probes and short fine-tunes (and whether to adapt)."""
    from .advise import advise as run_advice, default_recipe
    from .recipes import load_recipe

    if args.image_size is not None and args.image_sizes is not None:
        raise HFTransferError("pass --image_size (one for all) or --image_sizes (one per model), not both")
    sizes = args.image_sizes or ([args.image_size] * len(args.models) if args.image_size else None)
    recipe = load_recipe(args.recipe or default_recipe(args.models[0]))
    timm_size = getattr(recipe, "FAMILY_DEFAULTS", {}).get("timm", {}).get("image_size")  # what the recipe trains at
    run_advice(recipe.main, args.models, args.dataset, default_image_size=timm_size,
               recipe_argv=[a for a in args.unknown_args if a != "--"], image_sizes=sizes,
               samples_per_class=args.samples_per_class, max_train_samples=args.max_train_samples, target=args.target,
               probe_top=args.probe_top, probe_steps=args.probe_steps, max_samples=args.max_samples,
               batch_size=args.batch_size, seed=args.seed, output_dir=args.output_dir, overwrite=args.overwrite,
               launch=args.launch)
    print(f"wrote {args.output_dir}")


def recipes(args: argparse.Namespace) -> None:
    """List the recipes (recipes/*.py): name, what it does, how to launch it."""
    from .recipes import RECIPES_DIR, recipe_names, recipe_summary

    names = recipe_names()
    if not names:
        raise HFTransferError(f"no recipes found in {RECIPES_DIR}; run hftransfer from a source checkout (pip install -e .)")
    width = max(map(len, names))
    for name in names:
        print(f"{name:<{width}}  {recipe_summary(name)}\n{'':<{width}}  accelerate launch recipes/{name}.py --help")


def _recipes_arguments(parser: argparse.ArgumentParser) -> None:
    pass


COMMANDS = {
    "push": (push, _push_arguments),
    "card": (card, _card_arguments),
    "rank": (rank, _rank_arguments),
    "interpolate": (interpolate, _interpolate_arguments),
    "compare": (compare, _compare_arguments),
    "shift": (shift, _shift_arguments),
    "advise": (advise, _advise_arguments),
    "recipes": (recipes, _recipes_arguments),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hftransfer", description="Transfer learning on the Hugging Face stack.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (run, add_arguments) in COMMANDS.items():
        summary = (run.__doc__ or "").strip().splitlines()[0]
        # no prefix matching: a recipe flag such as --model must never be read as advise's --models
        add_arguments(subcommands.add_parser(name, help=summary, description=summary, allow_abbrev=False))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input or a failed Hub call prints `error: <one line>` and returns exit status 2."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and not getattr(args, "passes_unknown_args", False):
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.unknown_args = unknown  # a subcommand that passes_unknown_args hands them on (compare: to the recipe)
    try:
        COMMANDS[args.command][0](args)
    except HFTransferError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
