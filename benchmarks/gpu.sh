#!/usr/bin/env bash
# Every GPU check in one call of the device machine (at most 9.5 minutes: each check has its own time limit),
# JSON under $OUT:
#
#     bash benchmarks/gpu.sh                      # carry .whl first: benchmarks/README.md, "GPU"
#     bash benchmarks/gpu.sh resnet50 bert_base   # only these checks
#
# ResNet-50 / ViT-B/16 at 224 px and BERT-base at 128 tokens, bf16, recipe vs the plain PyTorch loop on synthetic
# data; ResNet-50 on a JPEG imagefolder (recipe vs its own loader); and the precision a run under
# `accelerate launch --mixed_precision no` trains in. A check that fails prints its log's tail and the rest go on.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-benchmarks/results/gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then  # the device image lacks datasets/evaluate (and has an older transformers)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt" 2>&1

check() {  # check NAME SECONDS COMMAND...: its output in $OUT/NAME.log, one status line here
    local name=$1 limit=$2
    shift 2
    local start=$SECONDS
    if timeout "$limit" "$@" > "$OUT/$name.log" 2>&1; then
        echo "$name: ok ($((SECONDS - start)) s)"
    else
        echo "$name: FAILED rc=$? ($((SECONDS - start)) s)"
        tail -n 8 "$OUT/$name.log"
    fi
}
throughput() {  # throughput NAME FLAGS...: benchmarks/throughput.py on CUDA in bf16, its JSON as $OUT/NAME.json
    local name=$1
    shift
    check "$name" 110 python3 benchmarks/throughput.py --device cuda --bf16 --rounds 3 --steps 20 \
        --output "$OUT/$name.json" "$@"
}

wanted() { [ -z "$SELECTED" ] || [[ " $SELECTED " == *" $1 "* ]]; }
SELECTED="$*"  # names of the checks to run (default: all), e.g. `bash benchmarks/gpu.sh resnet50 precision_no`
wanted resnet50 && throughput resnet50 --workloads image-synthetic --model resnet50 --image-size 224 --batch-size 256 \
    --variants recipe plain
wanted vit_b16 && throughput vit_b16 --workloads image-synthetic --model vit_base_patch16_224 --image-size 224 \
    --batch-size 256 --variants recipe plain
wanted bert_base && throughput bert_base --workloads text-synthetic --model bert-base --seq-len 128 --batch-size 256 \
    --variants recipe plain
# 128 x (5 + 3 x 11) JPEGs are written first: one pass, no repeats
wanted resnet50_jpeg && throughput resnet50_jpeg --workloads image-jpeg --model resnet50 --image-size 224 \
    --batch-size 128 --steps 10 --variants recipe loader
# mixed precision follows the launcher: --mixed_precision no on a bf16-capable GPU trains in fp32
wanted precision_no && check precision_no 90 accelerate launch --num_processes 1 --mixed_precision no \
    recipes/image_cls.py --max_steps 3 --max_train_samples 256 --max_eval_samples 64 \
    --output_dir "$OUT/precision_no" --overwrite_output_dir true
python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
card = out / "precision_no" / "README.md"
precision = next((line for line in card.read_text().splitlines() if "precision" in line.lower()), "no precision row") \
    if card.is_file() else "no card: the run failed"
rates = {}
for name in ("resnet50", "vit_b16", "bert_base", "resnet50_jpeg"):
    path = out / f"{name}.json"
    if path.is_file():
        workload = next(iter(json.loads(path.read_text())["workloads"].values()))
        rates[name] = {v: r.get("samples_per_s") for v, r in workload["variants"].items()}
summary = {"gpu": (out / "gpu.txt").read_text().strip(), "samples_per_s": rates, "precision_no": precision.strip()}
(out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
print(json.dumps(summary, indent=2))
EOF
