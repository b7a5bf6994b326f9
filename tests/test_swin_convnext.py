"""Swin-T and ConvNeXt-T backbones (models/swin.py, models/convnext.py) against torchvision itself.

Without torch: tiny torchvision configurations with seeded random weights, saved by real `torch.save`,
and torchvision's own features for them (tests/fixtures/swin_convnext, made by make_fixtures.py there),
at a window-multiple size and at one that needs padding and odd patch merging. With a python that has
torch and torchvision (`TORCH_PYTHON`, or this interpreter): the full-size swin_t / convnext_tiny at
224 and 64 px, references made by that python in a temporary directory. Also: stochastic depth, strict
and partial loading, and static Paddle / ONNX export of hash models with the bits of dygraph.
"""
import json
import os
import subprocess
import sys
from importlib.util import find_spec

import numpy as np
import paddle
import pytest

from models import build_backbone, build_model, load_backbone_weights
from models.convnext import CNBlockConfig, ConvNeXt
from models.stochastic_depth import StochasticDepth
from models.swin import SwinTransformer, relative_position_index, shifted_window_mask
from models.weights import map_weights
from tests.helpers import ROOT, backbone_features, lite_flags, rel_err, run_cli
from utils.errors import UserError
from utils.weight_files import WeightsFile, read_weights

FIX = os.path.join(ROOT, "tests", "fixtures", "swin_convnext")
# the configurations of make_fixtures.py (SWIN_TINY, CONVNEXT_TINY), built with our classes
TINY = {
    "swin": lambda: SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[2, 2, 2], num_heads=[1, 2, 2],
                                    window_size=[4, 4], mlp_ratio=2.0),
    "convnext": lambda: ConvNeXt([CNBlockConfig(8, 16, 2), CNBlockConfig(16, None, 2)], layer_scale=0.5),
}
ARCH = {"swin": "swin_t", "convnext": "convnext_tiny"}  # the layouts the tiny files are read with
FILE = {"swin": "swin_tiny", "convnext": "convnext_tiny"}


features = backbone_features


def assert_matches(got, ref, what):
    """Equal to torchvision's features, and so is the difference of the two images (an output that
    ignores its input cannot pass)."""
    assert got.shape == ref.shape, what
    err, err_diff = rel_err(got, ref), rel_err(got[0] - got[1], ref[0] - ref[1])
    print(f"{what}: relative error {err:.2e}, of the two images' difference {err_diff:.2e}")
    assert err <= 1e-4 and err_diff <= 1e-4, (what, err, err_diff)
    assert rel_err(ref[0], ref[1]) > 1e-2  # the two images do give different features


# ------------------------------------------------------------------------------ tiny torchvision files
@pytest.mark.parametrize("kind", ["swin", "convnext"])
def test_tiny_configuration_equals_torchvision(kind):
    net = TINY[kind]()
    info = load_backbone_weights(net, os.path.join(FIX, FILE[kind] + ".pth"), name=ARCH[kind])
    n = len(net.state_dict())
    classifier = "head" if kind == "swin" else "classifier.2"
    assert info["summary"] == (f"{ARCH[kind]}: {n}/{n} tensors from {FILE[kind]}.pth (torchvision layout); "
                               f"dropped {classifier}.* (ImageNet classifier)")
    for size in (32, 44):  # 44 px: an 11×11 map, padded to the 4×4 windows; PatchMerging pads 11 → 12
        x = np.load(os.path.join(FIX, f"inputs_{size}.npy"))
        assert_matches(features(net, x), np.load(os.path.join(FIX, f"{FILE[kind]}_{size}.npy")), f"{kind} {size} px")


def test_tiny_fixtures_are_small():
    total = sum(os.path.getsize(os.path.join(FIX, f)) for f in os.listdir(FIX))
    assert total < 1 << 20, total


def test_file_tensors_need_their_layer_treatment():
    """The file stores Linear weights (out, in); the loader transposes them by layer type — a square
    proj weight included — and takes the bias table, its index and the layer scale as they are."""
    w = read_weights(os.path.join(FIX, "swin_tiny.pth"))
    net = TINY["swin"]()
    state, _ = map_weights(net, w, "swin_t")
    key = "features.1.0.attn.proj.weight"  # 8×8: its shape cannot tell the orientation
    np.testing.assert_array_equal(state[key], w.tensors[key].T)
    np.testing.assert_array_equal(state["features.1.0.attn.relative_position_index"],
                                  relative_position_index([4, 4]))
    np.testing.assert_array_equal(state["features.1.0.attn.relative_position_bias_table"],
                                  w.tensors["features.1.0.attn.relative_position_bias_table"])
    c = read_weights(os.path.join(FIX, "convnext_tiny.pth"))
    state, _ = map_weights(TINY["convnext"](), c, "convnext_tiny")
    np.testing.assert_array_equal(state["features.1.0.layer_scale"], c.tensors["features.1.0.layer_scale"])
    assert state["features.1.0.layer_scale"].shape == (8, 1, 1)


def test_shifted_window_mask_separates_the_regions():
    """Plain check of the mask: with an 8×8 map, 4×4 windows shifted by 2, the last window mixes four
    regions (tokens of different regions −100 apart), the first window one region."""
    mask = shifted_window_mask(8, 8, [4, 4], [2, 2])
    assert mask.shape == (4, 16, 16)
    assert not mask[0].any()
    rows, cols = np.divmod(np.arange(16), 4)
    region = (rows >= 2) * 2 + (cols >= 2)  # inside the last window: which quarter
    np.testing.assert_array_equal(mask[3], np.where(region[:, None] == region[None, :], 0.0, -100.0))


def test_strict_and_partial_loading():
    w = read_weights(os.path.join(FIX, "swin_tiny.pth"))
    short = {k: v for k, v in w.tensors.items() if k != "features.3.1.attn.relative_position_bias_table"}
    n = len(TINY["swin"]().state_dict())
    with pytest.raises(UserError, match=rf"1 of {n} swin_t parameters are not in the file.*--allow-partial-weights"):
        map_weights(TINY["swin"](), WeightsFile(w.path, short, "torch", w.kind), "swin_t")
    _, info = map_weights(TINY["swin"](), WeightsFile(w.path, short, "torch", w.kind), "swin_t", allow_partial=True)
    assert info["missing"] == ["features.3.1.attn.relative_position_bias_table"]
    assert "1 parameters left random" in info["summary"]
    with pytest.raises(UserError, match="no tensor matches backbone swin_t.*right --backbone"):
        map_weights(build_backbone("swin_t"), w, "swin_t")  # tiny file, full-size backbone


# ----------------------------------------------------------------------------------- stochastic depth
def test_stochastic_depth_rows_and_eval():
    layer = StochasticDepth(0.5)
    x = paddle.ones([64, 3, 2, 2])
    layer.eval()
    np.testing.assert_array_equal(layer(x).numpy(), x.numpy())
    layer.train()
    paddle.seed(0)
    out = layer(x).numpy().reshape(64, -1)
    per_row = out[:, 0]
    assert set(np.unique(per_row)) == {0.0, 2.0}  # a row is dropped or kept and scaled by 1/(1 − p)
    assert (out == per_row[:, None]).all()
    assert 16 <= (per_row == 2.0).sum() <= 48


@pytest.mark.parametrize("kind", ["swin", "convnext"])
def test_train_mode_differs_only_by_drop_path(kind):
    """In training, without drop path the features are eval's (no other train-only behaviour); with it
    they change."""
    x = np.load(os.path.join(FIX, "inputs_32.npy"))
    net = TINY[kind]()
    load_backbone_weights(net, os.path.join(FIX, FILE[kind] + ".pth"), name=ARCH[kind])
    ref = features(net, x)
    for sd in net.sublayers():
        if isinstance(sd, StochasticDepth):
            sd.p = 0.0
    net.train()
    with paddle.no_grad():
        np.testing.assert_allclose(net(paddle.to_tensor(x)).numpy(), ref, rtol=1e-6, atol=1e-6)
        for sd in net.sublayers():
            if isinstance(sd, StochasticDepth):
                sd.p = 0.5
        paddle.seed(1)
        assert rel_err(net(paddle.to_tensor(x)).numpy(), ref) > 1e-3


@pytest.mark.parametrize("arch,rate,blocks", [("swin_t", 0.2, 12), ("convnext_tiny", 0.1, 18)])
def test_drop_path_rates_as_torchvision_builders(arch, rate, blocks):
    net = build_backbone(arch)
    probs = [m.p for m in net.sublayers() if isinstance(m, StochasticDepth)]  # one per block
    assert len(probs) == blocks
    np.testing.assert_allclose(probs, [rate * i / (blocks - 1) for i in range(blocks)], rtol=1e-12)
    assert net.out_dim == 768
    # --no-backbone-dropout turns stochastic depth off in training too
    model = build_model({"method": "hashnet", "backbone": arch, "bit": 16, "num_labels": 10,
                         "backbone_dropout": False})
    assert not [m for m in model.sublayers() if isinstance(m, paddle.nn.Dropout)]


def test_declared_preprocessing():
    for arch, interpolation, resize in (("swin_t", "bicubic", 232), ("convnext_tiny", "bilinear", 236)):
        cls = type(build_backbone(arch))
        p, sizes = cls.preprocess, cls.reference_sizes
        assert (p["interpolation"], sizes["resize_size"], sizes["crop_size"]) == (interpolation, resize, 224)
        assert set(p) == {"interpolation", "mean", "std"}  # sizes stay the data set's


# -------------------------------------------------------------------------------- full size, with torch
def _torch_python():
    env = os.environ.get("TORCH_PYTHON")
    if env:
        return env
    if find_spec("torch") and find_spec("torchvision"):
        return sys.executable
    pytest.skip("torch/torchvision not available (set TORCH_PYTHON to a python that has them); the "
                "tiny torchvision fixtures still check the architecture")


@pytest.fixture(scope="module")
def full_refs(tmp_path_factory):
    python = _torch_python()
    out = tmp_path_factory.mktemp("swin_convnext_full")
    subprocess.run([python, os.path.join(FIX, "make_fixtures.py"), "--full", str(out)], check=True,
                   capture_output=True, text=True, timeout=900)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["swin_t", "convnext_tiny"])
def test_full_size_equals_torchvision(arch, full_refs):
    net = build_backbone(arch)
    info = load_backbone_weights(net, str(full_refs / f"{arch}.pth"))
    assert info["loaded"] == info["total"] and info["layout"] == "torchvision layout"
    assert "(ImageNet classifier)" in info["summary"]
    for size in (224, 64, 56):  # the lite sizes: Swin-T pads its maps to the 7×7 windows, merges odd ones
        x = np.load(full_refs / f"inputs_{size}.npy")
        assert_matches(features(net, x), np.load(full_refs / f"{arch}_{size}.npy"), f"{arch} {size} px")
    theirs = json.loads((full_refs / "preprocess.json").read_text())[arch]
    ours, sizes = type(net).preprocess, type(net).reference_sizes
    assert [sizes["resize_size"]] == theirs["resize_size"] and [sizes["crop_size"]] == theirs["crop_size"]
    assert ours["interpolation"] == theirs["interpolation"]
    np.testing.assert_allclose(ours["mean"], theirs["mean"])
    np.testing.assert_allclose(ours["std"], theirs["std"])


# ---------------------------------------------------------------------------------------------- export
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["swin_t", "convnext_tiny"])
def test_export_static_paddle_and_onnx_bits_equal_dygraph(arch, lite_single, tmp_path):
    from utils.deploy import DygraphEncoder, encode_images
    from utils.deploy.runtimes import RUNTIMES

    run, inf = tmp_path / "run", tmp_path / "inf"
    run_cli(["main_single_gpu.py", *lite_flags(lite_single, "orthohash", run, extra=("--backbone", arch))])
    export = run_cli(["export_model.py", "--pretrained", run / "best.pdparams", "--output-dir", inf, "--onnx"])
    exact = [name for name, rt in RUNTIMES.items() if rt.exact]
    assert export.stdout.count("identical code bits 100.00%") == len(exact), export.stdout
    img_dir = os.path.join(lite_single["root"], "test")
    paths = sorted(os.path.join(img_dir, f) for f in os.listdir(img_dir))
    dy = DygraphEncoder(str(run / "best.pdparams"))
    raw, _ = encode_images(dy, paths, dy.preprocess, batch_size=5)
    ref = np.where(raw > 0, 1, -1).astype(np.int8)
    for backend in exact:
        npy = tmp_path / f"{backend}.npy"
        run_cli(["deploy/inference_python/infer.py", "--model-dir", inf, "--img", img_dir, "--backend", backend,
                 "--batch-size", 4, "--save-codes", npy])
        codes = np.load(npy)
        assert np.array_equal(codes, ref), f"{arch} {backend}: {np.mean(codes != ref):.4f} of bits differ"
