"""Data-parallel training / evaluation over several processes (GPUs, or CPU processes with gloo).

    python -m paddle.distributed.launch --nproc_per_node 2 main_multi_gpu.py --method orthohash ...
    (or: sh scripts/train_multi_gpu.sh, which picks GPUs or CPU processes by what the machine has)
"""
from utils.train.engine import main
from utils.errors import cli_entry

if __name__ == "__main__":
    cli_entry(main)(distributed=True, description=__doc__)
