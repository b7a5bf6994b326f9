#!/bin/bash
# TIPC: prepare what a run needs (nothing is downloaded; these machines have no internet).
#
#   bash test_tipc/prepare.sh CONFIG MODE
#
# train_infer_python.txt configs:
#   lite_train_lite_infer, lite_train_whole_infer, whole_infer
#       generate the lite data set of the config's prepare_params (scripts/make_lite_data.py) into the
#       config's --data-path / --list-dir (under test_tipc/output/data/, so data/ and datasets/ are
#       never touched); kept when its lists already exist (TIPC_FORCE_PREPARE=1 regenerates).
#       whole_infer also reminds you to point TIPC_PRETRAINED at a checkpoint.
#   whole_train_whole_infer
#       checks that the full data set is in place and says where to put it when it is not (exit 1).
# paddle2onnx_infer_python.txt configs (MODE defaults to lite_train_lite_infer):
#   makes the checkpoint test_paddle2onnx.sh converts, when it is missing, by running the train
#   config's single-process training (TIPC_STEPS=norm_train) in that MODE.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "${ROOT}/test_tipc/common_func.sh"

func_load_config "bash test_tipc/prepare.sh CONFIG MODE   (MODE: ${TIPC_MODES// / | })" "${1:-}" "${2:-lite_train_lite_infer}"

# ---- paddle2onnx or ptq config: make sure there is a checkpoint to convert
section=paddle2onnx_params
[ -n "$(func_section_lines "$FILENAME" ptq_params)" ] && section=ptq_params
if [ -n "$(func_section_lines "$FILENAME" $section)" ]; then
    ckpt=${TIPC_PRETRAINED:-$(func_cfg_mode "$FILENAME" --pretrained $section "$MODE")}
    [ -z "${TIPC_PRETRAINED:-}" ] && ckpt=${ckpt/#test_tipc\/output\//${OUTPUT_ROOT}/}  # follow TIPC_OUTPUT
    if [ -f "$ckpt" ]; then
        echo "checkpoint ${ckpt} is there"
        exit 0
    fi
    if [ -n "${TIPC_PRETRAINED:-}" ]; then
        echo "TIPC_PRETRAINED=${TIPC_PRETRAINED} does not exist" >&2
        exit 1
    fi
    train_config=$(func_cfg "$FILENAME" train_config $section)
    echo "no checkpoint ${ckpt}: training one with ${train_config} (${MODE}, single process)"
    TIPC_STEPS=norm_train bash test_tipc/test_train_inference_python.sh "$train_config" "$MODE" || exit 1
    if [ ! -f "$ckpt" ]; then
        echo "training finished but ${ckpt} is still missing; is --pretrained in ${FILENAME#${ROOT}/} right?" >&2
        exit 1
    fi
    exit 0
fi

# ---- train_infer_python config: the mode's data
python=${TIPC_PYTHON:-$(func_cfg "$FILENAME" python train_params)}
data_path=$(func_cfg_mode "$FILENAME" --data-path data_params "$MODE")
list_dir=$(func_cfg_mode "$FILENAME" --list-dir data_params "$MODE")
kind=$(func_cfg "$FILENAME" lite_data_kind prepare_params)
size=$(func_cfg_mode "$FILENAME" lite_data_size prepare_params "$MODE")
model_name=$(func_cfg "$FILENAME" model_name train_params)

have_lists() { [ -f "$1/train.txt" ] && [ -f "$1/database.txt" ] && [ -f "$1/test.txt" ]; }

if [ "$size" = "null" ]; then
    # full data set: cannot be generated, only checked
    if have_lists "$list_dir" && [ -d "$data_path" ]; then
        echo "data set in place: images ${data_path}, lists ${list_dir}"
        exit 0
    fi
    echo "MODE ${MODE} uses the full data set, which must be downloaded by hand:" >&2
    echo "  images under ${data_path} and train.txt / database.txt / test.txt under ${list_dir}" >&2
    echo "  (see the README's Dataset section; COCO2014 for the coco preset)." >&2
    exit 1
fi

if have_lists "$list_dir" && [ -d "$data_path" ] && [ -z "${TIPC_FORCE_PREPARE:-}" ]; then
    echo "lite data already there: images ${data_path}, lists ${list_dir} (TIPC_FORCE_PREPARE=1 rebuilds)"
else
    # generate into temporary folders, then move them in place (a concurrent run never sees half a data set)
    tmp_data="${data_path}.tmp$$" tmp_lists="${list_dir}.tmp$$"
    rm -rf "$tmp_data" "$tmp_lists"
    mkdir -p "$(dirname "$data_path")" "$(dirname "$list_dir")"
    cmd="${python} scripts/make_lite_data.py --kind ${kind} --data-path ${tmp_data} --list-dir ${tmp_lists} ${size} --seed 0"
    echo "$cmd"
    if ! eval "$cmd"; then
        rm -rf "$tmp_data" "$tmp_lists"
        echo "failed: ${cmd}" >&2
        exit 1
    fi
    rm -rf "$data_path" "$list_dir"
    mv "$tmp_data" "$data_path" && mv "$tmp_lists" "$list_dir" || exit 1
    # list paths are relative to the image root, so the move keeps them valid
    echo "lite data ready: images ${data_path}, lists ${list_dir} ($(wc -l < "${list_dir}/train.txt") train, $(wc -l < "${list_dir}/database.txt") database, $(wc -l < "${list_dir}/test.txt") test)"
fi

if [ "$MODE" = "whole_infer" ]; then
    ckpt=${TIPC_PRETRAINED:-$(func_cfg "$FILENAME" pretrained_model export_params)}
    if [ "$ckpt" = "null" ] || [ ! -f "$ckpt" ]; then
        echo "note: whole_infer also needs a trained checkpoint: set TIPC_PRETRAINED=path/to/best.pdparams," >&2
        echo "  e.g. test_tipc/output/${model_name}/lite_train_lite_infer/norm_train_nproc1/best.pdparams" >&2
    fi
fi
exit 0
