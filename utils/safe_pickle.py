"""Read the pickles users hand us (checkpoints, weights, codebooks, CIFAR batches) as data, never as code.

    from utils.safe_pickle import load, RefusedGlobal
    with open(path, "rb") as f:
        obj = load(f)          # dicts, lists, numbers, strings, numpy arrays; nothing from the file runs

A pickle is a program: every `GLOBAL` / `STACK_GLOBAL` / `INST` / `EXT` opcode names a Python callable
that `REDUCE` / `NEWOBJ` / `BUILD` then call, which is how a `__reduce__` returning `(os.system, ("…",))`
runs a command inside `pickle.load` (and so inside `paddle.load`, a plain `pickle.load`). Every one of
those opcodes goes through `Unpickler.find_class`; `RestrictedUnpickler.find_class` answers only from
`ALLOWED` below and raises `RefusedGlobal` (naming the global) for anything else, before it could be
called. The answers are our own functions, which build plain data:

- containers and scalars need no global at all (dict, list, tuple, str, bytes, int, float, bool, None);
  `collections.OrderedDict` and `builtins.tuple` (Paddle pickles a tensor as `tuple((name, array))`);
- numpy arrays and scalars: `numpy(._core|.core).multiarray._reconstruct` / `scalar`,
  `numpy(._core|.core).numeric._frombuffer` (protocol 5), `numpy.dtype`,
  `numpy.ndarray` (only as the subtype `_reconstruct` takes), `_codecs.encode` (latin-1 only, as
  protocol-2 array pickles use it); object dtypes are refused (`numpy.dtype("O")` would hand the rest
  of the file to arbitrary pickled objects);
- Paddle's RNG state `paddle.base.libpaddle.GeneratorState` (also its older `paddle.fluid` spelling):
  an inert `GeneratorStateData` holding the numbers `__getstate__` gave, which `models/checkpoint.py`
  turns back into a real GeneratorState (its only constructor that takes no code: `__setstate__` of
  that tuple); `utils.safe_pickle._generator_state_from` is how a GeneratorStateData pickles itself;
- torch's tensor and storage rebuilders (`torch._utils._rebuild_tensor(_v2)`, `_rebuild_parameter`,
  `torch.FloatStorage` ...): numpy twins that build strided views of a storage array; torch itself is
  never imported.

What find_class hands out cannot be changed by a `BUILD` aimed at it (no `__dict__`, no attribute
assignment), so one file cannot tamper with the allow-list for the next; `check_plain` then walks the
result and accepts only containers, scalars, non-object arrays and GeneratorStateData.

That is everything `paddle.save` writes for this project's checkpoints (weights, optimizer state incl.
Adam/RMSProp moments and SGD velocity, `LR_Scheduler`, loss state, AMP scaler state, Paddle's, numpy's
and Python's random states): checked with `python3 -m pickletools` on real checkpoints, and by
tests/test_trust.py. This module imports neither Paddle nor torch.
"""
import collections
import io
import pickle

import numpy as np


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside ALLOWED (`module.name`); raised before anything is called."""

    def __init__(self, module, name):
        self.module, self.name = module, name
        super().__init__(f"refused global '{module}.{name}'")

    @property
    def qualname(self):
        return f"{self.module}.{self.name}"


class BadPickle(pickle.UnpicklingError):
    """The file is not a complete, well-formed pickle of allowed data (truncated, corrupt, wrong shape)."""


TRUNCATED = "the pickle ends early: the file is truncated"


# ----------------------------------------------------------------------------------------- frozen
class _Frozen:
    """Base of what find_class hands out: no __dict__ and no attribute assignment, so a BUILD opcode
    aimed at an allow-listed object (`setattr` of its "slot state") cannot change it for later loads."""

    __slots__ = ()

    def __setattr__(self, key, value):
        raise pickle.UnpicklingError("an allow-listed global cannot be modified")


class _Builder(_Frozen):
    """One of our builder functions, as find_class returns it."""

    __slots__ = ("_fn",)

    def __init__(self, fn):
        object.__setattr__(self, "_fn", fn)

    def __call__(self, *args, **kwargs):
        return self._fn(*args, **kwargs)


class _FrozenType(type):
    """Metaclass of the classes find_class returns (NEWOBJ needs a class): their attributes are fixed."""

    def __setattr__(cls, key, value):
        raise pickle.UnpicklingError("an allow-listed class cannot be modified")


# ----------------------------------------------------------------------------------------- numpy
class _NdarrayType(_Frozen):
    """What `numpy.ndarray` resolves to: a marker `_reconstruct` accepts as its subtype; calling it (a
    REDUCE of `numpy.ndarray(shape, "O")`) is refused."""

    __slots__ = ()

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError("numpy.ndarray called directly")


_NDARRAY = _NdarrayType()


def _numpy_dtype(spec, align=False, copy=False):
    dtype = np.dtype(spec)
    if dtype.hasobject:
        raise pickle.UnpicklingError("numpy object dtypes are refused (they can hold arbitrary objects)")
    return dtype


def _numpy_reconstruct(subtype, shape, dtype):
    """numpy's `_reconstruct`, limited to plain ndarrays of non-object dtype (the data comes by BUILD)."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError("only plain numpy arrays may be rebuilt")
    return np.ndarray.__new__(np.ndarray, shape, _numpy_dtype(dtype))


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject or not isinstance(data, bytes):
        raise pickle.UnpicklingError("numpy scalars must be plain dtypes with their bytes")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _numpy_frombuffer(buf, dtype, shape, order):
    """numpy's `_frombuffer` (protocol-5 array pickles): bytes, a plain dtype, a shape."""
    if not isinstance(buf, (bytes, bytearray)) or not isinstance(dtype, np.dtype) or dtype.hasobject \
            or order not in ("C", "F"):
        raise pickle.UnpicklingError("numpy _frombuffer of something other than array bytes")
    return np.frombuffer(buf, dtype=dtype).reshape(tuple(int(n) for n in shape), order=order).copy()


def _latin1_encode(text, encoding="latin1"):
    """_codecs.encode as numpy's protocol-2 pickles use it (str → bytes); nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than array bytes")
    return text.encode("latin1")


def _tuple(iterable=()):
    """builtins.tuple: Paddle's `tuple((name, array))` for a tensor; anything but a list/tuple is refused
    (a tuple of an iterator object would iterate it)."""
    if not isinstance(iterable, (list, tuple)):
        raise pickle.UnpicklingError("builtins.tuple of something other than a tuple or list")
    return tuple(iterable)


def _ordered_dict(items=()):
    if not isinstance(items, (list, tuple, dict)):
        raise pickle.UnpicklingError("collections.OrderedDict of something other than items")
    return collections.OrderedDict(items)


# ----------------------------------------------------------------------------------------- paddle
class GeneratorStateData(metaclass=_FrozenType):
    """Paddle's RNG `GeneratorState` as data: `state` is what its `__getstate__` returns, (device, seed,
    offset, engine state as a list of character codes). NEWOBJ builds it empty, BUILD gives the tuple."""

    def __setstate__(self, state):
        ok = (isinstance(state, tuple) and len(state) == 4 and all(isinstance(v, int) for v in state[:3])
              and isinstance(state[3], list) and all(isinstance(v, int) and 0 <= v < 256 for v in state[3]))
        if not ok:
            raise pickle.UnpicklingError("a Paddle GeneratorState whose state is not (int, int, int, [bytes])")
        self.state = state

    def __reduce__(self):  # so that a loaded checkpoint can be written again with paddle.save / pickle
        return _generator_state_from, (self.state,)

    def __eq__(self, other):
        return isinstance(other, GeneratorStateData) and getattr(self, "state", None) == getattr(other, "state", None)

    __hash__ = None


def _generator_state_from(state):
    g = GeneratorStateData()
    g.__setstate__(state)
    return g


# ----------------------------------------------------------------------------------------- torch
class TorchStorage(_Frozen):
    """A torch storage type in a pickle (`torch.FloatStorage`, ...): carries the numpy dtype only."""

    __slots__ = ("dtype",)

    def __init__(self, dtype):
        object.__setattr__(self, "dtype", dtype)

    def __call__(self, *args, **kwargs):  # never construct anything from the file
        raise pickle.UnpicklingError("a torch storage type was called directly")


BF16 = "bfloat16"
_STORAGES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": BF16, "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_, "UntypedStorage": np.uint8,
}


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored):
    """numpy twin of torch._utils._rebuild_tensor(_v2): a strided view of `storage`."""
    if not isinstance(storage, np.ndarray):
        raise pickle.UnpicklingError("tensor without storage")
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or storage_offset < 0 or any(s < 0 for s in size + stride):
        raise pickle.UnpicklingError(f"bad tensor geometry size={size} stride={stride}")
    if 0 in size:
        return np.zeros(size, dtype=storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= len(storage):
        raise pickle.UnpicklingError(f"tensor of size {size} reaches past its storage of {len(storage)} elements")
    base = storage[storage_offset:]
    item = storage.itemsize
    # a view: in torch's legacy format the storage bytes follow the object pickle; callers copy
    return np.lib.stride_tricks.as_strided(base, size, [s * item for s in stride], writeable=False)


def _rebuild_parameter(data, *_ignored):
    return data


# ----------------------------------------------------------------------------------------- allow-list
ALLOWED = {
    ("collections", "OrderedDict"): _Builder(_ordered_dict),
    ("builtins", "tuple"): _Builder(_tuple),
    ("__builtin__", "tuple"): _Builder(_tuple),  # protocol-2 pickles written by Python 2
    ("_codecs", "encode"): _Builder(_latin1_encode),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _Builder(_numpy_dtype),
    ("paddle.base.libpaddle", "GeneratorState"): GeneratorStateData,
    ("paddle.fluid.libpaddle", "GeneratorState"): GeneratorStateData,
    ("utils.safe_pickle", "_generator_state_from"): _Builder(_generator_state_from),
    ("torch._utils", "_rebuild_tensor"): _Builder(_rebuild_tensor),
    ("torch._utils", "_rebuild_tensor_v2"): _Builder(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _Builder(_rebuild_parameter),
    ("torch._utils", "_rebuild_parameter_with_state"): _Builder(_rebuild_parameter),
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    ALLOWED[(_mod, "_reconstruct")] = _Builder(_numpy_reconstruct)
    ALLOWED[(_mod, "scalar")] = _Builder(_numpy_scalar)
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    ALLOWED[(_mod, "_frombuffer")] = _Builder(_numpy_frombuffer)
for _name, _dtype in _STORAGES.items():
    ALLOWED[("torch", _name)] = TorchStorage(_dtype)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `ALLOWED` (our own builders of plain data); any other global, such
    as `os.system` in a `__reduce__`, raises RefusedGlobal before it could run. `storages` resolves
    torch's persistent ids ('storage', type, key, ...) to numpy arrays; any other persistent id is refused."""

    def __init__(self, file, storages=None, encoding="latin1"):
        super().__init__(file, encoding=encoding)
        self._storages = storages

    def find_class(self, module, name):
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise RefusedGlobal(module, name) from None

    def persistent_load(self, pid):
        if self._storages is None or not isinstance(pid, tuple) or not pid or pid[0] not in ("storage", b"storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {str(pid)[:60]}")
        return self._storages(pid)


_PLAIN = (str, bytes, int, float, complex, bool, type(None), np.generic, GeneratorStateData)


def check_plain(obj):
    """Raise BadPickle unless `obj` is made of containers, scalars, non-object numpy arrays and
    GeneratorStateData only (what the allow-list can build; a second line of defence)."""
    stack, seen = [obj], set()
    while stack:
        x = stack.pop()
        if isinstance(x, np.ndarray):
            if x.dtype.hasobject:
                raise BadPickle("a numpy object array")
        elif isinstance(x, (dict, list, tuple)):
            if id(x) in seen:
                continue
            seen.add(id(x))
            stack.extend(x.values() if isinstance(x, dict) else x)
            if isinstance(x, dict):
                stack.extend(x.keys())
        elif not isinstance(x, _PLAIN):
            raise BadPickle(f"an object of type {type(x).__name__}")
    return obj


def refusal(exc):
    """The sentence for a RefusedGlobal, the same in every loader's error message."""
    return (f"{exc} (outside the allow-list of plain data types in utils/safe_pickle.py); nothing from the "
            "file was run")


def load(file, storages=None, encoding="latin1"):
    """The object pickled in the open binary `file`, through RestrictedUnpickler. Raises RefusedGlobal
    (a global outside the allow-list) or BadPickle (anything else wrong: truncated, corrupt, a refused
    value); callers turn both into a UserError naming the file."""
    try:
        obj = RestrictedUnpickler(file, storages, encoding).load()
    except RefusedGlobal:
        raise
    except pickle.UnpicklingError as exc:
        if isinstance(exc, BadPickle):
            raise
        if "truncated" in str(exc):
            raise BadPickle(TRUNCATED) from None
        raise BadPickle(str(exc) or "malformed pickle") from None
    except EOFError:
        raise BadPickle(TRUNCATED) from None
    except RecursionError:
        raise BadPickle("nested too deeply") from None
    except MemoryError:
        raise BadPickle("asks for more memory than there is") from None
    except Exception as exc:  # noqa: BLE001 - whatever a malformed stream makes the builders raise
        raise BadPickle(f"{type(exc).__name__}: {exc}") from None
    return check_plain(obj)


def loads(data, storages=None, encoding="latin1"):
    return load(io.BytesIO(data), storages, encoding)


def load_path(path, encoding="latin1"):
    """The object pickled in the file at `path` (OSError when it cannot be opened)."""
    with open(path, "rb") as f:
        return load(f, encoding=encoding)


__all__ = ["ALLOWED", "BF16", "BadPickle", "GeneratorStateData", "RefusedGlobal", "RestrictedUnpickler",
           "TorchStorage", "check_plain", "load", "load_path", "loads", "refusal"]
