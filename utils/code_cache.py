"""Cache of database codes: `<dir>/database_code_<bit>.npy` (±1 int8, one row per database image)
with a sidecar `database_code_<bit>.json` holding a fingerprint of what produced it: the weights,
the database list (content hash), the image root and the preprocessing. A cache is used only when
the sidecar matches the current fingerprint and the array is whole; otherwise the caller rebuilds
it and is told why. No Paddle import here.

File-level code beside `utils.rundir.RunDir` (which names the file) and `utils.cache_file` (the
fingerprinted-array format); it sits in layer 1, above utils.retrieval, only for `binarize`, the one sign
rule of the project (utils.retrieval itself stays arrays in, arrays out).
"""
import os

import numpy as np

from utils.cache_file import file_sha256, load_array, save_array
from utils.retrieval import binarize
from utils.rundir import RunDir


def cache_paths(directory, bit):
    stem = os.path.join(directory, RunDir.database_codes_stem(bit))
    return stem + ".npy", stem + ".json"


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
    codes, meta, why = load_array(npy, meta_path, fingerprint)
    if why:
        return None, None, why
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
    if indices is not None and np.array_equal(indices, np.arange(len(codes))):
        indices = None
    return save_array(npy, meta_path, codes, fingerprint,
                      indices=None if indices is None else [int(i) for i in indices])
