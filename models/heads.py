"""Hash heads: backbone features → continuous code u (sign(u) is the binary code)."""
import numpy as np
import paddle
import paddle.nn as nn


def _normal(std):
    return paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, std))


class HashNetHead(nn.Layer):
    """HashNet: Linear(feat, bit). Training squashes it with tanh(scale·u) inside the loss."""

    def __init__(self, in_dim, bit):
        super().__init__()
        self.fc = nn.Linear(in_dim, bit, weight_attr=_normal(0.01),
                            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))

    def forward(self, feat):
        return self.fc(feat)


class OrthoHashHead(nn.Layer):
    """OrthoHash: Linear(feat, bit, no bias, N(0, 0.01)) → BatchNorm1D. The frozen ±1 codebook (one
    row per class) is a persistable buffer so that it travels with the weights; the loss scores
    cosine similarity to it."""

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
