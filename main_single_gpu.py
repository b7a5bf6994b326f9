"""Train or evaluate a deep hashing model on one device (GPU if present, else CPU).

    python main_single_gpu.py --method hashnet --bit 64 --dataset coco --data-path datasets/coco
    python main_single_gpu.py --eval --pretrained output/best.pdparams
"""
from utils.train.engine import main
from utils.errors import cli_entry

if __name__ == "__main__":
    cli_entry(main)(distributed=False, description=__doc__)
