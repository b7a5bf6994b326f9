"""The losses of DSH, DHN, DCH, DFH, DPN, GreedyHash, DSHSD, LCDSH, unsupervised GreedyHash and BiHalf
against their reference formulas written plainly in numpy (DeepHash-pytorch's <Method>.py, PaddleClas
ppcls/loss/deephashloss.py), gradients where the reference is tricky (DCH's Cauchy terms, GreedyHash's
straight-through sign, BiHalf's median split, DFH's centre update), and the shallow baselines (ITQ's
rotation, LSH's projection)."""
import math

import numpy as np
import paddle
import pytest

from models.heads import LinearHead
from models.methods import method_options
from models.methods.base import METHODS, Method, Option, Recipe
from models.methods.dch import DCHLoss
from models.methods.dfh import DFHLoss, centre_objective_grad
from models.methods.dhn import DHNLoss
from models.methods.dpn import DPNLoss, target_vectors
from models.methods.dsh import DSHLoss
from models.methods.dshsd import DSHSDLoss
from models.methods.greedyhash import GreedyHashLoss, build_head as greedy_head
from models.methods.lcdsh import LCDSHLoss
from models.methods.shallow import fit_itq, fit_lsh, itq_rotation, pca
from models.methods.unsupervised import BiHalfLoss, UnsupervisedGreedyHashLoss, bihalf
from tests.test_losses import random_labels


def t(x, grad=False):
    return paddle.to_tensor(np.asarray(x, np.float32), stop_gradient=not grad)


def sim(a, b):
    return 1.0 if float(np.dot(a, b)) > 0 else 0.0


def softplus(x):
    return math.log1p(math.exp(-abs(x))) + max(x, 0.0)


def sgn(v):
    return np.sign(v).astype(np.float64)


def bank_batches(loss_fn, rng, n_train, bit, c, multi, numpy_loss, scale=2.0):
    """Two batches through a memory-bank loss, each compared with numpy_loss(u, y, bank_u, bank_y, seen)."""
    bank_u = np.zeros((n_train, bit))
    bank_y = np.zeros((n_train, c))
    seen = np.zeros(n_train, bool)
    for idx in (np.array([1, 4, 6]), np.array([0, 4, 9, 2])):
        u = (rng.standard_normal((len(idx), bit)) * scale).astype(np.float32)
        y = random_labels(rng, len(idx), c, multi)
        got = loss_fn(t(u), t(y), paddle.to_tensor(idx)).item()
        bank_u[idx], bank_y[idx], seen[idx] = u, y, True
        assert got == pytest.approx(numpy_loss(u, y, bank_u, bank_y, seen), rel=1e-5)


# ------------------------------------------------------------------------------------------ DSH
def numpy_dsh(u, y, bank_u, bank_y, seen, alpha):
    """DSH.py: (1 − d)/2·dist + d/2·max(2·bit − dist, 0), d = dissimilar; mean + α·mean|1 − |u||."""
    m = 2 * u.shape[1]
    pairs = []
    for i in range(len(u)):
        for j in np.flatnonzero(seen):
            dist = float(((u[i] - bank_u[j]) ** 2).sum())
            dis = 1 - sim(y[i], bank_y[j])
            pairs.append((1 - dis) / 2 * dist + dis / 2 * max(m - dist, 0.0))
    return np.mean(pairs) + alpha * np.mean(np.abs(1 - np.abs(u)))


@pytest.mark.parametrize("multi", [False, True])
def test_dsh_loss_matches_numpy_over_two_batches(multi):
    rng = np.random.default_rng(10)
    fn = DSHLoss(10, 6, 4, alpha=0.3)  # 6 bits: margin 12, both sides of it occur
    bank_batches(fn, rng, 10, 6, 4, multi, lambda *a: numpy_dsh(*a, 0.3), scale=1.2)


# ------------------------------------------------------------------------------------------ DHN
def numpy_dhn(u, y, bank_u, bank_y, seen, lam):
    pairs = []
    for i in range(len(u)):
        for j in np.flatnonzero(seen):
            ip = 0.5 * float(np.dot(u[i], bank_u[j]))
            pairs.append(math.log(1 + math.exp(-abs(ip))) + max(ip, 0.0) - sim(y[i], bank_y[j]) * ip)
    quant = np.mean([math.log(math.cosh(abs(float(v)) - 1)) for v in u.ravel()])
    return np.mean(pairs) + lam * quant


@pytest.mark.parametrize("multi", [False, True])
def test_dhn_loss_matches_numpy_over_two_batches(multi):
    rng = np.random.default_rng(11)
    bank_batches(DHNLoss(10, 12, 4, lam=0.2), rng, 10, 12, 4, multi, lambda *a: numpy_dhn(*a, 0.2))


def test_dhn_log_cosh_is_finite_where_cosh_overflows():
    u = t(np.full((2, 4), 200.0), grad=True)
    loss = DHNLoss(2, 4, 2)(u, t(np.eye(2)), paddle.to_tensor(np.array([0, 1])))
    loss.backward()
    assert math.isfinite(loss.item()) and np.isfinite(u.grad.numpy()).all()


# ------------------------------------------------------------------------------------------ DCH
def numpy_dch(u, y, gamma, lam):
    """DCH.py DCHLoss, float64, one pair at a time."""
    u = np.asarray(u, np.float64)
    n, k = u.shape

    def d(a, b):
        cos = float(np.dot(a, b)) / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-4)
        return (1 - min(cos, 0.99)) * k / 2

    s = np.array([[sim(y[i], y[j]) for j in range(n)] for i in range(n)])
    if 0 < s.sum() < s.size:
        w = s * s.size / s.sum() + (1 - s) * s.size / (1 - s).sum()
    else:
        w = np.ones_like(s)
    cauchy = np.mean([w[i, j] * (s[i, j] * math.log(d(u[i], u[j]) / gamma) + math.log(1 + gamma / d(u[i], u[j])))
                      for i in range(n) for j in range(n)])
    quant = np.mean([math.log(1 + d(np.abs(u[i]), np.ones(k)) / gamma) for i in range(n)])
    return cauchy + lam * quant


@pytest.mark.parametrize("multi", [False, True])
def test_dch_loss_matches_numpy(multi):
    rng = np.random.default_rng(12)
    u = rng.standard_normal((7, 16)).astype(np.float32)
    y = random_labels(rng, 7, 4, multi)
    got = DCHLoss(16, gamma=20.0, lam=0.1)(t(u), t(y)).item()
    assert got == pytest.approx(numpy_dch(u, y, 20.0, 0.1), rel=1e-5)


def test_dch_one_kind_of_pairs_has_unit_weights():
    rng = np.random.default_rng(13)
    u = rng.standard_normal((4, 8)).astype(np.float32)
    y = np.ones((4, 1), np.float32)  # every pair similar
    assert DCHLoss(8, gamma=5.0)(t(u), t(y)).item() == pytest.approx(numpy_dch(u, y, 5.0, 0.1), rel=1e-5)


def test_dch_gradient_equals_finite_differences_of_the_numpy_formula():
    rng = np.random.default_rng(14)
    u = rng.standard_normal((5, 8)).astype(np.float32)
    u[1] = -u[0] + 0.3 * rng.standard_normal(8)  # a dissimilar-looking pair, away from the 0.99 clip
    y = random_labels(rng, 5, 3, False)
    ut = t(u, grad=True)
    DCHLoss(8, gamma=4.0, lam=0.5)(ut, t(y)).backward()
    eps, num = 1e-5, np.zeros(u.shape)
    base = u.astype(np.float64)
    for idx in np.ndindex(*u.shape):
        plus, minus = base.copy(), base.copy()
        plus[idx] += eps
        minus[idx] -= eps
        num[idx] = (numpy_dch(plus, y, 4.0, 0.5) - numpy_dch(minus, y, 4.0, 0.5)) / (2 * eps)
    np.testing.assert_allclose(ut.grad.numpy(), num, rtol=2e-3, atol=2e-5)


# ------------------------------------------------------------------------------------------ DFH
def numeric_centre_update(V, Y, B, vul, nta, steps=200):
    """DFH.py Center_gradient with the gradient taken by central differences of the objective written
    plainly (sign(V) held fixed at each step: PyTorch's sign has no gradient)."""
    C = V.shape[1]
    TK = V.shape[0] * (2 * np.eye(C) - 1)
    lr = 0.03
    for i in range(steps):
        S = np.sign(V)

        def f(W):
            return (((W @ Y.T - B) ** 2).mean() + vul * ((W.T @ W - TK) ** 2).mean() + nta * ((W - S) ** 2).mean())

        grad = np.zeros_like(V)
        for idx in np.ndindex(*V.shape):
            plus, minus = V.copy(), V.copy()
            plus[idx] += 1e-6
            minus[idx] -= 1e-6
            grad[idx] = (f(plus) - f(minus)) / 2e-6
        if i in (149, 179):
            lr *= 0.1
        V = V - lr * grad
    return V


def test_dfh_centre_gradient_equals_finite_differences():
    rng = np.random.default_rng(15)
    V, Y = rng.standard_normal((6, 3)), random_labels(rng, 5, 3, True).astype(np.float64)
    B = sgn(rng.standard_normal((6, 5)))
    TK = 6 * (2 * np.eye(3) - 1)
    got = centre_objective_grad(V, Y, B, 0.7, 1.3, TK)
    want = numeric_centre_update(V, Y, B, 0.7, 1.3, steps=1)
    np.testing.assert_allclose(V - 0.03 * got, want, rtol=1e-6, atol=1e-8)


def numpy_dfh(u, y, bank_u, bank_y, seen, C, m, mu, eta):
    b = sgn(mu * y @ C.T + u)  # C (bit, classes): the centres' signs before this batch's update
    pairs = []
    for i in range(len(u)):
        for j in np.flatnonzero(seen):
            ip = min(max(0.5 * float(np.dot(u[i], bank_u[j])), -100), 50)
            s = sim(y[i], bank_y[j])
            pairs.append((1 - s) * math.log(1 + math.exp(m + ip)) + s * math.log(1 + math.exp(m - ip)))
    return np.mean(pairs) + eta * np.mean((b - u) ** 2), b


@pytest.mark.parametrize("multi", [False, True])
def test_dfh_loss_and_centres_match_numpy_over_two_batches(multi):
    rng = np.random.default_rng(16)
    n_train, bit, c = 10, 6, 3
    fn = DFHLoss(n_train, bit, c, margin=3.0, mu=0.1, vul=1.0, nta=1.0, eta=0.5)
    bank_u, bank_y, seen = np.zeros((n_train, bit)), np.zeros((n_train, c)), np.zeros(n_train, bool)
    V = np.zeros((bit, c))
    for idx in (np.array([1, 4, 6]), np.array([0, 4, 9, 2])):
        u = (rng.standard_normal((len(idx), bit)) * 2).astype(np.float32)
        y = random_labels(rng, len(idx), c, multi)
        got = fn(t(u), t(y), paddle.to_tensor(idx)).item()
        bank_u[idx], bank_y[idx], seen[idx] = u, y, True
        want, b = numpy_dfh(u, y, bank_u, bank_y, seen, np.sign(V), 3.0, 0.1, 0.5)
        V = numeric_centre_update(V, y.astype(np.float64), b.T, 1.0, 1.0)
        assert got == pytest.approx(want, rel=1e-5)
        np.testing.assert_allclose(fn.V.numpy(), V, rtol=1e-3, atol=1e-4)
    assert np.abs(V).sum() > 0  # the centres moved


# ------------------------------------------------------------------------------------------ DPN
def numpy_dpn(u, y, targets, rnd, m):
    total = []
    for i in range(len(u)):
        csum = y[i] @ targets
        centre = [rnd[k] if csum[k] == 0 else (1.0 if csum[k] > 0 else -1.0) for k in range(len(csum))]
        total += [max(m - float(u[i, k]) * centre[k], 0.0) for k in range(u.shape[1])]
    return np.mean(total)


@pytest.mark.parametrize("multi", [False, True])
def test_dpn_loss_matches_numpy(multi):
    rng = np.random.default_rng(17)
    targets = target_vectors(4, 16, p=0.5, seed=3)
    assert set(np.unique(targets)) == {-1.0, 1.0} and (targets == -1).sum(axis=1).tolist() == [8] * 4
    u = rng.standard_normal((6, 16)).astype(np.float32)
    y = random_labels(rng, 6, 4, multi)
    fn = DPNLoss(targets, margin=1.0, seed=5)
    assert fn(t(u), t(y)).item() == pytest.approx(numpy_dpn(u, y, targets, fn.random_centre.numpy(), 1.0), rel=1e-6)


def test_dpn_single_label_centre_is_the_class_target():
    targets = target_vectors(3, 8, seed=1)
    fn = DPNLoss(targets)
    np.testing.assert_array_equal(fn.centres(t(np.eye(3)[[2, 0]])).numpy(), targets[[2, 0]])


# ------------------------------------------------------------------------------------------ GreedyHash
def greedy_setup(rng, n=6, bit=8, c=4):
    head = greedy_head(32, {"bit": bit, "num_labels": c}, None)
    w = rng.standard_normal((c, bit)).astype(np.float32)  # PyTorch layout (out, in)
    head.classifier.weight.set_value(t(w.T))
    u = rng.standard_normal((n, bit)).astype(np.float32) * 1.5
    y = random_labels(rng, n, c, True)
    return head, w, u, y


def test_greedyhash_loss_value_and_straight_through_gradient_match_numpy():
    rng = np.random.default_rng(18)
    head, w, u, y = greedy_setup(rng)
    ut = t(u, grad=True)
    out = paddle.concat([ut, head._extras(head, None, ut)], axis=1)
    loss = GreedyHashLoss(8, alpha=0.3)(out, t(y))
    loss.backward()
    # numpy: logits = sign(u)·Wᵀ, CE on the first label; d/du of CE passes sign unchanged
    b = sgn(u)
    logits = b @ w.T
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    first = np.eye(4)[y.argmax(axis=1)]
    a = np.abs(u) - 1
    want = -np.mean(np.log((p * first).sum(axis=1))) + 0.3 * np.mean(np.abs(a ** 3))
    assert loss.item() == pytest.approx(want, rel=1e-5)
    grad = (p - first) / len(u) @ w + 0.3 * 3 * a ** 2 * np.sign(a) * np.sign(u) / u.size
    np.testing.assert_allclose(ut.grad.numpy(), grad, rtol=1e-4, atol=1e-7)


def test_greedyhash_head_returns_the_code_alone_in_evaluation():
    head = greedy_head(32, {"bit": 8, "num_labels": 4}, None)
    x = t(np.random.default_rng(0).standard_normal((3, 32)))
    assert head(x).shape == [3, 12]
    head.eval()
    np.testing.assert_array_equal(head(x).numpy(), head.fc(x).numpy())


# ------------------------------------------------------------------------------------------ DSHSD
def numpy_dshsd(u, o, y, alpha, kind):
    h = np.tanh(u.astype(np.float64))
    m, n = 2 * u.shape[1], len(u)
    ld = []
    for i in range(n):
        for j in range(n):
            dist = float(((h[i] - h[j]) ** 2).sum())
            dis = 1.0 if float(np.dot(y[i], y[j])) == 0 else 0.0
            ld.append((1 - dis) / 2 * dist + dis / 2 * max(m - dist, 0.0))
    if kind == "bce":
        lc = np.mean([sum(o[i, k] - y[i, k] * o[i, k] + math.log(1 + math.exp(-o[i, k])) for k in range(o.shape[1]))
                      for i in range(n)])
    else:
        sm = np.exp(o) / np.exp(o).sum(axis=1, keepdims=True)
        lc = np.mean((-np.log(sm) * y).sum(axis=1))
    return lc + alpha * np.mean(ld)


@pytest.mark.parametrize("kind", ["softmax", "bce"])
@pytest.mark.parametrize("multi", [False, True])
def test_dshsd_loss_matches_numpy(kind, multi):
    rng = np.random.default_rng(19)
    u = rng.standard_normal((6, 3)).astype(np.float32) * 2  # 3 bits: margin 6, both sides occur
    o = rng.standard_normal((6, 4)).astype(np.float32)
    y = random_labels(rng, 6, 4, multi)
    got = DSHSDLoss(3, alpha=0.05, classifier_loss=kind)(t(np.concatenate([u, o], 1)), t(y)).item()
    assert got == pytest.approx(numpy_dshsd(u, o, y, 0.05, kind), rel=1e-5)


# ------------------------------------------------------------------------------------------ LCDSH
def numpy_lcdsh(u, y, lam):
    n = len(u)
    l1, l2 = [], []
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    for i in range(n):
        for j in range(n):
            s = 2 * sim(y[i], y[j]) - 1
            ip = min(max(0.5 * float(np.dot(u[i], u[j])), -50), 50)
            ipb = 0.5 * float(np.dot(sgn(u[i]), sgn(u[j])))
            l1.append(math.log(1 + math.exp(-s * ip)))
            l2.append((sigmoid(ip) - sigmoid(ipb)) ** 2)
    return np.mean(l1) + lam * np.mean(l2)


@pytest.mark.parametrize("multi", [False, True])
def test_lcdsh_loss_matches_numpy(multi):
    rng = np.random.default_rng(20)
    u = rng.standard_normal((6, 16)).astype(np.float32) * 1.5
    y = random_labels(rng, 6, 4, multi)
    assert LCDSHLoss(lam=3.0)(t(u), t(y)).item() == pytest.approx(numpy_lcdsh(u, y, 3.0), rel=1e-5)


# ------------------------------------------------------------------------------------------ unsupervised
def numpy_half_pair_mse(b, x):
    n = len(b) // 2

    def cos(a, c):
        return float(np.dot(a, c)) / (max(np.linalg.norm(a), 1e-8) * max(np.linalg.norm(c), 1e-8))

    return np.mean([(cos(b[i], b[i + n]) - cos(x[i], x[i + n])) ** 2 for i in range(n)])


@pytest.mark.parametrize("n", [8, 9])
def test_unsupervised_greedyhash_loss_matches_numpy(n):
    rng = np.random.default_rng(21)
    h, x = rng.standard_normal((n, 8)).astype(np.float32), np.abs(rng.standard_normal((n, 20))).astype(np.float32)
    got = UnsupervisedGreedyHashLoss(8, alpha=0.1)(t(np.concatenate([h, x], 1))).item()
    want = numpy_half_pair_mse(sgn(h), x) + 0.1 * np.mean(np.abs((np.abs(h) - 1) ** 3))
    assert got == pytest.approx(want, rel=1e-5)


def test_bihalf_splits_each_bit_at_the_batch_median_and_adds_gamma_gradient():
    rng = np.random.default_rng(22)
    for n in (8, 7):
        h = rng.standard_normal((n, 5)).astype(np.float32)
        ht = t(h, grad=True)
        b = bihalf(ht, 6.0)
        want = np.where(np.argsort(np.argsort(-h, axis=0), axis=0) < n // 2, 1.0, -1.0)
        np.testing.assert_array_equal(b.numpy(), want)
        assert ((b.numpy() == 1).sum(axis=0) == n // 2).all()
        for col in range(5):  # every +1 is larger than every −1 in its column
            assert h[b.numpy()[:, col] == 1, col].min() > h[b.numpy()[:, col] == -1, col].max()
        g = rng.standard_normal((n, 5)).astype(np.float32)
        (b * t(g)).sum().backward()
        np.testing.assert_allclose(ht.grad.numpy(), g + 6.0 * (h - want) / h.size, rtol=1e-6, atol=1e-7)


def test_bihalf_loss_matches_numpy():
    rng = np.random.default_rng(23)
    h, x = rng.standard_normal((10, 8)).astype(np.float32), rng.standard_normal((10, 20)).astype(np.float32)
    b = np.where(np.argsort(np.argsort(-h, axis=0), axis=0) < 5, 1.0, -1.0)
    got = BiHalfLoss(8, gamma=6.0)(t(np.concatenate([h, x], 1))).item()
    assert got == pytest.approx(numpy_half_pair_mse(b, x), rel=1e-5)


# ------------------------------------------------------------------------------------------ shallow
def test_itq_rotation_is_orthogonal_and_lowers_the_quantisation_error_every_iteration():
    rng = np.random.default_rng(24)
    x = rng.standard_normal((300, 40)) @ rng.standard_normal((40, 40))
    mean, p = pca(x, 16)
    v = (x - mean) @ p
    r, errors = itq_rotation(v, iterations=50, seed=0)
    np.testing.assert_allclose(r @ r.T, np.eye(16), atol=1e-10)
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]  # and it did move
    # the PCA directions: orthonormal, and the top ones (largest variance first)
    np.testing.assert_allclose(p.T @ p, np.eye(16), atol=1e-10)
    var = ((x - mean) @ p).var(axis=0)
    assert (np.diff(var) <= 1e-9).all()


def test_itq_and_lsh_heads_compute_their_projections():
    rng = np.random.default_rng(25)
    feats = np.abs(rng.standard_normal((60, 32))).astype(np.float32)  # non-negative, like ReLU features
    cfg = {"bit": 8, "seed": 3, "method": "itq"}
    for fit in (fit_itq, fit_lsh):
        head = LinearHead(32, 8)
        fit(feats, cfg, head)
        codes = np.sign(head(t(feats)).numpy())
        if fit is fit_itq:
            mean, p = pca(feats.astype(np.float64), 8)
            r, _ = itq_rotation((feats - mean) @ p, seed=3)
            want = np.sign((feats - mean) @ p @ r)
        else:
            w = np.random.default_rng(3).standard_normal((32, 8))
            want = np.sign((feats - feats.mean(axis=0)) @ w)
        assert (codes == want).mean() > 0.99  # float32 head vs float64 reference: a rare sign flip near 0
        assert np.abs(codes.mean(axis=0)).max() < 0.8  # centred: no constant bits


def test_itq_refuses_fewer_images_than_bits_plus_one():
    from utils.errors import UserError

    with pytest.raises(UserError, match="at least 9 training images"):
        fit_itq(np.ones((8, 32), np.float32), {"bit": 8, "seed": 0, "method": "itq"}, LinearHead(32, 8))


# ------------------------------------------------------------------------------------------ registry
def test_shared_option_names_join_their_help_and_must_agree_in_type():
    opts = method_options()
    assert set(opts["alpha"][1]) >= {"hashnet", "dsh", "dshsd", "greedyhash", "greedyhash_unsup"}
    assert "HashNet" in opts["alpha"][0].help and "DSH" in opts["alpha"][0].help
    METHODS.add(Method("tmp_bad_option", None, None, Recipe(()), options=(Option("alpha", int, "x"),)))
    try:
        with pytest.raises(TypeError, match="--alpha"):
            method_options()
    finally:
        del METHODS["tmp_bad_option"]


def test_new_methods_declare_their_training_kind():
    unsupervised = {n for n, m in METHODS.items() if not m.supervised}
    assert unsupervised == {"greedyhash_unsup", "bihalf", "lsh", "itq"}
    assert {n for n, m in METHODS.items() if m.fit_features} == {"lsh", "itq"}
