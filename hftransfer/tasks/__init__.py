"""Tasks: what the package-wide code (model card, final summary line) needs to know about each task, in one registry,
and the task modules (e.g. `hftransfer.tasks.token_classification`: data, label alignment, model class, metrics),
each imported only by the recipe that runs it. Strategies, loss components, the trainer, selection and the Hub code
stay task-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import Registry

_MACRO = {"accuracy": "Accuracy", "f1": "F1 (macro)", "precision": "Precision (macro)", "recall": "Recall (macro)"}


@dataclass(frozen=True)
class Task:
    title: str  # the card's task name
    metrics: dict[str, str]  # metric key (as in <split>_results.json) -> its title in the card, in table order
    average: str  # how f1/precision/recall average (the card metadata's metric_args)
    summary: tuple[str, str]  # (metric key, words) of the score the final `done:` line reports
    example: str  # what the card's usage snippet passes to the pipeline
    architecture_suffix: str  # the saved config's architecture ends with this (e.g. ForTokenClassification)
    recipe: str  # the recipe that runs it (named when a dataset of this task is given to another recipe)
    datasets: str = "classification"  # the kind of built-in dataset it reads (`BuiltinDataset.task`)
    module: str | None = None  # the task module, when it registers built-in datasets of its own
    metrics_note: str = "Precision, recall and F1 are macro averages over classes."  # under the card's results


TASKS: Registry[Task] = Registry("task")
TASKS.register("image-classification", Task(
    "Image Classification", _MACRO, "macro", ("accuracy", "accuracy"), '"path/to/image.png"',
    "ForImageClassification", "recipes/image_cls.py",
))
TASKS.register("text-classification", Task(
    "Text Classification", _MACRO, "macro", ("accuracy", "accuracy"), '"I love this!"', "ForSequenceClassification",
    "recipes/text_cls.py",
))
TASKS.register("token-classification", Task(
    "Token Classification",
    # entities scored as conlleval does (micro over entities); accuracy over the tagged words
    {"f1": "Entity F1 (micro)", "precision": "Entity precision (micro)", "recall": "Entity recall (micro)",
     "accuracy": "Word accuracy"},
    "micro", ("f1", "entity F1"), '"Ada Lovelace was born in London", aggregation_strategy="simple"',
    "ForTokenClassification", "recipes/token_cls.py", "token-classification", "hftransfer.tasks.token_classification",
    metrics_note="Entity precision, recall and F1 are micro averages over entities, an entity counting when its type and every "
    "word match (conlleval); word accuracy is over the tagged words.",
))


def task_of(config) -> str:
    """The registered task a saved model's config belongs to: by its architecture, else image/text classification."""
    from ..models.loading import modality_of

    for architecture in getattr(config, "architectures", None) or []:
        for name in TASKS.names():
            if architecture.endswith(TASKS.get(name).architecture_suffix):
                return name
    return "image-classification" if modality_of(config) == "image" else "text-classification"


def recipes_reading(builtin_dataset: str) -> tuple[str, list[str]] | None:
    """(kind, recipes) of a built-in dataset of any task, or None if no task has it. Task modules that register
    built-ins are imported here, on this path only (a recipe imports just its own task)."""
    import importlib

    from ..data.builtin import BUILTIN_DATASETS

    for name in TASKS.names():
        if TASKS.get(name).module:
            importlib.import_module(TASKS.get(name).module)
    if builtin_dataset not in BUILTIN_DATASETS:
        return None
    kind = BUILTIN_DATASETS.get(builtin_dataset).task
    return kind, [TASKS.get(n).recipe for n in TASKS.names() if TASKS.get(n).datasets == kind]
