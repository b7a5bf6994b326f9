"""No file a user hands us runs code (utils/safe_pickle.py), and checkpoints of the previous release
still evaluate, resume, export and predict.

Each hostile file below runs its payload under a plain `pickle.load` (checked first, so the test can
fail); then every entry point that reads a user's file gets it, in one subprocess per file (the entry
points' `main(argv)` in turn, stderr captured at the file-descriptor level for each): the marker the
payload would create never appears, the exit status is 2 and stderr is one line, without a traceback.
"""
import builtins
import io
import json
import lzma
import os
import pickle
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from tests.helpers import ROOT, lite_flags, run_cli

pytestmark = pytest.mark.slow

FORMAT = "paddle-deephash-checkpoint"
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "old_release", "last.pdparams.xz")


class _Call:
    """Pickles as a call of `fn(*args)`: what a hostile `__reduce__` does."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _system(marker):
    return _Call(os.system, f"touch '{marker}'")


def _eval(marker):
    return _Call(builtins.eval, f"open({str(marker)!r}, 'w').close()")


def _legacy_torch(obj):
    """torch.save's legacy stream (magic, protocol, sys_info, object): what .pkl codebooks are."""
    buf = io.BytesIO()
    for part in (0x1950a86a20f9469cfc6c, 1001, {"little_endian": True, "protocol_version": 1001}, obj):
        pickle.dump(part, buf, protocol=2)
    return buf.getvalue()


def _torch_zip(path, obj):
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(obj, protocol=2))
        zf.writestr("archive/byteorder", "little")
        zf.writestr("archive/version", "3\n")


def write_hostile(kind, path, marker):
    """Write the hostile file `kind` to `path`; return the global its payload names."""
    if kind == "os.system":
        path.write_bytes(pickle.dumps(_system(marker)))
    elif kind == "eval":
        path.write_bytes(pickle.dumps(_eval(marker)))
    elif kind == "inside checkpoint":  # the format header first: a reader that checks it afterwards is too late
        path.write_bytes(pickle.dumps({"format": FORMAT, "version": 1, "cfg": {"method": "hashnet", "bit": 16},
                                       "model": {"w": np.zeros(3, np.float32), "b": _eval(marker)}, "epoch": 1}))
    elif kind == "torch zip":
        _torch_zip(path, {"state_dict": {"fc.weight": _system(marker)}})
    elif kind == "codebook pkl":
        path.write_bytes(_legacy_torch(_system(marker)))
    return "builtins.eval" if kind in ("eval", "inside checkpoint") else f"{os.system.__module__}.system"


def run_payload_live(kind, path):
    """Unpickle `path` the unsafe way, as paddle.load / torch.load(weights_only=False) would."""
    if kind == "torch zip":
        with zipfile.ZipFile(path) as zf:
            pickle.loads(zf.read("archive/data.pkl"))
    else:
        with open(path, "rb") as f:
            for _ in range(4 if kind == "codebook pkl" else 1):
                pickle.load(f)


KINDS = ["os.system", "eval", "inside checkpoint", "torch zip", "codebook pkl"]
CHECKPOINT_ENTRIES = ("eval", "resume", "export", "predict", "predict_dir", "index", "serve")

# Runs each case's entry point `main(argv)` in this one process; per case: exit status, what reached
# file descriptor 2, and whether the marker exists afterwards.
_RUNNER = r"""
import importlib.util, json, os, sys, tempfile, traceback
root, marker, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
sys.path.insert(0, root)

def script(rel):
    spec = importlib.util.spec_from_file_location("entry_" + rel.replace("/", "_")[:-3], os.path.join(root, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main

from utils.errors import cli_entry
from utils.train.engine import main as train
mains = {"train": train, "export": script("export_model.py"), "predict": script("predict.py"),
         "index": script("scripts/index.py"), "serve": script("deploy/serving/app.py"),
         "convert": script("scripts/convert_weights.py")}
results = []
for name, entry, argv in cases:
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as err:
        saved = os.dup(2)
        os.dup2(err.fileno(), 2)
        try:
            try:
                cli_entry(mains[entry])(argv)
                code = 0
            except SystemExit as exc:
                code = exc.code
            except BaseException:
                traceback.print_exc()
                code = "uncaught"
            sys.stderr.flush()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        err.seek(0)
        results.append({"name": name, "code": code, "stderr": err.read().decode("utf-8", "replace"),
                        "marker": os.path.exists(marker)})
print("RESULTS " + json.dumps(results), flush=True)
"""


def run_entries(cases, marker, timeout=600):
    proc = subprocess.run([sys.executable, "-c", _RUNNER, ROOT, str(marker), json.dumps(cases)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, FLAGS_use_mkldnn="0", PYTHONUNBUFFERED="1"))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {r["name"]: r for r in json.loads(lines[-1][len("RESULTS "):])}


def entry_cases(f, data, tmp, only=None):
    """(name, entry, argv) for every entry point that reads a user's file, each handed `f`."""
    f, tmp = str(f), str(tmp)
    run_dir = os.path.join(tmp, "run_dir")
    os.makedirs(run_dir, exist_ok=True)
    shutil.copyfile(f, os.path.join(run_dir, "best.pdparams"))
    img = os.path.join(data["root"], open(os.path.join(data["list_dir"], "test.txt")).readline().split()[0])
    db = ["--dataset", data["dataset"], "--data-path", data["root"], "--list-dir", data["list_dir"]]
    cases = [
        ("main_single_gpu.py --eval --pretrained", "train", ["--eval", "--pretrained", f, *db]),
        ("main_single_gpu.py --resume", "train", ["--resume", f]),
        ("export_model.py --pretrained", "export", ["--pretrained", f, "--output-dir", os.path.join(tmp, "inf")]),
        ("predict.py --pretrained", "predict", ["--pretrained", f, "--img", img, *db,
                                                "--save_path", os.path.join(tmp, "pred")]),
        ("predict.py --save_path", "predict", ["--save_path", run_dir, "--img", img, *db]),
        ("scripts/index.py build --model", "index", ["build", "--model", f, "--images", data["root"],
                                                     "--out", os.path.join(tmp, "idx")]),
        ("deploy/serving/app.py --pretrained", "serve", ["--pretrained", f, "--port", "0", *db,
                                                         "--save_path", os.path.join(tmp, "serve")]),
        ("training --codebook", "train", [str(a) for a in lite_flags(data, "orthohash", os.path.join(tmp, "cb"),
                                                                     extra=["--codebook", f])]),
        ("training --backbone-weights", "train",
         [str(a) for a in lite_flags(data, "hashnet", os.path.join(tmp, "bw"),
                                     extra=["--backbone", "resnet18", "--backbone-weights", f])]),
        ("scripts/convert_weights.py", "convert", [f, os.path.join(tmp, "converted.pdparams"), "--backbone",
                                                   "resnet18"]),
    ]
    names = dict(zip(CHECKPOINT_ENTRIES, [c[0] for c in cases]))
    return [c for c in cases if only is None or c[0] in {names[k] for k in only}]


def _one_line_error(r):
    lines = r["stderr"].strip().splitlines()
    return len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r["stderr"]


@pytest.mark.parametrize("kind", KINDS)
def test_hostile_file_runs_nothing_in_any_entry_point(kind, lite_single, tmp_path):
    live = tmp_path / "live_marker"
    probe = tmp_path / ("probe.pkl" if kind == "codebook pkl" else "probe.pdparams")
    write_hostile(kind, probe, live)
    run_payload_live(kind, probe)
    assert live.exists(), "the payload must run under a plain pickle.load, or this test proves nothing"

    marker = tmp_path / "marker"
    f = tmp_path / ("codebook.pkl" if kind == "codebook pkl" else "hostile.pdparams")
    glob = write_hostile(kind, f, marker)
    cases = entry_cases(f, lite_single, tmp_path)
    results = run_entries(cases, marker)
    assert len(results) == len(cases) == 10
    checkpoint_readers = {c[0] for c in entry_cases(f, lite_single, tmp_path, CHECKPOINT_ENTRIES)}
    for name, r in results.items():
        assert not r["marker"], f"{name}: the payload ran"
        assert r["code"] == 2 and _one_line_error(r), (name, r)
        if kind == "torch zip" and name in checkpoint_readers:
            assert "a zip archive (torch.save's format?), not a checkpoint of this project" in r["stderr"], (name, r)
        elif kind == "codebook pkl" and name in checkpoint_readers:  # the payload follows the magic number
            assert "a torch.save file (its legacy format), not a checkpoint of this project" in r["stderr"], (name, r)
        else:
            assert f"refused global '{glob}'" in r["stderr"] and "nothing from the file was run" in r["stderr"], \
                (name, r)
        assert str(f) in r["stderr"] or "best.pdparams" in r["stderr"], (name, r)  # names the file
    assert not marker.exists()


def test_broken_checkpoints_are_one_line_errors(lite_single, tmp_path):
    """A torch zip of plain tensors, a truncated checkpoint and a dict without the header, in every entry
    point that reads a checkpoint."""
    real = lzma.decompress(open(FIXTURE, "rb").read())
    files = {"torch zip": tmp_path / "weights.pth", "truncated": tmp_path / "truncated.pdparams",
             "not a checkpoint": tmp_path / "dict.pdparams"}
    shutil.copyfile(os.path.join(ROOT, "tests", "fixtures", "weights", "tiny_zip.pth"), files["torch zip"])
    files["truncated"].write_bytes(real[:len(real) // 2])
    files["not a checkpoint"].write_bytes(pickle.dumps({"state_dict": {"w": np.zeros(3, np.float32)}}))
    expect = {"torch zip": "a zip archive (torch.save's format?), not a checkpoint of this project",
              "truncated": "not a readable checkpoint (the pickle ends early: the file is truncated)",
              "not a checkpoint": f"not a checkpoint of this project (no '{FORMAT}' header)"}
    cases = []
    for label, f in files.items():
        sub = tmp_path / label.replace(" ", "_")
        sub.mkdir()
        cases += [(f"{label}: {name}", entry, argv)
                  for name, entry, argv in entry_cases(f, lite_single, sub, CHECKPOINT_ENTRIES)]
    results = run_entries(cases, tmp_path / "no_marker")
    assert len(results) == 3 * len(CHECKPOINT_ENTRIES)
    for name, r in results.items():
        assert r["code"] == 2 and _one_line_error(r), (name, r)
        assert expect[name.split(":")[0]] in r["stderr"], (name, r)


def test_cifar_batch_with_a_payload_is_refused(tmp_path):
    from scripts.build_cifar10_lists import read_archive
    from utils.errors import UserError

    marker = tmp_path / "marker"
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8),
                                                        b"labels": [_system(marker)]}))
    with pytest.raises(UserError, match=r"data_batch_1: refused global '\w+\.system'.*nothing from the file was run"):
        read_archive(str(folder))
    assert not marker.exists()


def test_allow_list_builds_only_plain_data():
    from utils import safe_pickle

    x = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5), "t": (1, [b"x", "y", None]),
         "np_rng": np.random.get_state()}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        y = safe_pickle.loads(pickle.dumps(x, protocol=protocol))
        np.testing.assert_array_equal(y["a"], x["a"])
        assert y["s"] == 2.5 and y["t"] == x["t"] and y["np_rng"][0] == "MT19937"
    for bad in (np.array([1, None], dtype=object), _Call(os.getcwd), _Call(getattr, "x", "upper")):
        with pytest.raises(pickle.UnpicklingError):
            safe_pickle.loads(pickle.dumps(bad))
    # an allow-listed global cannot be modified by a BUILD aimed at it (a later load would see it)
    tampered = b"\x80\x02cbuiltins\ntuple\nN}q\x00X\x03\x00\x00\x00_fnq\x01K\x01s\x86q\x02b."
    with pytest.raises(pickle.UnpicklingError):
        safe_pickle.loads(tampered)
    assert safe_pickle.loads(pickle.dumps((1, 2))) == (1, 2)


def test_paddle_rng_state_survives_the_safe_reader(tmp_path):
    """The GeneratorState read as numbers and rebuilt gives the same random stream as paddle.load's."""
    import paddle

    from models.checkpoint import paddle_generator_states
    from utils import safe_pickle

    paddle.seed(123)
    paddle.rand([5])
    path = str(tmp_path / "rng.pdparams")
    paddle.save({"rng": paddle.get_rng_state()}, path)
    expected = paddle.rand([7]).numpy()
    paddle.seed(0)
    with open(path, "rb") as f:
        states = safe_pickle.load(f)["rng"]
    assert isinstance(states[0], safe_pickle.GeneratorStateData)
    paddle.set_rng_state(paddle_generator_states(states))
    np.testing.assert_array_equal(paddle.rand([7]).numpy(), expected)


@pytest.fixture(scope="module")
def old_checkpoint(tmp_path_factory):
    """The previous release's last.pdparams (tests/fixtures/old_release), decompressed."""
    run = tmp_path_factory.mktemp("old_release") / "run"
    run.mkdir()
    data = lzma.decompress(open(FIXTURE, "rb").read())
    (run / "last.pdparams").write_bytes(data)
    (run / "best.pdparams").write_bytes(data)
    return run


def test_previous_release_checkpoint_evaluates_resumes_exports_predicts(old_checkpoint, lite_single, tmp_path):
    from models.checkpoint import load_checkpoint

    run = tmp_path / "run"
    shutil.copytree(old_checkpoint, run)
    ck = load_checkpoint(str(run / "last.pdparams"), "--resume")
    assert ck["epoch"] == 1 and ck["cfg"]["method"] == "hashnet" and ck["paddle_version"]
    assert {"optimizer", "scheduler", "criterion", "rng", "history"} <= set(ck)
    db = ["--dataset", "lite_single", "--data-path", lite_single["root"], "--list-dir", lite_single["list_dir"]]
    ev = run_cli(["main_single_gpu.py", "--eval", "--pretrained", run / "best.pdparams", *db, "--num-workers", 0,
                  "--output", tmp_path / "eval"])
    assert any(line.startswith("mAP@all: ") for line in ev.stdout.splitlines()), ev.stdout
    res = run_cli(["main_single_gpu.py", "--resume", run / "last.pdparams", "--epochs", 2, *db, "--num-workers", 0])
    assert "resuming at epoch 2" in res.stdout
    resumed = load_checkpoint(str(run / "last.pdparams"), "--resume")
    assert resumed["epoch"] == 2 and [r["epoch"] for r in resumed["history"]] == [1, 2]
    assert resumed["history"][0] == ck["history"][0]
    inf = tmp_path / "inf"
    run_cli(["export_model.py", "--pretrained", old_checkpoint / "best.pdparams", "--output-dir", inf])
    assert (inf / "inference.yml").is_file()
    first = open(os.path.join(lite_single["list_dir"], "test.txt")).readline().split()[0]
    img = os.path.join(lite_single["root"], first)
    pred = run_cli(["predict.py", "--save_path", old_checkpoint, "--img", img, *db, "--topk", 3])
    assert "----- Predicted Hamm_min:" in pred.stdout and "----- Found Matched Pic:" in pred.stdout


@pytest.mark.parametrize("name", ["sgd_momentum", "adam_step_decay", "rmsprop_paddle", "rmsprop_pytorch"])
def test_optimizer_state_read_as_data_resumes_exactly(name, tmp_path):
    """Two steps, save (paddle.save), read through the allow-list reader into a fresh model and optimizer,
    two more steps: the weights equal four uninterrupted steps, bit for bit."""
    import paddle

    from models.checkpoint import read_checkpoint_file
    from utils.train.optim import rmsprop

    def build():
        paddle.seed(5)
        net = paddle.nn.Sequential(paddle.nn.Linear(4, 3), paddle.nn.Tanh(), paddle.nn.Linear(3, 2))
        params = net.parameters()
        if name == "sgd_momentum":
            opt = paddle.optimizer.Momentum(learning_rate=0.1, momentum=0.9, parameters=params)
        elif name == "adam_step_decay":
            opt = paddle.optimizer.Adam(learning_rate=paddle.optimizer.lr.StepDecay(0.05, step_size=1, gamma=0.5),
                                        parameters=params)
        else:
            opt = rmsprop(name.split("_")[1], 0.01, params, 0.0)
        return net, opt

    x = paddle.to_tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(5, 4))

    def steps(net, opt, n):
        for _ in range(n):
            (net(x) ** 2).sum().backward()
            opt.step()
            opt.clear_grad()
            if isinstance(opt._learning_rate, paddle.optimizer.lr.LRScheduler):
                opt._learning_rate.step()

    fresh = paddle.utils.unique_name.guard  # names as in a new process (optimizer state is keyed by them)
    with fresh():
        net, opt = build()
        steps(net, opt, 4)
        expected = {k: v.numpy() for k, v in net.state_dict().items()}
    with fresh():
        net, opt = build()
        steps(net, opt, 2)
        path = str(tmp_path / "state.pdparams")
        paddle.save({"model": net.state_dict(), "optimizer": opt.state_dict()}, path)
    state = read_checkpoint_file(path)
    assert all(isinstance(v, np.ndarray) for k, v in state["optimizer"].items() if k != "LR_Scheduler")
    with fresh():
        net, opt = build()
        net.set_state_dict(state["model"])
        opt.set_state_dict(state["optimizer"])
        steps(net, opt, 2)
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), expected[k], err_msg=k)
