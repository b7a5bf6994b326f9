"""Each loss against its formula written plainly in numpy (loops over pairs / samples)."""
import math

import numpy as np
import paddle
import pytest

from utils.losses import HashNetLoss, OrthoHashLoss


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
    return sum(l * (total / n1 if s == 1 else total / n0) for s, l in pairs) / total


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
