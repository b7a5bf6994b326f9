"""Weight layouts of the vision transformers (models/vit.py), used by `models/weights.py`'s mapping
(strict by default, Linear weights transposed by the type of the layer they land in).

Names read from the libraries' model definitions:
- `torchvision:models/vision_transformer.py`: `conv_proj`, `class_token` (1, 1, D), `encoder.pos_embedding`,
  `encoder.layers.encoder_layer_N.{ln_1, self_attention.in_proj_weight/in_proj_bias, self_attention.out_proj,
  ln_2, mlp.0, mlp.3}` (older files: `mlp.linear_1/linear_2`), `encoder.ln`, `heads.head` (dropped);
- `timm:models/vision_transformer.py` (also its Hugging Face `model.safetensors` / `pytorch_model.bin`) and
  DINOv2's official `dinov2_vit*14_pretrain.pth`: our own names; `head` (timm's classifier) and
  `mask_token` (DINOv2's masked-image training token) are dropped;
- open_clip `transformer.py` (`open_clip_pytorch_model.bin` / `open_clip_model.safetensors`, the whole
  CLIP model): the image tower under `visual.` (`conv1`, `class_embedding` (D,), `positional_embedding`
  (N, D), `ln_pre`, `transformer.resblocks.N.{ln_1, attn.in_proj_weight, attn.out_proj, ln_2, mlp.c_fc,
  mlp.c_proj}`, `ln_post`, `proj` (D, E) applied as x @ proj, so never transposed); the text tower is
  dropped and the summary says so.

A position embedding of another grid than the backbone's is resampled at load time with
`models.vit.resample_pos_embed` (timm's `resample_abs_pos_embed`: bicubic, antialiased).
"""
import os
import re

import numpy as np

from models.weight_layouts import DROP, Layout
from utils.errors import UserError

_BLOCK_TV = {"ln_1": "norm1", "ln_2": "norm2", "self_attention.out_proj": "attn.proj",
             "mlp.0": "mlp.fc1", "mlp.3": "mlp.fc2", "mlp.linear_1": "mlp.fc1", "mlp.linear_2": "mlp.fc2"}
_BLOCK_CLIP = {"ln_1": "norm1", "ln_2": "norm2", "attn.out_proj": "attn.proj", "mlp.c_fc": "mlp.fc1",
               "mlp.c_proj": "mlp.fc2", "ls_1": "ls1", "ls_2": "ls2"}


def _block(match, table, in_proj):
    """blocks.N.* of a block key's rest (`match` groups: index, module path + leaf)."""
    n, rest = match.group(1), match.group(2)
    if rest in in_proj:
        return f"blocks.{n}.{in_proj[rest]}"
    path, _, leaf = rest.rpartition(".")
    return f"blocks.{n}.{table[path]}.{leaf}" if path in table else None


_TV_TOP = {"conv_proj.weight": "patch_embed.proj.weight", "conv_proj.bias": "patch_embed.proj.bias",
           "class_token": "cls_token", "encoder.pos_embedding": "pos_embed", "encoder.ln.weight": "norm.weight",
           "encoder.ln.bias": "norm.bias"}
_TV_BLOCK = re.compile(r"encoder\.layers\.encoder_layer_(\d+)\.(.+)")
_IN_PROJ_TV = {"self_attention.in_proj_weight": "attn.qkv.weight", "self_attention.in_proj_bias": "attn.qkv.bias"}


def torchvision_key(key):
    if key in _TV_TOP:
        return _TV_TOP[key]
    if key.startswith("heads."):
        return DROP
    m = _TV_BLOCK.fullmatch(key)
    return _block(m, _BLOCK_TV, _IN_PROJ_TV) if m else None


_CLIP_TOP = {"conv1.weight": "patch_embed.proj.weight", "class_embedding": "cls_token",
             "positional_embedding": "pos_embed", "ln_pre.weight": "norm_pre.weight", "ln_pre.bias": "norm_pre.bias",
             "ln_post.weight": "norm.weight", "ln_post.bias": "norm.bias", "proj": "proj"}
_CLIP_BLOCK = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)")
_IN_PROJ_CLIP = {"attn.in_proj_weight": "attn.qkv.weight", "attn.in_proj_bias": "attn.qkv.bias"}


def open_clip_key(key):
    if not key.startswith("visual."):
        return DROP  # the text tower (token_embedding, transformer.*, ln_final, text_projection, logit_scale)
    key = key[len("visual."):]
    if key in _CLIP_TOP:
        return _CLIP_TOP[key]
    m = _CLIP_BLOCK.fullmatch(key)
    return _block(m, _BLOCK_CLIP, _IN_PROJ_CLIP) if m else None


def _own_key(drop=()):
    def rename(key):
        return DROP if any(key == d or key.startswith(d + ".") for d in drop) else key
    return rename


def convert(name, arr, shape):
    """A source tensor of another but equivalent shape: CLIP's class_embedding (D,) and positional_embedding
    (N, D) get the batch axes; a position embedding of another grid is resampled to ours."""
    from models.vit import resample_pos_embed

    if name == "cls_token" and arr.size == int(np.prod(shape)):
        return arr.reshape(shape)
    if name == "pos_embed" and arr.ndim in (2, 3) and arr.shape[-1] == shape[-1]:
        arr = arr.reshape(1, -1, shape[-1])
        if arr.shape[1] != shape[1]:
            side = int(round((shape[1] - 1) ** 0.5))
            try:
                arr = resample_pos_embed(arr, (side, side))
            except ValueError:
                return arr  # left to the shape check's message
    return arr


def _pos_note(weights, backbone, keys):
    """'pos_embed resampled …' when the file's grid differs from the backbone's."""
    for key in keys:
        if key in weights.tensors:
            tokens = int(np.prod(weights.tensors[key].shape[:-1]))
            old = int(round((tokens - 1) ** 0.5))
            if (old, old) != tuple(backbone.grid):
                return [f"pos_embed resampled from {old}x{old} to {backbone.grid[0]}x{backbone.grid[1]} patches "
                        "(bicubic, antialiased: timm's resample_abs_pos_embed)"]
    return []


def _notes(keys, clip=False):
    def notes(weights, backbone, flag, prefix=""):
        out = _pos_note(weights, backbone, [prefix + k for k in keys])
        if clip:
            quick = backbone.act == "quick_gelu"
            # open_clip's OpenAI files carry no activation: their path says it (the Hugging Face cache
            # folder models--timm--vit_base_patch32_clip_224.openai, or a file named after it)
            if "openai" in os.path.abspath(weights.path).lower() and not quick:
                raise UserError(f"{flag} {weights.path}: CLIP weights trained by OpenAI need QuickGELU: use "
                                f"--backbone {backbone.arch}_quickgelu (open_clip's ViT-B-*-quickgelu)")
            out.append("activation QuickGELU (OpenAI-trained CLIP)" if quick else
                       "activation GELU (open_clip's ViT-B-*; OpenAI-trained weights need the _quickgelu backbone)")
        return out
    return notes


_OURS = {"paddle": "this project's layout"}


def vit_layouts(name):
    """Source layouts of a ViT backbone, in order of preference (see models.weights.layouts_for)."""
    if name == "vit_b_16":
        return [Layout({"torch": "torchvision layout", **_OURS}, None, rename_key=torchvision_key,
                       convert=convert, notes=_notes(["encoder.pos_embedding"])),
                Layout("this project's layout", None, rename_key=_own_key(), convert=convert,
                       notes=_notes(["pos_embed"]))]
    if name.startswith("clip_"):
        return [Layout({"torch": "open_clip layout", **_OURS}, None, rename_key=open_clip_key, convert=convert,
                       notes=_notes(["visual.positional_embedding"], clip=True), drop_label="CLIP text tower"),
                Layout("this project's layout", None, rename_key=_own_key(), convert=convert,
                       notes=_notes(["pos_embed"], clip=True))]
    label = "DINOv2 layout" if name.startswith("dinov2") else "timm layout"
    return [Layout({"torch": label, **_OURS}, None, rename_key=_own_key(drop=("head", "mask_token")), convert=convert,
                   notes=_notes(["pos_embed"]),
                   drop_label="DINOv2's mask token" if name.startswith("dinov2") else "ImageNet classifier")]


def is_vit(name):
    from models.vit import VIT_BACKBONES

    return name in VIT_BACKBONES
