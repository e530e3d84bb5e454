"""Paired source/target batches for domain adaptation: labelled source rows, then unlabelled target rows.

One training batch holds ``B`` source examples followed by ``B`` target examples in the same tensors, so a
single forward pass yields source logits and the pooled features of both domains. ``labels`` covers only
the source rows; TransferTrainer reads every row past ``len(labels)`` as target domain. Target labels never
reach training: the collator drops them.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch


class PairedDataset(torch.utils.data.Dataset):
    """Item i = (source[i mod Ns], target[order[i mod Nt]]); one epoch covers the longer side, the shorter cycles.

    ``order`` is a seeded permutation of the target, so pairs do not follow the two datasets' row order.
    """

    def __init__(self, source, target, seed: int = 42):
        self.source, self.target = source, target
        self.target_order = np.random.default_rng(seed).permutation(len(target))

    def __len__(self) -> int:
        return max(len(self.source), len(self.target))

    def _indices(self, indices: list[int]) -> tuple[list[int], list[int]]:
        source = [i % len(self.source) for i in indices]
        target = [int(self.target_order[i % len(self.target)]) for i in indices]
        return source, target

    def __getitem__(self, index: int) -> dict:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: list[int]) -> list[dict]:
        from .vision import augmentation_keys

        source_idx, target_idx = self._indices(indices)
        # augmentation keyed to the pair index: a row the shorter side repeats is augmented afresh each time
        with augmentation_keys(self.source, indices):
            sources = _rows(self.source, source_idx)
        with augmentation_keys(self.target, indices):
            targets = _rows(self.target, target_idx)
        return [{"source": s, "target": t} for s, t in zip(sources, targets)]

    def set_augmentation_epoch(self, seed: int, epoch: int) -> None:
        """Source and target augmentation for this epoch, as two independent streams (see data.vision)."""
        from .vision import set_augmentation_epoch

        set_augmentation_epoch(self.source, seed, epoch, stream=0)
        set_augmentation_epoch(self.target, seed, epoch, stream=1)


def _rows(dataset, indices: list[int]) -> list[dict]:
    """Rows of a (transformed) datasets.Dataset, fetched as one batch: one transform call per batch."""
    batch = dataset[indices]
    return [{key: values[i] for key, values in batch.items()} for i in range(len(indices))]


class PairedCollator:
    """Collates paired items as [source rows, target rows] with source labels only; plain items pass through.

    ``with_target=False`` keeps only the source rows: a source-only baseline that sees exactly the source batches
    (and steps) an adaptation method sees.
    """

    def __init__(self, collate: Callable[[list[dict]], dict], with_target: bool = True):
        self.collate = collate
        self.with_target = with_target

    def __call__(self, examples: list[dict]) -> dict:
        if not examples or "source" not in examples[0]:
            return self.collate(examples)
        unlabelled = [_without_labels(e["source"]) for e in examples]
        if self.with_target:
            unlabelled += [_without_labels(e["target"]) for e in examples]
        batch = self.collate(unlabelled)
        batch["labels"] = torch.as_tensor([e["source"]["labels"] for e in examples], dtype=torch.long)
        return batch


def _without_labels(example: dict) -> dict:
    return {key: value for key, value in example.items() if key != "labels"}
