"""Every registered method through the whole pipeline on lite data: both training entry points,
export (static Paddle + ONNX, codes checked against dygraph), infer.py on ONNX Runtime and predict.py.
The losses themselves are checked against numpy formulas in tests/test_losses.py."""
import json

import pytest

from models.methods import METHODS
from tests.helpers import check_pipeline, lite_flags, pipeline_steps, run_pipelines
from tests.test_engine import launch_2proc

pytestmark = pytest.mark.slow

# the data each method is exercised on: both label kinds, and every new method on at least one
DATA = {"hashnet": "lite_single", "orthohash": "lite_multi", "relahash": "lite_multi", "dpsh": "lite_single",
        "csq": "lite_multi"}
NEW = ("relahash", "dpsh", "csq")  # hashnet and orthohash go through the same steps in test_deploy/test_engine
# AlexNet where the method changes it (RelaHash: no dropout; CSQ: its fc7 head), else ResNet-18 (faster here)
BACKBONE = {"relahash": [], "csq": [], "dpsh": ["--backbone", "resnet18"]}


def test_every_registered_method_has_scratch_settings_and_data():
    from tests.test_methods_more import NEW as MORE  # the methods of issue 17, run in test_methods_more.py

    assert set(METHODS) == set(DATA) | set(MORE)
    assert all("lr" in m.recipe.scratch for m in METHODS.values())


@pytest.mark.parametrize("method", NEW)
def test_train_export_infer_predict(method, request, tmp_path):
    step = pipeline_steps(request.getfixturevalue(DATA[method]), method, tmp_path, epochs=2, extra=BACKBONE[method])
    check_pipeline(step, run_pipelines([step])[method], epochs=2)
    report = json.loads((tmp_path / "run" / "report" / "metrics.json").read_text())
    if method in ("relahash", "csq"):  # codebook methods: the codebook is in the checkpoint and the report
        assert report["diagnostics"]["codebook"]["min_pairwise"] > 0


@pytest.mark.parametrize("method", NEW)
def test_two_process_training(method, request, tmp_path):
    """main_multi_gpu.py as 2 CPU processes (DPSH: the memory bank is gathered from both ranks)."""
    data = request.getfixturevalue(DATA[method])
    out = tmp_path / "two"
    launch_2proc(lite_flags(data, method, out, epochs=1, extra=["-bs", 4, "--backbone", "resnet18"]), tmp_path / "log")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["epoch"] == 1 and (out / "database_code_16.npy").exists()
