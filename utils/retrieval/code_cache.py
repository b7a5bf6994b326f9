"""Cache of database codes: `<dir>/database_code_<bit>.npy` (±1 int8, one row per database image)
with a sidecar `database_code_<bit>.json` holding a fingerprint of what produced it: the weights,
the database list (content hash), the image root and the preprocessing. A cache is used only when
the sidecar matches the current fingerprint and the array is whole; otherwise the caller rebuilds
it and is told why. No Paddle import here.
"""
import hashlib
import json
import os

import numpy as np

from utils.fileio import atomic_path, write_json
from utils.retrieval import binarize
from utils.rundir import RunDir


def cache_paths(directory, bit):
    stem = os.path.join(directory, RunDir.database_codes_stem(bit))
    return stem + ".npy", stem + ".json"


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def make_fingerprint(weights_fingerprint, list_file, data_path, preprocess):
    return {
        "weights": weights_fingerprint,
        "database_list": file_sha256(list_file),
        "data_path": os.path.abspath(data_path),
        "preprocess": preprocess,
    }


def load_codes(directory, bit, fingerprint):
    """(codes, indices, None) when a valid matching cache exists, else (None, None, reason)."""
    npy, meta_path = cache_paths(directory, bit)
    if not os.path.exists(npy):
        return None, None, f"no cache at {npy}"
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None, None, f"{meta_path} is missing or unreadable"
    if meta.get("fingerprint") != fingerprint:
        old = meta.get("fingerprint") or {}
        changed = [k for k in fingerprint if old.get(k) != fingerprint[k]] or ["format"]
        return None, None, f"cache was built with different {', '.join(changed)}"
    try:
        if file_sha256(npy) != meta.get("npy_sha256"):
            return None, None, f"{npy} does not match its sidecar checksum (truncated or replaced)"
        codes = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as exc:
        return None, None, f"{npy} is unreadable ({exc})"
    if codes.ndim != 2 or codes.shape[1] != bit:
        return None, None, f"{npy} has shape {codes.shape}, expected (n, {bit})"
    indices = np.asarray(meta.get("indices"), dtype=np.int64) if meta.get("indices") is not None \
        else np.arange(len(codes), dtype=np.int64)
    if len(indices) != len(codes):
        return None, None, f"{meta_path} lists {len(indices)} images but the array has {len(codes)} rows"
    return codes, indices, None


def save_codes(directory, bit, codes, fingerprint, indices=None):
    """Write the codes (as ±1 int8) and then the sidecar, each atomically. `indices`: positions in the
    database list of the rows (None = all, in order)."""
    npy, meta_path = cache_paths(directory, bit)
    codes = binarize(codes)
    with atomic_path(npy) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, codes)
    n = len(codes)
    if indices is not None and np.array_equal(indices, np.arange(n)):
        indices = None
    write_json(meta_path, {
        "fingerprint": fingerprint,
        "npy_sha256": file_sha256(npy),
        "shape": list(codes.shape),
        "indices": None if indices is None else [int(i) for i in indices],
    })
    return npy
