"""Backbones: image → flat feature vector. Each has `out_dim`; `build_backbone(name)` sets `arch`.

AlexNet follows torchvision's layout (`features` / `avgpool` / `classifier`), VGG-16 follows
`paddle.vision.models.vgg16`'s names (the same as torchvision's) and ResNets wrap
`paddle.vision.models.resnet*`. ImageNet weights from torchvision, paddle.vision, PaddleClas or
safetensors files are mapped onto them by `models/weights.py`. The last ImageNet classification layer
is dropped: the hash head takes its place.
"""
import paddle
import paddle.nn as nn

from models.convnext import convnext_tiny
from models.swin import swin_t
from models.vit import VIT_BACKBONES
from utils.errors import UserError


def pool_to(x, pool, size):
    """`pool` (AdaptiveAvgPool2D(size)) in a form that exports to ONNX for any input size: identity when
    the map already is size×size (224 px input), tiling when it is 1×1 (small inputs such as the 64 px
    lite data) — both equal the adaptive pool — and the adaptive pool itself otherwise."""
    h, w = x.shape[2], x.shape[3]
    if (h, w) == (size, size):
        return x
    if (h, w) == (1, 1):
        return paddle.tile(x, [1, 1, size, size])
    return pool(x)


class AlexNet(nn.Layer):
    """AlexNet up to fc7 (4096-d), torchvision names: features.*, classifier.1 (fc6), classifier.4 (fc7)."""

    out_dim = 4096

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2D(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(),
            nn.MaxPool2D(kernel_size=3, stride=2),
            nn.Conv2D(64, 192, kernel_size=5, padding=2), nn.ReLU(),
            nn.MaxPool2D(kernel_size=3, stride=2),
            nn.Conv2D(192, 384, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2D(384, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.Conv2D(256, 256, kernel_size=3, padding=1), nn.ReLU(),
            nn.MaxPool2D(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2D((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Dropout(), nn.Linear(4096, 4096), nn.ReLU(),
        )

    def forward(self, x):
        x = pool_to(self.features(x), self.avgpool, 6)
        return self.classifier(paddle.flatten(x, 1))


class VGG16(nn.Layer):
    """VGG-16 up to fc7 (4096-d), names as paddle.vision.models.vgg16 (features.*, classifier.0/3)."""

    out_dim = 4096

    def __init__(self):
        super().__init__()
        from paddle.vision.models.vgg import make_layers

        cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
        self.features = make_layers(cfg)
        self.avgpool = nn.AdaptiveAvgPool2D((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Dropout(),
            nn.Linear(4096, 4096), nn.ReLU(), nn.Dropout(),
        )

    def forward(self, x):
        x = pool_to(self.features(x), self.avgpool, 7)
        return self.classifier(paddle.flatten(x, 1))


class ResNet(nn.Layer):
    """paddle.vision ResNet without its fc layer; global-average-pooled features."""

    def __init__(self, depth):
        super().__init__()
        from paddle.vision.models import resnet

        self.net = getattr(resnet, f"resnet{depth}")(num_classes=0, with_pool=True)
        self.out_dim = 512 if depth in (18, 34) else 2048

    def forward(self, x):
        return paddle.flatten(self.net(x), 1)


BACKBONES = {
    "alexnet": AlexNet,
    "vgg16": VGG16,
    "resnet18": lambda: ResNet(18),
    "resnet34": lambda: ResNet(34),
    "resnet50": lambda: ResNet(50),
    "resnet101": lambda: ResNet(101),
    "swin_t": swin_t,  # models/swin.py
    "convnext_tiny": convnext_tiny,  # models/convnext.py
    **VIT_BACKBONES,  # models/vit.py
}


def backbone_preprocess(name):
    """The preprocessing a backbone declares (class attribute `preprocess`: mean, std, interpolation of
    utils/data/transforms.Preprocess), as cfg values; {} (ImageNet mean/std, the resize mode's filter)
    for a backbone that declares none."""
    return dict(getattr(BACKBONES.get(name), "preprocess", None) or {})


def build_backbone(name):
    if name not in BACKBONES:
        raise UserError(f"--backbone {name}: unknown backbone; choose one of {', '.join(BACKBONES)}")
    net = BACKBONES[name]()
    net.arch = name  # the weight loader (models/weights.py) picks the source layouts by it
    return net
