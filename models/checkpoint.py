"""Checkpoints: one file holding the weights and everything needed to rebuild the model and to
resume exactly (configuration, codebook (inside the weights), optimizer, loss state such as HashNet's
memory bank, epoch and step, best mAP, random states). Written atomically.

Writing: `paddle.save` (a pickle), as before. Reading: never `paddle.load` (a plain `pickle.load`, which
runs whatever a `__reduce__` in the file names), but `utils.safe_pickle`, whose allow-list builds only
plain data: containers, numbers, strings, non-object numpy arrays, and Paddle's RNG `GeneratorState` as
inert numbers. A file naming any other global (`os.system`, `builtins.eval`, a class) is refused with a
one-line error before anything from it runs; a torch zip, a truncated file and a dict without this
project's header are one-line errors too (tests/test_trust.py hands each to every entry point).
Tensors come back as numpy arrays, exactly the values `paddle.load` gave (it rebuilds the same
`(name, array)` tuples into Tensors); `restore_rng` rebuilds the real GeneratorState from its numbers.

Why keep `paddle.save` rather than a code-free format (npz + JSON, safetensors): the reader must accept
the pickles every earlier release wrote anyway, so a second format would add a writer and a reader
without removing the pickle reader; with the allow-list reader the pickle is data, not code; and the
files stay what Paddle users expect (Paddle's own loader reads `best.pdparams` and its "model" entry in
their own code, on files they made; this project reads them only through the allow-list).
tests/fixtures/old_release/ holds a checkpoint written by the previous release's own `save_checkpoint`;
tests/test_trust.py evaluates, resumes, exports and predicts from it.
"""
import hashlib
import os
import random
import zipfile
from dataclasses import dataclass, field

import numpy as np
import paddle

from models.methods import fill_legacy
from utils.errors import UserError
from utils.fileio import atomic_path
from utils.rundir import RunDir
from utils.safe_pickle import BadPickle, GeneratorStateData, RefusedGlobal, refusal
from utils.safe_pickle import load as safe_load

FORMAT = "paddle-deephash-checkpoint"
VERSION = 1
TORCH_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c  # the first pickle of torch.save's pre-zip format


def _to_numpy(t):
    return t.numpy() if hasattr(t, "numpy") else np.asarray(t)


def weights_fingerprint(state_dict):
    """sha256 over parameter names, shapes, dtypes and bytes, in name order: changes whenever a weight does."""
    h = hashlib.sha256()
    for name in sorted(state_dict):
        arr = np.ascontiguousarray(_to_numpy(state_dict[name]))
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


@dataclass
class TrainState:
    """Where a training run stands: the part of a checkpoint besides weights, optimizer, loss state and
    random states. The engine updates it as it trains; last.pdparams saves it and --resume reads it back."""

    epoch: int = 0  # completed epochs
    step: int = 0  # batches already done in epoch + 1 (non-zero after Ctrl-C)
    best_map: float = -1.0  # -1: no evaluation yet
    best_epoch: int = 0
    history: list = field(default_factory=list)  # one train_log.csv row per completed epoch

    def to_checkpoint(self, resumable=True):
        """The checkpoint keys of this state (layout of VERSION 1); a checkpoint that cannot be resumed
        (best.pdparams: no optimizer) holds no history."""
        keys = {"epoch": int(self.epoch), "step": int(self.step), "best_map": float(self.best_map),
                "best_epoch": int(self.best_epoch)}
        if resumable:
            keys["history"] = list(self.history)
        return keys

    @classmethod
    def from_checkpoint(cls, ckpt):
        """The state saved in `ckpt`; step, best_epoch and history may be missing (older or hand-made files)."""
        return cls(epoch=int(ckpt["epoch"]), step=int(ckpt.get("step", 0)), best_map=float(ckpt["best_map"]),
                   best_epoch=int(ckpt.get("best_epoch", 0)), history=list(ckpt.get("history", [])))


def save_checkpoint(path, model, cfg, state, optimizer=None, scheduler=None, criterion=None, amp=None, rng=None):
    """Write `model`'s weights, `cfg` and the TrainState `state`; with optimizer, scheduler and criterion
    the checkpoint can be resumed (last.pdparams), without them it is for evaluation and export (best.pdparams).
    `amp` (utils.train.amp.Amp): its loss-scaler state (fp16 on GPU only), restored by --resume. `rng`: the
    run's np.random.RandomState, saved as rng["numpy"] (without it: numpy's global state, as before)."""
    weights = model.state_dict()
    ckpt = {
        "format": FORMAT,
        "version": VERSION,
        "cfg": dict(cfg),
        "model": weights,
        "weights_fingerprint": weights_fingerprint(weights),
        "paddle_version": paddle.__version__,
    }
    if optimizer is not None:
        ckpt["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        ckpt["scheduler"] = scheduler.state_dict()
    if criterion is not None:
        ckpt["criterion"] = criterion.state_dict()
    amp_state = amp.state_dict() if amp is not None else None
    if amp_state is not None:
        ckpt["amp"] = amp_state
    ckpt["rng"] = {"paddle": paddle.get_rng_state(), "numpy": (rng if rng is not None else np.random).get_state(),
                   "python": random.getstate()}
    ckpt.update(state.to_checkpoint(resumable=optimizer is not None))
    with atomic_path(path) as tmp:
        paddle.save(ckpt, tmp)


def load_checkpoint(path, flag="--pretrained"):
    """Read a checkpoint written by save_checkpoint; UserError for anything else. Recipe keys the
    checkpoint predates get the values it was trained with (models/methods/base.py LEGACY)."""
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: file not found; train a model first (main_single_gpu.py) "
                        f"or point to its {RunDir.BEST} / {RunDir.LAST}")
    ckpt = read_checkpoint_file(path, flag)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{flag} {path}: not a checkpoint of this project (no '{FORMAT}' header); "
                        f"pass a {RunDir.BEST} / {RunDir.LAST} written by main_single_gpu.py")
    version = ckpt.get("version", 0)
    if not isinstance(version, int) or not isinstance(ckpt.get("model"), dict) or \
            not isinstance(ckpt.get("cfg", {}), dict) or not isinstance(ckpt.get("epoch", 0), int) or \
            not all(isinstance(v, np.ndarray) for v in ckpt["model"].values()):
        raise UserError(f"{flag} {path}: has the '{FORMAT}' header but not its layout (version, cfg, model "
                        f"arrays, epoch); pass a {RunDir.BEST} / {RunDir.LAST} written by main_single_gpu.py")
    if version > VERSION:
        raise UserError(f"{flag} {path}: checkpoint version {ckpt['version']} is newer than this code "
                        f"understands ({VERSION}); update the project")
    bad = nonfinite_tensors(ckpt.get("model", {}))
    if bad:
        raise UserError(f"{flag} {path}: {len(bad)} weight tensors hold NaN/inf (first: {bad[0]}); the run that "
                        "wrote it diverged — use an earlier checkpoint or train again with a lower -lr")
    ckpt["cfg"] = fill_legacy(ckpt.get("cfg", {}))
    return ckpt


def _tensors_as_arrays(obj):
    """What paddle.load does to a loaded pickle, with numpy arrays for its Tensors: a `(name, array)` tuple
    (how Paddle pickles a Tensor) inside a dict or list becomes the array. Tuples are not entered (numpy's
    and Python's random states are tuples)."""
    if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray):
        return obj[1]
    if isinstance(obj, dict):
        for key in list(obj):
            obj[key] = _tensors_as_arrays(obj[key])
    elif isinstance(obj, list):
        obj[:] = [_tensors_as_arrays(v) for v in obj]
    return obj


def read_checkpoint_file(path, flag="--pretrained"):
    """The object a checkpoint file holds, read through the allow-list unpickler (nothing in the file
    runs); UserError (one line) for a refused global, a zip archive, a truncated or corrupt file."""
    hint = f"pass a {RunDir.BEST} / {RunDir.LAST} written by main_single_gpu.py"
    try:
        if zipfile.is_zipfile(path):
            raise UserError(f"{flag} {path}: a zip archive (torch.save's format?), not a checkpoint of this project; "
                            f"{hint} (ImageNet weights go to --backbone-weights)")
        with open(path, "rb") as f:
            obj = safe_load(f)
    except RefusedGlobal as exc:
        raise UserError(f"{flag} {path}: {refusal(exc)}; a checkpoint of this project never names it: {hint}")
    except BadPickle as exc:
        raise UserError(f"{flag} {path}: not a readable checkpoint ({exc}); {hint}")
    except OSError as exc:
        raise UserError(f"{flag} {path}: cannot read it ({exc.strerror or exc})")
    if isinstance(obj, int) and obj == TORCH_LEGACY_MAGIC:
        raise UserError(f"{flag} {path}: a torch.save file (its legacy format), not a checkpoint of this project; "
                        f"{hint} (ImageNet weights go to --backbone-weights)")
    return _tensors_as_arrays(obj)


def nonfinite_tensors(state):
    """Names of the floating-point tensors in a state dict (name -> Tensor or array) with a NaN or inf."""
    bad = []
    for name, value in state.items():
        arr = _to_numpy(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad.append(name)
    return bad


def paddle_generator_states(states):
    """Paddle's RNG states (what paddle.get_rng_state returned) from a checkpoint read as data: each
    GeneratorStateData becomes a real GeneratorState, built the way unpickling builds it (an empty
    instance given its `__getstate__` numbers), with no code from the file."""
    cls = type(paddle.get_rng_state()[0])
    out = []
    for s in states:
        if isinstance(s, GeneratorStateData):
            g = cls.__new__(cls)
            g.__setstate__(s.state)
            s = g
        out.append(s)
    return out


def restore_rng(ckpt, numpy_rng=None):
    """Paddle's and Python's random state from `ckpt`, and numpy's into `numpy_rng` (the run's
    np.random.RandomState; without it numpy's global state)."""
    rng = ckpt.get("rng")
    if rng:
        paddle.set_rng_state(paddle_generator_states(rng["paddle"]))
        (numpy_rng if numpy_rng is not None else np.random).set_state(rng["numpy"])
        random.setstate(rng["python"])
