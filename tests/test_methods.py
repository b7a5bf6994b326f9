"""Every registered method through the whole pipeline on lite data: both training entry points,
export (static Paddle + ONNX, codes checked against dygraph), infer.py on ONNX Runtime and predict.py.
The losses themselves are checked against numpy formulas in tests/test_losses.py."""
import json
import os

import numpy as np
import pytest

from models.methods import METHODS
from tests.helpers import lite_flags, run_cli
from tests.test_engine import launch_2proc

pytestmark = pytest.mark.slow

# the data each method is exercised on: both label kinds, and every new method on at least one
DATA = {"hashnet": "lite_single", "orthohash": "lite_multi", "relahash": "lite_multi", "dpsh": "lite_single",
        "csq": "lite_multi"}
NEW = ("relahash", "dpsh", "csq")  # hashnet and orthohash go through the same steps in test_deploy/test_engine


def test_every_registered_method_has_scratch_settings_and_data():
    from tests.test_methods_more import NEW as MORE  # the methods of issue 17, run in test_methods_more.py

    assert set(METHODS) == set(DATA) | set(MORE)
    assert all("lr" in m.recipe.scratch for m in METHODS.values())


@pytest.mark.parametrize("method", NEW)
def test_train_export_infer_predict(method, request, tmp_path):
    data = request.getfixturevalue(DATA[method])
    run, inf = tmp_path / "run", tmp_path / "inf"
    run_cli(["main_single_gpu.py", *lite_flags(data, method, run, epochs=2, extra=["-ee", 2])])
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["epoch"] == 2 and 0 < metrics["map"] <= 1
    report = json.loads((run / "report" / "metrics.json").read_text())
    if method in ("relahash", "csq"):  # codebook methods: the codebook is in the checkpoint and the report
        assert report["diagnostics"]["codebook"]["min_pairwise"] > 0

    export = run_cli(["export_model.py", "--pretrained", run / "best.pdparams", "--output-dir", inf, "--onnx"])
    assert export.stdout.count("identical code bits 100.00%") == 2, export.stdout  # Paddle Inference and ONNX

    img_dir = os.path.join(data["root"], "test")
    npy = tmp_path / "onnx.npy"
    run_cli(["deploy/inference_python/infer.py", "--model-dir", inf, "--img", img_dir, "--backend", "onnx",
             "--save-codes", npy])
    assert np.load(npy).shape == (len(os.listdir(img_dir)), 16)

    db_first = open(os.path.join(data["list_dir"], "database.txt")).readline().split()[0]
    proc = run_cli(["predict.py", "--bit", 16, "--img", os.path.join(data["root"], db_first), "--save_path", run,
                    "--topk", 5])
    assert "----- Predicted Hamm_min: 0" in proc.stdout


@pytest.mark.parametrize("method", NEW)
def test_two_process_training(method, request, tmp_path):
    """main_multi_gpu.py as 2 CPU processes (DPSH: the memory bank is gathered from both ranks)."""
    data = request.getfixturevalue(DATA[method])
    out = tmp_path / "two"
    launch_2proc(lite_flags(data, method, out, epochs=1, extra=["-bs", 4]), tmp_path / "log")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["epoch"] == 1 and (out / "database_code_16.npy").exists()
