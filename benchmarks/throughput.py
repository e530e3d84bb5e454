"""Steady-state training throughput: our recipe path vs a plain PyTorch loop vs stock `transformers.Trainer`.

    python benchmarks/throughput.py                      # CPU suite, default models, JSON on stdout (~7.5 min, 2 cores)
    python benchmarks/throughput.py --workloads image-jpeg --variants recipe "recipe:--dataloader_num_workers 0"
    python benchmarks/throughput.py --workloads image-synthetic --device cuda --bf16 --model resnet50 \
        --image-size 224 --batch-size 256 [--compile]
    python benchmarks/throughput.py --workloads text-synthetic --device cuda --bf16 --model bert-base \
        --seq-len 128 --batch-size 128
    python benchmarks/throughput.py --workloads text-fixed --variant recipe   # one variant, in this process

Variants, each in its own subprocess (peak memory is per variant); `KIND:OPTIONS` runs a modified one:
  recipe  the trainer the recipe itself builds (hftransfer.recipes.build_recipe: its parse, DEFAULTS, data pipeline,
          strategy), with the workload's data. OPTIONS: more recipe flags ("recipe:--dataloader_num_workers 0").
          Synthetic workloads swap the training data for a pool of random examples labelled with the recipe's
          dataset's classes.
  plain   the same model (the recipe's build, same seed, no trainer), batch, precision and update rule (fused
          AdamW with the recipe's lr and weight decay, gradients clipped at the recipe's max_grad_norm): model.train();
          per pre-collated batch: copy to the device, forward, backward, clip, step, zero_grad(set_to_none=True). No
          data loader in the timed loop: the compute ceiling. OPTIONS, comma-separated: channels_last (the recipe's
          memory format for CNNs), keep_freed_memory (the recipe's CPU allocator setting), no_clip.
  stock   transformers.Trainer + TrainingArguments defaults (output_dir, batch size, max_steps, seed set; any other
          override is listed under the variant's "overrides"). OPTIONS: TrainingArguments flags.
  loader  the recipe's training DataLoader alone (its workers, collator, device copy): how fast data can arrive.

Timing: `warmup` untimed steps, then `rounds` windows of `steps` timed steps, each preceded by `rewarm` untimed
steps (they drain batches that loader workers prefetched while the process waited). Trainer variants are timed
by a TrainerCallback at on_step_end; on CUDA every window boundary synchronises. Variant processes start one at
a time; on CPU their windows interleave (a b c, c b a, ...) so that load from other processes hits every variant
alike. Rates are medians over windows; ratios are geometric means of per-round paired ratios over pairs of rounds
(each order once), with a bootstrap 95% interval, per wall second and per CPU second. Every variant loads the
recipe's (bundled) dataset through `datasets` (benchmarks/README.md: what the GPU machine needs).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # measure this checkout's hftransfer, installed or not
    sys.path.insert(0, str(REPO))
WORKLOADS = {  # name -> (modality, variants run by default)
    "image-synthetic": ("image", ["recipe", "plain", "plain:channels_last,keep_freed_memory", "stock"]),
    "image-jpeg": ("image", ["recipe", "stock", "loader"]),  # compute ceiling: image-synthetic's plain
    "text-fixed": ("text", ["recipe", "plain", "plain:keep_freed_memory", "stock"]),
    "text-dynamic": ("text", ["recipe", "plain", "stock"]),
    "text-synthetic": ("text", ["recipe", "plain", "stock"]),
}
DEFAULT_SUITE = ["image-synthetic", "image-jpeg", "text-fixed", "text-dynamic"]
DEFAULT_MODELS = {"image": "efficientnet_lite0", "text": "minilm"}
KINDS = ("recipe", "plain", "stock", "loader")
BERT_CONFIGS = {  # random-init text models by name (no Hub): BertConfig keyword arguments
    "bert-base": {},
    "bert-large": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096},
    "bert-tiny": {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 512},
}
RATIO_PAIRS = [("recipe", "plain"), ("recipe", "plain:channels_last"), ("recipe", "plain:keep_freed_memory"),
               ("recipe", "plain:channels_last,keep_freed_memory"), ("stock", "plain"), ("stock", "recipe"),
               ("recipe", "loader")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=DEFAULT_SUITE)
    p.add_argument("--variants", nargs="+", help="KIND or KIND:OPTIONS (see above); default: each workload's own list")
    p.add_argument("--variant", help="run this one variant (KIND or KIND:OPTIONS) of the first workload in this process")
    p.add_argument("--model", help="built-in alias (efficientnet_lite0, minilm), a timm architecture (resnet50, "
                   "vit_base_patch16_224: random init) or bert-base / bert-large / bert-tiny (random init)")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast in every variant (stock included)")
    p.add_argument("--compile", action="store_true", help="torch.compile in every variant (torch_compile=True)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--max-length", type=int, default=64, help="text-fixed pads to it; text-dynamic truncates at it")
    p.add_argument("--seq-len", type=int, default=128, help="text-synthetic sequence length")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=10, help="even: whole pairs of rounds (a b, b a)")
    p.add_argument("--steps", type=int, default=6, help="timed steps per round (the same for every variant)")
    p.add_argument("--rewarm", type=int, default=None,
                   help="untimed steps before each window; default 1 + the batches the recipe's loader prefetches")
    p.add_argument("--interleave", choices=["auto", "yes", "no"], default="auto",
                   help="alternate variants window by window (auto: on CPU; on CUDA one variant after another)")
    p.add_argument("--jpeg-dir", help="imagefolder for image-jpeg (default: generate one of 256 px JPEGs)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--output", help="also write the JSON here")
    p.add_argument("--protocol", action="store_true", help=argparse.SUPPRESS)  # child of the parent below
    p.add_argument("--workload", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.device is None:
        import torch

        opts.device = "cuda" if torch.cuda.is_available() else "cpu"
    opts.interleave = opts.interleave == "yes" or (opts.interleave == "auto" and opts.device == "cpu")
    if opts.rewarm is None:
        from hftransfer.training_args import default_num_workers

        opts.rewarm = 1 + 2 * default_num_workers() if opts.interleave else 1  # 2 = the loader's prefetch_factor
    return opts


def split_variant(label: str) -> tuple[str, str]:
    kind, _, options = label.partition(":")
    if kind not in KINDS:
        raise SystemExit(f"unknown variant {label!r}: use one of {', '.join(KINDS)}, optionally KIND:OPTIONS")
    return kind, options


# =====================================================================================================================
# Child side: one variant of one workload
# =====================================================================================================================


class Windows:
    """The timing protocol every variant runs, called after each optimizer step (or loader batch)."""

    def __init__(self, opts, channel):
        self.opts, self.cuda, self.channel = opts, opts.device == "cuda", channel
        self.starts, self.ends, self.waits = set(), set(), set()
        step = opts.warmup
        for _ in range(opts.rounds):
            self.waits.add(step)
            self.starts.add(step + opts.rewarm)
            step += opts.rewarm + opts.steps
            self.ends.add(step)
        self.total = step
        self.windows: list[dict] = []
        self.step_seconds: list[float] = []
        self.tokens = 0  # padded tokens seen in the current window (text, when counted)
        self.count_tokens = False
        self._start = self._last = None

    def watch_tokens(self, model) -> None:
        """Counts padded input tokens per window (a shape read: no sync); left off under torch.compile."""
        def hook(module, args, kwargs):
            ids = kwargs.get("input_ids")
            if ids is not None:
                self.tokens += ids.numel()
        model.register_forward_pre_hook(hook, with_kwargs=True)
        self.count_tokens = True

    def _now(self) -> float:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
        return time.perf_counter()

    def after_step(self, step: int) -> None:
        if self._start is not None and not self.cuda:  # CPU steps are synchronous: per-step times come free
            now = time.perf_counter()
            self.step_seconds.append(now - self._last)
            self._last = now
        if step in self.ends:
            seconds = self._now() - self._start
            samples = self.opts.steps * self.opts.batch_size
            usage = _usage()
            self.windows.append({"seconds": seconds, "samples": samples, "tokens": self.tokens if self.count_tokens else None,
                                 "cpu_seconds": usage[0] - self._usage[0], "minor_faults": usage[1] - self._usage[1]})
            self._start = None
            self.send({"window": len(self.windows) - 1, "samples_per_s": samples / seconds})
        if step in self.waits:
            self.send({"ready": step})
            if self.opts.protocol:
                sys.stdin.readline()
        if step in self.starts:
            self._start = self._last = self._now()
            self._usage = _usage()
            self.tokens = 0

    def send(self, message: dict) -> None:
        self.channel.write(json.dumps(message) + "\n")
        self.channel.flush()


def _usage() -> tuple[float, int]:
    """(user + system CPU seconds, minor page faults) of this process so far."""
    import resource

    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime, u.ru_minflt


def _timing_callback(windows: Windows):
    from transformers import TrainerCallback

    class TimingCallback(TrainerCallback):
        """Runs the timing protocol; after the last timed step no evaluation or checkpoint (they are not timed)."""

        def on_step_end(self, args, state, control, **kwargs):
            windows.after_step(state.global_step)
            if state.global_step >= windows.total:
                control.should_save = control.should_evaluate = False
                control.should_training_stop = True

        def on_epoch_end(self, args, state, control, **kwargs):
            control.should_save = control.should_evaluate = False

    return TimingCallback()


def _model_source(opts, modality: str, workdir: Path) -> tuple[str, bool]:
    """(what load_classifier gets, pretrained): built-in aliases keep their weights; named architectures start random."""
    from hftransfer.models import BUILTIN_MODELS

    name = opts.model or DEFAULT_MODELS[modality]
    if name in BUILTIN_MODELS or Path(name).exists():
        return name, True
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    if modality == "image":  # a timm architecture: the folder timm publishes to the Hub, minus the weights
        import timm

        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None:
            raise SystemExit(f"unknown timm architecture {name!r}")
        config = {"architecture": name, "num_classes": cfg.num_classes, "pretrained_cfg": cfg.to_dict()}
        (folder / "config.json").write_text(json.dumps(config))
        return str(folder), False
    if name not in BERT_CONFIGS:
        raise SystemExit(f"unknown text model {name!r}: use minilm, a local folder or one of {list(BERT_CONFIGS)}")
    from transformers import BertConfig

    BertConfig(**BERT_CONFIGS[name]).save_pretrained(folder)
    from transformers import AutoTokenizer

    from hftransfer.models import resolve_model_source

    # the recipe loads a tokenizer with the model: bert-base-uncased's WordPiece vocabulary ships with the built-in MiniLM
    AutoTokenizer.from_pretrained(resolve_model_source("minilm")).save_pretrained(folder)
    return str(folder), False


class _Synthetic:
    """A map-style dataset cycling through a small pool of random examples (any length, little memory)."""

    def __init__(self, pool: list[dict], length: int):
        self.pool, self.length = pool, length

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        if not 0 <= index < self.length:  # ends `for example in dataset` (LengthGroupedSampler iterates it)
            raise IndexError(index)
        return self.pool[index % len(self.pool)]


def _synthetic_pool(workload: str, opts, num_labels: int, vocab_size: int, size: int = 64) -> list[dict]:
    import torch

    g = torch.Generator().manual_seed(opts.seed)
    if workload == "image-synthetic":
        shape = (3, opts.image_size, opts.image_size)
        return [{"pixel_values": torch.randn(shape, generator=g), "labels": i % num_labels} for i in range(size)]
    return [
        {"input_ids": torch.randint(1000, vocab_size, (opts.seq_len,), generator=g),
         "attention_mask": torch.ones(opts.seq_len, dtype=torch.long), "labels": i % num_labels}
        for i in range(size)
    ]


def make_jpeg_folder(root: Path, n_train: int, n_eval: int, size: int = 256, classes: int = 4, seed: int = 0) -> Path:
    """An imagefolder (train/validation/test/class_k/*.jpg) of random crops of real photos, size x size."""
    import numpy as np
    from PIL import Image

    try:
        from sklearn.datasets import load_sample_images

        photos = [Image.fromarray(a) for a in load_sample_images().images]
    except Exception:  # no scikit-learn: noise still exercises decoding
        noise = np.random.default_rng(seed).integers(0, 256, (2, 480, 640, 3), dtype=np.uint8)
        photos = [Image.fromarray(a) for a in noise]
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("validation", n_eval), ("test", n_eval)):
        for c in range(classes):
            (root / split / f"class_{c}").mkdir(parents=True, exist_ok=True)
        for i in range(count):
            photo = photos[i % len(photos)]
            side = int(rng.integers(min(photo.size) // 3, min(photo.size)))
            x, y = int(rng.integers(0, photo.width - side + 1)), int(rng.integers(0, photo.height - side + 1))
            image = photo.crop((x, y, x + side, y + side)).resize((size, size), Image.BILINEAR)
            if rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
            image.save(root / split / f"class_{i % classes}" / f"{i:06d}.jpg", quality=90)
    return root


def _common_flags(opts) -> dict:
    """Flags every Trainer variant gets: forced precision/compile, and CPU on a machine that has a GPU."""
    import torch

    flags = {}
    if opts.bf16:
        flags["bf16"] = True
    if opts.compile:
        flags["torch_compile"] = True
    if opts.device == "cpu" and (torch.cuda.is_available() or opts.bf16):  # bf16 on CPU needs it said
        flags["use_cpu"] = True
    return flags


def _recipe_argv(opts, workload: str, source: str, pretrained: bool, output_dir: str, extra: str) -> list[str]:
    argv = ["--model", source, "--pretrained", str(pretrained).lower(), "--output_dir", output_dir,
            "--per_device_train_batch_size", str(opts.batch_size), "--max_steps", str(opts.total_steps),
            "--seed", str(opts.seed)]
    if WORKLOADS[workload][0] == "image":
        argv += ["--image_size", str(opts.image_size)]
        if workload == "image-jpeg":
            argv += ["--dataset", opts.jpeg_dir]
    else:
        argv += ["--max_length", str(opts.max_length), "--max_eval_samples", "256",
                 "--max_train_samples", str(max(4096, opts.total_steps * opts.batch_size))]
    for key, value in _common_flags(opts).items():
        argv += [f"--{key}", str(value).lower()]
    return argv + shlex.split(extra)


def _build(opts, workload: str, kind: str, options: str, workdir: Path):
    """The recipe's own build (hftransfer.recipes.build_recipe) with this workload's data: the recipe and loader
    variants get its TransferTrainer, plain and stock the same model, data and collator without one."""
    from transformers import DataCollatorWithPadding, default_data_collator, set_seed

    from hftransfer.recipes import build_recipe

    modality = WORKLOADS[workload][0]
    source, pretrained = _model_source(opts, modality, workdir)
    argv = _recipe_argv(opts, workload, source, pretrained, str(workdir / "recipe-out"),
                        options if kind in ("recipe", "loader") else "")
    set_seed(opts.seed)  # the same initial model in every variant
    run = build_recipe("image_cls" if modality == "image" else "text_cls", argv, trainer=kind in ("recipe", "loader"))
    if workload == "text-fixed":  # every variant pads to max_length
        run.collator = DataCollatorWithPadding(run.loaded.processor, padding="max_length", max_length=opts.max_length)
    elif workload == "text-dynamic" and kind == "stock":
        run.collator = None  # the Trainer's own default: DataCollatorWithPadding for a tokenizer
    elif workload.endswith("-synthetic"):
        vocab_size = getattr(run.loaded.model.config, "vocab_size", 30522)
        pool = _synthetic_pool(workload, opts, len(run.data.label_names), vocab_size)
        run.splits = {"train": _Synthetic(pool, opts.total_steps * opts.batch_size),
                      "validation": _Synthetic(pool, opts.batch_size)}
        run.collator = default_data_collator
    if run.trainer is not None:
        run.trainer.train_dataset, run.trainer.eval_dataset = run.splits["train"], run.splits["validation"]
        run.trainer.data_collator = run.collator or default_data_collator
    return run


def _stock_trainer(opts, built, options: str, workdir: Path, callbacks):
    from transformers import HfArgumentParser, Trainer, TrainingArguments

    overrides = dict(_common_flags(opts))
    if opts.workload == "image-jpeg":
        overrides["remove_unused_columns"] = False  # required: the default drops the image column before decoding
    argv = ["--output_dir", str(workdir / "stock-out"), "--per_device_train_batch_size", str(opts.batch_size),
            "--max_steps", str(opts.total_steps), "--seed", str(opts.seed)]
    argv += [a for k, v in overrides.items() for a in (f"--{k}", str(v).lower())] + shlex.split(options)
    (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(args=argv)
    extra = {"data_collator": built.collator} if built.collator is not None else {}
    trainer = Trainer(model=built.loaded.model, args=args, train_dataset=built.splits["train"],
                      processing_class=built.loaded.processor, callbacks=list(callbacks), **extra)
    overridden = sorted(set(overrides) | {a[2:] for a in shlex.split(options) if a.startswith("--")})
    return trainer, overridden


def _run_trainer(opts, built, windows: Windows, kind: str, options: str, workdir: Path) -> dict:
    callbacks = [_timing_callback(windows)]
    if kind == "recipe":
        trainer, info = built.trainer, {}
        for callback in callbacks:
            trainer.add_callback(callback)
    else:
        trainer, overridden = _stock_trainer(opts, built, options, workdir, callbacks)
        info = {"overrides": overridden}
    if WORKLOADS[opts.workload][0] == "text" and not opts.compile:
        windows.watch_tokens(built.loaded.model)
    trainer.train()
    args = trainer.args
    optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
    return {**info, "workers": args.dataloader_num_workers, "precision": "bf16" if args.bf16 else "fp32",
            "grad_clip": args.max_grad_norm or None,
            "optimizer": type(optimizer).__name__ + (" fused" if optimizer.defaults.get("fused") else "")}


def _staged_batches(opts, built, workload: str, count: int) -> list[dict]:
    """Pre-collated batches for the plain loop, drawn the way the recipe's loader draws them (pinned on CUDA)."""
    import torch
    from torch.utils.data import DataLoader

    train, sampler = built.splits["train"], None
    if WORKLOADS[workload][0] == "text" and built.training_args.train_sampling_strategy == "group_by_length":
        from transformers.trainer_pt_utils import LengthGroupedSampler

        sampler = LengthGroupedSampler(opts.batch_size, dataset=train, model_input_name="input_ids",
                                       generator=torch.Generator().manual_seed(opts.seed))
    batches = []
    for batch in DataLoader(train, batch_size=opts.batch_size, sampler=sampler, collate_fn=built.collator):
        batch = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
        batches.append({k: v.pin_memory() for k, v in batch.items()} if opts.device == "cuda" else batch)
        if len(batches) == count:
            return batches
    return batches


def _run_plain(opts, built, windows: Windows, workload: str, options: str) -> dict:
    """The loop a user would write: same model, batch, precision and update rule; no Trainer, no data loader."""
    import contextlib

    import torch

    unknown = set(filter(None, options.split(","))) - {"channels_last", "no_clip", "keep_freed_memory"}
    if unknown:
        raise SystemExit(f"unknown plain options {sorted(unknown)}: use channels_last, no_clip, keep_freed_memory")
    if "keep_freed_memory" in options and opts.device == "cpu":  # the allocator setting TransferTrainer makes on CPU
        from hftransfer.trainer import keep_freed_host_memory

        keep_freed_host_memory()
    args = built.training_args
    model = built.loaded.model.to(opts.device)
    if "channels_last" in options:
        model.to(memory_format=torch.channels_last)
    bf16 = bool(args.bf16)  # the recipe's resolved precision: --bf16 or its auto default
    clip = None if "no_clip" in options else (args.max_grad_norm or None)
    # text batches differ in length (draw them all); image batches differ only in content (a few suffice)
    count = windows.total if workload.startswith("text-") and workload != "text-synthetic" else min(4, windows.total)
    batches = _staged_batches(opts, built, workload, count)
    if workload.startswith("text-") and not opts.compile:
        windows.watch_tokens(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=args.weight_decay, fused=True)
    forward = torch.compile(model) if opts.compile else model
    autocast = (lambda: torch.autocast(opts.device, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    model.train()
    for step in range(1, windows.total + 1):
        batch = {k: v.to(opts.device, non_blocking=True) for k, v in batches[(step - 1) % len(batches)].items()}
        with autocast():
            loss = forward(**batch).loss
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        windows.after_step(step)
    return {"workers": 0, "precision": "bf16" if bf16 else "fp32", "grad_clip": clip, "optimizer": "AdamW fused"}


def _run_loader(opts, built, windows: Windows) -> dict:
    """The recipe's training DataLoader with no model step."""
    trainer = built.trainer
    iterator = iter(trainer.get_train_dataloader())
    for step in range(1, windows.total + 1):
        next(iterator)
        windows.after_step(step)
    return {"workers": trainer.args.dataloader_num_workers}


def _memory(device: str) -> dict:
    import resource

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    workers = _descendant_peaks_mb()
    if workers:  # each loader worker's peak RSS; pages shared with the parent after fork count in each
        out["loader_workers_peak_rss_mb"] = workers
    if device == "cuda":
        import torch

        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        out["cuda_max_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    return out


def _descendant_peaks_mb() -> list[float]:
    peaks, pending = [], [os.getpid()]
    while pending:
        pid = pending.pop()
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                pending += [int(c) for c in children.read_text().split()]
            except OSError:
                pass
        if pid != os.getpid():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                peaks.append(round(int(status.split("VmHWM:")[1].split()[0]) / 1024, 1))
            except (OSError, IndexError):
                pass
    return peaks


def run_variant(opts) -> None:
    """Child entry point: build, run the protocol, send the result as the last JSON line."""
    channel = os.fdopen(os.dup(1), "w")
    if opts.protocol:
        os.dup2(2, 1)  # whatever the libraries print goes to stderr (the parent's log file)
    kind, options = split_variant(opts.variant)
    windows = Windows(opts, channel)
    opts.total_steps = windows.total
    with tempfile.TemporaryDirectory(prefix="hftransfer-bench-") as tmp:
        built = _build(opts, opts.workload, kind, options, Path(tmp))
        if kind in ("recipe", "stock"):
            info = _run_trainer(opts, built, windows, kind, options, Path(tmp))
        elif kind == "plain":
            info = _run_plain(opts, built, windows, opts.workload, options)
        else:
            info = _run_loader(opts, built, windows)
        windows.send({"done": True, "variant": opts.variant, "windows": windows.windows,
                      "step_seconds": windows.step_seconds, "memory": _memory(opts.device), **info})


# =====================================================================================================================
# Parent side: start the variants, interleave their windows, summarise
# =====================================================================================================================


class Child:
    """One variant's process; it speaks JSON lines on its stdout and waits for 'go' on its stdin."""

    def __init__(self, opts, workload: str, variant: str, log_dir: Path):
        self.workload, self.variant, self.result = workload, variant, None
        self.log_path = log_dir / f"{workload}-{len(list(log_dir.glob('*.log')))}.log"
        argv = [sys.executable, str(Path(__file__).resolve()), "--protocol", "--workload", workload,
                "--variant", variant, *_forwarded_flags(opts)]
        env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=env,
                                     cwd=str(REPO), bufsize=0)
        self._buffer = b""

    def read(self, timeout: float = 1800) -> dict:
        """The child's next JSON line (own buffering: select() cannot see lines a file object already buffered)."""
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer and time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 5)
            chunk = os.read(fd, 65536) if ready else b""
            self._buffer += chunk
            if not chunk and self.proc.poll() is not None:
                break
        if b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            return json.loads(line)
        self.proc.kill()
        self.log.flush()
        tail = self.log_path.read_text().splitlines()[-15:]
        raise RuntimeError(f"{self.workload}/{self.variant} failed:\n" + "\n".join(tail))

    def expect(self, key: str) -> dict:
        message = self.read()
        while key not in message:
            message = self.read()
        return message

    def go(self) -> None:
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()

    def finish(self) -> None:
        self.result = self.expect("done")
        self.proc.wait()
        self.log.close()


def _forwarded_flags(opts) -> list[str]:
    flags = ["--device", opts.device, "--batch-size", str(opts.batch_size), "--image-size", str(opts.image_size),
             "--max-length", str(opts.max_length), "--seq-len", str(opts.seq_len),
             "--warmup", str(opts.warmup), "--rounds", str(opts.rounds), "--steps", str(opts.steps),
             "--rewarm", str(opts.rewarm), "--seed", str(opts.seed)]
    flags += ["--bf16"] * opts.bf16 + ["--compile"] * opts.compile
    flags += ["--model", opts.model] if opts.model else []
    flags += ["--jpeg-dir", opts.jpeg_dir] if opts.jpeg_dir else []
    return flags


def run_workload(opts, workload: str, variants: list[str], log_dir: Path) -> dict:
    children: list[Child] = []
    errors: dict[str, str] = {}
    load_before = os.getloadavg()

    def start(variant):
        print(f"[bench] {workload}: starting {variant}", file=sys.stderr, flush=True)
        try:
            child = Child(opts, workload, variant, log_dir)
            child.expect("ready")  # warmed up; it waits for its first window
            children.append(child)
        except RuntimeError as error:
            fail(variant, error)

    def window(child, r):
        try:
            child.go()
            rate = child.expect("window")["samples_per_s"]
            print(f"[bench] {workload} round {r} {child.variant}: {rate:.1f} samples/s", file=sys.stderr, flush=True)
            if r == opts.rounds - 1:
                child.finish()  # its shutdown must not overlap the next variant's window
            else:
                child.expect("ready")
        except RuntimeError as error:
            children.remove(child)
            fail(child.variant, error)

    def fail(variant, error):
        print(f"[bench] {error}", file=sys.stderr, flush=True)
        errors[variant] = str(error).strip().splitlines()[-1]

    if opts.interleave:
        for variant in variants:  # one at a time: no set-up overlaps a timed window
            start(variant)
        for r in range(opts.rounds):
            for child in list(children if r % 2 == 0 else children[::-1]):
                window(child, r)
    else:
        for variant in variants:
            start(variant)
            for r in range(opts.rounds):
                if children and children[-1].variant == variant and children[-1].result is None:
                    window(children[-1], r)
    summary = summarise(opts, workload, {c.variant: c.result for c in children if c.result}, variants, errors)
    summary["load_average_1min"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    return summary


def _round2(x):
    return round(x, 2) if x is not None else None


def summarise(opts, workload: str, results: dict, variants: list[str], errors: dict) -> dict:
    modality = WORKLOADS[workload][0]
    out = {"model": opts.model or DEFAULT_MODELS[modality], "batch_size": opts.batch_size}
    if modality == "image":
        out["image_size"] = opts.image_size
    elif workload == "text-synthetic":
        out["seq_len"] = opts.seq_len
    else:
        out["max_length"] = opts.max_length
    rounds, cpu_rounds, out["variants"] = {}, {}, {}
    for variant in variants:
        result = results.get(variant)
        if result is None:
            out["variants"][variant] = {"error": errors.get(variant, "failed; see the [bench] lines on stderr")}
            continue
        rounds[variant] = [w["samples"] / w["seconds"] for w in result["windows"]]
        entry = {"samples_per_s": _round2(statistics.median(rounds[variant])),
                 "samples_per_s_rounds": [round(r, 2) for r in rounds[variant]]}
        if opts.device == "cpu":  # what the work costs in CPU time: blind to time the host gave other processes
            cpu_rounds[variant] = [w["samples"] / w["cpu_seconds"] for w in result["windows"]]
            entry["samples_per_cpu_s"] = _round2(statistics.median(cpu_rounds[variant]))
        if result["step_seconds"]:  # CPU: the rate at the median step time, robust to a stalled window
            entry["samples_per_s_median_step"] = round(opts.batch_size / statistics.median(result["step_seconds"]), 2)
        tokens = [w["tokens"] / w["samples"] for w in result["windows"] if w["tokens"]]
        if tokens:
            entry["padded_tokens_per_sample"] = round(statistics.mean(tokens), 1)
        keys = ("precision", "workers", "grad_clip", "optimizer", "overrides")
        entry.update({k: result[k] for k in keys if result.get(k) is not None})
        entry.update(result["memory"])
        out["variants"][variant] = entry
    pairs = RATIO_PAIRS + [(v, "recipe") for v in rounds if v.startswith("recipe:")]
    ratios, intervals, by_order, of_medians, cpu_ratios = {}, {}, {}, {}, {}
    for a, b in pairs:
        if a in rounds and b in rounds:
            key = f"{a}/{b}"
            paired = [x / y for x, y in zip(rounds[a], rounds[b])]
            ratios[key], intervals[key] = paired_ratio(paired)
            if opts.interleave:
                by_order[key] = [round(statistics.median(paired[0::2]), 3), round(statistics.median(paired[1::2]), 3)]
            of_medians[key] = round(statistics.median(rounds[a]) / statistics.median(rounds[b]), 3)
            if a in cpu_rounds and b in cpu_rounds:
                cpu_ratios[key] = list(paired_ratio([x / y for x, y in zip(cpu_rounds[a], cpu_rounds[b])]))
    out["ratios"] = ratios  # geometric mean of the paired (same round) ratios over whole pairs of rounds
    out["ratio_95pct_intervals"] = intervals  # of that mean, resampling pairs of rounds
    if by_order:  # the paired ratio's median over even rounds and over odd ones: the variants' order alternates
        out["ratios_by_round_order"] = by_order
    out["ratios_of_medians"] = of_medians
    if cpu_ratios:  # per CPU second (blind to time the host gave other processes): [ratio, its interval]
        out["cpu_time_ratios"] = cpu_ratios
    return out


def paired_ratio(paired: list[float], resamples: int = 4000, seed: int = 0) -> tuple[float, list[float]]:
    """Geometric mean of per-round paired ratios over whole pairs of rounds, and its 95% percentile-bootstrap interval
    (resampling pairs of rounds). Interleaved rounds alternate the variants' order (a b, b a), and the order matters:
    measured 0.949 vs 1.018 (medians of recipe/plain over 30 rounds of each order, image-synthetic, 2 cores). A
    pair of rounds holds each order once, so the order cancels; a median over all rounds picks one side of it."""
    import math
    import random

    logs = [math.log(r) for r in paired]
    pairs = [logs[i:i + 2] for i in range(0, len(logs) - 1, 2)] or [logs]

    def mean_of(chosen):
        values = [v for pair in chosen for v in pair]
        return math.exp(sum(values) / len(values))

    rng = random.Random(seed)
    means = sorted(mean_of(rng.choices(pairs, k=len(pairs))) for _ in range(resamples))
    interval = [round(means[int(0.025 * resamples)], 3), round(means[int(0.975 * resamples) - 1], 3)]
    return round(mean_of(pairs), 3), interval


def main(argv=None) -> None:
    opts = parse_args(argv)
    if opts.variant:  # one variant in this process
        opts.workload = opts.workload or opts.workloads[0]
        if opts.workload == "image-jpeg" and not opts.jpeg_dir:
            raise SystemExit("--variant with image-jpeg needs --jpeg-dir (an imagefolder)")
        return run_variant(opts)
    for variant in opts.variants or []:
        split_variant(variant)

    import torch
    import transformers

    started = time.perf_counter()
    report = {
        "machine": {"device": opts.device, "gpu": torch.cuda.get_device_name() if opts.device == "cuda" else None,
                    "cpu_cores": len(os.sched_getaffinity(0)), "torch_threads": torch.get_num_threads(),
                    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                    "torch": torch.__version__, "transformers": transformers.__version__},
        "protocol": {"warmup_steps": opts.warmup, "rounds": opts.rounds, "timed_steps_per_round": opts.steps,
                     "rewarm_steps": opts.rewarm, "interleaved": opts.interleave, "bf16_forced": opts.bf16,
                     "compile": opts.compile},
        "workloads": {},
    }
    with tempfile.TemporaryDirectory(prefix="hftransfer-bench-") as tmp:
        if "image-jpeg" in opts.workloads and not opts.jpeg_dir:
            count = (opts.warmup + opts.rounds * (opts.rewarm + opts.steps)) * opts.batch_size  # one epoch, no repeats
            print(f"[bench] writing {count} JPEGs", file=sys.stderr, flush=True)
            opts.jpeg_dir = str(make_jpeg_folder(Path(tmp) / "jpegs", count, 16))
        for workload in opts.workloads:
            variants = opts.variants or WORKLOADS[workload][1]
            variants = [v for v in variants if not v.startswith("loader") or workload == "image-jpeg"]
            report["workloads"][workload] = run_workload(opts, workload, variants, Path(tmp))
    report["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if opts.output:
        Path(opts.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
