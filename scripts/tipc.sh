#!/usr/bin/env bash
# Run the whole TIPC lite matrix: for every model config (hashnet/orthohash × 16/32/48/64 bits, and
# every other method at 64 bits, and OrthoHash on a frozen vit_s_16 through the feature cache)
# test_train_inference_python.sh in lite_train_lite_infer (prepare.sh runs by itself when the lite
# data is missing), then test_paddle2onnx.sh, then test_ptq_inference_python.sh for the models with a
# train_ptq_infer_python.txt (INT8 ONNX); print one summary line per run and exit 1 if any failed.
#   bash scripts/tipc.sh                    # all 24 models
#   bash scripts/tipc.sh hashnet_16 orthohash_64
#   MODE=lite_train_whole_infer bash scripts/tipc.sh
# Logs: test_tipc/output/<model>/<MODE>/results_python.log and results_paddle2onnx.log.
cd "$(dirname "$0")/.."
MODE=${MODE:-lite_train_lite_infer}
if [ $# -gt 0 ]; then
  MODELS=("$@")
else
  MODELS=(hashnet_16 hashnet_32 hashnet_48 hashnet_64 orthohash_16 orthohash_32 orthohash_48 orthohash_64
          relahash_64 dpsh_64 csq_64 dsh_64 dhn_64 dch_64 dfh_64 dpn_64 greedyhash_64 dshsd_64 lcdsh_64
          greedyhash_unsup_64 bihalf_64 lsh_64 itq_64 orthohash_vit_s_16)
fi
summary=()
failed=0
start_all=$(date +%s)
for model in "${MODELS[@]}"; do
  dir=test_tipc/configs/${model}
  runs=(train_infer paddle2onnx)
  [ -f "${dir}/train_ptq_infer_python.txt" ] && runs+=(ptq)
  for run in "${runs[@]}"; do
    start=$(date +%s)
    if [ $run = train_infer ]; then
      bash test_tipc/test_train_inference_python.sh "${dir}/train_infer_python.txt" "$MODE"
      rc=$?; log=test_tipc/output/${model}/${MODE}/results_python.log
    elif [ $run = paddle2onnx ]; then
      bash test_tipc/test_paddle2onnx.sh "${dir}/paddle2onnx_infer_python.txt" "$MODE"
      rc=$?; log=test_tipc/output/${model}/${MODE}/results_paddle2onnx.log
    else
      bash test_tipc/test_ptq_inference_python.sh "${dir}/train_ptq_infer_python.txt" "$MODE"
      rc=$?; log=test_tipc/output/${model}/${MODE}/results_ptq.log
    fi
    ok=$(grep -c "^Run successfully" "$log" 2>/dev/null); bad=$(grep -c "^Run failed" "$log" 2>/dev/null)
    status=PASS; [ $rc -ne 0 ] && { status=FAIL; failed=$((failed + 1)); }
    summary+=("$(printf '%-4s %-13s %-11s %2s ok %2s failed %4ss  %s' "$status" "$model" "$run" "${ok:-0}" "${bad:-0}" "$(( $(date +%s) - start ))" "$log")")
  done
done
echo
echo "================ TIPC summary (${MODE}, $(( $(date +%s) - start_all ))s) ================"
printf '%s\n' "${summary[@]}"
[ $failed -eq 0 ]
