"""The methods of issue 17 on the tiny lite fixtures, ResNet-18 to keep it short (the methods do not depend
on the backbone). Those whose head or encoder differs from the others (GreedyHash's sign layer and
classifier, DSHSD's classifier, DPN's class targets in the head, BiHalf's half-split layer, ITQ's
closed-form fit) go through the whole pipeline in a process each: train (1 epoch), export (static
Paddle + ONNX with identical bits), infer.py on ONNX Runtime and predict.py, through the entry points'
main(argv) (their import costs more than the work here). The rest (a linear head with their own loss,
tested against numpy in tests/test_losses_more.py) go through the same steps one after another in one
shared process. Unsupervised methods train from a training list that gives paths alone.
As 2 CPU processes: DFH (memory bank and class centres from both ranks), BiHalf (unsupervised, frozen
backbone, the training output carrying the features through DataParallel) and ITQ (shallow: features
gathered from both ranks, the same fit as one process)."""
import json
import shutil

import numpy as np
import pytest

from models.methods import METHODS
from tests.helpers import check_pipeline, lite_flags, pipeline_steps, run_pipelines
from tests.test_engine import launch_2proc

pytestmark = pytest.mark.slow

NEW = {"dsh": "lite_single", "dhn": "lite_multi", "dch": "lite_single", "dfh": "lite_multi", "dpn": "lite_multi",
       "greedyhash": "lite_single", "dshsd": "lite_multi", "lcdsh": "lite_single", "greedyhash_unsup": "lite_single",
       "bihalf": "lite_multi", "lsh": "lite_single", "itq": "lite_multi"}
RESNET = ["--backbone", "resnet18"]
PIPELINE_METHODS = ["greedyhash", "dshsd", "dpn", "bihalf", "itq"]
LINEAR_HEAD = sorted(set(NEW) - set(PIPELINE_METHODS))

# Methods whose head or encoder is theirs alone run in a process each; the linear-head ones share one.
GROUPS = [[m] for m in PIPELINE_METHODS] + [LINEAR_HEAD]


def method_data(method, request, tmp_path):
    data = request.getfixturevalue(NEW[method])
    return data if METHODS[method].supervised else unlabelled_lists(data, tmp_path / method)


def unlabelled_lists(data, tmp_path):
    """A copy of the fixture's lists whose train.txt gives paths alone."""
    out = tmp_path / "lists"
    shutil.copytree(data["list_dir"], out)
    lines = (out / "train.txt").read_text().splitlines()
    (out / "train.txt").write_text("\n".join(line.split()[0] for line in lines) + "\n")
    return {**data, "list_dir": str(out)}


def test_every_new_method_is_registered_with_scratch_settings():
    assert set(NEW) <= set(METHODS)
    assert all("lr" in METHODS[m].recipe.scratch for m in NEW)


def test_every_new_method_is_covered_here():
    assert sorted(PIPELINE_METHODS + LINEAR_HEAD) == sorted(NEW)


@pytest.mark.parametrize("methods", GROUPS, ids="+".join)
def test_train_export_infer_predict(methods, request, tmp_path):
    steps = [pipeline_steps(method_data(m, request, tmp_path), m, tmp_path / m, extra=RESNET) for m in methods]
    parts = run_pipelines(steps)
    for step in steps:
        check_pipeline(step, parts[step["method"]])


def test_supervised_method_refuses_a_label_less_training_list(lite_single, tmp_path):
    from tests.helpers import run_cli

    data = unlabelled_lists(lite_single, tmp_path)
    proc = run_cli(["main_single_gpu.py", *lite_flags(data, "dsh", tmp_path / "run", extra=RESNET)], check=False)
    assert proc.returncode == 2 and "train.txt:1: no labels" in proc.stderr and "unsupervised" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("method", ["dfh", "bihalf", "itq"])
def test_two_process_training(method, request, tmp_path):
    data = method_data(method, request, tmp_path)
    out = tmp_path / "two"
    bs = [] if method == "itq" else ["-bs", 4]  # ITQ: the same batches as the one-process run below
    launch_2proc(lite_flags(data, method, out, epochs=1, extra=RESNET + bs), tmp_path / "log")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["epoch"] == 1 and (out / "database_code_16.npy").exists()
    if method == "itq":  # both ranks fit on the gathered features: the one-process fit, up to float rounding
        from tests.helpers import run_cli

        one = tmp_path / "one"
        run_cli(["main_single_gpu.py", *lite_flags(data, method, one, epochs=1, extra=RESNET)])
        c1, c2 = np.load(one / "database_code_16.npy"), np.load(out / "database_code_16.npy")
        assert (np.sign(c1) == np.sign(c2)).mean() > 0.99
        assert json.loads((one / "metrics.json").read_text())["map"] == pytest.approx(metrics["map"], abs=0.02)
