"""Each loss against its formula written plainly in numpy (loops over pairs / samples)."""
import math

import numpy as np
import paddle
import pytest

from models.methods.csq import CSQLoss
from models.methods.dpsh import DPSHLoss
from models.methods.hashnet import HashNetLoss
from models.methods.orthohash import OrthoHashLoss
from models.methods.relahash import RelaHashLoss


def numpy_hashnet(h_batch, y_batch, bank_h, bank_y, seen, alpha):
    """The HashNet pairwise loss, one pair at a time."""
    pairs = []
    for i in range(len(h_batch)):
        for j in range(len(bank_h)):
            if not seen[j]:
                continue
            s = 1.0 if float(np.dot(y_batch[i], bank_y[j])) > 0 else 0.0
            d = alpha * float(np.dot(h_batch[i], bank_h[j]))
            pairs.append((s, math.log(1 + math.exp(-abs(d))) + max(d, 0.0) - s * d))
    n1 = sum(1 for s, _ in pairs if s == 1)
    n0 = len(pairs) - n1
    total = n0 + n1
    return sum(loss * (total / n1 if s == 1 else total / n0) for s, loss in pairs) / total


def random_labels(rng, n, c, multi):
    if not multi:
        return np.eye(c, dtype=np.float32)[rng.integers(0, c, n)]
    y = (rng.random((n, c)) < 0.3).astype(np.float32)
    y[np.arange(n), rng.integers(0, c, n)] = 1
    return y


@pytest.mark.parametrize("multi", [False, True])
def test_hashnet_loss_matches_numpy_over_two_batches(multi):
    rng = np.random.default_rng(0)
    n_train, bit, c, alpha = 12, 16, 5, 0.1
    loss_fn = HashNetLoss(n_train, bit, c, alpha=alpha, step_continuation=2)
    bank_h = np.zeros((n_train, bit), np.float32)
    bank_y = np.zeros((n_train, c), np.float32)
    seen = np.zeros(n_train, bool)
    for epoch, idx in [(1, np.array([0, 3, 5, 7])), (3, np.array([1, 3, 8, 11, 2]))]:
        loss_fn.set_epoch(epoch)
        scale = math.sqrt((epoch - 1) // 2 + 1)
        u = rng.standard_normal((len(idx), bit)).astype(np.float32) * 3
        y = random_labels(rng, len(idx), c, multi)
        got = loss_fn(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(idx)).item()
        h = np.tanh(scale * u)
        bank_h[idx], bank_y[idx], seen[idx] = h, y, True
        want = numpy_hashnet(h, y, bank_h, bank_y, seen, alpha)
        assert got == pytest.approx(want, rel=1e-5)


def test_hashnet_continuation_schedule():
    loss_fn = HashNetLoss(4, 8, 2, step_continuation=20)
    scales = []
    for epoch in (1, 20, 21, 40, 41, 150):
        loss_fn.set_epoch(epoch)
        scales.append(loss_fn.scale)
    assert scales == pytest.approx([1, 1, math.sqrt(2), math.sqrt(2), math.sqrt(3), math.sqrt(8)])


def test_hashnet_loss_has_gradient_and_prefers_agreeing_codes():
    y = paddle.to_tensor(np.eye(2, dtype=np.float32))
    idx = paddle.to_tensor(np.array([0, 1]))
    good = paddle.to_tensor(np.array([[3.0] * 8, [-3.0] * 8], np.float32), stop_gradient=False)
    bad = paddle.to_tensor(np.array([[3.0] * 8, [3.0] * 8], np.float32))
    lg = HashNetLoss(2, 8, 2, alpha=0.5)(good, y, idx)
    lb = HashNetLoss(2, 8, 2, alpha=0.5)(bad, y, idx)
    assert lg.item() < lb.item()
    lg.backward()
    assert np.abs(good.grad.numpy()).sum() > 0


def numpy_orthohash(u, y, codebook, s, m, kind):
    """OrthoHash CE with cosine/arc margin; label smoothing over the true labels (= CE when one-hot)."""
    total = 0.0
    for i in range(len(u)):
        logits = []
        for k in range(len(codebook)):
            cos = float(np.dot(u[i], codebook[k]) / (np.linalg.norm(u[i]) * np.linalg.norm(codebook[k])))
            if kind == "cos":
                logits.append(s * (cos - m * y[i, k]))
            else:
                logits.append(s * math.cos(math.acos(min(max(cos, -0.99999), 0.99999)) + m * y[i, k]))
        mx = max(logits)
        log_z = mx + math.log(sum(math.exp(v - mx) for v in logits))
        weights = y[i] / y[i].sum()
        total += -sum(weights[k] * (logits[k] - log_z) for k in range(len(codebook)))
    return total / len(u)


@pytest.mark.parametrize("kind", ["cos", "arc"])
@pytest.mark.parametrize("multi", [False, True])
def test_orthohash_loss_matches_numpy(kind, multi):
    rng = np.random.default_rng(1)
    codebook = np.where(rng.random((6, 32)) < 0.5, -1.0, 1.0).astype(np.float32)
    u = rng.standard_normal((7, 32)).astype(np.float32)
    y = random_labels(rng, 7, 6, multi)
    fn = OrthoHashLoss(codebook, scale=8.0, margin=0.3, loss_type=kind)
    got = fn(paddle.to_tensor(u), paddle.to_tensor(y)).item()
    assert got == pytest.approx(numpy_orthohash(u, y, codebook, 8.0, 0.3, kind), rel=1e-5)


def test_orthohash_single_label_equals_plain_cross_entropy():
    rng = np.random.default_rng(2)
    codebook = np.where(rng.random((4, 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    u = rng.standard_normal((5, 16)).astype(np.float32)
    target = rng.integers(0, 4, 5)
    y = np.eye(4, dtype=np.float32)[target]
    fn = OrthoHashLoss(codebook, scale=8.0, margin=0.2)
    logits = fn.margin_logits(paddle.to_tensor(u), paddle.to_tensor(y))
    ce = paddle.nn.functional.cross_entropy(logits, paddle.to_tensor(target)).item()
    assert fn(paddle.to_tensor(u), paddle.to_tensor(y)).item() == pytest.approx(ce, rel=1e-6)


# ------------------------------------------------------------------------------------------ RelaHash
def numpy_relahash(u, y, codebook, beta, m):
    """RelaHash: relative position of the whole batch (scalar mean, Frobenius norm), unit centroids,
    β·(z*·c* − m·y), cross-entropy with label smoothing over the true labels."""
    mean = sum(float(v) for row in u for v in row) / u.size
    a = [[float(v) - mean for v in row] for row in u]
    fro = math.sqrt(sum(v * v for row in a for v in row))
    total = 0.0
    for i in range(len(u)):
        logits = []
        for k in range(len(codebook)):
            norm_c = math.sqrt(sum(float(c) ** 2 for c in codebook[k]))
            rel = sum(a[i][b] / fro * float(codebook[k][b]) / norm_c for b in range(u.shape[1]))
            logits.append(beta * (rel - m * y[i, k]))
        mx = max(logits)
        log_z = mx + math.log(sum(math.exp(v - mx) for v in logits))
        weights = y[i] / y[i].sum()
        total += -sum(weights[k] * (logits[k] - log_z) for k in range(len(codebook)))
    return total / len(u)


@pytest.mark.parametrize("multi", [False, True])
def test_relahash_loss_matches_numpy(multi):
    rng = np.random.default_rng(3)
    codebook = np.where(rng.random((6, 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    u = (rng.standard_normal((8, 16)) + 0.7).astype(np.float32)  # a non-zero mean, which z* removes
    y = random_labels(rng, 8, 6, multi)
    fn = RelaHashLoss(codebook, scale=8.0, margin=0.5)
    got = fn(paddle.to_tensor(u), paddle.to_tensor(y)).item()
    assert got == pytest.approx(numpy_relahash(u, y, codebook, 8.0, 0.5), rel=1e-5)


def test_relahash_depends_on_the_batch_but_not_on_its_scale_or_shift():
    rng = np.random.default_rng(4)
    codebook = np.where(rng.random((4, 16)) < 0.5, -1.0, 1.0).astype(np.float32)
    u = rng.standard_normal((6, 16)).astype(np.float32)
    y = random_labels(rng, 6, 4, False)
    fn = RelaHashLoss(codebook)
    base = fn(paddle.to_tensor(u), paddle.to_tensor(y)).item()
    assert fn(paddle.to_tensor(3 * u + 2), paddle.to_tensor(y)).item() == pytest.approx(base, rel=1e-5)
    # relative position: an image's similarities change with the rest of its batch
    alone = fn.similarity(paddle.to_tensor(u[:3])).numpy()
    in_batch = fn.similarity(paddle.to_tensor(u)).numpy()[:3]
    assert not np.allclose(alone, in_batch, rtol=1e-3)


# ------------------------------------------------------------------------------------------ DPSH
def numpy_dpsh(u, y_batch, bank_u, bank_y, seen, eta):
    """DPSH: mean over (batch, seen bank) pairs of log(1 + e^θ) − s·θ, θ = ½ u_i·u_j, plus
    η·mean((u − sign u)²) over the batch."""
    pair_losses = []
    for i in range(len(u)):
        for j in range(len(bank_u)):
            if not seen[j]:
                continue
            s = 1.0 if float(np.dot(y_batch[i], bank_y[j])) > 0 else 0.0
            theta = 0.5 * float(np.dot(u[i], bank_u[j]))
            pair_losses.append(math.log(1 + math.exp(theta)) - s * theta)
    quant = sum((float(v) - (1.0 if v > 0 else -1.0 if v < 0 else 0.0)) ** 2 for row in u for v in row) / u.size
    return sum(pair_losses) / len(pair_losses) + eta * quant


@pytest.mark.parametrize("multi", [False, True])
def test_dpsh_loss_matches_numpy_over_two_batches(multi):
    rng = np.random.default_rng(5)
    n_train, bit, c, eta = 10, 12, 4, 0.3
    fn = DPSHLoss(n_train, bit, c, quant_weight=eta)
    bank_u = np.zeros((n_train, bit), np.float32)
    bank_y = np.zeros((n_train, c), np.float32)
    seen = np.zeros(n_train, bool)
    for idx in (np.array([1, 4, 6]), np.array([0, 4, 9, 2])):
        u = rng.standard_normal((len(idx), bit)).astype(np.float32) * 2
        y = random_labels(rng, len(idx), c, multi)
        got = fn(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(idx)).item()
        bank_u[idx], bank_y[idx], seen[idx] = u, y, True
        assert got == pytest.approx(numpy_dpsh(u, y, bank_u, bank_y, seen, eta), rel=1e-5)


def test_dpsh_loss_is_stable_for_large_codes_and_has_gradient():
    u = paddle.to_tensor(np.array([[40.0] * 8, [-40.0] * 8], np.float32), stop_gradient=False)
    y = paddle.to_tensor(np.eye(2, dtype=np.float32))
    loss = DPSHLoss(2, 8, 2)(u, y, paddle.to_tensor(np.array([0, 1])))
    assert np.isfinite(loss.item())
    loss.backward()
    assert np.isfinite(u.grad.numpy()).all() and np.abs(u.grad.numpy()).sum() > 0


# ------------------------------------------------------------------------------------------ CSQ
def numpy_csq(u, y, codebook, random_centre, lam):
    """CSQ: centre = sign(mean of the label centres), 0 → the random centre's bit; BCE between
    (tanh u + 1)/2 and (centre + 1)/2, averaged over elements, + λ·mean((|tanh u| − 1)²)."""
    bce, quant, n = 0.0, 0.0, 0
    for i in range(len(u)):
        labels = [k for k in range(y.shape[1]) if y[i, k] > 0]
        for b in range(u.shape[1]):
            m = sum(float(codebook[k][b]) for k in labels) / max(len(labels), 1)
            centre = 1.0 if m > 0 else -1.0 if m < 0 else float(random_centre[b])
            p, t = (math.tanh(float(u[i, b])) + 1) / 2, (centre + 1) / 2
            bce += -(t * math.log(p) + (1 - t) * math.log(1 - p))
            quant += (abs(math.tanh(float(u[i, b]))) - 1) ** 2
            n += 1
    return bce / n + lam * quant / n


@pytest.mark.parametrize("multi", [False, True])
def test_csq_loss_matches_numpy(multi):
    rng = np.random.default_rng(6)
    from models.codebook import make_codebook

    codebook = make_codebook("H", 5, 8, seed=0)
    u = rng.standard_normal((9, 8)).astype(np.float32)
    y = random_labels(rng, 9, 5, multi)
    if multi:
        y[0] = 0
        y[0, [0, 1]] = 1  # rows 0 and 1 of [H; −H] disagree on half the bits → ties
    fn = CSQLoss(codebook, quant_weight=0.05, seed=3)
    rnd = fn.random_centre.numpy()
    assert set(np.unique(rnd)) <= {-1.0, 1.0}
    got = fn(paddle.to_tensor(u), paddle.to_tensor(y)).item()
    assert got == pytest.approx(numpy_csq(u, y, codebook, rnd, 0.05), rel=1e-5)


def test_csq_centres_single_label_and_ties():
    from models.codebook import make_codebook

    codebook = make_codebook("H", 4, 8, seed=0)
    fn = CSQLoss(codebook, seed=1)
    y = np.array([[0, 0, 1, 0], [1, 1, 0, 0], [0, 0, 0, 0]], np.float32)
    c = fn.centres(paddle.to_tensor(y)).numpy()
    np.testing.assert_array_equal(c[0], codebook[2])
    tie = codebook[0] + codebook[1] == 0
    assert tie.any()
    np.testing.assert_array_equal(c[1][tie], fn.random_centre.numpy()[tie])
    np.testing.assert_array_equal(c[1][~tie], codebook[0][~tie])
    np.testing.assert_array_equal(c[2], fn.random_centre.numpy())  # no label: the random centre


def test_the_base_class_checks_the_batch_and_casts_the_labels_once():
    """HashLoss.forward refuses mismatched shapes (ValueError naming what is wrong) and hands the method's
    loss float32 labels: integer labels give exactly the float labels' loss."""
    from models.losses import HashLoss

    rng = np.random.default_rng(3)
    u = rng.standard_normal((4, 8)).astype(np.float32)
    y = np.eye(3, dtype=np.int64)[[0, 1, 2, 0]]
    idx = np.array([0, 1, 2, 3])
    seen = []

    class Probe(HashLoss):
        def loss(self, u, labels, indices):
            seen.append(labels.dtype)
            return u.sum()

    Probe()(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(idx))
    assert seen == [paddle.float32]
    a = DPSHLoss(4, 8, 3)(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(idx)).item()
    b = DPSHLoss(4, 8, 3)(paddle.to_tensor(u), paddle.to_tensor(y.astype(np.float32)), paddle.to_tensor(idx)).item()
    assert a == b
    loss = OrthoHashLoss(np.sign(rng.standard_normal((3, 8))))
    with pytest.raises(ValueError, match="one row per code"):
        loss(paddle.to_tensor(u), paddle.to_tensor(y[:3]))
    with pytest.raises(ValueError, match="2-D tensor"):
        loss(paddle.to_tensor(u[0]), paddle.to_tensor(y))
    with pytest.raises(ValueError, match="one position per code"):
        DPSHLoss(4, 8, 3)(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(idx[:2]))
    with pytest.raises(NotImplementedError):
        HashLoss()(paddle.to_tensor(u), paddle.to_tensor(y))


def test_a_memory_bank_is_filled_through_the_gather_it_was_built_with():
    """The gather a bank loss takes in its constructor (the engine passes Env.gather_tensor) decides what
    enters the bank: here a stand-in for a second process whose batch follows this one's."""
    rng = np.random.default_rng(4)
    u, other = rng.standard_normal((2, 8)).astype(np.float32), rng.standard_normal((2, 8)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)
    mine, theirs = np.array([0, 1]), np.array([2, 3])

    def gather(t):  # this rank's tensor, then the other rank's (indices, codes or labels by shape)
        if t.dtype == paddle.int64:
            return paddle.concat([t, paddle.to_tensor(theirs)])
        return paddle.concat([t, paddle.to_tensor(other if t.shape[1] == 8 else y)])

    loss = DPSHLoss(4, 8, 2, gather=gather)
    loss(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(mine))
    np.testing.assert_array_equal(loss.seen.numpy(), [1, 1, 1, 1])
    np.testing.assert_allclose(loss.U.numpy(), np.concatenate([u, other]))
    alone = DPSHLoss(4, 8, 2)
    alone(paddle.to_tensor(u), paddle.to_tensor(y), paddle.to_tensor(mine))
    np.testing.assert_array_equal(alone.seen.numpy(), [1, 1, 0, 0])
