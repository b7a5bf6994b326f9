#!/bin/bash
# TIPC: checkpoint → ONNX (export_model.py --onnx, which runs paddle2onnx) → ONNX Runtime inference.
#
#   bash test_tipc/test_paddle2onnx.sh CONFIG [MODE]
#     CONFIG  test_tipc/configs/<model>/paddle2onnx_infer_python.txt
#     MODE    whose checkpoint and images to use (default lite_train_lite_infer)
#
# The checkpoint is the config's --pretrained for MODE (the single-process training of
# test_train_inference_python.sh in that mode) or $TIPC_PRETRAINED; when it is missing,
# prepare.sh CONFIG MODE trains it first. Steps are logged like the training script's, to
# test_tipc/output/<model>/<MODE>/results_${KIND}.log (started afresh by every run);
# exit status 1 when any step failed. TIPC_OUTPUT / TIPC_PYTHON / TIPC_STEPS (export, infer) as there.
# test_ptq_inference_python.sh runs this script with TIPC_KIND=ptq: the INT8 export of a
# train_ptq_infer_python.txt config (its ptq_params section, export command `kl_quant`), checked for
# inference_int8.onnx, logged to results_ptq.log and ptq_*.log.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "${ROOT}/test_tipc/common_func.sh"

KIND=${TIPC_KIND:-paddle2onnx}
if [ "$KIND" = ptq ]; then
    section=ptq_params export_key=kl_quant model_file=inference_int8.onnx script=test_ptq_inference_python.sh
else
    section=paddle2onnx_params export_key=2onnx model_file=inference.onnx script=test_paddle2onnx.sh
fi
func_load_config "bash test_tipc/${script} CONFIG [MODE]" "${1:-}" "${2:-lite_train_lite_infer}"

model_name=$(cfg model_name $section)
python=${TIPC_PYTHON:-$(cfg python $section)}
export_py=$(cfg $export_key $section)
ckpt=${TIPC_PRETRAINED:-$(cfg_mode --pretrained $section)}
[ -z "${TIPC_PRETRAINED:-}" ] && ckpt=${ckpt/#test_tipc\/output\//${OUTPUT_ROOT}/}  # follow TIPC_OUTPUT
export_flags=$(func_flags "$FILENAME" $section "$MODE" --pretrained --output-dir)
train_config=$(cfg train_config $section)
inference_py=$(cfg inference infer_params)
infer_img_dir=$(cfg_mode --image_dir infer_params)

LOG_PATH=${OUTPUT_ROOT}/${model_name}/${MODE}
mkdir -p "$LOG_PATH"
status_log="${LOG_PATH}/results_${KIND}.log"
rm -f "$status_log"
touch "$status_log"
START=$(date +%s)
echo "TIPC ${KIND} ${model_name} ${MODE}: logs in ${LOG_PATH}"

# the checkpoint (trained by prepare.sh when missing) and the images (made by the train config's prepare)
if [ ! -f "$ckpt" ]; then
    step_log="${LOG_PATH}/${KIND}_prepare.log"
    cmd="bash test_tipc/prepare.sh ${FILENAME#${ROOT}/} ${MODE} > ${step_log} 2>&1"
    cmd=$(func_squeeze "$cmd")
    echo "no checkpoint ${ckpt}: running prepare.sh first (trains it)"
    eval "$cmd"
    status_check $? "$cmd" "$status_log" "$step_log"
fi
if [ ! -e "$infer_img_dir" ] && [ "$train_config" != "null" ]; then
    step_log="${LOG_PATH}/${KIND}_prepare_data.log"
    cmd="bash test_tipc/prepare.sh ${train_config} ${MODE} > ${step_log} 2>&1"
    cmd=$(func_squeeze "$cmd")
    eval "$cmd"
    status_check $? "$cmd" "$status_log" "$step_log"
fi

model_dir="${LOG_PATH}/${KIND}/inference"
if func_step_enabled export; then
    step_log="${LOG_PATH}/${KIND}_export.log"
    cmd="${python} ${export_py} --pretrained ${ckpt} --output-dir ${model_dir} ${export_flags} > ${step_log} 2>&1"
    cmd=$(func_squeeze "$cmd")
    rm -rf "$model_dir"
    if [ -f "$ckpt" ]; then
        eval "$cmd"
        status=$?
        if [ $status -eq 0 ] && [ ! -f "${model_dir}/${model_file}" ]; then
            echo "export exited 0 but wrote no ${model_dir}/${model_file}" >> "$step_log"
            status=1
        fi
        status_check $status "$cmd" "$status_log" "$step_log"
    else
        status_check 1 "$cmd  # not run: no checkpoint ${ckpt}" "$status_log"
    fi
fi

if func_step_enabled infer; then
    while IFS= read -r combo; do
        if [[ " $combo " == *" --use_gpu True "* ]] && [ "$(func_gpu_count "$python")" -eq 0 ]; then
            echo "skipped (no GPU on this machine): infer.py ${combo}"
            continue
        fi
        step_log="${LOG_PATH}/${KIND}_infer_$(func_infer_log_name "$combo").log"
        cmd="${python} ${inference_py} --model_dir ${model_dir} --image_dir ${infer_img_dir} ${combo} > ${step_log} 2>&1"
        cmd=$(func_squeeze "$cmd")
        if [ -f "${model_dir}/${model_file}" ]; then
            eval "$cmd" < /dev/null  # inside a while-read loop: keep its input away from the step
            status_check $? "$cmd" "$status_log" "$step_log"
        else
            status_check 1 "$cmd  # not run: no ${model_dir}/${model_file} (export failed or was not run)" "$status_log"
        fi
    done < <(func_infer_combinations "$FILENAME" infer_params "$MODE")
fi

n_ok=$(grep -c "^Run successfully" "$status_log")
n_failed=$(grep -c "^Run failed" "$status_log")
echo "TIPC ${KIND} ${model_name} ${MODE}: ${n_ok} succeeded, ${n_failed} failed in $(( $(date +%s) - START ))s; see ${status_log}"
[ "$n_failed" -eq 0 ] && [ "$n_ok" -gt 0 ]
