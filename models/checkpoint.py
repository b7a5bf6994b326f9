"""Checkpoints: one file holding the weights and everything needed to rebuild the model and to
resume exactly (configuration, codebook (inside the weights), optimizer, loss state such as HashNet's
memory bank, epoch and step, best mAP, random states). Written atomically.

Checkpoints are pickle-based (`paddle.save`): load only files you trust.
"""
import hashlib
import os
import random
from dataclasses import dataclass, field

import numpy as np
import paddle

from models.methods import fill_legacy
from utils.errors import UserError
from utils.fileio import atomic_path
from utils.rundir import RunDir

FORMAT = "paddle-deephash-checkpoint"
VERSION = 1


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


def save_checkpoint(path, model, cfg, state, optimizer=None, scheduler=None, criterion=None, amp=None):
    """Write `model`'s weights, `cfg` and the TrainState `state`; with optimizer, scheduler and criterion
    the checkpoint can be resumed (last.pdparams), without them it is for evaluation and export (best.pdparams).
    `amp` (utils.train.amp.Amp): its loss-scaler state (fp16 on GPU only), restored by --resume."""
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
    ckpt["rng"] = {"paddle": paddle.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    ckpt.update(state.to_checkpoint(resumable=optimizer is not None))
    with atomic_path(path) as tmp:
        paddle.save(ckpt, tmp)


def load_checkpoint(path, flag="--pretrained"):
    """Read a checkpoint written by save_checkpoint; UserError for anything else. Recipe keys the
    checkpoint predates get the values it was trained with (models/methods/base.py LEGACY)."""
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: file not found; train a model first (main_single_gpu.py) "
                        f"or point to its {RunDir.BEST} / {RunDir.LAST}")
    try:
        ckpt = paddle.load(path)
    except Exception as exc:
        raise UserError(f"{flag} {path}: not a readable checkpoint ({type(exc).__name__}); "
                        "is the file complete and written by this project?")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise UserError(f"{flag} {path}: not a checkpoint of this project (no '{FORMAT}' header); "
                        f"pass a {RunDir.BEST} / {RunDir.LAST} written by main_single_gpu.py")
    if ckpt.get("version", 0) > VERSION:
        raise UserError(f"{flag} {path}: checkpoint version {ckpt['version']} is newer than this code "
                        f"understands ({VERSION}); update the project")
    bad = nonfinite_tensors(ckpt.get("model", {}))
    if bad:
        raise UserError(f"{flag} {path}: {len(bad)} weight tensors hold NaN/inf (first: {bad[0]}); the run that "
                        "wrote it diverged — use an earlier checkpoint or train again with a lower -lr")
    ckpt["cfg"] = fill_legacy(ckpt.get("cfg", {}))
    return ckpt


def nonfinite_tensors(state):
    """Names of the floating-point tensors in a state dict (name -> Tensor or array) with a NaN or inf."""
    bad = []
    for name, value in state.items():
        arr = _to_numpy(value)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            bad.append(name)
    return bad


def restore_rng(ckpt):
    rng = ckpt.get("rng")
    if rng:
        paddle.set_rng_state(rng["paddle"])
        np.random.set_state(rng["numpy"])
        random.setstate(rng["python"])
