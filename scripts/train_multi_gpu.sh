#!/bin/sh
# Train HashNet on COCO (paper settings). Any flag given here overrides the defaults, e.g.
#   sh scripts/train_multi_gpu.sh --method orthohash --bit 32 --data-path /data/COCO2014
exec sh "$(dirname "$0")/_launch.sh" multi --method hashnet --dataset coco --bit 64 --data-path ./datasets/COCO2014 \
  --output ./output/hashnet_coco_64 "$@"
