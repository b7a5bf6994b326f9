"""HashNet (Cao et al., ICCV 2017): weighted pairwise likelihood with tanh continuation.

Recipe: the Paddle port this project follows (paddle_hashnet: SGD momentum 0.9, lr 1e-3 with the hash
layer ×10, weight decay 5e-4, batch 64, 150 epochs, lr ×0.5 every 50 epochs, α 0.1, continuation every
20 epochs; Resize(256) + RandomCrop(224) + flip, CenterCrop(224) at test, as DeepHash-pytorch's
`DeepHash-pytorch:utils/tools.py`). thuml/HashNet's released PyTorch code (`pytorch/src/train.py`, `network.py`,
`pre_process.py`) differs: α = 10/bit, a per-iteration scale (1 + 0.005·iter)^0.5 updated every 200
iterations, 10,000 iterations of two batch-36 loaders, nesterov SGD with lr ×0.5 every 2,000 iterations,
and ResizeImage(256×256) + RandomResizedCrop(224) at training, PlaceCrop(224) at test — docs/recipes.md
lists the flags that select its transform and α.
"""
import math

import paddle

from models.heads import LinearHead
from models.losses import PairwiseBankLoss, pair_nll
from models.methods.base import (DEEPHASH_CIFAR, DEEPHASH_CIFAR_SOURCE, PAPER, SHORTER_CROP, Method, Option, Recipe,
                                 Rule, always, register)


class HashNetLoss(PairwiseBankLoss):
    """Training output h = tanh(scale·u), scale = sqrt((epoch − 1) // step_continuation + 1), kept in the
    memory bank. For a pair (i, j): s_ij = [y_i·y_j > 0], d_ij = α·h_i·h_j,
        ℓ_ij = log(1 + e^{−|d_ij|}) + max(d_ij, 0) − s_ij·d_ij,
    weighted by S/S1 for similar and S/S0 for dissimilar pairs (S1, S0: their counts, S = S0 + S1);
    loss = Σ w_ij ℓ_ij / S.
    """

    def __init__(self, num_train, bit, num_labels, alpha=0.1, step_continuation=20, gather=None):
        super().__init__(num_train, bit, num_labels, gather)
        self.alpha = alpha
        self.step_continuation = step_continuation
        self.scale = 1.0

    def set_epoch(self, epoch):
        self.scale = math.sqrt((epoch - 1) // self.step_continuation + 1)

    def loss(self, u, labels, indices):
        h = paddle.tanh(self.scale * u)
        similar, seen = self.update_bank(h, labels, indices)
        pair_loss = pair_nll(self.alpha * paddle.matmul(h, self.U, transpose_y=True), similar)
        s1 = (similar * seen).sum()
        s0 = ((1 - similar) * seen).sum()
        s = s0 + s1
        weight = (similar * (s / paddle.clip(s1, min=1.0)) + (1 - similar) * (s / paddle.clip(s0, min=1.0))) * seen
        return (pair_loss * weight).sum() / s


register(Method(
    name="hashnet",
    summary="HashNet (ICCV 2017): pairwise weighted likelihood, tanh continuation",
    build_head=lambda in_dim, cfg, codebook: LinearHead(in_dim, cfg["bit"]),
    build_loss=lambda cfg, head, num_train, gather=None: HashNetLoss(
        num_train, cfg["bit"], cfg["num_labels"], alpha=cfg["alpha"], step_continuation=cfg["step_continuation"],
        gather=gather),
    recipe=Recipe(
        rules=(
            always(dict(optimizer="sgd", lr=1e-3, weight_decay=5e-4, epochs=150, batch_size=64, lr_step=50,
                        lr_gamma=0.5, backbone_lr_mult=1.0, head_lr_mult=10.0, alpha=0.1, step_continuation=20),
                   f"{PAPER}, as the Paddle port paddle_hashnet sets it (not thuml's code: module docstring)"),
            always(dict(drop_last=False, **SHORTER_CROP),
                   "DeepHash-pytorch HashNet.py / DeepHash-pytorch:utils/tools.py image_transform (= paddle_hashnet)"),
            Rule(dict(dataset="cifar10"), DEEPHASH_CIFAR, DEEPHASH_CIFAR_SOURCE),
        ),
        scratch=dict(lr=3e-4, head_lr_mult=1.0, batch_size=32),
    ),
    options=(
        Option("alpha", float, "HashNet: scale α of the inner product in the pairwise likelihood"),
        Option("step-continuation", int, "HashNet: epochs per continuation step (tanh scale sqrt(k+1))"),
    ),
))
