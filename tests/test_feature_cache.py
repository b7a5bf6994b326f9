"""--feature-cache (utils/train/feature_cache.py): the frozen backbone's training features cached once and
the head trained from them. The cache is checked against its fingerprint and checksum; training from it
equals training from images where both compute the same thing (no augmentation, no backbone dropout);
resume is exact; two processes work."""
import csv
import json
import shutil

import numpy as np
import paddle
import pytest

from tests.helpers import lite_flags, run_cli
from tests.test_engine import launch_2proc, load_weights
from utils.train.feature_cache import load_features, make_fingerprint, save_features

FP = {"format": 1, "backbone": "resnet18", "weights": "w1", "train_list": "l1", "data_path": "/d",
      "preprocess": {"crop_size": 64}}


def test_save_load_and_every_kind_of_stale_or_corrupt_cache(tmp_path):
    npy, meta = tmp_path / "f.npy", tmp_path / "f.json"
    feats = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    idx = np.array([0, 1, 3, 4, 6])
    assert load_features(npy, meta, FP)[2].startswith("no cache")
    save_features(npy, meta, feats, idx, FP)
    got, got_idx, why = load_features(npy, meta, FP)
    assert why is None and np.array_equal(got, feats) and np.array_equal(got_idx, idx)
    for key in ("weights", "train_list", "backbone", "preprocess"):
        why = load_features(npy, meta, {**FP, key: "other"})[2]
        assert why == f"cache was built with a different {key}", why
    data = npy.read_bytes()
    npy.write_bytes(data[:-4] + b"\0\0\0\1")  # same size, other content
    assert "does not match its sidecar checksum" in load_features(npy, meta, FP)[2]
    npy.write_bytes(data[:40])  # truncated
    assert "does not match its sidecar checksum" in load_features(npy, meta, FP)[2]
    npy.write_bytes(data)
    meta.write_text("{not json")
    assert "missing or unreadable" in load_features(npy, meta, FP)[2]


def test_fingerprint_ignores_the_training_augmentation_only(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("a.png 1 0\n")
    state = {"w": paddle.ones([2])}
    base = make_fingerprint("resnet18", state, lst, tmp_path, {"crop_size": 64, "train_augment": "none"})
    assert base == make_fingerprint("resnet18", state, lst, tmp_path, {"crop_size": 64, "train_augment": "crop_flip"})
    assert base != make_fingerprint("resnet18", state, lst, tmp_path, {"crop_size": 56})
    assert base != make_fingerprint("resnet18", {"w": paddle.zeros([2])}, lst, tmp_path, {"crop_size": 64})
    lst.write_text("a.png 0 1\n")
    assert base != make_fingerprint("resnet18", state, lst, tmp_path, {"crop_size": 64})


def train_log(path):
    with open(path / "train_log.csv") as f:
        return list(csv.DictReader(f))


FROZEN = ["--freeze-backbone", "-ee", 100]


@pytest.mark.slow
@pytest.mark.parametrize("method,data", [("hashnet", "lite_single"), ("dpsh", "lite_multi")])
def test_cached_features_train_the_head_as_images_do(method, data, request, tmp_path):
    """With the training transform equal to the evaluation one (--train-augment none) and no backbone
    dropout, training from cached features computes what training from images computes: the same losses
    per epoch and the same head. HashNet and DPSH keep a memory bank indexed by list position, so wrong
    indices, labels, shuffle or batch boundaries (-bs 5 over 24 images: a partial last batch) show up."""
    d = request.getfixturevalue(data)
    extra = [*FROZEN, "--backbone", "alexnet", "--no-backbone-dropout", "--train-augment", "none", "-bs", 5,
             "--no-drop-last"]
    runs = {}
    for mode in ("auto", "off"):
        out = tmp_path / mode
        proc = run_cli(["main_single_gpu.py", *lite_flags(d, method, out, epochs=3,
                                                           extra=[*extra, "--feature-cache", mode])])
        assert ("feature cache" in proc.stdout) == (mode == "auto")
        runs[mode] = out
    assert (runs["auto"] / "train_features.npy").exists() and not (runs["off"] / "train_features.npy").exists()
    a, b = train_log(runs["auto"]), train_log(runs["off"])
    assert len(a) == len(b) == 3
    np.testing.assert_allclose([float(r["loss"]) for r in a], [float(r["loss"]) for r in b], rtol=1e-5)
    wa, wb = load_weights(runs["auto"] / "last.pdparams"), load_weights(runs["off"] / "last.pdparams")
    for k in wa:
        np.testing.assert_allclose(wa[k], wb[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_cached_path_resume_equals_uninterrupted(lite_single, tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    extra = [*FROZEN, "--backbone", "resnet18", "-ee", 1]
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", full, epochs=2, extra=extra)])
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", part, epochs=1, extra=extra)])
    proc = run_cli(["main_single_gpu.py", "--resume", part / "last.pdparams", "--epochs", 2, "--num-workers", 0])
    assert "resuming at epoch 2" in proc.stdout and "reused (fingerprint matches)" in proc.stdout
    a, b = load_weights(full / "last.pdparams"), load_weights(part / "last.pdparams")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    rows = [[{k: v for k, v in r.items() if k != "seconds"} for r in train_log(p)] for p in (full, part)]
    assert rows[0] == rows[1]


@pytest.mark.slow
def test_cache_is_rebuilt_when_stale_or_corrupt(lite_single, tmp_path):
    lists = tmp_path / "lists"
    shutil.copytree(lite_single["list_dir"], lists)
    data = {**lite_single, "list_dir": str(lists)}
    out = tmp_path / "run"
    extra = [*FROZEN, "--backbone", "resnet18", "--lr-gamma", 1]

    def train(*more):
        flags = lite_flags(data, "hashnet", out, epochs=1, extra=[*extra, *more])
        return run_cli(["main_single_gpu.py", *flags]).stdout

    assert "built in" in train()
    assert "reused (fingerprint matches)" in train()
    npy = out / "train_features.npy"
    npy.write_bytes(npy.read_bytes()[:-8])  # truncated
    log = train()
    assert "does not match its sidecar checksum" in log and "rebuilding it" in log and "built in" in log
    assert "cache was built with a different weights; rebuilding it" in train("--seed", 8)  # other random init
    train_txt = lists / "train.txt"
    train_txt.write_text("".join(train_txt.read_text().splitlines(keepends=True)[:-2]))
    log = train("--seed", 8)
    assert "cache was built with a different train_list; rebuilding it" in log
    meta = json.loads((out / "train_features.json").read_text())
    assert meta["shape"][0] == 22 and len(meta["indices"]) == 22


@pytest.mark.slow
def test_two_process_training_from_the_cache(lite_single, tmp_path):
    """2 CPU processes: each encodes its shard, the features are gathered, rank 0 writes the cache, and each
    trains the head (DataParallel) on its shard of every epoch; a second run reuses the cache."""
    out = tmp_path / "two"
    flags = lite_flags(lite_single, "hashnet", out, epochs=2, extra=[*FROZEN, "--backbone", "resnet18", "-bs", 4])
    launch_2proc(flags, tmp_path / "log")
    log = (out / "train.log").read_text()
    assert "train_features.npy: 24 x 512 float32" in log and "built in" in log
    assert json.loads((out / "metrics.json").read_text())["epoch"] == 2
    assert not any(p.name.startswith(".train_features") for p in out.iterdir()), "no temp file left"
    first = np.load(out / "train_features.npy")
    one = tmp_path / "one"  # every rank encoded its shard with rank 0's backbone: as one process does
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", one, epochs=1,
                                               extra=[*FROZEN, "--backbone", "resnet18", "-bs", 4])])
    np.testing.assert_allclose(first, np.load(one / "train_features.npy"), rtol=1e-4, atol=1e-5)
    launch_2proc([*flags, "--epochs", 3], tmp_path / "log2")
    log = (out / "train.log").read_text()
    assert "reused (fingerprint matches)" in log
    np.testing.assert_array_equal(np.load(out / "train_features.npy"), first)
    assert json.loads((out / "metrics.json").read_text())["epoch"] == 3
