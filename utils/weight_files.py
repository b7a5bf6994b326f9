"""Weight files as people have them, read into numpy without torch and without Paddle.

    weights = read_weights("alexnet-owt-7be5be79.pth")   # WeightsFile: flat name → numpy array, convention
    obj = load_torch_object("codebook.pt")               # any torch.save file's object, tensors as arrays

Formats:
- PyTorch / torchvision `.pth` / `.pt`: the zip format of `torch.save` (PyTorch ≥ 1.6) and the legacy
  pickle format (what torchvision's older files such as `alexnet-owt-7be5be79.pth` use); a TorchScript
  archive (whose objects are code) is refused with a message;
- `.safetensors` (the `safetensors` package's numpy API; BF16 tensors widened to float32);
- Paddle `.pdparams` (a pickle of numpy arrays; also this project's checkpoints), and `.bin` or any other
  name holding one of the above.
Every pickle goes through `utils.safe_pickle` (the one restricted unpickler of the project, also behind
checkpoints, codebooks and CIFAR batches): a global outside its allow-list (tensor and storage
rebuilders, numpy arrays, OrderedDict) is refused before anything from the file runs, so a `.pth` or
`.pdparams` from the internet cannot execute code. The tensor rebuilders are our own functions that
build numpy arrays; nothing of torch is imported. The state dict may be nested (`state_dict`, `model`,
...); `read_weights` follows the nesting to the arrays.

`WeightsFile.convention` says how the file stores Linear weights ("torch": (out, in); "paddle": (in,
out)); mapping the names onto a backbone (and transposing by layer type) is `models/weights.py`'s job.
This module imports numpy, `utils.errors` and `utils.safe_pickle` only — never paddle, not even
indirectly (tests/test_weights.py checks it in a fresh process).
"""
import io
import json
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass, field

import numpy as np

from utils.errors import UserError, one_line
from utils.safe_pickle import BF16, RefusedGlobal, TorchStorage, refusal
from utils.safe_pickle import load as safe_load

HOW_TO_GET = ("Nothing is downloaded at run time: download ImageNet weights for this backbone on a machine "
              "with internet (torchvision .pth, Paddle/PaddleClas .pdparams or .safetensors; README "
              "'Pretrained weights' lists the files) and pass the local path")


@dataclass
class WeightsFile:
    """Tensors read from a file: `tensors` (flat name → numpy array), `convention` ("torch": Linear
    weights stored (out, in); "paddle": (in, out)), `kind` (format, for messages)."""

    path: str
    tensors: dict
    convention: str
    kind: str
    extra: dict = field(default_factory=dict)


def _as_dtype(raw, dtype, byteorder):
    if dtype == BF16:  # numpy has no bfloat16: widen to float32 (bfloat16 is float32's top half)
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
            if not isinstance(stype, TorchStorage):
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
            if not isinstance(stype, TorchStorage):
                raise pickle.UnpicklingError("storage of an unknown type")
            root_key = root_key.decode() if isinstance(root_key, bytes) else str(root_key)
            if root_key not in pending:
                # placeholder filled in after the object pickle: the bytes follow it in the file
                pending[root_key] = (stype.dtype, np.empty(int(numel), dtype=np.float32 if stype.dtype == BF16
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
            itemsize = 2 if dtype == BF16 else np.dtype(dtype).itemsize
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
        raise UserError(f"{flag} {path}: not a readable weights file ({type(exc).__name__}: {one_line(exc)}); "
                        "expected a torchvision .pth/.pt, a Paddle .pdparams or a .safetensors file")
    except (EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error,
            KeyError, IndexError, TypeError, AttributeError, MemoryError) as exc:
        raise UserError(f"{flag} {path}: not a readable weights file ({type(exc).__name__}: {one_line(exc)}); "
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
                    tensors[key] = _as_dtype(fh.read(stop - begin), BF16, "<").reshape(header[key]["shape"])
    except Exception as exc:  # safetensors raises its own error types for bad headers and dtypes
        raise UserError(f"{flag} {path}: cannot read this .safetensors file ({type(exc).__name__}: {exc})")
    fmt = str(meta.get("format", "pt")).lower()
    # the format tag of the safetensors convention: "pt" (PyTorch, the default of the ecosystem),
    # "paddle"/"pd" for files written from Paddle state dicts
    convention = "paddle" if fmt in ("paddle", "pd", "paddlepaddle") or any(
        k.endswith("._mean") or k.endswith("._variance") for k in tensors) else "torch"
    return WeightsFile(path, tensors, convention, f"safetensors ({fmt})")


__all__ = ["WeightsFile", "read_weights", "load_torch_object", "HOW_TO_GET", "TORCHSCRIPT", "NEST_KEYS"]
