"""Stochastic depth (drop path) as torchvision's `ops.StochasticDepth` in "row" mode, and `Permute`.

`StochasticDepth(p)` zeroes a residual branch for a random subset of the samples in a batch (each kept
with probability 1 − p and then scaled by 1 / (1 − p)); it is the identity in eval mode and when p = 0.
It subclasses `nn.Dropout` (it *is* a dropout, of whole residual branches) so that
`models.heads.remove_dropout` — what `--no-backbone-dropout` does — turns it off in training as well.
"""
import paddle
import paddle.nn as nn


class StochasticDepth(nn.Dropout):
    def __init__(self, p):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
        super().__init__(p=p)

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        noise = paddle.bernoulli(paddle.full([x.shape[0]] + [1] * (x.ndim - 1), survival, dtype=x.dtype))
        if survival > 0.0:
            noise = noise / survival
        return x * noise

    def extra_repr(self):
        return f"p={self.p}, mode=row"


class Permute(nn.Layer):
    """torchvision's `ops.misc.Permute` (a layer without parameters, so module indices match)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = list(dims)

    def forward(self, x):
        return paddle.transpose(x, self.dims)
