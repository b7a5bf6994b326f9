#!/usr/bin/env bash
# Every registered method at 16/32/64 bits on the generated lite data, on one engine, one data pipeline
# and one metric; prints the methods × bits table (scripts/compare_runs.py, with the chance level of
# random codes) and draws every run's precision–recall curve into one PNG.
#   bash scripts/benchmark_methods.sh                                  # lite_single, 8 epochs each
#   DATASET=lite_multi EPOCHS=12 BITS="32 64" METHODS="orthohash relahash" bash scripts/benchmark_methods.sh
#   SEEDS="0 1 2" METHODS="orthohash hashnet" BITS=16 EPOCHS=3 bash scripts/benchmark_methods.sh  # mean ± std
# Runs go to $OUT/$DATASET/<method>_<bits>/ (train.log there), or <method>_<bits>_s<seed>/ when SEEDS is set
# to anything but "0"; compare_runs.py groups runs that differ only in --seed by their run.json (not by
# these names) into "mean ± std (n)" cells, with a per-seed table and paired differences. BACKBONE picks
# the backbone (default alexnet). A finished run (its train.log ends with
# "done") is kept and not retrained unless FORCE=1. Finished runs keep best.pdparams but not last.pdparams
# (KEEP_LAST=1 keeps it). Lite data is random-init AlexNet on 64 px images, so the runs use each method's
# scratch recipe (--recipe scratch, models/methods/<method>.py), batch 16. The shallow baselines (lsh, itq)
# are one closed-form fit on the backbone's features (models/methods/shallow.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DATASET=${DATASET:-lite_single}
EPOCHS=${EPOCHS:-8}
BITS=${BITS:-"16 32 64"}
METHODS=${METHODS:-"hashnet orthohash relahash dpsh csq dsh dhn dch dfh dpn greedyhash dshsd lcdsh greedyhash_unsup bihalf lsh itq"}
SEEDS=${SEEDS:-0}
BACKBONE=${BACKBONE:-alexnet}
OUT=${OUT:-output/benchmark_methods}
export FLAGS_use_mkldnn=0 PYTHONUNBUFFERED=1

case "$DATASET" in
  lite_single|lite_multi) "$PY" scripts/make_lite_data.py --kind "${DATASET#lite_}" ;;
  *) echo "benchmark_methods.sh: DATASET must be lite_single or lite_multi, got '$DATASET'" >&2; exit 2 ;;
esac

mkdir -p "$OUT/$DATASET"
runs=()
start_all=$(date +%s)
for method in $METHODS; do
  for bit in $BITS; do
   for seed in $SEEDS; do
    run="$OUT/$DATASET/${method}_${bit}"
    [ "$SEEDS" = "0" ] || run="${run}_s${seed}"
    [ "$BACKBONE" = "alexnet" ] || run="${run}_${BACKBONE}"
    runs+=("$run")
    if grep -qs "done: best" "$run/train.log" && [ -z "${FORCE:-}" ]; then
      echo "$method $bit bits seed $seed: kept $run (FORCE=1 retrains)"
      continue
    fi
    start=$(date +%s)
    epochs=$EPOCHS
    case "$method" in lsh|itq) epochs=1 ;; esac  # shallow baselines: one closed-form fit, no SGD epochs
    if ! "$PY" main_single_gpu.py --method "$method" --bit "$bit" --dataset "$DATASET" --epochs "$epochs" \
        -bs 16 --recipe scratch --num-workers 2 -ee 2 --seed "$seed" --backbone "$BACKBONE" --output "$run" > "$run.log" 2>&1; then
      echo "benchmark_methods.sh: $method $bit bits seed $seed failed; last lines of $run.log:" >&2
      tail -5 "$run.log" >&2
      exit 1
    fi
    mkdir -p "$run" && mv "$run.log" "$run/benchmark.log"
    # the table needs metrics.json and report/; last.pdparams (weights + optimizer, ~0.7 GB for AlexNet)
    # only serves --resume of an unfinished run
    [ -n "${KEEP_LAST:-}" ] || rm -f "$run/last.pdparams"
    echo "$method $bit bits seed $seed: $(grep -o 'best mAP@[a-z0-9]* [0-9.]*' "$run/benchmark.log" | tail -1) ($(( $(date +%s) - start ))s)"
   done
  done
done
echo
echo "== $DATASET, $EPOCHS epochs, random-init $BACKBONE, 64 px, seeds $SEEDS ($(( $(date +%s) - start_all ))s)"
"$PY" scripts/compare_runs.py "${runs[@]}" --plot "$OUT/$DATASET/pr_all.png"
