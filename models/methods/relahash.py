"""RelaHash (Minh et al., IEEE Access 2023), as thaiminhpv/RelaHash trains it (`main.py`, `configs.py`,
`networks/model.py`, `networks/relative_similarity.py`): OrthoHash's head and training code with the
cosine replaced by the relative similarity, Adam lr 1e-4 (backbone ×0.1), weight decay 5e-4, batch 16,
100 epochs, lr ×0.1 at 80%, max-Hamming centroids (our "O"), β 8, m 0.5, the last partial batch dropped,
and every Dropout of the AlexNet backbone kept in eval mode while training (its `AlexNet.train()`).
Transforms: its configs.py is OrthoHash's (ImageNet-100, NUS-WIDE, CIFAR); it has no COCO, for which
OrthoHash's is used.
"""
import paddle
import paddle.nn.functional as F

from models.heads import BatchNormHead
from models.losses import CodebookCELoss
from models.methods.base import (CODEBOOK_OPTION, LABEL_MODE_OPTION, MARGIN_OPTION, OFFICIAL, PAPER, SCALE_OPTION,
                                 SHORTER_CROP, Method, Recipe, always, register)
from models.methods.orthohash import TRANSFORM_RULES

REPO = "thaiminhpv/RelaHash"


class RelaHashLoss(CodebookCELoss):
    """OrthoHash's loss with the cosine replaced by the relative similarity z*·c*ᵀ, where
    z* = (z − mean(z)) / ‖z − mean(z)‖_F is the batch's relative position (mean over every element of the
    batch, Frobenius norm over the batch, as in the official code) and c* the codebook rows scaled to unit
    length. Margin logits β·(z*·c*ᵀ − m·y); CE / label-smoothing CE as OrthoHash. Paper defaults β 8, m 0.5.
    """

    def __init__(self, codebook, scale=8.0, margin=0.5, label_mode="smooth"):
        super().__init__(codebook, scale, margin, "cos", label_mode)

    def similarity(self, u):
        z = u - u.mean()
        z = z / paddle.clip(paddle.sqrt((z * z).sum()), min=1e-12)
        return paddle.matmul(z, F.normalize(self.codebook, axis=1), transpose_y=True)


register(Method(
    name="relahash",
    summary="RelaHash (IEEE Access 2023): relative position of the batch to normalised centroids, one CE loss",
    build_head=lambda in_dim, cfg, codebook: BatchNormHead(in_dim, cfg["bit"], codebook,
                                                           unbiased=cfg["bn_variance"] == "unbiased"),
    build_loss=lambda cfg, head, num_train, gather=None: RelaHashLoss(
        head.codebook.numpy(), scale=cfg["scale"], margin=cfg["margin"], label_mode=cfg["label_mode"]),
    recipe=Recipe(
        rules=(
            always(dict(optimizer="adam", lr=1e-4, weight_decay=5e-4, epochs=100, batch_size=16, lr_step=None,
                        lr_gamma=0.1, backbone_lr_mult=0.1, head_lr_mult=1.0, codebook="O", margin=0.5, scale=8.0,
                        drop_last=True, backbone_dropout=False, bn_variance="unbiased", **SHORTER_CROP),
                   f"{OFFICIAL}: {REPO} main.py, networks/model.py (AlexNet.train: dropout off)"),
            always(dict(label_mode="smooth"), f"{PAPER} (label-smoothing CE for multi-label data)"),
            *TRANSFORM_RULES,
        ),
        scratch=dict(lr=1e-3),
    ),
    options=(CODEBOOK_OPTION, MARGIN_OPTION, SCALE_OPTION, LABEL_MODE_OPTION),
    uses_codebook=True,
))
