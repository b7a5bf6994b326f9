"""Vision transformers (models/vit.py, models/vit_weights.py) against the libraries they follow.

Without torch: tiny models of each architecture with seeded random weights, saved and run by the real
torchvision / timm / DINOv2-in-timm / open_clip (tests/fixtures/vit, made by make_vit_fixtures.py there),
loaded through the safe reader; our features must equal the library's. timm's `resample_abs_pos_embed`
outputs pin the position-embedding resampling.
With a torch Python (env DEEPHASH_TORCH_PYTHON, e.g. a venv with torch, torchvision, timm, open_clip_torch):
the full-size backbones at 224 px, weights and features made by that Python into a temporary folder.
"""
import json
import os
import subprocess
import zipfile

import numpy as np
import paddle
import pytest
from PIL import Image

from models import build_backbone, load_backbone_weights
from models.backbones import backbone_preprocess
from models.vit import VIT_BACKBONES, VisionTransformer, grid_resample_matrix, resample_pos_embed
from tests.helpers import ROOT, backbone_features, rel_err
from utils.data.transforms import Preprocess
from utils.errors import UserError
from utils.weight_files import read_weights

FIX = os.path.join(ROOT, "tests", "fixtures", "vit")
CASES = json.load(open(os.path.join(FIX, "cases.json")))
TORCH_PYTHON = os.environ.get("DEEPHASH_TORCH_PYTHON")


features = backbone_features


def assert_same_features(ours, ref, what):
    """Each input's features and the difference of the two (an output blind to its input cannot pass)."""
    assert ours.shape == ref.shape, what
    for i in range(len(ref)):
        assert rel_err(ours[i], ref[i]) <= 1e-4, f"{what}: input {i} relative error {rel_err(ours[i], ref[i]):.2e}"
    diff_ref = ref[0] - ref[1]
    assert np.abs(diff_ref).max() > 0.05 * np.abs(ref).max(), f"{what}: the reference barely depends on its input"
    err = rel_err(ours[0] - ours[1], diff_ref)
    assert err <= 1e-4, f"{what}: difference of the two inputs, relative error {err:.2e}"
    return max(rel_err(ours, ref), err)


def tiny(case):
    net = VisionTransformer(**case["config"])
    net.arch = case["arch"]  # picks the layouts of the full-size backbone
    return net


# ------------------------------------------------------------------------------- tiny fixtures
@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_tiny_features_equal_the_library(case):
    net = tiny(case)
    info = load_backbone_weights(net, os.path.join(FIX, case["file"]))
    assert info["loaded"] == info["total"] and not info["missing"]
    expect = {"torchvision": "torchvision layout", "timm": "timm layout", "dinov2": "DINOv2 layout",
              "open_clip": "open_clip layout"}[case["kind"]]
    assert info["layout"] == expect and expect in info["summary"]
    ours = features(net, np.load(os.path.join(FIX, "inputs.npy")))
    assert_same_features(ours, np.load(os.path.join(FIX, case["features"])), case["name"])


def test_summary_says_what_was_dropped_resampled_and_which_activation():
    by = {c["name"]: c for c in CASES}
    info = load_backbone_weights(tiny(by["open_clip_quickgelu"]), os.path.join(FIX, by["open_clip_quickgelu"]["file"]))
    assert "(CLIP text tower)" in info["summary"] and "QuickGELU" in info["summary"]
    assert all(not k.startswith("visual.") for k in info["dropped"]) and "text_projection" in info["dropped"]
    info = load_backbone_weights(tiny(by["open_clip_gelu"]), os.path.join(FIX, by["open_clip_gelu"]["file"]))
    assert "activation GELU" in info["summary"]
    info = load_backbone_weights(tiny(by["dinov2"]), os.path.join(FIX, by["dinov2"]["file"]))
    assert info["dropped"] == ["mask_token"] and "pos_embed resampled from 7x7 to 4x4" in info["summary"]


def test_resampling_equals_timm_resample_abs_pos_embed():
    """DINOv2's 518 px grid (1 + 37x37) to 224 px (16x16), and an upsampling (7x7 to 9x9)."""
    r = np.load(os.path.join(FIX, "resample.npz"))
    for src, ref, side in (("big", "big_to_16", 16), ("small", "small_to_9", 9)):
        got = resample_pos_embed(r[src], (side, side))
        assert got.shape == r[ref].shape
        assert rel_err(got, r[ref]) < 1e-5, (src, rel_err(got, r[ref]))
    np.testing.assert_array_equal(resample_pos_embed(r["small"], (7, 7)), r["small"])  # same grid: untouched


def test_resample_matrix_is_bicubic_on_a_plain_formula():
    """Upsampling without antialias at the grid's interior: Keys' cubic (a = -0.75) at the half-pixel
    source coordinate, written out here; rows of every resampling sum to 1 (a constant stays constant)."""
    from models.vit import resample_matrix

    def keys(t, a=-0.75):
        t = abs(t)
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1 if t < 1 else (a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
                                                                      if t < 2 else 0.0)

    m = resample_matrix(4, 8, antialias=False)
    src = (3 + 0.5) * 4 / 8 - 0.5  # output 3 → source 1.25
    expect = np.zeros(4)
    for j in range(4):
        expect[j] = keys(src - j)
    np.testing.assert_allclose(m[3], expect, atol=1e-12)
    for aa in (True, False):
        for n_in, n_out in ((37, 16), (7, 9), (14, 4)):
            np.testing.assert_allclose(resample_matrix(n_in, n_out, aa).sum(1), 1.0, atol=1e-12)


def test_in_graph_resampling_equals_load_time_resampling():
    """A 224-px backbone run on 64-px images (4x4 patches) equals the same weights with pos_embed
    resampled by numpy to 4x4 and built for 64 px: the two paths share one function."""
    paddle.seed(0)
    net = VIT_BACKBONES["vit_s_16"]()
    small = VisionTransformer(img_size=64, patch_size=16, width=384, heads=6)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    state["pos_embed"] = resample_pos_embed(state["pos_embed"], (4, 4))
    small.set_state_dict(state)
    x = np.random.default_rng(1).standard_normal((2, 3, 64, 64)).astype(np.float32)
    np.testing.assert_allclose(features(net, x), features(small, x), rtol=1e-4, atol=1e-5)
    assert grid_resample_matrix((14, 14), (4, 4)).shape == (16, 196)


def test_every_registered_vit_builds_and_runs_on_lite_images():
    """56 and 64 px (the lite data) through each architecture: right feature width, finite."""
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    for name in ("vit_s_16", "dinov2_vits14", "clip_vit_b32"):
        net = build_backbone(name)
        for size in (56, 64):
            out = features(net, x[:, :, :size, :size])
            assert out.shape == (1, net.out_dim) and np.isfinite(out).all(), (name, size)
    assert {n: VIT_BACKBONES[n]().out_dim for n in ("vit_b_16", "vit_s_16", "dinov2_vits14", "clip_vit_b32")} == \
        {"vit_b_16": 768, "vit_s_16": 384, "dinov2_vits14": 384, "clip_vit_b32": 512}


# ------------------------------------------------------------------------------- refusals
def test_strict_and_partial_loading(tmp_path):
    case = next(c for c in CASES if c["name"] == "torchvision_vit")
    from safetensors.numpy import save_file

    tensors = dict(read_weights(os.path.join(FIX, case["file"])).tensors)
    del tensors["encoder.layers.encoder_layer_1.mlp.3.weight"]
    path = tmp_path / "vit_b_16_partial.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(UserError, match=r"1 of 30 vit_b_16 parameters are not in the file .*blocks\.1\.mlp\.fc2\.weight"
                                        r".*--allow-partial-weights"):
        load_backbone_weights(tiny(case), str(path))
    info = load_backbone_weights(tiny(case), str(path), allow_partial=True)
    assert info["missing"] == ["blocks.1.mlp.fc2.weight"] and "1 parameters left random" in info["summary"]


def test_torchscript_archive_is_refused_naming_the_open_clip_file():
    path = os.path.join(FIX, "torchscript_tiny.pt")
    assert zipfile.is_zipfile(path)
    with pytest.raises(UserError) as exc:
        read_weights(path)
    assert "\n" not in str(exc.value) and str(exc.value).startswith(f"--backbone-weights {path}: a TorchScript")
    assert "TorchScript archive" in str(exc.value) and "open_clip_pytorch_model.bin" in str(exc.value)


def test_openai_clip_weights_need_quickgelu(tmp_path):
    case = next(c for c in CASES if c["name"] == "open_clip_gelu")
    path = tmp_path / "ViT-B-32-openai_open_clip_model.safetensors"
    path.write_bytes(open(os.path.join(FIX, case["file"]), "rb").read())
    with pytest.raises(UserError, match=r"trained by OpenAI need QuickGELU: use --backbone clip_vit_b32_quickgelu"):
        load_backbone_weights(tiny(case), str(path))


def test_wrong_family_is_refused():
    case = next(c for c in CASES if c["name"] == "timm_vit")
    net = tiny(next(c for c in CASES if c["name"] == "open_clip_gelu"))
    with pytest.raises(UserError, match=r"3 of 20 clip_vit_b32 parameters are not in the file \(first: proj, norm_pre"):
        load_backbone_weights(net, os.path.join(FIX, case["file"]))  # timm's names are ours; CLIP's extra layers
    net.arch = "vit_b_16"
    with pytest.raises(UserError, match="no tensor matches backbone vit_b_16"):
        load_backbone_weights(net, os.path.join(FIX, next(c for c in CASES if c["name"] == "open_clip_gelu")["file"]))


# ------------------------------------------------------------------------------- preprocessing
def test_backbones_declare_their_preprocessing_and_the_cfg_records_it():
    from utils.train.config import build_parser, resolve

    clip = resolve(build_parser("t").parse_args(["--backbone", "clip_vit_b32", "--dataset", "lite_single"]))
    assert clip["mean"] == (0.48145466, 0.4578275, 0.40821073) and clip["interpolation"] == "bicubic"
    assert resolve(build_parser("t").parse_args(["--backbone", "vit_s_16"]))["mean"] == (0.5, 0.5, 0.5)
    dino = resolve(build_parser("t").parse_args(["--backbone", "dinov2_vits14"]))
    assert dino["mean"] == (0.485, 0.456, 0.406) and dino["interpolation"] == "bicubic"
    old = resolve(build_parser("t").parse_args(["--backbone", "resnet18"]))
    assert backbone_preprocess("resnet18") == {} and "mean" not in old and "interpolation" not in old
    assert Preprocess.from_dict(old) == Preprocess(resize_size=old["resize_size"], crop_size=old["crop_size"])


def test_preprocess_applies_the_backbones_mean_std_and_filter():
    """CLIP's transform against PIL + a numpy formula: shorter side to 72 bicubic, centre 64, CLIP mean/std."""
    cfg = dict(resize_size=72, crop_size=64, **backbone_preprocess("clip_vit_b32"))
    pre = Preprocess.from_dict(cfg)
    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8))
    resized = img.resize((96, 72), Image.BICUBIC)
    arr = np.asarray(resized.crop((16, 4, 80, 68)), np.float32) / 255.0
    mean, std = np.array(cfg["mean"], np.float32), np.array(cfg["std"], np.float32)
    np.testing.assert_allclose(pre(img), ((arr - mean) / std).transpose(2, 0, 1), atol=1e-6)
    assert not np.allclose(pre(img), Preprocess(resize_size=72, crop_size=64)(img), atol=1e-2)
    assert Preprocess.from_dict(pre.to_dict()) == pre and pre.to_dict()["interpolation"] == "bicubic"
    with pytest.raises(ValueError, match="unknown interpolation 'nearest'"):
        Preprocess(interpolation="nearest")


# ------------------------------------------------------------------------------- full size, with torch
@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    if not TORCH_PYTHON or not os.path.isfile(TORCH_PYTHON):
        pytest.skip("set DEEPHASH_TORCH_PYTHON to a Python with torch, torchvision, timm and open_clip_torch for the "
                    "full-size comparisons (the tiny fixtures cover the architectures without it)")
    out = tmp_path_factory.mktemp("vit_full")
    subprocess.run([TORCH_PYTHON, os.path.join(FIX, "make_vit_fixtures.py"), "full", str(out), *FULL], check=True,
                   cwd=ROOT, timeout=1800, env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    return out


FULL = ["vit_b_16", "vit_s_16", "dinov2_vits14", "clip_vit_b32", "dinov2_vitb14", "clip_vit_b16"]


@pytest.mark.slow
@pytest.mark.parametrize("name", FULL)
def test_full_size_features_equal_the_library(full_size, name):
    case = next(c for c in json.load(open(full_size / "cases.json")) if c["name"] == name)
    net = build_backbone(case["arch"])
    info = load_backbone_weights(net, str(full_size / case["file"]))
    assert info["loaded"] == info["total"]
    ours = features(net, np.load(full_size / "inputs.npy"))
    err = assert_same_features(ours, np.load(full_size / case["features"]), name)
    print(f"{name}: {info['summary']}; max relative error vs the library at 224 px {err:.2e}")
    os.remove(full_size / case["file"])  # hundreds of MB each


# ------------------------------------------------------------------------------- deployment
@pytest.mark.slow
def test_vit_hash_models_export_with_codes_identical_to_dygraph(lite_single, tmp_path):
    """train → export (static Paddle + ONNX, 64 px: the in-graph position-embedding resampling) → infer.py
    → predict.py for vit_s_16 and clip_vit_b32; the backbone's preprocessing reaches inference.yml, and
    infer.py's ONNX codes (preprocessed from that file) equal dygraph's on the test images."""
    from tests.helpers import check_pipeline, pipeline_steps, run_pipelines
    from utils.deploy import DygraphEncoder, encode_images, read_inference_yml

    for name in ("vit_s_16", "clip_vit_b32"):
        step = pipeline_steps(lite_single, "hashnet", tmp_path / name, extra=["--backbone", name])
        out = run_pipelines([step])["hashnet"]
        check_pipeline(step, out)  # Paddle Inference and ONNX: identical code bits 100.00%
        inf = tmp_path / name / "inf"
        meta = read_inference_yml(inf)
        declared = backbone_preprocess(name)
        assert meta["preprocess_obj"].mean == declared["mean"] and meta["preprocess_obj"].interpolation == "bicubic"
        paths = sorted(os.path.join(step["img_dir"], f) for f in os.listdir(step["img_dir"]))
        dygraph = DygraphEncoder(os.path.join(step["run"], "best.pdparams"))
        assert dygraph.preprocess == meta["preprocess_obj"]
        raw, _ = encode_images(dygraph, paths, dygraph.preprocess, 16)
        np.testing.assert_array_equal(np.load(step["codes"]) > 0, raw > 0, err_msg=name)


def test_fixtures_are_small():
    total = sum(os.path.getsize(os.path.join(FIX, f)) for f in os.listdir(FIX))
    assert total < 700 << 10, f"tests/fixtures/vit holds {total} bytes"
