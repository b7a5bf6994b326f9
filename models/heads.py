"""Hash heads: backbone features → continuous code u (sign(u) is the binary code)."""
import numpy as np
import paddle
import paddle.nn as nn


def _normal(std):
    return paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, std))


class LinearHead(nn.Layer):
    """Linear(feat, bit) with bias — HashNet, DPSH and CSQ (the losses squash it with tanh where the
    method does). `codebook`: optional frozen ±1 target codes, one row per class (CSQ's hash centres),
    kept as a persistable buffer so that they travel with the weights."""

    def __init__(self, in_dim, bit, codebook=None):
        super().__init__()
        self.fc = nn.Linear(in_dim, bit, weight_attr=_normal(0.01),
                            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))
        if codebook is not None:
            self.register_buffer("codebook", paddle.to_tensor(np.asarray(codebook, np.float32)))

    def forward(self, feat):
        return self.fc(feat)


class BatchNormHead(nn.Layer):
    """Linear(feat, bit, no bias, N(0, 0.01)) → BatchNorm1D, with a frozen ±1 codebook (one row per
    class) as a persistable buffer — OrthoHash and RelaHash; their losses score the output against it."""

    def __init__(self, in_dim, bit, codebook):
        super().__init__()
        self.fc = nn.Linear(in_dim, bit, weight_attr=_normal(0.01), bias_attr=False)
        self.bn = nn.BatchNorm1D(bit, momentum=0.9)  # = PyTorch's momentum 0.1
        self.register_buffer("codebook", paddle.to_tensor(np.asarray(codebook, np.float32)))

    def forward(self, feat):
        return self.bn(self.fc(feat))


class HashModel(nn.Layer):
    """backbone → head. `forward` returns the continuous code; this is also what gets exported."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x):
        return self.head(self.backbone(x))
