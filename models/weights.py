"""ImageNet weights for the backbones, from the files people actually have, without torch installed.

    info = load_backbone_weights(backbone, "alexnet-owt-7be5be79.pth")
    print(info["summary"])   # alexnet: 14/14 tensors from alexnet-owt-7be5be79.pth (torchvision layout); ...

Two steps, each a function of its own:

1. `read_weights(path)` → `WeightsFile` (flat name → numpy array, and the convention the file was
   written in): `utils/weight_files.py`, the torch-free and Paddle-free reader (torch.save zip and legacy
   `.pth`/`.pt`/`.bin`, `.safetensors`, Paddle `.pdparams`; every pickle through `utils.safe_pickle`, so
   nothing from a file runs). Its names are re-exported here.
2. `map_weights(backbone, weights)` → our state dict (this module). The state dict may be prefixed
   (`module.` from DataParallel, `backbone.` / `base_model.` as the reference repositories save it).
   Each backbone lists the *layouts* it knows (a renaming of module paths: the torchvision names,
   paddle.vision's, PaddleClas's; models/weight_layouts.py is their vocabulary, models/vit_weights.py and
   models/swin_convnext_weights.py the newer families'); the layout that fills most parameters wins and
   the log line names it. What a tensor needs is decided by the type of the layer it lands in, never by
   its shape:
   - `nn.Linear` weights are transposed when the file is in PyTorch's convention ((out, in) → Paddle's
     (in, out)), so a square fc7 can never load in the wrong orientation;
   - BatchNorm `running_mean` / `running_var` become `_mean` / `_variance`; `num_batches_tracked` is
     dropped;
   - paddle.vision's AlexNet applies `Dropout(p=0.5, mode="downscale_in_infer")` before fc6 and fc7
     (it scales activations by 0.5 at inference and not in training), while our backbone uses
     upscale-in-train dropout (identity at inference): fc6 and fc7 weights are multiplied by 0.5, which
     gives the same outputs in eval mode and the same expected outputs in training.
   The ImageNet classifier (fc8 / fc) is reported as dropped. Strict by default: every backbone
   parameter must be filled, else a `UserError` naming the file, the number missing and the first names.

Layouts followed (names read from the libraries' model definitions): the modules
`torchvision.models.{alexnet,vgg,resnet}`, `paddle.vision.models.{alexnet,vgg,resnet}` and PaddleClas's
`ppcls.arch.backbone.legendary_models.resnet` (ResNet50/101 "vb": `stem` / `blocks` / `conv0..2` /
`short`; its ResNet18/34 add a shortcut conv to the first block that torchvision's lack, and its "vd"
variants have a three-conv stem, so both are refused with a message).
"""
import os
from dataclasses import dataclass

import numpy as np
import paddle.nn as nn

from models.weight_layouts import DROP, Layout, _identity, _table
from utils.errors import UserError
from utils.safe_pickle import RestrictedUnpickler  # noqa: F401 - re-exported (this module's name for it)
from utils.weight_files import (HOW_TO_GET, NEST_KEYS, TORCHSCRIPT, WeightsFile,  # noqa: F401 - re-exported
                                load_torch_object, read_weights)


_ALEX_PV = {"_conv1._conv": "features.0", "_conv2._conv": "features.3", "_conv3": "features.6",
            "_conv4": "features.8", "_conv5._conv": "features.10", "_fc6": "classifier.1", "_fc7": "classifier.4"}
_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def _paddleclas_resnet(depth):
    """PaddleClas legendary ResNet (vb) → paddle.vision names: stem.0 → conv1/bn1, blocks.k → layer s.i,
    conv0/1/2 → conv1/2/3 (+ bn), short → downsample.0/1, fc dropped."""
    table, k = {"stem.0.conv": "net.conv1", "stem.0.bn": "net.bn1"}, 0
    for s, n in enumerate(_DEPTHS[depth], 1):
        for i in range(n):
            for j in range(3):
                table[f"blocks.{k}.conv{j}.conv"] = f"net.layer{s}.{i}.conv{j + 1}"
                table[f"blocks.{k}.conv{j}.bn"] = f"net.layer{s}.{i}.bn{j + 1}"
            table[f"blocks.{k}.short.conv"] = f"net.layer{s}.{i}.downsample.0"
            table[f"blocks.{k}.short.bn"] = f"net.layer{s}.{i}.downsample.1"
            k += 1

    def refuse(paths):
        if any(p.startswith("stem.1") for p in paths):
            return "a PaddleClas ResNet 'vd' file (three-conv stem), which torchvision/paddle.vision ResNets lack"
        if depth in (18, 34) and any(p.startswith("blocks.0.short") for p in paths):
            return (f"a PaddleClas ResNet{depth} file: its first block has a shortcut conv that "
                    f"torchvision/paddle.vision ResNet{depth} lack, so it cannot be loaded equivalently; use "
                    f"paddle.vision's resnet{depth}.pdparams or torchvision's resnet{depth} .pth")
        return None

    return Layout("PaddleClas layout", _table(table, drop=("fc",)), refuse=refuse)


_TV_PV = {"torch": "torchvision layout", "paddle": "paddle.vision layout"}  # same names in both libraries


def layouts_for(name):
    """The source layouts a backbone knows, in order of preference."""
    from models.vit_weights import is_vit, vit_layouts

    if is_vit(name):
        return vit_layouts(name)
    if name == "alexnet":
        return [Layout({"torch": "torchvision layout", "paddle": "this project's layout"},
                       _identity(drop=("classifier.6",))),
                Layout("paddle.vision layout", _table(_ALEX_PV, drop=("_fc8",)),
                       scale={"classifier.1": 0.5, "classifier.4": 0.5})]
    if name == "vgg16":
        return [Layout(_TV_PV, _identity(drop=("classifier.6",)))]
    if name in ("swin_t", "convnext_tiny"):
        from models.swin_convnext_weights import layouts
        return layouts(name)
    if name.startswith("resnet"):
        depth = int(name[len("resnet"):])
        return [Layout(_TV_PV, _identity("net.", drop=("fc",))),
                Layout("this project's layout", _identity(drop=("net.fc",))),
                _paddleclas_resnet(depth)]
    return [Layout("this project's layout", _identity())]


PREFIXES = ("", "module.", "backbone.", "base_model.", "model.", "module.backbone.", "module.base_model.")
_BN_LEAVES = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance",
              "_mean": "_mean", "_variance": "_variance", "num_batches_tracked": None}


def _split(key):
    path, _, leaf = key.rpartition(".")
    return path, leaf


@dataclass
class _Spec:
    shape: tuple
    dtype: np.dtype


@dataclass
class Mapping:
    layout: Layout
    prefix: str
    state: dict  # our name → array (already transformed)
    dropped: list  # source names dropped on purpose
    unused: list  # source names nothing took
    mismatched: list  # (source name, our name, source shape, our shape)


def _try_layout(layers, own, weights, layout, prefix):
    state, dropped, unused, mismatched = {}, [], [], []
    for key, value in weights.tensors.items():
        if not key.startswith(prefix):
            unused.append(key)
            continue
        if layout.rename_key:
            new = layout.rename_key(key[len(prefix):])
            target, leaf = (new, None) if new in (None, DROP) else _split(new)
        else:
            path, leaf = _split(key[len(prefix):])
            target = layout.rename(path)
        if target == DROP:
            dropped.append(key)
            continue
        layer = layers.get(target) if target is not None else None
        if layer is None:
            unused.append(key)
            continue
        if isinstance(layer, (nn.BatchNorm, nn.BatchNorm1D, nn.BatchNorm2D, nn.BatchNorm3D, nn.SyncBatchNorm)):
            leaf = _BN_LEAVES.get(leaf, leaf)
            if leaf is None:
                continue  # num_batches_tracked: no Paddle counterpart, nothing to load
        name = f"{target}.{leaf}" if target else leaf  # "": a parameter of the backbone itself
        if name not in own:
            unused.append(key)
            continue
        arr = np.asarray(value)
        if isinstance(layer, nn.Linear) and leaf == "weight" and weights.convention == "torch":
            arr = arr.T  # by layer type: PyTorch (out, in) → Paddle (in, out), square or not
        if leaf == "weight" and target in layout.scale:
            arr = arr * layout.scale[target]
        if layout.convert:
            arr = layout.convert(name, arr, own[name].shape)
        if tuple(arr.shape) != tuple(own[name].shape):
            mismatched.append((key, name, tuple(np.shape(value)), tuple(own[name].shape)))
            continue
        state[name] = np.ascontiguousarray(arr, dtype=own[name].dtype)
    return Mapping(layout, prefix, state, dropped, unused, mismatched)


def _patterns(names, limit=4):
    """Compress names to module patterns for messages: classifier.6.weight, classifier.6.bias → classifier.6.*"""
    pats = list(dict.fromkeys(_split(n)[0] + ".*" if "." in n else n for n in names))
    more = f" and {len(pats) - limit} more" if len(pats) > limit else ""
    return ", ".join(pats[:limit]) + more


def map_weights(backbone, weights, name, allow_partial=False, flag="--backbone-weights"):
    """Our state dict from `weights`, and an info dict (`summary` is the line to log). UserError when
    nothing matches, a tensor has the wrong shape, or (strict) a backbone parameter stays unfilled."""
    own = {k: _Spec(tuple(v.shape), np.dtype(str(v.dtype).replace("paddle.", "")))
           for k, v in backbone.state_dict().items()}
    layers = dict(backbone.named_sublayers(include_self=True))
    file = os.path.basename(weights.path)
    best = None
    for prefix in PREFIXES:  # shortest prefix first: ties go to the plainest reading
        for layout in layouts_for(name):
            m = _try_layout(layers, own, weights, layout, prefix)
            if best is None or len(m.state) > len(best.state):
                best = m
    paths = {_split(k[len(best.prefix):])[0] for k in weights.tensors if k.startswith(best.prefix)}
    if best.layout.refuse and best.state:
        reason = best.layout.refuse(paths)
        if reason:
            raise UserError(f"{flag} {weights.path}: {reason}")
    if not best.state:
        sample = ", ".join(list(weights.tensors)[:3])
        raise UserError(f"{flag} {weights.path}: no tensor matches backbone {name} (the file has "
                        f"{len(weights.tensors)} tensors such as {sample}); is it the right --backbone?")
    if best.mismatched:
        key, ours, shape, need = best.mismatched[0]
        raise UserError(f"{flag} {weights.path}: tensor '{key}' has shape {list(shape)} but {name} needs "
                        f"{list(need)} for {ours} ({len(best.mismatched)} mismatched); is it the right --backbone?")
    missing = [k for k in own if k not in best.state]
    layout = best.layout.label(weights.convention)
    where = f"{name}: {len(best.state)}/{len(own)} tensors from {file} ({layout}"
    where += f", prefix '{best.prefix}')" if best.prefix else ")"
    if missing and not allow_partial:
        raise UserError(f"{flag} {weights.path}: {len(missing)} of {len(own)} {name} parameters are not in the "
                        f"file (first: {', '.join(missing[:3])}); use weights for this backbone, or "
                        "--allow-partial-weights to keep the rest random")
    parts = [where]
    if best.dropped:
        parts.append(f"dropped {_patterns(best.dropped)} ({best.layout.drop_label})")
    if best.layout.notes:
        parts += best.layout.notes(weights, backbone, flag, best.prefix)
    if best.layout.scale:
        parts.append("fc6/fc7 weights ×0.5 (paddle.vision's downscale-in-infer dropout)")
    if best.unused:
        parts.append(f"ignored {len(best.unused)} tensors not in the backbone ({_patterns(best.unused, 3)})")
    if missing:
        parts.append(f"{len(missing)} parameters left random ({_patterns(missing, 3)})")
    info = {"loaded": len(best.state), "total": len(own), "layout": layout, "prefix": best.prefix,
            "dropped": best.dropped, "unused": best.unused, "missing": missing, "format": weights.kind,
            "summary": "; ".join(parts)}
    return best.state, info


def load_backbone_weights(backbone, path, flag="--backbone-weights", allow_partial=False, name=None):
    """Read `path` (any supported format), map it onto `backbone` and load it; return the info dict
    (`info["summary"]` is the line to log). Strict unless `allow_partial`."""
    name = name or getattr(backbone, "arch", None) or type(backbone).__name__.lower()
    weights = read_weights(path, flag)
    state, info = map_weights(backbone, weights, name, allow_partial=allow_partial, flag=flag)
    backbone.set_state_dict(state)
    return info


__all__ = ["RestrictedUnpickler", "WeightsFile", "read_weights", "map_weights", "load_backbone_weights",
           "layouts_for", "HOW_TO_GET"]
