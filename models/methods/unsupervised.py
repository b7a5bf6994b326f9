"""Unsupervised GreedyHash (Su et al., NeurIPS 2018) and BiHalf (Li & van Gemert, AAAI 2021), as
swuxyj/DeepHash-pytorch `Unsupervised_GreedyHash.py` and `Unsupervised_BiHalf.py` train them: a frozen
VGG-16 up to fc7 (`--backbone vgg16 --freeze-backbone`; the recipe freezes whichever backbone is
chosen), a hash layer Linear(4096, bit) with PyTorch's initialisation, and a loss that matches the
cosine similarity of the codes of the batch's first half with its second half to that of their
features — no labels, no second view. SGD momentum 0.9 lr 1e-4 ×0.1 every 30 epochs, weight decay
5e-4, batch 64, 200 epochs; GreedyHash α 0.1, BiHalf γ 6. Codes at test time: sign of the hash layer.
The references pair image i with image i + n/2; an odd last image of a batch is left out here (the
references would fail on it).
"""
import paddle

from models.heads import TrainExtrasHead, split_extras, torch_linear
from models.losses import HashLoss, sign_straight_through
from models.methods.base import Method, Option, Recipe, always, deephash_rules, register
from models.methods.greedyhash import cubic_penalty

SOURCE = "official code: DeepHash-pytorch Unsupervised_{}.py get_config, GreedyHashModelUnsupervised"


def _features(head, feat, u):
    return feat


def build_head(in_dim, cfg, codebook):
    """Linear(feat, bit); in training its output carries the backbone features the loss compares with."""
    return TrainExtrasHead(torch_linear(in_dim, cfg["bit"]), _features)


def rowwise_cosine(a, b, eps=1e-8):
    """cos(a_i, b_i) for each row pair (torch.nn.functional.cosine_similarity, norms clipped at eps)."""
    na = paddle.clip(paddle.sqrt((a * a).sum(axis=1)), min=eps)
    nb = paddle.clip(paddle.sqrt((b * b).sum(axis=1)), min=eps)
    return (a * b).sum(axis=1) / (na * nb)


def half_pair_mse(b, x):
    """mean_i (cos(b_i, b_{i+n}) − cos(x_i, x_{i+n}))², n = half the batch."""
    n = b.shape[0] // 2
    return ((rowwise_cosine(b[:n], b[n:2 * n]) - rowwise_cosine(x[:n], x[n:2 * n])) ** 2).mean()


class UnsupervisedGreedyHashLoss(HashLoss):
    """b = sign(h) with a straight-through gradient; loss = half_pair_mse(b, features) + α·mean | |h| − 1 |³."""

    def __init__(self, bit, alpha=0.1):
        super().__init__()
        self.bit, self.alpha = bit, alpha

    def loss(self, out, labels=None, indices=None):
        h, x = split_extras(out, self.bit)
        return half_pair_mse(sign_straight_through(h), x) + self.alpha * cubic_penalty(h)


class _BiHalf(paddle.autograd.PyLayer):
    """BiHalf's `Hash` Function: per bit, the batch's larger half of h → +1, the rest → −1 (the top
    floor(n/2) of a descending sort); gradient g + γ·(h − B)/numel."""

    @staticmethod
    def forward(ctx, h, gamma):
        n = h.shape[0]
        rank = paddle.argsort(paddle.argsort(-h, axis=0), axis=0)  # 0 = largest in its column
        b = paddle.where(rank < n // 2, paddle.ones_like(h), -paddle.ones_like(h))
        ctx.save_for_backward(h, b)
        ctx.gamma = gamma
        return b

    @staticmethod
    def backward(ctx, grad):
        h, b = ctx.saved_tensor()
        return grad + ctx.gamma * (h - b) / float(h.shape[0] * h.shape[1])


def bihalf(h, gamma):
    """The BiHalf median split of a batch of codes (see _BiHalf)."""
    return _BiHalf.apply(h, gamma)


class BiHalfLoss(HashLoss):
    """B = bihalf(h) (median split per bit, extra gradient γ·(h − B)/numel); loss = half_pair_mse(B, features)."""

    def __init__(self, bit, gamma=6.0):
        super().__init__()
        self.bit, self.gamma = bit, gamma

    def loss(self, out, labels=None, indices=None):
        h, x = split_extras(out, self.bit)
        return half_pair_mse(bihalf(h, self.gamma), x)


def _rules(name, **values):
    return (*deephash_rules(f"Unsupervised_{name}.py", optimizer="sgd", lr=1e-4, weight_decay=5e-4, epochs=200,
                            batch_size=64, lr_step=30, lr_gamma=0.1, **values),
            always(dict(freeze_backbone=True), SOURCE.format(name) + " (VGG-16 parameters frozen)"))


SCRATCH = dict(lr=1e-3, batch_size=32)

register(Method(
    name="greedyhash_unsup",
    summary="GreedyHash unsupervised (NeurIPS 2018): codes' cosine similarities match the features'",
    build_head=build_head,
    build_loss=lambda cfg, head, num_train, gather=None: UnsupervisedGreedyHashLoss(cfg["bit"],
                                                                                    alpha=cfg["alpha"]),
    recipe=Recipe(rules=_rules("GreedyHash", alpha=0.1), scratch=SCRATCH),
    options=(Option("alpha", float, "DSH/DSHSD/GreedyHash: weight α of the regulariser"),),
    supervised=False,
))

register(Method(
    name="bihalf",
    summary="BiHalf unsupervised (AAAI 2021): per-bit median split of the batch, cosine similarities matched",
    build_head=build_head,
    build_loss=lambda cfg, head, num_train, gather=None: BiHalfLoss(cfg["bit"], gamma=cfg["gamma"]),
    recipe=Recipe(rules=_rules("BiHalf", gamma=6.0), scratch=SCRATCH),
    options=(Option("gamma", float, "BiHalf: weight γ of the extra (h − B) gradient"),),
    supervised=False,
))
