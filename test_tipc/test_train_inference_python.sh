#!/bin/bash
# TIPC: train → eval → export → Paddle Inference for one model config, in one MODE.
#
#   bash test_tipc/test_train_inference_python.sh CONFIG MODE
#     CONFIG  test_tipc/configs/<model>/train_infer_python.txt
#     MODE    lite_train_lite_infer | lite_train_whole_infer | whole_infer | whole_train_whole_infer
#
# For every entry of gpu_list ("0" = one process, "0,1" = two processes through the multi-device
# entry; CPU processes when the machine has fewer GPUs) it trains, evaluates the best checkpoint,
# exports it and runs deploy/inference_python/infer.py for every combination of the infer_params
# lists (use_gpu=True only when a GPU is present). whole_infer skips training and uses the checkpoint
# in $TIPC_PRETRAINED (or the config's pretrained_model line).
#
# Each step appends "Run successfully with command - CMD!" or "Run failed with command - CMD!" to
# test_tipc/output/<model>/<MODE>/results_python.log (started afresh by every run); CMD ends with
# "> STEP_LOG 2>&1", the file holding that step's output. Exit status 1 when any step failed.
#
# Environment:
#   TIPC_PRETRAINED=path.pdparams   checkpoint for whole_infer
#   TIPC_STEPS=norm_train,export    run only these steps (norm_train, dist_train, train = both, eval,
#                                   export, infer); a step whose input is missing is logged as failed
#   TIPC_OUTPUT=dir                 output root instead of test_tipc/output
#   TIPC_PYTHON=python3             interpreter instead of the config's python line
# When the mode's data lists are missing, test_tipc/prepare.sh CONFIG MODE runs first.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "${ROOT}/test_tipc/common_func.sh"

func_load_config "bash test_tipc/test_train_inference_python.sh CONFIG MODE   (MODE: ${TIPC_MODES// / | })" "${1:-}" "${2:-}"

model_name=$(cfg model_name train_params)
python=${TIPC_PYTHON:-$(cfg python train_params)}
gpu_list=$(cfg gpu_list train_params)
device_value=$(cfg --device train_params)
train_model_name=$(cfg train_model_name train_params)
infer_img_dir=$(cfg_mode train_infer_img_dir train_params)
train_flags=$(func_flags "$FILENAME" train_params "$MODE" --output --pretrained --device)
data_flags=$(func_flags "$FILENAME" data_params "$MODE")
list_dir=$(cfg_mode --list-dir data_params)
eval_py=$(cfg eval eval_params)
eval_flags=$(func_flags "$FILENAME" eval_params "$MODE" --pretrained --output)
export_py=$(cfg norm_export export_params)
export_flags=$(func_flags "$FILENAME" export_params "$MODE" --pretrained --output-dir)
inference_py=$(cfg inference infer_params)

LOG_PATH=${OUTPUT_ROOT}/${model_name}/${MODE}
mkdir -p "$LOG_PATH"
status_log="${LOG_PATH}/results_python.log"
rm -f "$status_log"
touch "$status_log"
NGPU=$(func_gpu_count "$python")
START=$(date +%s)
echo "TIPC ${model_name} ${MODE}: ${NGPU} GPU(s); logs in ${LOG_PATH}"

# Record a step that was not run because what it needs is missing (counts as a failure).
function not_run() {  # not_run CMD REASON
    status_check 1 "$1  # not run: $2" "$status_log"
}

# eval_export_infer CKPT TAG DEVICE: evaluate, export and run inference for one checkpoint.
function eval_export_infer() {
    local ckpt=$1 tag=$2 device=$3
    local work="${LOG_PATH}/${tag}" step_log cmd status
    local gpu_env=""
    [ "$device" = "gpu" ] && gpu_env="CUDA_VISIBLE_DEVICES=0 "

    if func_step_enabled eval && [ "$eval_py" != "null" ]; then
        step_log="${LOG_PATH}/${tag}_eval.log"
        cmd="${gpu_env}${python} ${eval_py} --pretrained ${ckpt} --output ${work}/eval --device ${device} ${data_flags} ${eval_flags} > ${step_log} 2>&1"
        cmd=$(func_squeeze "$cmd")
        if [ -f "$ckpt" ]; then
            eval "$cmd"
            status=$?
            grep -h "mAP@" "$step_log" | tail -n 1
            status_check $status "$cmd" "$status_log" "$step_log"
        else
            not_run "$cmd" "no checkpoint ${ckpt}"
        fi
    fi

    local model_dir="${work}/inference"
    if func_step_enabled export && [ "$export_py" != "null" ]; then
        step_log="${LOG_PATH}/${tag}_export.log"
        cmd="${python} ${export_py} --pretrained ${ckpt} --output-dir ${model_dir} ${export_flags} > ${step_log} 2>&1"
        cmd=$(func_squeeze "$cmd")
        rm -rf "$model_dir"
        if [ -f "$ckpt" ]; then
            eval "$cmd"
            status_check $? "$cmd" "$status_log" "$step_log"
        else
            not_run "$cmd" "no checkpoint ${ckpt}"
        fi
    fi

    if func_step_enabled infer && [ "$inference_py" != "null" ]; then
        local combo name
        while IFS= read -r combo; do
            if [[ " $combo " == *" --use_gpu True "* ]] && [ "$NGPU" -eq 0 ]; then
                echo "skipped (no GPU on this machine): infer.py ${combo}"
                continue
            fi
            name=$(func_infer_log_name "$combo")
            step_log="${LOG_PATH}/${tag}_python_infer_${name}.log"
            cmd="${python} ${inference_py} --model_dir ${model_dir} --image_dir ${infer_img_dir} ${combo} > ${step_log} 2>&1"
            cmd=$(func_squeeze "$cmd")
            if [ -f "${model_dir}/inference.yml" ]; then
                eval "$cmd" < /dev/null  # inside a while-read loop: keep its input away from the step
                status_check $? "$cmd" "$status_log" "$step_log"
            else
                not_run "$cmd" "no exported model in ${model_dir} (export failed or was not run)"
            fi
        done < <(func_infer_combinations "$FILENAME" infer_params "$MODE")
    fi
}

# ---------------------------------------------------------------------------------------------
# data: the mode's lists must exist (prepare.sh makes the lite ones)
if [ ! -f "${list_dir}/test.txt" ] || [ ! -f "${list_dir}/database.txt" ] || [ ! -f "${list_dir}/train.txt" ]; then
    if [ "$MODE" = "whole_infer" ] && [ -z "${TIPC_PRETRAINED:-}" ] && [ "$(cfg pretrained_model export_params)" = "null" ]; then
        :  # the clear "no checkpoint" message below comes first
    else
        step_log="${LOG_PATH}/prepare.log"
        cmd="bash test_tipc/prepare.sh ${FILENAME#${ROOT}/} ${MODE} > ${step_log} 2>&1"
        cmd=$(func_squeeze "$cmd")
        echo "no data lists in ${list_dir}: running prepare.sh first"
        eval "$cmd"
        status_check $? "$cmd" "$status_log" "$step_log"
    fi
fi

if [ "$MODE" = "whole_infer" ]; then
    ckpt=${TIPC_PRETRAINED:-$(cfg pretrained_model export_params)}
    if [ "$ckpt" = "null" ] || [ ! -f "$ckpt" ]; then
        echo "whole_infer needs a trained checkpoint: set TIPC_PRETRAINED=path/to/best.pdparams" >&2
        echo "  (or the pretrained_model line of ${FILENAME#${ROOT}/}); got: '${ckpt}'" >&2
        echo "  e.g. run the lite_train_lite_infer mode first and use" >&2
        echo "  TIPC_PRETRAINED=test_tipc/output/${model_name}/lite_train_lite_infer/norm_train_nproc1/best.pdparams" >&2
        [ "$ckpt" = "null" ] && ckpt='$TIPC_PRETRAINED'
        not_run "test -f ${ckpt}" "whole_infer needs a checkpoint, set TIPC_PRETRAINED"
        exit 1
    fi
    device=cpu
    [ "$NGPU" -ge 1 ] && [ "$device_value" != "cpu" ] && device=gpu
    eval_export_infer "$ckpt" pretrained "$device"
else
    IFS='|' read -ra gpu_entries <<< "$gpu_list"
    for gpus in "${gpu_entries[@]}"; do
        IFS=',' read -ra ids <<< "$gpus"
        nproc=${#ids[@]}
        if [ "$nproc" -eq 1 ]; then trainer=norm_train; else trainer=dist_train; fi
        run_train=$(cfg "$trainer" train_params)
        if [ "$run_train" = "null" ] || ! func_step_enabled "$trainer"; then
            echo "skipped: ${trainer} (gpu_list entry ${gpus})"
            continue
        fi
        device=cpu
        if [ "$device_value" = "gpu" ] || { [ "$device_value" != "cpu" ] && [ "$NGPU" -ge "$nproc" ]; }; then
            device=gpu
        fi
        tag="${trainer}_nproc${nproc}"
        save_dir="${LOG_PATH}/${tag}"
        step_log="${LOG_PATH}/${tag}_train.log"
        rm -rf "$save_dir"
        args="--device ${device} --output ${save_dir} ${train_flags} ${data_flags}"
        if [ "$nproc" -eq 1 ]; then
            env_gpu=""
            [ "$device" = "gpu" ] && env_gpu="CUDA_VISIBLE_DEVICES=${gpus} "
            cmd="${env_gpu}${python} ${run_train} ${args} > ${step_log} 2>&1"
            cmd=$(func_squeeze "$cmd")
        elif [ "$device" = "gpu" ]; then
            cmd="${python} -m paddle.distributed.launch --log_dir ${save_dir}/dist_log --gpus ${gpus} ${run_train} ${args} > ${step_log} 2>&1"
            cmd=$(func_squeeze "$cmd")
        else
            cmd="${python} -m paddle.distributed.launch --log_dir ${save_dir}/dist_log --nproc_per_node ${nproc} ${run_train} ${args} > ${step_log} 2>&1"
            cmd=$(func_squeeze "$cmd")
        fi
        echo "[${tag}] training on ${device}"
        eval "$cmd"
        status=$?
        if [ "$nproc" -gt 1 ]; then  # keep the workers' own logs with the step log
            for wlog in "${save_dir}"/dist_log/workerlog.*; do
                [ -f "$wlog" ] && { echo "===== ${wlog}"; cat "$wlog"; } >> "$step_log"
            done
        fi
        if [ $status -eq 0 ] && [ ! -f "${save_dir}/${train_model_name}" ]; then
            echo "training exited 0 but wrote no ${save_dir}/${train_model_name}" >> "$step_log"
            status=1
        fi
        status_check $status "$cmd" "$status_log" "$step_log"
        eval_export_infer "${save_dir}/${train_model_name}" "$tag" "$device"
    done
fi

n_ok=$(grep -c "^Run successfully" "$status_log")
n_failed=$(grep -c "^Run failed" "$status_log")
echo "TIPC ${model_name} ${MODE}: ${n_ok} succeeded, ${n_failed} failed in $(( $(date +%s) - START ))s; see ${status_log}"
if [ "$n_failed" -ne 0 ] || [ "$n_ok" -eq 0 ]; then
    exit 1
fi
exit 0
