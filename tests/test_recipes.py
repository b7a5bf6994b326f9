"""Each method's recipe against its official code, with independent references written plainly in
numpy / PIL: optimizer updates, dropout policy, the CSQ head, hash-centre files, BatchNorm's running
variance, the transforms (pixel for pixel), and export → infer.py under every method's own transform."""
import math
import os

import numpy as np
import paddle
import pytest
from PIL import Image, ImageEnhance

from models import build_model
from models.codebook import hadamard_codebook, load_codebook_file
from models.heads import BatchNorm1D
from models.methods import METHODS, fill_legacy
from models.methods.csq import CSQHead
from models.methods.orthohash import OrthoHashLoss
from utils.data.transforms import Preprocess, random_resized_crop_box
from utils.errors import UserError
from utils.train.config import build_parser, format_recipe, resolve
from utils.train.optim import rmsprop
from tests.helpers import ROOT, lite_flags, run_cli

FIXTURES = os.path.join(ROOT, "tests", "fixtures", "codebooks")


def cfg_for(*flags):
    return resolve(build_parser("").parse_args([str(f) for f in flags]))


# ----------------------------------------------------------------------------------------- optimizers
GRADS = [np.array([1e-6, -2e-6, 3e-7], np.float32) * (k + 1) for k in range(6)]


def run_paddle(make_opt, lr_mult=1.0, grads=GRADS):
    """Apply `grads` (as d loss / d w) to w0 = [1, -0.5, 0.25] with a Paddle optimizer; the weights per step."""
    w = paddle.create_parameter([3], "float32", default_initializer=paddle.nn.initializer.Assign(
        np.array([1.0, -0.5, 0.25], np.float32)))
    w.optimize_attr["learning_rate"] = lr_mult
    opt = make_opt([w])
    out = []
    for g in grads:
        (w * paddle.to_tensor(g)).sum().backward()
        opt.step()
        opt.clear_grad()
        out.append(w.numpy().astype(np.float64))
    return np.array(out)


def torch_rmsprop(lr, wd, alpha=0.99, eps=1e-8):
    """torch.optim.RMSprop's documented update (no momentum, not centered), in float64."""
    w, v, out = np.array([1.0, -0.5, 0.25]), np.zeros(3), []
    for g in GRADS:
        g = g.astype(np.float64) + wd * w
        v = alpha * v + (1 - alpha) * g * g
        w = w - lr * g / (np.sqrt(v) + eps)
        out.append(w)
    return np.array(out)


def test_rmsprop_follows_pytorch_and_differs_from_paddles_builtin():
    lr, wd, mult = 1e-5, 1e-5, 0.5
    ours = run_paddle(lambda p: rmsprop("pytorch", lr, p, wd), mult)
    reference = torch_rmsprop(lr * mult, wd)
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-9)
    builtin = run_paddle(lambda p: rmsprop("paddle", lr, p, wd), mult)
    moved_ours = np.abs(ours[-1] - [1.0, -0.5, 0.25])
    moved_builtin = np.abs(builtin[-1] - [1.0, -0.5, 0.25])
    ratio = moved_ours / moved_builtin
    print(f"RMSProp, 6 steps of gradients ~1e-6 at lr {lr * mult:g}: PyTorch form moved the weights "
          f"{moved_ours}, Paddle's built-in {moved_builtin} (ratio {ratio})")
    assert (ratio > 10).all()


def test_momentum_and_adam_equal_pytorch_sgd_and_adam():
    lr, wd, grads = 1e-2, 5e-4, [g * 1e5 for g in GRADS]
    w, buf, sgd = np.array([1.0, -0.5, 0.25]), None, []
    for g in grads:  # torch.optim.SGD(momentum=0.9, weight_decay): buf = g on the first step
        g = g.astype(np.float64) + wd * w
        buf = g if buf is None else 0.9 * buf + g
        w = w - lr * buf
        sgd.append(w)
    ours = run_paddle(lambda p: paddle.optimizer.Momentum(lr, momentum=0.9, parameters=p, weight_decay=wd),
                      grads=grads)
    np.testing.assert_allclose(ours, np.array(sgd), rtol=1e-5)
    w, m, v, adam = np.array([1.0, -0.5, 0.25]), np.zeros(3), np.zeros(3), []
    for t, g in enumerate(grads, start=1):  # torch.optim.Adam (L2 weight decay added to the gradient)
        g = g.astype(np.float64) + wd * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        adam.append(w)
    ours = run_paddle(lambda p: paddle.optimizer.Adam(lr, parameters=p, weight_decay=wd), grads=grads)
    np.testing.assert_allclose(ours, np.array(adam), rtol=1e-5)


# ----------------------------------------------------------------------------------------- models
def small_cfg(method, **kw):
    cfg = cfg_for("--method", method, "--dataset", "custom", "--bit", 16, *kw.pop("flags", ()))
    cfg.update({"num_labels": 5, **kw})
    return cfg


def test_relahash_backbone_has_no_dropout_in_training_and_orthohash_has():
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((4, 3, 64, 64)).astype(np.float32))
    paddle.seed(0)
    rela = build_model(small_cfg("relahash"))
    rela.train()
    assert not [m for m in rela.backbone.sublayers() if isinstance(m, paddle.nn.Dropout)]
    np.testing.assert_array_equal(rela.backbone(x).numpy(), rela.backbone(x).numpy())
    ortho = build_model(small_cfg("orthohash"))  # dropout on: two training passes differ
    ortho.train()
    assert len([m for m in ortho.backbone.sublayers() if isinstance(m, paddle.nn.Dropout)]) == 2
    assert not np.array_equal(ortho.backbone(x).numpy(), ortho.backbone(x).numpy())


def test_csq_head_is_the_official_mlp():
    head = build_model(small_cfg("csq")).head
    linears = [m for m in head.sublayers() if isinstance(m, paddle.nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(4096, 4096), (4096, 4096), (4096, 16)]
    kinds = [type(m).__name__ for m in head.mlp]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    bound = 1 / math.sqrt(4096)  # PyTorch's default Linear init
    assert all(np.abs(m.weight.numpy()).max() <= bound and np.abs(m.bias.numpy()).max() <= bound for m in linears)
    resnet = CSQHead(2048, 64, np.ones((3, 64)), dropout=0.5)  # network.py Model: dropout after the first ReLU
    assert [type(m).__name__ for m in resnet.mlp] == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    assert cfg_for("--method", "csq", "--backbone", "resnet50")["head_dropout"] == 0.5


def test_batchnorm_running_variance_is_pytorchs_unbiased_update():
    x = np.random.default_rng(1).standard_normal((3, 8, 4)).astype(np.float32) * 2 + 1
    for unbiased in (True, False):
        bn = BatchNorm1D(4, momentum=0.9, unbiased=unbiased)
        bn.train()
        mean, var = np.zeros(4), np.ones(4)
        for batch in x:
            out = bn(paddle.to_tensor(batch)).numpy()
            mu, v = batch.mean(0), batch.var(0)
            np.testing.assert_allclose(out, (batch - mu) / np.sqrt(v + 1e-5), rtol=1e-4, atol=1e-5)
            mean = 0.9 * mean + 0.1 * mu
            var = 0.9 * var + 0.1 * (batch.var(0, ddof=1) if unbiased else v)
        np.testing.assert_allclose(bn._mean.numpy(), mean, rtol=1e-5)
        np.testing.assert_allclose(bn._variance.numpy(), var, rtol=1e-5)


# ----------------------------------------------------------------------------------------- codebooks
def test_official_csq_centre_file_loads_without_torch():
    cb = load_codebook_file(os.path.join(FIXTURES, "16_nus_wide_21_class.pkl"), 21, 16)
    assert cb.shape == (21, 16) and set(np.unique(cb)) == {-1.0, 1.0}
    model = build_model(small_cfg("csq", num_labels=21, codebook=os.path.join(FIXTURES, "16_nus_wide_21_class.pkl")))
    np.testing.assert_array_equal(model.head.codebook.numpy(), cb)


def test_npy_centres_and_malformed_files(tmp_path):
    good = np.where(np.random.default_rng(0).random((5, 16)) < 0.5, -1, 1).astype(np.float32)
    np.save(tmp_path / "c.npy", good)
    np.testing.assert_array_equal(load_codebook_file(str(tmp_path / "c.npy"), 5, 16), good)
    np.save(tmp_path / "01.npy", (good > 0).astype(np.int64))  # 0/1 centres read as ±1
    np.testing.assert_array_equal(load_codebook_file(str(tmp_path / "01.npy"), 5, 16), good)
    cases = {"shape": (np.ones((4, 16)), "shape (4, 16)"), "values": (good * 0.5, "values must be"),
             "rank": (np.ones(16), "shape (16,)")}
    for name, (arr, message) in cases.items():
        np.save(tmp_path / f"{name}.npy", arr)
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_codebook_file(str(tmp_path / f"{name}.npy"), 5, 16)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="not a readable codebook"):
        load_codebook_file(str(tmp_path / "junk.pkl"), 5, 16)
    with pytest.raises(UserError, match="file not found"):
        load_codebook_file(str(tmp_path / "missing.npy"), 5, 16)


def test_bad_codebook_file_is_a_one_line_error_at_start(lite_single, tmp_path):
    np.save(tmp_path / "bad.npy", np.ones((3, 16)))
    proc = run_cli(["main_single_gpu.py", *lite_flags(lite_single, "csq", tmp_path / "run"), "--codebook",
                    tmp_path / "bad.npy"], check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --codebook {tmp_path / 'bad.npy'}: shape (3, 16)")


def test_extra_csq_centres_meet_the_reference_distance_check():
    rng = np.random.default_rng(0)
    cb = hadamard_codebook(200, 64, rng)  # 128 Hadamard rows + 72 random balanced ones
    d = (cb[:, None, :] != cb[None, :, :]).sum(-1)[np.triu_indices(200, 1)]
    assert d.min() > 64 / 4 and d.mean() >= 64 / 2
    assert (cb[128:].sum(1) == 0).all()


# ----------------------------------------------------------------------------------------- transforms
def torchvision_resize(img, size):
    """torchvision Resize(int) on a PIL image: shorter side → size (bilinear)."""
    w, h = img.size
    if w <= h:
        return img.resize((size, int(size * h / w)), Image.BILINEAR)
    return img.resize((int(size * w / h), size), Image.BILINEAR)


def center_crop(img, c):
    w, h = img.size
    left, top = int(round((w - c) / 2.0)), int(round((h - c) / 2.0))
    return img.crop((left, top, left + c, top + c))


def to_chw(img):
    arr = np.asarray(img, np.float32) / 255.0
    arr = (arr - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return arr.transpose(2, 0, 1)


REFERENCE_EVAL = {
    # DeepHash-pytorch:utils/tools.py image_transform: Resize(256) + CenterCrop(224)
    "shorter_center": lambda img, r, c: center_crop(torchvision_resize(img, r), c),
    # thuml ResizeImage (PIL resize to a square, default filter) + PlaceCrop((r - c - 1) / 2)
    "square_place": lambda img, r, c: img.resize((r, r)).crop(((r - c - 1) / 2, (r - c - 1) / 2,
                                                                (r - c - 1) / 2 + c, (r - c - 1) / 2 + c)),
    # OrthoHash's pre-resized square folders, then Resize + CenterCrop
    "square_center": lambda img, r, c: center_crop(img.resize((r, r)), c),
}
# method × data set → (eval transform, resize, crop), as the official code for that data set has it
EXPECTED = {
    ("hashnet", "coco"): ("shorter_center", 256, 224), ("dpsh", "nuswide"): ("shorter_center", 256, 224),
    ("dpsh", "cifar10"): ("shorter_center", 224, 224),
    ("orthohash", "coco"): ("shorter_center", 224, 224), ("orthohash", "nuswide"): ("square_center", 256, 224),
    ("orthohash", "imagenet"): ("square_center", 224, 224), ("orthohash", "cifar10"): ("square_center", 224, 224),
    ("relahash", "imagenet"): ("square_center", 224, 224), ("relahash", "nuswide"): ("square_center", 256, 224),
    ("csq", "coco"): ("square_place", 255, 224), ("csq", "imagenet"): ("square_place", 255, 224),
}


def photo(w, h, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    return Image.fromarray(base).resize((w, h), Image.BICUBIC)  # smooth content, like a photo


@pytest.mark.parametrize("method,dataset", sorted(EXPECTED))
def test_eval_transform_equals_plain_pil_reference(method, dataset):
    pre = Preprocess.from_dict(cfg_for("--method", method, "--dataset", dataset))
    kind, r, c = EXPECTED[(method, dataset)]
    assert (pre.resize_size, pre.crop_size) == (r, c)
    for size in ((300, 241), (241, 300), (r, r)):
        img = photo(*size)
        np.testing.assert_array_equal(pre(img), to_chw(REFERENCE_EVAL[kind](img, r, c)))


def test_every_method_has_a_recipe_for_the_four_data_sets():
    for name in METHODS:
        for dataset in ("coco", "nuswide", "imagenet", "cifar10"):
            cfg = cfg_for("--method", name, "--dataset", dataset)
            pre = Preprocess.from_dict(cfg)
            assert pre(photo(120, 90), np.random.default_rng(0)).shape == (3, cfg["crop_size"], cfg["crop_size"])


def test_random_resized_crop_boxes_fall_in_the_scale_and_ratio_ranges():
    rng = np.random.default_rng(0)
    fallbacks = 0
    for width, height in ((255, 255), (500, 120), (64, 900), (31, 31)):
        for _ in range(400):
            left, top, w, h = random_resized_crop_box(width, height, rng)
            assert 0 <= left and 0 <= top and left + w <= width and top + h <= height and w > 0 and h > 0
            area, ratio = w * h / (width * height), w / h
            # rounding w, h to integers moves the ratio and area a little
            in_range = 0.08 * 0.9 <= area <= 1.0 and 3 / 4 * 0.9 <= ratio <= 4 / 3 * 1.1
            fallback = (left, top) == ((width - w) // 2, (height - h) // 2) and (w == width or h == height)
            assert in_range or fallback
            fallbacks += not in_range
    assert fallbacks < 400  # extreme aspect ratios fall back sometimes, square images never need it


@pytest.mark.parametrize("augment", ["crop_flip", "resized_crop_flip", "flip_jitter", "none"])
def test_train_augmentation(augment):
    r, c = (72, 64) if augment in ("crop_flip", "resized_crop_flip") else (64, 64)
    pre = Preprocess(r, c, resize_mode="square", train_augment=augment)
    img = photo(90, 70)
    evaluated = pre(img)
    outs = [pre(img, np.random.default_rng(seed)) for seed in range(12)]
    assert all(o.shape == (3, c, c) for o in outs)
    if augment == "none":
        assert all(np.array_equal(o, evaluated) for o in outs)
        return
    assert len({o.tobytes() for o in outs}) > 1  # it is random
    assert all(np.array_equal(o, pre(img, np.random.default_rng(seed))) for seed, o in enumerate(outs))  # seeded
    if augment == "flip_jitter":  # the eval crop, maybe flipped, brightness/contrast within ±5%
        square = img.resize((r, r), Image.BICUBIC)
        for seed, out in enumerate(outs):
            rng = np.random.default_rng(seed)
            flip = rng.random() < 0.5
            base = square.transpose(Image.FLIP_LEFT_RIGHT) if flip else square
            enh = (ImageEnhance.Brightness, ImageEnhance.Contrast)
            for k in rng.permutation(2):
                base = enh[k](base).enhance(rng.uniform(0.95, 1.05))
            np.testing.assert_array_equal(out, to_chw(base))


# ----------------------------------------------------------------------------------------- recipes
def test_print_recipe_names_the_source_of_each_value():
    proc = run_cli(["main_single_gpu.py", "--method", "csq", "--dataset", "coco", "--backbone", "resnet50",
                    "--print-recipe"])
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    assert "0.05" in rows["backbone_lr_mult"] and "--multi_lr 0.05" in rows["backbone_lr_mult"]
    assert "square" in rows["resize_mode"] and "Hadamard-Matrix-for-hashing" in rows["resize_mode"]
    assert "data-set preset 'coco'" in rows["topk"]
    sources = {}
    cfg = resolve(build_parser("").parse_args(["--method", "dpsh", "-lr", "3e-5"]), None, sources)
    assert cfg["batch_size"] == 128 and cfg["optimizer"] == "rmsprop" and cfg["rmsprop_form"] == "pytorch"
    assert sources["lr"] == "command line" and "DeepHash-pytorch DPSH.py" in sources["batch_size"]
    assert "command line" in format_recipe(cfg, sources)
    # --lr is what users type; it must not be an ambiguous prefix of --lr-step / --lr-gamma
    assert build_parser("").parse_args(["--lr", "3e-5"]).lr == 3e-5


def test_print_recipe_of_a_transformer_backbone_names_fire_and_vts():
    """The transformer backbones' rules (models/methods/backbone_rules.py): OrthoHash takes FIRe's orthocos
    template, the VTS methods VTS's get_config; each value names its repository and file."""
    proc = run_cli(["main_single_gpu.py", "--method", "orthohash", "--dataset", "coco", "--backbone", "vit_s_16",
                    "--print-recipe"])
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    for key, value in (("batch_size", "64"), ("margin", "0.3"), ("codebook", "O"), ("lr", "0.0001"),
                       ("backbone_lr_mult", "0.1")):
        assert rows[key].split()[1] == value, rows[key]
        assert "CISiPLab/cisip-FIRe configs/templates/orthocos.yaml" in rows[key]
    assert "kamwoh/orthohash" in rows["resize_mode"]  # the transforms stay the method's own
    proc = run_cli(["main_single_gpu.py", "--method", "dsh", "--dataset", "nuswide", "--backbone", "vit_b_16",
                    "--print-recipe"])
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:]}
    for key, value in (("optimizer", "adam"), ("lr", "1e-05"), ("weight_decay", "0.0"), ("epochs", "150"),
                       ("batch_size", "32"), ("backbone_lr_mult", "1.0"), ("lr_gamma", "1.0"),
                       ("resize_size", "256"), ("crop_size", "224"), ("train_augment", "crop_flip")):
        assert rows[key].split()[1] == value, rows[key]
        assert "shivram1987/VisionTransformerHashing" in rows[key], rows[key]
    assert "DSH.py get_config" in rows["lr"]
    # CSQ's λ from CSQ.py; swin_t has no VTS rule (CSQ's own recipe); alexnet/resnet are untouched
    assert cfg_for("--method", "csq", "--backbone", "clip_vit_b32")["quant_weight"] == 1e-4
    assert cfg_for("--method", "csq", "--backbone", "swin_t")["lr"] == 1e-3
    assert cfg_for("--method", "orthohash", "--backbone", "swin_t")["batch_size"] == 64
    assert cfg_for("--method", "orthohash", "--backbone", "alexnet")["batch_size"] == 256
    assert cfg_for("--method", "dsh", "--backbone", "resnet50")["optimizer"] == "rmsprop"
    # lite data keeps its 64 px; --recipe scratch and flags still win over the backbone rules
    assert cfg_for("--method", "dsh", "--backbone", "vit_s_16", "--dataset", "lite_single")["crop_size"] == 64
    assert cfg_for("--method", "dsh", "--backbone", "vit_s_16", "--recipe", "scratch")["lr"] == 1e-5
    assert cfg_for("--method", "orthohash", "--backbone", "vit_s_16", "--recipe", "scratch")["lr"] == 1e-3
    assert cfg_for("--method", "orthohash", "--backbone", "vit_s_16", "-bs", "8")["batch_size"] == 8


def test_every_transformer_backbone_has_the_backbone_rules():
    from models.backbones import BACKBONES
    from models.methods.backbone_rules import FIRE_BACKBONES, VTS_BACKBONES

    convnets = {"alexnet", "vgg16", "resnet18", "resnet34", "resnet50", "resnet101"}
    assert set(FIRE_BACKBONES) == set(BACKBONES) - convnets
    assert set(VTS_BACKBONES) == {b for b in BACKBONES if "vit" in b}


def test_scratch_recipe_and_label_mode():
    paper, scratch = cfg_for("--method", "orthohash"), cfg_for("--method", "orthohash", "--recipe", "scratch")
    assert (paper["lr"], paper["batch_size"]) == (1e-4, 256) and (scratch["lr"], scratch["batch_size"]) == (1e-3, 32)
    assert cfg_for("--method", "orthohash", "--recipe", "scratch", "-bs", 8)["batch_size"] == 8  # flags win
    assert paper["label_mode"] == "smooth"
    with pytest.raises(UserError, match="applies to orthohash, relahash"):
        cfg_for("--method", "hashnet", "--label-mode", "first")


@pytest.mark.parametrize("dataset", ["lite_single", "lite_multi"])
def test_lite_data_keeps_its_image_size_under_every_recipe(dataset):
    """The 64 px lite images are never scaled up to a real data set's 224 px (CSQ's sizes once applied to
    every data set, which made its lite runs 12x slower and changed what they measured)."""
    for method in METHODS:
        for recipe in ("paper", "scratch"):
            cfg = cfg_for("--method", method, "--dataset", dataset, "--recipe", recipe)
            assert (cfg["resize_size"], cfg["crop_size"]) == (72, 64), (method, recipe)


def test_label_mode_first_is_ce_on_the_first_label():
    codebook = np.where(np.random.default_rng(0).random((4, 16)) < 0.5, -1.0, 1.0)
    u = np.random.default_rng(1).standard_normal((3, 16))
    y = np.array([[0, 1, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]], np.float32)
    loss = OrthoHashLoss(codebook, scale=8.0, margin=0.2, label_mode="first")(
        paddle.to_tensor(u.astype(np.float32)), paddle.to_tensor(y)).item()
    cos = (u / np.linalg.norm(u, axis=1, keepdims=True)) @ (codebook / 4.0).T
    terms = []
    for i, first in ((0, 1), (1, 0)):  # the third image has no label: it contributes nothing
        logits = 8.0 * (cos[i] - 0.2 * np.eye(4)[first])
        terms.append(-(logits[first] - np.log(np.exp(logits).sum())))
    assert loss == pytest.approx(sum(terms) / 3, rel=1e-5)


def test_old_checkpoint_cfg_means_todays_behaviour():
    old = {"method": "csq", "bit": 16, "codebook": "H"}
    cfg = fill_legacy(old)
    assert cfg["head"] == "linear" and cfg["rmsprop_form"] == "paddle" and cfg["drop_last"] is True
    assert cfg["bn_variance"] == "biased" and cfg["resize_mode"] == "shorter" and cfg["train_augment"] == "crop_flip"
    assert cfg["feature_cache"] == "off"  # a frozen backbone trained from images before the cache existed
    assert fill_legacy({"method": "csq", "head": "mlp"})["head"] == "mlp"  # present keys are kept


def test_start_warns_about_random_init_with_the_paper_recipe_and_few_steps(lite_single, tmp_path):
    flags = lite_flags(lite_single, "orthohash", tmp_path / "run")
    flags.remove("scratch")
    flags.remove("--recipe")
    proc = run_cli(["main_single_gpu.py", *flags, "-lr", "1e-3"])
    assert "from random initialisation (no --backbone-weights)" in proc.stdout and "--recipe scratch" in proc.stdout
    assert "only 3 training step(s) per epoch (24 images, batch 8" in proc.stdout


# ----------------------------------------------------------------------------------------- deployment
TRANSFORM_CASES = {  # (method, dataset, flags): every distinct transform, on 64 px crops
    "hashnet-shorter-center": ("hashnet", "coco", ()),
    "orthohash-square-center": ("orthohash", "imagenet", ()),
    "csq-square-place": ("csq", "coco", ()),
    "relahash-square-crop": ("relahash", "nuswide", ()),
    "dpsh-cifar": ("dpsh", "cifar10", ("--resize-size", 64)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(TRANSFORM_CASES))
def test_export_then_infer_gives_dygraph_codes_under_the_methods_transform(case, tmp_path):
    from models.checkpoint import TrainState, save_checkpoint
    from utils.deploy import encode_images, read_inference_yml
    from utils.deploy.runtimes import open_exported

    method, dataset, extra = TRANSFORM_CASES[case]
    r = 72 if not extra else 64
    cfg = cfg_for("--method", method, "--dataset", dataset, "--bit", 16, "--resize-size", r, "--crop-size", 64,
                  *extra)
    cfg["num_labels"] = 5
    paddle.seed(0)
    model = build_model(cfg)
    model.eval()
    save_checkpoint(str(tmp_path / "m.pdparams"), model, cfg, TrainState(best_map=0.0))
    images = tmp_path / "img"
    images.mkdir()
    for k, size in enumerate(((90, 70), (70, 90), (80, 80))):
        photo(*size, seed=k).save(images / f"{k}.png")
    run_cli(["export_model.py", "--pretrained", tmp_path / "m.pdparams", "--output-dir", tmp_path / "inf", "--onnx",
             "--check-batch", 0])
    pre = Preprocess.from_dict(cfg)
    kind = {"shorter": "shorter_center", "square": "square_" + pre.eval_crop}[pre.resize_mode]
    paths = [str(images / f"{k}.png") for k in range(3)]
    reference = np.stack([to_chw(REFERENCE_EVAL[kind](Image.open(p).convert("RGB"), pre.resize_size, pre.crop_size))
                          for p in paths])
    default = np.stack([Preprocess(pre.resize_size, pre.crop_size)(Image.open(p).convert("RGB")) for p in paths])
    with paddle.no_grad():
        expected = model(paddle.to_tensor(reference)).numpy()
        with_default = model(paddle.to_tensor(default)).numpy()
    meta = read_inference_yml(str(tmp_path / "inf"))
    assert meta["preprocess_obj"] == pre
    for backend in ("paddle", "onnx"):  # the code path of infer.py, continuous codes ...
        codes, _ = encode_images(open_exported(str(tmp_path / "inf"), backend), paths, meta["preprocess_obj"])
        np.testing.assert_allclose(codes, expected, rtol=1e-3, atol=1e-5)
        if kind != "shorter_center":  # ... which another transform would have changed
            assert np.abs(codes - with_default).max() > 100 * np.abs(codes - expected).max()
        npy = tmp_path / f"{backend}.npy"  # ... and infer.py itself, binary codes
        run_cli(["deploy/inference_python/infer.py", "--model-dir", tmp_path / "inf", "--img", images, "--backend",
                 backend, "--save-codes", npy])
        np.testing.assert_array_equal(np.load(npy) > 0, expected > 0)


def test_default_transform_keeps_the_fingerprint_it_had_before_the_recipe_fields():
    """Code caches and inference.yml files written before resize_mode/eval_crop/train_augment existed
    hold exactly this dict: a transform equal to the old one must keep it (or every cache is stale)."""
    old = {"resize_size": 256, "crop_size": 224, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    assert Preprocess(256, 224).to_dict() == old
    assert Preprocess.from_dict(old) == Preprocess(256, 224)
    csq = Preprocess(255, 224, resize_mode="square", eval_crop="place", train_augment="resized_crop_flip")
    assert Preprocess.from_dict(csq.to_dict()) == csq and csq.to_dict() != old
