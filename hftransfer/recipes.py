"""The recipe index: the scripts in recipes/ by name, and the one loader the CLI, tests and benchmarks share.

A recipe is a script (`accelerate launch recipes/image_cls.py`) with `main(argv)` and its `DEFAULTS`; adding
`recipes/<name>.py` is all it takes to be listed by `hftransfer recipes` and loadable as `load_recipe("<name>")`.
Its `parse(argv)` and `build(args)` give the trainer `main` would train (`build_recipe`), for benchmarks and tests.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from .errors import ConfigError

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"


def recipe_names() -> list[str]:
    """Every recipe in recipes/ (a script with a main function), by name."""
    if not RECIPES_DIR.is_dir():
        return []
    return sorted(p.stem for p in RECIPES_DIR.glob("*.py") if not p.stem.startswith("_") and _defines_main(p))


def recipe_path(recipe: str | Path) -> Path:
    """A recipe's file from its name ("image_cls") or its path ("recipes/image_cls.py")."""
    path = Path(recipe)
    if path.suffix != ".py" and "/" not in str(recipe):
        path = RECIPES_DIR / f"{recipe}.py"
        if not path.is_file():
            raise ConfigError(f"unknown recipe {str(recipe)!r}; choose one of: {', '.join(recipe_names()) or '(none)'} "
                              "(`hftransfer recipes` lists them), or pass a recipe file")
    if not path.is_file():
        raise ConfigError(f"recipe {str(recipe)!r} does not exist; pass a recipe file such as recipes/image_cls.py")
    return path


_loaded: dict[Path, ModuleType] = {}


def load_recipe(recipe: str | Path) -> ModuleType:
    """Import a recipe in-process (once per file): its `main(argv)`, `DEFAULTS` and, where it has them,
    `FAMILY_DEFAULTS`."""
    path = recipe_path(recipe).resolve()
    if path not in _loaded:
        spec = importlib.util.spec_from_file_location(f"_hftransfer_recipe_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        if not callable(getattr(module, "main", None)):
            raise ConfigError(f"recipe {str(recipe)!r} has no main(argv) function; a recipe defines main(argv)")
        _loaded[path] = module
    return _loaded[path]


def recipe_summary(recipe: str | Path) -> str:
    """The first paragraph of a recipe's docstring as one line, read without running the recipe."""
    docstring = (ast.get_docstring(ast.parse(recipe_path(recipe).read_text())) or "").strip()
    return " ".join(docstring.split("\n\n")[0].split())


def _defines_main(path: Path) -> bool:
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in ast.parse(path.read_text()).body)


@dataclass
class RecipeRun:
    """What a recipe's `build(args)` returns: everything its `main` trains, evaluates and writes; nothing trained and
    no file written yet. Benchmarks and tests take the trainer (or, with `build(args, trainer=False)`, the same
    model, data and collator without one) from here instead of wiring the recipe again."""

    args: tuple  # the parsed argument dataclasses, in the order of the recipe's parse()
    data: Any  # the loaded dataset (its name and label names go on the card)
    loaded: Any  # hftransfer.models.LoadedModel: the model and its processor
    splits: dict  # prepared "train", "validation" and "test" splits
    collator: Callable | None = None  # None: transformers' default_data_collator
    trainer: Any = None  # the TransferTrainer; None after build(args, trainer=False)
    extra: dict = field(default_factory=dict)  # what one recipe alone needs later (domain_adapt: target, shift)

    @property
    def training_args(self):
        return self.args[-1]

    def train_evaluate_save(self, resume_checkpoint: str | None = None) -> None:
        """Train (or resume), then save the train metrics, the selected weights' validation and test scores
        (`eval_results.json`, `test_results.json`) and the model, as every classification recipe's main() does."""
        trainer = self.trainer
        train_result = trainer.train(resume_from_checkpoint=resume_checkpoint)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_metrics("eval", trainer.evaluate())
        trainer.save_metrics("test", trainer.evaluate(self.splits["test"], metric_key_prefix="test"))
        trainer.save_model()


def build_recipe(recipe: str | Path, argv: list[str] | None = None, *, trainer: bool = True) -> RecipeRun:
    """Parse `argv` as the recipe's command line would and build its run (recipe.build(recipe.parse(argv)))."""
    module = load_recipe(recipe)
    if not callable(getattr(module, "build", None)):
        raise ConfigError(f"recipe {str(recipe)!r} has no build(args) function; give it one (see recipes/image_cls.py)")
    return module.build(module.parse(argv), trainer=trainer)
