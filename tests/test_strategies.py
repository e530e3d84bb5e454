"""Every registered strategy: what must stay frozen is bitwise unchanged, what must train changes, and each
layer group's effective learning rate at each step matches the strategy's spec. Plus resume mid-schedule."""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from hftransfer.models import load_classifier
from hftransfer.strategies import STRATEGIES, build_strategy
from hftransfer.arguments import StrategyArguments
from hftransfer.trainer import TransferTrainer
from hftransfer.training_args import TransferTrainingArguments

BASE_LR = 1e-2
STEPS = 6


class RandomImages(torch.utils.data.Dataset):
    def __init__(self, n: int = 48, size: int = 32, classes: int = 3):
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, size, size, generator=generator)
        self.y = torch.randint(0, classes, (n,), generator=generator)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class RecordLR(TrainerCallback):
    """Effective LR of each layer group (by name) at the start of each optimizer step."""

    def __init__(self):
        self.lrs: list[dict[str, float]] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        record = {}
        for group in optimizer.param_groups:
            record[group["name"].split("/")[0]] = group["lr"]
        self.lrs.append(record)


def make_trainer(model_dir, out, strategy_name: str, callbacks=(), **options):
    loaded = load_classifier(str(model_dir), ["a", "b", "c"], "image", image_size=32)
    strategy = build_strategy(StrategyArguments(strategy=strategy_name, **options))
    args = TransferTrainingArguments(
        output_dir=str(out), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=BASE_LR,
        lr_scheduler_type="constant", warmup_steps=0, eval_strategy="no", save_strategy="no",
        load_best_model_at_end=False, dataloader_num_workers=0, logging_steps=1, seed=0, disable_tqdm=True,
        weight_decay=0.01, num_train_epochs=1,
    )
    return TransferTrainer(model=loaded.model, args=args, train_dataset=RandomImages(), strategy=strategy,
                           callbacks=list(callbacks))


def snapshot(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def changed(before, after, names) -> dict[str, bool]:
    return {n: not torch.equal(before[n], after[n]) for n in names}


def group_params(trainer) -> list[tuple[str, list[str]]]:
    return [(g.name, list(g.parameters)) for g in trainer.strategy.groups]


SPEC = {
    # strategy -> (options, expected group LR scale at step s given group depth d (0 = head) and group count)
    "full": ({"head_lr_scale": 10.0}, lambda s, d, n: 10.0 if d == 0 else 1.0),
    "linear_probe": ({}, lambda s, d, n: 1.0 if d == 0 else None),
    "gradual": ({"unfreeze_unit": "step", "unfreeze_every": 2}, lambda s, d, n: 1.0 if d <= s // 2 else 0.0),
    "llrd": ({"layer_decay": 0.5}, lambda s, d, n: 0.5**d),
    "lp_ft": ({"lp_epochs": 0.5, "ft_lr_scale": 0.1}, lambda s, d, n: (1.0 if d == 0 else 0.0) if s < 3 else 0.1),
    "bitfit": ({}, lambda s, d, n: 1.0),
    "lora": ({"lora_r": 4}, lambda s, d, n: 1.0),
    "setfit": ({"setfit_iterations": 1}, lambda s, d, n: 1.0 if d == 0 else None),  # backbone: before step 0 only
}


def test_every_registered_strategy_has_a_spec():
    assert sorted(SPEC) == STRATEGIES.names()


@pytest.mark.parametrize("name", sorted(SPEC))
def test_strategy_freezes_trains_and_scales_lr_as_specified(name, tiny_timm_dir, tmp_path):
    options, expected_scale = SPEC[name]
    recorder = RecordLR()
    trainer = make_trainer(tiny_timm_dir, tmp_path / "out", name, callbacks=[recorder], **options)
    model = trainer.model
    before = snapshot(model)
    groups = group_params(trainer)
    trainer.train()
    after = snapshot(model)
    n = len(groups)

    # effective LR per group and step
    assert len(recorder.lrs) == STEPS
    for step, lrs in enumerate(recorder.lrs):
        for index, (group, _) in enumerate(groups):
            scale = expected_scale(step, n - 1 - index, n)
            if scale is None:
                assert group not in lrs  # out of the optimizer entirely: frozen for good
            else:
                assert lrs[group] == pytest.approx(BASE_LR * scale), (step, group)

    # which parameters moved
    state_names = lambda names: [k for k in names if k in before]  # noqa: E731  (peft renames some keys)
    head = state_names(groups[-1][1])
    if name == "lora":
        base_weights = [k for k in before if "base_layer" in k and k.endswith("weight")]
        adapters = [k for k in before if "lora_B" in k]
        assert base_weights and not any(changed(before, after, base_weights).values())
        assert any(changed(before, after, adapters).values())
        assert any(changed(before, after, [k for k in before if "modules_to_save" in k]).values())
        return
    assert all(changed(before, after, head).values())
    backbone = [k for _, names in groups[:-1] for k in state_names(names)]
    if name in ("full", "llrd"):
        assert all(changed(before, after, backbone).values())
    elif name == "linear_probe":
        assert not any(changed(before, after, backbone).values())
        buffers = [k for k in before if "running_mean" in k or "running_var" in k]
        assert buffers and not any(changed(before, after, buffers).values())  # frozen BN statistics
    elif name == "gradual":  # steps 0-1: head; 2-3: +1 group; 4-5: +2 groups
        trained = [k for _, names in groups[-3:-1] for k in names]
        frozen = [k for _, names in groups[:-3] for k in names]
        assert all(changed(before, after, trained).values())
        assert frozen and not any(changed(before, after, frozen).values())
    elif name in ("lp_ft", "setfit"):
        assert all(changed(before, after, backbone).values())
    elif name == "bitfit":
        conv_weights = [k for k in backbone if k.endswith("weight") and before[k].ndim == 4]
        biases = [k for k in backbone if k.endswith("bias")]
        assert conv_weights and not any(changed(before, after, conv_weights).values())
        assert biases and all(changed(before, after, biases).values())


@pytest.mark.parametrize("name", ["full", "lp_ft", "bitfit"])
def test_pretrained_norm_statistics_keep_running_stats_while_weights_train(name, tiny_timm_dir, tmp_path):
    options = {"lp_epochs": 0.3} if name == "lp_ft" else {}
    trainer = make_trainer(tiny_timm_dir, tmp_path / "out", name, norm_statistics="pretrained", **options)
    before = snapshot(trainer.model)
    trainer.train()
    after = snapshot(trainer.model)
    buffers = [k for k in before if "running_mean" in k or "running_var" in k]
    norm_weights = [k.replace("running_mean", "weight") for k in buffers if "running_mean" in k]
    assert buffers and not any(changed(before, after, buffers).values())
    assert all(changed(before, after, norm_weights).values())  # the affine part of every BatchNorm still trains


def test_unknown_norm_statistics_mode_is_a_config_error():
    from hftransfer.errors import ConfigError

    with pytest.raises(ConfigError, match="norm_statistics"):
        build_strategy(StrategyArguments(strategy="full", norm_statistics="frozen"))
    defaults = {name: build_strategy(StrategyArguments(strategy=name)).norm_statistics
                for name in ("full", "lp_ft", "bitfit")}
    assert defaults == {"full": "update", "lp_ft": "pretrained", "bitfit": "pretrained"}


def test_lr_scales_survive_a_warmup_schedule(tiny_timm_dir, tmp_path):
    recorder = RecordLR()
    trainer = make_trainer(tiny_timm_dir, tmp_path / "out", "llrd", callbacks=[recorder], layer_decay=0.5)
    trainer.args.lr_scheduler_type = "cosine"
    trainer.args.warmup_steps = 2
    trainer.train()
    head, below = recorder.lrs[-1]["head"], recorder.lrs[-1][trainer.strategy.groups[-2].name]
    assert 0 < head < BASE_LR and below == pytest.approx(head * 0.5)
    assert recorder.lrs[0]["head"] == 0.0 and recorder.lrs[1]["head"] == pytest.approx(BASE_LR / 2)


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def test_gradual_resume_mid_schedule_equals_uninterrupted_run(tiny_timm_dir, tmp_path):
    options = {"unfreeze_unit": "step", "unfreeze_every": 2}

    def run(out, callbacks=(), resume=None):
        trainer = make_trainer(tiny_timm_dir, out, "gradual", callbacks=callbacks, **options)
        trainer.args.save_strategy = "steps"
        trainer.args.save_steps = 3
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    uninterrupted = run(tmp_path / "a")
    interrupted = run(tmp_path / "b", callbacks=[StopAt(3)])
    assert interrupted.state.global_step == 3 and (tmp_path / "b" / "checkpoint-3").is_dir()
    resumed = run(tmp_path / "c", resume=str(tmp_path / "b" / "checkpoint-3"))

    expected, actual = snapshot(uninterrupted.model), snapshot(resumed.model)
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    # the resumed run continues in the phase of step 3 (head + one group): nothing re-frozen, no phase added at the
    # resumed step, and the phases before the checkpoint come back from it (the record and the model card list them)
    groups = [g.name for g in resumed.strategy.groups]
    assert resumed.strategy.phases == uninterrupted.strategy.phases
    assert [(p.start_step, p.trainable) for p in resumed.strategy.phases[:2]] == [(0, groups[-1:]), (2, groups[-2:])]


def test_reduce_lr_on_plateau_keeps_each_groups_factor(tiny_timm_dir, tmp_path):
    """transformers' plateau schedule is not a LambdaLR: the strategy's per-group factors (here the head's 10x and
    gradual unfreezing's 0 while frozen) used to be dropped with it. Reductions now scale every group alike."""
    loaded = load_classifier(str(tiny_timm_dir), ["a", "b", "c"], "image", image_size=32)
    strategy = build_strategy(StrategyArguments(strategy="gradual", head_lr_scale=10.0, unfreeze_unit="step",
                                                unfreeze_every=3))
    args = TransferTrainingArguments(
        output_dir=str(tmp_path), max_steps=STEPS, per_device_train_batch_size=8, learning_rate=BASE_LR,
        lr_scheduler_type="reduce_lr_on_plateau", warmup_steps=0, eval_strategy="steps", eval_steps=2,
        save_strategy="no", load_best_model_at_end=False, dataloader_num_workers=0, logging_steps=1, seed=0,
        disable_tqdm=True, report_to="none",
        lr_scheduler_kwargs={"factor": 0.5, "patience": 0, "mode": "max", "threshold": 1.0},  # reduce at every eval
    )
    record = RecordLR()
    trainer = TransferTrainer(model=loaded.model, args=args, train_dataset=RandomImages(),
                              eval_dataset=RandomImages(16), strategy=strategy, callbacks=[record])
    trainer.train()
    names = [g.name for g in trainer.strategy.groups]
    for step, lrs in enumerate(record.lrs):
        reductions = max(0, step // 2 - 1)  # evaluations after steps 2 and 4: the first sets the best, then halve
        base = BASE_LR * 0.5**reductions
        assert lrs["head"] == pytest.approx(10 * base), step
        for depth, name in enumerate(reversed(names[:-1]), start=1):
            expected = base if depth <= step // 3 else 0.0
            assert lrs[name] == pytest.approx(expected), (step, name)


@pytest.mark.parametrize("kwargs, milestones", [({}, (2, 4)), ({"milestones": [0.5], "gamma": 0.5}, (3,))])
def test_step_decay_schedule_keeps_each_groups_factor(kwargs, milestones, tiny_timm_dir, tmp_path):
    """--lr_scheduler_type step: lr * gamma at each milestone (a fraction of the steps), times the head's 10x."""
    record = RecordLR()
    trainer = make_trainer(tiny_timm_dir, tmp_path / "out", "full", callbacks=[record], head_lr_scale=10.0)
    trainer.args.lr_scheduler_type = "step"
    trainer.args.lr_scheduler_kwargs = kwargs
    trainer.train()
    gamma = kwargs.get("gamma", 0.1)
    for step, lrs in enumerate(record.lrs):
        base = BASE_LR * gamma ** sum(step >= m for m in milestones)
        assert lrs["head"] == pytest.approx(10 * base), step
        assert lrs["stem"] == pytest.approx(base), step


@pytest.mark.parametrize("kwargs, message", [('{"milestones": [1.5]}', "between 0 and 1"), ('{"gamma": 2}', "gamma"),
                                             ('{"step_size": 3}', "does not take")])
def test_step_decay_options_are_checked_at_parse_time(kwargs, message, image_recipe, tiny_timm_dir, tmp_path):
    from conftest import tiny_image_args
    from hftransfer.errors import HFTransferError

    with pytest.raises(HFTransferError, match=message):
        image_recipe.main(tiny_image_args(tiny_timm_dir, tmp_path / "out", "--lr_scheduler_type", "step",
                                          "--lr_scheduler_kwargs", kwargs))
    assert not (tmp_path / "out").exists()


SCHEDULE_KWARGS = {"cosine_with_min_lr": {"min_lr_rate": 0.1}, "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
                   "warmup_stable_decay": {"num_decay_steps": 2}}


def test_every_schedule_keeps_each_groups_factor(tiny_timm_dir, tmp_path):
    """Whatever --lr_scheduler_type (transformers' or ours), the head trains at 10x the backbone at every step."""
    from transformers.trainer_utils import SchedulerType

    from hftransfer.schedules import SCHEDULES

    names = [s.value for s in SchedulerType if s.value not in ("reduce_lr_on_plateau", "greedy")] + SCHEDULES.names()
    for name in names:  # reduce_lr_on_plateau: test_reduce_lr_on_plateau_keeps_each_groups_factor
        record = RecordLR()
        trainer = make_trainer(tiny_timm_dir, tmp_path / name, "full", callbacks=[record], head_lr_scale=10.0)
        trainer.args.lr_scheduler_type = SchedulerType(name) if name in SchedulerType._value2member_map_ else name
        trainer.args.lr_scheduler_kwargs = SCHEDULE_KWARGS.get(name, {})
        trainer.args.warmup_steps = 2
        trainer.train()
        assert len(record.lrs) == STEPS, name
        for step, lrs in enumerate(record.lrs):
            assert lrs["head"] == pytest.approx(10 * lrs["stem"]), (name, step)
        assert any(lrs["stem"] > 0 for lrs in record.lrs), name


def test_gradual_unfreezes_every_group_within_the_first_half_of_a_one_epoch_run(tiny_timm_dir, tmp_path):
    """Gradual's phases used to be one epoch each by default: a one-epoch run (the text recipe's default) trained the
    head alone from start to end. Now every group joins by half of the run, whatever its length."""
    trainer = make_trainer(tiny_timm_dir, tmp_path, "gradual")
    before = snapshot(trainer.model)
    trainer.train()
    names = [g.name for g in trainer.strategy.groups]
    phases = trainer.strategy.phases
    assert phases[0].start_step == 0 and phases[0].trainable == names[-1:]
    assert phases[-1].trainable == names and phases[-1].start_step <= STEPS // 2
    assert [len(p.trainable) for p in phases] == sorted(len(p.trainable) for p in phases)
    after = snapshot(trainer.model)
    moved = changed(before, after, [n for _, params in group_params(trainer) for n in params if n in before])
    assert all(moved.values()), [n for n, m in moved.items() if not m]


def test_lp_ft_fine_tunes_from_the_first_step_after_the_fitted_probe(tiny_timm_dir, tmp_path):
    """LP-FT's probe is the logistic-regression head fit (as in the paper); its default probing epoch made a
    one-epoch run a linear probe throughout. After a random head, the first half of the run probes."""
    fitted = make_trainer(tiny_timm_dir, tmp_path / "fit", "lp_ft")
    fitted.train()
    names = [g.name for g in fitted.strategy.groups]
    assert [(p.start_step, p.trainable) for p in fitted.strategy.phases] == [(0, names)]
    random_head = make_trainer(tiny_timm_dir, tmp_path / "random", "lp_ft", head_init="random")
    random_head.train()
    assert [(p.start_step, p.trainable) for p in random_head.strategy.phases] == [(0, names[-1:]), (STEPS // 2, names)]


def test_flos_count_the_parameters_once_per_model_not_every_step(tiny_timm_dir, tmp_path):
    trainer = make_trainer(tiny_timm_dir, tmp_path / "out", "full")
    model, calls = trainer.model, []
    count_parameters = model.num_parameters

    def counted(*args, **kwargs):
        calls.append(kwargs)
        return count_parameters(*args, **kwargs)

    model.num_parameters = counted  # the real count, recorded
    trainer.train()
    per_step = 6 * 8 * 3 * 32 * 32 * count_parameters(exclude_embeddings=True)  # Trainer's rule, batch of 8
    assert trainer.state.total_flos == per_step * STEPS
    assert calls == [{"exclude_embeddings": True}]
