"""Text pipeline: tokenise with the checkpoint's tokenizer; padding happens per batch in the collator."""

from __future__ import annotations


def prepare_text_splits(data, tokenizer, *, max_length: int):
    from ..validation import check_max_length

    check_max_length(max_length, tokenizer)

    def tokenize(batch):
        pairs = batch[data.pair_column] if data.pair_column else None  # both texts of a pair in one sequence
        encoded = tokenizer(batch[data.input_column], pairs, truncation=True, max_length=max_length)
        if "label" in batch:  # an unlabelled domain-adaptation target has none
            encoded["labels"] = batch["label"]
        return encoded

    columns = [c for c in (data.input_column, data.pair_column) if c]
    prepared = {}
    for name, split in data.splits.items():
        if name == "train" and data.streamed:  # tokenised as the stream is read
            prepared[name] = split.map(tokenize, batched=True, remove_columns=[*columns, "label"])
        else:
            prepared[name] = split.map(tokenize, batched=True, remove_columns=split.column_names,
                                       desc=f"tokenising {name}")
    return prepared


def text_collator(tokenizer, on_gpu: bool):
    from transformers import DataCollatorWithPadding

    return DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8 if on_gpu else None)
