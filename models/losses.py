"""What the hashing losses share; each method's own loss lives in its module (models/methods/<name>.py).

A loss is a `paddle.nn.Layer` called as `loss(u, labels, indices)` where `u` is the continuous code
(the model's output, before sign), `labels` the 0/1 label rows of the batch and `indices` the batch's
positions in the training list. `set_epoch(epoch)` (1-based) lets a loss follow a schedule. Each loss
is tested against its formula written plainly in numpy (tests/test_losses.py).
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class HashLoss(nn.Layer):
    """Base: no schedule; `gather` turns a batch tensor into the concatenation over all processes
    (identity on one process; the engine sets it for data-parallel training)."""

    def __init__(self):
        super().__init__()
        self.gather = lambda t: t

    def set_epoch(self, epoch):
        pass


class PairwiseBankLoss(HashLoss):
    """Base of the pairwise methods (HashNet, DPSH): a memory bank keeps the latest code and labels of
    every training image, and the batch is compared with every image already in the bank. Bank rows
    not yet filled are left out (the DeepHash-pytorch code counts them as dissimilar pairs with zero
    inner product, which only skews the first epoch)."""

    def __init__(self, num_train, bit, num_labels):
        super().__init__()
        self.register_buffer("U", paddle.zeros([num_train, bit], "float32"))
        self.register_buffer("Y", paddle.zeros([num_train, num_labels], "float32"))
        self.register_buffer("seen", paddle.zeros([num_train], "float32"))

    def update_bank(self, h, y, indices):
        """Store the batch (from every process) in the bank; return (similar (B, N) 0/1, seen (1, N))."""
        with paddle.no_grad():
            idx = self.gather(indices)
            self.U[idx] = self.gather(h.detach())
            self.Y[idx] = self.gather(y)
            self.seen[idx] = 1.0
        similar = (paddle.matmul(y, self.Y, transpose_y=True) > 0).astype("float32")
        return similar, self.seen.unsqueeze(0)

    def mean_pair_nll(self, u, labels, indices, scale=0.5):
        """Store the batch, then the mean over (batch, filled bank row) pairs of −log p(s_ij | θ_ij) for
        p(s = 1) = σ(θ), θ_ij = scale·u_i·U_j (DPSH and DHN, as DeepHash-pytorch computes it)."""
        similar, seen = self.update_bank(u, labels.astype("float32"), indices)
        pair = pair_nll(scale * paddle.matmul(u, self.U, transpose_y=True), similar)
        return (pair * seen).sum() / paddle.clip(seen.sum() * u.shape[0], min=1.0)


def pair_nll(dot, similar):
    """−log p(s | dot) for p(s=1) = σ(dot), in the stable form log(1 + e^{−|d|}) + max(d, 0) − s·d."""
    return paddle.log1p(paddle.exp(-paddle.abs(dot))) + F.relu(dot) - similar * dot


def batch_similar(y):
    """s_ij = [y_i·y_j > 0] within a batch (share a label), (B, B) 0/1."""
    y = y.astype("float32")
    return (paddle.matmul(y, y, transpose_y=True) > 0).astype("float32")


class _SignStraightThrough(paddle.autograd.PyLayer):
    """sign(x) forward; the incoming gradient passed through unchanged (GreedyHash's `Hash` Function)."""

    @staticmethod
    def forward(ctx, x):
        return paddle.sign(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def sign_straight_through(x):
    """sign(x), with the identity as its gradient (exactly sign in the forward pass, unlike
    x + (sign(x) − x).detach(), which rounds)."""
    return _SignStraightThrough.apply(x)


def cosine_logits(u, codebook):
    """cos(u_i, c_k) for every code row and codebook row."""
    return paddle.matmul(F.normalize(u, axis=1), F.normalize(codebook, axis=1), transpose_y=True)




class CodebookCELoss(HashLoss):
    """Cross-entropy over margin logits of a code's similarity to a fixed ±1 codebook (one row per class):
    the template of OrthoHash and RelaHash, which differ only in `similarity(u)`.

    Margin logits: cosine margin s·(sim − m·y) ("cos") or angular margin s·cos(θ + m·y) with θ = acos(sim)
    ("arc"). Targets by `label_mode`:
    - "smooth": label-smoothing CE, −mean_i Σ_k (y_ik / Σ_k y_ik)·log softmax_k — for one-hot y this is
      exactly CE, so one expression serves single- and multi-label data (the papers);
    - "first": CE on each image's first label only (the margin too), as OrthoHash's released code trains
      COCO (`labels.argmax(1)`).
    Images without any label contribute nothing in both modes.
    """

    def __init__(self, codebook, scale, margin, loss_type="cos", label_mode="smooth"):
        super().__init__()
        if loss_type not in ("cos", "arc"):
            raise ValueError(f"loss_type must be 'cos' or 'arc', not {loss_type!r}")
        if label_mode not in ("smooth", "first"):
            raise ValueError(f"label_mode must be 'smooth' or 'first', not {label_mode!r}")
        self.s, self.m, self.loss_type, self.label_mode = scale, margin, loss_type, label_mode
        self.register_buffer("codebook", paddle.to_tensor(np.asarray(codebook, np.float32)), persistable=False)

    def similarity(self, u):
        raise NotImplementedError

    def margin_logits(self, u, y):
        sim = self.similarity(u)
        if self.loss_type == "cos":
            return self.s * (sim - self.m * y)
        theta = paddle.acos(paddle.clip(sim, -0.99999, 0.99999))
        return self.s * paddle.cos(theta + self.m * y)

    def forward(self, u, labels, indices=None):
        y = labels.astype("float32")
        if self.label_mode == "first":
            first = F.one_hot(paddle.argmax(y, axis=1), y.shape[1]).astype("float32")
            y = first * (y.sum(axis=1, keepdim=True) > 0).astype("float32")
        target = y / paddle.clip(y.sum(axis=1, keepdim=True), min=1.0)
        log_p = F.log_softmax(self.margin_logits(u, y), axis=1)
        return -(target * log_p).sum(axis=1).mean()
