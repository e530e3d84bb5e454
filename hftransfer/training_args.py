"""TrainingArguments with defaults that are fast and right for transfer learning; every HF flag still works."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.trainer_utils import IntervalStrategy, SaveStrategy

from .schedules import SCHEDULES, check_schedule_kwargs


def default_num_workers(training_on_cpu: bool = False) -> int:
    """Loader workers per process: enough to keep a GPU fed, never more than the cores this process may use.

    Training on 2 CPU cores or fewer, none: the compute threads already use every core, and a worker decoding the
    next batch beside them costs more than decoding in line (benchmarks/throughput.py, image-jpeg: +6% without).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    per_process = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if training_on_cpu and per_process <= 2:
        return 0
    return max(0, min(8, per_process - 1))


@dataclass
class TransferTrainingArguments(TrainingArguments):
    output_dir: str = field(default="outputs/run", metadata={"help": "Where the model folder, metrics and card go."})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace an output_dir that already holds a finished run or checkpoints."}
    )
    eval_strategy: IntervalStrategy | str = field(default="epoch", metadata={"help": "When to evaluate on the validation split."})
    save_strategy: SaveStrategy | str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    logging_strategy: IntervalStrategy | str = field(default="steps", metadata={"help": "When to log."})
    logging_steps: float = field(default=20, metadata={"help": "Log every N steps."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation checkpoint."})
    metric_for_best_model: str = field(default="accuracy", metadata={"help": "Validation metric that picks the best."})
    min_train_steps: int = field(
        default=0,
        metadata={"help": "Train at least this many optimizer steps: when --num_train_epochs gives fewer (small data), "
                  "the run trains exactly this many instead (--max_steps, when given, wins)."},
    )
    best_model_ties: str = field(
        default="earlier",
        metadata={"help": "When a checkpoint's metric_for_best_model equals the best so far: keep the 'earlier' one "
                  "(transformers' rule) or take the 'later' one."},
    )
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept besides the best one."})
    remove_unused_columns: bool = field(default=False, metadata={"help": "Batches are built by our transforms."})
    # The NaN/inf filter reads the loss back to the host every step: a sync we keep off the hot path.
    logging_nan_inf_filter: bool = field(default=False, metadata={"help": "Drop NaN/inf losses from logs (syncs)."})
    dataloader_num_workers: int = field(
        default=-1,
        metadata={"help": "Loader worker processes; -1: one per spare CPU core of this process (max 8; none when "
                  "training on 2 CPU cores or fewer)."},
    )
    dataloader_persistent_workers: bool = field(
        default=True, metadata={"help": "Keep loader workers alive between epochs (when there are workers)."}
    )
    bf16: bool | None = field(
        default=None,
        metadata={"help": "bf16 mixed precision; default: what `accelerate launch --mixed_precision` (or its config "
                  "file) says, else on where the GPU supports it, off on CPU."},
    )
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "A checkpoint folder, or 'last' for the newest one in output_dir."}
    )
    lr_scheduler_type: str = field(
        default="linear",
        metadata={"help": "transformers' schedules (linear, cosine, constant, reduce_lr_on_plateau, ...) or "
                  "'annealing': lr * (1 + gamma * progress) ** -power after the warm-up (DANN/TLlib; "
                  "--lr_scheduler_kwargs '{\"gamma\": 10, \"power\": 0.75}'), or 'step': lr * gamma at each "
                  "milestone, a fraction of training (default 0.1 at 1/3 and 2/3)."},
    )
    wise_ft_alphas: list[float] | None = field(
        default=None,
        metadata={"help": "WiSE-FT after training: mix the backbone as (1 - a) * pretrained + a * fine-tuned for each "
                  "a, keep the a with the best validation metric_for_best_model (ties: the larger a), e.g. 0.5 0.75 1."},
    )

    def __post_init__(self):
        if self.dataloader_num_workers < 0:
            import torch

            self.dataloader_num_workers = default_num_workers(self.use_cpu or not torch.cuda.is_available())
        if self.dataloader_num_workers == 0:
            self.dataloader_persistent_workers = False
        import torch

        if not self.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available():
            # Accelerate only sets up CPU DDP (gloo) when told it is on CPU: torchrun on a CPU-only machine would
            # otherwise train N unsynchronised copies
            self.use_cpu = True
        if self.dataloader_pin_memory and (self.use_cpu or not torch.cuda.is_available()):
            self.dataloader_pin_memory = False  # nothing to pin for; torch would warn at every loader start
        launcher = os.environ.get("ACCELERATE_MIXED_PRECISION")  # accelerate launch --mixed_precision / its config
        if self.bf16 is None and not self.fp16 and launcher in ("no", "bf16", "fp16"):
            self.bf16, self.fp16 = launcher == "bf16", launcher == "fp16"  # what the launcher said wins over ours
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported() and not self.fp16)
        extra_schedule = self.lr_scheduler_type if self.lr_scheduler_type in SCHEDULES else None
        if extra_schedule:  # transformers' own check knows only its SchedulerType names
            check_schedule_kwargs(extra_schedule, self.lr_scheduler_kwargs)
            self.lr_scheduler_type = "constant"
        check_sharding(self)
        if self.push_to_hub and not self.hub_model_id:  # checked before training, not after it
            from .errors import ConfigError

            raise ConfigError("--push_to_hub needs --hub_model_id namespace/name; add it or drop --push_to_hub")
        super().__post_init__()
        if extra_schedule:
            self.lr_scheduler_type = extra_schedule


def check_sharding(args) -> None:
    """FSDP and DeepSpeed shard across GPUs only: Accelerate sets them up for multi-GPU runs, and on a machine without
    a GPU it trains plain unsharded copies instead (FSDP) or fails deep inside transformers (DeepSpeed), so a sharded
    run is refused there, before transformers reads the option."""
    import importlib.util

    import torch

    from .errors import ConfigError

    engines = {
        "fsdp": ("FSDP", bool(args.fsdp) or os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"),
        "deepspeed": ("DeepSpeed", bool(args.deepspeed) or os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"),
    }
    for flag, (engine, asked) in engines.items():
        if asked and not torch.cuda.is_available():
            raise ConfigError(
                f"{engine} was asked for (--{flag} or an Accelerate {engine} config), but this machine has no GPU: "
                f"{engine} shards only across GPUs; drop it, or train on CPU with DDP (torchrun --nproc_per_node N "
                "recipes/<recipe>.py)")
    if engines["deepspeed"][1] and importlib.util.find_spec("deepspeed") is None:
        raise ConfigError("DeepSpeed was asked for but is not installed; pip install deepspeed, or use the FSDP config "
                          "(accelerate_configs/fsdp_full_shard_bf16.yaml)")
