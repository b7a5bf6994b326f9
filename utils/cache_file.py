"""Fingerprinted array files: `<name>.npy` and a sidecar `<name>.json` holding a fingerprint of what
produced the array and the array file's sha256. Shared by the database code cache
(utils/code_cache.py) and the training feature cache (utils/train/feature_cache.py).

    save_array(npy, sidecar, array, fingerprint, indices=[...])     # array first, then the sidecar; atomic
    array, meta, why = load_array(npy, sidecar, fingerprint)         # (None, None, reason) when unusable

A file is used only when the sidecar's fingerprint equals the caller's and the array matches the sidecar's
checksum; otherwise the reason says what differed (the fingerprint's keys that changed, a truncated or
replaced array, an unreadable sidecar), so the caller rebuilds it and says why. No Paddle here.
"""
import hashlib
import json
import os

import numpy as np

from utils.fileio import save_npy, write_json


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_array(npy, sidecar, array, fingerprint, **extra):
    """Write `array`, then the sidecar {fingerprint, npy_sha256, shape, **extra}, each atomically (a crash
    between the two leaves a sidecar whose checksum no longer matches: the next load rebuilds)."""
    save_npy(npy, array)
    write_json(sidecar, {"fingerprint": fingerprint, "npy_sha256": file_sha256(npy), "shape": list(np.shape(array)),
                         **extra})
    return npy


def load_array(npy, sidecar, fingerprint):
    """(array, sidecar dict, None) when the file is whole and made from `fingerprint`, else (None, None, why)."""
    if not os.path.exists(npy):
        return None, None, f"no cache at {npy}"
    try:
        with open(sidecar, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None, None, f"{sidecar} is missing or unreadable"
    old = meta.get("fingerprint") if isinstance(meta, dict) else None
    if old != fingerprint:
        old = old if isinstance(old, dict) else {}
        changed = [k for k in fingerprint if old.get(k) != fingerprint[k]] or ["format"]
        return None, None, f"cache was built with a different {', '.join(changed)}"
    try:
        if file_sha256(npy) != meta.get("npy_sha256"):
            return None, None, f"{npy} does not match its sidecar checksum (truncated or replaced)"
        array = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, None, f"{npy} is unreadable ({exc})"
    return array, meta, None
