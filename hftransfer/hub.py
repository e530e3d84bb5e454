"""Model cards (huggingface_hub ModelCard + the model_cards/ Jinja template) and pushing a run's output to the Hub.

    write_model_card(out, base_model=..., datasets=[...], task="image-classification", ...)  # README.md + curves
    render_card(out)                        # re-render from out/card_inputs.json and the *_results.json files
    push_output(out, "me/model")            # one commit of publishable_files(out); its URL; failures raise HubError
    write_run_card(trainer, loaded, data)   # what a recipe calls after save_model() (card + training_args.json),
                                            # and then push_run(trainer), which pushes from the main process only
"""

from __future__ import annotations

import json
import os
import re
from importlib import metadata
from pathlib import Path

from .drift import LAYER_DRIFT, suggested_freeze_groups
from .errors import ConfigError, HubError
from .redact import is_hub_id, public_name, public_record, public_value, scrub, training_args_json
from .tasks import TASKS


TEMPLATE = Path(__file__).parent / "model_cards" / "model_card.md"
CARD = "README.md"
CARD_INPUTS = "card_inputs.json"  # everything the card was rendered from except results, already made public
CURVES = "training_curves.png"
TRAINING_ARGS = "training_args.json"  # the public record of the TrainingArguments; training_args.bin stays local
FRAMEWORKS = ("hftransfer", "torch", "transformers", "timm", "datasets", "accelerate", "huggingface_hub", "peft")
# What a push publishes: only files that hftransfer (or transformers/peft on its behalf) writes into a finished output
# folder, as found in the outputs of recipes/*.py and `hftransfer interpolate`. Everything else stays local:
# checkpoint-*/ (resume state: optimizer, RNG, absolute paths), runs/ (TensorBoard; the host name in its file names),
# training_args.bin (a pickle; training_args.json is its public record), and any file the user put in the folder.
PUSH_FILES = frozenset({
    # the model: save_pretrained / timm's Hub layout
    "config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
    # the processor: image processor, tokenizer (the vocabulary files transformers' tokenizers save)
    "preprocessor_config.json", "processor_config.json", "tokenizer.json", "tokenizer_config.json",
    "special_tokens_map.json", "added_tokens.json", "chat_template.jinja", "chat_template.json", "vocab.txt",
    "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "sentencepiece.model", "spm.model",
    "tokenizer.model", "bpe.codes",
    # the card (hftransfer.hub) and the run's records
    CARD, CARD_INPUTS, CURVES, TRAINING_ARGS, LAYER_DRIFT, "transfer_strategy.json", "wise_ft.json", "wise_ft_eval.json",
    "domain_shift.json",  # recipes/domain_adapt.py (hftransfer.shift)
    "train_results.json", "eval_results.json", "test_results.json", "target_test_results.json", "all_results.json",
    "interpolation.json", "interpolation.png",  # hftransfer interpolate
    # --strategy lora: the adapter itself (peft; safetensors only)
    "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "adapter/README.md",
})
_WEIGHT_SHARD = re.compile(r"^model-\d+-of-\d+\.safetensors$")  # save_pretrained's shards of a large model
# Text files hftransfer (or peft for it) writes: made public once more as they are pushed (absolute paths in JSON
# records, secrets, the home folder), for output folders written by older versions or by hand-run commands.
_PUBLIC_ON_PUSH = {CARD, CARD_INPUTS, TRAINING_ARGS, "transfer_strategy.json", "wise_ft.json", "wise_ft_eval.json",
                   "interpolation.json", "adapter/README.md", "adapter/adapter_config.json"}
_BUILTIN_MODEL_NAMES = {"efficientnet_lite0": "EfficientNet-Lite0 (ImageNet-1k)", "minilm": "all-MiniLM-L6-v2"}


# ---- card ----------------------------------------------------------------------------------------------------------


def write_model_card(
    output_dir: str | Path,
    *,
    base_model: str,
    datasets: list[str],
    task: str,
    strategy: dict | None = None,
    loss_components: list[dict] | None = None,
    training_args=None,
    results: dict[str, dict] | None = None,
    log_history: list[dict] | None = None,
    layer_drift: list[dict] | None = None,
    extra: dict | None = None,
    license: str = "apache-2.0",
    model_name: str | None = None,
    repo_id: str | None = None,
    template_path: str | Path | None = None,
) -> Path:
    """Write README.md (and training_curves.png, card_inputs.json) into output_dir; returns the README path.

    `results` maps a split label to its metrics as in `<label>_results.json` ({"test": {"test_accuracy": ...}});
    labels starting with `target_` are scored on the last of `datasets`, all others on the first.
    """
    if task not in TASKS:
        raise ConfigError(f"unknown card task {task!r}; use one of {', '.join(TASKS.names())}")
    out = Path(output_dir)
    secrets = _secrets(training_args)
    inputs = {
        "model_name": model_name or _folder_name(repo_id or os.path.abspath(out)),
        "base_model": _public_source(base_model),
        "datasets": [_public_source(d) for d in datasets],
        "task": task,
        "strategy": public_value(strategy or describe_strategy(None)),
        "loss_components": public_value(list(loss_components or [])),
        "hyperparameters": hyperparameters(training_args) if training_args is not None else {},
        "extra": public_value(dict(extra or {})),
        "license": license,
        "repo_id": repo_id,
        "framework_versions": framework_versions(),
        "log_history": [{k: v for k, v in e.items() if isinstance(v, (int, float))} for e in log_history or []],
        "layer_drift": list(layer_drift or []),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD_INPUTS).write_text(scrub(json.dumps(inputs, indent=2), secrets) + "\n")
    return _render(out, inputs, results or {}, template_path, secrets)


def render_card(output_dir: str | Path, *, repo_id: str | None = None, template_path: str | Path | None = None) -> Path:
    """Re-render README.md from card_inputs.json and the current *_results.json files (e.g. after re-evaluation)."""
    out = Path(output_dir)
    try:
        inputs = json.loads((out / CARD_INPUTS).read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"{out} has no {CARD_INPUTS}; pass the output_dir of a finished hftransfer recipe run"
        ) from None
    if repo_id:
        inputs["repo_id"] = repo_id
        (out / CARD_INPUTS).write_text(json.dumps(inputs, indent=2) + "\n")
    return _render(out, inputs, read_results(out), template_path, _secrets(None))


def read_results(output_dir: str | Path) -> dict[str, dict]:
    """{label: metrics} from every `<label>_results.json` but train/all: validation first, then test, then the rest."""
    files = {p.name.removesuffix("_results.json"): p for p in Path(output_dir).glob("*_results.json")}
    order = {"eval": 0, "test": 1}
    labels = sorted((k for k in files if k not in ("train", "all")), key=lambda k: (order.get(k, 2), k))
    return {label: json.loads(files[label].read_text()) for label in labels}


def _render(out: Path, inputs: dict, results: dict, template_path, secrets: list) -> Path:
    from huggingface_hub import ModelCard, ModelCardData

    task, datasets = inputs["task"], inputs["datasets"]
    base = inputs["base_model"]
    eval_results, rows = _results(task, datasets, results)
    confused = {f"loss_{c['name']}": c["confused_loss"] for c in inputs["loss_components"] if "confused_loss" in c}
    curves = CURVES if plot_training_curves(inputs["log_history"], out / CURVES, confused=confused) else None
    timm = _is_timm_folder(out)
    tags = [task, "hftransfer", "transfer-learning", inputs["strategy"]["name"]]
    tags += [c["name"] for c in inputs["loss_components"]] + (["timm"] if timm else [])
    tags += [_slug(base["display"])] if base["kind"] == "builtin" else []
    hub_datasets = [d["name"] for d in datasets if d["kind"] == "hub"]
    card_data = ModelCardData(
        model_name=inputs["model_name"],
        base_model=base["name"] if base["kind"] == "hub" else None,
        datasets=hub_datasets or None,
        library_name="transformers",
        license=inputs["license"],
        pipeline_tag=task,
        tags=list(dict.fromkeys(tags)),
        metrics=list(TASKS.get(task).metrics),
        eval_results=eval_results or None,
    )
    strategy = dict(inputs["strategy"])
    phases = strategy.pop("phases", None) or []
    details = [(k, _fmt(v)) for k, v in strategy.items() if k not in ("name", "description")]
    headline = next((r for r in rows if r["label"] == "test"), rows[0] if rows else None)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path or TEMPLATE),
        model_name=inputs["model_name"],
        task=task,
        task_title=TASKS.get(task).title,
        example=TASKS.get(task).example,
        metrics_note=TASKS.get(task).metrics_note,
        layer_drift=[{**row, "relative_change": f"{row['relative_change']:.4f}", "parameters": f"{row['parameters']:,d}"}
                     for row in inputs.get("layer_drift", [])],
        suggested_freeze_groups=suggested_freeze_groups(inputs.get("layer_drift", [])),
        base_model_display=base["display"],
        base_model_phrase=_source_phrase(base, "model"),
        datasets_phrase=" and ".join(_source_phrase(d, "dataset") for d in datasets),
        strategy=inputs["strategy"],
        strategy_details=details,
        strategy_phases=[_fmt(p) for p in phases],
        loss_components=[
            {"name": c["name"], "weight": _fmt(c.get("weight", 1.0)),
             "details": [(k, _fmt(v)) for k, v in c.items() if k not in ("name", "weight")]}
            for c in inputs["loss_components"]
        ],
        extra=[(k, _fmt(v)) for k, v in inputs["extra"].items()],
        headline=headline and {
            "split": headline["split"], "dataset": headline["dataset"],
            "metrics": [(t, v) for t, v in zip(headline["titles"], headline["cells"]) if v != "–"],
        },
        metric_titles=rows[0]["titles"] if rows else [],
        results=rows,
        hyperparameters=[(k, _fmt(v)) for k, v in inputs["hyperparameters"].items()],
        curves=curves,
        timm=timm,
        repo_id=inputs.get("repo_id") or f"<your-username>/{inputs['model_name']}",
        framework_versions=list(inputs["framework_versions"].items()),
    )
    path = out / CARD
    path.write_text(scrub(str(card), secrets) + "\n", encoding="utf-8")
    return path


def _results(task: str, datasets: list[dict], results: dict[str, dict]):
    """EvalResults for the card metadata (one per metric, dataset and split) and rows for the results table."""
    from huggingface_hub import EvalResult

    eval_results, rows = [], []
    names, average = TASKS.get(task).metrics, TASKS.get(task).average
    titles = list(names.values()) + ["Loss"]
    for label, metrics in results.items():
        dataset = datasets[-1] if label.startswith("target_") else datasets[0]
        split = label.removeprefix("target_").removeprefix("source_")
        split = "validation" if split == "eval" else split
        values = {m: metrics.get(f"{label}_{m}", metrics.get(m)) for m in list(names) + ["loss"]}
        if all(values[m] is None for m in names):
            continue
        for metric, title in names.items():
            if values[metric] is None:
                continue
            eval_results.append(EvalResult(
                task_type=task, task_name=TASKS.get(task).title, dataset_type=dataset["name"],
                dataset_name=dataset["display"], dataset_split=split, metric_type=metric, metric_name=title,
                metric_value=values[metric], metric_args=None if metric == "accuracy" else {"average": average},
            ))
        rows.append({
            "label": label, "split": label.replace("_", " ").replace("eval", "validation"),
            "dataset": dataset["display"], "titles": titles,
            "cells": ["–" if v is None else f"{v:.4f}" for v in values.values()],
        })
    return eval_results, rows


def _public_source(name: str) -> dict:
    """A model/dataset name as the card may show it: kind hub | builtin | local | other, never a local path."""
    from .data.builtin import BUILTIN_DATASETS
    from .models.builtin import BUILTIN_MODELS

    if name in BUILTIN_MODELS:
        return {"name": name, "kind": "builtin", "display": _BUILTIN_MODEL_NAMES.get(name, name)}
    if name in BUILTIN_DATASETS:
        description = BUILTIN_DATASETS.get(name).description.split(",")[0]
        return {"name": name, "kind": "builtin", "display": description or name}
    if is_hub_id(name):
        return {"name": name, "kind": "hub", "display": name}
    shown = public_name(name)
    return {"name": shown, "kind": "local" if shown != name else "other", "display": shown}


def _source_phrase(source: dict, what: str) -> str:
    if source["kind"] == "hub":
        prefix = "" if what == "model" else "datasets/"
        return f"[{source['name']}](https://huggingface.co/{prefix}{source['name']})"
    if source["kind"] == "builtin":
        return f"{source['display']}, an hftransfer built-in (`{source['name']}`)"
    return f"a local {what}, {source['display']}"


def describe_strategy(strategy) -> dict:
    """A strategy object as card data: its own `describe()` dict if it has one, else its name."""
    if strategy is None:
        return {"name": "full", "description": "every parameter trained with one learning rate"}
    info = dict(strategy.describe()) if callable(getattr(strategy, "describe", None)) else {}
    info = {"name": getattr(strategy, "name", type(strategy).__name__), **info}
    phases = [_phase_text(p) for p in getattr(strategy, "phases", None) or []]
    return {k: v for k, v in info.items() if v is not None} | ({"phases": phases} if phases else {})


def _phase_text(phase) -> str:
    """A strategy Phase (start_step, trainable groups, lr scales) as one line of the card."""
    if not hasattr(phase, "start_step"):
        return str(phase)
    scales = {k: v for k, v in (phase.lr_scales or {}).items() if v != 1}
    text = f"from step {phase.start_step}: train {', '.join(phase.trainable) or 'nothing'}"
    return text + (f" (lr scales {', '.join(f'{k} x{_fmt(v)}' for k, v in scales.items())})" if scales else "")


def describe_component(component) -> dict:
    """A loss component as card data: its name and every option of its config class (LossComponent.describe)."""
    return dict(component.describe())


def hyperparameters(args) -> dict:
    """The training arguments a reader needs to reproduce a run: transformers' own card rows
    (`extract_hyperparameters_from_trainer`), plus what a transfer run also depends on."""
    import copy
    from types import SimpleNamespace

    from transformers.modelcard import extract_hyperparameters_from_trainer

    readable = copy.copy(args)
    if isinstance(args.lr_scheduler_type, str):  # our own schedules (annealing, step) are names, not transformers' enum
        readable.lr_scheduler_type = SimpleNamespace(value=args.lr_scheduler_type)
    rows = extract_hyperparameters_from_trainer(SimpleNamespace(args=readable))
    steps = rows.pop("lr_scheduler_warmup_steps", None)  # transformers 5 reads warmup_steps < 1 as a fraction
    ratio = getattr(args, "warmup_ratio", None) or (steps if steps is not None and 0 < steps < 1 else None)
    if ratio or steps:
        rows["lr_scheduler_warmup_ratio" if ratio else "lr_scheduler_warmup_steps"] = ratio or steps
    optimizer = getattr(args.optim, "value", args.optim)  # transformers writes the enum's repr and a line break
    rows.update({
        "optimizer": f"{optimizer} (betas=({args.adam_beta1}, {args.adam_beta2}), eps={args.adam_epsilon})"
        if "adam" in optimizer else optimizer + (f" ({args.optim_args})" if args.optim_args else ""),
        "weight_decay": args.weight_decay,
        "max_grad_norm": args.max_grad_norm,
        "precision": "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32",
        "metric_for_best_model": args.metric_for_best_model if args.load_best_model_at_end else None,
    })
    rows.pop("mixed_precision_training", None)  # said by "precision"
    return public_value({k: getattr(v, "value", v) for k, v in rows.items() if v is not None})


def _folder_name(path: str) -> str:
    """The model's name from its folder: a run writes its card in `<output_dir>.partial` (hftransfer.outputs)."""
    from .outputs import PARTIAL_SUFFIX

    return path.rstrip("/").split("/")[-1].removesuffix(PARTIAL_SUFFIX)


def framework_versions() -> dict[str, str]:
    from . import __version__

    versions = {"hftransfer": __version__}
    for name in FRAMEWORKS[1:]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def plot_training_curves(log_history: list[dict], path: str | Path, confused: dict[str, float] | None = None) -> bool:
    """Train loss (and logged loss terms) per step, validation accuracy per epoch; False when nothing was logged.

    `confused`: a dashed line per adversarial term at the value it takes when the domains are confused (DANN: ln 2)."""
    losses = {}
    for entry in log_history:
        for key in ("loss", *sorted(k for k in entry if k.startswith("loss_"))):
            if key in entry and "step" in entry:
                losses.setdefault(key, []).append((entry["step"], entry[key]))
    accuracy = [(e["epoch"], e["eval_accuracy"]) for e in log_history if "eval_accuracy" in e and "epoch" in e]
    if not losses and not accuracy:
        return False
    from matplotlib.figure import Figure  # no pyplot: no global backend, no display needed (Agg canvas)

    fig = Figure(figsize=(9, 3.2), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    for key, points in losses.items():
        line, = loss_ax.plot(*zip(*points), marker="." if len(points) < 30 else None, label=key)
        if key in (confused or {}):
            loss_ax.axhline(confused[key], linestyle="--", color=line.get_color(), label=f"{key}: domains confused")
    loss_ax.set(title="Training loss", xlabel="step", ylabel="loss")
    if len(losses) > 1:
        loss_ax.legend()
    if accuracy:
        acc_ax.plot(*zip(*accuracy), marker="o")
    acc_ax.set(title="Validation accuracy", xlabel="epoch", ylabel="accuracy")
    fig.savefig(path, dpi=100)
    return True


def _is_timm_folder(out: Path) -> bool:
    try:
        return "architecture" in json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _slug(text: str) -> str:
    return "-".join("".join(c if c.isalnum() or c in ".-" else " " for c in text.lower()).split())


def _secrets(training_args) -> list[str]:
    return [getattr(training_args, "hub_token", None), os.environ.get("HF_TOKEN"), os.environ.get("HUGGING_FACE_HUB_TOKEN")]


# ---- push ----------------------------------------------------------------------------------------------------------


def push_output(
    output_dir: str | Path,
    repo_id: str,
    *,
    private: bool | None = False,
    token: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Upload output_dir (model, processor, card, metrics; not checkpoints) to a model repo in one commit.

    The token defaults to HF_TOKEN or the `hf auth login` one. Returns the commit URL. Never changes output_dir.
    Pushes only `publishable_files(output_dir)`, and only from the main process of a distributed launch (elsewhere
    it does nothing and returns None).
    """
    from huggingface_hub import CommitOperationAdd, HfApi, constants

    if not _is_world_process_zero():
        return None
    out = Path(output_dir)
    retry = f"then retry with `hftransfer push {output_dir} --repo-id {repo_id}`"
    if not (out / "config.json").is_file():
        raise HubError(f"{output_dir} holds no saved model (config.json); push the output_dir of a finished run")
    if constants.is_offline_mode():
        raise HubError(f"cannot push to {repo_id} while HF_HUB_OFFLINE=1 is set; unset it where the Hub is reachable, {retry}")
    secrets = [token, *_secrets(None)]
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=_publishable(out, name, secrets))
                  for name in publishable_files(out)]
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        info = api.create_commit(
            repo_id=repo_id, operations=operations,
            commit_message=commit_message or f"Upload {out.resolve().name} (hftransfer)",
        )
    except Exception as error:  # noqa: BLE001  (every failure becomes one actionable line; the output is untouched)
        raise _hub_error(error, repo_id, api.endpoint, retry) from None
    return info.commit_url


def publishable_files(output_dir: str | Path) -> list[str]:
    """The files of a finished output folder that a push publishes (PUSH_FILES, weight shards, and the custom code
    files that config.json & co. name in `auto_map` under --trust_remote_code), as sorted POSIX paths."""
    from .outputs import read_marker

    out = Path(output_dir)
    names = {p.relative_to(out).as_posix() for p in [*out.iterdir(), *out.glob("adapter/*")] if p.is_file()}
    marker = read_marker(out)
    if marker is not None and marker.get("status") == "complete":  # a user's file under an allowed name stays home
        names &= set(marker.get("files", []))
    allowed = PUSH_FILES | _custom_code_files(out)
    return sorted(n for n in names if n in allowed or _WEIGHT_SHARD.match(n))


def _custom_code_files(out: Path) -> set[str]:
    """`modeling_x.py` & co. that save_pretrained copies next to a remote-code model, as its configs' auto_map
    names them ("org/repo--x.Y" names code in another repo: nothing here)."""
    files = set()
    for config in ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json"):
        try:
            auto_map = json.loads((out / config).read_text()).get("auto_map") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for value in auto_map.values() if isinstance(auto_map, dict) else []:
            for reference in value if isinstance(value, list) else [value]:
                if isinstance(reference, str) and "--" not in reference and "." in reference:
                    files.add(reference.rsplit(".", 1)[0] + ".py")
    return files


def _publishable(out: Path, name: str, secrets: list) -> str | bytes:
    """A file as pushed: its path, or, for hftransfer's own text files where they would publish an absolute path, a
    secret or the home folder, their public text (the local file is left as it is)."""
    path = out / name
    if name not in _PUBLIC_ON_PUSH and not name.endswith("_results.json"):
        return str(path)
    text = public = path.read_text(encoding="utf-8")
    if name.endswith(".json"):
        try:
            record = json.loads(text)
        except ValueError:
            record = None
        redacted = public_record(record, out, relative_paths=False)
        if redacted != record:
            public = json.dumps(redacted, indent=2) + "\n"
    public = scrub(public, secrets)
    return str(path) if public == text else public.encode("utf-8")


def _is_world_process_zero() -> bool:
    """transformers' rule for who pushes (Trainer.is_world_process_zero: `args.process_index == 0`) where no trainer is
    at hand: the global rank once torch.distributed runs, else the RANK a launcher (torchrun, accelerate) set."""
    import sys

    dist = sys.modules.get("torch.distributed")  # not imported: no process group in this process
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    try:
        return int(os.environ.get("RANK") or 0) == 0
    except ValueError:
        return True


def _hub_error(error: Exception, repo_id: str, endpoint: str, retry: str) -> HubError:
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled

    if isinstance(error, HFValidationError):
        return HubError(f"invalid repo id {repo_id!r}: use namespace/name (letters, digits, '-', '_', '.')")
    if isinstance(error, OfflineModeIsEnabled):
        return HubError(f"cannot push to {repo_id} while HF_HUB_OFFLINE=1 is set; unset it where the Hub is reachable, {retry}")
    if isinstance(error, HfHubHTTPError) and error.response is not None:
        status = error.response.status_code
        if status == 401:
            return HubError(
                f"the Hub refused to push to {repo_id} (401 Unauthorized: missing or invalid token); pass a write "
                f"token with --hub_token/--token, set HF_TOKEN or run `hf auth login`, {retry}"
            )
        if status == 403:
            return HubError(
                f"the token may not write to {repo_id} (403 Forbidden); use a token with write access to the "
                f"{repo_id.split('/')[0]!r} namespace or push to your own, {retry}"
            )
        return HubError(f"pushing to {repo_id} failed ({status}): {_first_line(error)}; {retry}")
    if _is_network_error(error):
        return HubError(
            f"cannot reach the Hub at {endpoint} ({type(error).__name__}); check the network, proxy or HF_ENDPOINT, {retry}"
        )
    return HubError(f"pushing to {repo_id} failed: {type(error).__name__}: {_first_line(error)}; {retry}")


def _is_network_error(error: Exception) -> bool:
    """Connection refused, DNS, timeouts: by class name, whichever HTTP library huggingface_hub runs on."""
    names = {cls.__name__ for cls in type(error).__mro__}
    return isinstance(error, (ConnectionError, TimeoutError)) or bool(names & {"TransportError", "RequestError"})


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# ---- recipe steps --------------------------------------------------------------------------------------------------


def write_run_card(trainer, loaded, data, *, datasets: list[str] | None = None, extra: dict | None = None,
                   task: str | None = None) -> Path | None:
    """After `trainer.save_model()`: the card for this run from what the recipe built, and training_args.json (on the
    process that saves, as for the model)."""
    args = trainer.args
    if not args.should_save:
        return None
    write_training_args(args.output_dir, args)
    drift = getattr(trainer, "layer_drift", None)
    if drift:
        (Path(args.output_dir) / LAYER_DRIFT).write_text(json.dumps(drift, indent=2) + "\n")
    return write_model_card(
        args.output_dir,
        base_model=loaded.source,
        datasets=datasets or [data.name],
        task=task or f"{loaded.modality}-classification",
        strategy=describe_strategy(getattr(trainer, "strategy", None)),
        loss_components=[describe_component(c) for c in getattr(trainer, "loss_components", [])],
        training_args=args,
        results=read_results(args.output_dir),
        log_history=trainer.state.log_history,
        layer_drift=drift,
        extra={**_selection_line(trainer), **_pooling_line(loaded.model), **_wise_ft_line(getattr(trainer, "wise_ft", None)),
               **(extra or {})},
        repo_id=args.hub_model_id,
    )


def _pooling_line(model) -> dict:
    """`--pooling checkpoint` (hftransfer.models.pooling_layer): which encoder layer is the built-in mean pooling."""
    layer = getattr(getattr(model, "config", None), "hftransfer_pooling_layer", None)
    if layer is None:
        return {}
    return {"pooling": f"the mean of token states (the checkpoint's sentence-transformers pooling), built in as encoder "
                       f"layer {layer}: the [CLS] state is its LayerNorm, passed to the head at unit norm"}


def _selection_line(trainer) -> dict:
    """Which checkpoint the saved model is (transformers' load_best_model_at_end), when one was selected."""
    state, args = trainer.state, trainer.args
    if not args.load_best_model_at_end or not state.best_model_checkpoint or state.best_metric is None:
        return {}
    step = int(Path(state.best_model_checkpoint).name.rsplit("-", 1)[-1])
    line = f"step {step} of {state.global_step}, best validation {args.metric_for_best_model} ({state.best_metric:.4g})"
    if step == 0:
        line += "; the fitted head before any training: no later checkpoint scored higher"
    return {"selected checkpoint": line}


def write_training_args(output_dir: str | Path, args) -> Path:
    """training_args.json: the TrainingArguments as JSON, paths relative to output_dir or reduced to their base
    names, no token; what a push publishes instead of the pickled training_args.bin."""
    path = Path(output_dir) / TRAINING_ARGS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(training_args_json(args, output_dir, _secrets(args)), encoding="utf-8")
    return path


def _wise_ft_line(wise_ft: dict | None) -> dict:
    if not wise_ft:
        return {}
    tried = ", ".join(f"{a} ({v:.4g})" for a, v in wise_ft["validation"].items())
    return {"WiSE-FT": f"backbone = (1 - alpha) pretrained + alpha fine-tuned with alpha = {wise_ft['alpha']:g}, chosen "
                       f"on validation {wise_ft['metric']} among alpha (score): {tried}"}


def push_run(trainer) -> str | None:
    """With --push_to_hub: upload output_dir to --hub_model_id. Call it outside `recipe_output_dir`, so a failed push
    leaves the finished local output in place. Only the main process pushes, by transformers' rule
    (`trainer.is_world_process_zero()`), even where --save_on_each_node has every node save."""
    args = trainer.args
    if not args.push_to_hub or not trainer.is_world_process_zero():
        return None
    if not args.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id namespace/name; add it or drop --push_to_hub")
    url = trainer.push_to_hub()
    print(f"pushed {args.output_dir} to {url}")
    return url
