"""Run a recipe under torchrun and write, per rank, a digest of the final weights and which groups changed.

    torchrun --nproc_per_node 2 tests/helpers/ddp_digest.py RECIPE_NAME DIGEST_DIR -- RECIPE ARGS...
"""

import hashlib
import json
import os
import sys
from pathlib import Path

import torch


def main():
    recipe, digest_dir = sys.argv[1], Path(sys.argv[2])
    argv = sys.argv[sys.argv.index("--") + 1:]
    from hftransfer.recipes import load_recipe

    module = load_recipe(recipe)

    initial_components = snapshot_components_at_setup()
    trained_rows = record_trained_token_rows()
    trainer = module.main(argv)
    model = trainer.accelerator.unwrap_model(trainer.model)
    state = {k: v.detach().cpu() for k, v in sorted(model.state_dict().items())}
    record = {"sha256": sha256(state), "phases": [p.trainable for p in getattr(trainer.strategy, "phases", [])]}
    components = {k: v.detach().cpu() for k, v in trainer.loss_components.named_parameters()}
    if components:  # parameters only: a discriminator's BatchNorm statistics are per-rank, like any unsynced buffer
        record["components_sha256"] = sha256(components)
        record["components_changed"] = any(not torch.equal(initial_components[k], v) for k, v in components.items())
    if trainer.strategy is not None:
        record["groups"] = {g.name: sorted(g.parameters) for g in trainer.strategy.groups}
        record["head_fit"] = trainer.strategy.head_fit
    if trained_rows:
        record["trained_rows"] = trained_rows
    rank = int(os.environ.get("RANK", "0"))
    digest_dir.mkdir(parents=True, exist_ok=True)
    (digest_dir / f"rank{rank}.json").write_text(json.dumps(record))
    torch.save(state, digest_dir / f"rank{rank}_state.pt")


def sha256(tensors: dict) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(tensors.items()):
        digest.update(key.encode())
        digest.update(value.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def snapshot_components_at_setup() -> dict:
    """The loss components' parameters right after TransferTrainer builds them (filled in during the run)."""
    from hftransfer.trainer import TransferTrainer

    initial: dict = {}
    setup = TransferTrainer._setup_loss_components

    def setup_and_snapshot(self):
        setup(self)
        initial.update({k: v.detach().cpu().clone() for k, v in self.loss_components.named_parameters()})

    TransferTrainer._setup_loss_components = setup_and_snapshot
    return initial



def record_trained_token_rows() -> list:
    """Each text example this rank trains on, as its token ids without padding (filled in during the run)."""
    from hftransfer.trainer import TransferTrainer

    rows: list = []
    compute_loss = TransferTrainer.compute_loss

    def compute_loss_and_record(self, model, inputs, *args, **kwargs):
        if model.training and "input_ids" in inputs:
            for ids, mask in zip(inputs["input_ids"].tolist(), inputs["attention_mask"].tolist()):
                rows.append([i for i, m in zip(ids, mask) if m])
        return compute_loss(self, model, inputs, *args, **kwargs)

    TransferTrainer.compute_loss = compute_loss_and_record
    return rows


if __name__ == "__main__":
    main()
