"""Bad input through the real command lines: exit code 2, one line naming the culprit, no traceback;
a SIGKILLed training run resumes to the same weights; a diverging run stops cleanly."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest

from tests.helpers import ROOT, lite_flags, run_cli


def assert_one_line_error(proc, *needles):
    err = proc.stderr.strip()
    assert proc.returncode == 2, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{err[-2000:]}"
    assert "Traceback" not in proc.stderr, err
    last = err.splitlines()[-1]
    assert last.startswith("error: "), err
    for n in needles:
        assert str(n) in last, f"{n!r} not in {last!r}"
    return last


@pytest.fixture
def data_copy(lite_single, tmp_path):
    """A private copy of the lite lists + images that a test may break."""
    root, lists = tmp_path / "images", tmp_path / "lists"
    shutil.copytree(lite_single["root"], root)
    shutil.copytree(lite_single["list_dir"], lists)
    return {"dataset": "lite_single", "root": str(root), "list_dir": str(lists)}


def train(data, out, *extra, check=False, epochs=1, method="hashnet"):
    return run_cli(["main_single_gpu.py", *lite_flags(data, method, out, epochs=epochs), *extra], check=check)


def edit_line(list_file, lineno, new_line):
    lines = open(list_file).read().splitlines()
    lines[lineno - 1] = new_line
    open(list_file, "w").write("\n".join(lines) + "\n")


# ------------------------------------------------------------------------------------------- lists
def test_missing_list_file(data_copy, tmp_path):
    os.remove(os.path.join(data_copy["list_dir"], "train.txt"))
    assert_one_line_error(train(data_copy, tmp_path / "o"), "train.txt", "not found")


@pytest.mark.parametrize("bad,what", [
    ("labels", "labels"),
    ("nonnumeric", "x"),
    ("escape", ".."),
    ("duplicate", "duplicate"),
])
def test_bad_list_line_names_file_and_line(data_copy, tmp_path, bad, what):
    f = os.path.join(data_copy["list_dir"], "train.txt")
    lines = open(f).read().splitlines()
    path, labels = lines[2].split()[0], lines[2].split()[1:]
    new = {"labels": " ".join([path] + labels[:-1]),
           "nonnumeric": " ".join([path, "x"] + labels[1:]),
           "escape": " ".join(["../outside.jpg"] + labels),
           "duplicate": lines[0]}[bad]
    edit_line(f, 3, new)
    assert_one_line_error(train(data_copy, tmp_path / "o"), f"{f}:3", what)


def test_empty_list(data_copy, tmp_path):
    f = os.path.join(data_copy["list_dir"], "test.txt")
    open(f, "w").close()
    assert_one_line_error(train(data_copy, tmp_path / "o"), "test.txt", "empty")


def test_missing_image(data_copy, tmp_path):
    f = os.path.join(data_copy["list_dir"], "database.txt")
    first = open(f).readline().split()[0]
    os.remove(os.path.join(data_copy["root"], first))
    assert_one_line_error(train(data_copy, tmp_path / "o"), f"{f}:1", first, "--skip-bad-images")


def test_corrupt_image_stops_or_is_skipped(data_copy, tmp_path):
    f = os.path.join(data_copy["list_dir"], "train.txt")
    lines = open(f).read().splitlines()
    victim = lines[4].split()[0]
    with open(os.path.join(data_copy["root"], victim), "wb") as g:
        g.write(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    assert_one_line_error(train(data_copy, tmp_path / "o"), f"{f}:5", victim)
    proc = train(data_copy, tmp_path / "o2", "--skip-bad-images", check=True)
    log = open(tmp_path / "o2" / "train.log").read()
    assert "skipping unreadable image" in log and victim in log
    assert "skipped 1 unreadable training images" in log
    assert proc.returncode == 0


# ------------------------------------------------------------------------------------------- flags and checkpoints
@pytest.fixture(scope="module")
def ckpt(lite_single, tmp_path_factory):
    out = tmp_path_factory.mktemp("rel_ckpt")
    train(lite_single, out, check=True)
    return out / "best.pdparams"


@pytest.mark.parametrize("flag,value", [("--bit", 32), ("--method", "orthohash"), ("--backbone", "resnet18")])
def test_flag_contradicting_checkpoint(ckpt, lite_single, tmp_path, flag, value):
    proc = run_cli(["main_single_gpu.py", "--eval", "--pretrained", ckpt, flag, value, "--output", tmp_path],
                   check=False)
    assert_one_line_error(proc, flag, "contradicts")


def test_not_a_checkpoint(tmp_path):
    fake = tmp_path / "fake.pdparams"
    fake.write_bytes(os.urandom(256))
    for cmd in (["main_single_gpu.py", "--eval", "--pretrained", fake, "--output", tmp_path / "o"],
                ["export_model.py", "--pretrained", fake, "--output-dir", tmp_path / "e"],
                ["predict.py", "--bit", 16, "--img", fake, "--pretrained", fake]):
        assert_one_line_error(run_cli(cmd, check=False), "fake.pdparams")
    other = tmp_path / "other.pdparams"
    paddle.save({"weight": paddle.zeros([2])}, str(other))
    assert_one_line_error(run_cli(["export_model.py", "--pretrained", other], check=False), "not a checkpoint")
    assert_one_line_error(run_cli(["main_single_gpu.py", "--resume", tmp_path / "nope.pdparams"], check=False),
                          "--resume", "not found")


def test_img_missing_or_not_an_image(ckpt, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    for img in (tmp_path / "missing.jpg", text):
        assert_one_line_error(run_cli(["predict.py", "--bit", 16, "--img", img, "--pretrained", ckpt], check=False),
                              os.path.basename(img))
    assert_one_line_error(run_cli(["deploy/inference_python/infer.py", "--model-dir", tmp_path, "--img",
                                   tmp_path / "missing.jpg"], check=False), "inference.yml")


def test_output_dir_not_writable(lite_single, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    assert_one_line_error(train(lite_single, blocker / "out"), "--output", "not writable")
    assert_one_line_error(run_cli(["export_model.py", "--pretrained", "missing.pdparams"], check=False),
                          "missing.pdparams", "not found")


def test_foreign_cache_is_rebuilt_not_used(ckpt, lite_single, tmp_path):
    shutil.copy(ckpt, tmp_path / "best.pdparams")
    np.save(tmp_path / "database_code_16.npy", np.ones((48, 16), np.int8))  # no sidecar: foreign
    q = os.path.join(lite_single["root"], open(os.path.join(lite_single["list_dir"], "test.txt")).readline().split()[0])
    out = run_cli(["predict.py", "--bit", 16, "--img", q, "--save_path", tmp_path]).stdout
    assert "Encoding the database" in out and "database_code_16.json" in out
    codes = np.load(tmp_path / "database_code_16.npy")
    assert not (codes == 1).all()


# ------------------------------------------------------------------------------------------- crashes and numerics
def weights(path):
    return {k: np.asarray(v.numpy()) for k, v in paddle.load(str(path))["model"].items()}


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(lite_single, tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    args = [sys.executable, "main_single_gpu.py", *map(str, lite_flags(lite_single, "hashnet", killed, epochs=3))]
    env = dict(os.environ, FLAGS_use_mkldnn="0")
    proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / "train_log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:  # epoch 1 done and checkpointed
            break
        time.sleep(0.05)
    time.sleep(0.5)  # into epoch 2
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert paddle.load(str(killed / "last.pdparams"))["epoch"] >= 1
    run_cli(["main_single_gpu.py", "--resume", killed / "last.pdparams", "--num-workers", 0])
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", full, epochs=3)])
    a, b = weights(full / "last.pdparams"), weights(killed / "last.pdparams")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert json.loads((full / "metrics.json").read_text())["best_map"] == \
        json.loads((killed / "metrics.json").read_text())["best_map"]


def test_ctrl_c_saves_resumable_checkpoint(lite_single, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "main_single_gpu.py", *map(str, lite_flags(lite_single, "hashnet", out, epochs=3))]
    proc = subprocess.Popen(args, cwd=ROOT, env=dict(os.environ, FLAGS_use_mkldnn="0"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (out / "train.log").exists():
        time.sleep(0.05)
    while time.time() < deadline and "epoch 1/3" not in (out / "train.log").read_text() and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in stderr, stderr
    ck = paddle.load(str(out / "last.pdparams"))
    assert "optimizer" in ck and (ck["epoch"], ck["step"]) != (3, 0)
    run_cli(["main_single_gpu.py", "--resume", out / "last.pdparams", "--num-workers", 0])
    assert paddle.load(str(out / "last.pdparams"))["epoch"] == 3


def test_diverged_weights_are_never_saved_and_never_loaded(lite_single, tmp_path):
    """-lr 1e9 turns the backbone weights to NaN while the loss can stay finite (relu(nan) = 0 on CPU):
    the run must stop before it writes such weights, and a NaN checkpoint is refused on load."""
    out = tmp_path / "o"
    proc = train(lite_single, out, "-lr", "1e9", "--head-lr-mult", "1", epochs=2)
    assert_one_line_error(proc, "training diverged")
    assert "training diverged" in (out / "train.log").read_text()  # the log says why the run stopped
    for name in ("last.pdparams", "best.pdparams"):
        if (out / name).exists():
            assert all(np.isfinite(w).all() for w in weights(out / name).values()), name
    # a checkpoint with NaN weights (written by an older version, or by hand) is rejected
    good = tmp_path / "good"
    train(lite_single, good, check=True)
    ck = paddle.load(str(good / "last.pdparams"))
    key = next(iter(ck["model"]))
    ck["model"][key] = paddle.full_like(ck["model"][key], float("nan"))
    paddle.save(ck, str(tmp_path / "nan.pdparams"))
    for cmd in (["main_single_gpu.py", "--resume", tmp_path / "nan.pdparams"],
                ["main_single_gpu.py", "--eval", "--pretrained", tmp_path / "nan.pdparams"],
                ["export_model.py", "--pretrained", tmp_path / "nan.pdparams", "--output-dir", tmp_path / "inf"]):
        assert_one_line_error(run_cli(cmd, check=False), "nan.pdparams", "NaN/inf", key)


def test_diverging_loss_stops_with_clear_message(lite_single, tmp_path):
    proc = train(lite_single, tmp_path / "o", "-lr", "1e12", "--head-lr-mult", "10", epochs=2)
    last = assert_one_line_error(proc, "training diverged", "lower -lr")
    ck = tmp_path / "o" / "last.pdparams"
    if ck.exists():  # whatever was saved is the last good state: finite weights, named in the message
        assert all(np.isfinite(w).all() for w in weights(ck).values())
        assert str(ck) in last
    else:  # diverged before the first checkpoint: the message must not point at a file that is not there
        assert "no checkpoint was written yet" in last
