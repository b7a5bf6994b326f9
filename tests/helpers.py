"""Shared test helpers: run the real command-line entry points as subprocesses."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(args, timeout=600, env=None, check=True, cwd=ROOT):
    """Run `python <args>` from the repo root; return the CompletedProcess (text)."""
    full_env = dict(os.environ, FLAGS_use_mkldnn="0", PYTHONUNBUFFERED="1", **(env or {}))
    proc = subprocess.run([sys.executable] + [str(a) for a in args], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"command failed ({proc.returncode}): {' '.join(map(str, args))}\n"
                             f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
    return proc


def lite_flags(data, method, out, epochs=1, bit=16, extra=()):
    """Flags for a tiny, fast training run on generated lite data (random init: the scratch recipe)."""
    return ["--method", method, "--bit", bit, "--dataset", data["dataset"], "--data-path", data["root"],
            "--list-dir", data["list_dir"], "--epochs", epochs, "-bs", 8, "--num-workers", 0, "--output", out,
            "--seed", 7, "--recipe", "scratch", *extra]


# Each method's pipeline steps in turn in one process (the entry points' main(argv): their import costs
# more than the work on lite data); "=== <method>" starts each method's part of the output.
_PIPELINE = r"""
import json, sys
sys.path.insert(0, {root!r})
from utils.train.engine import main as train
import export_model, predict
from deploy.inference_python import infer
for a in json.loads({args!r}):
    print("=== " + a["method"], flush=True)
    train(a["train"])
    export_model.main(a["export"])
    infer.main(a["infer"])
    predict.main(a["predict"])
"""


def pipeline_steps(data, method, out, epochs=1, extra=()):
    """The argv of train → export (Paddle + ONNX) → infer.py (ONNX Runtime, codes to out/onnx.npy on the
    test images) → predict.py (the first database image) for `method` on lite `data`, run under `out`."""
    run, inf = out / "run", out / "inf"
    db_first = open(os.path.join(data["list_dir"], "database.txt")).readline().split()[0]
    return {
        "method": method, "run": str(run), "img_dir": os.path.join(data["root"], "test"),
        "codes": str(out / "onnx.npy"),
        "train": [str(a) for a in lite_flags(data, method, run, epochs=epochs, extra=extra)],
        "export": ["--pretrained", str(run / "best.pdparams"), "--output-dir", str(inf), "--onnx"],
        "infer": ["--model-dir", str(inf), "--img", os.path.join(data["root"], "test"), "--backend", "onnx",
                  "--save-codes", str(out / "onnx.npy")],
        "predict": ["--bit", "16", "--img", os.path.join(data["root"], db_first), "--save_path", str(run),
                    "--topk", "5"],
    }


def run_pipelines(steps):
    """Run pipeline_steps() dicts in one process; {method: its part of stdout}."""
    import json

    proc = subprocess.run([sys.executable, "-c", _PIPELINE.format(root=ROOT, args=json.dumps(steps))], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, FLAGS_use_mkldnn="0", PYTHONUNBUFFERED="1"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return dict(part.split("\n", 1) for part in proc.stdout.split("=== ")[1:])


def check_pipeline(step, out, epochs=1):
    """What every method's pipeline must give: its metrics, a finite loss per epoch, Paddle Inference and
    ONNX Runtime codes identical to dygraph, one ONNX code per test image, and predict finding the query."""
    import csv
    import json

    import numpy as np

    method, run = step["method"], step["run"]
    metrics = json.loads(open(os.path.join(run, "metrics.json")).read())
    assert metrics["method"] == method and metrics["epoch"] == epochs and 0 < metrics["map"] <= 1, (method, metrics)
    rows = list(csv.DictReader(open(os.path.join(run, "train_log.csv"))))
    assert len(rows) == epochs and all(np.isfinite(float(r["loss"])) for r in rows), (method, rows)
    assert out.count("identical code bits 100.00%") == 2, (method, out)  # Paddle Inference and ONNX
    assert np.load(step["codes"]).shape == (len(os.listdir(step["img_dir"])), 16), method
    assert "----- Predicted Hamm_min: 0" in out, (method, out)
    return metrics


def backbone_features(net, x):
    """A backbone's features of the NCHW float32 batch `x`, in eval mode (comparisons with the torch libraries)."""
    import paddle

    net.eval()
    with paddle.no_grad():
        return net(paddle.to_tensor(x)).numpy()


def rel_err(a, b):
    """Largest absolute difference relative to the reference's largest magnitude."""
    import numpy as np

    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
