"""ImageNet weights for the backbones, from the files people actually have, without torch installed.

    info = load_backbone_weights(backbone, "alexnet-owt-7be5be79.pth")
    print(info["summary"])   # alexnet: 14/14 tensors from alexnet-owt-7be5be79.pth (torchvision layout); ...

Two steps, each a function of its own:

1. `read_weights(path)` → `WeightsFile` (flat name → numpy array, and the convention the file was
   written in). Formats:
   - PyTorch / torchvision `.pth` / `.pt`: the zip format of `torch.save` (PyTorch ≥ 1.6) and the legacy
     pickle format (what torchvision's older files such as `alexnet-owt-7be5be79.pth` use);
   - `.safetensors` (the `safetensors` package's numpy API);
   - Paddle `.pdparams` (a pickle of numpy arrays; also this project's checkpoints).
   Every pickle goes through `utils.safe_pickle` (the one restricted unpickler of the project, also
   behind checkpoints, codebooks and CIFAR batches): a global outside its allow-list (tensor and
   storage rebuilders, numpy arrays, OrderedDict) is refused before anything from the file runs, so a
   `.pth` or `.pdparams` from the internet cannot execute code. The tensor rebuilders are our own
   functions that build numpy arrays; nothing of torch is imported.
2. `map_weights(backbone, weights)` → our state dict. The state dict may be nested (`state_dict`,
   `model`, ...) and prefixed (`module.` from DataParallel, `backbone.` / `base_model.` as the reference
   repositories save it). Each backbone lists the *layouts* it knows (a renaming of module paths: the
   torchvision names, paddle.vision's, PaddleClas's); the layout that fills most parameters wins. What a
   tensor needs is decided by the type of the layer it lands in, never by its shape:
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
import io
import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field

import numpy as np
import paddle.nn as nn

from utils.errors import UserError
from utils.safe_pickle import BF16, RefusedGlobal, RestrictedUnpickler, TorchStorage, refusal
from utils.safe_pickle import load as safe_load

HOW_TO_GET = ("Nothing is downloaded at run time: download ImageNet weights for this backbone on a machine "
              "with internet (torchvision .pth, Paddle/PaddleClas .pdparams or .safetensors; README "
              "'Pretrained weights' lists the files) and pass the local path")


# ----------------------------------------------------------------------------------------------- reading
@dataclass
class WeightsFile:
    """Tensors read from a file: `tensors` (flat name → numpy array), `convention` ("torch": Linear
    weights stored (out, in); "paddle": (in, out)), `kind` (format, for messages)."""

    path: str
    tensors: dict
    convention: str
    kind: str
    extra: dict = field(default_factory=dict)


_Storage = TorchStorage  # the names this module had before utils/safe_pickle.py held them
_BF16 = BF16


def _short(exc, limit=150):
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _as_dtype(raw, dtype, byteorder):
    if dtype == _BF16:  # numpy has no bfloat16: widen to float32 (bfloat16 is float32's top half)
        u16 = np.frombuffer(raw, dtype=np.dtype("u2").newbyteorder(byteorder))
        return (u16.astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder(byteorder))


def _load_torch_zip(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
            raise pickle.UnpicklingError(TORCHSCRIPT)
        if not pkl:
            raise pickle.UnpicklingError("zip file without data.pkl: not a torch.save file")
        prefix = pkl[0][:-len("data.pkl")]
        order = "<"
        if prefix + "byteorder" in names and zf.read(prefix + "byteorder").strip() == b"big":
            order = ">"
        cache = {}

        def storage(pid):
            _, stype, key, _location, _numel = pid[:5]
            if not isinstance(stype, _Storage):
                raise pickle.UnpicklingError("storage of an unknown type")
            key = key.decode() if isinstance(key, bytes) else str(key)
            if key not in cache:
                cache[key] = _as_dtype(zf.read(f"{prefix}data/{key}"), stype.dtype, order)
            return cache[key]

        return safe_load(io.BytesIO(zf.read(pkl[0])), storage)


TORCHSCRIPT = ("a TorchScript archive (such as OpenAI's original CLIP ViT-B-32.pt), whose objects are code; "
               "nothing was read. For CLIP use open_clip's open_clip_pytorch_model.bin or open_clip_model.safetensors "
               "of the same model; otherwise save the module's state_dict()")
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


def _load_torch_legacy(path):
    """torch.save's pre-1.6 format: magic, protocol, sys_info, the object, the storage keys, then each
    storage's bytes as (int64 element count, raw data)."""
    with open(path, "rb") as f:
        magic = safe_load(f)
        if magic != _LEGACY_MAGIC:
            if isinstance(magic, dict):  # a plain pickled dict (pickle.dump of numpy arrays)
                return magic
            raise pickle.UnpicklingError("not a torch.save file (bad magic number)")
        safe_load(f)  # protocol version
        sys_info = safe_load(f)
        order = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
        pending = {}  # root key → (dtype, [(array holder)])

        def storage(pid):
            _, stype, root_key, _location, numel, view = (list(pid) + [None] * 6)[:6]
            if not isinstance(stype, _Storage):
                raise pickle.UnpicklingError("storage of an unknown type")
            root_key = root_key.decode() if isinstance(root_key, bytes) else str(root_key)
            if root_key not in pending:
                # placeholder filled in after the object pickle: the bytes follow it in the file
                pending[root_key] = (stype.dtype, np.empty(int(numel), dtype=np.float32 if stype.dtype == _BF16
                                                          else stype.dtype))
            arr = pending[root_key][1]
            if view is not None:
                _view_key, offset, view_size = view
                return arr[int(offset):int(offset) + int(view_size)]
            return arr

        obj = safe_load(f, storage)
        keys = safe_load(f)
        for key in keys:
            key = key.decode() if isinstance(key, bytes) else str(key)
            if key not in pending:
                raise pickle.UnpicklingError(f"storage {key} listed but never used")
            dtype, arr = pending[key]
            (count,) = struct.unpack("<q", f.read(8))
            itemsize = 2 if dtype == _BF16 else np.dtype(dtype).itemsize
            raw = f.read(count * itemsize)
            if count != arr.size or len(raw) != count * itemsize:
                raise pickle.UnpicklingError(f"storage {key} is truncated")
            arr[...] = _as_dtype(raw, dtype, order)
    return obj


def load_torch_object(path):
    """The object a `torch.save` file holds (zip or legacy format), tensors as numpy arrays, through the
    restricted unpickler; raises pickle/OS errors for the caller to word."""
    return _load_torch_zip(path) if zipfile.is_zipfile(path) else _load_torch_legacy(path)


def _load_pickle(path):
    with open(path, "rb") as f:
        return safe_load(f)


def _flat_arrays(obj):
    """name → ndarray for the arrays of a state dict; other values (counters, names) are left out."""
    out = {}
    for key, value in obj.items():
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], np.ndarray):
            value = value[1]  # Paddle 2.x pickles a tensor as (structured name, array)
        if isinstance(value, np.ndarray):
            out[str(key)] = np.array(value)  # own, contiguous memory (tensors are views of storages)
    return out


NEST_KEYS = ("state_dict", "model", "model_state_dict", "model_state", "net", "network", "weights", "params")


def _unnest(obj, path, flag):
    """The state dict inside a checkpoint: follow state_dict/model/... while the arrays are deeper."""
    if not isinstance(obj, dict):
        raise UserError(f"{flag} {path}: holds a {type(obj).__name__}, not a state dict; save "
                        "`model.state_dict()` (a whole pickled model cannot be loaded without running its code)")
    for _ in range(3):
        if any(isinstance(v, np.ndarray) for v in obj.values()):
            break
        inner = next((obj[k] for k in NEST_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    return obj


def read_weights(path, flag="--backbone-weights"):
    """Read a weights file of any supported format into a `WeightsFile`; UserError when it cannot be."""
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: file not found. {HOW_TO_GET}")
    ext = os.path.splitext(path)[1].lower()
    name = os.path.basename(path)
    try:
        if ext == ".safetensors":
            return _read_safetensors(path, flag)
        if zipfile.is_zipfile(path):
            obj, convention, kind = _load_torch_zip(path), "torch", "torch.save zip"
        elif ext in (".pdparams", ".pdopt", ".pdckpt"):
            obj, convention, kind = _load_pickle(path), "paddle", "Paddle pdparams"
        else:
            obj, convention, kind = _load_torch_legacy(path), "torch", "torch.save legacy"
    except RefusedGlobal as exc:
        raise UserError(f"{flag} {path}: {refusal(exc)}. Load it in its own framework and save only the state "
                        "dict (tensors)")
    except pickle.UnpicklingError as exc:
        if str(exc) == TORCHSCRIPT:
            raise UserError(f"{flag} {path}: {exc}")
        raise UserError(f"{flag} {path}: not a readable weights file ({type(exc).__name__}: {_short(exc)}); "
                        "expected a torchvision .pth/.pt, a Paddle .pdparams or a .safetensors file")
    except (EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error,
            KeyError, IndexError, TypeError, AttributeError, MemoryError) as exc:
        raise UserError(f"{flag} {path}: not a readable weights file ({type(exc).__name__}: {_short(exc)}); "
                        "expected a torchvision .pth/.pt, a Paddle .pdparams or a .safetensors file")
    state = _unnest(obj, path, flag)
    tensors = _flat_arrays(state)
    if not tensors:
        raise UserError(f"{flag} {path}: no tensors found in {name} (keys: {', '.join(map(str, list(state)[:5]))})")
    return WeightsFile(path, tensors, convention, kind)


def _read_safetensors(path, flag):
    """safetensors' numpy API; numpy has no bfloat16, so BF16 tensors (which that API refuses) are
    read from the file's header offsets and widened to float32."""
    from safetensors import safe_open

    tensors, bf16 = {}, []
    try:
        with safe_open(path, framework="np") as f:
            meta = f.metadata() or {}
            for key in f.keys():
                if f.get_slice(key).get_dtype() == "BF16":
                    bf16.append(key)
                else:
                    tensors[key] = f.get_tensor(key)
        if bf16:
            with open(path, "rb") as fh:
                (size,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(size))
                for key in bf16:
                    begin, stop = header[key]["data_offsets"]
                    fh.seek(8 + size + begin)
                    tensors[key] = _as_dtype(fh.read(stop - begin), _BF16, "<").reshape(header[key]["shape"])
    except Exception as exc:  # safetensors raises its own error types for bad headers and dtypes
        raise UserError(f"{flag} {path}: cannot read this .safetensors file ({type(exc).__name__}: {exc})")
    fmt = str(meta.get("format", "pt")).lower()
    # the format tag of the safetensors convention: "pt" (PyTorch, the default of the ecosystem),
    # "paddle"/"pd" for files written from Paddle state dicts
    convention = "paddle" if fmt in ("paddle", "pd", "paddlepaddle") or any(
        k.endswith("._mean") or k.endswith("._variance") for k in tensors) else "torch"
    return WeightsFile(path, tensors, convention, f"safetensors ({fmt})")


# ----------------------------------------------------------------------------------------------- mapping
from models.weight_layouts import DROP, Layout, _identity, _table  # noqa: E402,F401 - re-exported


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
