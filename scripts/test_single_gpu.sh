#!/bin/sh
# Evaluate a trained checkpoint with the HashNet protocol (mAP@topK). Flags override the defaults, e.g.
#   sh scripts/test_single_gpu.sh --pretrained output/hashnet_coco_32/best.pdparams
exec sh "$(dirname "$0")/_launch.sh" single --eval --pretrained ./output/hashnet_coco_64/best.pdparams \
  --data-path ./datasets/COCO2014 "$@"
