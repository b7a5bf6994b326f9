"""--amp: the mode is stored with the run, its loss-scaler state is saved and restored, and an --amp run
resumes bit for bit like an uninterrupted one. On a CPU (these machines) Paddle's auto_cast and
GradScaler do nothing, so --amp warns and trains in FP32: what runs here is the engine's AMP code path
with the scaler absent; the scaled path needs a GPU."""
import json

import numpy as np
import paddle
import pytest

from tests.helpers import lite_flags, run_cli


def test_amp_on_cpu_warns_and_keeps_fp32(caplog):
    import logging

    from utils.train.amp import Amp

    log = logging.getLogger("test_amp")
    with caplog.at_level(logging.WARNING, logger="test_amp"):
        amp = Amp("fp16", "cpu", log)
    assert not amp.enabled and amp.scaler is None
    assert "--amp fp16 has no effect" in caplog.text
    assert amp.state_dict() is None  # no scaler: nothing to save
    half = paddle.to_tensor(np.array([1.5, -2.0], np.float16))
    assert amp.float32(half).dtype == paddle.float32
    np.testing.assert_array_equal(amp.float32(half).numpy(), [1.5, -2.0])
    assert not Amp("off", "cpu", log).enabled
    with pytest.raises(ValueError):
        Amp("fp8", "cpu", log)


def test_amp_run_resumes_bit_identically(lite_single, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    amp = ["--amp", "fp16", "-ee", 1, "--backbone", "resnet18"]  # ResNet-18: fewer weights to save
    proc = run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", full, epochs=2, extra=amp)])
    assert "--amp fp16 has no effect on cpu" in proc.stdout
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", part, epochs=1, extra=amp)])
    ckpt = paddle.load(str(part / "last.pdparams"))
    assert ckpt["cfg"]["amp"] == "fp16" and "amp" not in ckpt  # the FP32 layout: no scaler ran on CPU
    # --amp comes back from the checkpoint with everything else
    run_cli(["main_single_gpu.py", "--resume", part / "last.pdparams", "--epochs", 2, "--num-workers", 0])
    a, b = paddle.load(str(full / "last.pdparams")), paddle.load(str(part / "last.pdparams"))
    assert b["cfg"]["amp"] == "fp16" and b["epoch"] == 2
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k].numpy(), b["model"][k].numpy(), err_msg=k)
    maps = [json.loads((run / "metrics.json").read_text())["map"] for run in (full, part)]
    assert maps[0] == maps[1]


def test_amp_rejects_an_unknown_mode(lite_single, tmp_path):
    proc = run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", tmp_path, extra=["--amp", "fp8"])],
                   check=False)
    assert proc.returncode == 2 and "--amp" in proc.stderr and "Traceback" not in proc.stderr
