#!/bin/bash
# Helpers shared by the TIPC scripts (sourced, not run). Same names and meaning as PaddleClas /
# PaddleOCR test_tipc/common_func.sh, but lines are looked up by key instead of by line number, and a
# value is everything after the first ':' (so values may contain ':' and spaces).
#
# Config lines look like
#   key:value                                   same value in every mode
#   key:lite_train_lite_infer=2|whole_train_whole_infer=90     one value per mode
#   key:True|False                              a list the runner loops over
# and `null` means "not set / skip". Sections start with a line like
#   ===========================train_params===========================

export FLAGS_use_mkldnn=${FLAGS_use_mkldnn:-0}   # oneDNN off for training/eval/export (see ../README)
export PYTHONUNBUFFERED=1

TIPC_MODES="lite_train_lite_infer lite_train_whole_infer whole_infer whole_train_whole_infer"

# "key:value" -> key
function func_parser_key() {
    printf "%s\n" "${1%%:*}"
}

# "key:value" -> value (everything after the first ':'; empty if there is no ':')
function func_parser_value() {
    case "$1" in
        *:*) printf "%s\n" "${1#*:}" ;;
        *) echo "" ;;
    esac
}

# func_cfg_line FILE KEY [SECTION] -> the first line "KEY:..." (inside ===SECTION=== if given)
function func_cfg_line() {
    awk -v key="$2" -v sec="${3:-}" '
        /^=+[A-Za-z0-9_]+=+[[:space:]]*$/ { cur = $0; gsub(/[=[:space:]]/, "", cur); next }
        {
            sub(/\r$/, "")
            i = index($0, ":")
            if (i > 1 && substr($0, 1, i - 1) == key && (sec == "" || cur == sec)) { print; exit }
        }' "$1"
}

# func_cfg FILE KEY [SECTION] -> the value of KEY, or "null" when the key is missing or empty
function func_cfg() {
    local line value
    line=$(func_cfg_line "$@")
    value=$(func_parser_value "$line")
    if [ -z "$value" ]; then echo "null"; else printf "%s\n" "$value"; fi
}

# func_parser_params VALUE MODE -> the entry for MODE in "mode1=v1|mode2=v2"; a value that names no
# mode is the same in every mode; "null" when the value names modes but not this one.
function func_parser_params() {
    local value=$1 mode=$2 entry m named=0
    local IFS='|'
    for entry in $value; do
        m=${entry%%=*}
        if [ "$m" != "$entry" ] && [[ " $TIPC_MODES " == *" $m "* ]]; then
            named=1
            if [ "$m" = "$mode" ]; then printf "%s\n" "${entry#*=}"; return; fi
        fi
    done
    if [ $named -eq 1 ]; then echo "null"; else printf "%s\n" "$value"; fi
}

# func_cfg_mode FILE KEY SECTION MODE -> func_cfg, then the entry for MODE
function func_cfg_mode() {
    func_parser_params "$(func_cfg "$1" "$2" "$3")" "$4"
}

# func_section_lines FILE SECTION -> every "key:value" line of ===SECTION===
function func_section_lines() {
    awk -v sec="$2" '
        /^=+[A-Za-z0-9_]+=+[[:space:]]*$/ { cur = $0; gsub(/[=[:space:]]/, "", cur); next }
        { sub(/\r$/, "") }
        cur == sec && index($0, ":") > 1 { print }' "$1"
}

# func_flags FILE SECTION MODE [KEY...] -> "--k1 v1 --k2 v2" from the section's flag lines (keys that
# start with '-'), each value taken for MODE; null values and the listed KEYs are left out.
function func_flags() {
    local file=$1 sec=$2 mode=$3 line key value out=""
    shift 3
    while IFS= read -r line; do
        key=$(func_parser_key "$line")
        [[ "$key" == -* ]] || continue
        [[ " $* " == *" $key "* ]] && continue
        value=$(func_parser_params "$(func_parser_value "$line")" "$mode")
        [ "$value" = "null" ] && continue
        out="${out} ${key} ${value}"
    done < <(func_section_lines "$file" "$sec")
    printf "%s\n" "${out# }"
}

# func_infer_combinations FILE SECTION MODE -> one line per combination of the section's flag lists
# (all keys starting with '-' except --model_dir / --image_dir, which the runner fills), e.g.
#   "--use_gpu False --enable_mkldnn False --batch_size 8 --benchmark True"
function func_infer_combinations() {
    local file=$1 sec=$2 mode=$3 combos=("") new line key values v c vs
    while IFS= read -r line; do
        key=$(func_parser_key "$line")
        [[ "$key" == -* ]] || continue
        if [ "$key" = "--model_dir" ] || [ "$key" = "--image_dir" ]; then continue; fi
        values=$(func_parser_params "$(func_parser_value "$line")" "$mode")
        [ "$values" = "null" ] && continue
        IFS='|' read -ra vs <<< "$values"
        new=()
        for c in "${combos[@]}"; do
            for v in "${vs[@]}"; do new+=("${c} ${key} ${v}"); done
        done
        combos=("${new[@]}")
    done < <(func_section_lines "$file" "$sec")
    for c in "${combos[@]}"; do printf "%s\n" "${c# }"; done
}

# func_infer_log_name COMBINATION -> a file-name-safe tag, e.g. use_gpu_False_batch_size_8_benchmark_True
function func_infer_log_name() {
    printf "%s" "$1" | sed -e 's/--//g' -e 's/[^A-Za-z0-9_.-]\+/_/g'
}

# func_squeeze STRING -> STRING with runs of spaces squeezed (commands built from empty parts)
function func_squeeze() {
    printf "%s\n" "$1" | sed -e 's/  */ /g' -e 's/^ //' -e 's/ $//'
}

# func_set_params KEY VALUE -> "KEY VALUE" (argparse style), or nothing when either is null/empty
function func_set_params() {
    local key=$1 value=$2
    if [ -z "$key" ] || [ "$key" = "null" ] || [ -z "$value" ] || [ "$value" = "null" ]; then
        echo ""
    else
        printf "%s\n" "${key} ${value}"
    fi
}

# status_check EXIT_CODE COMMAND RESULTS_LOG [STEP_LOG]
# Appends "Run successfully with command - CMD!" or "Run failed with command - CMD!" to RESULTS_LOG
# (the format PaddleClas/PaddleOCR CI greps) and prints it; on failure also shows the step log's tail.
function status_check() {
    local last_status=$1 run_command=$2 run_log=$3 step_log=${4:-}
    local line
    if [ "$last_status" -eq 0 ]; then
        line="Run successfully with command - ${run_command}!"
        echo -e "\033[32m ${line} \033[0m"
    else
        line="Run failed with command - ${run_command}!"
        echo -e "\033[31m ${line} \033[0m"
        if [ -n "$step_log" ] && [ -f "$step_log" ]; then
            echo "----- last lines of ${step_log} (exit code ${last_status}) -----"
            tail -n 15 "$step_log"
            echo "-----"
        fi
    fi
    printf "%s\n" "$line" >> "$run_log"
}

# func_gpu_count -> number of visible CUDA devices (0 on the CPU build of Paddle)
function func_gpu_count() {
    ${1:-python} -c "import paddle; print(paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() else 0)" 2>/dev/null || echo 0
}

# func_step_enabled STEP -> success when TIPC_STEPS is unset or lists STEP ("train" covers both trainers)
function func_step_enabled() {
    local step=$1
    [ -z "${TIPC_STEPS:-}" ] && return 0
    [[ ",${TIPC_STEPS}," == *",${step},"* ]] && return 0
    if [[ "$step" == *_train ]] && [[ ",${TIPC_STEPS}," == *",train,"* ]]; then return 0; fi
    return 1
}

# func_check_mode MODE -> exit with a message when MODE is not one of TIPC_MODES
function func_check_mode() {
    if [[ " $TIPC_MODES " != *" $1 "* ]]; then
        echo "unknown MODE '$1'; expected one of: $TIPC_MODES" >&2
        exit 2
    fi
}

# func_load_config USAGE CONFIG MODE (in the scripts, after setting ROOT): check the config file and the
# mode (usage message and exit 2 otherwise), make FILENAME absolute, set MODE and OUTPUT_ROOT
# ($TIPC_OUTPUT made absolute, or test_tipc/output) and cd to the repository root. cfg KEY SECTION and
# cfg_mode KEY SECTION then read FILENAME.
function func_load_config() {
    FILENAME=$2
    MODE=$3
    if [ -z "$FILENAME" ] || [ ! -f "$FILENAME" ] || [ -z "$MODE" ]; then
        echo "usage: $1" >&2
        exit 2
    fi
    FILENAME=$(cd "$(dirname "$FILENAME")" && pwd)/$(basename "$FILENAME")
    func_check_mode "$MODE"
    OUTPUT_ROOT=test_tipc/output
    if [ -n "${TIPC_OUTPUT:-}" ]; then
        mkdir -p "$TIPC_OUTPUT" && OUTPUT_ROOT=$(cd "$TIPC_OUTPUT" && pwd) && TIPC_OUTPUT=$OUTPUT_ROOT
    fi
    cd "$ROOT" || exit 1
}
function cfg() { func_cfg "$FILENAME" "$1" "$2"; }                     # cfg KEY SECTION
function cfg_mode() { func_cfg_mode "$FILENAME" "$1" "$2" "$MODE"; }   # cfg_mode KEY SECTION
