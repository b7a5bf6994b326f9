"""CSQ (Yuan et al., CVPR 2020), as yuanli2333/Hadamard-Matrix-for-hashing trains it (`train.py`,
`network.py`, `pre_process.py`, `options.py` and the README's commands):

- head: fc(d→d)–ReLU–fc(d→d)–ReLU–fc(d→bit)–tanh on the backbone's features (AlexNet fc7, d = 4096;
  the ResNet variant has a Dropout(0.5) after the first ReLU); tanh is applied by the loss here;
- Adam lr 1e-3 with the backbone ×0.01, no weight decay, batch 64, 90 epochs, lr ×0.7 every 10 epochs,
  λ 0.05 (README's ResNet-50 commands; COCO and NUS-WIDE with the backbone ×0.05); its AlexNet commands:
  lr 1e-4, λ 0.001 (0.0001 for ImageNet at 64 bits), backbone ×0.01;
- ResizeImage(255×255) + RandomResizedCrop(224) + flip for training, the 224 crop at offset 15 for
  testing; the last partial batch kept;
- centres: Hadamard rows [H; −H], random balanced codes beyond them (models/codebook.py), or the
  repository's own per-data-set files, `--codebook data/<ds>/hash_centers/<bit>_<ds>_<C>_class.pkl`.
"""
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.heads import LinearHead
from models.losses import HashLoss
from models.methods.base import (CODEBOOK_OPTION, DEEPHASH_CIFAR, DEEPHASH_CIFAR_SOURCE, OFFICIAL, QUANT_OPTION,
                                 Method, Option, Recipe, Rule, always, register)

REPO = "Hadamard-Matrix-for-hashing"
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def _torch_linear(in_dim, out_dim):
    """Linear with PyTorch's default initialisation: weight and bias U(−1/√in, 1/√in)."""
    bound = 1.0 / math.sqrt(in_dim)
    init = paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound))
    return nn.Linear(in_dim, out_dim, weight_attr=init,
                     bias_attr=paddle.ParamAttr(initializer=nn.initializer.Uniform(-bound, bound)))


class CSQHead(nn.Layer):
    """The official hash layer without its final tanh (the loss applies it; the sign is the same)."""

    def __init__(self, in_dim, bit, codebook, dropout=0.0):
        super().__init__()
        layers = [_torch_linear(in_dim, in_dim), nn.ReLU()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers += [_torch_linear(in_dim, in_dim), nn.ReLU(), _torch_linear(in_dim, bit)]
        self.mlp = nn.Sequential(*layers)
        self.register_buffer("codebook", paddle.to_tensor(np.asarray(codebook, np.float32)))

    def forward(self, feat):
        return self.mlp(feat)


def build_head(in_dim, cfg, codebook):
    if cfg["head"] == "linear":  # checkpoints written before the official head was followed
        return LinearHead(in_dim, cfg["bit"], codebook=codebook)
    return CSQHead(in_dim, cfg["bit"], codebook, dropout=cfg["head_dropout"])


class CSQLoss(HashLoss):
    """Binary cross-entropy between h = tanh(u), read as probabilities (h + 1)/2, and the image's hash
    centre (c + 1)/2, plus the quantization term λ·mean((|h| − 1)²).

    Centres: one ±1 row per class (the codebook). A multi-label image's centre is the sign of the mean of
    its labels' centres; bits where that mean is 0 (and images without labels) take the bits of one fixed
    random ±1 code drawn from `seed`, as in the CSQ code. (h + 1)/2 = σ(2u), so the BCE is computed from
    the logits 2u, which stays finite where tanh saturates.
    """

    def __init__(self, codebook, quant_weight=0.05, seed=0):
        super().__init__()
        codebook = np.asarray(codebook, np.float32)
        rnd = np.where(np.random.default_rng(seed).random(codebook.shape[1]) < 0.5, -1.0, 1.0).astype(np.float32)
        self.lam = quant_weight
        self.register_buffer("codebook", paddle.to_tensor(codebook), persistable=False)
        self.register_buffer("random_centre", paddle.to_tensor(rnd), persistable=False)

    def centres(self, y):
        """Each image's centre from its float32 label row `y`."""
        mean = paddle.matmul(y, self.codebook) / paddle.clip(y.sum(axis=1, keepdim=True), min=1.0)
        return paddle.where(mean == 0, self.random_centre.unsqueeze(0).expand_as(mean), paddle.sign(mean))

    def loss(self, u, labels, indices=None):
        target = (self.centres(labels) + 1) / 2
        bce = F.binary_cross_entropy_with_logits(2 * u, target)
        quantization = ((paddle.abs(paddle.tanh(u)) - 1) ** 2).mean()
        return bce + self.lam * quantization


register(Method(
    name="csq",
    summary="CSQ (CVPR 2020): BCE to Hadamard hash centres plus quantization",
    build_head=build_head,
    build_loss=lambda cfg, head, num_train, gather=None: CSQLoss(head.codebook.numpy(),
                                                                 quant_weight=cfg["quant_weight"], seed=cfg["seed"]),
    recipe=Recipe(
        rules=(
            always(dict(optimizer="adam", lr=1e-3, weight_decay=0.0, epochs=90, batch_size=64, lr_step=10,
                        lr_gamma=0.7, backbone_lr_mult=0.01, head_lr_mult=1.0, quant_weight=0.05),
                   f"{OFFICIAL}: {REPO} options.py, train.py (README ResNet-50 commands: --lambda2 0.05)"),
            always(dict(codebook="H", head="mlp", head_dropout=0.0, drop_last=False, resize_mode="square",
                        train_augment="resized_crop_flip", eval_crop="place"),
                   f"{OFFICIAL}: {REPO} train.py, network.py AlexNetFc, pre_process.py"),
            # the sizes of its real data sets; other presets (the 64 px lite data) keep their own
            Rule(dict(dataset=("coco", "nuswide", "imagenet")), dict(resize_size=255, crop_size=224),
                 f"{OFFICIAL}: {REPO} train.py, pre_process.py (ResizeImage 255, crop 224)"),
            Rule(dict(backbone=RESNETS), dict(head_dropout=0.5), f"{OFFICIAL}: {REPO} network.py Model (ResNet)"),
            Rule(dict(dataset=("coco", "nuswide"), backbone=RESNETS), dict(backbone_lr_mult=0.05),
                 f"{OFFICIAL}: {REPO} README ResNet-50 coco / nus_wide commands (--multi_lr 0.05)"),
            Rule(dict(backbone="alexnet"), dict(lr=1e-4, quant_weight=0.001),
                 f"{OFFICIAL}: {REPO} README AlexNet commands (--lr 0.0001 --lambda2 0.001)"),
            Rule(dict(backbone="alexnet", dataset="imagenet", bit=64), dict(quant_weight=0.0001),
                 f"{OFFICIAL}: {REPO} README AlexNet ImageNet 64-bit command (--lambda2 0.0001)"),
            Rule(dict(dataset="cifar10"), DEEPHASH_CIFAR,
                 DEEPHASH_CIFAR_SOURCE + f"; {REPO} has no CIFAR training"),
        ),
        scratch=dict(lr=1e-3, backbone_lr_mult=0.1, batch_size=32),
    ),
    options=(CODEBOOK_OPTION, QUANT_OPTION,
             Option("head", str, "CSQ: hash layer, 'mlp' (official: fc-relu-fc-relu-fc) or 'linear' (one fc)",
                    ("mlp", "linear")),
             Option("head-dropout", float, "CSQ: dropout after the hash layer's first ReLU (official ResNet: 0.5)")),
    uses_codebook=True,
    legacy=dict(head="linear", head_dropout=0.0),
))
