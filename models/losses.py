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


def pair_nll(dot, similar):
    """−log p(s | dot) for p(s=1) = σ(dot), in the stable form log(1 + e^{−|d|}) + max(d, 0) − s·d."""
    return paddle.log1p(paddle.exp(-paddle.abs(dot))) + F.relu(dot) - similar * dot


class HashNetLoss(PairwiseBankLoss):
    """HashNet (Cao et al., ICCV 2017): weighted pairwise likelihood with continuation.

    Training output h = tanh(scale·u), scale = sqrt((epoch − 1) // step_continuation + 1), kept in the
    memory bank. For a pair (i, j): s_ij = [y_i·y_j > 0], d_ij = α·h_i·h_j,
        ℓ_ij = log(1 + e^{−|d_ij|}) + max(d_ij, 0) − s_ij·d_ij,
    weighted by S/S1 for similar and S/S0 for dissimilar pairs (S1, S0: their counts, S = S0 + S1);
    loss = Σ w_ij ℓ_ij / S.
    """

    def __init__(self, num_train, bit, num_labels, alpha=0.1, step_continuation=20):
        super().__init__(num_train, bit, num_labels)
        self.alpha = alpha
        self.step_continuation = step_continuation
        self.scale = 1.0

    def set_epoch(self, epoch):
        self.scale = math.sqrt((epoch - 1) // self.step_continuation + 1)

    def forward(self, u, labels, indices):
        h = paddle.tanh(self.scale * u)
        similar, seen = self.update_bank(h, labels.astype("float32"), indices)
        pair_loss = pair_nll(self.alpha * paddle.matmul(h, self.U, transpose_y=True), similar)
        s1 = (similar * seen).sum()
        s0 = ((1 - similar) * seen).sum()
        s = s0 + s1
        weight = (similar * (s / paddle.clip(s1, min=1.0)) + (1 - similar) * (s / paddle.clip(s0, min=1.0))) * seen
        return (pair_loss * weight).sum() / s


class DPSHLoss(PairwiseBankLoss):
    """DPSH (Li et al., IJCAI 2016): pairwise negative log-likelihood with p(s_ij = 1) = σ(θ_ij),
    θ_ij = ½·u_i·u_j, plus the quantization penalty η·‖u − sign(u)‖²:

        loss = mean over pairs (i in batch, j in bank) of [log(1 + e^{θ_ij}) − s_ij·θ_ij]
               + η · mean over batch elements of (u − sign(u))².

    The bank keeps the raw outputs u. Means instead of the paper's sums (as in DeepHash-pytorch), so η
    does not depend on batch and bank size.
    """

    def __init__(self, num_train, bit, num_labels, quant_weight=0.1):
        super().__init__(num_train, bit, num_labels)
        self.eta = quant_weight

    def forward(self, u, labels, indices):
        similar, seen = self.update_bank(u, labels.astype("float32"), indices)
        pair_loss = pair_nll(0.5 * paddle.matmul(u, self.U, transpose_y=True), similar)
        likelihood = (pair_loss * seen).sum() / paddle.clip(seen.sum() * u.shape[0], min=1.0)
        quantization = ((u - paddle.sign(u)) ** 2).mean()
        return likelihood + self.eta * quantization


class CSQLoss(HashLoss):
    """CSQ (Yuan et al., CVPR 2020): binary cross-entropy between h = tanh(u), read as probabilities
    (h + 1)/2, and the image's hash centre (c + 1)/2, plus the quantization term λ·mean((|h| − 1)²).

    Centres: one ±1 row per class (the codebook, Hadamard rows by default). A multi-label image's centre
    is the sign of the mean of its labels' centres; bits where that mean is 0 (and images without labels)
    take the bits of one fixed random ±1 code drawn from `seed`, as in the CSQ code. (h + 1)/2 = σ(2u), so
    the BCE is computed from the logits 2u, which stays finite where tanh saturates.
    """

    def __init__(self, codebook, quant_weight=0.05, seed=0):
        super().__init__()
        codebook = np.asarray(codebook, np.float32)
        rnd = np.where(np.random.default_rng(seed).random(codebook.shape[1]) < 0.5, -1.0, 1.0).astype(np.float32)
        self.lam = quant_weight
        self.register_buffer("codebook", paddle.to_tensor(codebook), persistable=False)
        self.register_buffer("random_centre", paddle.to_tensor(rnd), persistable=False)

    def centres(self, labels):
        y = labels.astype("float32")
        mean = paddle.matmul(y, self.codebook) / paddle.clip(y.sum(axis=1, keepdim=True), min=1.0)
        return paddle.where(mean == 0, self.random_centre.unsqueeze(0).expand_as(mean), paddle.sign(mean))

    def forward(self, u, labels, indices=None):
        target = (self.centres(labels) + 1) / 2
        bce = F.binary_cross_entropy_with_logits(2 * u, target)
        quantization = ((paddle.abs(paddle.tanh(u)) - 1) ** 2).mean()
        return bce + self.lam * quantization


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

    def similarity(self, u):
        return cosine_logits(u, self.codebook)

    def margin_logits(self, u, y):
        cos = self.similarity(u)
        if self.loss_type == "cos":
            return self.s * (cos - self.m * y)
        theta = paddle.acos(paddle.clip(cos, -0.99999, 0.99999))
        return self.s * paddle.cos(theta + self.m * y)

    def forward(self, u, labels, indices=None):
        y = labels.astype("float32")
        target = y / paddle.clip(y.sum(axis=1, keepdim=True), min=1.0)
        log_p = F.log_softmax(self.margin_logits(u, y), axis=1)
        return -(target * log_p).sum(axis=1).mean()


class RelaHashLoss(OrthoHashLoss):
    """RelaHash (Minh et al., IEEE Access 2023): OrthoHash's loss with the cosine replaced by the
    relative similarity z*·c*ᵀ, where z* = (z − mean(z)) / ‖z − mean(z)‖_F is the batch's relative
    position (mean over every element of the batch, Frobenius norm over the batch, as in the official
    code) and c* the codebook rows scaled to unit length. Margin logits β·(z*·c*ᵀ − m·y); single-label
    CE, multi-label label-smoothing CE (as OrthoHash). Paper defaults β 8, m 0.5.
    """

    def __init__(self, codebook, scale=8.0, margin=0.5):
        super().__init__(codebook, scale=scale, margin=margin, loss_type="cos")

    def similarity(self, u):
        z = u - u.mean()
        z = z / paddle.clip(paddle.sqrt((z * z).sum()), min=1e-12)
        return paddle.matmul(z, F.normalize(self.codebook, axis=1), transpose_y=True)
