"""Hashing losses. Each is a `paddle.nn.Layer` called as `loss(u, labels, indices)` where `u` is the
continuous code (the model's output, before sign), `labels` the 0/1 label rows of the batch and
`indices` the batch's positions in the training list. `set_epoch(epoch)` (1-based) lets a loss follow
a schedule. Each loss is tested against its formula written plainly in numpy (tests/test_losses.py).
"""
import math

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


class HashNetLoss(HashLoss):
    """HashNet (Cao et al., ICCV 2017): weighted pairwise likelihood with continuation.

    Training output h = tanh(scale·u), scale = sqrt((epoch − 1) // step_continuation + 1). A memory
    bank keeps the latest h and labels of every training image; the batch is compared with every
    image already in the bank. For a pair (i, j): s_ij = [y_i·y_j > 0], d_ij = α·h_i·h_j,
        ℓ_ij = log(1 + e^{−|d_ij|}) + max(d_ij, 0) − s_ij·d_ij,
    weighted by S/S1 for similar and S/S0 for dissimilar pairs (S1, S0: their counts, S = S0 + S1);
    loss = Σ w_ij ℓ_ij / S. Bank rows not yet filled are left out (the DeepHash-pytorch code counts
    them as dissimilar pairs with zero inner product, which only skews the first epoch's weights).
    """

    def __init__(self, num_train, bit, num_labels, alpha=0.1, step_continuation=20):
        super().__init__()
        self.alpha = alpha
        self.step_continuation = step_continuation
        self.scale = 1.0
        self.register_buffer("U", paddle.zeros([num_train, bit], "float32"))
        self.register_buffer("Y", paddle.zeros([num_train, num_labels], "float32"))
        self.register_buffer("seen", paddle.zeros([num_train], "float32"))

    def set_epoch(self, epoch):
        self.scale = math.sqrt((epoch - 1) // self.step_continuation + 1)

    def forward(self, u, labels, indices):
        h = paddle.tanh(self.scale * u)
        y = labels.astype("float32")
        with paddle.no_grad():
            idx = self.gather(indices)
            self.U[idx] = self.gather(h.detach())
            self.Y[idx] = self.gather(y)
            self.seen[idx] = 1.0
        similar = (paddle.matmul(y, self.Y, transpose_y=True) > 0).astype("float32")
        dot = self.alpha * paddle.matmul(h, self.U, transpose_y=True)
        pair_loss = paddle.log1p(paddle.exp(-paddle.abs(dot))) + F.relu(dot) - similar * dot
        seen = self.seen.unsqueeze(0)
        s1 = (similar * seen).sum()
        s0 = ((1 - similar) * seen).sum()
        s = s0 + s1
        weight = (similar * (s / paddle.clip(s1, min=1.0)) + (1 - similar) * (s / paddle.clip(s0, min=1.0))) * seen
        return (pair_loss * weight).sum() / s


def cosine_logits(u, codebook):
    """cos(u_i, c_k) for every code row and codebook row."""
    return paddle.matmul(F.normalize(u, axis=1), F.normalize(codebook, axis=1), transpose_y=True)


class OrthoHashLoss(HashLoss):
    """OrthoHash (Hoe et al., NeurIPS 2021): cross-entropy over scaled cosine similarities to a fixed
    ±1 codebook (one row per class), with a cosine ("cos": s·(cos θ − m·y)) or angular ("arc":
    s·cos(θ + m·y)) margin on the true classes.

    Single-label: CE with the true class. Multi-label: label-smoothing CE,
    −mean_i Σ_k (y_ik / Σ_k y_ik)·log softmax_k(margin logits) — for a one-hot y this is exactly CE,
    so one expression serves both.
    """

    def __init__(self, codebook, scale=8.0, margin=0.2, loss_type="cos"):
        super().__init__()
        if loss_type not in ("cos", "arc"):
            raise ValueError(f"loss_type must be 'cos' or 'arc', not {loss_type!r}")
        self.s, self.m, self.loss_type = scale, margin, loss_type
        self.register_buffer("codebook", paddle.to_tensor(np.asarray(codebook, np.float32)), persistable=False)

    def margin_logits(self, u, y):
        cos = cosine_logits(u, self.codebook)
        if self.loss_type == "cos":
            return self.s * (cos - self.m * y)
        theta = paddle.acos(paddle.clip(cos, -0.99999, 0.99999))
        return self.s * paddle.cos(theta + self.m * y)

    def forward(self, u, labels, indices=None):
        y = labels.astype("float32")
        target = y / paddle.clip(y.sum(axis=1, keepdim=True), min=1.0)
        log_p = F.log_softmax(self.margin_logits(u, y), axis=1)
        return -(target * log_p).sum(axis=1).mean()
