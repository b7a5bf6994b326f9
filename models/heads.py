"""Hash heads: backbone features → continuous code u (sign(u) is the binary code)."""
import numpy as np
import paddle
import paddle.nn as nn


def _normal(std):
    return paddle.ParamAttr(initializer=nn.initializer.Normal(0.0, std))


class LinearHead(nn.Layer):
    """Linear(feat, bit) with bias — HashNet and DPSH (the losses squash it with tanh where the method
    does). `codebook`: optional frozen ±1 target codes, one row per class (CSQ checkpoints written before
    its official head was followed), kept as a persistable buffer so that they travel with the weights."""

    def __init__(self, in_dim, bit, codebook=None):
        super().__init__()
        self.fc = nn.Linear(in_dim, bit, weight_attr=_normal(0.01),
                            bias_attr=paddle.ParamAttr(initializer=nn.initializer.Constant(0.0)))
        if codebook is not None:
            self.register_buffer("codebook", paddle.to_tensor(np.asarray(codebook, np.float32)))

    def forward(self, feat):
        return self.fc(feat)


class BatchNorm1D(nn.BatchNorm1D):
    """Paddle's BatchNorm1D, whose running variance is updated with the *biased* batch variance, or with
    `unbiased=True` PyTorch's rule: running_var ← m·running_var + (1 − m)·var_batch·n/(n − 1). The
    batch is normalised with the biased variance in both (as in both frameworks); evaluation is
    Paddle's own kernel."""

    def __init__(self, num_features, momentum=0.9, unbiased=True):
        super().__init__(num_features, momentum=momentum)
        self.unbiased = unbiased

    def forward(self, x):
        if not (self.training and self.unbiased):
            return super().forward(x)
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)
        out = (x - mean) / paddle.sqrt(var + self._epsilon) * self.weight + self.bias
        n = x.shape[0]
        with paddle.no_grad():
            m = self._momentum
            paddle.assign(m * self._mean + (1 - m) * mean.detach(), output=self._mean)
            paddle.assign(m * self._variance + (1 - m) * var.detach() * (n / max(n - 1, 1)), output=self._variance)
        return out


class BatchNormHead(nn.Layer):
    """Linear(feat, bit, no bias, N(0, 0.01)) → BatchNorm1D, with a frozen ±1 codebook (one row per
    class) as a persistable buffer — OrthoHash and RelaHash; their losses score the output against it.
    `unbiased`: PyTorch's running-variance update, as the official code has (checkpoints written before
    it: Paddle's biased one)."""

    def __init__(self, in_dim, bit, codebook, unbiased=True):
        super().__init__()
        self.fc = nn.Linear(in_dim, bit, weight_attr=_normal(0.01), bias_attr=False)
        self.bn = BatchNorm1D(bit, momentum=0.9, unbiased=unbiased)  # = PyTorch's momentum 0.1
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


def remove_dropout(layer):
    """Replace every Dropout inside `layer` by an identity — what a Dropout in eval mode computes — so
    that it stays off in training too (RelaHash's `AlexNet.train()` keeps its dropout in eval mode)."""
    for name, sub in list(layer._sub_layers.items()):
        if isinstance(sub, nn.Dropout):
            layer._sub_layers[name] = nn.Identity()
        else:
            remove_dropout(sub)


def torch_linear(in_dim, out_dim, bias=True):
    """Linear with PyTorch's default initialisation: weight and bias U(−1/√in, 1/√in)."""
    bound = 1.0 / np.sqrt(in_dim)
    init = paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))
    bias_attr = paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)) if bias else False
    return nn.Linear(in_dim, out_dim, weight_attr=init, bias_attr=bias_attr)


class TrainExtrasHead(nn.Layer):
    """A hash layer `fc` whose training output carries, after the `bit` code columns, what the method's
    loss needs besides the code — `extras(feat, u)`: the backbone features (unsupervised GreedyHash,
    BiHalf) or a classifier's logits (GreedyHash, DSHSD). Everything then flows through the model's
    forward (and DataParallel's); in evaluation and export the output is the code u alone. Losses split
    it with `split_extras`."""

    def __init__(self, fc, extras=None, **layers):
        super().__init__()
        self.fc = fc
        for name, layer in layers.items():
            setattr(self, name, layer)
        self._extras = extras

    def forward(self, feat):
        u = self.fc(feat)
        if not self.training:
            return u
        return paddle.concat([u, self._extras(self, feat, u)], axis=1)


def split_extras(out, bit):
    """(u, extras) of a TrainExtrasHead training output."""
    return out[:, :bit], out[:, bit:]
