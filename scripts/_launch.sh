#!/bin/sh
# Shared by the train/test scripts: run ENTRY with the given flags on what this machine has.
#   one GPU or none   -> python ENTRY (single process; CPU when no GPU)
#   several GPUs      -> paddle.distributed.launch over all visible GPUs (multi-process entry only)
#   no GPU, multi     -> paddle.distributed.launch with NPROC (default 2) CPU processes (gloo)
# Usage: sh scripts/_launch.sh single|multi [flags...]
set -e
cd "$(dirname "$0")/.."
MODE=$1; shift
NGPU=$(python -c "import paddle; print(paddle.device.cuda.device_count() if paddle.device.is_compiled_with_cuda() else 0)" 2>/dev/null || echo 0)
if [ "$MODE" = single ]; then
  exec python main_single_gpu.py "$@"
fi
LOG_DIR=${LOG_DIR:-output/dist_log}
if [ "$NGPU" -ge 2 ]; then
  GPUS=$(python -c "print(','.join(str(i) for i in range($NGPU)))")
  echo "launching on GPUs $GPUS (logs in $LOG_DIR)"
  exec python -m paddle.distributed.launch --log_dir "$LOG_DIR" --gpus "$GPUS" main_multi_gpu.py "$@"
fi
NPROC=${NPROC:-2}
echo "no multi-GPU machine: launching $NPROC CPU processes (logs in $LOG_DIR)"
exec python -m paddle.distributed.launch --log_dir "$LOG_DIR" --nproc_per_node "$NPROC" main_multi_gpu.py --device cpu "$@"
