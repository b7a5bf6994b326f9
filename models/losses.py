"""What the hashing losses share; each method's own loss lives in its module (models/methods/<name>.py).

A loss is a `paddle.nn.Layer` called as `criterion(u, labels, indices)` where `u` is the continuous
code (the model's output, before sign; a head's extra outputs follow the code's columns), `labels` the
0/1 label rows of the batch and `indices` the batch's positions in the training list. `HashLoss.forward`
checks the batch and casts the labels to float32 once, then calls the method's `loss(u, y, indices)`:
methods implement `loss`, never `forward`, and get float32 labels. `set_epoch(epoch)` (1-based) lets a
loss follow a schedule. Losses that keep a memory bank over the training set (PairwiseBankLoss) take
the `gather` that concatenates a batch tensor over every process in their constructor (the engine
passes `Env.gather_tensor`; the identity on one process). Each loss is tested against its formula
written plainly in numpy (tests/test_losses.py).
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


def check_batch(u, labels=None, indices=None):
    """(u, labels as float32, indices) of a batch after checking their shapes agree: u (B, D) codes,
    labels (B, C) 0/1 rows (or None: unsupervised), indices (B,) training-list positions (or None).
    A wrong shape is a programming error, so ValueError (never reached from the command line)."""
    if not isinstance(u, paddle.Tensor) or u.ndim != 2:
        raise ValueError(f"a hashing loss takes the codes as a 2-D tensor (batch, bits), got "
                         f"{getattr(u, 'shape', type(u).__name__)}")
    n = u.shape[0]
    if labels is not None:
        if not isinstance(labels, paddle.Tensor) or labels.ndim != 2 or labels.shape[0] != n:
            raise ValueError(f"labels must be a 2-D tensor with one row per code ({n}), got "
                             f"{getattr(labels, 'shape', type(labels).__name__)}")
        if labels.dtype != paddle.float32:
            labels = labels.astype("float32")
    if indices is not None and (not isinstance(indices, paddle.Tensor) or indices.ndim != 1
                                or indices.shape[0] != n):
        raise ValueError(f"indices must be a 1-D tensor with one position per code ({n}), got "
                         f"{getattr(indices, 'shape', type(indices).__name__)}")
    return u, labels, indices


def _same(t):
    return t


class HashLoss(nn.Layer):
    """Base of every method's loss: `forward` checks and casts the batch once (check_batch), then calls
    `loss(u, y, indices)` with float32 labels `y`. No schedule by default."""

    def forward(self, u, labels=None, indices=None):
        return self.loss(*check_batch(u, labels, indices))

    def loss(self, u, labels, indices):
        raise NotImplementedError(f"{type(self).__name__} defines no loss(u, labels, indices)")

    def set_epoch(self, epoch):
        pass


class PairwiseBankLoss(HashLoss):
    """Base of the pairwise methods (HashNet, DPSH): a memory bank keeps the latest code and labels of
    every training image, and the batch is compared with every image already in the bank. Bank rows
    not yet filled are left out (the DeepHash-pytorch code counts them as dissimilar pairs with zero
    inner product, which only skews the first epoch).

    `gather` turns a batch tensor into its concatenation over every process (rank order), so that each
    process's bank holds every process's batch; None (one process): the tensor itself."""

    def __init__(self, num_train, bit, num_labels, gather=None):
        super().__init__()
        self.gather = gather or _same
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
        """Store the batch (float32 `labels`), then the mean over (batch, filled bank row) pairs of
        −log p(s_ij | θ_ij) for p(s = 1) = σ(θ), θ_ij = scale·u_i·U_j (DPSH and DHN, as DeepHash-pytorch
        computes it)."""
        similar, seen = self.update_bank(u, labels, indices)
        pair = pair_nll(scale * paddle.matmul(u, self.U, transpose_y=True), similar)
        return (pair * seen).sum() / paddle.clip(seen.sum() * u.shape[0], min=1.0)


def pair_nll(dot, similar):
    """−log p(s | dot) for p(s=1) = σ(dot), in the stable form log(1 + e^{−|d|}) + max(d, 0) − s·d."""
    return paddle.log1p(paddle.exp(-paddle.abs(dot))) + F.relu(dot) - similar * dot


def batch_similar(y):
    """s_ij = [y_i·y_j > 0] within a batch (share a label), (B, B) 0/1; `y` float32 label rows."""
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

    def loss(self, u, y, indices=None):
        if self.label_mode == "first":
            first = F.one_hot(paddle.argmax(y, axis=1), y.shape[1]).astype("float32")
            y = first * (y.sum(axis=1, keepdim=True) > 0).astype("float32")
        target = y / paddle.clip(y.sum(axis=1, keepdim=True), min=1.0)
        log_p = F.log_softmax(self.margin_logits(u, y), axis=1)
        return -(target * log_p).sum(axis=1).mean()
