#!/usr/bin/env bash
# End to end on generated lite data, on CPU (or a GPU when present), in a few minutes:
#   install what is missing → generate lite data → train HashNet and OrthoHash (64 bits) → evaluate
#   → export (static Paddle + ONNX) → infer.py in both runtimes → predict.py on a query.
# Settings can be changed through the environment: EPOCHS=8 OUT=output/quickstart bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh  # sets PY: $PYTHON or python3, or the project .venv when that is externally managed
EPOCHS=${EPOCHS:-8}
OUT=${OUT:-output/quickstart}
export FLAGS_use_mkldnn=0 PYTHONUNBUFFERED=1

step() { printf '\n===== %s\n' "$*"; }

if ! "$PY" -c "import paddle, paddle2onnx, onnxruntime, onnx, numba, tqdm, yaml, matplotlib, PIL, safetensors" 2>/dev/null; then
  step "installing requirements (requirements.txt, pinned by constraints.txt)"
  "$PY" -m pip install --disable-pip-version-check -q -r requirements.txt -c constraints.txt
fi

step "generating lite data (datasets/lite_*, data/lite_*)"
"$PY" scripts/make_lite_data.py --kind both

train() {  # method dataset extra-flags...
  local method=$1 dataset=$2; shift 2
  step "training $method 64 bits on $dataset ($EPOCHS epochs)"
  # random-init backbone: the method's scratch recipe (models/methods/<method>.py), batch 16 for lite data
  "$PY" main_single_gpu.py --method "$method" --bit 64 --dataset "$dataset" --epochs "$EPOCHS" -bs 16 \
    --recipe scratch --num-workers 2 -ee 2 --seed 0 --output "$OUT/${method}_64" "$@"
}
train hashnet lite_single
train orthohash lite_multi

for pair in hashnet:lite_single orthohash:lite_multi; do
  method=${pair%%:*} dataset=${pair#*:}
  run="$OUT/${method}_64"
  step "$method: evaluating $run/best.pdparams"
  "$PY" main_single_gpu.py --eval --pretrained "$run/best.pdparams" --output "$run/eval"
  step "$method: exporting to $run/inference (static Paddle + ONNX)"
  "$PY" export_model.py --pretrained "$run/best.pdparams" --output-dir "$run/inference" --onnx
  for runtime in paddle onnx; do
    step "$method: infer.py --runtime $runtime on the lite query images"
    "$PY" deploy/inference_python/infer.py --model-dir "$run/inference" --img "datasets/$dataset/test" \
      --runtime "$runtime" --batch-size 32 --save-codes "$run/inference/test_codes_$runtime.npy" --benchmark | tail -n 3
  done
done

query=$(sed -n 1p data/lite_single/test.txt | cut -d' ' -f1)
step "predict.py: the 10 database images closest to datasets/lite_single/$query"
"$PY" predict.py --bit 64 --img "datasets/lite_single/$query" --save_path "$OUT/hashnet_64" --topk 10 --show

step "done"
for method in hashnet orthohash; do
  "$PY" -c "import json,sys; m=json.load(open(sys.argv[1])); r=json.load(open(sys.argv[2])); print(f\"{m['method']:9s} 64 bits: best mAP@all {m['best_map']:.4f} (epoch {m['best_epoch']}); random codes {r['map_random_codes']:.4f}\")" "$OUT/${method}_64/metrics.json" "$OUT/${method}_64/report/metrics.json"
done
cat <<MSG
outputs:
  checkpoints, logs, metrics:  $OUT/{hashnet,orthohash}_64/ (best.pdparams, last.pdparams, train.log, metrics.json)
  database codes:              $OUT/*/database_code_64.npy
  exported models:             $OUT/*/inference/ (inference.json, inference.pdiparams, inference.onnx, inference.yml)
  predict.py pictures:         $OUT/hashnet_64/predict/
MSG
