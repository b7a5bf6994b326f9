#!/usr/bin/env bash
# The test command (README "Quick start", and what CI runs): install the pinned dependencies, run the
# test suite, then one TIPC lite run (train → eval → export → Paddle Inference / ONNX Runtime).
#   bash scripts/run_tests.sh            # everything
#   SKIP_INSTALL=1 bash scripts/run_tests.sh -k retrieval   # extra args go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_python.sh  # sets PY: $PYTHON or python3, or the project .venv when that is externally managed
if [ -z "${SKIP_INSTALL:-}" ]; then
  "$PY" -m pip install --disable-pip-version-check -q -r requirements-test.txt -c constraints.txt
  bash scripts/install_browser.sh || echo "run_tests.sh: browser install failed; the page test will skip" >&2
fi
export FLAGS_use_mkldnn=0 PYTHONUNBUFFERED=1
"$PY" -m ruff check --quiet . || { echo "run_tests.sh: ruff found problems (settings in ruff.toml)" >&2; exit 1; }
status=0
"$PY" -m pytest -q "$@" tests || status=$?
if [ "$status" -eq 5 ]; then
  echo "run_tests.sh: pytest collected no tests (exit 5) — a broken test path or -k filter; failing" >&2
  exit 5
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
if [ $# -eq 0 ]; then
  bash test_tipc/test_train_inference_python.sh test_tipc/configs/hashnet_lite/train_infer_python.txt lite_train_lite_infer
fi
