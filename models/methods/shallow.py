"""Shallow baselines on backbone features, the reference rows of every comparison: LSH (random
projections) and PCA-ITQ (Gong & Lazebnik, CVPR 2011 / TPAMI 2013, "Iterative Quantization"). Both are
fitted in closed form on the features of the training list (the chosen backbone and --backbone-weights,
evaluation transform), without labels and without SGD (`Method.fit_features`: the engine runs one
feature pass and the fit instead of epochs). The result is a Linear(feat, bit) head, W·x + b, so that
evaluation, export, infer.py and predict.py are the deep methods' own.

- LSH: sign(Wᵀ(x − μ)), W ~ N(0, 1) (seeded), on zero-centred features (μ the training mean), as the
  ITQ paper runs its LSH baseline; without centring, non-negative ReLU features make most bits constant.
- ITQ: PCA to `bit` dimensions of the centred features, V = (x − μ)·P, then 50 alternations of
  B = sign(V·R) and the orthogonal Procrustes step R = Ŝ·Sᵀ from the SVD Bᵀ·V = S·Ω·Ŝᵀ, from a random
  orthogonal R — Gong's ITQ.m. Codes: sign((x − μ)·P·R).
"""
import numpy as np
import paddle

from models.heads import LinearHead
from models.losses import HashLoss
from models.methods.base import PAPER, PROJECT, Method, Recipe, always, register
from utils.errors import UserError

ITQ_ITERATIONS = 50


def set_linear(head, weight, bias):
    """Load a (d, bit) projection and its (bit,) offset into the head's Linear (Paddle layout: (in, out))."""
    head.fc.weight.set_value(paddle.to_tensor(np.asarray(weight, np.float32)))
    head.fc.bias.set_value(paddle.to_tensor(np.asarray(bias, np.float32)))


def quantization_error(v, r):
    """‖sign(V·R) − V·R‖²_F / n, ITQ's objective at rotation R."""
    z = v @ r
    return float(((np.where(z >= 0, 1.0, -1.0) - z) ** 2).sum() / len(v))


def pca(x, bit):
    """(mean, P (d, bit)): the top `bit` principal directions of x's rows."""
    mean = x.mean(axis=0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    return mean, vt[:bit].T


def itq_rotation(v, iterations=ITQ_ITERATIONS, seed=0):
    """ITQ's rotation for projected data v (n, bit): (R, [quantisation error before each B-step])."""
    bit = v.shape[1]
    r = np.linalg.svd(np.random.default_rng(seed).standard_normal((bit, bit)))[0]
    errors = []
    for _ in range(iterations):
        errors.append(quantization_error(v, r))
        b = np.where(v @ r >= 0, 1.0, -1.0)
        s, _, s_hat_t = np.linalg.svd(b.T @ v)
        r = s_hat_t.T @ s.T
    errors.append(quantization_error(v, r))
    return r, errors


def _check(feats, cfg, need):
    if len(feats) < need:
        raise UserError(f"--method {cfg['method']} --bit {cfg['bit']}: needs at least {need} training images, the "
                        f"training list has {len(feats)}; use fewer --bit or a longer list")


def fit_lsh(feats, cfg, head):
    _check(feats, cfg, 2)
    x = feats.astype(np.float64)
    mean = x.mean(axis=0)
    w = np.random.default_rng(cfg["seed"]).standard_normal((x.shape[1], cfg["bit"]))
    set_linear(head, w, -mean @ w)
    z = (x - mean) @ w
    return float(((np.sign(z) - z) ** 2).sum() / len(z))


def fit_itq(feats, cfg, head):
    _check(feats, cfg, cfg["bit"] + 1)  # PCA of n centred rows has at most n − 1 directions
    x = feats.astype(np.float64)
    mean, p = pca(x, cfg["bit"])
    r, errors = itq_rotation((x - mean) @ p, seed=cfg["seed"])
    w = p @ r
    set_linear(head, w, -mean @ w)
    return errors[-1]


RECIPE = Recipe(rules=(always(dict(epochs=1, eval_epochs=1, batch_size=64, optimizer="sgd", lr=0.0, weight_decay=0.0,
                                   lr_step=None, lr_gamma=1.0, backbone_lr_mult=0.0, head_lr_mult=0.0, drop_last=False,
                                   resize_mode="shorter", train_augment="none", eval_crop="center"),
                              f"{PROJECT}: a closed-form fit (no SGD), features with the evaluation transform"),),
                scratch=dict(lr=0.0))

register(Method(
    name="lsh",
    summary="LSH: random Gaussian projections of zero-centred backbone features (shallow baseline)",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: HashLoss(),
    recipe=RECIPE,
    supervised=False,
    fit_features=fit_lsh,
))

register(Method(
    name="itq",
    summary=f"PCA-ITQ (CVPR 2011): PCA of backbone features, rotation minimising the quantisation error ({PAPER})",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: HashLoss(),
    recipe=RECIPE,
    supervised=False,
    fit_features=fit_itq,
))
