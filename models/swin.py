"""Swin Transformer (V1) as torchvision's `torchvision:models/swin_transformer.py`, in Paddle, up to the features its
classification head receives: norm → permute → avgpool → flatten (768-d for Swin-T).

Module names and parameter shapes are torchvision's (`features.0.0` patch conv, `features.1.0.attn.qkv`,
`...attn.relative_position_bias_table`, `features.2.reduction`, `norm`, ...), so a torchvision
`state_dict()` maps one to one (models/swin_convnext_weights.py). As there:
- windows of `window_size`, shifted by half a window in every second block, with the attention mask of
  the shifted windows (−100 between tokens from different regions) and the relative position bias
  (a table of (2·Wh − 1)(2·Ww − 1) × heads, gathered by a fixed index, kept as a buffer as torchvision
  does so that the file's index loads too);
- a feature map that is not a multiple of the window is padded at the bottom / right (and cropped back
  after the attention), no shift where the window covers the whole padded map; PatchMerging pads odd
  sizes — so the 56/64 px lite images work;
- stochastic depth rising linearly over the blocks to `stochastic_depth_prob` (torchvision's `swin_t`
  builder: 0.2), identity in eval mode.
The shapes inside depend only on the image size, which is fixed in an export (`[None, 3, crop, crop]`);
the cyclic shift is written as slices + concat (what `torch.roll` computes), which exports to ONNX
opset 11.
"""
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from models.stochastic_depth import Permute, StochasticDepth

# torchvision Swin_T_Weights.IMAGENET1K_V1.transforms: ImageClassification(crop_size=224, resize_size=232,
# interpolation=BICUBIC), ImageNet mean / std
# what torchvision's IMAGENET1K_V1 weights expect: the filter and mean/std go into every run's
# preprocessing (models.backbones.backbone_preprocess); the sizes stay the data set's (lite images
# are 64 px), torchvision evaluates at resize 232 / crop 224 (REFERENCE_SIZES)
SWIN_T_PREPROCESS = {"interpolation": "bicubic", "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
SWIN_T_REFERENCE_SIZES = {"resize_size": 232, "crop_size": 224}


def _trunc_normal(std=0.02):
    return paddle.ParamAttr(initializer=nn.initializer.TruncatedNormal(0.0, std))


def _roll(x, shift, axis):
    """`torch.roll(x, shift, axis)` (out[i] = x[(i − shift) mod n]) for a static axis size, as two slices."""
    n = x.shape[axis]
    k = shift % n
    if k == 0:
        return x
    return paddle.concat([paddle.slice(x, [axis], [n - k], [n]), paddle.slice(x, [axis], [0], [n - k])], axis=axis)


def _pad_hw(x, pad_b, pad_r):
    """Zero-pad a [B, H, W, C] map at the bottom (H) and right (W), as torchvision's F.pad(x, (0, 0, 0, r, 0, b)).
    Written as a concat of zeros: Paddle Inference's oneDNN pad kernel corrupts memory on this graph
    (Paddle 3.3.1, CPU)."""
    if pad_b:
        x = paddle.concat([x, paddle.tile(paddle.zeros_like(x[:, :1]), [1, pad_b, 1, 1])], axis=1)
    if pad_r:
        x = paddle.concat([x, paddle.tile(paddle.zeros_like(x[:, :, :1]), [1, 1, pad_r, 1])], axis=2)
    return x


def relative_position_index(window_size):
    """torchvision's `define_relative_position_index`: (Wh·Ww)² indices into the bias table."""
    wh, ww = window_size
    coords = np.stack(np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0).copy()
    rel[:, :, 0] += wh - 1
    rel[:, :, 1] += ww - 1
    rel[:, :, 0] *= 2 * ww - 1
    return rel.sum(-1).reshape(-1).astype(np.int64)


def shifted_window_mask(pad_h, pad_w, window_size, shift_size):
    """The attention mask of the shifted windows (num_windows, N, N): 0 within a region, −100 across
    regions, built as torchvision builds it (numpy slices have torch's semantics here)."""
    wh, ww = window_size
    mask = np.zeros((pad_h, pad_w), np.float32)
    h_slices = ((0, -wh), (-wh, -shift_size[0]), (-shift_size[0], None))
    w_slices = ((0, -ww), (-ww, -shift_size[1]), (-shift_size[1], None))
    count = 0
    for h in h_slices:
        for w in w_slices:
            mask[h[0]:h[1], w[0]:w[1]] = count
            count += 1
    num_windows = (pad_h // wh) * (pad_w // ww)
    mask = mask.reshape(pad_h // wh, wh, pad_w // ww, ww).transpose(0, 2, 1, 3).reshape(num_windows, wh * ww)
    diff = mask[:, None, :] - mask[:, :, None]
    return np.where(diff != 0, -100.0, 0.0).astype(np.float32)


class ShiftedWindowAttention(nn.Layer):
    """Window multi-head self-attention with relative position bias (W-MSA / SW-MSA), input [B, H, W, C]."""

    def __init__(self, dim, window_size, shift_size, num_heads, qkv_bias=True, proj_bias=True,
                 attention_dropout=0.0, dropout=0.0):
        super().__init__()
        if len(window_size) != 2 or len(shift_size) != 2:
            raise ValueError("window_size and shift_size must be of length 2")
        self.window_size = list(window_size)
        self.shift_size = list(shift_size)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3, bias_attr=None if qkv_bias else False)
        self.proj = nn.Linear(dim, dim, bias_attr=None if proj_bias else False)
        n_rel = (2 * window_size[0] - 1) * (2 * window_size[1] - 1)
        self.relative_position_bias_table = self.create_parameter([n_rel, num_heads], attr=_trunc_normal())
        self.register_buffer("relative_position_index", paddle.to_tensor(relative_position_index(window_size)))

    def get_relative_position_bias(self):
        n = self.window_size[0] * self.window_size[1]
        bias = paddle.gather(self.relative_position_bias_table, self.relative_position_index)
        return bias.reshape([n, n, -1]).transpose([2, 0, 1]).unsqueeze(0)

    def forward(self, x):
        _, h, w, c = x.shape
        wh, ww = self.window_size
        pad_r, pad_b = (ww - w % ww) % ww, (wh - h % wh) % wh
        x = _pad_hw(x, pad_b, pad_r)
        pad_h, pad_w = h + pad_b, w + pad_r
        shift = list(self.shift_size)
        if wh >= pad_h:  # the window covers the whole map: no shift
            shift[0] = 0
        if ww >= pad_w:
            shift[1] = 0
        shifted = sum(shift) > 0
        if shifted:
            x = _roll(_roll(x, -shift[0], 1), -shift[1], 2)
        num_windows = (pad_h // wh) * (pad_w // ww)
        n, heads = wh * ww, self.num_heads
        x = x.reshape([-1, pad_h // wh, wh, pad_w // ww, ww, c]).transpose([0, 1, 3, 2, 4, 5])
        x = paddle.flatten(paddle.flatten(x, 3, 4), 0, 2)  # [B·nW, Wh·Ww, C]
        qkv = self.qkv(x).reshape([-1, n, 3, heads, c // heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * (c // heads) ** -0.5
        attn = paddle.matmul(q, k, transpose_y=True) + self.get_relative_position_bias()
        if shifted:
            mask = paddle.to_tensor(shifted_window_mask(pad_h, pad_w, self.window_size, shift))
            attn = attn.reshape([-1, num_windows, heads, n, n]) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.reshape([-1, heads, n, n])
        attn = F.softmax(attn, axis=-1)
        attn = F.dropout(attn, p=self.attention_dropout, training=self.training)
        x = paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([-1, n, c])
        x = F.dropout(self.proj(x), p=self.dropout, training=self.training)
        x = x.reshape([-1, pad_h // wh, pad_w // ww, wh, ww, c]).transpose([0, 1, 3, 2, 4, 5])
        x = x.reshape([-1, pad_h, pad_w, c])
        if shifted:
            x = _roll(_roll(x, shift[0], 1), shift[1], 2)
        if pad_b or pad_r:
            x = x[:, :h, :w, :]
        return x


class SwinTransformerBlock(nn.Layer):
    """norm1 → (shifted) window attention → drop path → + ; norm2 → MLP → drop path → + (V1, pre-norm)."""

    def __init__(self, dim, num_heads, window_size, shift_size, mlp_ratio=4.0, dropout=0.0, attention_dropout=0.0,
                 stochastic_depth_prob=0.0, norm_eps=1e-5):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=norm_eps)
        self.attn = ShiftedWindowAttention(dim, window_size, shift_size, num_heads,
                                           attention_dropout=attention_dropout, dropout=dropout)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob)
        self.norm2 = nn.LayerNorm(dim, epsilon=norm_eps)
        hidden = int(dim * mlp_ratio)
        # torchvision's ops.MLP: Linear, GELU, Dropout, Linear, Dropout (indices 0..4); its xavier init
        # is overridden by SwinTransformer's final init loop, as here
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def forward(self, x):
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        x = x + self.stochastic_depth(self.mlp(self.norm2(x)))
        return x


def _patch_merging_pad(x):
    h, w = x.shape[1], x.shape[2]
    x = _pad_hw(x, h % 2, w % 2)
    x0 = x[:, 0::2, 0::2, :]
    x1 = x[:, 1::2, 0::2, :]
    x2 = x[:, 0::2, 1::2, :]
    x3 = x[:, 1::2, 1::2, :]
    return paddle.concat([x0, x1, x2, x3], axis=-1)


class PatchMerging(nn.Layer):
    """2×2 neighbours concatenated (4C) → LayerNorm → Linear(4C, 2C, no bias) (V1: norm before reduction)."""

    def __init__(self, dim, norm_eps=1e-5):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias_attr=False)
        self.norm = nn.LayerNorm(4 * dim, epsilon=norm_eps)

    def forward(self, x):
        return self.reduction(self.norm(_patch_merging_pad(x)))


class SwinTransformer(nn.Layer):
    """torchvision's `SwinTransformer(patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio,
    dropout, attention_dropout, stochastic_depth_prob)` without its classification `head`: forward returns
    the pooled, normalised features (`out_dim` = embed_dim · 2^(stages − 1))."""

    preprocess = SWIN_T_PREPROCESS
    reference_sizes = SWIN_T_REFERENCE_SIZES

    def __init__(self, patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio=4.0, dropout=0.0,
                 attention_dropout=0.0, stochastic_depth_prob=0.1, norm_eps=1e-5):
        super().__init__()
        layers = [nn.Sequential(
            nn.Conv2D(3, embed_dim, kernel_size=list(patch_size), stride=list(patch_size)),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(embed_dim, epsilon=norm_eps),
        )]
        total, block_id = sum(depths), 0
        for i_stage, depth in enumerate(depths):
            dim = embed_dim * 2 ** i_stage
            stage = []
            for i_layer in range(depth):
                sd_prob = stochastic_depth_prob * float(block_id) / max(total - 1, 1)
                stage.append(SwinTransformerBlock(
                    dim, num_heads[i_stage], window_size=list(window_size),
                    shift_size=[0 if i_layer % 2 == 0 else s // 2 for s in window_size], mlp_ratio=mlp_ratio,
                    dropout=dropout, attention_dropout=attention_dropout, stochastic_depth_prob=sd_prob,
                    norm_eps=norm_eps))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i_stage < len(depths) - 1:
                layers.append(PatchMerging(dim, norm_eps=norm_eps))
        self.features = nn.Sequential(*layers)
        self.out_dim = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.out_dim, epsilon=norm_eps)
        self._init_linear()

    def _init_linear(self):
        """torchvision's final init loop: every Linear (the MLPs' too, overriding their xavier init)
        truncated normal std 0.02 (Paddle truncates at ±2σ, torch at ±2 absolute), biases 0."""
        init_w, init_b = nn.initializer.TruncatedNormal(0.0, 0.02), nn.initializer.Constant(0.0)
        for sub in self.sublayers():
            if isinstance(sub, nn.Linear):
                init_w(sub.weight)
                if sub.bias is not None:
                    init_b(sub.bias)

    def forward(self, x):
        x = self.norm(self.features(x))  # [B, H, W, C]
        return x.mean(axis=[1, 2])  # permute → AdaptiveAvgPool2d(1) → flatten: the mean over H and W


def swin_t(stochastic_depth_prob=0.2):
    """torchvision `swin_t`: patch 4, embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, drop path 0.2."""
    return SwinTransformer(patch_size=[4, 4], embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
                           window_size=[7, 7], stochastic_depth_prob=stochastic_depth_prob)
