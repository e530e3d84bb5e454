"""Weight-space tools: WiSE-FT interpolation between a pretrained and a fine-tuned model (Wortsman et al., CVPR 2022).

theta(alpha) = (1 - alpha) theta_pretrained + alpha theta_finetuned on the backbone; the head always comes from the
fine-tuned model (the pretrained one has none for this task). alpha = 1 is the fine-tuned model bit for bit, alpha = 0
the pretrained backbone under the fine-tuned head; values in between often keep more robustness to distribution shift.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Mapping

import torch
from transformers import TrainerCallback

from .errors import ConfigError, DataError, ModelLoadError

__all__ = [
    "WiSEFTCallback", "check_alphas", "choose_wise_ft", "head_state_keys", "interpolate", "interpolate_state_dicts",
    "plot_interpolation",
]


def interpolate_state_dicts(
    pretrained_sd: Mapping[str, torch.Tensor],
    finetuned_sd: Mapping[str, torch.Tensor],
    alpha: float,
    *,
    finetuned_keys: Iterable[str] = (),
) -> dict[str, torch.Tensor]:
    """(1 - alpha) pretrained + alpha finetuned for floating tensors present in both with equal shapes.

    Everything else comes from the fine-tuned model unchanged (the same tensor objects): keys listed in
    ``finetuned_keys`` (the head), keys the pretrained model lacks or has with another shape, and integer buffers
    such as BatchNorm's num_batches_tracked. Keys only in ``pretrained_sd`` are dropped. alpha = 1 returns the
    fine-tuned tensors themselves; alpha = 0 the pretrained values (in the fine-tuned dtype).
    """
    check_alphas([alpha])
    keep = set(finetuned_keys)
    out: dict[str, torch.Tensor] = {}
    for key, ft in finetuned_sd.items():
        pre = pretrained_sd.get(key)
        if (
            key in keep or pre is None or pre.shape != ft.shape
            or not ft.is_floating_point() or not pre.is_floating_point() or alpha == 1
        ):
            out[key] = ft
        elif alpha == 0:
            out[key] = pre.detach().to(device=ft.device, dtype=ft.dtype)
        else:  # mix in float32 at least, so half-precision weights do not lose the small difference
            dtype = torch.promote_types(ft.dtype, torch.float32)
            mixed = (1 - alpha) * pre.detach().to(ft.device, dtype) + alpha * ft.detach().to(dtype)
            out[key] = mixed.to(ft.dtype)
    return out


def check_alphas(alphas: Iterable[float]) -> None:
    for alpha in alphas:
        if not math.isfinite(alpha):
            raise ConfigError(f"alpha must be a finite number, got {alpha}")


def _mixed_fraction(pretrained_sd: Mapping, finetuned_sd: Mapping, finetuned_keys: set[str]) -> float:
    """Share of the fine-tuned floating-point entries that interpolation actually mixes (0: unrelated models)."""
    total = mixed = 0
    for key, ft in finetuned_sd.items():
        if not ft.is_floating_point() or key in finetuned_keys:
            continue
        total += ft.numel()
        pre = pretrained_sd.get(key)
        if pre is not None and pre.shape == ft.shape and pre.is_floating_point():
            mixed += ft.numel()
    return mixed / max(1, total)


def head_state_keys(model) -> set[str]:
    """state_dict keys of the new head (parameters and buffers: every module the checkpoint initialised afresh, e.g.
    DistilBERT's pre_classifier and classifier), which interpolation leaves fine-tuned."""
    from .models.groups import head_module_names

    heads = head_module_names(model)
    return {key for key in model.state_dict() if any(key.startswith(head + ".") for head in heads)}


# ----------------------------------------------------------------------------------------------- whole workflow


def _alpha_key(alpha: float) -> str:
    return f"{alpha:g}"


def interpolate(
    pretrained: str,
    finetuned: str,
    alphas: Iterable[float],
    eval_datasets: list[str],
    *,
    output_dir: str | Path | None = None,
    select_on: str | None = None,
    metric: str = "accuracy",
    batch_size: int = 128,
    max_eval_samples: int | None = None,
    seed: int = 42,
    trust_remote_code: bool = False,
    overwrite: bool = False,
) -> dict:
    """Evaluate theta(alpha) for each alpha on each eval dataset's test split; save the chosen alpha.

    alpha is chosen on the *validation* split of ``select_on`` (default: the first eval dataset), so the reported
    test numbers are not selected on test. Data splits use ``seed`` (42 = the recipes' default), so a dataset the
    model was fine-tuned on gets the same held-out test split as in the recipe.
    """
    from transformers import AutoConfig

    from .data.loading import load_classification_data
    from .features import evaluate_classifier, prepare_eval_split
    from .models.loading import load_classifier, modality_of, resolve_model_source

    alphas = [float(a) for a in alphas]
    if not alphas:
        raise ConfigError("pass at least one alpha, e.g. --alphas 0 0.25 0.5 0.75 1")
    if not eval_datasets:
        raise ConfigError("pass at least one dataset to evaluate on, e.g. --eval mnist5k")
    if output_dir is not None and Path(output_dir).resolve() == Path(finetuned).expanduser().resolve():
        raise ConfigError("--output_dir is the fine-tuned model's folder; choose another folder for the chosen model")
    if output_dir is not None:
        from .outputs import check_output_folder

        check_output_folder(Path(output_dir), overwrite=overwrite, resume=None)  # before any model is loaded
    select_on = select_on or eval_datasets[0]
    if select_on not in eval_datasets:
        raise ConfigError(f"--select-on {select_on!r} must be one of the --eval datasets ({', '.join(eval_datasets)})")

    config = AutoConfig.from_pretrained(resolve_model_source(finetuned), trust_remote_code=trust_remote_code)
    label_names = [config.id2label[i] for i in range(config.num_labels)]
    modality = modality_of(config)
    ft = load_classifier(finetuned, label_names, modality, trust_remote_code=trust_remote_code)
    image_size = None
    if ft.model.config.model_type == "timm_wrapper":
        image_size = int(ft.model.config.pretrained_cfg["input_size"][-1])  # only sizes the config; weights are size-free
    # a model fine-tuned with the checkpoint's mean pooling built in (hftransfer.models.pooling_layer) has one encoder
    # layer more than its start: the start gets the same layer, as the recipe built it
    built_in_pooling = getattr(ft.model.config, "hftransfer_pooling_layer", None) is not None
    pre = load_classifier(pretrained, label_names, modality, image_size=image_size, trust_remote_code=trust_remote_code,
                          pooling="checkpoint" if built_in_pooling else "head")

    finetuned_sd = {k: v.detach().clone() for k, v in ft.model.state_dict().items()}
    pretrained_sd = {k: v.detach().clone() for k, v in pre.model.state_dict().items()}
    del pre
    head_keys = head_state_keys(ft.model)
    if _mixed_fraction(pretrained_sd, finetuned_sd, head_keys) < 0.5:
        raise ModelLoadError(
            f"{pretrained!r} and {finetuned!r} share less than half of their backbone weights; pass the checkpoint "
            "the fine-tuned model started from"
        )

    splits = {}  # (dataset, split) -> (prepared dataset, collate_fn)
    for name in eval_datasets:
        data = load_classification_data(name, modality, seed=seed, max_eval_samples=max_eval_samples)
        data = _align_labels(data, label_names)
        wanted = ("test", "validation") if name == select_on else ("test",)
        for split in wanted:
            splits[name, split] = prepare_eval_split(data, split, ft.processor, modality)

    rows = []
    for alpha in alphas:
        ft.model.load_state_dict(interpolate_state_dicts(pretrained_sd, finetuned_sd, alpha, finetuned_keys=head_keys))
        row = {"alpha": alpha}
        for (name, split), (dataset, collate) in splits.items():
            metrics = evaluate_classifier(ft.model, dataset, collate, batch_size=batch_size, desc=f"alpha={alpha:g} {name}")
            row.setdefault(split, {})[name] = metrics
        rows.append(row)

    # ties go to the larger alpha: interpolation must strictly beat the fine-tuned end to be chosen
    best = max(rows, key=lambda r: (r["validation"][select_on][metric], r["alpha"]))
    result = {
        "pretrained": pretrained,
        "finetuned": finetuned,
        "metric": metric,
        "alphas": alphas,
        "eval_datasets": eval_datasets,
        "split": "test",
        "table": {_alpha_key(r["alpha"]): r["test"] for r in rows},
        "selection": {
            "dataset": select_on, "split": "validation", "metric": metric, "alpha": best["alpha"],
            "validation": {_alpha_key(r["alpha"]): r["validation"][select_on][metric] for r in rows},
            "test": best["test"],
        },
    }
    print(format_interpolation_table(result))
    if output_dir is not None:
        from .models.saving import save_classifier
        from .outputs import staged_output

        ft.model.load_state_dict(interpolate_state_dicts(pretrained_sd, finetuned_sd, best["alpha"], finetuned_keys=head_keys))
        with staged_output(output_dir, overwrite=overwrite) as staged:
            out = staged.partial
            save_classifier(ft.model, ft.processor, out)
            test = best["test"][select_on]
            (out / "test_results.json").write_text(json.dumps(
                {**{f"test_{k}": v for k, v in test.items()}, "interpolation_alpha": best["alpha"]}, indent=4
            ) + "\n")
            (out / "interpolation.json").write_text(json.dumps(result, indent=2) + "\n")
            plot_interpolation(result, out / "interpolation.png")
    return result


def _align_labels(data, label_names: list[str]):
    """Reorder an eval dataset's class ids to the model's; a different label set cannot be evaluated."""
    if data.label_names == label_names:
        return data
    if sorted(data.label_names) != sorted(label_names):
        raise DataError(
            f"dataset {data.name!r} has labels {data.label_names[:10]} but the model predicts {label_names[:10]}; "
            "evaluate on datasets with the same classes"
        )
    import dataclasses

    label2id = {name: i for i, name in enumerate(label_names)}
    splits = data.splits.align_labels_with_mapping(label2id, "label")
    return dataclasses.replace(data, splits=splits, label_names=list(label_names))


def format_interpolation_table(result: dict) -> str:
    metric, names = result["metric"], result["eval_datasets"]
    short = [Path(n).name if len(n) > 20 else n for n in names]  # a folder path as its last part
    width = max(10, *(len(n) for n in short))
    lines = [f"{'alpha':>6}  " + "  ".join(f"{n:>{width}}" for n in short) + f"   ({metric}, test split)"]
    for alpha, per_dataset in result["table"].items():
        mark = " *" if float(alpha) == result["selection"]["alpha"] else ""
        lines.append(f"{alpha:>6}  " + "  ".join(f"{per_dataset[n][metric]:>{width}.4f}" for n in names) + mark)
    sel = result["selection"]
    lines.append(f"* chosen: alpha={sel['alpha']:g} (best {metric} on {sel['dataset']} {sel['split']})")
    return "\n".join(lines)


def plot_interpolation(result: dict, path: str | Path) -> None:
    """Metric vs alpha, one line per eval dataset, the chosen alpha marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = result["metric"]
    alphas = [float(a) for a in result["table"]]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in result["eval_datasets"]:
        ax.plot(alphas, [result["table"][a][name][metric] for a in result["table"]], marker="o", label=name)
    ax.axvline(result["selection"]["alpha"], color="grey", linestyle="--", linewidth=1, label="chosen")
    ax.set_xlabel("alpha (0 = pretrained backbone, 1 = fine-tuned)")
    ax.set_ylabel(f"test {metric}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------- during training


def choose_wise_ft(trainer, pretrained_sd: Mapping[str, torch.Tensor], alphas: Iterable[float]) -> dict:
    """After training: evaluate theta(alpha) on the trainer's validation split and leave the model at the alpha with
    the best ``metric_for_best_model`` (ties go to the larger alpha). Writes ``wise_ft.json`` to output_dir."""
    args, model = trainer.args, trainer.model
    metric = (args.metric_for_best_model or "loss").removeprefix("eval_")
    greater = args.greater_is_better if args.greater_is_better is not None else not metric.endswith("loss")
    finetuned_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    head_keys = head_state_keys(model)
    scores = {}
    for alpha in dict.fromkeys(float(a) for a in alphas):
        model.load_state_dict(interpolate_state_dicts(pretrained_sd, finetuned_sd, alpha, finetuned_keys=head_keys))
        scores[alpha] = trainer.evaluate(metric_key_prefix="wise_ft")[f"wise_ft_{metric}"]
    best = max(scores, key=lambda a: (scores[a] if greater else -scores[a], a))
    model.load_state_dict(interpolate_state_dicts(pretrained_sd, finetuned_sd, best, finetuned_keys=head_keys))
    result = {"alpha": best, "metric": metric, "split": "validation",
              "validation": {_alpha_key(a): value for a, value in scores.items()}}
    if args.should_save:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "wise_ft.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


class WiSEFTCallback(TrainerCallback):
    """At the end of training, evaluate theta(alpha) on given prepared eval splits and record the results.

    ``eval_datasets``: name -> dataset yielding model inputs and ``labels`` (or name -> (dataset, collate_fn)).
    The model keeps its fine-tuned weights; results land in ``self.results`` and ``output_dir/wise_ft_eval.json``.
    To keep the best alpha instead, use ``--wise_ft_alphas`` (:func:`choose_wise_ft`).
    """

    def __init__(self, pretrained_state_dict: Mapping[str, torch.Tensor], alphas: Iterable[float], eval_datasets: Mapping,
                 *, batch_size: int = 128):
        self.pretrained_sd = {k: v.detach().clone() for k, v in pretrained_state_dict.items()}
        self.alphas = [float(a) for a in alphas]
        self.eval_datasets = dict(eval_datasets)
        self.batch_size = batch_size
        self.results: list[dict] = []

    @classmethod
    def from_model(cls, model, alphas: Iterable[float], eval_datasets: Mapping, **kwargs) -> "WiSEFTCallback":
        """Snapshot ``model`` before training as the pretrained end."""
        return cls(model.state_dict(), alphas, eval_datasets, **kwargs)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        from transformers import default_data_collator

        from .features import evaluate_classifier

        finetuned_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
        head_keys = head_state_keys(model)
        was_training = model.training
        self.results = []
        try:
            for alpha in self.alphas:
                model.load_state_dict(interpolate_state_dicts(self.pretrained_sd, finetuned_sd, alpha, finetuned_keys=head_keys))
                row = {"alpha": alpha}
                for name, entry in self.eval_datasets.items():
                    dataset, collate = entry if isinstance(entry, tuple) else (entry, default_data_collator)
                    row[name] = evaluate_classifier(model, dataset, collate, batch_size=self.batch_size,
                                                    desc=f"wise-ft alpha={alpha:g} {name}")
                self.results.append(row)
        finally:
            model.load_state_dict(finetuned_sd)
            model.train(was_training)
        if args.should_save:
            Path(args.output_dir).mkdir(parents=True, exist_ok=True)
            (Path(args.output_dir) / "wise_ft_eval.json").write_text(json.dumps(self.results, indent=2) + "\n")
