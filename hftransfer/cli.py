"""The `hftransfer` console command: one small function per subcommand, listed in COMMANDS.

    hftransfer push outputs/image_cls --repo-id me/effnet-digits [--private] [--token hf_...]
    hftransfer card outputs/image_cls [--repo-id me/effnet-digits]

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


COMMANDS = {
    "push": (push, _push_arguments),
    "card": (card, _card_arguments),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hftransfer", description="Transfer learning on the Hugging Face stack.")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (run, add_arguments) in COMMANDS.items():
        summary = (run.__doc__ or "").strip().splitlines()[0]
        add_arguments(subcommands.add_parser(name, help=summary, description=summary))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; bad input or a failed Hub call prints `error: <one line>` and returns exit status 2."""
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command][0](args)
    except HFTransferError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
