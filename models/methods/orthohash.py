"""OrthoHash (Hoe et al., NeurIPS 2021), as kamwoh/orthohash trains it (`main.py`, `configs.py`,
`orthohash:models/alexnet.py`, `functions/loss/orthohash.py`): AlexNet fc7 → Linear(4096, bit, no bias) →
BatchNorm1d, cosine to a fixed codebook, Adam lr 1e-4 (backbone ×0.1), weight decay 5e-4, batch 256,
100 epochs, lr ×0.1 at 80% of training, codebook B, s 8, m 0.2, the last partial batch dropped.

Transforms (configs.py `dataset`, with `resize` 256 for NUS-WIDE and 224 otherwise, `crop` 224):
ImageNet-100 RandomResizedCrop(224) + flip, tested as it is stored (224×224); COCO Resize(224) +
RandomCrop(224) + flip, tested with Resize(224); NUS-WIDE Resize(256) + RandomCrop(224) + flip, tested
with Resize(256) + CenterCrop(224); CIFAR Resize(224), flip + ColorJitter(0.05, 0.05). The repository
keeps NUS-WIDE and ImageNet-100 pre-resized to squares (`orthohash:utils/datasets.py`: 256×256, 224×224), so the
recipes resize to squares there; its test-time Resize(224) without a crop only batches square images,
so a center crop follows it here (identical on square images).

Multi-label data: the paper's label-smoothing CE (`--label-mode smooth`, the default). The released code
trains only NUS-WIDE as multi-label (`'multiclass': args.ds == 'nuswide'`) and COCO as single-label,
CE on each image's first label; `--label-mode first` selects that.
"""
from models.heads import BatchNormHead
from models.losses import CodebookCELoss, cosine_logits
from models.methods.base import (CODEBOOK_OPTION, LABEL_MODE_OPTION, MARGIN_OPTION, OFFICIAL, PAPER, SCALE_OPTION,
                                 SHORTER_CROP, Method, Option, Recipe, Rule, always, register)

REPO = "kamwoh/orthohash"
# configs.py `dataset()`; RelaHash's configs.py is the same code (models/methods/relahash.py)
TRANSFORM_RULES = (
    Rule(dict(dataset="coco"), dict(resize_size=224, crop_size=224, **SHORTER_CROP),
         f"{OFFICIAL}: {REPO} configs.py (coco: Resize(224) + RandomCrop(224) + flip)"),
    Rule(dict(dataset="nuswide"), dict(resize_size=256, crop_size=224, resize_mode="square", train_augment="crop_flip",
                                       eval_crop="center"),
         f"{OFFICIAL}: {REPO} configs.py (nuswide, 256×256 images: Resize(256) + RandomCrop(224) + flip)"),
    Rule(dict(dataset="imagenet"), dict(resize_size=224, crop_size=224, resize_mode="square",
                                        train_augment="resized_crop_flip", eval_crop="center"),
         f"{OFFICIAL}: {REPO} configs.py (imagenet100, 224×224 images: RandomResizedCrop(224) + flip)"),
    Rule(dict(dataset="cifar10"), dict(resize_size=224, crop_size=224, resize_mode="square",
                                       train_augment="flip_jitter", eval_crop="center"),
         f"{OFFICIAL}: {REPO} configs.py (cifar: Resize(224), flip + ColorJitter(0.05, 0.05))"),
)


class OrthoHashLoss(CodebookCELoss):
    """CE over scaled cosine similarities to a fixed ±1 codebook (one row per class), with a cosine
    ("cos": s·(cos θ − m·y)) or angular ("arc": s·cos(θ + m·y)) margin on the true classes
    (models/losses.py CodebookCELoss)."""

    def __init__(self, codebook, scale=8.0, margin=0.2, loss_type="cos", label_mode="smooth"):
        super().__init__(codebook, scale, margin, loss_type, label_mode)

    def similarity(self, u):
        return cosine_logits(u, self.codebook)


register(Method(
    name="orthohash",
    summary="OrthoHash (NeurIPS 2021): cosine to a fixed orthogonal codebook, one CE loss",
    build_head=lambda in_dim, cfg, codebook: BatchNormHead(in_dim, cfg["bit"], codebook,
                                                           unbiased=cfg["bn_variance"] == "unbiased"),
    build_loss=lambda cfg, head, num_train, gather=None: OrthoHashLoss(
        head.codebook.numpy(), scale=cfg["scale"], margin=cfg["margin"], loss_type=cfg["loss"],
        label_mode=cfg["label_mode"]),
    recipe=Recipe(
        rules=(
            always(dict(optimizer="adam", lr=1e-4, weight_decay=5e-4, epochs=100, batch_size=256, lr_step=None,
                        lr_gamma=0.1, backbone_lr_mult=0.1, head_lr_mult=1.0, codebook="B", margin=0.2, scale=8.0,
                        loss="cos", drop_last=True, bn_variance="unbiased", **SHORTER_CROP),
                   f"{OFFICIAL}: {REPO} main.py, configs.py, orthohash:models/alexnet.py (PyTorch BatchNorm1d)"),
            always(dict(label_mode="smooth"), f"{PAPER} (label-smoothing CE for multi-label data)"),
            *TRANSFORM_RULES,
        ),
        scratch=dict(lr=1e-3, batch_size=32),
    ),
    options=(CODEBOOK_OPTION, MARGIN_OPTION, SCALE_OPTION, LABEL_MODE_OPTION,
             Option("loss", str, "margin type, cosine 'cos' or angular 'arc'", ("cos", "arc"))),
    uses_codebook=True,
))
