"""TransferTrainer: transformers.Trainer plus strategy-built parameter groups, pluggable loss terms and fast defaults."""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

from .adaptation.base import DISCRIMINATOR_LR_SCALE
from .drift import layer_drift, snapshot
from .errors import ConfigError
from .metrics import compute_classification_metrics, predicted_classes
from .models.groups import capture_pooled_features, head_module, head_parameter_names, layer_groups, trained_head
from .models.timm_layout import fix_timm_config, is_timm_wrapper, timm_state_dict
from .redact import redacted_args
from .schedules import SCHEDULES, PlateauWithFactors


def keep_freed_host_memory() -> None:
    """CPU training: keep freed tensor memory in the heap instead of handing it back to the OS.

    glibc trims the heap and maps large blocks afresh, so each step page-faults its activations back in: tens of
    thousands of faults per step, ~7% of a MiniLM step on 2 cores (benchmarks/throughput.py, text-fixed). Fixed
    thresholds keep blocks up to glibc's 32 MiB maximum in the heap and the heap untrimmed; numerics are untouched.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows): nothing to tune
        return
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: give memory back only past 1 GiB free at the heap top
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: blocks up to 32 MiB from the heap, reused step after step


def read_streams_on_every_rank(args) -> None:
    """A streamed train split is read by each process (Accelerate gives each its file shards, or its slice of each
    global batch), not read on rank 0 and sent out, which is Accelerate's default for an IterableDataset."""
    if args.accelerator_config.dispatch_batches is None:
        args.accelerator_config.dispatch_batches = False


def is_convolutional(model: nn.Module) -> bool:
    """More than one Conv2d means a CNN (a ViT has just its patch embedding): those gain from channels_last."""
    return sum(isinstance(m, nn.Conv2d) for m in model.modules()) > 1


class TransferTrainer(Trainer):
    """A Trainer whose loss is the task loss plus registered terms, and whose optimizer follows a strategy.

    `strategy`: builds parameter groups (with learning-rate scales) and may freeze/unfreeze over training.
    `loss_components`: modules returning weighted scalar terms from an AdaptationContext; each is logged by name.
    Their own parameters (domain discriminators) train with the model's optimizer, are averaged across DDP ranks,
    are saved in checkpoints (`loss_components.safetensors`) and never in the exported classifier.
    `report_datasets`: name -> dataset scored at every evaluation beside eval_dataset (as eval_<name>_<metric>), for
    the record only: checkpoint selection reads eval_dataset alone (domain adaptation: the target's splits).

    Paired domain-adaptation batches (hftransfer.data.paired) carry `labels` for the first rows only: every row
    past `len(labels)` is an unlabelled target-domain example, seen by the components but not by the task loss.
    """

    COMPONENTS_CHECKPOINT = "loss_components.safetensors"
    STATE_CHECKPOINT = "hftransfer_state.json"  # what the final report needs from before a resume (strategy phases)
    BUFFERS_CHECKPOINT = "model_buffers.safetensors"  # LoRA: the base model's buffers (BatchNorm running statistics)

    def __init__(self, model=None, args=None, *rest, strategy=None, loss_components=(), report_datasets=None, **kwargs):
        kwargs.setdefault("compute_metrics", compute_classification_metrics)
        kwargs.setdefault("preprocess_logits_for_metrics", predicted_classes)
        if strategy is not None:
            model = strategy.prepare_model(model)
        if model is not None and is_convolutional(model):
            model.to(memory_format=torch.channels_last)
        self.strategy = strategy
        self.loss_components = nn.ModuleList(loss_components)
        self.report_datasets = dict(report_datasets or {})
        self._term_totals: dict[str, torch.Tensor] = {}
        if args is not None and isinstance(kwargs.get("train_dataset"), torch.utils.data.IterableDataset):
            read_streams_on_every_rank(args)
        super().__init__(model, args, *rest, **kwargs)
        # Classification models take **kwargs, so transformers would pass them num_items_in_batch and then treat their
        # loss as a sum over the whole accumulated, all-process batch; but they return a per-batch mean (BERT's
        # CrossEntropyLoss ignores it). Measured on BERT: logged loss and gradients 2x with --gradient_accumulation_steps
        # 2, and 2x under 2-process DDP. A per-batch mean is what every hftransfer model returns, so say so.
        self.model_accepts_loss_kwargs = False
        if self.args.device.type == "cpu":
            keep_freed_host_memory()
        if self.strategy is not None:
            self.strategy.attach(self)
        self._setup_loss_components()
        self._wise_ft_start = self._snapshot_for_wise_ft()
        self.wise_ft: dict | None = None
        # one CPU copy of the starting weights: WiSE-FT's when it keeps one (its state dict holds every parameter)
        self._drift_start = self._wise_ft_start if self._wise_ft_start is not None else (
            snapshot(self.model) if self.model is not None else None)
        self.layer_drift: list[dict] | None = None  # per layer group, for the card (hftransfer.drift)
        self.lengthened_epoch_steps: int | None = None  # set when --min_train_steps lengthens the run, or streaming
        self._start_is_candidate = False  # set by train() when a fitted head makes step 0 a selection candidate

    def _snapshot_for_wise_ft(self) -> dict[str, torch.Tensor] | None:
        alphas = getattr(self.args, "wise_ft_alphas", None)
        if not alphas:
            return None
        from .weights import check_alphas

        check_alphas(alphas)
        if self.eval_dataset is None:
            raise ConfigError("--wise_ft_alphas chooses alpha on the validation split, but there is none; pass one")
        if _is_peft(self.model):
            raise ConfigError("--wise_ft_alphas interpolates full weights, which LoRA does not train; use another "
                              "--strategy or drop --wise_ft_alphas")
        return {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}

    def train(self, resume_from_checkpoint=None, *args, **kwargs):
        lengthened = self._apply_min_train_steps()
        if self.strategy is not None:
            self.strategy.settle_head_init(lengthened)
        if self.strategy is not None and not resume_from_checkpoint:  # a resumed run's weights come from its checkpoint
            self.strategy.before_training(self)
            if self.strategy.head_init == "fit" and self._fit_head():
                # the fitted start is already a model (the linear probe): a selection candidate (see _evaluate_start)
                self._start_is_candidate = bool(self.args.load_best_model_at_end and self.eval_dataset is not None)
        self._terms_logged_at = None  # set to the first step this call trains: the resumed one after a resume
        self._term_totals = {}
        output = super().train(resume_from_checkpoint, *args, **kwargs)
        if self._wise_ft_start is not None:
            from .weights import choose_wise_ft

            self.wise_ft = choose_wise_ft(self, self._wise_ft_start, self.args.wise_ft_alphas)
        if self._drift_start is not None:
            groups = self.strategy.groups if self.strategy is not None else layer_groups(self.model)
            self.layer_drift = layer_drift(self.model, self._drift_start, groups)
        return output

    def _fit_head(self) -> bool:
        from .head_fit import fit_head

        record = fit_head(self, c=self.strategy.head_fit_c)
        self.strategy.head_fit = record
        if self.is_world_process_zero():
            if record:
                print(f"[hftransfer] head fitted by logistic regression on {record['examples']:,d} training examples' "
                      f"features (C={record['c']:g}): training accuracy {record['train_accuracy']:.4f}", flush=True)
            else:
                print(f"[hftransfer] head_init fit: the head ({type(trained_head(self.model)).__name__}) is not one "
                      "linear layer; it keeps its initialisation", flush=True)
        return record is not None

    def epoch_steps(self) -> int:
        """Optimizer steps in one epoch over the training set, as transformers counts them (all processes together)."""
        batches = math.ceil(len(self.train_dataset) / (self.args.per_device_train_batch_size * self.args.world_size))
        return max(1, batches // self.args.gradient_accumulation_steps)

    def _apply_min_train_steps(self) -> bool:
        """--min_train_steps: a run that --num_train_epochs would keep shorter trains at least that many steps (and
        True is returned). Its
        per-epoch evaluations and saves become as many evenly spaced ones as the epochs asked for, the last at the
        final step (a 30-example run lengthened to 200 one-batch epochs is not evaluated 200 times), and a strategy's
        epochs are those stretched epochs too. A stream (--streaming) has no epochs to count: its --max_steps are
        split into --num_train_epochs periods the same way."""
        args = self.args
        evaluations = max(1, math.ceil(args.num_train_epochs))
        if not hasattr(self.train_dataset, "__len__"):
            if args.max_steps > 0:
                self._epochs_as_steps(math.ceil(args.max_steps / evaluations))
            return False
        wanted = getattr(args, "min_train_steps", 0)
        if wanted <= 0 or args.max_steps > 0:
            return False
        if math.ceil(args.num_train_epochs * self.epoch_steps()) >= wanted:
            return False
        every = math.ceil(wanted / evaluations)
        args.max_steps = every * evaluations
        self._epochs_as_steps(every)
        return True

    def _epochs_as_steps(self, every: int) -> None:
        """Epoch-wise evaluation, saving and strategy epochs (lp_epochs, unfreeze_every) happen every `every` steps."""
        from transformers.trainer_utils import IntervalStrategy, SaveStrategy

        args = self.args
        self.lengthened_epoch_steps = every
        if args.eval_strategy == IntervalStrategy.EPOCH:
            args.eval_strategy, args.eval_steps = IntervalStrategy.STEPS, every
        if args.save_strategy == SaveStrategy.EPOCH:
            args.save_strategy, args.save_steps = SaveStrategy.STEPS, every

    def _setup_loss_components(self) -> None:
        """Build discriminators for this model's feature size and snapshot starting weights (L2-SP), on its device."""
        if not len(self.loss_components):
            return
        model = self.model
        head = head_module(model)
        feature_dim = getattr(head, "in_features", None)
        num_classes = getattr(getattr(model, "config", None), "num_labels", None) or getattr(head, "out_features", None)
        head_names = head_parameter_names(model)
        for component in self.loss_components:
            component.setup(model, feature_dim=feature_dim, num_classes=num_classes, head_param_names=head_names)
        self.loss_components.to(self.args.device)
        if any(True for _ in self.loss_components.parameters()):
            self.add_callback(_ZeroComponentGradients(self))

    def _get_train_sampler(self, train_dataset=None):
        """Length-grouped batches (the text recipe's default) in an order drawn from (seed, epoch): transformers'
        LengthGroupedSampler draws it from the global random state when the epoch's first batch is fetched, which a
        run resumed mid-epoch cannot reproduce (measured: a text run resumed in its 2nd epoch trained on the 1st
        epoch's order). Random sampling is already keyed to (seed, epoch) by accelerate's SeedableRandomSampler."""
        sampler = super()._get_train_sampler(train_dataset)
        if type(sampler) is LengthGroupedSampler and sampler.generator is None:
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            return EpochLengthGroupedSampler(sampler.batch_size, lengths=sampler.lengths, seed=seed)
        return sampler

    def get_eval_dataloader(self, eval_dataset=None):
        # transformers caches persistent-worker eval loaders under the key "eval" whatever Dataset is passed, so
        # `evaluate(test_split)` would silently re-evaluate the validation split: build other datasets afresh.
        if eval_dataset is None or isinstance(eval_dataset, str) or eval_dataset is self.eval_dataset:
            return super().get_eval_dataloader(eval_dataset)
        return self._get_dataloader(
            dataset=eval_dataset, description="Evaluation", batch_size=self.args.eval_batch_size,
            sampler_fn=self._get_eval_sampler,
        )

    def evaluate(self, *args, **kwargs):
        """Evaluation leaves the random state as it found it (its data loader draws a seed from it), so training takes
        the same random draws (dropout) however often it evaluates, and a run resumed from a checkpoint saved just
        before an epoch-end evaluation continues as the uninterrupted run did (measured: text runs resumed at an
        epoch boundary diverged from the first step on)."""
        with _random_state_kept(self.args.device):
            metrics = super().evaluate(*args, **kwargs)
            bound = inspect.signature(super().evaluate).bind(*args, **kwargs).arguments
            if bound.get("eval_dataset") is None and bound.get("metric_key_prefix", "eval") == "eval":
                for name, dataset in self.report_datasets.items():  # reported beside the selection metric, never used
                    metrics.update(super().evaluate(dataset, bound.get("ignore_keys"), f"eval_{name}"))
            return metrics

    def _determine_best_metric(self, metrics, trial) -> bool:
        """--best_model_ties later: a checkpoint that equals the best metric so far replaces it (transformers keeps the
        first). Domain adaptation's source validation accuracy saturates early while the target keeps improving."""
        best = self.state.best_metric
        if getattr(self.args, "best_model_ties", "earlier") == "later" and best is not None:
            key = self.args.metric_for_best_model
            value = metrics.get(key if key.startswith("eval_") else f"eval_{key}")
            if value is not None and value == best:
                self.state.best_global_step = self.state.global_step
                return True
        return super()._determine_best_metric(metrics, trial)

    # ---- optimisation ----

    def create_optimizer(self, model=None):
        if self.optimizer is None and (self.strategy is not None or len(self.loss_components)):
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, self.model)
            groups = (
                self.strategy.param_groups(self.model, self.args)
                if self.strategy is not None
                else self._default_param_groups()
            )
            for component in self.loss_components:
                groups += self._component_param_groups(component)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
            return self.optimizer
        return super().create_optimizer(model)

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """The HF schedule (or one of hftransfer.schedules) times each layer group's strategy factor (LR scale, 0 while
        frozen); reduce_lr_on_plateau, which is no LambdaLR, keeps the factors through PlateauWithFactors."""
        if self.lr_scheduler is None and self.args.lr_scheduler_type in SCHEDULES:
            factor = SCHEDULES.get(self.args.lr_scheduler_type)(
                self.args.get_warmup_steps(num_training_steps), num_training_steps, **(self.args.lr_scheduler_kwargs or {}))
            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, factor)
            self._created_lr_scheduler = True
        scheduler = super().create_scheduler(num_training_steps, optimizer)
        if self.strategy is None:
            return scheduler
        optimizer = optimizer or self.optimizer
        factors = [
            self.strategy.scheduler_factor(g["layer_group"]) if "layer_group" in g else (lambda step: 1.0)
            for g in optimizer.param_groups
        ]
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.lr_scheduler = PlateauWithFactors(optimizer, factors, **(self.args.lr_scheduler_kwargs or {}))
            self.add_callback(_ApplyPlateauFactors(self))
            return self.lr_scheduler
        if not isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR):
            return scheduler
        schedule = scheduler.lr_lambdas[0]
        for group in optimizer.param_groups:  # undo the first step LambdaLR already applied
            group["lr"] = group["initial_lr"]
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, [lambda step, f=f: schedule(step) * f(step) for f in factors]
        )
        return self.lr_scheduler

    def _component_param_groups(self, component: nn.Module) -> list[dict]:
        """A component's parameters at DISCRIMINATOR_LR_SCALE x the learning rate x its lr_scale; biases and norms without
        weight decay: Trainer's rule (get_decay_parameter_names), which finds norm layers by LayerNorm type or a 'norm'
        name, plus every other norm layer by type (a discriminator's BatchNorm1d is named like 'discriminator.1')."""
        norms = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm)
        in_norm = {f"{m}.{n}" if m else n for m, module in component.named_modules() if isinstance(module, norms)
                   for n, _ in module.named_parameters(recurse=False)}
        decay = set(self.get_decay_parameter_names(component)) - in_norm
        params = [(n, p) for n, p in component.named_parameters() if p.requires_grad]
        lr = self.args.learning_rate * (DISCRIMINATOR_LR_SCALE * component.lr_scale)  # 10 x 0.1 is exactly 1
        groups = [
            {"params": [p for n, p in params if n in decay], "weight_decay": self.args.weight_decay,
             "name": f"{component.name}/decay", "lr": lr},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0,
             "name": f"{component.name}/no_decay", "lr": lr},
        ]
        return [g for g in groups if g["params"]]

    def _clip_grad_norm(self, model):
        """The model's gradient and each component's (a discriminator's) are clipped to max_grad_norm separately, so
        neither player of the adversarial game sets the other's step size; the returned (logged) norm is the model's."""
        if self.strategy is not None:  # frozen groups' gradients must not count in the clipping norm
            self.strategy.drop_frozen_gradients(self.state.global_step)
        norm = super()._clip_grad_norm(model)  # first: with a loss scaler this also unscales the components' gradients
        for component in self.loss_components:
            grads = [p for p in component.parameters() if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, self.args.max_grad_norm)
        return norm

    def _default_param_groups(self) -> list[dict]:
        decay = set(self.get_decay_parameter_names(self.model))
        params = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        return [
            {"params": [p for n, p in params if n in decay], "weight_decay": self.args.weight_decay, "name": "decay"},
            {"params": [p for n, p in params if n not in decay], "weight_decay": 0.0, "name": "no_decay"},
        ]

    # ---- loss ----

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.strategy is not None and model.training:
            self.strategy.freeze_norm_statistics(model, self.state.global_step)
        if not len(self.loss_components) or not model.training:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        from .adaptation import AdaptationContext

        labels = inputs["labels"]
        # the features the classifier reads (its head's input): what the components align is what the predictions
        # come from (README, Domain features)
        with capture_pooled_features(self.accelerator.unwrap_model(model)) as features:
            outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
        logits, pooled, n = outputs.logits, features[0], labels.shape[0]
        paired = logits.shape[0] > n  # rows past the labels are target-domain examples
        logits_source, features_source = logits[:n], pooled[:n]
        logits_target, features_target = (logits[n:], pooled[n:]) if paired else (None, None)
        if logits.dim() == 3:  # logits per position [B, T, C], labels [B, T] (-100: none, HF's convention): a row per
            labelled = labels != -100  # labelled position, per attended one on the target (indexing syncs: here only)
            logits_source, features_source, labels = logits_source[labelled], features_source[labelled], labels[labelled]
            if paired:
                attended = inputs["attention_mask"][n:].bool()
                logits_target, features_target = logits_target[attended], features_target[attended]
        context = AdaptationContext(
            features_source=features_source, logits_source=logits_source, labels_source=labels,
            features_target=features_target, logits_target=logits_target,
            progress=self.state.global_step / max(1, self.state.max_steps), model=self.accelerator.unwrap_model(model),
        )
        per_example = nn.functional.cross_entropy(logits_source.float(), labels, reduction="none",
                                                  label_smoothing=self.args.label_smoothing_factor)
        for component in self.loss_components:
            weights = component.source_loss_weights(context)
            if weights is not None:
                per_example = per_example * weights
        loss = per_example.mean()
        self._accumulate_term("task", loss)  # logged as loss_task, beside each term (e.g. loss_dann)
        for component in self.loss_components:
            term = component(context)
            self._accumulate_term(component.name, term)
            loss = loss + term
        return (loss, outputs) if return_outputs else loss

    def floating_point_ops(self, inputs) -> int:
        """Trainer's estimate (6 x the main input's elements x the non-embedding parameters), with the parameters
        counted once per model: Trainer walks every parameter at every step (py-spy, default image recipe on CPU:
        0.35% of the training loop, the largest item of its own per-step bookkeeping)."""
        model = self.model
        main_input = getattr(model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if getattr(self, "_counted_model", None) is not model:
            self._counted_model, self._parameter_count = model, model.num_parameters(exclude_embeddings=True)
        return 6 * inputs[main_input].numel() * self._parameter_count

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.args.world_size > 1 and len(self.loss_components) and self.accelerator.sync_gradients:
            self._average_component_gradients()  # once per optimizer step, when DDP syncs the model's
        return loss

    def _average_component_gradients(self) -> None:
        """DDP averages the model's gradients only; components (outside the DDP module) are averaged here, in one call."""
        grads = [p.grad for p in self.loss_components.parameters() if p.grad is not None]
        if not grads:  # every rank is at the same step, so all skip together (e.g. a component with weight 0)
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        flat /= self.args.world_size
        offset = 0
        for grad in grads:
            grad.copy_(flat[offset: offset + grad.numel()].view_as(grad))
            offset += grad.numel()

    def _accumulate_term(self, name: str, term: torch.Tensor) -> None:
        """Summed on the device; read back only when the Trainer logs (no per-step host sync)."""
        detached = term.detach().float()
        self._term_totals[name] = self._term_totals.get(name, 0) + detached

    def _run_epoch(self, *args, **kwargs):
        """Each epoch's augmentation is keyed to (seed, epoch, example), independent of the global random state: set
        before the epoch's loader iterator (and its workers) start. See hftransfer.data.vision.ImageBatchTransform.
        Loss terms are averaged from the first step this train() call runs (the resumed step after a resume)."""

        from .data.vision import set_augmentation_epoch

        if getattr(self, "_terms_logged_at", None) is None:
            self._terms_logged_at = self.state.global_step
        bound = inspect.signature(super()._run_epoch).bind_partial(*args, **kwargs).arguments
        if self._start_is_candidate and self.state.global_step == 0:
            self._start_is_candidate = False
            self._evaluate_start(bound.get("trial"))
        loader = bound.get("train_dataloader")
        read = (getattr(loader, "dataset", None), self.train_dataset)  # a stream's loader reads this rank's shard
        for dataset in {id(d): d for d in read if d is not None}.values():
            set_augmentation_epoch(dataset, self.args.seed, bound["epoch"])
        return super()._run_epoch(*args, **kwargs)

    def _evaluate_start(self, trial) -> None:
        """A fitted head's start is evaluated and, when best so far, checkpointed as step 0: selection on validation
        then never returns a model worse there than the logistic-regression probe it started from (measured on
        tweets, 10 labels per class: lp_ft, every layer fine-tuned from the fitted head, ended below linear_probe on
        each of 3 seeds). Training itself is unchanged (evaluation keeps the random state)."""
        metrics = self.evaluate()
        if self._determine_best_metric(metrics, trial):
            self._save_checkpoint(self.model, trial)
            # transformers records a best checkpoint only for a best step > 0 (`if state.best_global_step`)
            self.state.best_model_checkpoint = os.path.join(self._get_output_dir(trial), "checkpoint-0")

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            self._add_throughput(logs)
        if self._term_totals and "loss" in logs:
            steps = max(1, self.state.global_step - (getattr(self, "_terms_logged_at", None) or 0))
            for name, total in self._term_totals.items():
                logs[f"loss_{name}"] = round(float(total) / steps / self.args.gradient_accumulation_steps, 6)
            self._term_totals = {}
            self._terms_logged_at = self.state.global_step
        super().log(logs, start_time)

    def _add_throughput(self, logs: dict) -> None:
        """Training samples/s since the previous log line (wall clock; the logged loss already synced)."""
        now, step = time.perf_counter(), self.state.global_step
        last_time, last_step = getattr(self, "_throughput_mark", (None, 0))
        if last_time is not None and step > last_step:
            args = self.args
            samples = (step - last_step) * args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            logs["train_samples_per_second_recent"] = round(samples / (now - last_time), 2)
        self._throughput_mark = (now, step)

    # ---- saving ----

    def _save_checkpoint(self, model, trial) -> None:
        """Trainer's checkpoint, then this tool's own files, then the manifest marking it complete (written last, so a
        kill or a full disk mid-save leaves a checkpoint `--resume_from_checkpoint last` skips), and only then are
        older checkpoints rotated out."""
        import shutil

        from transformers.trainer_utils import rotate_checkpoints

        from .checkpoints import write_checkpoint_manifest

        run_dir = self._get_output_dir(trial)
        folder = os.path.join(run_dir, f"checkpoint-{self.state.global_step}")
        if self.args.should_save and os.path.isdir(folder):
            shutil.rmtree(folder)  # a killed run's leftover at this step: never mixed into the new checkpoint
        self.accelerator.wait_for_everyone()
        limit = self.args.save_total_limit
        self.args.save_total_limit = None  # Trainer rotates before this tool's files exist: rotated below instead
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self.args.save_total_limit = limit
        self.accelerator.wait_for_everyone()  # every process has written its RNG state
        if not self.args.should_save:
            return
        if len(self.loss_components):
            from safetensors.torch import save_file

            state = {k: v.detach().cpu().contiguous() for k, v in self.loss_components.state_dict().items()}
            save_file(state, os.path.join(folder, self.COMPONENTS_CHECKPOINT))
        buffers = _peft_buffers(self.accelerator.unwrap_model(self.model))
        if buffers:  # a LoRA checkpoint holds the adapter only: the base model's moving statistics go here
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in buffers.items()},
                      os.path.join(folder, self.BUFFERS_CHECKPOINT))
        if self.strategy is not None:
            record = {"strategy": self.strategy.state_dict()}
            with open(os.path.join(folder, self.STATE_CHECKPOINT), "w", encoding="utf-8") as file:
                file.write(json.dumps(record, indent=1) + "\n")
        home_free_trainer_state(os.path.join(folder, "trainer_state.json"))
        write_checkpoint_manifest(folder)
        rotate_checkpoints(output_dir=run_dir, save_total_limit=limit,
                           best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        components = self.loss_components.state_dict() if len(self.loss_components) else {}
        if components:  # discriminators and other component state: never silently restarted from scratch
            from safetensors.torch import load_file

            path = os.path.join(resume_from_checkpoint, self.COMPONENTS_CHECKPOINT)
            names = ", ".join(c.name for c in self.loss_components)
            if not os.path.isfile(path):
                raise ConfigError(
                    f"checkpoint {str(resume_from_checkpoint)!r} has no {self.COMPONENTS_CHECKPOINT}, so the state of "
                    f"{names} would restart untrained; resume from a checkpoint of a run with the same method, or "
                    "start afresh without --resume_from_checkpoint"
                )
            saved = load_file(path, device=str(self.args.device))
            if set(saved) != set(components):
                raise ConfigError(
                    f"checkpoint {str(resume_from_checkpoint)!r} holds loss-component state that does not match "
                    f"{names}; resume with the method and options of the run that wrote it"
                )
            self.loss_components.load_state_dict(saved)
        self._load_peft_buffers(resume_from_checkpoint, model)
        state_path = os.path.join(resume_from_checkpoint, self.STATE_CHECKPOINT)
        if self.strategy is not None and os.path.isfile(state_path):
            with open(state_path, encoding="utf-8") as file:
                self.strategy.load_state_dict(json.load(file).get("strategy", {}))

    def _load_best_model(self) -> None:
        super()._load_best_model()
        # Trainer restores a LoRA checkpoint's adapter only: the BatchNorm statistics it was evaluated with come too
        self._load_peft_buffers(self.state.best_model_checkpoint)

    def _load_peft_buffers(self, checkpoint: str, model=None) -> None:
        buffers = _peft_buffers(self.accelerator.unwrap_model(model if model is not None else self.model))
        if not buffers:
            return
        path = os.path.join(checkpoint, self.BUFFERS_CHECKPOINT)
        if not os.path.isfile(path):
            import sys

            print(f"warning: checkpoint {str(checkpoint)!r} has no {self.BUFFERS_CHECKPOINT}: the base model's "
                  "BatchNorm running statistics restart from the pretrained ones", file=sys.stderr, flush=True)
            return
        from safetensors.torch import load_file

        saved = load_file(path)
        if set(saved) != set(buffers):
            raise ConfigError(f"checkpoint {str(checkpoint)!r} holds model buffers that do not match this model's; "
                              "resume with the model and --strategy of the run that wrote it")
        with torch.no_grad():
            for name, tensor in saved.items():
                buffers[name].copy_(tensor)

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """The final save: a plain model folder (LoRA merged) plus the strategy record; checkpoints stay raw."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        export = getattr(self.strategy, "export_model", None)
        if _internal_call or export is None:
            super().save_model(output_dir, _internal_call=True)  # never Trainer's push: see push_to_hub below
        elif self.args.should_save:
            trained = self.model
            self.model = export(self.accelerator.unwrap_model(trained))
            try:
                self._save(output_dir)
            finally:
                self.model = trained
        if not _internal_call and self.strategy is not None:
            self.strategy.finalize(self, output_dir)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        model = self.accelerator.unwrap_model(self.model)
        if is_timm_wrapper(model) and not _is_peft(model):  # timm's own layout: loads in timm.create_model and in AutoModel
            state_dict = timm_state_dict(state_dict if state_dict is not None else model.state_dict())
        with redacted_args(self.args):  # training_args.bin holds no Hub token and no home-folder path
            super()._save(output_dir, state_dict)
        if self.args.should_save and is_timm_wrapper(model) and not _is_peft(model):
            fix_timm_config(output_dir)
        if self.args.should_save and _is_peft(model):  # a LoRA checkpoint: peft names the base model's local path
            from .redact import public_adapter_files

            public_adapter_files(output_dir)


    # ---- Hub: recipes push once, after the card is written (hftransfer.hub.push_run); Trainer's pushes are off ----

    def create_model_card(self, *args, **kwargs) -> None:
        """The card of a recipe run is hftransfer's (hftransfer.hub.write_run_card); re-rendered here, not replaced by
        Trainer's generic one. A trainer built outside a recipe keeps Trainer's."""
        from .hub import CARD_INPUTS, render_card

        if not self.is_world_process_zero():
            return
        if (Path(self.args.output_dir) / CARD_INPUTS).is_file():
            render_card(self.args.output_dir, repo_id=self.args.hub_model_id)
        else:
            super().create_model_card(*args, **kwargs)

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """No Hub call when the trainer is built: the repo is created by the final push."""
        self.hub_model_id = self.args.hub_model_id
        self.push_in_progress = None

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints are local resume state (optimizer, RNG, absolute paths): never uploaded."""

    def push_to_hub(self, commit_message: str | None = None, blocking: bool = True, token: str | None = None,
                    revision: str | None = None, **kwargs) -> str | None:
        """Upload output_dir as it is (model, card, metrics) in one commit; call after save_model()."""
        from .hub import push_output

        if not self.is_world_process_zero():
            return None
        if not self.args.hub_model_id:
            raise ConfigError("pushing needs --hub_model_id namespace/name; add it")
        return push_output(
            self.args.output_dir, self.args.hub_model_id, private=self.args.hub_private_repo,
            token=token or self.args.hub_token, commit_message=commit_message,
        )


def home_free_trainer_state(path: str) -> None:
    """Record the best checkpoint without the home folder: relative to the working directory, as Trainer does for a
    relative output_dir (resuming from there finds it), or as ~/... where even that path would name the home folder
    (resuming then starts best-checkpoint tracking afresh, with Trainer's warning)."""
    import json

    from .redact import home, home_relative

    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as file:
        state = json.load(file)
    best = state.get("best_model_checkpoint")
    if not best or not home() or home() not in best:
        return
    try:
        relative = os.path.relpath(best)
    except ValueError:  # another drive (Windows)
        relative = best
    state["best_model_checkpoint"] = relative if home() not in relative else home_relative(best)
    with open(path, "w", encoding="utf-8") as file:
        file.write(json.dumps(state, indent=2, sort_keys=True) + "\n")


class EpochLengthGroupedSampler(LengthGroupedSampler):
    """LengthGroupedSampler whose order for each epoch is drawn from (seed, epoch), like SeedableRandomSampler;
    Trainer sets the epoch (`set_epoch`) before each epoch, also through accelerate's skip-batches loader."""

    def __init__(self, batch_size: int, *, lengths: list[int], seed: int):
        super().__init__(batch_size, lengths=lengths)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(get_length_grouped_indices(self.lengths, self.batch_size, generator=generator))


def _peft_buffers(model) -> dict[str, torch.Tensor]:
    """A peft model's persistent buffers (BatchNorm running statistics), which its adapter checkpoints leave out."""
    if not _is_peft(model):
        return {}
    names = {name for name, _ in model.named_buffers()}
    return {k: v for k, v in model.state_dict(keep_vars=True).items() if k in names}


@contextlib.contextmanager
def _random_state_kept(device: torch.device):
    """Restore the torch (CPU and this process's GPU), python and numpy random states on the way out."""
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices, device_type="cuda"):
            yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


def _is_peft(model) -> bool:
    from accelerate.utils import is_peft_model

    return is_peft_model(model)


class _ZeroComponentGradients(TrainerCallback):
    """Trainer zeroes the model's gradients only (`model.zero_grad()` at train start and after every optimizer step);
    the loss components' parameters (discriminators) live outside the model, so their gradients are cleared here at
    the same two points: once per optimizer step, whatever the gradient accumulation."""

    def __init__(self, trainer: "TransferTrainer"):
        self.trainer = trainer

    def _zero(self) -> None:
        self.trainer.loss_components.zero_grad(set_to_none=True)

    def on_train_begin(self, args, state, control, **kwargs):
        self._zero()

    def on_optimizer_step(self, args, state, control, **kwargs):
        self._zero()


class _ApplyPlateauFactors(TrainerCallback):
    """Sets each optimizer group's rate for the coming step under PlateauWithFactors (a LambdaLR does this itself when
    it steps after each optimizer step)."""

    def __init__(self, trainer: "TransferTrainer"):
        self.trainer = trainer

    def _apply(self, state) -> None:
        scheduler = self.trainer.lr_scheduler
        if hasattr(scheduler, "factors"):
            scheduler.apply(state.global_step)

    def on_train_begin(self, args, state, control, **kwargs):
        self._apply(state)

    def on_step_end(self, args, state, control, **kwargs):
        self._apply(state)
