"""ImageNet weight loading (utils/weight_files.py reads, models/weights.py maps, scripts/convert_weights.py).

Without torch: the restricted reader on small files written by real `torch.save` (both formats) and
safetensors (tests/fixtures/weights, made by make_fixtures.py there), malicious pickles refused without
running, transposition decided by layer type, paddle.vision AlexNet equal to paddle.vision's own forward,
strict / partial loading, prefixes and nesting, PaddleClas ResNet names.
With torch and torchvision importable: our features equal torchvision's for seeded random weights.
"""
import os
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import paddle
import pytest

from models import build_backbone, load_backbone_weights
from models.weights import map_weights
from tests.helpers import ROOT, run_cli
from tests.test_reliability import assert_one_line_error
from utils.errors import UserError
from utils.safe_pickle import RestrictedUnpickler
from utils.weight_files import WeightsFile, read_weights

FIX = os.path.join(ROOT, "tests", "fixtures", "weights")


def own_numpy(backbone):
    return {k: v.numpy() for k, v in backbone.state_dict().items()}


def features(backbone, x):
    backbone.eval()
    with paddle.no_grad():
        return backbone(paddle.to_tensor(x)).numpy()


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def to_torch_names(state, arch):
    """A state dict of ours written as torchvision would: no `net.` prefix, BN running_*, Linear
    weights (out, in), an ImageNet classifier. Written independently of models/weights.py."""
    out = {}
    for k, v in state.items():
        if arch.startswith("resnet"):
            k = k[len("net."):]
            k = k.replace("._mean", ".running_mean").replace("._variance", ".running_var")
        out[k] = v
    if arch.startswith("resnet"):
        for k in list(out):
            if k.endswith("running_var"):
                out[k[:-len("running_var")] + "num_batches_tracked"] = np.array(5, dtype=np.int64)
        out["fc.weight"] = np.zeros((1000, 512), np.float32)
        out["fc.bias"] = np.zeros(1000, np.float32)
    else:
        for k in [k for k in out if k.startswith("classifier.") and k.endswith(".weight")]:
            out[k] = out[k].T.copy()
        out["classifier.6.weight"] = np.zeros((1000, 4096), np.float32)
        out["classifier.6.bias"] = np.zeros(1000, np.float32)
    return out


# ------------------------------------------------------------------------------------- reading files
@pytest.mark.parametrize("name", ["tiny_zip.pth", "tiny_legacy.pth", "tiny.safetensors"])
def test_reader_on_real_torch_save_files(name):
    expected = np.load(os.path.join(FIX, "expected.npz"))
    w = read_weights(os.path.join(FIX, name))
    assert w.convention == "torch"
    assert sorted(w.tensors) == sorted(expected.files)
    for key in expected.files:
        got = w.tensors[key]
        assert got.shape == expected[key].shape, key
        np.testing.assert_array_equal(got.astype(expected[key].dtype), expected[key], err_msg=key)
    assert w.tensors["half"].dtype == np.float16 and w.tensors["mask"].dtype == np.bool_
    assert w.tensors["bf16"].dtype == np.float32  # numpy has no bfloat16: widened exactly


def test_reader_never_imports_paddle():
    """utils/weight_files.py reads all three formats in a fresh process without loading paddle (nor
    models, nor torch): it is the torch-free and Paddle-free half of the weight loading."""
    code = ("import sys, os, utils.weight_files as wf\n"
            f"fix = {FIX!r}\n"
            "for name in ('tiny_zip.pth', 'tiny_legacy.pth', 'tiny.safetensors'):\n"
            "    assert wf.read_weights(os.path.join(fix, name)).tensors\n"
            "bad = [m for m in ('paddle', 'models', 'torch') if m in sys.modules]\n"
            "print(','.join(bad)); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"reading weights loaded {proc.stdout.strip()} {proc.stderr[-500:]}"


def test_models_weights_keeps_the_reader_names():
    import models.weights as mw
    import utils.weight_files as wf

    assert mw.read_weights is wf.read_weights and mw.WeightsFile is wf.WeightsFile
    assert mw.load_torch_object is wf.load_torch_object and mw.HOW_TO_GET == wf.HOW_TO_GET
    assert mw.RestrictedUnpickler is RestrictedUnpickler


def test_fixtures_are_small():
    for name in os.listdir(FIX):
        assert os.path.getsize(os.path.join(FIX, name)) < 1 << 20, name


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _legacy_with(payload, path):
    with open(path, "wb") as f:
        pickle.dump(0x1950a86a20f9469cfc6c, f)
        pickle.dump(1001, f)
        pickle.dump({"little_endian": True}, f)
        pickle.dump(payload, f)


@pytest.mark.parametrize("kind", ["plain.pth", "legacy.pth", "zip.pth", "evil.pdparams"])
def test_malicious_pickle_is_refused_without_running(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / kind
    payload = {"features.0.weight": _Evil(str(marker))}
    if kind == "legacy.pth":
        _legacy_with(payload, path)
    elif kind == "zip.pth":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("archive/data.pkl", pickle.dumps(payload))
            zf.writestr("archive/version", "3\n")
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(UserError, match=r"refused global '(posix|os|nt)\.system'.*nothing from the file was run"):
        read_weights(str(path))
    assert not marker.exists()
    # the restricted unpickler itself, with the same payload
    with pytest.raises(pickle.UnpicklingError, match="refused global"):
        RestrictedUnpickler(__import__("io").BytesIO(pickle.dumps(payload))).load()
    assert not marker.exists()


def test_corrupt_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(os.urandom(300))
    with pytest.raises(UserError, match="junk.pth: not a readable weights file"):
        read_weights(str(junk))
    cut = tmp_path / "cut.pth"
    data = open(os.path.join(FIX, "tiny_legacy.pth"), "rb").read()
    cut.write_bytes(data[:len(data) - 40])
    with pytest.raises(UserError, match="cut.pth: not a readable weights file"):
        read_weights(str(cut))
    with pytest.raises(UserError, match="file not found.*Nothing is downloaded.*Pretrained weights"):
        read_weights(str(tmp_path / "missing.pth"))


def test_whole_pickled_model_is_refused(tmp_path):
    path = tmp_path / "model.pth"
    _legacy_with(_Evil("x"), path)  # stands for any pickled object needing its class
    with pytest.raises(UserError, match="refused global"):
        read_weights(str(path))


# ------------------------------------------------------------------------------------------ mapping
def test_square_linear_is_transposed_by_layer_type():
    """fc7 is 4096×4096: only the layer type (Linear) and the file's convention decide the transpose."""
    src = build_backbone("alexnet")
    theirs = to_torch_names(own_numpy(src), "alexnet")
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4096, 4096)).astype(np.float32)  # (out, in), not symmetric
    theirs["classifier.4.weight"] = w
    dst = build_backbone("alexnet")
    state, info = map_weights(dst, WeightsFile("t.pth", theirs, "torch", "test"), "alexnet")
    np.testing.assert_array_equal(state["classifier.4.weight"], w.T)
    # the same names in Paddle's convention are taken as they are
    state, _ = map_weights(dst, WeightsFile("t.pdparams", {**own_numpy(src), "classifier.4.weight": w}, "paddle",
                                            "test"), "alexnet")
    np.testing.assert_array_equal(state["classifier.4.weight"], w)
    assert info["loaded"] == info["total"] == 14
    assert "dropped classifier.6.* (ImageNet classifier)" in info["summary"]
    assert info["summary"].startswith("alexnet: 14/14 tensors from t.pth (torchvision layout)")


def test_paddle_vision_alexnet_gives_paddle_vision_features(tmp_path):
    """paddle.vision AlexNet's downscale-in-infer dropout: our relu(fc7) in eval equals its own."""
    from paddle.vision.models import alexnet

    paddle.seed(3)
    pv = alexnet(num_classes=1000)
    pv.eval()
    path = tmp_path / "AlexNet_pretrained.pdparams"
    paddle.save(pv.state_dict(), str(path))
    seen = {}
    pv._fc7.register_forward_post_hook(lambda layer, inp, out: seen.setdefault("fc7", out))
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with paddle.no_grad():
        pv(paddle.to_tensor(x))
    ref = paddle.nn.functional.relu(seen["fc7"]).numpy()
    ours = build_backbone("alexnet")
    info = load_backbone_weights(ours, str(path))
    assert info["layout"] == "paddle.vision layout" and info["loaded"] == 14
    assert "dropped _fc8.*" in info["summary"]
    got = features(ours, x)
    assert rel_err(got, ref) < 1e-5, rel_err(got, ref)


def test_torch_convention_resnet_roundtrip_features():
    """A torchvision-named resnet18 state dict (BN running_*, num_batches_tracked, fc) built from a
    paddle.vision model loads to the same features."""
    paddle.seed(5)
    src = build_backbone("resnet18")
    state = own_numpy(src)
    rng = np.random.default_rng(2)
    for k in state:  # randomise BN statistics, so a wrong mapping shows
        if k.endswith("_mean"):
            state[k] = rng.standard_normal(state[k].shape).astype(np.float32) * 0.1
        if k.endswith("_variance"):
            state[k] = rng.uniform(0.5, 2.0, state[k].shape).astype(np.float32)
    src.set_state_dict(state)
    dst = build_backbone("resnet18")
    new, info = map_weights(dst, WeightsFile("r.pth", to_torch_names(state, "resnet18"), "torch", "test"), "resnet18")
    dst.set_state_dict(new)
    x = rng.standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(features(dst, x), features(src, x), rtol=1e-5, atol=1e-6)
    assert info["loaded"] == info["total"] == 100 and "dropped fc.*" in info["summary"]


@pytest.mark.parametrize("wrap", ["module", "state_dict+module", "model+backbone", "base_model"])
def test_nested_and_prefixed_state_dicts(tmp_path, wrap):
    state = to_torch_names(own_numpy(build_backbone("resnet18")), "resnet18")
    if wrap == "module":
        obj = {"module." + k: v for k, v in state.items()}
    elif wrap == "state_dict+module":
        obj = {"state_dict": {"module." + k: v for k, v in state.items()}, "epoch": 4}
    elif wrap == "model+backbone":  # as the reference repositories save whole hashing models
        obj = {"model": {**{"backbone." + k: v for k, v in state.items()},
                         "hash_fc.weight": np.zeros((64, 512), np.float32)}}
    else:
        obj = {"base_model." + k: v for k, v in state.items()}
    path = tmp_path / "w.pth"
    path.write_bytes(pickle.dumps(obj))
    info = load_backbone_weights(build_backbone("resnet18"), str(path))
    assert info["loaded"] == 100, info["summary"]
    if wrap == "model+backbone":
        assert "ignored 1 tensors" in info["summary"]


def test_our_checkpoint_as_backbone_weights(tmp_path):
    """A training checkpoint of this project (a nested dict with the RNG state) gives its backbone."""
    from models import build_model

    model = build_model({"method": "hashnet", "backbone": "resnet18", "bit": 16, "num_labels": 10})
    path = tmp_path / "best.pdparams"
    paddle.save({"format": "x", "model": model.state_dict(), "rng": {"paddle": paddle.get_rng_state()}}, str(path))
    info = load_backbone_weights(build_backbone("resnet18"), str(path))
    assert info["loaded"] == 100 and info["prefix"] == "backbone."
    assert "ignored 2 tensors" in info["summary"]  # the hash layer


def _paddleclas_resnet_names(depth_blocks, bottleneck=True, first_short=True):
    """PaddleClas legendary ResNet (vb) parameter names and shapes, from its resnet.py."""
    names = {}

    def convbn(prefix, cin, cout, k):
        names[f"{prefix}.conv.weight"] = (cout, cin, k, k)
        for leaf in ("weight", "bias", "_mean", "_variance"):
            names[f"{prefix}.bn.{leaf}"] = (cout,)

    convbn("stem.0", 3, 64, 7)
    k, cin = 0, 64
    for s, n in enumerate(depth_blocks):
        width = 64 * 2 ** s
        for i in range(n):
            cout = width * 4 if bottleneck else width
            if bottleneck:
                convbn(f"blocks.{k}.conv0", cin, width, 1)
                convbn(f"blocks.{k}.conv1", width, width, 3)
                convbn(f"blocks.{k}.conv2", width, cout, 1)
            else:
                convbn(f"blocks.{k}.conv0", cin, width, 3)
                convbn(f"blocks.{k}.conv1", width, width, 3)
            if i == 0 and (first_short or s > 0):
                convbn(f"blocks.{k}.short", cin, cout, 1)
            cin, k = cout, k + 1
    names["fc.weight"] = (cin, 1000)
    names["fc.bias"] = (1000,)
    return names


def test_paddleclas_resnet50_names_fill_every_parameter():
    names = _paddleclas_resnet_names((3, 4, 6, 3))
    tensors = {k: np.zeros(v, np.float32) for k, v in names.items()}
    state, info = map_weights(build_backbone("resnet50"), WeightsFile("ResNet50_pretrained.pdparams", tensors,
                                                                      "paddle", "test"), "resnet50")
    assert info["layout"] == "PaddleClas layout" and info["loaded"] == info["total"] == 265
    assert "dropped fc.*" in info["summary"]


def test_paddleclas_resnet18_and_vd_are_refused():
    names = _paddleclas_resnet_names((2, 2, 2, 2), bottleneck=False)
    tensors = {k: np.zeros(v, np.float32) for k, v in names.items()}
    with pytest.raises(UserError, match="first block has a shortcut conv"):
        map_weights(build_backbone("resnet18"), WeightsFile("r18.pdparams", tensors, "paddle", "t"), "resnet18")
    names = _paddleclas_resnet_names((3, 4, 6, 3))
    names["stem.1.conv.weight"] = (32, 32, 3, 3)
    tensors = {k: np.zeros(v, np.float32) for k, v in names.items()}
    with pytest.raises(UserError, match="'vd' file"):
        map_weights(build_backbone("resnet50"), WeightsFile("r50vd.pdparams", tensors, "paddle", "t"), "resnet50")


def test_wrong_backbone_and_foreign_names():
    state = to_torch_names(own_numpy(build_backbone("resnet18")), "resnet18")
    with pytest.raises(UserError, match=r"has shape .* but resnet50 needs .*right --backbone"):
        map_weights(build_backbone("resnet50"), WeightsFile("r18.pth", state, "torch", "t"), "resnet50")
    with pytest.raises(UserError, match="no tensor matches backbone alexnet"):
        map_weights(build_backbone("alexnet"), WeightsFile("r18.pth", state, "torch", "t"), "alexnet")


# ------------------------------------------------------------------------ strict, partial, the script
@pytest.fixture(scope="module")
def alexnet_pdparams(tmp_path_factory):
    """A paddle.vision-layout AlexNet file, and one with a tensor removed."""
    from paddle.vision.models import alexnet

    base = tmp_path_factory.mktemp("weights")
    state = alexnet(num_classes=1000).state_dict()
    full, short = base / "AlexNet_pretrained.pdparams", base / "short.pdparams"
    paddle.save(state, str(full))
    paddle.save({k: v for k, v in state.items() if k != "_conv3.weight"}, str(short))
    return full, short


def test_strict_refuses_one_missing_tensor(alexnet_pdparams, tmp_path):
    _, short = alexnet_pdparams
    proc = run_cli(["scripts/convert_weights.py", short, tmp_path / "a.pdparams", "--backbone", "alexnet"], check=False)
    assert_one_line_error(proc, "short.pdparams", "1 of 14 alexnet parameters", "features.6.weight",
                          "--allow-partial-weights")
    assert not (tmp_path / "a.pdparams").exists()
    info = load_backbone_weights(build_backbone("alexnet"), str(short), allow_partial=True)
    assert info["missing"] == ["features.6.weight"] and "1 parameters left random" in info["summary"]


def test_convert_script_roundtrip(alexnet_pdparams, tmp_path):
    full, _ = alexnet_pdparams
    out = tmp_path / "alexnet_imagenet.pdparams"
    proc = run_cli(["scripts/convert_weights.py", full, out, "--backbone", "alexnet"])
    assert "alexnet: 14/14 tensors from AlexNet_pretrained.pdparams (paddle.vision layout)" in proc.stdout
    a, b = build_backbone("alexnet"), build_backbone("alexnet")
    load_backbone_weights(a, str(full))
    info = load_backbone_weights(b, str(out))
    assert info["layout"] == "this project's layout"
    for k, v in own_numpy(a).items():
        np.testing.assert_array_equal(own_numpy(b)[k], v)
    again = run_cli(["scripts/convert_weights.py", full, out, "--backbone", "alexnet"], check=False)
    assert_one_line_error(again, "exists", "--force")


def test_training_with_backbone_weights_logs_the_summary(lite_single, alexnet_pdparams, tmp_path):
    from tests.helpers import lite_flags

    full, short = alexnet_pdparams
    out = tmp_path / "run"
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", out), "--backbone-weights", full])
    log = (out / "train.log").read_text()
    assert "alexnet: 14/14 tensors from AlexNet_pretrained.pdparams (paddle.vision layout)" in log
    proc = run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", tmp_path / "r2"),
                    "--backbone-weights", short], check=False)
    assert_one_line_error(proc, "1 of 14 alexnet parameters")


# ------------------------------------------------------------------------------ against torchvision
def _torch():
    try:
        import torch as t
        import torchvision as tv
    except Exception as exc:  # noqa: BLE001 - any import failure means: not available here
        pytest.skip(f"torch/torchvision not importable ({type(exc).__name__}); the comparison with torchvision "
                    "runs where they are installed")
    return t, tv


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["alexnet", "vgg16", "resnet18", "resnet50"])
@pytest.mark.parametrize("fmt", ["zip", "legacy"])
def test_features_equal_torchvision(arch, fmt, tmp_path):
    t, tv = _torch()
    if fmt == "legacy" and arch in ("vgg16", "resnet50"):
        pytest.skip("legacy format checked on the smaller backbones")
    t.manual_seed(0)
    net = getattr(tv.models, arch)(weights=None)
    with t.no_grad():
        for m in net.modules():
            if isinstance(m, t.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.2)
    net.eval()
    path = tmp_path / f"{arch}.pth"
    t.save(net.state_dict(), path, _use_new_zipfile_serialization=(fmt == "zip"))
    x = np.random.default_rng(0).standard_normal((2, 3, 224, 224)).astype(np.float32)
    with t.no_grad():
        if arch.startswith("resnet"):
            net.fc = t.nn.Identity()
            ref = net(t.from_numpy(x)).numpy()
        else:
            h = t.flatten(net.avgpool(net.features(t.from_numpy(x))), 1)
            upto = 6 if arch == "alexnet" else 5  # [drop, fc6, relu, drop, fc7, relu] / [fc6, relu, drop, fc7, relu]
            ref = net.classifier[:upto](h).numpy()  # up to relu(fc7)
    ours = build_backbone(arch)
    info = load_backbone_weights(ours, str(path))
    assert info["loaded"] == info["total"] and info["layout"] == "torchvision layout"
    err = rel_err(features(ours, x), ref)
    print(f"{arch} ({fmt}): max relative error vs torchvision {err:.2e}")
    assert err < 1e-4
