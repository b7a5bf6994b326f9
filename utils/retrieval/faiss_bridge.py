"""The faiss bridge of `utils.retrieval`: faiss is an optional search backend, imported on first use
(`_faiss` is None when it is not installed), a binary index of packed codes (flat = exact, IVF / HNSW =
approximate), and the re-sort of its results by (distance, index), the ranking rule of the package."""
import functools
import math

import numpy as np


@functools.lru_cache(maxsize=None)
def _faiss():
    """The faiss module (imported on first use, it is an optional backend), or None if not installed."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def _faiss_index(packed, kind):
    faiss = _faiss()
    d = 8 * packed.shape[1]
    if kind == "flat":
        index = faiss.IndexBinaryFlat(d)
    elif kind == "hnsw":
        index = faiss.IndexBinaryHNSW(d, 32)
    else:
        nlist = int(min(65536, max(1, round(4 * math.sqrt(len(packed))))))
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist)
        index.train(packed)
        index.nprobe = max(1, nlist // 16)
    index.add(packed)
    return index


def _sort_by_dist_index(dist, idx):
    """Sort each row by (distance, index); faiss returns -1 indices for missing results, put last."""
    idx = idx.astype(np.int64)
    missing = idx < 0
    key_d = np.where(missing, np.iinfo(np.int32).max, dist)
    key_i = np.where(missing, np.iinfo(np.int64).max, idx)
    order = np.lexsort((key_i, key_d), axis=1)
    return np.take_along_axis(dist, order, 1), np.take_along_axis(idx, order, 1)
