"""ConvNeXt as torchvision's `models/convnext.py`, in Paddle, up to the features its classifier's Linear
receives: avgpool → LayerNorm2d (`classifier.0`) → flatten (768-d for ConvNeXt-T).

Module names and shapes are torchvision's (`features.0.0` stem conv, `features.0.1` LayerNorm2d,
`features.1.0.block.{0,2,3,5}` depthwise 7×7 conv / LayerNorm / Linear / Linear, `...layer_scale`
(dim, 1, 1), `features.2.{0,1}` downsampling LayerNorm2d + 2×2 conv, `classifier.0`), so a torchvision
`state_dict()` maps one to one (models/swin_convnext_weights.py). CNBlock: x + drop_path(layer_scale ·
block(x)); stochastic depth rises linearly over the blocks to `stochastic_depth_prob` (torchvision's
`convnext_tiny` builder: 0.1), identity in eval mode. LayerNorms have eps 1e-6 as there.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.stochastic_depth import Permute, StochasticDepth

# torchvision ConvNeXt_Tiny_Weights.IMAGENET1K_V1.transforms: ImageClassification(crop_size=224,
# resize_size=236), whose interpolation default is BILINEAR; ImageNet mean / std
# what torchvision's IMAGENET1K_V1 weights expect: the filter and mean/std go into every run's
# preprocessing (models.backbones.backbone_preprocess); the sizes stay the data set's (lite images
# are 64 px), torchvision evaluates at resize 236 / crop 224 (REFERENCE_SIZES)
CONVNEXT_TINY_PREPROCESS = {"interpolation": "bilinear", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
CONVNEXT_TINY_REFERENCE_SIZES = {"resize_size": 236, "crop_size": 224}


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (torchvision's `LayerNorm2d`)."""

    def forward(self, x):
        x = x.transpose([0, 2, 3, 1])
        x = F.layer_norm(x, self._normalized_shape, self.weight, self.bias, self._epsilon)
        return x.transpose([0, 3, 1, 2])


class CNBlock(nn.Layer):
    def __init__(self, dim, layer_scale, stochastic_depth_prob):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2D(dim, dim, kernel_size=7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, epsilon=1e-6),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = self.create_parameter(
            [dim, 1, 1], attr=paddle.ParamAttr(initializer=nn.initializer.Constant(layer_scale)))
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)

    def forward(self, x):
        return self.stochastic_depth(self.layer_scale * self.block(x)) + x


class CNBlockConfig:
    """torchvision's CNBlockConfig: a stage's channels, the next stage's (None: last) and its depth."""

    def __init__(self, input_channels, out_channels, num_layers):
        self.input_channels = input_channels
        self.out_channels = out_channels
        self.num_layers = num_layers

    def __repr__(self):
        return (f"CNBlockConfig(input_channels={self.input_channels}, out_channels={self.out_channels}, "
                f"num_layers={self.num_layers})")


class ConvNeXt(nn.Layer):
    """torchvision's `ConvNeXt(block_setting, stochastic_depth_prob, layer_scale)` without the
    classifier's Linear (`classifier.2`)."""

    preprocess = CONVNEXT_TINY_PREPROCESS
    reference_sizes = CONVNEXT_TINY_REFERENCE_SIZES

    def __init__(self, block_setting, stochastic_depth_prob=0.0, layer_scale=1e-6):
        super().__init__()
        if not block_setting:
            raise ValueError("The block_setting should not be empty")
        if not all(isinstance(s, CNBlockConfig) for s in block_setting):
            raise TypeError("The block_setting should be List[CNBlockConfig]")
        first = block_setting[0].input_channels
        layers = [nn.Sequential(nn.Conv2D(3, first, kernel_size=4, stride=4, padding=0),
                                LayerNorm2d(first, epsilon=1e-6))]
        total = sum(cnf.num_layers for cnf in block_setting)
        block_id = 0
        for cnf in block_setting:
            stage = []
            for _ in range(cnf.num_layers):
                sd_prob = stochastic_depth_prob * block_id / max(total - 1.0, 1.0)
                stage.append(CNBlock(cnf.input_channels, layer_scale, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if cnf.out_channels is not None:
                layers.append(nn.Sequential(LayerNorm2d(cnf.input_channels, epsilon=1e-6),
                                            nn.Conv2D(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2)))
        self.features = nn.Sequential(*layers)
        last = block_setting[-1]
        self.out_dim = last.out_channels if last.out_channels is not None else last.input_channels
        self.classifier = nn.Sequential(LayerNorm2d(self.out_dim, epsilon=1e-6), nn.Flatten(1))
        # torchvision: every Conv2d and Linear trunc_normal(std=0.02) (Paddle truncates at ±2σ, torch at
        # ±2 absolute), biases 0
        init_w, init_b = nn.initializer.TruncatedNormal(0.0, 0.02), nn.initializer.Constant(0.0)
        for sub in self.sublayers():
            if isinstance(sub, (nn.Conv2D, nn.Linear)):
                init_w(sub.weight)
                if sub.bias is not None:
                    init_b(sub.bias)

    def forward(self, x):
        x = self.features(x).mean(axis=[2, 3], keepdim=True)  # AdaptiveAvgPool2d(1)
        return self.classifier(x)


def convnext_tiny(stochastic_depth_prob=0.1):
    """torchvision `convnext_tiny`: channels 96-192-384-768, depths 3-3-9-3, layer scale 1e-6, drop path 0.1."""
    setting = [CNBlockConfig(96, 192, 3), CNBlockConfig(192, 384, 3), CNBlockConfig(384, 768, 9),
               CNBlockConfig(768, None, 3)]
    return ConvNeXt(setting, stochastic_depth_prob=stochastic_depth_prob)
