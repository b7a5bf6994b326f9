"""Vision transformers: one configurable ViT for torchvision's ViT-B/16, timm's ViT-S/16, DINOv2
(layer scale) and CLIP's image tower (ln_pre, ln_post, projection, QuickGELU). `forward` returns the
class token after the final LayerNorm (CLIP: projected by `proj`, before normalisation).

Parameter names follow timm (`patch_embed.proj`, `cls_token`, `pos_embed`, `blocks.N.norm1`,
`blocks.N.attn.qkv`, `blocks.N.attn.proj`, `blocks.N.ls1.gamma`, `blocks.N.mlp.fc1`, `norm`, CLIP's
`norm_pre` and `proj`); `models/vit_weights.py` maps the other libraries' files onto them.

Position embeddings. `pos_embed` holds the grid of the backbone's `img_size` (224 px: 14×14 for /16,
16×16 for /14, 7×7 for /32). A file with another grid (DINOv2's 37×37 at 518 px) is resampled once,
at weight-load time. An input of another size (the 56/64 px lite images) is resampled in the graph to
its patch grid. Both use `resample_matrix`, the exact linear map of torch's
`F.interpolate(mode="bicubic", align_corners=False, antialias=True)` — what timm's
`resample_abs_pos_embed` (and so DINOv2 in timm and open_clip's `resize_pos_embed`) applies — written
as a constant matrix: in the graph it is one matmul with a constant, which static Paddle and ONNX
export like any other (the grid is fixed by the export's input size).

Each backbone declares its preprocessing (`preprocess`: mean, std, interpolation, as its library's
pretrained configuration has it); `models.backbones.backbone_preprocess` puts it in the run's cfg.
"""
import functools
import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

IMAGENET = dict(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
INCEPTION = dict(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # timm's augreg ViTs
CLIP = dict(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))


# --------------------------------------------------------------------------------- resampling
def _cubic(x, a):
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


@functools.lru_cache(maxsize=64)
def resample_matrix(n_in, n_out, antialias=True):
    """(n_out, n_in) float64 matrix M with M @ v equal to torch's 1-D bicubic `F.interpolate(size=n_out,
    align_corners=False, antialias=...)` of v. Antialiased: PIL's separable filter (a = −0.5, support
    widened by the scale when shrinking, weights normalised); plain: a = −0.75 at the half-pixel source
    coordinate, indices clamped at the border. Read from ATen's UpSampleKernel (`_compute_indices_weights_aa`,
    `upsample_bicubic2d`)."""
    m = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    if antialias:
        support, inv = (2.0 * scale, 1.0 / scale) if scale >= 1 else (2.0, 1.0)
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
            w = np.array([_cubic((j + lo - center + 0.5) * inv, -0.5) for j in range(hi - lo)])
            m[i, lo:hi] = w / w.sum()
    else:
        for i in range(n_out):
            real = scale * (i + 0.5) - 0.5
            x0 = math.floor(real)
            for k in range(-1, 3):
                m[i, min(max(x0 + k, 0), n_in - 1)] += _cubic(k - (real - x0), -0.75)
    m.setflags(write=False)
    return m


@functools.lru_cache(maxsize=16)
def grid_resample_matrix(old, new, antialias=True):
    """(new_h·new_w, old_h·old_w) matrix resampling a row-major token grid (old, new: (h, w))."""
    k = np.kron(resample_matrix(old[0], new[0], antialias), resample_matrix(old[1], new[1], antialias))
    k.setflags(write=False)
    return k


def resample_pos_embed(pos, new_grid, num_prefix=1, antialias=True):
    """numpy twin of timm's `resample_abs_pos_embed`: pos (1, prefix + h·w, D) from its square grid to
    `new_grid` (h, w); prefix tokens (the class token's) unchanged."""
    pos = np.asarray(pos)
    old = int(round(math.sqrt(pos.shape[1] - num_prefix)))
    if old * old != pos.shape[1] - num_prefix:
        raise ValueError(f"position embedding of {pos.shape[1]} tokens is not {num_prefix} + a square grid")
    if (old, old) == tuple(new_grid):
        return pos
    grid = grid_resample_matrix((old, old), tuple(new_grid), antialias) @ pos[0, num_prefix:].astype(np.float64)
    return np.concatenate([pos[:, :num_prefix], grid[None].astype(pos.dtype)], axis=1)


# --------------------------------------------------------------------------------- layers
class QuickGELU(nn.Layer):
    """x · sigmoid(1.702 x): the activation of OpenAI's CLIP (open_clip's `QuickGELU`)."""

    def forward(self, x):
        return x * F.sigmoid(1.702 * x)


class LayerScale(nn.Layer):
    def __init__(self, dim, init=1e-5):
        super().__init__()
        self.gamma = self.create_parameter([dim], default_initializer=nn.initializer.Constant(init))

    def forward(self, x):
        return x * self.gamma


class Attention(nn.Layer):
    """Multi-head self-attention with one fused qkv projection (rows q, k, v; heads inside each), as timm
    and torch's `nn.MultiheadAttention` (`in_proj_weight`) lay it out."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        c = x.shape[-1]
        qkv = self.qkv(x).reshape([0, 0, 3, self.heads, c // self.heads]).transpose([2, 0, 3, 1, 4])
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = F.softmax(paddle.matmul(q * self.scale, k, transpose_y=True), axis=-1)
        return self.proj(paddle.matmul(attn, v).transpose([0, 2, 1, 3]).reshape([0, 0, c]))


class Mlp(nn.Layer):
    def __init__(self, dim, hidden, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = QuickGELU() if act == "quick_gelu" else nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Layer):
    """Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

    def __init__(self, dim, heads, mlp_ratio, eps, act, layer_scale):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, epsilon=eps)
        self.attn = Attention(dim, heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, epsilon=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class VisionTransformer(nn.Layer):
    """ViT with a class token. `act` "gelu" (exact) or "quick_gelu"; `layer_scale` (DINOv2);
    `patch_bias` False and `pre_norm` True for CLIP (conv1 without bias, ln_pre); `proj_dim` adds
    CLIP's projection (`proj`, (width, proj_dim), applied as x @ proj)."""

    preprocess = {}  # mean / std / interpolation of the pretrained weights; {} = ImageNet, bilinear

    def __init__(self, img_size=224, patch_size=16, width=768, depth=12, heads=12, mlp_ratio=4.0, eps=1e-6,
                 act="gelu", layer_scale=False, patch_bias=True, pre_norm=False, proj_dim=None):
        super().__init__()
        self.patch_size = patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = nn.Layer()
        self.patch_embed.proj = nn.Conv2D(3, width, patch_size, stride=patch_size,
                                          bias_attr=None if patch_bias else False)
        init = nn.initializer.TruncatedNormal(std=0.02)
        self.cls_token = self.create_parameter([1, 1, width], default_initializer=init)
        self.pos_embed = self.create_parameter([1, 1 + self.grid[0] * self.grid[1], width], default_initializer=init)
        self.norm_pre = nn.LayerNorm(width, epsilon=eps) if pre_norm else nn.Identity()
        self.blocks = nn.LayerList([Block(width, heads, mlp_ratio, eps, act, layer_scale) for _ in range(depth)])
        self.norm = nn.LayerNorm(width, epsilon=eps)
        self.proj = None
        if proj_dim:
            self.proj = self.create_parameter([width, proj_dim], default_initializer=nn.initializer.Normal(
                std=width ** -0.5))
        self.act = act
        self.out_dim = proj_dim or width

    def pos_embed_for(self, grid):
        """pos_embed for a patch grid (h, w): the parameter itself on its own grid, else resampled by a
        constant matrix (a matmul in the exported graph)."""
        if tuple(grid) == self.grid:
            return self.pos_embed
        k = paddle.to_tensor(grid_resample_matrix(self.grid, tuple(grid)).astype(np.float32))
        return paddle.concat([self.pos_embed[:, :1], paddle.matmul(k, self.pos_embed[0, 1:]).unsqueeze(0)], axis=1)

    def forward(self, x):
        x = self.patch_embed.proj(x)
        grid = (x.shape[2], x.shape[3])
        x = x.flatten(2).transpose([0, 2, 1])
        cls = paddle.zeros_like(x[:, :1]) + self.cls_token
        x = paddle.concat([cls, x], axis=1) + self.pos_embed_for(grid)
        x = self.norm_pre(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)[:, 0]
        return x if self.proj is None else paddle.matmul(x, self.proj)


def _variant(name, preprocess, **config):
    """A registry entry: a VisionTransformer subclass with its configuration and preprocessing."""
    return type(name, (VisionTransformer,), {
        "preprocess": preprocess, "config": config, "__doc__": f"{name}: {config}",
        "__init__": lambda self: VisionTransformer.__init__(self, **config)})


_CLIP_B = dict(width=768, depth=12, heads=12, eps=1e-5, patch_bias=False, pre_norm=True, proj_dim=512)
VIT_BACKBONES = {
    # torchvision vit_b_16: IMAGENET1K_V1 transforms (resize 256 bilinear, crop 224, ImageNet mean/std)
    "vit_b_16": _variant("ViTB16", dict(IMAGENET, interpolation="bilinear"), patch_size=16),
    # timm vit_small_patch16_224 (augreg): mean = std = 0.5, bicubic
    "vit_s_16": _variant("ViTS16", dict(INCEPTION, interpolation="bicubic"), patch_size=16, width=384, heads=6),
    # DINOv2 (hubconf / timm vit_*_patch14_dinov2): ImageNet mean/std, bicubic, layer scale
    "dinov2_vits14": _variant("DINOv2ViTS14", dict(IMAGENET, interpolation="bicubic"), patch_size=14, width=384,
                              heads=6, layer_scale=True),
    "dinov2_vitb14": _variant("DINOv2ViTB14", dict(IMAGENET, interpolation="bicubic"), patch_size=14,
                              layer_scale=True),
    # open_clip ViT-B-32 / ViT-B-16 (GELU: LAION / DataComp weights) and their -quickgelu twins (OpenAI's)
    "clip_vit_b32": _variant("CLIPViTB32", dict(CLIP, interpolation="bicubic"), patch_size=32, **_CLIP_B),
    "clip_vit_b32_quickgelu": _variant("CLIPViTB32QuickGELU", dict(CLIP, interpolation="bicubic"), patch_size=32,
                                       act="quick_gelu", **_CLIP_B),
    "clip_vit_b16": _variant("CLIPViTB16", dict(CLIP, interpolation="bicubic"), patch_size=16, **_CLIP_B),
    "clip_vit_b16_quickgelu": _variant("CLIPViTB16QuickGELU", dict(CLIP, interpolation="bicubic"), patch_size=16,
                                       act="quick_gelu", **_CLIP_B),
}
