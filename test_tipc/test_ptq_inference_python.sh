#!/bin/bash
# TIPC post-training quantisation (PaddleClas's train_ptq_infer_python.txt / test_ptq_inference_python.sh):
# checkpoint → INT8 ONNX (export_model.py --int8, calibrated on the training list; refused when its codes
# agree with FP32 on too few bits) → ONNX Runtime INT8 inference (infer.py --runtime onnx-int8).
#
#   bash test_tipc/test_ptq_inference_python.sh CONFIG [MODE]
#     CONFIG  test_tipc/configs/<model>/train_ptq_infer_python.txt
#     MODE    whose checkpoint and images to use (default lite_train_lite_infer)
#
# The same runner as test_paddle2onnx.sh (checkpoint, prepare, TIPC_* settings); logs go to
# test_tipc/output/<model>/<MODE>/results_ptq.log.
TIPC_KIND=ptq exec bash "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/test_paddle2onnx.sh" "$@"
