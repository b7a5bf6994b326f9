#!/usr/bin/env bash
# Train a paper table's grid (the rows we have methods for) with their paper recipes, cell by cell and
# resumable, on whatever devices the machine has, then print our cells next to the paper's:
#   bash scripts/reproduce.sh orthohash-table1 coco -- --data-path datasets/COCO2014 --backbone-weights weights/alexnet-owt-7be5be79.pth
#   bash scripts/reproduce.sh hashnet-coco coco --dry-run
# See scripts/reproduce.py -h for the options.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLAGS_use_mkldnn=${FLAGS_use_mkldnn:-0} PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" scripts/reproduce.py "$@"
