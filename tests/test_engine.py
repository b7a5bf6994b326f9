"""The training engine through its real entry points: resume is exact, evaluation is consistent
across one and two processes, outputs are complete."""
import hashlib
import json
import os
import shutil

import numpy as np
import paddle
import pytest

from tests.helpers import lite_flags, run_cli

pytestmark = pytest.mark.slow


def load_weights(path):
    state = paddle.load(str(path))["model"]
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in state.items()}


@pytest.mark.parametrize("method,data", [("hashnet", "lite_single"), ("orthohash", "lite_multi"),
                                         ("dpsh", "lite_single"), ("csq", "lite_multi")])
def test_one_epoch_plus_resume_equals_two_epochs(method, data, request, tmp_path):
    """HashNet on AlexNet (its dropout draws from the restored RNG); the others, whose point is the state
    of their loss (OrthoHash's codebook, DPSH's memory bank, CSQ's centres and head dropout), on ResNet-18
    (a fifth of AlexNet's weights to save and load)."""
    d = request.getfixturevalue(data)
    full, part = tmp_path / "full", tmp_path / "part"
    extra = ["-ee", 1] + ([] if method == "hashnet" else ["--backbone", "resnet18"])
    run_cli(["main_single_gpu.py", *lite_flags(d, method, full, epochs=2, extra=extra)])
    run_cli(["main_single_gpu.py", *lite_flags(d, method, part, epochs=1, extra=extra)])
    # the resumed run takes everything but --epochs from the checkpoint
    proc = run_cli(["main_single_gpu.py", "--resume", part / "last.pdparams", "--epochs", 2, "--num-workers", 0])
    assert "resuming at epoch 2" in proc.stdout
    a, b = load_weights(full / "last.pdparams"), load_weights(part / "last.pdparams")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ma, mb = json.loads((full / "metrics.json").read_text()), json.loads((part / "metrics.json").read_text())
    assert ma["map"] == mb["map"] and ma["best_map"] == mb["best_map"] and mb["epoch"] == 2
    ca = paddle.load(str(full / "last.pdparams"))
    cb = paddle.load(str(part / "last.pdparams"))
    assert ca["best_map"] == cb["best_map"] and ca["epoch"] == cb["epoch"] == 2
    # the numpy state the checkpoints carry is the run's RandomState(--seed), which nothing in training draws
    # from (the state numpy's global stream had after np.random.seed(seed) when the engine seeded it)
    for ck in (ca, cb):
        want = np.random.RandomState(7).get_state()
        assert ck["rng"]["numpy"][0] == want[0] and ck["rng"]["numpy"][2:] == want[2:]
        np.testing.assert_array_equal(ck["rng"]["numpy"][1], want[1])
    def log_rows(path):  # every column but the wall time
        return [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]

    assert log_rows(part / "train_log.csv") == log_rows(full / "train_log.csv")


def test_outputs_and_eval_of_checkpoint(lite_single, tmp_path):
    out = tmp_path / "run"
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", out, epochs=1)])
    for name in ("best.pdparams", "last.pdparams", "metrics.json", "train.log", "train_log.csv", "run.json",
                 "database_code_16.npy", "database_code_16.json"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("method", "bit", "topk", "epoch", "map", "best_map", "map_tie_aware"):
        assert key in metrics
    assert metrics["method"] == "orthohash" and metrics["bit"] == 16
    codes = np.load(out / "database_code_16.npy")
    assert codes.shape == (48, 16) and set(np.unique(codes)) <= {-1, 1}
    ev = run_cli(["main_single_gpu.py", "--eval", "--pretrained", out / "best.pdparams", "--num-workers", 0,
                  "--output", tmp_path / "eval"])
    line = [row for row in ev.stdout.splitlines() if row.startswith("mAP@all: ")]
    assert line and float(line[0].split()[1]) == pytest.approx(metrics["best_map"], abs=5e-5)
    assert "changed since training" not in ev.stdout
    # every evaluation's metrics.json: radius / R-based metrics, cost, seed and the split manifest
    for key in ("precision_at_radius_2", "precision_at_radius_2_nonempty", "recall_at_radius_2", "map_at_r",
                "r_precision"):
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["open_set"] is None and metrics["seed"] == json.loads((out / "run.json").read_text())["seed"]
    assert metrics["cost"]["bytes_per_item"] == 2 and metrics["cost"]["encode_images_per_second"] > 0
    assert metrics["cost"]["query_ms"] > 0
    lists = lite_single["list_dir"]
    digests = {n: hashlib.sha256(open(os.path.join(lists, f"{n}.txt"), "rb").read()).hexdigest()
               for n in ("train", "database", "test")}
    assert metrics["lists_sha256"] == digests == json.loads((out / "run.json").read_text())["lists_sha256"]
    # an open-set copy of the lists (class 0 out of train.txt) evaluated with the same checkpoint: a warning
    # names the changed list, and mAP is split into seen / unseen queries
    open_dir = tmp_path / "open_lists"
    shutil.copytree(lists, open_dir)
    rows = (open_dir / "train.txt").read_text().splitlines()
    (open_dir / "train.txt").write_text("\n".join(r for r in rows if r.split()[1] != "1") + "\n")
    ev2 = run_cli(["main_single_gpu.py", "--eval", "--pretrained", out / "best.pdparams", "--num-workers", 0,
                   "--list-dir", open_dir, "--output", tmp_path / "eval_open"])
    assert f"{open_dir / 'train.txt'}: the train list changed since training" in ev2.stdout
    assert "database.txt: the" not in ev2.stdout and "test.txt: the" not in ev2.stdout
    m2 = json.loads((tmp_path / "eval_open" / "metrics.json").read_text())
    os_ = m2["open_set"]
    test_rows = (open_dir / "test.txt").read_text().splitlines()
    n_unseen = sum(r.split()[1] == "1" for r in test_rows)
    assert os_["unseen_classes"] == [0] and os_["unseen"]["num_query"] == n_unseen > 0
    assert os_["seen"]["num_query"] == len(test_rows) - n_unseen
    report = json.loads((tmp_path / "eval_open" / "report" / "metrics.json").read_text())
    assert report["open_set"] == os_ and report["map_at_r"] == m2["map_at_r"]


def launch_2proc(args, log_dir, timeout=900):
    """main_multi_gpu.py as 2 CPU processes (gloo), as scripts/train_multi_gpu.sh does on a CPU machine."""
    return run_cli(["-m", "paddle.distributed.launch", "--nproc_per_node", 2, "--log_dir", log_dir,
                    "main_multi_gpu.py", "--device", "cpu", *args], timeout=timeout)


def eval_map(ckpt, out, two_processes=False):
    args = ["--eval", "--pretrained", ckpt, "--num-workers", 0, "--output", out]
    if two_processes:
        launch_2proc(args, out / "log")
    else:
        run_cli(["main_single_gpu.py", *args])
    return json.loads((out / "metrics.json").read_text())["map"]


def test_two_process_cpu_training_and_sharded_eval(lite_single, tmp_path):
    """2 CPU processes train (sharded data, DataParallel, gathered memory bank) and evaluate (each rank
    encodes its shard): the same checkpoint gets the same mAP from 1 and from 2 processes, and the
    2-process model is close to the 1-process one trained with the same global batch."""
    two, one = tmp_path / "two", tmp_path / "one"
    launch_2proc(lite_flags(lite_single, "hashnet", two, epochs=3, extra=["-bs", 4]), tmp_path / "log")
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", one, epochs=3)])
    m2 = json.loads((two / "metrics.json").read_text())
    m1 = json.loads((one / "metrics.json").read_text())
    assert m2["epoch"] == 3 and (two / "database_code_16.npy").exists()
    assert not any(p.name.startswith("best.pdparams.") for p in two.iterdir()), "only rank 0 writes"
    single = eval_map(two / "last.pdparams", tmp_path / "eval1")
    sharded = eval_map(two / "last.pdparams", tmp_path / "eval2", two_processes=True)
    assert single == sharded
    assert abs(m2["map"] - m1["map"]) < 0.15, (m1["map"], m2["map"])


# The keys save_checkpoint wrote before TrainState existed (checkpoint VERSION 1): last.pdparams, and
# best.pdparams (no optimizer, scheduler, criterion or history).
OLD_LAST_KEYS = {"format", "version", "cfg", "epoch", "step", "best_map", "model", "weights_fingerprint",
                 "paddle_version", "optimizer", "scheduler", "criterion", "rng", "best_epoch", "history"}
OLD_BEST_KEYS = OLD_LAST_KEYS - {"optimizer", "scheduler", "criterion", "history"}


def old_layout_checkpoint(ck):
    """A last.pdparams dict built the way save_checkpoint wrote it before TrainState: fields set one by one,
    then the `extra` dict (best_epoch, history) merged in."""
    old = {"format": ck["format"], "version": 1, "cfg": dict(ck["cfg"]), "epoch": int(ck["epoch"]),
           "step": int(ck["step"]), "best_map": float(ck["best_map"]), "model": ck["model"],
           "weights_fingerprint": ck["weights_fingerprint"], "paddle_version": ck["paddle_version"]}
    old["optimizer"], old["scheduler"], old["criterion"] = ck["optimizer"], ck["scheduler"], ck["criterion"]
    old["rng"] = ck["rng"]
    old.update({"best_epoch": ck["best_epoch"], "history": ck["history"]})
    return old


def test_train_state_round_trip_and_defaults():
    from models.checkpoint import TrainState

    s = TrainState(epoch=3, step=5, best_map=0.5, best_epoch=2, history=[{"epoch": 1}])
    assert set(s.to_checkpoint()) == {"epoch", "step", "best_map", "best_epoch", "history"}
    assert "history" not in s.to_checkpoint(resumable=False)
    assert TrainState.from_checkpoint(s.to_checkpoint()) == s
    # a checkpoint without step / best_epoch / history (hand-made, or from scripts/bench_inference.py)
    assert TrainState.from_checkpoint({"epoch": 4, "best_map": 0.25}) == TrainState(epoch=4, best_map=0.25)


def test_checkpoint_in_the_old_layout_resumes_and_evaluates(lite_single, tmp_path):
    run, old = tmp_path / "run", tmp_path / "old"
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "hashnet", run, epochs=1, extra=["-ee", 1])])
    ck = paddle.load(str(run / "last.pdparams"))
    assert set(ck) == OLD_LAST_KEYS, "last.pdparams layout changed"
    assert set(paddle.load(str(run / "best.pdparams"))) == OLD_BEST_KEYS, "best.pdparams layout changed"
    old.mkdir()
    paddle.save(old_layout_checkpoint(ck), str(old / "last.pdparams"))
    paddle.save(old_layout_checkpoint(ck), str(tmp_path / "old_eval.pdparams"))
    proc = run_cli(["main_single_gpu.py", "--resume", old / "last.pdparams", "--epochs", 2, "--num-workers", 0])
    assert "resuming at epoch 2" in proc.stdout
    assert f"best mAP so far {ck['best_map']:.4f} (epoch 1)" in proc.stdout
    resumed = paddle.load(str(old / "last.pdparams"))
    assert resumed["epoch"] == 2 and [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == ck["history"][0]
    assert json.loads((old / "metrics.json").read_text())["epoch"] == 2
    ev = run_cli(["main_single_gpu.py", "--eval", "--pretrained", tmp_path / "old_eval.pdparams", "--num-workers", 0,
                  "--output", tmp_path / "eval"])
    line = [row for row in ev.stdout.splitlines() if row.startswith("mAP@all: ")]
    assert line and float(line[0].split()[1]) == pytest.approx(ck["history"][0]["map"], abs=5e-5)


def test_training_data_does_not_depend_on_numpy_or_python_global_random_state(lite_single):
    """The engine no longer seeds numpy's global stream: the augmented training images (and their order)
    must not draw from it, nor from Python's; Paddle's is seeded by the run."""
    import random

    from utils.data.datasets import ImageListDataset, load_lists, make_loader
    from utils.data.transforms import Preprocess

    lists = load_lists(lite_single["list_dir"], 10, False, ("train",))
    pre = Preprocess.from_dict({"resize_size": 72, "crop_size": 64, "resize_mode": "shorter",
                                "train_augment": "crop_flip", "eval_crop": "center"})

    def epoch_of_batches(global_seed):
        np.random.seed(global_seed)
        random.seed(global_seed)
        ds = ImageListDataset(lists["train"], lite_single["root"], pre, train=True, seed=7)
        ds.set_epoch(2)
        loader = make_loader(ds, 8, 0, train=True, seed=7)
        loader.batch_sampler.set_epoch(2)
        return [(img.numpy(), idx.numpy()) for img, _, idx, _ in loader]

    a, b = epoch_of_batches(0), epoch_of_batches(12345)
    assert len(a) == len(b) == 3
    for (ia, xa), (ib, xb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ia, ib)


def test_help_shows_each_default_once():
    from utils.train.config import build_parser

    text = build_parser("d").format_help()
    assert "(default: None)" not in text
    assert "(default hashnet)" in text and "(default: paper)" in text  # the recipe's words; argparse's own


def test_setup_logging_closes_the_handlers_it_replaces(tmp_path):
    import logging

    from utils.train.reporter import setup_logging

    log = logging.getLogger("deephash")
    setup_logging(str(tmp_path / "a.log"), True)
    first = [h for h in log.handlers if isinstance(h, logging.FileHandler)]
    assert len(first) == 1 and first[0].stream is not None
    setup_logging(str(tmp_path / "b.log"), True)
    assert first[0].stream is None, "the first log file was left open"
    assert [h.baseFilename for h in log.handlers if isinstance(h, logging.FileHandler)] == [str(tmp_path / "b.log")]
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()


def test_visualdl_log_is_closed_when_training_fails(monkeypatch):
    import utils.train.reporter as reporter

    closed = []

    class FakeLog:
        def __init__(self, logdir):
            self.logdir = logdir

        def close(self):
            closed.append(self.logdir)

    class Env:
        is_main = True

    monkeypatch.setattr(reporter, "VisualDLLog", FakeLog)
    rep = reporter.Reporter({"visualdl": "vdl"}, Env(), None, None)
    with pytest.raises(RuntimeError):
        with rep.visualdl():
            raise RuntimeError("diverged")
    assert closed == ["vdl"]


def test_evaluation_result_is_typed_and_becomes_a_dict_only_in_metrics():
    from dataclasses import fields

    from utils.train.evaluator import EvalResult
    from utils.train.reporter import Reporter

    names = {f.name for f in fields(EvalResult)}
    assert {"map", "map_tie_aware", "ranked", "open_set", "cost", "encode_seconds", "map_seconds",
            "rank_seconds"} <= names
    z = np.zeros((2, 4), np.float32)
    r = EvalResult(map=0.5, map_tie_aware=0.25, query_codes=z, query_indices=np.arange(2), query_labels=z,
                   db_codes=np.zeros((3, 4), np.float32), db_indices=np.arange(3), db_labels=z, ap=np.zeros(2),
                   ap_tie=np.zeros(2), stats=None, ranked={"map_at_r": 0.125}, open_set=None, cost={"x": 1},
                   encode_seconds=1.0, map_seconds=2.0, rank_seconds=3.0)

    class Data:
        lists_sha256 = {"test": "abc"}

    cfg = dict(method="hashnet", bit=4, topk=-1, dataset="lite_single", backbone="alexnet", seed=7)
    m = Reporter(cfg, None, None, Data()).metrics(3, r, 0.75, 2)
    assert m == {"method": "hashnet", "bit": 4, "topk": -1, "dataset": "lite_single", "backbone": "alexnet",
                 "epoch": 3, "map": 0.5, "map_tie_aware": 0.25, "best_map": 0.75, "best_epoch": 2, "num_query": 2,
                 "num_database": 3, "map_at_r": 0.125, "open_set": None, "cost": {"bytes_per_item": 1, "x": 1},
                 "seed": 7, "lists_sha256": {"test": "abc"}}
    json.dumps(m)
